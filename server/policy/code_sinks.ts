/**
 * Places where bash runs a value as code, and builtins that set variables. A variable holding
 * `x[$(cmd)]` runs cmd when bash evaluates it arithmetically: in `$((x))`, `${a[x]}`, `[[ x -eq 1 ]]`,
 * `${s:x}`, `declare -n`, `read 'a[...]'`, `test -v 'a[...]'`, ... The value can be built at run
 * time, so these are unclassified unless every operand is a literal number. Builtins that set
 * variables (`read`, `for`, `printf -v`, `${X:=}`, ...) are reported, so the policy can refuse
 * those that change what runs (PATH, BASH_ENV, ...).
 *
 * @module
 */
import type { SyntaxNode, Word } from "unbash";
import type { NodeScope, Resolved } from "./shell_commands.ts";
import { resolveWord } from "./shell_commands.ts";

const NUMBER = /^(0[xX][0-9a-fA-F]+|[0-9]+(#[0-9a-zA-Z@_]+)?)$/;
const ARITHMETIC_TEST_OPERATORS = new Set(["-eq", "-ne", "-lt", "-le", "-gt", "-ge"]);

function isLiteralNumber(word: Word | undefined): boolean {
  if (!word) return true;
  const resolved = resolveWord(word);
  return resolved.value !== null && NUMBER.test(resolved.value.trim());
}

/**
 * Why a variable name with a subscript (`a[...]`) would run code, or null. Bash evaluates a
 * subscript arithmetically, so only a literal number (or @, *) is safe.
 */
export function subscriptProblem(name: string): string | null {
  const open = name.indexOf("[");
  if (open === -1) return null;
  const subscript = name.slice(open + 1, name.endsWith("]") ? -1 : undefined);
  return NUMBER.test(subscript.trim()) || subscript === "@" || subscript === "*"
    ? null
    : `the subscript of ${name} is evaluated as arithmetic, which can run code`;
}

/** Checks a syntax node that is not a simple command. */
export function nodeSinks(node: SyntaxNode, scope: NodeScope): void {
  switch (node.type) {
    case "ArithmeticWord":
      if (!NUMBER.test(node.value)) {
        scope.unclassified(
          `arithmetic on '${node.value}' evaluates a variable's value as code`,
          node.value,
        );
      }
      return;
    case "TestBinary":
      if (
        ARITHMETIC_TEST_OPERATORS.has(node.operator) &&
        !(isLiteralNumber(node.left) && isLiteralNumber(node.right))
      ) {
        scope.unclassified(`[[ ${node.operator} ]] evaluates its operands as code`);
      }
      return;
    case "TestUnary":
      if (node.operator === "-v") {
        const name = resolveWord(node.operand).value;
        const problem = name === null
          ? "[[ -v ]] on a name known only at run time"
          : subscriptProblem(name);
        if (problem) scope.unclassified(problem);
      }
      return;
    case "For":
    case "Select": {
      const name = resolveWord(node.name).value;
      if (name !== null) scope.assigns(name);
      return;
    }
    case "Coproc":
      if (node.name) {
        const name = resolveWord(node.name).value;
        if (name !== null) scope.assigns(name);
      }
      return;
    case "Assignment": {
      scope.assigns(node.name, node.text);
      if (node.index && !isLiteralNumber(node.index)) {
        const index = resolveWord(node.index).value;
        if (index !== "@" && index !== "*") {
          scope.unclassified(
            `the subscript of ${node.text} is evaluated as arithmetic, which can run code`,
            node.text,
          );
        }
      }
      if (node.value.type === "ArrayValue") {
        for (const element of node.value.elements) {
          const key = /^\[([^\]]*)\]=/.exec(element.text)?.[1];
          if (key !== undefined && !NUMBER.test(key.trim())) {
            scope.unclassified(
              `the key [${key}] may be evaluated as arithmetic, which can run code`,
              element.text,
            );
          }
        }
      }
      return;
    }
    case "ParameterExpansion": {
      if (node.prefix === "!" && node.operation?.type !== "Names") {
        const index = node.index ? resolveWord(node.index).value : null;
        if (!(index === "@" || index === "*")) {
          scope.unclassified("${!name} indirection", node.text);
        }
      }
      if (node.index) {
        const index = resolveWord(node.index).value;
        if (index === null || !(index === "@" || index === "*" || NUMBER.test(index))) {
          scope.unclassified("an array subscript is evaluated as arithmetic", node.text);
        }
      }
      const operation = node.operation;
      if (
        operation?.type === "Default" && (operation.operator === "=" || operation.operator === ":=")
      ) {
        scope.assigns(node.parameter, node.text);
      }
      if (
        operation?.type === "Slice" &&
        !(isLiteralNumber(operation.offset) && isLiteralNumber(operation.length))
      ) {
        scope.unclassified(
          "${var:offset:length} evaluates offset and length as arithmetic",
          node.text,
        );
      }
      if (operation?.type === "Transform") {
        const operator = resolveWord(operation.operand).value;
        if (operator === null || operator.includes("P")) {
          scope.unclassified(
            "${var@P} expands its value as a prompt, running $(...) in it",
            node.text,
          );
        }
      }
      return;
    }
  }
}

/** Builtins whose arguments are variable names, with their options that take a value. */
const NAME_BUILTINS: Record<string, { withValue: string; nameOptions?: string }> = {
  read: { withValue: "adinNptu", nameOptions: "a" },
  mapfile: { withValue: "dnOsuCc" },
  readarray: { withValue: "dnOsuCc" },
  declare: { withValue: "" },
  typeset: { withValue: "" },
  local: { withValue: "" },
  export: { withValue: "" },
  readonly: { withValue: "" },
  unset: { withValue: "" },
  wait: { withValue: "p", nameOptions: "p" },
};
const DECLARE_LIKE = new Set(["declare", "typeset", "local", "export", "readonly"]);

/**
 * Checks a builtin that takes variable names or arithmetic: reports the names it sets, and
 * refuses names known only at run time and subscripts that would run code.
 */
export function builtinSinks(name: string, words: Resolved[], scope: NodeScope): void {
  const setsName = (written: string) => {
    const problem = subscriptProblem(written);
    if (problem) scope.unclassified(problem);
    scope.assigns(written.replace(/[[=+].*$/s, ""));
  };
  if (name === "printf") {
    // printf -v NAME (or -vNAME) sets NAME; a format known only at run time could be -v.
    const first = words[1]?.value;
    if (first === null) scope.unclassified("printf with a format known only at run time");
    else if (first === "-v") {
      const target = words[2]?.value;
      if (target === null || target === undefined) {
        scope.unclassified("printf -v with a name known only at run time");
      } else setsName(target);
    } else if (first?.startsWith("-v")) setsName(first.slice(2));
    return;
  }
  if (name === "getopts") {
    const target = words[2];
    if (target?.value === null) scope.unclassified("getopts with a name known only at run time");
    else if (target) setsName(target.value);
    return;
  }
  if (name === "let") {
    if (words.slice(1).some((word) => word.value === null || /[A-Za-z_]/.test(word.value))) {
      scope.unclassified("let evaluates variables as arithmetic");
    }
    return;
  }
  if (name === "test" || name === "[") {
    if (words.slice(1).some((word) => word.value === null)) {
      scope.unclassified(
        `${name} with an argument known only at run time may take it as a variable name or arithmetic`,
      );
      return;
    }
    const args = words.slice(1).map((word) => word.value!);
    for (const [i, arg] of args.entries()) {
      if (arg === "-v" && args[i + 1] !== undefined) {
        const problem = subscriptProblem(args[i + 1]!);
        if (problem) scope.unclassified(problem);
      }
    }
    return;
  }
  const spec = NAME_BUILTINS[name];
  if (!spec) return;
  for (let i = 1; i < words.length; i++) {
    const word = words[i]!;
    if (word.value === null) {
      // declare x="$1": the value is data; only the name matters.
      if (DECLARE_LIKE.has(name) && word.why.startsWith("assignment value:")) {
        setsName(word.text.slice(0, word.text.indexOf("=")));
        continue;
      }
      scope.unclassified(
        `${name} with an argument known only at run time may take it as a variable name`,
      );
      return;
    }
    const value = word.value;
    if (/^[-+]/.test(value) && value.length > 1) {
      if (DECLARE_LIKE.has(name) && /^-\w*[ni]/.test(value)) {
        scope.unclassified(
          `${name} -n/-i: a nameref or integer attribute evaluates values as code`,
        );
        return;
      }
      // An option: the ones that take a value take the rest of the word, or the next word.
      const letters = value.slice(1);
      const valued = [...letters].findIndex((letter) => spec.withValue.includes(letter));
      if (valued !== -1) {
        const letter = letters[valued]!;
        const attached = letters.slice(valued + 1);
        const argument = attached !== "" ? attached : words[++i]?.value;
        if (argument === null) {
          scope.unclassified(`${name} -${letter} with a value known only at run time`);
          return;
        }
        if (spec.nameOptions?.includes(letter) && argument !== undefined) setsName(argument);
      }
      continue;
    }
    if (name === "unset" || !/^[A-Za-z_]/.test(value)) {
      if (name === "unset") setsName(value);
      continue;
    }
    setsName(value);
  }
}
