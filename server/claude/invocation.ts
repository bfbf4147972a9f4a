/**
 * Recognising a `claude` run inside a shell command, and building one that no prompt can break
 * out of.
 *
 * Nothing here executes anything: the command text is only read. Words are split and unquoted by
 * `shell-quote`'s parser; what that parser does not model (it reads a newline as a blank, takes a
 * `#` inside a word for a comment, and knows no here-documents or command substitutions) is
 * handled by {@link splitScript} before it, so each text it sees is one logical line.
 *
 * The option table follows `claude --help` of Claude Code 2.1.197, whose parser is commander:
 * `-p/--print` is a flag and the prompt is the positional argument, so `claude -p -rf` reads `-rf`
 * as `-r f` (checked against the real 2.1.197 binary: "--resume requires a valid session ID").
 * That is why {@link claudeArgv} always puts the prompt after `--`.
 *
 * @module
 */

import parseShell from "shell-quote/parse.js";

/** The values of Claude Code's `--output-format`. */
export type ClaudeOutputFormat = "text" | "json" | "stream-json";

/** A `claude` run found in a shell command. */
export interface ClaudeInvocation {
  /**
   * The words from the one naming `claude` on, as the shell would pass them: quotes removed,
   * redirections dropped, and parameter expansions kept as written (`$PROMPT`), since nothing is
   * expanded.
   */
  argv: string[];
  /** The word that named Claude Code: `claude`, `./node_modules/.bin/claude`, or the npm package (`@anthropic-ai/claude-code@latest`) behind `npx`. */
  program: string;
  /** Whether `-p`/`--print` was given (a non-interactive run that prints its answer and exits). */
  print: boolean;
  /** The prompt argument; null when none was given (Claude then reads its prompt from stdin). */
  prompt: string | null;
  /** From `--output-format`; "text" when absent or not one of the three values Claude accepts. */
  outputFormat: ClaudeOutputFormat;
  /** From `--model`, when given. */
  model?: string;
  /** Whether `--verbose` was given (required by Claude for `-p --output-format stream-json`). */
  verbose: boolean;
  /** The subcommand (`mcp`, `doctor`, `update`...) when the words run one instead of a session. */
  subcommand?: string;
}

/** Options of {@link claudeArgv}. */
export interface ClaudeArgvOptions {
  /** @default "text" (Claude's own default; no `--output-format` word is added) */
  outputFormat?: ClaudeOutputFormat;
  /** Passed as `--model=<model>`. */
  model?: string;
  /** More words, placed after the built options and before `--` and the prompt. */
  extraArgs?: string[];
  /** The program word. @default "claude" */
  program?: string;
}

/**
 * The first `claude` run in a shell command, or null when the command runs none.
 *
 * Every simple command of the text counts: `cd repo && claude -p ...`, pipelines, `;` lists,
 * subshells, `if`/`for` bodies and command substitutions. Claude may stand behind `VAR=value`
 * assignments, `env [-i] [VAR=v]`, `npx [-y] @anthropic-ai/claude-code` or `npx claude`, a path,
 * `stdbuf -oL`, `nice`, `timeout 60`, `nohup`, `exec`, `command`, `sudo`, `time`, `setsid`,
 * `xargs`, or `sh -c '...'`. A word that merely mentions claude (`echo claude`, `cat claude.md`,
 * `claude-foo`, a comment) is not a run.
 *
 * @example
 * ```ts
 * const run = claudeInvocation(`cd repo && claude -p "fix the tests" --output-format stream-json --verbose`);
 * // run?.prompt === "fix the tests", run?.outputFormat === "stream-json"
 * ```
 */
export function claudeInvocation(command: string): ClaudeInvocation | null {
  return claudeInvocations(command)[0] ?? null;
}

/**
 * Every `claude` run in a shell command (see {@link claudeInvocation}), in the order of the text,
 * except that a command substitution (`$(claude ...)`) comes before the line that holds it, which
 * is also the order in which they run when that line is a single command.
 */
export function claudeInvocations(command: string): ClaudeInvocation[] {
  const found: ClaudeInvocation[] = [];
  analyzeScript(command, 0, found);
  return found;
}

/**
 * The argv of a `claude -p` run of `prompt`: `["claude", "-p", ...options, "--", prompt]`.
 *
 * The prompt always follows `--`, so a prompt that starts with `-` is not read as an option.
 * `stream-json` adds `--verbose`, which Claude requires for it with `-p` ("Error: When using
 * --print, --output-format=stream-json requires --verbose"). Value options use the `--name=value`
 * form so that a value starting with `-` stays a value.
 *
 * @throws {TypeError} when the prompt is empty, when a word holds a NUL or a lone UTF-16
 * surrogate (see {@link shellQuoteArgv}), or when `extraArgs` would change how the prompt is read
 * (a stray word, or an option expecting a value at its end, which would take the `--`).
 */
export function claudeArgv(prompt: string, options: ClaudeArgvOptions = {}): string[] {
  if (prompt.trim() === "") {
    throw new TypeError("Cannot build a claude command: the prompt is empty");
  }
  const argv = [options.program ?? "claude", "-p"];
  const format = options.outputFormat ?? "text";
  if (format !== "text") argv.push(`--output-format=${format}`);
  if (format === "stream-json") argv.push("--verbose");
  if (options.model !== undefined) {
    if (options.model.trim() === "") {
      throw new TypeError("Cannot build a claude command: the model is empty");
    }
    argv.push(`--model=${options.model}`);
  }
  for (const arg of options.extraArgs ?? []) checkExtraArg(arg);
  argv.push(...(options.extraArgs ?? []), "--", prompt);
  for (const [index, word] of argv.entries()) assertArgvWord(word, index);
  // The words are read back the way Claude's parser reads them: extra arguments that end in an
  // option expecting a value would take "--" as that value, and the prompt would be read as
  // options again.
  const read = readClaudeArgv(argv);
  if (
    read.endOfOptions !== argv.length - 2 || read.invocation.prompt !== prompt ||
    read.invocation.subcommand !== undefined
  ) {
    throw new TypeError(
      `Cannot build a claude command: extraArgs ${JSON.stringify(options.extraArgs ?? [])} ` +
        "would change how the prompt is read",
    );
  }
  return argv;
}

/** Options a caller may not add: they would change how (or whether) the prompt is read. */
const REFUSED_EXTRA = new Set([
  "--print",
  "--output-format",
  "--input-format",
  "--help",
  "--version",
  "--verbose",
]);

/**
 * Extra arguments fail closed: only long options Claude is known to have, values attached with
 * `=`, so an option this table does not know (or one that takes a value we do not expect) can
 * never swallow the `--` before the prompt.
 */
function checkExtraArg(arg: string): void {
  const eq = arg.indexOf("=");
  const name = arg.startsWith("--") ? (eq === -1 ? arg : arg.slice(0, eq)) : null;
  const arity = name === null ? undefined : LONG_OPTIONS.get(name);
  const refuse = (why: string) => {
    throw new TypeError(
      `Cannot build a claude command: extra argument ${JSON.stringify(arg)} ${why}`,
    );
  };
  if (name !== null && REFUSED_EXTRA.has(name)) refuse("is set by cc-executor itself");
  if (name === null || arity === undefined) {
    refuse("is not a known long option of claude (--name or --name=value)");
  }
  if ((arity === "required" || arity === "variadic") && eq === -1) {
    refuse(`needs its value attached: ${name}=<value>`);
  }
  if (arity === "flag" && eq !== -1) refuse("takes no value");
}

/**
 * Quotes argv words into one string for `sh -c` that the shell splits back into exactly those
 * words, whatever they contain.
 *
 * Every word that is not plainly safe is put in single quotes, the one POSIX quoting inside which
 * no character is special; a `'` in the word becomes `'\''`. (shell-quote's own `quote` picks
 * between several quoting styles; the single rule here is what makes the guarantee easy to check.)
 *
 * @throws {TypeError} when a word holds a NUL (no argv can carry one) or a lone UTF-16 surrogate
 * (it cannot be encoded, so the shell would receive a different word).
 */
export function shellQuoteArgv(argv: readonly string[]): string {
  return argv.map((word, index) => {
    assertArgvWord(word, index);
    return SAFE_WORD.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
  }).join(" ");
}

// No `=` (a first word `A=b` is an assignment), `~` (tilde expansion), `#`, globs, or blanks.
const SAFE_WORD = /^[A-Za-z0-9_\/.,:@%+-]+$/;

function assertArgvWord(word: string, index: number): void {
  if (word.includes("\0")) {
    throw new TypeError(`Cannot quote argv: word ${index} contains a NUL character`);
  }
  if (!word.isWellFormed()) {
    throw new TypeError(`Cannot quote argv: word ${index} contains a lone UTF-16 surrogate`);
  }
}

// ---------------------------------------------------------------------------
// Reading Claude's own arguments

/** How an option takes its value, in commander's terms. */
type Arity = "flag" | "required" | "optional" | "variadic";

// From `claude --help` (Claude Code 2.1.197), plus options older releases documented
// (--max-turns, --system-prompt-file, --permission-prompt-tool, ...).
const LONG_OPTIONS: ReadonlyMap<string, Arity> = new Map<string, Arity>([
  ...[
    "--add-dir",
    "--allowedTools",
    "--allowed-tools",
    "--betas",
    "--disallowedTools",
    "--disallowed-tools",
    "--file",
    "--mcp-config",
    "--tools",
  ].map((name): [string, Arity] => [name, "variadic"]),
  ...[
    "--agent",
    "--agents",
    "--append-system-prompt",
    "--append-system-prompt-file",
    "--debug-file",
    "--effort",
    "--fallback-model",
    "--input-format",
    "--json-schema",
    "--max-budget-usd",
    "--max-thinking-tokens",
    "--max-turns",
    "--model",
    "--name",
    "--output-format",
    "--permission-mode",
    "--permission-prompt-tool",
    "--plugin-dir",
    "--plugin-url",
    "--remote-control-session-name-prefix",
    "--resume-session-at",
    "--session-id",
    "--setting-sources",
    "--settings",
    "--system-prompt",
    "--system-prompt-file",
  ].map((name): [string, Arity] => [name, "required"]),
  ...["--debug", "--from-pr", "--prompt-suggestions", "--remote-control", "--resume", "--worktree"]
    .map((name): [string, Arity] => [name, "optional"]),
]);

const SHORT_OPTIONS: ReadonlyMap<string, { long: string; arity: Arity }> = new Map([
  ["c", { long: "--continue", arity: "flag" as Arity }],
  ["d", { long: "--debug", arity: "optional" as Arity }],
  ["h", { long: "--help", arity: "flag" as Arity }],
  ["n", { long: "--name", arity: "required" as Arity }],
  ["p", { long: "--print", arity: "flag" as Arity }],
  ["r", { long: "--resume", arity: "optional" as Arity }],
  ["v", { long: "--version", arity: "flag" as Arity }],
  ["w", { long: "--worktree", arity: "optional" as Arity }],
]);

const SUBCOMMANDS = new Set([
  "agents",
  "auth",
  "auto-mode",
  "config",
  "doctor",
  "gateway",
  "install",
  "mcp",
  "migrate-installer",
  "plugin",
  "plugins",
  "project",
  "setup-token",
  "ultrareview",
  "update",
  "upgrade",
]);

const OUTPUT_FORMATS: ReadonlySet<string> = new Set(["text", "json", "stream-json"]);

/** commander's test for "this argument looks like an option". */
function looksLikeOption(word: string): boolean {
  return word.length > 1 && word.startsWith("-");
}

/**
 * Reads a `claude` argv (program word first) the way Claude's commander parser does: options may
 * follow operands, `--name=value` and clustered short flags (`-pc`, `-rf` = `-r f`) work, a
 * required value is the next word whatever it is, an optional one only when it does not look like
 * an option, a variadic one (`--allowedTools A B`) takes words until the next option-like word,
 * and `--` ends the options.
 */
function parseClaudeArgv(argv: string[]): ClaudeInvocation {
  return readClaudeArgv(argv).invocation;
}

/** {@link parseClaudeArgv}, also telling where the `--` that ended the options stands (or null). */
function readClaudeArgv(
  argv: string[],
): { invocation: ClaudeInvocation; endOfOptions: number | null } {
  let endOfOptions: number | null = null;
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const operands: string[] = [];
  let variadic = false;
  const rest = argv.slice(1);
  for (let i = 0; i < rest.length; i++) {
    const word = rest[i]!;
    if (word === "--") {
      operands.push(...rest.slice(i + 1));
      endOfOptions = i + 1 + (argv.length - 1 - rest.length); // rest may have grown (clusters)
      break;
    }
    if (variadic && !looksLikeOption(word)) continue;
    variadic = false;
    if (!looksLikeOption(word)) {
      operands.push(word);
      continue;
    }
    let name: string;
    let arity: Arity;
    let attached: string | undefined;
    if (word.startsWith("--")) {
      const eq = word.indexOf("=");
      name = eq === -1 ? word : word.slice(0, eq);
      attached = eq === -1 ? undefined : word.slice(eq + 1);
      arity = LONG_OPTIONS.get(name) ?? "flag";
    } else {
      const short = SHORT_OPTIONS.get(word[1]!);
      if (short === undefined) continue; // an unknown short option: commander would stop here
      name = short.long;
      arity = short.arity;
      if (word.length > 2) {
        if (arity === "flag") {
          // `-pc` is `-p -c`: the rest of the cluster is read again as its own option.
          flags.add(name);
          rest.splice(i + 1, 0, `-${word.slice(2)}`);
          continue;
        }
        attached = word.slice(2);
      }
    }
    if (arity === "flag") {
      flags.add(name);
      continue;
    }
    let value = attached;
    if (value === undefined) {
      const next = rest[i + 1];
      if (arity === "optional") {
        if (next !== undefined && !looksLikeOption(next)) value = next;
      } else {
        value = next;
      }
      if (value !== undefined) i++;
    }
    if (value !== undefined) values.set(name, value);
    else flags.add(name);
    if (arity === "variadic") variadic = true;
  }

  const format = values.get("--output-format");
  const invocation: ClaudeInvocation = {
    argv,
    program: argv[0]!,
    print: flags.has("--print"),
    prompt: null,
    outputFormat: format !== undefined && OUTPUT_FORMATS.has(format)
      ? format as ClaudeOutputFormat
      : "text",
    verbose: flags.has("--verbose"),
  };
  const model = values.get("--model");
  if (model !== undefined) invocation.model = model;
  const first = operands[0];
  if (first !== undefined && SUBCOMMANDS.has(first) && !invocation.print) {
    invocation.subcommand = first;
  } else if (first !== undefined) {
    invocation.prompt = first;
  }
  return { invocation, endOfOptions };
}

// ---------------------------------------------------------------------------
// Reading the shell text

/** How deep `sh -c '...'`, `$(...)` and friends are followed. */
const MAX_DEPTH = 8;

type ShellToken = string | { op: string; pattern?: string } | { comment: string };

function analyzeScript(text: string, depth: number, found: ClaudeInvocation[]): void {
  if (depth > MAX_DEPTH) return;
  for (const segment of splitScript(text)) {
    if (segment.kind === "script") {
      analyzeScript(segment.text, depth + 1, found);
      continue;
    }
    // Parameter expansions are kept as written (`$HOME`), never looked up: nothing is expanded.
    const tokens = parseShell(segment.text, (name: string) => `$${name}`) as ShellToken[];
    for (const words of simpleCommands(tokens)) analyzeCommand(words, depth, found);
  }
}

/** A logical line for shell-quote, or the body of a command substitution (see {@link splitScript}). */
export type ScriptSegment = { kind: "line"; text: string } | { kind: "script"; text: string };

// Characters after which a new word starts.
const WORD_BREAK = new Set([" ", "\t", ";", "&", "|", "(", ")", "<", ">"]);
const SUBSTITUTION = "__cc_substitution__";

/**
 * Cuts a script into logical lines at unquoted newlines, drops comments and here-document bodies,
 * and lifts command substitutions (`$(...)`, backquotes) out as scripts of their own, listed
 * before the line that holds them (they run first). A `#` inside a word is escaped and an
 * io-number (`2>`) dropped, so shell-quote reads the line as a shell would.
 */
export function splitScript(text: string): ScriptSegment[] {
  const segments: ScriptSegment[] = [];
  const pending: { delimiter: string; stripTabs: boolean }[] = [];
  let out = "";
  let i = 0;
  const atWordStart = () => out === "" || WORD_BREAK.has(out[out.length - 1]!);
  const endLine = () => {
    if (out.trim() !== "") segments.push({ kind: "line", text: out });
    out = "";
    // Here-document bodies follow the line that opened them: they are data, not commands.
    for (const doc of pending.splice(0)) {
      while (i < text.length) {
        let end = text.indexOf("\n", i);
        if (end === -1) end = text.length;
        let line = text.slice(i, end);
        i = end + 1;
        if (doc.stripTabs) line = line.replace(/^\t+/, "");
        if (line === doc.delimiter) break;
      }
    }
  };
  const substitution = (inner: string) => {
    segments.push({ kind: "script", text: inner });
    out += SUBSTITUTION;
  };

  let quote: "none" | "single" | "double" | "ansi" = "none";
  while (i < text.length) {
    const c = text[i]!;
    const next = text[i + 1];
    if (quote === "single") {
      out += c;
      i++;
      if (c === "'") quote = "none";
      continue;
    }
    if (quote === "ansi") {
      if (c === "\\" && next !== undefined) {
        out += c + next;
        i += 2;
        continue;
      }
      out += c;
      i++;
      if (c === "'") quote = "none";
      continue;
    }
    if (c === "\\") {
      if (next === "\n") { // a line continuation
        i += 2;
        continue;
      }
      out += next === undefined ? c : c + next;
      i += 2;
      continue;
    }
    if (c === "$" && next === "(") {
      if (text[i + 2] === "(") { // arithmetic: no command inside
        const end = findClose(text, i + 3, 2);
        out += "0";
        i = end;
        continue;
      }
      const end = findClose(text, i + 2, 1);
      substitution(text.slice(i + 2, end - 1));
      i = end;
      continue;
    }
    if (c === "`") {
      const close = findBackquote(text, i + 1);
      substitution(text.slice(i + 1, close).replace(/\\([`$\\])/g, "$1"));
      i = close + 1;
      continue;
    }
    if (quote === "double") {
      out += c;
      i++;
      if (c === '"') quote = "none";
      continue;
    }
    // Unquoted.
    if (c === "'") {
      quote = "single";
    } else if (c === '"') {
      quote = "double";
    } else if (c === "$" && next === "'") {
      quote = "ansi";
      out += "$'";
      i += 2;
      continue;
    } else if (c === "\n") {
      i++;
      endLine();
      continue;
    } else if (c === "#") {
      if (atWordStart()) {
        while (i < text.length && text[i] !== "\n") i++;
        continue;
      }
      out += "\\#";
      i++;
      continue;
    } else if (/[0-9]/.test(c) && atWordStart()) {
      const digits = /^[0-9]+(?=[<>])/.exec(text.slice(i, i + 12));
      if (digits !== null) { // an io-number (`2>&1`): not a word of the command
        i += digits[0].length;
        continue;
      }
    } else if (c === "<" && next === "<" && text[i + 2] !== "<" && text[i + 2] !== "(") {
      const doc = readHereDocument(text, i + 2);
      pending.push({ delimiter: doc.delimiter, stripTabs: doc.stripTabs });
      out += text.slice(i, doc.end);
      i = doc.end;
      continue;
    }
    out += c;
    i++;
  }
  endLine();
  return segments;
}

/** Index just past the `)` that closes a `$(` (or `))` for `$((`), honouring quotes and nesting. */
function findClose(text: string, start: number, depth: number): number {
  let i = start;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "\\") {
      i += 2;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      i = end === -1 ? text.length : end + 1;
    } else if (c === '"') {
      i = skipDoubleQuoted(text, i + 1);
    } else if (c === "`") {
      i = findBackquote(text, i + 1) + 1;
    } else if (c === "(") {
      depth++;
      i++;
    } else if (c === ")") {
      depth--;
      i++;
      if (depth === 0) return i;
    } else {
      i++;
    }
  }
  return text.length;
}

function skipDoubleQuoted(text: string, start: number): number {
  let i = start;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "\\") i += 2;
    else if (c === '"') return i + 1;
    else if (c === "$" && text[i + 1] === "(") i = findClose(text, i + 2, 1);
    else if (c === "`") i = findBackquote(text, i + 1) + 1;
    else i++;
  }
  return text.length;
}

/** Index of the backquote that closes one opened before `start` (the text's length if none). */
function findBackquote(text: string, start: number): number {
  let i = start;
  while (i < text.length) {
    if (text[i] === "\\") i += 2;
    else if (text[i] === "`") return i;
    else i++;
  }
  return text.length;
}

/** Reads the delimiter word after `<<` (quotes removed, `-` noted); `end` is where it stops. */
function readHereDocument(
  text: string,
  start: number,
): { delimiter: string; stripTabs: boolean; end: number } {
  let i = start;
  const stripTabs = text[i] === "-";
  if (stripTabs) i++;
  while (text[i] === " " || text[i] === "\t") i++;
  let delimiter = "";
  while (i < text.length) {
    const c = text[i]!;
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      const stop = end === -1 ? text.length : end;
      delimiter += text.slice(i + 1, stop);
      i = stop + 1;
    } else if (c === "\\" && i + 1 < text.length) {
      delimiter += text[i + 1];
      i += 2;
    } else if (c === "\n" || WORD_BREAK.has(c)) {
      break;
    } else {
      delimiter += c;
      i++;
    }
  }
  return { delimiter, stripTabs, end: Math.min(i, text.length) };
}

const SEPARATORS = new Set([
  ";",
  "&&",
  "||",
  "|",
  "|&",
  "&",
  ";;",
  ";&",
  ";;&",
  "(",
  ")",
  "<(",
  ">(",
]);

/** Splits shell-quote's tokens into simple commands, dropping redirections and their targets. */
function simpleCommands(tokens: ShellToken[]): string[][] {
  const commands: string[][] = [];
  let words: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (typeof token === "string") {
      words.push(token);
    } else if ("comment" in token) {
      break;
    } else if (token.op === "glob") {
      words.push(token.pattern ?? "");
    } else if (SEPARATORS.has(token.op)) {
      if (words.length > 0) commands.push(words);
      words = [];
    } else {
      // A redirection: `>`, `>>`, `<`, `>&`, `&>`, `<<`, `<<<`...; its target is not an argument.
      const target = tokens[i + 1];
      if (
        typeof target === "string" || (typeof target === "object" && "op" in target &&
          target.op === "glob")
      ) i++;
    }
  }
  if (words.length > 0) commands.push(words);
  return commands;
}

// Words that open a compound command or negate a pipeline; the command proper follows them.
const RESERVED = new Set([
  "!",
  "{",
  "}",
  "if",
  "then",
  "else",
  "elif",
  "fi",
  "do",
  "done",
  "while",
  "until",
  "esac",
  "coproc",
]);
const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*\+?=/;
const SHELLS = new Set(["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "posh", "yash"]);
const CLAUDE_PACKAGE = /^@anthropic-ai\/claude-code(?:@[^\s/]+)?$/;
const PACKAGE_RUNNERS = new Set(["npx", "bunx", "pnpx"]);
// `npm exec`, `pnpm dlx`, `yarn dlx`, `bun x`...
const PACKAGE_MANAGERS = new Set(["npm", "pnpm", "yarn", "bun"]);
const RUNNER_VERBS = new Set(["exec", "dlx", "x"]);

/** The options of a wrapper command that runs the command after them. */
interface WrapperSpec {
  /** Short options that take a value (attached, `-n5`, or as the next word). */
  short: string;
  /** Long options that take a value as the next word (`--name=value` always works). */
  long: string[];
  /** Words read after the options before the command: `timeout`'s DURATION. */
  operands?: number;
  /** Whether `NAME=value` words may stand before the command (`env`, `sudo`). */
  assignments?: boolean;
}

const WRAPPERS: ReadonlyMap<string, WrapperSpec> = new Map([
  ["env", { short: "uCS", long: ["--unset", "--chdir", "--split-string"], assignments: true }],
  ["nice", { short: "n", long: ["--adjustment"] }],
  ["nohup", { short: "", long: [] }],
  ["unbuffer", { short: "", long: [] }],
  ["setsid", { short: "", long: [] }],
  ["timeout", { short: "sk", long: ["--signal", "--kill-after"], operands: 1 }],
  ["stdbuf", { short: "ioe", long: ["--input", "--output", "--error"] }],
  ["exec", { short: "a", long: [] }],
  ["command", { short: "", long: [] }],
  ["builtin", { short: "", long: [] }],
  ["time", { short: "of", long: ["--output", "--format"] }],
  ["sudo", {
    short: "ugCDprtUTR",
    long: ["--user", "--group", "--close-from", "--chdir", "--prompt", "--role", "--type"],
    assignments: true,
  }],
  ["doas", { short: "uC", long: [] }],
  ["xargs", {
    short: "aEILnPsd",
    long: ["--arg-file", "--delimiter", "--eof", "--replace", "--max-lines", "--max-args"],
  }],
]);

function basename(word: string): string {
  return word.slice(word.lastIndexOf("/") + 1);
}

function analyzeCommand(words: string[], depth: number, found: ClaudeInvocation[]): void {
  let i = 0;
  // Bounded: each round consumes at least one word.
  for (let round = 0; round < 64 && i < words.length; round++) {
    const word = words[i]!;
    if (RESERVED.has(word) || ASSIGNMENT.test(word)) {
      i++;
      continue;
    }
    if (word === "function") { // `function name { ... }`
      i += 2;
      continue;
    }
    const name = basename(word);
    if (name === "claude") {
      found.push(parseClaudeArgv(words.slice(i)));
      return;
    }
    if (SHELLS.has(name)) {
      const script = shellScriptArgument(words, i + 1);
      if (script !== null) analyzeScript(script, depth + 1, found);
      return;
    }
    if (PACKAGE_RUNNERS.has(name)) {
      packageRunner(words, i + 1, depth, found);
      return;
    }
    if (PACKAGE_MANAGERS.has(name) && RUNNER_VERBS.has(words[i + 1] ?? "")) {
      packageRunner(words, i + 2, depth, found);
      return;
    }
    const spec = WRAPPERS.get(name);
    if (spec === undefined) return; // some other program: its arguments are not commands
    if (name === "command" && /^-[a-zA-Z]*[vV]/.test(words[i + 1] ?? "")) return; // only looks it up
    const after = skipWrapperOptions(words, i + 1, spec);
    if (after === null) return;
    if (typeof after !== "number") { // `env -S 'claude -p x'`: the string is split into words
      words = [...after.words, ...words.slice(after.index)];
      i = 0;
      continue;
    }
    i = after;
  }
}

/**
 * The index of the command after a wrapper's options, or, for `env -S STRING`, the words the
 * string splits into and where the remaining words start.
 */
function skipWrapperOptions(
  words: string[],
  start: number,
  spec: WrapperSpec,
): number | { words: string[]; index: number } | null {
  let i = start;
  let split: string | undefined;
  while (i < words.length) {
    const word = words[i]!;
    if (word === "--") {
      i++;
      break;
    }
    if (word.startsWith("--")) {
      const eq = word.indexOf("=");
      const name = eq === -1 ? word : word.slice(0, eq);
      const takesValue = eq === -1 && spec.long.includes(name);
      if (name === "--split-string") split = eq === -1 ? words[i + 1] : word.slice(eq + 1);
      i += takesValue ? 2 : 1;
      continue;
    }
    if (word === "-" || !word.startsWith("-") || word.length === 1) break;
    // A cluster of short options; the first one that takes a value ends it.
    let consumed = 1;
    for (let k = 1; k < word.length; k++) {
      if (spec.short.includes(word[k]!)) {
        const value = k + 1 < word.length ? word.slice(k + 1) : words[i + 1];
        if (k + 1 >= word.length) consumed = 2;
        if (word[k] === "S") split = value;
        break;
      }
    }
    i += consumed;
  }
  if (words[i] === "-" && spec.assignments) i++; // `env -` is `env -i`
  i += spec.operands ?? 0;
  if (spec.assignments) { while (i < words.length && ASSIGNMENT.test(words[i]!)) i++; }
  if (split !== undefined) {
    const splitWords = parseShell(split, (name: string) => `$${name}`)
      .filter((token): token is string => typeof token === "string");
    return { words: splitWords, index: i };
  }
  return i < words.length ? i : null;
}

/** The script of `sh -c SCRIPT` (options such as `-e`, `-lc`, `-o pipefail` allowed), or null. */
function shellScriptArgument(words: string[], start: number): string | null {
  let command = false;
  for (let i = start; i < words.length; i++) {
    const word = words[i]!;
    if (word === "--" || word === "-") return command ? words[i + 1] ?? null : null;
    if (word.startsWith("--")) continue; // --login, --norc...
    if (word.startsWith("-") || word.startsWith("+")) {
      if (word.slice(1).includes("c")) command = true;
      if (word === "-o" || word === "+o" || word === "-O" || word === "+O") i++;
      continue;
    }
    return command ? word : null; // without -c the word is a script file
  }
  return null;
}

/** `npx [options] PACKAGE args`, `npx -p PKG claude args`, `npx -c 'claude ...'`. */
function packageRunner(
  words: string[],
  start: number,
  depth: number,
  found: ClaudeInvocation[],
): void {
  const valued = new Set(["-p", "--package", "-c", "--call", "-w", "--workspace", "--registry"]);
  for (let i = start; i < words.length; i++) {
    const word = words[i]!;
    if (word === "--") {
      const program = words[i + 1];
      if (program !== undefined && isClaudeCommandWord(program)) {
        found.push(parseClaudeArgv(words.slice(i + 1)));
      }
      return;
    }
    if (word.startsWith("-")) {
      const eq = word.indexOf("=");
      const name = eq === -1 ? word : word.slice(0, eq);
      const value = eq === -1 ? words[i + 1] : word.slice(eq + 1);
      if ((name === "-c" || name === "--call") && value !== undefined) {
        analyzeScript(value, depth + 1, found);
        return;
      }
      if (eq === -1 && valued.has(name)) i++;
      continue;
    }
    if (isClaudeCommandWord(word)) found.push(parseClaudeArgv(words.slice(i)));
    return;
  }
}

function isClaudeCommandWord(word: string): boolean {
  return basename(word) === "claude" || CLAUDE_PACKAGE.test(word);
}
