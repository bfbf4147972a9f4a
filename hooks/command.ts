/**
 * Command hooks: any executable, run once per hook call with the hook context
 * as JSON on stdin. Exit 0 proceeds (a JSON object on stdout is the
 * `HookResult`, empty stdout means no changes); exit 2 blocks a
 * pre_execution hook with stderr as the message; anything else (another exit
 * code, a signal, a timeout, stdout that is not a JSON object, more than
 * 1 MiB of output) is a hook failure, which the runner turns into the hook's
 * `on_failure`.
 *
 * Each call runs in its own process group, so that a timeout, an abort or
 * unloading the hooks reaches the hook and everything it started
 * (`sleep 30 &` included), and so that nothing it started outlives the call.
 *
 * @module
 */
import {
  type GroupMode,
  liveMembers,
  runIsScoped,
  runRefusal,
  signalByProgram,
  signalProcess,
} from "../server/process.ts";
import type { Hook, HookSource } from "./hook.ts";
import type { HookContext, HookPoint, OnFailure } from "./types.ts";

/** Bytes a command hook may write on stdout, and separately on stderr, per call. */
export const MAX_HOOK_OUTPUT_BYTES = 1024 * 1024;

/** A command hook, resolved and validated (hooks_file.ts builds it from a hooks.json entry). */
export interface CommandHookSpec {
  name: string;
  point: HookPoint;
  /** What to run: an absolute path (resolved at load), or a name looked up on PATH. */
  program: string;
  args: string[];
  /** The hook process's working directory (absolute). */
  cwd: string;
  /** Variables set for the hook process, merged over its base environment (options.baseEnv). */
  env: Record<string, string>;
  timeoutMs: number;
  onFailure: OnFailure;
  /** pre_execution only: a failure blocks the job. */
  required: boolean;
  /** What `hooks list` shows: the hooks.json path and the command as configured. */
  source: HookSource;
}

/** Options of {@link commandHook}. */
export interface CommandHookOptions {
  /**
   * How each call gets its own process group: `setsid` runs `/usr/bin/setsid <program>` (cheap),
   * `detached` uses Deno's `detached: true` (forks the runtime; for systems without setsid).
   * @default "setsid" when /usr/bin/setsid exists, else "detached"
   */
  groupMode?: GroupMode;
  /** @default MAX_HOOK_OUTPUT_BYTES (1 MiB) */
  maxOutputBytes?: number;
  /** Calls in flight register here, so that unloading the hooks can kill them. */
  running?: RunningCommandHooks;
  /**
   * The environment the hook process starts from, `spec.env` over it: the server passes the one
   * commands get, without its secrets. @default the server's own, inherited whole
   */
  baseEnv?: Record<string, string>;
}

/**
 * The command hook calls in flight for one loaded set. Stopping it kills every one of them (the
 * server stopping, or `hooks reload` replacing the set) and resolves once they have ended.
 */
export class RunningCommandHooks {
  readonly #calls = new Map<AbortController, Promise<unknown>>();
  #stopped = false;

  /** Runs `call` with a signal that {@link stopAll} aborts; after stopAll, aborts it at once. */
  track<T>(call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    if (this.#stopped) controller.abort(new Error("the hooks were unloaded"));
    const promise = call(controller.signal);
    const settled = promise.then(() => {}, () => {}).finally(() => this.#calls.delete(controller));
    this.#calls.set(controller, settled);
    return promise;
  }

  /** Number of calls in flight. */
  get size(): number {
    return this.#calls.size;
  }

  /** Kills every call in flight, refuses new ones, and resolves when all have ended. */
  async stopAll(): Promise<void> {
    this.#stopped = true;
    const pending = [...this.#calls];
    for (const [controller] of pending) controller.abort(new Error("the hooks were unloaded"));
    await Promise.all(pending.map(([, settled]) => settled));
  }
}

const SETSID = "/usr/bin/setsid";
let detectedMode: GroupMode | undefined;

/** setsid when its binary is there (and readable under Deno's permissions), else detached. */
function defaultGroupMode(): GroupMode {
  if (detectedMode === undefined) {
    try {
      detectedMode = Deno.statSync(SETSID).isFile ? "setsid" : "detached";
    } catch (error) {
      // A locked-down server may not read /usr/bin; its --allow-run list knows setsid is there.
      const listed = error instanceof Deno.errors.NotCapable && runIsScoped() &&
        runRefusal(SETSID) === null;
      detectedMode = listed ? "setsid" : "detached";
    }
  }
  return detectedMode;
}

/**
 * A runtime `Hook` that runs `spec.program` for each call. `invoke` never throws synchronously:
 * every problem, a program that cannot be started included, is a rejection with a message meant
 * for the job's record (the runner adds the hook's name).
 *
 * @example
 * ```ts
 * const hook = commandHook({
 *   name: "audit-log", point: "post_execution", program: "/opt/hooks/audit.sh", args: ["--json"],
 *   cwd: "/opt/hooks", env: {}, timeoutMs: 2000, onFailure: "proceed", required: false,
 *   source: { kind: "command", location: "hooks/hooks.json", command: ["./audit.sh", "--json"] },
 * });
 * const result = await hook.invoke(ctx, AbortSignal.timeout(hook.timeoutMs));
 * ```
 */
export function commandHook(spec: CommandHookSpec, options: CommandHookOptions = {}): Hook {
  const run = (ctx: HookContext, signal: AbortSignal) => runCommandHook(spec, ctx, signal, options);
  return {
    name: spec.name,
    point: spec.point,
    source: spec.source,
    timeoutMs: spec.timeoutMs,
    onFailure: spec.onFailure,
    required: spec.required,
    invoke(ctx: HookContext, signal: AbortSignal): Promise<unknown> {
      if (!options.running) return run(ctx, signal);
      return options.running.track((stop) => run(ctx, AbortSignal.any([signal, stop])));
    },
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** How long output may keep flowing after the hook's leader exited or was killed. */
const DRAIN_MS = 1000;

async function runCommandHook(
  spec: CommandHookSpec,
  ctx: HookContext,
  signal: AbortSignal,
  options: CommandHookOptions,
): Promise<unknown> {
  if (signal.aborted) throw new Error(`not started: ${reasonText(signal.reason)}`);
  // Before spawning: a context that cannot be serialized must not leave a process waiting on stdin.
  const input = encoder.encode(JSON.stringify(ctx));
  const limit = options.maxOutputBytes ?? MAX_HOOK_OUTPUT_BYTES;
  const mode = options.groupMode ?? defaultGroupMode();
  const program = mode === "setsid" ? SETSID : spec.program;
  // setsid execs the hook out of Deno's sight: check it against a scoped --allow-run here.
  const refused = runRefusal(spec.program);
  if (refused !== null) throw new Error(`cannot start ${spec.program}: ${refused}`);

  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, {
      args: mode === "setsid" ? [spec.program, ...spec.args] : spec.args,
      cwd: spec.cwd,
      ...(options.baseEnv
        ? { clearEnv: true, env: { ...options.baseEnv, ...spec.env } }
        : { env: spec.env }),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: mode === "detached",
    }).spawn();
  } catch (error) {
    // NotFound, PermissionDenied (EACCES) or NotCapable (--allow-run does not cover it).
    throw new Error(`cannot start ${spec.program}: ${(error as Error).message}`, { cause: error });
  }

  // The leader's pid is the group's id (setsid and detached both make it a group leader).
  const pgid = child.pid;
  let leaderExited = false;
  /** Why the call failed before the hook finished on its own; the first cause wins. */
  let failure: string | null = null;
  const stopReading = new AbortController();
  let drainTimer: ReturnType<typeof setTimeout> | undefined;
  /** Signals still being sent by the `kill` program (scoped --allow-run): awaited before the end. */
  let signalling: Promise<unknown> = Promise.resolve();

  /** `why` is the failure to report; null, or `ifRunning` once the leader is gone, reports none. */
  const killGroup = (why: string | null, ifRunning = false) => {
    if (why !== null && failure === null && !(ifRunning && leaderExited)) failure = why;
    const sent = signalGroup(pgid, child.pid, leaderExited);
    if (sent instanceof Promise) signalling = Promise.all([signalling, sent]);
    // An escaped process (one that left the group) may hold the pipes open: stop waiting for EOF.
    drainTimer ??= setTimeout(() => stopReading.abort(), DRAIN_MS);
  };
  // A timeout or abort that comes after the hook has exited, while its output is drained, changes
  // nothing: the hook did finish.
  const onAbort = () => killGroup(`killed: ${reasonText(signal.reason)}`, true);
  signal.addEventListener("abort", onAbort, { once: true });
  // A backstop for callers that pass a signal that never aborts (`hooks run`, tests).
  const timeoutTimer = setTimeout(
    () => killGroup(`timed out after ${spec.timeoutMs} ms`, true),
    spec.timeoutMs,
  );

  const status = child.status.then((status) => {
    leaderExited = true;
    // Whatever the hook left running in its group (`cmd &`) ends with it; this also closes pipes
    // such a process inherited, so reading the output to its end cannot hang on it.
    killGroup(null);
    return status;
  });
  const stdin = writeAll(child.stdin, input);
  const overflow = (stream: string) => () =>
    killGroup(`wrote more than ${sizeText(limit)} on ${stream}`);

  try {
    const [out, err, exit] = await Promise.all([
      readBounded(child.stdout, limit, overflow("stdout"), stopReading.signal),
      readBounded(child.stderr, limit, overflow("stderr"), stopReading.signal),
      status,
      stdin,
    ]);
    await reapGroup(pgid);
    if (failure !== null) throw new Error(failure);
    return interpret(spec, mode, exit, decoder.decode(out), decoder.decode(err));
  } catch (error) {
    // Reading failed in some unforeseen way: still leave nothing running and nothing unreaped.
    if (!leaderExited) {
      killGroup(null);
      await status;
    }
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
    clearTimeout(timeoutTimer);
    clearTimeout(drainTimer);
    await signalling;
  }
}

/** Maps how the hook ended to its result or its failure. */
function interpret(
  spec: CommandHookSpec,
  mode: GroupMode,
  exit: Deno.CommandStatus,
  stdout: string,
  stderr: string,
): unknown {
  if (exit.signal !== null) throw new Error(`was killed by ${exit.signal}${tail(stderr)}`);
  if (exit.code === 0) return parseResult(stdout);
  if (exit.code === 2) {
    if (spec.point === "pre_execution") {
      return { proceed: false, message: stderr.trim() || `blocked by ${spec.name}` };
    }
    throw new Error(
      `exited with code 2, which blocks only before execution (pre_execution hooks); ` +
        `at ${spec.point} it is a failure${tail(stderr)}`,
    );
  }
  // setsid reports a program it could not exec (deleted or made non-executable since the load)
  // as 126/127 with this line; say it as the spawn failure it is.
  const setsidFailed = /^setsid: failed to execute [^:]*: (.*)$/m.exec(stderr);
  if (mode === "setsid" && (exit.code === 126 || exit.code === 127) && setsidFailed) {
    throw new Error(`cannot start ${spec.program}: ${setsidFailed[1]}`);
  }
  throw new Error(`exited with code ${exit.code}${tail(stderr)}`);
}

/** Empty stdout is "no changes"; otherwise it must hold one JSON object. */
function parseResult(stdout: string): unknown {
  const text = stdout.trim();
  if (text === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`printed invalid JSON on stdout: ${text.slice(0, 200)}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`printed JSON that is not an object on stdout: ${text.slice(0, 200)}`);
  }
  return value;
}

/** ": <the end of stderr>" for failure messages, or "" when the hook wrote nothing there. */
function tail(stderr: string): string {
  const text = stderr.trim();
  if (text === "") return "";
  return ": " + (text.length > 500 ? "..." + text.slice(-500) : text);
}

function reasonText(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  return reason === undefined ? "aborted" : String(reason);
}

function sizeText(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`;
}

/** Writes the context and closes stdin. A hook that exits without reading it all is its business. */
async function writeAll(stream: WritableStream<Uint8Array>, bytes: Uint8Array): Promise<void> {
  const writer = stream.getWriter();
  try {
    await writer.write(bytes);
    await writer.close();
  } catch {
    await writer.abort().catch(() => {});
  } finally {
    writer.releaseLock();
  }
}

/**
 * Reads a stream to its end, keeping at most `limit` bytes. Past the limit it calls `onOverflow`
 * (which kills the hook) and stops reading; `stop` cancels the read when EOF may never come.
 */
async function readBounded(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  onOverflow: () => void,
  stop: AbortSignal,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  const cancel = () => reader.cancel().catch(() => {});
  stop.addEventListener("abort", cancel, { once: true });
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > limit) {
        onOverflow();
        await cancel();
        break;
      }
      chunks.push(value);
    }
  } finally {
    stop.removeEventListener("abort", cancel);
    reader.releaseLock();
  }
  const bytes = new Uint8Array(Math.min(total, limit));
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/**
 * SIGKILL to the group; true when anything received it. Right after spawn, before setsid(2) has
 * run, the group does not exist yet, so the signal goes to the leader, which has not forked yet.
 * Under a scoped --allow-run a signal is a `kill` process, awaited without holding up the event
 * loop (a promise then); otherwise Deno.kill, at once.
 */
function signalGroup(
  pgid: number,
  pid: number,
  leaderExited: boolean,
): boolean | Promise<boolean> {
  if (runIsScoped()) {
    return (async () => (await killByProgram(-pgid)) || (!leaderExited && killByProgram(pid)))();
  }
  return kill(-pgid) || (!leaderExited && kill(pid));
}

function kill(pid: number): boolean {
  try {
    return signalProcess(pid, "SIGKILL");
  } catch {
    // NotFound: nothing left. Anything else (a permission): nothing more can be done from here,
    // and the call still ends through its drain deadline.
    return false;
  }
}

/** {@link kill} through the `kill` program (a scoped --allow-run), without blocking. */
async function killByProgram(pid: number): Promise<boolean> {
  // A signal costs a `kill` process: none when /proc shows no one left.
  if (pid < 0 && liveMembers(-pid) === 0) return false;
  try {
    return await signalByProgram(pid, "SIGKILL");
  } catch {
    return false; // as in kill()
  }
}

/**
 * After the leader was reaped: waits (up to a second) until no live process is left in the
 * group, signalling again each round in case one was forked between two signals. Zombies do not
 * count: in containers whose PID 1 never reaps orphans they would stay forever.
 */
async function reapGroup(pgid: number): Promise<void> {
  const deadline = performance.now() + 1000;
  let pause = 1;
  while (runIsScoped() ? await killByProgram(-pgid) : kill(-pgid)) {
    if (liveMembers(pgid) === 0 || performance.now() > deadline) return;
    await sleep(pause);
    pause = Math.min(pause * 2, 50);
  }
}
