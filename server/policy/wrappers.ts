/**
 * Programs and builtins whose arguments are another command or code: `env`, `xargs`,
 * `find -exec`, `sudo`, `timeout`, `eval`, `bash -c`, ... Each one's options are read as the real
 * tool reads them (options.ts), and what it would run is handed back to be judged like any other
 * command. Whatever cannot be followed with certainty is unclassified.
 *
 * @module
 */
import { type OptionSpec, type ParsedOption, parseOptions } from "./options.ts";
import type { CommandScope, Resolved } from "./shell_commands.ts";

const SPECS = {
  env: {
    flags: "iv0",
    withArgument: "uCS",
    long: {
      "ignore-environment": "none",
      null: "none",
      unset: "required",
      chdir: "required",
      "split-string": "required",
      debug: "none",
      "default-signal": "optional",
      "ignore-signal": "optional",
      "block-signal": "optional",
      "list-signal-handling": "none",
      help: "none",
      version: "none",
    },
  },
  nice: {
    withArgument: "n",
    long: { adjustment: "required", help: "none", version: "none" },
    special: /^-\d+$/,
  },
  timeout: {
    flags: "fpv",
    withArgument: "ks",
    long: {
      foreground: "none",
      "kill-after": "required",
      "preserve-status": "none",
      signal: "required",
      verbose: "none",
      help: "none",
      version: "none",
    },
  },
  nohup: { long: { help: "none", version: "none" } },
  stdbuf: {
    withArgument: "ioe",
    long: { input: "required", output: "required", error: "required" },
  },
  setsid: { flags: "cfw", long: { ctty: "none", fork: "none", wait: "none" } },
  ionice: {
    flags: "t",
    withArgument: "cnpPu",
    long: {
      class: "required",
      classdata: "required",
      pid: "required",
      pgid: "required",
      uid: "required",
      ignore: "none",
    },
  },
  exec: { flags: "cl", withArgument: "a" },
  command: { flags: "pvV" },
  builtin: {},
  time: {
    flags: "apqvV",
    withArgument: "fo",
    long: {
      append: "none",
      format: "required",
      output: "required",
      portability: "none",
      quiet: "none",
      verbose: "none",
      help: "none",
      version: "none",
    },
  },
  chroot: { long: { userspec: "required", groups: "required", "skip-chdir": "none" } },
  xargs: {
    flags: "0oprtx",
    withArgument: "adEILnPs",
    withOptionalArgument: "eil",
    long: {
      null: "none",
      "arg-file": "required",
      delimiter: "required",
      eof: "optional",
      replace: "optional",
      "max-lines": "optional",
      "max-args": "required",
      "max-procs": "required",
      interactive: "none",
      "open-tty": "none",
      "no-run-if-empty": "none",
      "max-chars": "required",
      "show-limits": "none",
      verbose: "none",
      exit: "none",
      "process-slot-var": "required",
      help: "none",
      version: "none",
    },
  },
  sudo: {
    flags: "AbBEeHiKklnNPSsVv",
    withArgument: "aCcDgpRrTtUu",
    withOptionalArgument: "h",
    long: {
      askpass: "none",
      "auth-type": "required",
      background: "none",
      bell: "none",
      "close-from": "required",
      "login-class": "required",
      chdir: "required",
      "preserve-env": "optional",
      edit: "none",
      group: "required",
      "set-home": "none",
      help: "none",
      host: "required",
      login: "none",
      "remove-timestamp": "none",
      "reset-timestamp": "none",
      role: "required",
      list: "none",
      "non-interactive": "none",
      "preserve-groups": "none",
      prompt: "required",
      chroot: "required",
      shell: "none",
      stdin: "none",
      type: "required",
      "command-timeout": "required",
      "other-user": "required",
      user: "required",
      validate: "none",
      version: "none",
    },
  },
  doas: { flags: "nsL", withArgument: "uC" },
  flock: {
    flags: "sxnuoFhV",
    withArgument: "wEc",
    long: {
      shared: "none",
      exclusive: "none",
      nonblock: "none",
      unlock: "none",
      timeout: "required",
      "conflict-exit-code": "required",
      close: "none",
      "no-fork": "none",
      command: "required",
      verbose: "none",
      help: "none",
      version: "none",
    },
  },
  watch: {
    flags: "bceghptxrw",
    withArgument: "nq",
    withOptionalArgument: "d",
    long: {
      beep: "none",
      color: "none",
      "no-color": "none",
      differences: "optional",
      errexit: "none",
      chgexit: "none",
      equexit: "required",
      exec: "none",
      interval: "required",
      "no-title": "none",
      "no-rerun": "none",
      "no-linewrap": "none",
      precise: "none",
      help: "none",
      version: "none",
    },
  },
  trap: { flags: "lpP" },
} satisfies Record<string, OptionSpec>;

/** Shells: `-c` strings of bash and sh/dash are read again; any other shell is unclassified. */
const SHELLS = new Set([
  "sh",
  "bash",
  "rbash",
  "dash",
  "ash",
  "zsh",
  "ksh",
  "ksh93",
  "mksh",
  "pdksh",
  "yash",
  "posh",
  "fish",
  "csh",
  "tcsh",
  "busybox",
]);

/** Programs whose arguments name a command or hold code: what `unwrap` follows, or refuses. */
const RUNS_ARGUMENTS = new Set([
  ...Object.keys(SPECS),
  ...SHELLS,
  "eval",
  "source",
  ".",
  "find",
  "doas",
  "su",
  "runuser",
  "script",
  "mapfile",
  "readarray",
  "compgen",
  "complete",
  "bind",
  "fc",
]);

/** True when words added to this command at run time (by xargs) could become code. */
export function runsItsArguments(name: string): boolean {
  return RUNS_ARGUMENTS.has(name);
}

const isAssignment = (word: string) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(word);

/** Follows `name`'s arguments when they are a command or code. */
export function unwrap(name: string, words: Resolved[], scope: CommandScope): void {
  const values = words.map((word) => word.value);
  /** The options of `spec` from word 1; null when they cannot be read (then unclassified). */
  const options = (spec: OptionSpec, start = 1) => {
    const parsed = parseOptions(values, start, spec);
    if (!parsed.ok) {
      scope.unclassified(`${name}: ${parsed.why}`);
      return null;
    }
    return parsed;
  };
  const has = (parsed: { options: ParsedOption[] }, ...names: string[]) =>
    parsed.options.some((option) => names.includes(option.name));
  switch (name) {
    case "eval": {
      const args = words.slice(values[1] === "--" ? 2 : 1);
      if (args.some((word) => word.value === null)) {
        scope.unclassified("eval of a string known only at run time");
      } else scope.nested(args.map((word) => word.value).join(" "), "eval", scope.dialect);
      return;
    }
    case "trap": {
      const parsed = options(SPECS.trap);
      if (!parsed || has(parsed, "l", "p", "P")) return;
      // trap ACTION SIGNAL...: one operand alone, "-", or a number first means no action.
      const operands = words.slice(parsed.next);
      const action = operands[0];
      if (!action || operands.length < 2) return;
      if (action.value === null) scope.unclassified("trap with an action known only at run time");
      else if (action.value !== "-" && !/^\d+$/.test(action.value)) {
        scope.nested(action.value, "trap", scope.dialect);
      }
      return;
    }
    case "source":
    case ".":
      scope.unclassified(`${name} runs a file the policy cannot see`);
      return;
    case "alias":
      if (words.length > 1) scope.unclassified("an alias body is code (expand_aliases)");
      return;
    case "hash":
      if (values.slice(1).some((value) => value === null || /^-\w*p/.test(value))) {
        scope.unclassified("hash -p binds a command name to another program");
      }
      return;
    case "enable":
      if (values.slice(1).some((value) => value === null || /^-\w*f/.test(value))) {
        scope.unclassified("enable -f loads a builtin from a shared object");
      }
      return;
    case "mapfile":
    case "readarray":
      if (values.slice(1).some((value) => value === null || /^-\w*C/.test(value))) {
        scope.unclassified(`${name} -C runs a callback string as code`);
      }
      return;
    case "compgen":
    case "complete":
    case "bind":
    case "fc":
      scope.unclassified(`${name} can run strings as code`);
      return;
    case "su":
    case "runuser":
    case "script":
      // They run a string, or stdin, with a shell the policy cannot know (the user's, $SHELL).
      scope.unclassified(`${name} runs commands with a shell the policy cannot know`);
      readCommandStrings(name, values, scope);
      return;
    case "command": {
      const parsed = options(SPECS.command);
      // command -v / -V only look the name up.
      if (parsed && !has(parsed, "v", "V")) scope.inner(words.slice(parsed.next), name);
      return;
    }
    case "nohup":
    case "setsid":
    case "ionice":
    case "exec":
    case "builtin":
    case "time":
    case "nice":
    case "stdbuf": {
      const parsed = options(SPECS[name]);
      if (parsed) scope.inner(words.slice(parsed.next), name);
      return;
    }
    case "timeout": // timeout [options] DURATION COMMAND...
    case "chroot": { // chroot [options] NEWROOT COMMAND...
      const parsed = options(SPECS[name]);
      if (!parsed) return;
      const command = words.slice(parsed.next + 1);
      // Without a command, chroot runs $SHELL -i, reading commands from stdin.
      if (name === "chroot" && command.length === 0) {
        scope.unclassified("chroot without a command runs an interactive shell");
      } else scope.inner(command, name);
      return;
    }
    case "env":
      return unwrapEnv(words, scope, options(SPECS.env));
    case "sudo":
    case "doas": {
      const parsed = options(name === "sudo" ? SPECS.sudo : SPECS.doas);
      if (!parsed) return;
      if (has(parsed, "i", "s", "e", "login", "shell", "edit")) {
        scope.unclassified(`${name} -i/-s/-e runs a shell or an editor`);
        return;
      }
      let i = parsed.next;
      // sudo VAR=value command: the variables are set for the command, as env would.
      for (; i < words.length && isAssignment(values[i] ?? ""); i++) {
        const equals = values[i]!.indexOf("=");
        scope.assigns(values[i]!.slice(0, equals), words[i]!.text, values[i]!.slice(equals + 1));
      }
      scope.inner(words.slice(i), name);
      return;
    }
    case "xargs": {
      const parsed = options(SPECS.xargs);
      if (!parsed) return;
      for (const option of parsed.options) {
        // The child's environment gets this variable, set to the slot number.
        if (option.name === "process-slot-var" && option.value) scope.assigns(option.value);
      }
      // With no command, xargs runs echo.
      const command = parsed.next >= words.length
        ? [{ value: "echo", text: "echo" }]
        : words.slice(parsed.next);
      scope.inner(command, name, true);
      return;
    }
    case "flock": {
      // flock also takes options after the file (`flock FILE -c ...`).
      if (values.some((value) => value === null || /^(-[a-zA-Z]*c|--c)/.test(value))) {
        scope.unclassified("flock -c runs its string with $SHELL, which the policy cannot know");
        readCommandStrings(name, values, scope);
        return;
      }
      const parsed = options(SPECS.flock);
      if (!parsed) return;
      if (has(parsed, "c", "command")) {
        scope.unclassified("flock -c runs its string with $SHELL, which the policy cannot know");
        return;
      }
      // flock [options] FILE COMMAND...
      scope.inner(words.slice(parsed.next + 1), name);
      return;
    }
    case "watch": {
      const parsed = options(SPECS.watch);
      if (!parsed) return;
      const rest = words.slice(parsed.next);
      if (has(parsed, "x", "exec")) scope.inner(rest, name);
      else if (rest.some((word) => word.value === null)) {
        scope.unclassified("watch with a command known only at run time");
      } else if (rest.length > 0) {
        // watch runs its words, joined, with sh -c.
        scope.nested(rest.map((word) => word.value).join(" "), "watch", "dash");
      }
      return;
    }
    case "find":
      return unwrapFind(words, scope);
  }
  if (SHELLS.has(name)) shell(name, words, scope);
}

/**
 * The strings of `-c STRING` / `--command=STRING` options, read as bash: the shell that runs
 * them is unknown (so the command stays unclassified), but deny rules still see what is inside.
 */
function readCommandStrings(name: string, values: (string | null)[], scope: CommandScope): void {
  for (let i = 1; i < values.length; i++) {
    const value = values[i];
    if (value === null || value === undefined) continue;
    const attached = /^--c[a-z]*=(.*)$/s.exec(value)?.[1];
    const code = attached ?? (/^(-[a-zA-Z]*c|--c[a-z]*)$/.test(value) ? values[i + 1] : undefined);
    if (typeof code === "string") scope.nested(code, `${name} -c`, "bash");
  }
}

function unwrapEnv(
  words: Resolved[],
  scope: CommandScope,
  parsed: { options: ParsedOption[]; next: number } | null,
): void {
  if (!parsed) return;
  if (parsed.options.some((option) => option.name === "S" || option.name === "split-string")) {
    scope.unclassified("env -S splits a string into a command");
    return;
  }
  let i = parsed.next;
  for (; i < words.length; i++) {
    const value = words[i]!.value;
    if (value === null) {
      scope.unclassified(`env: an argument is known only at run time: ${words[i]!.text}`);
      return;
    }
    if (value === "-") continue; // the same as -i
    // Any word holding = is an assignment to GNU env, even `=x`.
    const equals = value.indexOf("=");
    if (equals < 0) break;
    scope.assigns(value.slice(0, equals), words[i]!.text, value.slice(equals + 1));
  }
  scope.inner(words.slice(i), "env");
}

function unwrapFind(words: Resolved[], scope: CommandScope): void {
  for (let i = 1; i < words.length; i++) {
    const word = words[i]!;
    if (word.value === null) {
      // A word known only at run time could itself be -exec.
      scope.unclassified(`find: an argument is known only at run time: ${word.text}`);
      return;
    }
    if (["-exec", "-execdir", "-ok", "-okdir"].includes(word.value)) {
      let j = i + 1;
      while (j < words.length && words[j]!.value !== ";" && words[j]!.value !== "+") j++;
      // find puts a file name wherever {} appears in a word: such words are known only at run time.
      const command = words.slice(i + 1, j).map((inner): Resolved =>
        inner.value?.includes("{}")
          ? {
            value: null,
            text: inner.text,
            why: "find puts a file name in place of {}",
            splits: false,
          }
          : inner
      );
      scope.inner(command, `find ${word.value}`, words[j]?.value === "+");
      i = j;
    }
  }
}

/** bash's long options, which it also takes with one dash (`-norc`). */
const BASH_LONG_OPTIONS = new Set([
  "debug",
  "debugger",
  "dump-po-strings",
  "dump-strings",
  "help",
  "noediting",
  "noprofile",
  "norc",
  "posix",
  "pretty-print",
  "restricted",
  "verbose",
  "version",
]);
const BASH_FLAGS = "abefhkmnptuvxBCEHPTlrD";
const DASH_FLAGS = "abefhmnuvxCEVl";

/**
 * sh, bash, ...: a `-c` string is read again (bash as bash; sh, dash and ash as dash). A shell
 * that reads code from stdin, a file or its startup files (-s, -i, --rcfile), or a shell of
 * another syntax, is unclassified.
 */
function shell(name: string, words: Resolved[], scope: CommandScope): void {
  let program = name;
  let i = 1;
  if (name === "busybox") {
    const applet = words[1];
    if (!applet) return;
    if (applet.value === null) {
      scope.unclassified(`busybox: the applet is known only at run time: ${applet.text}`);
      return;
    }
    if (!SHELLS.has(applet.value)) {
      scope.inner(words.slice(1), name);
      return;
    }
    program = applet.value;
    i = 2;
  }
  const isBash = program === "bash" || program === "rbash";
  const isDash = program === "sh" || program === "dash";
  if (!isBash && !isDash) {
    scope.unclassified(`${program} is not read as bash or sh: its syntax differs`);
    return;
  }
  let hasC = false;
  for (; i < words.length; i++) {
    const value = words[i]!.value;
    if (value === null) {
      scope.unclassified(`${program}: an option is known only at run time: ${words[i]!.text}`);
      return;
    }
    if (value === "--" || value === "-") {
      i++;
      break;
    }
    if (!value.startsWith("-") && !value.startsWith("+")) break;
    const long = value.replace(/^--?/, "");
    if (isBash && (long === "rcfile" || long === "init-file" || long === "login")) {
      scope.unclassified(`${program} --${long} runs startup files`);
      return;
    }
    if (isBash && BASH_LONG_OPTIONS.has(long)) continue;
    if (value.startsWith("--")) {
      scope.unclassified(`${program}: unknown option ${value}`);
      return;
    }
    for (const letter of value.slice(1)) {
      if (letter === "c" && value[0] === "-") hasC = true;
      else if (letter === "o" || letter === "O") {
        // -o NAME: the option's name is next.
        const option = words[++i]?.value;
        if (
          option === null ||
          (value[0] === "-" && ["keyword", "history", "histexpand"].includes(option ?? ""))
        ) {
          scope.unsafe(`${program} -o ${option ?? "?"} changes what later commands run`);
          return;
        }
      } else if ((letter === "k" || letter === "H") && value[0] === "-") {
        scope.unsafe(
          `${program} -${letter}: keyword mode and history expansion change what commands run`,
        );
        return;
      } else if (letter === "i" || letter === "s" || letter === "l") {
        scope.unclassified(`${program} -${letter} reads commands from stdin or startup files`);
        return;
      } else if (!(isBash ? BASH_FLAGS : DASH_FLAGS).includes(letter)) {
        scope.unclassified(`${program}: unknown option ${value[0]}${letter}`);
        return;
      }
    }
  }
  if (!hasC) {
    scope.unclassified(`${program} without -c reads code from a file or stdin`);
    return;
  }
  const code = words[i];
  if (!code) {
    scope.unclassified(`${program} -c without a string: its code would come from elsewhere`);
  } else if (code.value === null) {
    scope.unclassified(`${program} -c with a string known only at run time: ${code.text}`);
  } else scope.nested(code.value, `${program} -c`, isBash ? "bash" : "dash");
}
