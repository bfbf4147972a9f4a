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

const NUMBER = /^-?\s*(0[xX][0-9a-fA-F]+|[0-9]+(#[0-9a-zA-Z@_]+)?)$/;
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
function subscriptProblem(name: string): string | null {
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
    case "FileDescriptorVariable": {
      // {name}>file stores the descriptor's number in name.
      const problem = subscriptProblem(node.name);
      if (problem) scope.unclassified(problem);
      scope.assigns(node.name.replace(/\[.*$/s, ""));
      return;
    }
    case "Assignment": {
      const value = node.value.type === "Word" ? resolveWord(node.value).value : null;
      scope.assigns(node.name, node.text, value);
      if (node.value.type === "ArrayValue" || node.index) scope.array(node.name);
      if (node.index && !isLiteralNumber(node.index)) {
        const index = resolveWord(node.index).value;
        if (index !== "@" && index !== "*") {
          scope.unclassified(
            `the subscript of ${node.text} is evaluated as arithmetic, which can run code`,
            node.text,
          );
        }
      }
      // Keys are arithmetic unless the array is associative, which depends on what ran before
      // (a declare -A in a branch, a function or a subshell): they count as arithmetic.
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
      if (node.index) scope.array(node.parameter);
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

/** What an `a=(...)` argument of a declare-like builtin resolves to (shell_commands.ts). */
export const ARRAY_LITERAL = "assignment value: an array";

/** Options of declare-like builtins that make a name an array, or only print or name functions. */
const DECLARE_LIKE = new Set(["declare", "typeset", "local", "export", "readonly"]);
/** Shell options that change how later text is read or what it runs. */
const UNSAFE_SHELL_OPTIONS = new Set(["keyword", "history", "histexpand"]);

/**
 * Checks a builtin that takes variable names, arithmetic or shell options: reports the names it
 * sets, and refuses names known only at run time, subscripts that would run code, and options
 * that change how later text is read (`set -k`, history expansion).
 */
export function builtinSinks(name: string, words: Resolved[], scope: NodeScope): void {
  const values = words.map((word) => word.value);
  /** A name the builtin sets; `array` when it becomes an array. */
  const setsName = (written: string, array = false) => {
    const problem = subscriptProblem(written.replace(/\+?=.*$/s, ""));
    if (problem) scope.unclassified(problem);
    const bare = written.replace(/[[=+].*$/s, "");
    const equals = written.indexOf("=");
    scope.assigns(bare, undefined, equals === -1 ? null : written.slice(equals + 1));
    if (array) scope.array(bare);
  };
  const dynamicName = (what: string) =>
    scope.unsafe(`${what}: the variable's name is known only at run time, and could be PATH`);
  switch (name) {
    case "printf": {
      // printf -v NAME (or -vNAME) sets NAME; a format known only at run time could be -v.
      const first = values[1];
      if (first === null) dynamicName("printf with a format known only at run time");
      else if (first === "-v") {
        if (values[2] === null) dynamicName("printf -v");
        else if (values[2] !== undefined) setsName(values[2]);
      } else if (first?.startsWith("-v")) setsName(first.slice(2));
      return;
    }
    case "getopts": {
      const start = values[1] === "--" ? 2 : 1;
      // "$@" or a split word before the name could put any name in its place.
      if (words.slice(1, start + 2).some((word) => word.value === null)) dynamicName("getopts");
      else if (words[start + 1]) setsName(words[start + 1]!.value!);
      return;
    }
    case "let":
      if (values.slice(1).some((value) => value === null || /[A-Za-z_]/.test(value))) {
        scope.unclassified("let evaluates variables as arithmetic");
      }
      return;
    case "test":
    case "[":
      return testSinks(name, words, scope);
    case "set":
    case "shopt":
      return shellOptionSinks(name, words, scope);
    case "read":
    case "mapfile":
    case "readarray":
    case "wait":
    case "unset":
      return nameArguments(name, words, scope, setsName, dynamicName);
  }
  if (DECLARE_LIKE.has(name)) declareSinks(name, words, scope, setsName, dynamicName);
}

/** Options of name-taking builtins that take a value, and those whose value is a name. */
const NAME_OPTIONS: Record<
  string,
  { withValue: string; names?: string; arrays?: string; operands: "names" | "jobs" }
> = {
  read: { withValue: "adinNptu", names: "a", arrays: "a", operands: "names" },
  mapfile: { withValue: "dnOsuCc", operands: "names" },
  readarray: { withValue: "dnOsuCc", operands: "names" },
  // wait's operands are process and job ids; only -p takes a name.
  wait: { withValue: "p", names: "p", operands: "jobs" },
  unset: { withValue: "", operands: "names" },
};

function nameArguments(
  name: string,
  words: Resolved[],
  scope: NodeScope,
  setsName: (written: string, array?: boolean) => void,
  dynamicName: (what: string) => void,
): void {
  const spec = NAME_OPTIONS[name]!;
  const arrays = name === "mapfile" || name === "readarray";
  let operands = 0;
  let options = true;
  for (let i = 1; i < words.length; i++) {
    const value = words[i]!.value;
    if (options && value !== null && value.startsWith("-") && value.length > 1) {
      if (value === "--") {
        options = false;
        continue;
      }
      const letters = value.slice(1);
      const valued = [...letters].findIndex((letter) => spec.withValue.includes(letter));
      if (valued === -1) continue;
      const letter = letters[valued]!;
      const attached = letters.slice(valued + 1);
      const next = attached !== "" ? null : words[++i];
      const argument = attached !== "" ? attached : next?.value;
      // An option's value is data (a prompt, a delimiter), unless the option takes a name, or an
      // unquoted expansion may split it into the value and more names.
      if (next?.value === null && next.splits) return dynamicName(`${name} -${letter}`);
      if (!spec.names?.includes(letter)) continue;
      if (argument === null) return dynamicName(`${name} -${letter}`);
      if (argument !== undefined) setsName(argument, spec.arrays?.includes(letter));
      continue;
    }
    options = false;
    if (spec.operands === "jobs") {
      // A job id known only at run time must stay one word: `wait $k` could become `-p PATH`.
      const operand = words[i]!;
      if (operand.value === null && operand.splits) return dynamicName(name);
      continue;
    }
    if (value === null) {
      // unset of a name known at run time unsets some variable: unclassified, not a write.
      if (name === "unset") {
        scope.unclassified("unset with a name known only at run time");
        continue;
      }
      return dynamicName(name);
    }
    operands++;
    setsName(value, arrays);
  }
  if (arrays && operands === 0) setsName("MAPFILE", true);
}

function declareSinks(
  name: string,
  words: Resolved[],
  scope: NodeScope,
  setsName: (written: string, array?: boolean) => void,
  dynamicName: (what: string) => void,
): void {
  const flags = words.slice(1).map((word) => word.value ?? "")
    .filter((value) => /^[-+][A-Za-z]+$/.test(value)).join("");
  if (/[ni]/.test(flags.replace(/\+[A-Za-z]*/g, ""))) {
    scope.unclassified(`${name} -n/-i: a nameref or integer attribute evaluates values as code`);
    return;
  }
  // -p prints, -f and -F name functions: nothing is set.
  if (/[pfF]/.test(flags)) return;
  const array = /[aA]/.test(flags);
  for (const word of words.slice(1)) {
    if (word.value === null && word.why === ARRAY_LITERAL) {
      // declare -a a=(x y): bash reads the elements itself (they are analysed as words).
      const assigned = /^[A-Za-z_][A-Za-z0-9_]*/.exec(word.text)![0];
      setsName(assigned, true);
      continue;
    }
    if (word.value !== null) {
      if (/^[-+][A-Za-z]+$/.test(word.value) || word.value === "--") continue;
      const equals = word.value.indexOf("=");
      // declare a='(...)' is a compound assignment when a is (or becomes) an array.
      if (equals !== -1 && word.value.slice(equals + 1).startsWith("(")) {
        scope.unclassified(
          `${name} with a value in ( ) may be a compound assignment, which can run code`,
          word.text,
        );
      }
      setsName(word.value, array);
      continue;
    }
    // declare x="$1": the value is data, unless x is an array.
    const assigned = /^([A-Za-z_][A-Za-z0-9_]*)(\[[^\]]*\])?\+?=/.exec(word.text);
    if (!assigned || !word.why.startsWith("assignment value:")) return dynamicName(name);
    setsName(assigned[1]! + (assigned[2] ?? ""), array);
    if (array) {
      scope.unclassified(
        `${name} -a/-A with a value known only at run time is a compound assignment`,
        word.text,
      );
    } else scope.dynamicDeclare(assigned[1]!, word.text);
  }
}

/**
 * test and [: `-v NAME` (and `-R`) evaluate NAME's subscript. A word known only at run time is
 * safe unless it may split into several words (unquoted) or sits where such a name would.
 */
function testSinks(name: string, words: Resolved[], scope: NodeScope): void {
  const args = words.slice(1);
  for (const [i, word] of args.entries()) {
    if (word.value === null) {
      if (word.splits) {
        scope.unclassified(
          `${name} with an expansion that may become several words, -v and a name among them`,
          word.text,
        );
        return;
      }
      const next = args[i + 1];
      if (next && (next.value === null || subscriptProblem(next.value))) {
        scope.unclassified(
          `${name}: ${word.text} could be -v, making the next word a name to evaluate`,
          word.text,
        );
        return;
      }
      continue;
    }
    if (word.value === "-v" || word.value === "-R") {
      const operand = args[i + 1];
      const problem = operand?.value === null
        ? `${name} ${word.value} with a name known only at run time`
        : operand
        ? subscriptProblem(operand.value)
        : null;
      if (problem) {
        scope.unclassified(problem);
        return;
      }
    }
  }
}

/** set -k, set -H, set -o keyword/history/histexpand, shopt -so ...: reading changes after them. */
function shellOptionSinks(name: string, words: Resolved[], scope: NodeScope): void {
  const values = words.slice(1).map((word) => word.value);
  if (values.some((value) => value === null)) {
    scope.unsafe(`${name} with an option known only at run time`);
    return;
  }
  const named = values.filter((value) => !value!.startsWith("-") && !value!.startsWith("+"));
  const flags = values.filter((value) => /^-[A-Za-z]+$/.test(value!)).join("");
  const isOption = name === "set" || /o/.test(flags);
  if (
    (name === "set" && /[kH]/.test(flags)) ||
    (isOption && named.some((value) => UNSAFE_SHELL_OPTIONS.has(value!)))
  ) {
    scope.unsafe(`${name}: keyword mode and history expansion change what later commands run`);
  }
}
