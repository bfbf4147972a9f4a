/**
 * The command policy: allow and deny rules applied to every simple command a request would run
 * (server/policy/shell_commands.ts finds them). Rules come from the CC_EXECUTOR_POLICY file
 * (server/policy/policy_file.ts); the protocol can only be judged by them, never change them.
 *
 * @module
 */
import {
  analyseArgv,
  analyseShell,
  type ShellAnalysis,
  type ShellDialect,
  type SimpleCommand,
} from "./shell_commands.ts";

/** One allow or deny rule. */
export interface PolicyRule {
  /** How errors name it: its `name`, else `allow[2]` / `deny[0]`. */
  label: string;
  /**
   * Program names. A name without `/` matches the command written that way; in a deny rule it
   * also matches any path ending in it (`/bin/rm`, `./rm`). A name with `/` matches that path only.
   */
  executables: string[] | null;
  /** Tested against the arguments joined by single spaces. */
  args: RegExp | null;
  /** Tested against the whole command (name and arguments) joined by single spaces. */
  pattern: RegExp | null;
  /**
   * How a rule with `args` or `pattern` treats a command whose arguments are known only at run
   * time ("$f", *.ts, $(...), what xargs adds): `match` (the rule applies: the default for deny
   * rules, which so fail closed), `no_match` (the default for allow rules, which cannot vouch for
   * what they cannot see), `as_written` (the regexes see those words as written).
   */
  dynamicArgs: "match" | "no_match" | "as_written";
  /** Shown to the client when the rule denies. */
  reason: string | null;
}

export interface CommandPolicy {
  /** Its name in the policy file. */
  name: string;
  /** null: no allow-list, everything not denied is allowed. */
  allow: PolicyRule[] | null;
  deny: PolicyRule[];
  /** What happens to what the parser cannot classify; "deny" by default with an allow-list. */
  unclassified: "deny" | "allow";
  /** False: redirections that write files (`>`, `>>`, `&>`, ...) are denied, except /dev/null. */
  writeRedirects: boolean;
  /**
   * With an allow-list: the environment-like variables (names with a capital letter) a request's
   * `env` or the command may set, as names or PREFIX*. Lower-case shell variables are free.
   */
  variables: string[];
}

/**
 * Variables that change which program runs or run code: never set under any policy, whatever
 * `variables` says. Programs read many more (PAGER, GIT_*, PYTHONPATH, ...): an allow-list
 * policy refuses every environment-like name it does not list.
 */
const DANGEROUS_VARIABLE = new RegExp(
  "^(PATH|BASH_ENV|ENV|SHELL|HOME|XDG_CONFIG_HOME|CDPATH|PS4|PROMPT_COMMAND|SHELLOPTS|BASHOPTS|" +
    "GLOBIGNORE|EXECIGNORE|BASH_XTRACEFD|BASH_LOADABLES_PATH|BASH_CMDS|BASH_ALIASES|" +
    "LD_.*|BASH_FUNC_.*|GIT_.*|PAGER|MANPAGER|GIT_PAGER|EDITOR|VISUAL|LESSOPEN|LESSCLOSE|" +
    "PYTHON.*|NODE_OPTIONS|NODE_PATH|PERL5OPT|PERL5LIB|PERLLIB|RUBYOPT|RUBYLIB|" +
    "SSH_ASKPASS|SUDO_ASKPASS|GCONV_PATH|LOCPATH|MALLOC_.*|GLIBC_TUNABLES)$",
);

/** True for a variable that, once set, changes what a later command runs. */
function isDangerousVariable(name: string): boolean {
  return DANGEROUS_VARIABLE.test(name);
}

/** The shell's own working variables: capitalised, but read by no other program. */
const SHELL_VARIABLES = new Set(["IFS", "OPTIND", "OPTARG", "OPTERR", "REPLY", "MAPFILE"]);

/**
 * Whether `policy` lets a request or a command set `name` (to `value`, when known); the reason
 * when it does not. A `NAME=value` entry of `variables` allows exactly that value, even for a
 * variable that is otherwise never allowed (`PAGER=cat`, `GIT_EDITOR=true`).
 */
function variableProblem(policy: CommandPolicy, name: string, value: string | null): string | null {
  if (value !== null && policy.variables.includes(`${name}=${value}`)) return null;
  if (isDangerousVariable(name)) {
    return `setting ${name}${
      value === null ? "" : ` to ${JSON.stringify(value)}`
    } changes what commands run`;
  }
  if (policy.allow === null || !/[A-Z]/.test(name) || SHELL_VARIABLES.has(name)) return null;
  const listed = policy.variables.some((allowed) =>
    allowed.endsWith("*") ? name.startsWith(allowed.slice(0, -1)) : name === allowed
  );
  return listed ? null : `${name} is not among the variables this policy lets a request set`;
}

export type PolicyVerdict =
  | { allowed: true }
  | {
    allowed: false;
    /**
     * The rule that denied: a rule's label, or `allow-list`, `unclassified`, `write-redirects`,
     * `env` (the request's env), `variables` (a variable the command sets).
     */
    rule: string;
    /** The part of the request that was denied. */
    part: string;
    reason: string;
    /** How that part was reached (`$(...)`, `bash -c`, `env`, ...). */
    via: string[];
  };

/** What a request asks to run: a shell text, or a program and its arguments. */
export interface PolicyRequest {
  command?: string;
  argv?: readonly string[];
  env?: Record<string, string>;
}

/** Judges one request. Denies on the first rule broken, in the order the parts appear. */
export function checkRequest(
  policy: CommandPolicy,
  request: PolicyRequest,
  dialect: ShellDialect,
): PolicyVerdict {
  for (const [name, value] of Object.entries(request.env ?? {})) {
    const problem = variableProblem(policy, name, value);
    if (problem) return deny("env", name, `the request's env: ${problem}`, []);
  }
  const analysis: ShellAnalysis = request.argv
    ? analyseArgv(request.argv)
    : analyseShell(request.command ?? "", dialect);
  // The analysis stopped, or found what changes how the rest is read: no rule can be applied to
  // what it did not see, deny-list or not.
  const stopped = analysis.unclassified.find((unknown) => unknown.fatal || unknown.always);
  if (stopped) {
    return deny("unclassified", stopped.text, `cannot be checked: ${stopped.why}`, stopped.via);
  }
  for (const command of analysis.commands) {
    const verdict = checkCommand(policy, command);
    if (!verdict.allowed) return verdict;
  }
  for (const variable of analysis.variables) {
    const problem = variableProblem(policy, variable.name, variable.value);
    if (problem) return deny("variables", variable.text, problem, variable.via);
  }
  const unknown = analysis.unclassified[0];
  if (unknown && policy.unclassified === "deny") {
    return deny("unclassified", unknown.text, `cannot be checked: ${unknown.why}`, unknown.via);
  }
  const write = analysis.writes[0];
  if (write && !policy.writeRedirects) {
    return deny(
      "write-redirects",
      write.text,
      "this policy allows no redirection that writes a file",
      write.via,
    );
  }
  return { allowed: true };
}

function checkCommand(policy: CommandPolicy, command: SimpleCommand): PolicyVerdict {
  for (const rule of policy.deny) {
    if (matches(rule, command, "deny")) {
      const unseen = (rule.args || rule.pattern) && isDynamic(command) &&
          rule.dynamicArgs === "match"
        ? " (its arguments are known only at run time)"
        : "";
      return deny(
        rule.label,
        command.text,
        (rule.reason ?? `${JSON.stringify(command.name)} matches a deny rule`) + unseen,
        command.via,
      );
    }
  }
  if (policy.allow === null) return { allowed: true };
  if (policy.allow.some((rule) => matches(rule, command, "allow"))) return { allowed: true };
  const dynamic = isDynamic(command);
  return deny(
    "allow-list",
    command.text,
    `${JSON.stringify(command.name)}${dynamic ? " with arguments known only at run time" : ""} ` +
      "is not on the allow-list",
    command.via,
  );
}

function deny(rule: string, part: string, reason: string, via: string[]): PolicyVerdict {
  return {
    allowed: false,
    rule,
    part: part.length > 200 ? part.slice(0, 200) + "…" : part,
    reason,
    via,
  };
}

function isDynamic(command: SimpleCommand): boolean {
  return command.appended || command.args.some((arg) => arg === null);
}

function matches(rule: PolicyRule, command: SimpleCommand, kind: "allow" | "deny"): boolean {
  if (rule.executables && !rule.executables.some((name) => namesMatch(name, command.name, kind))) {
    return false;
  }
  if (!rule.args && !rule.pattern) return true;
  if (isDynamic(command) && rule.dynamicArgs !== "as_written") return rule.dynamicArgs === "match";
  // Dynamic words are matched as written ("$f", *.ts), so a deny rule can still name them.
  const args = command.args.map((arg, i) => arg ?? command.argsText[i]!).join(" ");
  if (rule.args && !rule.args.test(args)) return false;
  if (rule.pattern && !rule.pattern.test(args ? `${command.name} ${args}` : command.name)) {
    return false;
  }
  return true;
}

function namesMatch(ruleName: string, name: string, kind: "allow" | "deny"): boolean {
  if (ruleName.includes("/") || name === ruleName) return name === ruleName;
  // A deny rule for rm also stops /bin/rm and ./rm; an allow rule for ls does not let
  // ./ls (which could be anything) through.
  return kind === "deny" && name.slice(name.lastIndexOf("/") + 1) === ruleName;
}
