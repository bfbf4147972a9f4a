/**
 * The command hooks' JSON file (hooks.json in the hooks folder, or the file
 * CC_EXECUTOR_HOOKS_CONFIG names): parsed, validated entry by entry, checked
 * for trust, and turned into runtime hooks. Everything that can be checked
 * before a job runs is checked here (a missing or non-executable program, a
 * missing cwd), so `hooks list` shows it at once instead of every job
 * recording the same failure.
 *
 * @example hooks.json
 * ```json
 * {
 *   "hooks": [
 *     { "name": "audit-log", "point": "post_execution", "command": ["./audit.sh", "--json"],
 *       "timeout_ms": 2000, "env": { "AUDIT_DIR": "/var/log/audit" } },
 *     { "name": "no-rm-rf", "point": "pre_execution", "required": true, "shell": true,
 *       "command": "jq -e '.request.command | test(\"rm -rf /\") | not' >/dev/null || exit 2" }
 *   ]
 * }
 * ```
 *
 * @module
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import type { HooksConfig } from "../server/config.ts";
import { runIsScoped, runRefusal } from "../server/process.ts";
import { commandHook, type CommandHookSpec, RunningCommandHooks } from "./command.ts";
import { defaultOnFailure, type Hook, type LoadedHooks, type LoaderOptions } from "./hook.ts";
import { untrustedFileReason, untrustedReason } from "./trust.ts";
import { HOOK_POINTS, type HookPoint } from "./types.ts";

/** The longest timeout_ms an entry may ask for, as for CC_EXECUTOR_HOOK_TIMEOUT_MS (10 minutes). */
export const MAX_HOOK_TIMEOUT_MS = 600_000;

/** Options of {@link loadCommandHooks}. */
export interface CommandHooksFileOptions extends LoaderOptions {
  /**
   * True when the user named the file (CC_EXECUTOR_HOOKS_CONFIG): a missing file is then a
   * problem. False for the default hooks.json in the hooks folder, which may well not exist.
   */
  explicit: boolean;
  /**
   * The environment each hook process starts from, its entry's `env` over it.
   * @default the server's own, inherited whole
   */
  baseEnv?: Record<string, string>;
}

/**
 * Where the command hooks' JSON file is for a configuration: the file CC_EXECUTOR_HOOKS_CONFIG
 * names (explicit), else hooks.json in the hooks folder.
 */
export function commandHooksFile(
  config: Pick<HooksConfig, "dir" | "configFile">,
): { path: string; explicit: boolean } {
  return config.configFile !== null
    ? { path: config.configFile, explicit: true }
    : { path: join(config.dir, "hooks.json"), explicit: false };
}

/**
 * Loads the command hooks listed in the JSON file `path`. Never throws for a bad file: each
 * problem (missing explicit file, invalid JSON, a refused file, an invalid or unusable entry) is
 * a `LoadProblem` whose message names the file and the JSON path of the entry, and the other
 * entries still load. Disposing the result kills hook calls still running.
 *
 * Relative program paths (`./audit.sh`) and `cwd` resolve against the JSON file's folder; bare
 * program names are looked up on the server's PATH at load.
 *
 * @example
 * ```ts
 * await using loaded = await loadCommandHooks("hooks/hooks.json", {
 *   explicit: false, defaultTimeoutMs: 5000, logger,
 * });
 * for (const problem of loaded.problems) logger.warn(problem.message);
 * ```
 */
export async function loadCommandHooks(
  path: string,
  options: CommandHooksFileOptions,
): Promise<LoadedHooks> {
  const running = new RunningCommandHooks();
  const loaded: LoadedHooks = {
    hooks: [],
    problems: [],
    [Symbol.asyncDispose]: () => running.stopAll(),
  };
  const fileProblem = (message: string) => {
    loaded.problems.push({ source: path, message: `${path}: ${message}` });
    return loaded;
  };

  const file = resolve(path);
  const folder = dirname(file);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(file);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      return fileProblem(`cannot be read (${(error as Error).message})`);
    }
    if (!options.explicit) return loaded;
    return fileProblem(
      `not found (CC_EXECUTOR_HOOKS_CONFIG names it; looked for ${file})`,
    );
  }
  if (!info.isFile) return fileProblem("is not a file");
  const untrusted = untrustedFileReason(file, folder);
  if (untrusted) {
    // Anyone who can change the file could make the server run anything as its user.
    options.logger.warn(`Refusing command hooks file ${path}: ${untrusted}`, { file });
    return fileProblem(`refused because ${untrusted}`);
  }

  let data: unknown;
  try {
    data = JSON.parse(await Deno.readTextFile(file));
  } catch (error) {
    if (error instanceof SyntaxError) return fileProblem(`invalid JSON: ${error.message}`);
    return fileProblem(`cannot be read (${(error as Error).message})`);
  }
  const top = FileSchema.safeParse(data);
  if (!top.success) return fileProblem(describeIssues(top.error.issues));

  const firstWithName = new Map<string, number>();
  const context: EntryContext = { path, folder, options, running };
  for (const [index, raw] of top.data.hooks.entries()) {
    const at = `hooks[${index}]`;
    const entryProblem = (message: string) =>
      loaded.problems.push({ source: `${path} ${at}`, message: `${path}: ${message}` });

    // Duplicates are judged on every entry that names itself, valid or not, so that fixing one
    // entry never moves the duplicate error onto another.
    const name = (raw as { name?: unknown } | null)?.name;
    if (typeof name === "string" && name.trim() !== "") {
      const first = firstWithName.get(name.trim());
      if (first !== undefined) {
        entryProblem(`${at}.name: "${name.trim()}" is already the name of hooks[${first}]`);
        continue;
      }
      firstWithName.set(name.trim(), index);
    }

    const entry = EntrySchema.safeParse(raw);
    if (!entry.success) {
      entryProblem(describeIssues(entry.error.issues, ["hooks", index]));
      continue;
    }
    const built = await buildHook(entry.data, at, context);
    if (typeof built === "string") entryProblem(built);
    else loaded.hooks.push(built);
  }
  return loaded;
}

interface EntryContext {
  path: string;
  folder: string;
  options: CommandHooksFileOptions;
  running: RunningCommandHooks;
}

const POINT_LIST = HOOK_POINTS.map((point) => `"${point}"`).join(", ");

/** A zod error option: "is required" when the key is missing, else `expected`. */
const expect = (expected: string) => ({
  error: (issue: { input?: unknown }) => issue.input === undefined ? "is required" : expected,
});

const FileSchema = z.strictObject({
  hooks: z.array(z.unknown(), expect('expected an array of hook entries, e.g. "hooks": [...]')),
}, { error: 'expected an object such as { "hooks": [ ... ] }' });

const ENV_NAME = /^[^=\0]+$/;

const EntrySchema = z.strictObject({
  name: z.string(expect("expected a non-empty string")).trim().min(
    1,
    "expected a non-empty string",
  ),
  point: z.enum(
    HOOK_POINTS as [HookPoint, ...HookPoint[]],
    expect(`expected one of ${POINT_LIST}`),
  ),
  command: z.union(
    [z.string(), z.array(z.string())],
    expect(
      'expected an array of strings (the program and its arguments), e.g. ["./audit.sh", "--json"], ' +
        'or one string with "shell": true',
    ),
  ),
  shell: z.boolean(expect("expected true or false")).default(false),
  timeout_ms: z.number(expect("expected a positive integer")).int("expected a positive integer")
    .positive("expected a positive integer")
    .max(MAX_HOOK_TIMEOUT_MS, `expected at most ${MAX_HOOK_TIMEOUT_MS} (10 minutes)`).optional(),
  on_failure: z.enum(["proceed", "block"], expect('expected "proceed" or "block"')).optional(),
  required: z.boolean(expect("expected true or false")).default(false),
  env: z.record(
    z.string().regex(ENV_NAME, "expected a variable name without '=' or NUL"),
    z.string(expect("expected a string (JSON numbers and booleans are not converted)")),
    expect('expected an object of strings, e.g. { "AUDIT_DIR": "/var/log/audit" }'),
  ).default({}),
  cwd: z.string(expect("expected a path")).min(1, "expected a path").optional(),
}, { error: 'expected an object such as { "name": ..., "point": ..., "command": [...] }' });

type Entry = z.infer<typeof EntrySchema>;
const ENTRY_KEYS = Object.keys(EntrySchema.shape);

/** The hook for a schema-valid entry, or the message saying why it cannot be used. */
async function buildHook(entry: Entry, at: string, context: EntryContext): Promise<Hook | string> {
  const { path, folder, options, running } = context;
  if (entry.required && entry.point !== "pre_execution") {
    return `${at}.required: only pre_execution hooks can be required (this one is ${entry.point})`;
  }

  let configured: string[];
  let program: string;
  let args: string[];
  if (entry.shell) {
    if (typeof entry.command !== "string") {
      return `${at}.command: with "shell": true, expected one string for sh -c, e.g. "./audit.sh | tee log"`;
    }
    if (entry.command.trim() === "") return `${at}.command: expected a non-empty string`;
    configured = [entry.command];
    const sh = onPath("sh");
    if (sh === null) return `${at}.command: "shell": true needs sh, which is not on PATH`;
    program = sh;
    args = ["-c", entry.command];
  } else {
    if (typeof entry.command === "string") {
      return `${at}.command: expected an array of strings (the program and its arguments, run ` +
        `without a shell), e.g. ["./audit.sh", "--json"]; set "shell": true to run a string with sh -c`;
    }
    const [first, ...rest] = entry.command;
    if (first === undefined || first === "") {
      return `${at}.command[0]: expected the program to run (a path or a name on PATH)`;
    }
    configured = entry.command;
    const resolved = await resolveProgram(first, folder);
    if (!resolved.ok) return `${at}.command[0]: ${resolved.message}`;
    program = resolved.program;
    args = rest;
    // A program referred to by a path can be swapped by whoever can write it or its folder.
    // Names on PATH are the administrator's choice and are not second-guessed.
    if (first.includes("/")) {
      const reason = isAbsolute(first)
        ? prefixed(program, untrustedReason(program))
        : untrustedFileReason(program, dirname(program));
      if (reason) {
        options.logger.warn(`Refusing command hook ${entry.name} in ${path}: ${reason}`, {
          file: path,
          program,
        });
        return `${at}.command[0]: refused because ${reason}`;
      }
    }
  }

  const cwd = resolve(folder, entry.cwd ?? ".");
  const cwdProblem = await directoryProblem(cwd);
  if (cwdProblem) return `${at}.cwd: ${cwd} ${cwdProblem}`;

  const spec: CommandHookSpec = {
    name: entry.name,
    point: entry.point,
    program,
    args,
    cwd,
    env: entry.env,
    timeoutMs: entry.timeout_ms ?? options.defaultTimeoutMs,
    onFailure: entry.on_failure ?? defaultOnFailure(entry.point, entry.required),
    required: entry.required,
    source: { kind: "command", location: path, command: configured },
  };
  return commandHook(spec, { running, baseEnv: options.baseEnv });
}

function prefixed(path: string, reason: string | null): string | null {
  return reason === null ? null : `${path} ${reason}`;
}

type Resolved = { ok: true; program: string } | { ok: false; message: string };

/** A path (relative to the JSON file's folder) or a name on PATH, checked to be executable. */
async function resolveProgram(program: string, folder: string): Promise<Resolved> {
  if (!program.includes("/")) {
    const found = onPath(program);
    if (found !== null) return { ok: true, program: found };
    // A locked-down server may not look in the folders on PATH: its --allow-run list is then why.
    return {
      ok: false,
      message: runRefusal(program) ?? `${program} was not found on the server's PATH`,
    };
  }
  const full = resolve(folder, program);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(full);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return { ok: false, message: `${program} does not exist (looked for ${full})` };
    }
    return { ok: false, message: `${full} cannot be checked (${(error as Error).message})` };
  }
  if (!info.isFile) return { ok: false, message: `${full} is not a file` };
  if (info.mode !== null && (info.mode & 0o111) === 0) {
    return { ok: false, message: `${full} is not executable; run chmod +x on it` };
  }
  return { ok: true, program: full };
}

/**
 * A bare name as an absolute path on the server's PATH, or null. Looked up here rather than by
 * the spawn so that a missing program is a load problem, and so that an `env` entry setting PATH
 * for the hook does not change which program runs.
 */
function onPath(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const candidate = resolve(dir, name);
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && (info.mode === null || (info.mode & 0o111) !== 0)) return candidate;
    } catch (error) {
      // Under a scoped --allow-read and --allow-run, the path Deno resolved the name to at start
      // is the one it lets the server run.
      if (
        error instanceof Deno.errors.NotCapable && runIsScoped() && runRefusal(candidate) === null
      ) return candidate;
      // Not in this folder (or not readable): try the next.
    }
  }
  return null;
}

async function directoryProblem(path: string): Promise<string | null> {
  try {
    return (await Deno.stat(path)).isDirectory ? null : "is not a folder";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "does not exist";
    return `cannot be checked (${(error as Error).message})`;
  }
}

/** zod issues as `hooks[2].timeout_ms: expected a positive integer; ...`. */
function describeIssues(issues: z.core.$ZodIssue[], base: PropertyKey[] = []): string {
  return issues.map((issue) => {
    const path = [...base, ...issue.path];
    if (issue.code === "unrecognized_keys") {
      const known = path.length === 0 ? ["hooks"] : ENTRY_KEYS;
      return issue.keys.map((key) => {
        const hint = suggest(key, known);
        return `${jsonPath([...path, key])}: unknown key${
          hint ? ` (did you mean "${hint}"?)` : ` (expected one of ${known.join(", ")})`
        }`;
      }).join("; ");
    }
    return `${path.length ? jsonPath(path) : "the file"}: ${issue.message}`;
  }).join("; ");
}

/** `["hooks", 2, "env", "A-B"]` as `hooks[2].env["A-B"]`. */
function jsonPath(path: PropertyKey[]): string {
  let text = "";
  for (const part of path) {
    if (typeof part === "number") text += `[${part}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(String(part))) text += (text ? "." : "") + String(part);
    else text += `[${JSON.stringify(String(part))}]`;
  }
  return text;
}

/** The known key a misspelt one most likely meant (`timeout` -> `timeout_ms`), or null. */
function suggest(key: string, known: string[]): string | null {
  const lower = key.toLowerCase();
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of known) {
    if (candidate.startsWith(lower) || lower.startsWith(candidate)) return candidate;
    const distance = editDistance(lower, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return bestDistance <= 2 ? best : null;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}
