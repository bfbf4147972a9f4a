/**
 * Every simple command a bash (or sh) text would run, found with a real parser (unbash), for the
 * command policy. It looks through pipelines, lists, subshells, groups, functions, `$(...)`,
 * backticks, process substitution and heredocs; wrappers and code strings are followed by
 * wrappers.ts, places where values become code are found by code_sinks.ts.
 *
 * What cannot be known before the text runs (a command name made by an expansion, a place where
 * bash evaluates a variable's value as code, a shell reading code from stdin, a parse error, a
 * construct sh would read differently) is reported as `unclassified`, with why: a policy with an
 * allow-list denies it. The variables the text sets are reported too, so the policy can refuse
 * those that change what runs. tests/policy_corpus_test.ts checks all this against real bash.
 *
 * @module
 */
import { forEachChild, parse } from "unbash";
import type { Command, ParsedScript, Redirect, SyntaxNode, Word, WordPart } from "unbash";
import { ARRAY_LITERAL, builtinSinks, nodeSinks } from "./code_sinks.ts";
import { runsItsArguments, unwrap } from "./wrappers.ts";

/** One simple command, with each word resolved when no expansion can change it. */
export interface SimpleCommand {
  /** The program or builtin, as written once quotes are removed (never null: see unclassified). */
  name: string;
  /** The arguments after the name; null where a word is known only at run time. */
  args: (string | null)[];
  /** The arguments as written, for matching dynamic words by their text. */
  argsText: string[];
  /** The command's text in its source. */
  text: string;
  /** How it was reached: `$(...)`, `env`, `bash -c`, `find -exec`, ... outermost first. */
  via: string[];
  /** More arguments are added at run time (`xargs`, `find -exec ... {} +`). */
  appended: boolean;
}

/** Something the analysis cannot decide before the text runs. */
export interface Unclassified {
  text: string;
  why: string;
  via: string[];
  /**
   * The analysis stopped here (a syntax error, too long, too deep): what the text runs is not
   * known at all, so no rule can be applied. Every policy denies it.
   */
  fatal?: true;
  /**
   * Denied by every policy, deny-lists included: it changes how later text is read or what it
   * runs (`set -k`, history expansion, a variable name known only at run time).
   */
  always?: true;
}

/** A redirection that writes a file (`>`, `>>`, `&>`, `<>`, `>|`, `>&file`). */
export interface WriteRedirect {
  text: string;
  /** The file, when known. */
  target: string | null;
  via: string[];
}

/** A variable the text sets: by assignment, `read`, `for`, `export`, `${X:=}`, `env X=`, ... */
export interface VariableWrite {
  name: string;
  /** The value, when it is known before the text runs. */
  value: string | null;
  text: string;
  via: string[];
}

export interface ShellAnalysis {
  commands: SimpleCommand[];
  unclassified: Unclassified[];
  writes: WriteRedirect[];
  variables: VariableWrite[];
}

/**
 * `bash`: the text runs as `bash -c`. `dash`: as `sh -c` where sh is dash (Debian); what dash
 * reads differently from bash (`$'...'`, `&>`, `[[`, `((`, ...) is unclassified.
 */
export type ShellDialect = "bash" | "dash";

/**
 * A word resolved: its value when no expansion can change it, else null and why; `splits` when
 * it may become several words (an unquoted expansion, "$@", a glob).
 */
export type Resolved =
  | { value: string; text: string }
  | { value: null; text: string; why: string; splits: boolean };

/** What the checks of one syntax node can report. */
export interface NodeScope {
  unclassified(why: string, text?: string): void;
  /** Denied under every policy: see Unclassified.always. */
  unsafe(why: string, text?: string): void;
  /** The node sets this variable (to `value`, when known). */
  assigns(name: string, text?: string, value?: string | null): void;
  /** A name the text uses as an array (a later `declare name=$x` may then run code). */
  array(name: string): void;
  /**
   * `declare name=<value known at run time>`: bash evaluates it as a compound assignment, code
   * included, when `name` is an array.
   */
  dynamicDeclare(name: string, text: string): void;
}

/** What the checks of one simple command can report and follow. */
export interface CommandScope extends NodeScope {
  dialect: ShellDialect;
  /** The words after a wrapper's options: another command. */
  inner(words: Resolved[], how: string, appended?: boolean): void;
  /** Code held in a string, read again in `dialect`. */
  nested(code: string, how: string, dialect: ShellDialect): void;
}

/** Nested `sh -c`, `eval`, wrappers, ... deeper than this are unclassified. */
const MAX_DEPTH = 16;
/** More simple commands than this are unclassified as a whole (bounds memory and time). */
const MAX_COMMANDS = 10_000;
/**
 * Longer text is not analysed (and so denied). Analysis takes about 1 ms per KiB of ordinary
 * text on the server's event loop; pathological nesting stops at its first syntax error.
 */
export const MAX_POLICY_TEXT = 64 * 1024;

interface Context {
  out: ShellAnalysis;
  /** Inside double quotes or an unquoted heredoc body, where ' is not a quote for bash. */
  quoted: number;
  /** Names used as arrays, and declare-like writes that are dangerous for arrays. */
  arrays: Set<string>;
  dynamicDeclares: { name: string; text: string; via: string[] }[];
  /** Set by a fatal problem: the rest is not looked at (pathological texts stay cheap). */
  stopped: boolean;
  depth: number;
  dialect: ShellDialect;
  /** Characters read again for eval, sh -c, trap, ...: bounds `eval eval eval ...`. */
  budget: number;
}

function newContext(length: number, dialect: ShellDialect): Context {
  return {
    out: { commands: [], unclassified: [], writes: [], variables: [] },
    stopped: false,
    quoted: 0,
    arrays: new Set(),
    dynamicDeclares: [],
    depth: 0,
    dialect,
    budget: 2 * length + 4096,
  };
}

/** Analyses a shell text. Never throws: what it cannot analyse is unclassified. */
export function analyseShell(text: string, dialect: ShellDialect = "bash"): ShellAnalysis {
  const ctx = newContext(text.length, dialect);
  if (text.length > MAX_POLICY_TEXT) {
    fatal(ctx, text.slice(0, 80), `command longer than ${MAX_POLICY_TEXT} characters`, []);
  } else if (text.includes("\0")) {
    fatal(ctx, text.slice(0, 80), "a NUL character in the command", []);
  } else {
    scanSource(text, [], ctx, dialect);
  }
  for (const write of ctx.dynamicDeclares) {
    if (ctx.arrays.has(write.name)) {
      unclassified(
        ctx,
        write.text,
        `${write.name} is an array: a value known only at run time is evaluated as a compound assignment`,
        write.via,
      );
    }
  }
  return ctx.out;
}

/** Analyses a program run with these arguments and no shell (argv[0] is the program). */
export function analyseArgv(argv: readonly string[]): ShellAnalysis {
  const ctx = newContext(argv.join(" ").length, "bash");
  if (argv.some((word) => word.includes("\0"))) {
    fatal(ctx, argv.join(" ").slice(0, 80), "a NUL character in the command", []);
  } else if (argv.length > 0) {
    analyseWords(argv.map((word) => ({ value: word, text: word })), argv.join(" "), [], ctx);
  }
  return ctx.out;
}

function unclassified(ctx: Context, text: string, why: string, via: string[]): void {
  ctx.out.unclassified.push({ text, why, via });
}

function unsafe(ctx: Context, text: string, why: string, via: string[]): void {
  ctx.out.unclassified.push({ text, why, via, always: true });
}

/** The analysis cannot go on: what the text would run is unknown. */
function fatal(ctx: Context, text: string, why: string, via: string[]): void {
  ctx.out.unclassified.push({ text, why, via, fatal: true });
  ctx.stopped = true;
}

function addCommand(ctx: Context, command: SimpleCommand): void {
  const count = ctx.out.commands.length;
  if (count < MAX_COMMANDS) ctx.out.commands.push(command);
  else if (count === MAX_COMMANDS) {
    fatal(ctx, "", `more than ${MAX_COMMANDS} commands`, command.via);
  }
}

/** A word's value when no expansion can change it; else null and why. */
export function resolveWord(word: Word): Resolved {
  // An unquoted leading ~ is tilde expansion ($HOME, ~user, ~+ = $PWD, ~- = $OLDPWD).
  if (word.text.startsWith("~")) {
    return { value: null, text: word.text, why: `tilde expansion ${word.text}`, splits: false };
  }
  // Decided from the parts, never from `value`: unbash's value for "$X" is the text "$X".
  if (!word.parts) return { value: word.value, text: word.text };
  let out = "";
  let first: string | null = null;
  let splits = false;
  for (const part of word.parts) {
    const resolved = resolvePart(part);
    if (resolved.value === null) {
      first ??= resolved.why;
      splits ||= maySplit(part);
    } else out += resolved.value;
  }
  return first === null
    ? { value: out, text: word.text }
    : { value: null, text: word.text, why: first, splits };
}

/** What a word is sure to start with: its parts before the first one known only at run time. */
function staticPrefix(word: Word): string {
  if (!word.parts) return word.value;
  let out = "";
  for (const part of word.parts) {
    const resolved = resolvePart(part);
    if (resolved.value === null) break;
    out += resolved.value;
  }
  return out;
}

/** $#, $?, $$, $! and $((...)) are numbers: they never become several words. */
function maySplit(part: WordPart): boolean {
  switch (part.type) {
    case "SimpleExpansion":
      return !/^\$[#?$!]$/.test(part.text);
    case "ParameterExpansion":
    case "CommandExpansion":
    case "Glob":
    case "ExtendedGlob":
    case "BraceExpansion":
      return true;
    case "DoubleQuoted":
      // "$@", "${a[@]}", "${!prefix@}": several words even within quotes.
      return part.parts.some((inner) =>
        (inner.type === "SimpleExpansion" && inner.text === "$@") ||
        (inner.type === "ParameterExpansion" &&
          (inner.parameter === "@" || inner.index?.text === "@" ||
            inner.operation?.type === "Names"))
      );
    default:
      return false;
  }
}

function resolvePart(part: WordPart): { value: string } | { value: null; why: string } {
  switch (part.type) {
    case "Literal":
    case "SingleQuoted":
    case "AnsiCQuoted":
      return { value: part.value };
    case "DoubleQuoted": {
      let out = "";
      for (const inner of part.parts) {
        if (inner.type !== "Literal") {
          return { value: null, why: `${kindOf(inner.type)} in ${part.text}` };
        }
        out += inner.value;
      }
      return { value: out };
    }
    case "LocaleString":
      return { value: null, why: `locale string ${part.text} (translated at run time)` };
    case "Glob":
    case "ExtendedGlob":
      return { value: null, why: `glob ${part.text}` };
    case "BraceExpansion":
      return { value: null, why: `brace expansion ${part.text}` };
    default:
      return { value: null, why: `${kindOf(part.type)} ${part.text}` };
  }
}

function kindOf(type: string): string {
  switch (type) {
    case "SimpleExpansion":
    case "ParameterExpansion":
      return "parameter expansion";
    case "CommandExpansion":
      return "command substitution";
    case "ArithmeticExpansion":
      return "arithmetic expansion";
    case "ProcessSubstitution":
      return "process substitution";
    default:
      return type;
  }
}

function scanSource(source: string, via: string[], ctx: Context, dialect: ShellDialect): void {
  if (ctx.stopped) return;
  if (ctx.depth > MAX_DEPTH) {
    fatal(ctx, source.slice(0, 80), `nested deeper than ${MAX_DEPTH} levels`, via);
    return;
  }
  if (/\$(\\\r?\n)/.test(source) || continuationInBraces(source)) {
    // bash and dash drop a line continuation before they read `$`; unbash keeps the $ literal.
    fatal(
      ctx,
      source.slice(0, 80),
      "a line continuation after $ or inside ${...} is read differently by the shell",
      via,
    );
    return;
  }
  if (dialect === "dash" && source.includes("$'")) {
    unclassified(
      ctx,
      source.slice(0, 80),
      "$'...' is not sh syntax: sh and bash read it differently",
      via,
    );
    return;
  }
  let script: ParsedScript;
  try {
    script = parse(source);
  } catch (error) {
    fatal(
      ctx,
      source.slice(0, 80),
      `the parser failed: ${String(error).slice(0, 200)}`,
      via,
    );
    return;
  }
  const outer = ctx.dialect;
  ctx.dialect = dialect;
  try {
    walk(script, script.source ?? source, via, ctx);
  } catch (error) {
    // unbash resolves word parts lazily: pathological nesting can overflow the stack there.
    fatal(ctx, source.slice(0, 80), `cannot analyse: ${String(error).slice(0, 120)}`, via);
  } finally {
    ctx.dialect = outer;
  }
}

function nodeScope(ctx: Context, text: string, via: string[]): NodeScope {
  return {
    unclassified: (why, part = text) => unclassified(ctx, part, why, via),
    unsafe: (why, part = text) => unsafe(ctx, part, why, via),
    assigns: (name, part = text, value = null) =>
      ctx.out.variables.push({ name, value, text: part, via }),
    array: (name) => ctx.arrays.add(name),
    dynamicDeclare: (name, part) => ctx.dynamicDeclares.push({ name, text: part, via }),
  };
}

function walk(node: SyntaxNode, source: string, via: string[], ctx: Context): void {
  if (ctx.stopped) return;
  // A substitution's script may carry its own decoded source (escaped backticks), and its own
  // parse errors. bash runs the lines before a syntax error, and what unbash recovers after one
  // need not be what bash reads: an error anywhere stops the analysis.
  if (node.type === "Script") {
    const script = node as ParsedScript;
    if (script.source !== undefined) source = script.source;
    const error = script.errors?.[0];
    if (error) {
      fatal(
        ctx,
        source.slice(error.pos, error.pos + 40),
        `syntax error: ${error.message} at ${error.pos}`,
        via,
      );
      return;
    }
  }
  const text = "text" in node && typeof node.text === "string"
    ? node.text
    : source.slice(node.pos, node.end);
  if (node.type === "Command") onCommand(node, source, via, ctx);
  if (node.type === "Redirect") onRedirect(node, source, via, ctx);
  if (node.type === "AnsiCQuoted" && ANSI_C_MISREAD.test(node.text)) {
    // $'\x{65}', a line continuation or a byte that is not UTF-8: decoded differently by bash.
    unsafe(ctx, node.text.slice(0, 80), "this $'...' escape is decoded differently by bash", via);
  }
  if (
    node.type === "ProcessSubstitution" &&
    (/[^\s;&|()<>]/.test(source[node.pos - 1] ?? " ") ||
      /[^\s;&|()<>]/.test(source[node.end] ?? " "))
  ) {
    // a<()b is one word for bash ("ab" when empty), not three.
    unsafe(ctx, text.slice(0, 80), "a process substitution joined to other text", via);
  }
  if (node.type === "ParameterExpansion" && ctx.quoted > 0 && node.text.includes("'")) {
    // Inside double quotes or a heredoc body, whether ' in ${x:-'...'} quotes depends on the
    // shell and its mode (dash, bash --posix, extquote): the parser cannot know which.
    unclassified(
      ctx,
      node.text.slice(0, 80),
      "a ' inside ${...} within double quotes or a heredoc: shells read it differently",
      via,
    );
  }
  if (
    node.type === "HereDoc" && ctx.dialect === "dash" &&
    !/^[\w'"-]*$/.test(node.delimiter?.text ?? "")
  ) {
    // dash ends a heredoc whose delimiter holds ` or ${ elsewhere than bash and unbash do.
    unclassified(
      ctx,
      node.delimiter?.text ?? "",
      "this heredoc delimiter is read differently by sh",
      via,
    );
  }
  if (
    node.type === "Pipeline" &&
    node.prefixes.some((p) => p.type === "Negation" && source[p.end] === "(")
  ) {
    // With extglob on, !(...) is a glob, not a negated subshell.
    unclassified(ctx, text.slice(0, 80), "!( is a glob when extglob is on", via);
  }
  if (ctx.dialect === "dash") bashOnly(node, text, via, ctx);
  nodeSinks(node, nodeScope(ctx, text, via));
  let childVia = via;
  if (node.type === "CommandExpansion") {
    childVia = [...via, node.text.startsWith("`") ? "`...`" : "$(...)"];
  }
  if (node.type === "ProcessSubstitution") childVia = [...via, `${node.operator}(...)`];
  const quotes = node.type === "DoubleQuoted" ||
    (node.type === "HereDoc" && !node.delimiter?.quoted);
  if (quotes) ctx.quoted++;
  forEachChild(node, (child) => walk(child, source, childVia, ctx));
  if (quotes) ctx.quoted--;
}

/** Syntax dash reads differently from bash (`ls &>/dev/null rm x` runs rm in dash). */
function bashOnly(node: SyntaxNode, text: string, via: string[], ctx: Context): void {
  let what: string | null = null;
  switch (node.type) {
    case "ArithmeticCommand":
    case "ArithmeticFor":
    case "TestCommand":
    case "Coproc":
    case "Select":
    case "ProcessSubstitution":
    case "HereString":
    case "Time":
    case "ArrayValue":
    case "LocaleString":
    case "ExtendedGlob":
      what = node.type;
      break;
    case "Function":
      if (text.startsWith("function")) what = "the function keyword";
      break;
    case "Redirect":
      if (node.operator === "&>" || node.operator === "&>>") what = node.operator;
      break;
    case "Pipeline":
      if (node.operators.includes("|&")) what = "|&";
      break;
    case "ParameterExpansion":
      if (
        node.index || node.prefix === "!" ||
        (node.operation && node.operation.type !== "Default" && node.operation.type !== "Remove")
      ) what = "this parameter expansion";
      break;
  }
  if (what) {
    unclassified(ctx, text.slice(0, 80), `${what} is bash syntax: sh reads it differently`, via);
  }
}

const WRITE_OPERATORS = new Set([">", ">>", "<>", ">|", "&>", "&>>"]);
const HARMLESS_TARGETS = new Set(["/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"]);

/**
 * A line continuation inside `${...}`, which the shell removes before it reads the expansion and
 * the parser does not. A linear scan that errs on the side of finding one.
 */
function continuationInBraces(source: string): boolean {
  let open = 0;
  for (let i = 0; i < source.length; i++) {
    const char = source[i];
    if (char === "$" && source[i + 1] === "{") open++;
    else if (char === "}" && open > 0) open--;
    else if (char === "\\" && open > 0 && (source[i + 1] === "\n" || source[i + 1] === "\r")) {
      return true;
    }
  }
  return false;
}

/** `$'...'` escapes unbash decodes differently from bash. */
const ANSI_C_MISREAD =
  /\\x\{|\\\r?\n|\\x[89a-fA-F][0-9a-fA-F]|\\[2-7][0-7][0-7]|\\u[dD][89a-fA-F]|\\U0*[1-9a-fA-F][0-9a-fA-F]{5,}|\\c\P{ASCII}/u;

function onRedirect(redirect: Redirect, source: string, via: string[], ctx: Context): void {
  const target = redirect.target ? resolveWord(redirect.target) : null;
  if (
    (redirect.operator === "<&" || redirect.operator === ">&") &&
    /^-./s.test(redirect.target?.text ?? "")
  ) {
    // bash splits <&-word into <&- and a new word, which may be the command.
    unsafe(
      ctx,
      source.slice(redirect.pos, redirect.end),
      "<&- or >&- joined to a word: bash reads the rest as a new word",
      via,
    );
    return;
  }
  if (
    redirect.target &&
    (target?.value === null
      // Safe only when it starts as a relative path, or under a whole first directory that is
      // not /dev (`/tmp/`): `/`, `/d` or `/de` could still become /dev/tcp.
      ? !/^(\.|[^/]|\/(?!dev\/)[^/]+\/)/.test(staticPrefix(redirect.target))
      : /^\/dev\/(tcp|udp)\//.test(target?.value ?? ""))
  ) {
    // bash opens a network connection for /dev/tcp/... and /dev/udp/...: data can be sent
    // through it. A target known only at run time could be one, unless it starts as a path that
    // is not under /dev.
    ctx.out.writes.push({
      text: source.slice(redirect.pos, redirect.end),
      target: target?.value ?? null,
      via,
    });
    return;
  }
  const writes = WRITE_OPERATORS.has(redirect.operator) ||
    // >&2 duplicates a descriptor, >&2- moves one, >&- closes one; >&file (bash) writes the file.
    // A descriptor above 2 was opened by the text, perhaps to a socket (3</dev/tcp/... >&3).
    (redirect.operator === ">&" && !/^([012]-?|-)$/.test(target?.value ?? ""));
  if (!writes) return;
  if (target?.value && HARMLESS_TARGETS.has(target.value)) return;
  ctx.out.writes.push({
    text: source.slice(redirect.pos, redirect.end),
    target: target?.value ?? null,
    via,
  });
}

function onCommand(command: Command, source: string, via: string[], ctx: Context): void {
  if (!command.name) return; // assignments or redirections only; their parts are walked anyway
  const words: Resolved[] = [resolveWord(command.name)];
  for (const item of command.suffix) {
    if (item.type === "Word") words.push(resolveWord(item));
    else if (item.type === "Assignment") {
      // `declare x="$1"`: only the name matters to the builtins that take names.
      const value = item.value.type === "Word" ? resolveWord(item.value) : null;
      const prefix = item.value.type === "Word"
        ? item.text.slice(0, item.text.length - item.value.text.length)
        : "";
      words.push(
        value?.value != null ? { value: prefix + value.value, text: item.text } : {
          value: null,
          text: item.text,
          why: value?.value === null ? `assignment value: ${value.why}` : ARRAY_LITERAL,
          splits: false,
        },
      );
    }
  }
  analyseWords(words, source.slice(command.pos, command.end), via, ctx);
}

/** Records one simple command from its words, then looks inside wrappers and code strings. */
function analyseWords(words: Resolved[], text: string, via: string[], ctx: Context): void {
  const [first, ...rest] = words;
  if (!first) return;
  if (first.value === null) {
    unclassified(ctx, text, `the command name is dynamic: ${first.why}`, via);
    return;
  }
  addCommand(ctx, {
    name: first.value,
    args: rest.map((word) => word.value),
    argsText: rest.map((word) => word.text),
    text,
    via,
    appended: false,
  });
  const name = first.value.slice(first.value.lastIndexOf("/") + 1);
  const scope: CommandScope = {
    ...nodeScope(ctx, text, via),
    dialect: ctx.dialect,
    inner: (inner, how, appended = false) => innerCommand(inner, how, text, via, ctx, appended),
    nested: (code, how, dialect) => nested(code, how, via, ctx, dialect),
  };
  builtinSinks(name, words, scope);
  unwrap(name, words, scope);
}

/** Reads code held in a string again (eval, sh -c, trap, watch). */
function nested(
  code: string,
  how: string,
  via: string[],
  ctx: Context,
  dialect: ShellDialect,
): void {
  ctx.budget -= code.length;
  if (ctx.budget < 0) {
    fatal(ctx, code.slice(0, 80), "too much nested code to read again", via);
    return;
  }
  ctx.depth++;
  scanSource(code, [...via, how], ctx, dialect);
  ctx.depth--;
}

/** The words after a wrapper's options: another command. */
function innerCommand(
  words: Resolved[],
  how: string,
  text: string,
  via: string[],
  ctx: Context,
  appended: boolean,
): void {
  if (words.length === 0 || ctx.stopped) return;
  if (ctx.depth >= MAX_DEPTH) {
    fatal(ctx, text.slice(0, 80), `wrappers nested deeper than ${MAX_DEPTH} levels`, via);
    return;
  }
  const before = ctx.out.commands.length;
  ctx.depth++;
  analyseWords(words, text, [...via, how], ctx);
  ctx.depth--;
  const added = ctx.out.commands[before];
  if (!appended || !added) return;
  added.appended = true;
  // Words xargs adds to `env`, `bash -c`, `timeout 5`, ... could become the command itself.
  const name = added.name.slice(added.name.lastIndexOf("/") + 1);
  if (runsItsArguments(name)) {
    unclassified(ctx, text, `${how} adds words to ${name}, which could run them as a command`, [
      ...via,
      how,
    ]);
  }
}
