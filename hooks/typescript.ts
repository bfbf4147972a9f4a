/**
 * TypeScript hooks: every `*.ts` file in the hooks folder that exports `HOOKS`. The files are
 * imported and run by a separate, long-lived Deno process, the hook host (hooks/ts_host.ts), not
 * by the server: a Worker stuck in a synchronous loop cannot be terminated, while a process can be
 * killed and replaced, and hook code in another process cannot change the server's environment or
 * working directory. A call is one JSON line each way over the host's stdin and stdout.
 *
 * @module
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultOnFailure, type Hook, type LoadedHooks, type LoaderOptions } from "./hook.ts";
import type { LoadProblem } from "./hook.ts";
import type { HookContext } from "./types.ts";
import type { HostFileResult, HostHookInfo, HostMessage } from "./ts_host.ts";
import { untrustedFileReason } from "./trust.ts";
import type { Logger } from "../server/log.ts";
import { runRefusal } from "../server/process.ts";

/** Options of {@linkcode loadTypeScriptHooks}. */
export interface TypeScriptLoaderOptions extends LoaderOptions {
  /**
   * Whether this is the compiled binary, which cannot import files it was not compiled with.
   * @default Deno.build.standalone
   */
  standalone?: boolean;
  /**
   * How long importing one hook file may take in the host before it is reported as hanging and
   * left out (the first import of an npm package downloads it).
   * @default 30000
   */
  importTimeoutMs?: number;
}

/** The message for every TypeScript hook file found by the compiled binary. */
export const COMPILED_BINARY_MESSAGE =
  "TypeScript hooks cannot be loaded by the compiled binary (it cannot import files that were " +
  "not compiled into it); use command hooks in hooks.json instead, see docs/hooks.md#command-hooks";

/** Permissions the host mirrors from the server when the server holds them in full. */
export const MIRRORED_PERMISSIONS = [
  "read",
  "write",
  "net",
  "env",
  "run",
  "sys",
  "ffi",
  "import",
] as const;

/** Longest line read from the host before it is passed on as it is (see #readLines). */
const MAX_LINE_CHARS = 16 * 1024 * 1024;
/** How long an aborted call's host gets to answer a ping before it is judged stuck. */
const PING_TIMEOUT_MS = 1000;
/** How long a closing host gets to exit on its own before SIGKILL. */
const CLOSE_GRACE_MS = 1000;
/** Past the host's own per-file import timeout, silence means synchronous code at top level. */
const LOAD_STALL_GRACE_MS = 1000;
/** How long a host may take to start before it says which file it is loading first. */
const HOST_START_MS = 10_000;
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;

const HOST_MODULE = new URL("./ts_host.ts", import.meta.url);
const SOURCE_DIR = new URL("../", import.meta.url);
const CONFIG_FILE = new URL("../deno.json", import.meta.url);

/**
 * The permission flags for the host: `--allow-<name>` for each permission `granted` says the
 * server holds in full, and when read is not among them, read access to just the hooks folder and
 * cc-executor's source (so the host can at least import the hooks and itself).
 */
export function hostPermissionFlags(
  granted: (name: typeof MIRRORED_PERMISSIONS[number]) => boolean,
  readable: string[],
): string[] {
  const flags = MIRRORED_PERMISSIONS.filter(granted).map((name) => `--allow-${name}`);
  if (!flags.includes("--allow-read")) flags.unshift(`--allow-read=${readable.join(",")}`);
  return flags;
}

function serverHolds(name: typeof MIRRORED_PERMISSIONS[number]): boolean {
  try {
    return Deno.permissions.querySync({ name } as Deno.PermissionDescriptor).state === "granted";
  } catch {
    // A permission name this Deno does not know: it cannot be mirrored.
    return false;
  }
}

/** Code-point order (UTF-16 `<` would misplace names with characters beyond U+FFFF). */
function compareCodePoints(a: string, b: string): number {
  const x = [...a], y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** The `*.ts` files directly in `dir` (not `.d.ts`, not hidden), sorted; null when it is missing. */
async function listHookFiles(dir: string): Promise<string[] | null> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      const name = entry.name;
      if (name.startsWith(".") || !name.endsWith(".ts") || name.endsWith(".d.ts")) continue;
      if (entry.isFile) names.push(name);
      else if (entry.isSymlink) {
        try {
          if ((await Deno.stat(`${dir}/${name}`)).isFile) names.push(name);
        } catch (error) {
          // A dangling link names no hook file.
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        }
      }
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  return names.sort(compareCodePoints).map((name) => resolve(dir, name));
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => timer = setTimeout(resolve, ms, "timeout"));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function randomNonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface PendingCall {
  resolve(message: Extract<HostMessage, { type: "result" }>): void;
  reject(error: Error): void;
}

/** How a host's start ended: its load results, or the file it was loading when it died or hung. */
type LoadOutcome =
  | { kind: "loaded"; files: HostFileResult[] }
  | { kind: "failed"; file: string | null; reason: string };

/** One hook host process and the calls in flight in it. */
class HostProcess {
  readonly pid: number;
  /** Resolves once the process has exited and its pipes are released. */
  readonly closed: Promise<void>;
  exited = false;
  /** Why calls still in flight when it exits fail; set by whoever decided to stop it. */
  exitReason: string | null = null;
  /** Hook name → index in this host's hook list; filled when it has loaded. */
  readonly indexByName = new Map<string, number>();
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #marker: string;
  readonly #logger: Logger;
  readonly #calls = new Map<number, PendingCall>();
  readonly #pongs = new Map<number, () => void>();
  readonly #readers: ReadableStreamDefaultReader<string>[] = [];
  readonly #stderrTail: string[] = [];
  readonly #encoder = new TextEncoder();
  #nextId = 1;
  #loadingFile: string | null = null;
  #onLoadMessage: ((message: HostMessage) => void) | null = null;
  #status: Deno.CommandStatus | null = null;

  constructor(files: string[], hooksDir: string, importTimeoutMs: number, logger: Logger) {
    const nonce = randomNonce();
    this.#marker = `\u0001${nonce} `;
    this.#logger = logger;
    const readable = [hooksDir, fileURLToPath(SOURCE_DIR)];
    const args = ["run", ...hostPermissionFlags(serverHolds, readable)];
    const config = fileURLToPath(CONFIG_FILE);
    try {
      if (Deno.statSync(config).isFile) args.push("--config", config);
    } catch {
      // No deno.json beside the source (or no right to see it): Deno finds a config itself.
    }
    // --no-lock: a hook importing a package must not rewrite cc-executor's own deno.lock (the
    // server's files are not the hooks' to change, and an install may be read-only).
    args.push(
      "--no-lock",
      "--no-prompt",
      fileURLToPath(HOST_MODULE),
      nonce,
      String(importTimeoutMs),
      ...files,
    );
    // Under a scoped --allow-run the host, a Deno process, must be on the list by its real path.
    const refused = runRefusal(Deno.execPath());
    if (refused !== null) throw new Error(`the TypeScript hook host cannot start: ${refused}`);
    this.#child = new Deno.Command(Deno.execPath(), {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.#writer = this.#child.stdin.getWriter();
    const reading = Promise.all([
      this.#readLines(this.#child.stdout, (line) => this.#onStdout(line)),
      this.#readLines(this.#child.stderr, (line) => {
        this.#stderrTail.push(line);
        if (this.#stderrTail.length > 10) this.#stderrTail.shift();
        this.#logger.debug(`hook host: ${line}`);
      }),
    ]);
    this.closed = this.#child.status.then(async (status) => {
      this.#status = status;
      this.exited = true;
      // Release stdin; writes queued for a dead process can only fail.
      this.#writer.abort().catch(() => {});
      // Give the pipes a moment to deliver what the host wrote last, but a grandchild it left
      // behind may hold them open forever.
      if (await withTimeout(reading, 200) === "timeout") {
        await Promise.all(this.#readers.map((reader) => reader.cancel().catch(() => {})));
        await reading;
      }
      const error = new Error(
        this.exitReason ?? `the TypeScript hook host exited unexpectedly (${this.describeExit()})`,
      );
      for (const call of this.#calls.values()) call.reject(error);
      this.#calls.clear();
      for (const pong of this.#pongs.values()) pong();
    });
  }

  /** "exit code 3", "signal SIGKILL", plus the host's last stderr line when there is one. */
  describeExit(): string {
    const status = this.#status;
    const how = !status
      ? "still running"
      : status.signal
      ? `signal ${status.signal}`
      : `exit code ${status.code}`;
    const last = this.#stderrTail.at(-1);
    return last ? `${how}; last output: ${last}` : how;
  }

  async #readLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    this.#readers.push(reader);
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        // Only the new text can hold the next newline: rescanning the whole buffer would cost
        // quadratic time while hook code writes a long line.
        let from = buffer.length;
        buffer += value;
        let newline;
        while ((newline = buffer.indexOf("\n", from)) >= 0) {
          onLine(buffer.slice(0, newline));
          buffer = buffer.slice(newline + 1);
          from = 0;
        }
        // No protocol message is this long: it is hook code writing without newlines. Pass it on
        // (it is logged) instead of holding it without bound.
        if (buffer.length > MAX_LINE_CHARS) {
          onLine(buffer);
          buffer = "";
        }
      }
    } catch {
      // Canceled after exit: nothing more to read.
    }
    if (buffer) onLine(buffer);
  }

  #onStdout(line: string): void {
    // Hook code that wrote to stdout without a newline leaves its text in front of the marker.
    const at = line.indexOf(this.#marker);
    if (at < 0) return this.#logger.debug(`hook host stdout: ${line}`);
    if (at > 0) this.#logger.debug(`hook host stdout: ${line.slice(0, at)}`);
    let message: HostMessage;
    try {
      message = JSON.parse(line.slice(at + this.#marker.length));
    } catch {
      return this.#logger.warn("hook host: a protocol line is not JSON", { line });
    }
    switch (message.type) {
      case "result": {
        const call = this.#calls.get(message.id);
        // No entry: the call was abandoned (its hook timed out); the late result is ignored.
        if (call) {
          this.#calls.delete(message.id);
          call.resolve(message);
        }
        break;
      }
      case "pong":
        this.#pongs.get(message.id)?.();
        break;
      case "loading":
        this.#loadingFile = message.file;
        this.#onLoadMessage?.(message);
        break;
      case "loaded":
        this.#onLoadMessage?.(message);
        break;
    }
  }

  /**
   * Waits for the `loaded` message. Once a file is being imported, silence for longer than
   * `stallMs` (the host's own import timeout plus a grace) means the file runs synchronous code
   * that never ends at top level; before that, the process gets `startMs` to start.
   */
  waitLoaded(stallMs: number, startMs: number): Promise<LoadOutcome> {
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      let done = false;
      const finish = (outcome: LoadOutcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#onLoadMessage = null;
        resolve(outcome);
      };
      const arm = (ms: number) => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          const file = this.#loadingFile;
          finish({
            kind: "failed",
            file,
            reason: file
              ? `did not finish loading within ${ms} ms (top-level code that never ends?)`
              : `did not start within ${ms} ms`,
          });
        }, ms);
      };
      this.#onLoadMessage = (message) => {
        if (message.type === "loaded") finish({ kind: "loaded", files: message.files });
        else if (message.type === "loading") arm(stallMs);
      };
      void this.closed.then(() =>
        finish({
          kind: "failed",
          file: this.#loadingFile,
          reason: `ended the hook host while loading (${this.describeExit()})`,
        })
      );
      arm(startMs);
    });
  }

  /** Sends a call; the promise settles with the host's result, or rejects if the host exits. */
  call(index: number, ctx: HookContext): {
    id: number;
    result: Promise<Extract<HostMessage, { type: "result" }>>;
  } {
    const id = this.#nextId++;
    const line = `{"type":"call","id":${id},"hook":${index},"ctx":${JSON.stringify(ctx)}}\n`;
    const result = new Promise<Extract<HostMessage, { type: "result" }>>((resolve, reject) => {
      if (this.exited) {
        return reject(new Error(this.exitReason ?? "the TypeScript hook host has exited"));
      }
      this.#calls.set(id, { resolve, reject });
    });
    this.#send(line);
    return { id, result };
  }

  /** Stops waiting for a call; a result that still comes is dropped. */
  abandon(id: number, error: Error): void {
    this.#calls.get(id)?.reject(error);
    this.#calls.delete(id);
  }

  /** Whether the host answers a ping within `ms` (false: it is stuck in synchronous code). */
  async ping(ms: number): Promise<boolean> {
    if (this.exited) return false;
    const id = this.#nextId++;
    const pong = new Promise<void>((resolve) => this.#pongs.set(id, resolve));
    this.#send(`{"type":"ping","id":${id}}\n`);
    const answered = await withTimeout(pong, ms);
    this.#pongs.delete(id);
    return answered !== "timeout" && !this.exited;
  }

  #send(line: string): void {
    // A failed write means the host is gone; its exit is handled where `closed` resolves.
    this.#writer.write(this.#encoder.encode(line)).catch(() => {});
  }

  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // It has already exited: nothing to kill.
    }
  }

  /** Closes stdin (the host exits on its own), SIGKILLs it after `graceMs`, and waits for it. */
  async close(graceMs: number): Promise<void> {
    this.exitReason ??= "the TypeScript hooks were unloaded";
    const closing = this.#writer.close().catch(() => {});
    if (await withTimeout(this.closed, graceMs) === "timeout") this.kill();
    await this.closed;
    await closing;
  }
}

/**
 * Owns the current host: replaces it when it dies or gets stuck, with a bounded number of
 * restarts, and maps each hook (by name, fixed at the first load) to the current host's index.
 */
class HostManager {
  readonly #dir: string;
  readonly #logger: Logger;
  readonly #importTimeoutMs: number;
  #files: string[];
  /** Files left out because they hung or ended the host while loading. */
  readonly excluded: { file: string; error: string }[] = [];
  #host: HostProcess | null = null;
  #launching: HostProcess | null = null;
  #starting: Promise<HostProcess> | null = null;
  #restarts: number[] = [];
  #failing = false;
  #disposed = false;
  #disposing: Promise<void> | null = null;
  #checking: Promise<void> | null = null;
  /** Why a file's hooks are missing from the current (restarted) host, by file. */
  #missing = new Map<string, string>();
  /** Files whose hooks the first load gave. */
  readonly #loadedFirst = new Set<string>();

  constructor(files: string[], dir: string, importTimeoutMs: number, logger: Logger) {
    this.#files = files;
    this.#dir = dir;
    this.#importTimeoutMs = importTimeoutMs;
    this.#logger = logger;
  }

  /** Starts a host, leaving out (and reporting) files that hang or end it while loading. */
  async #launch(): Promise<{ host: HostProcess | null; files: HostFileResult[] }> {
    for (;;) {
      if (this.#disposed) throw new Error("the TypeScript hooks were unloaded");
      if (this.#files.length === 0) return { host: null, files: [] };
      const host = new HostProcess(this.#files, this.#dir, this.#importTimeoutMs, this.#logger);
      this.#launching = host;
      const outcome = await host.waitLoaded(
        this.#importTimeoutMs + LOAD_STALL_GRACE_MS,
        HOST_START_MS,
      );
      this.#launching = null;
      if (this.#disposed) {
        await host.close(0);
        throw new Error("the TypeScript hooks were unloaded");
      }
      if (outcome.kind === "loaded") {
        for (const file of outcome.files) {
          for (const hook of "hooks" in file ? file.hooks : []) {
            host.indexByName.set(hook.name, hook.index);
          }
        }
        this.#watch(host);
        return { host, files: outcome.files };
      }
      host.exitReason = `the TypeScript hook host failed while loading: ${outcome.reason}`;
      await host.close(0);
      if (!outcome.file) {
        throw new Error(`the TypeScript hook host failed to start: ${outcome.reason}`);
      }
      const file = outcome.file;
      this.excluded.push({ file, error: `${file}: ${outcome.reason}; it was left out` });
      this.#logger.warn(`TypeScript hook file ${file} ${outcome.reason}; it was left out`);
      this.#files = this.#files.filter((f) => f !== file);
    }
  }

  /** The first load; the hook list it yields stays fixed for the life of this set. */
  async start(): Promise<HostFileResult[]> {
    const { host, files } = await this.#launch();
    this.#host = host;
    for (const file of files) if ("hooks" in file) this.#loadedFirst.add(file.file);
    return files;
  }

  #watch(host: HostProcess): void {
    void host.closed.then(() => {
      if (host !== this.#host || this.#disposed) return;
      this.#host = null;
      this.#logger.warn(
        `the TypeScript hook host exited unexpectedly (${host.describeExit()}); restarting it`,
      );
      this.#restart();
    });
  }

  #restart(): void {
    if (this.#disposed) return;
    const now = Date.now();
    this.#restarts = this.#restarts.filter((at) => now - at < RESTART_WINDOW_MS);
    if (this.#restarts.length >= MAX_RESTARTS) {
      this.#failing = true;
      this.#logger.error(
        `the TypeScript hook host failed ${MAX_RESTARTS} times within ${
          RESTART_WINDOW_MS / 1000
        } s; TypeScript hooks fail until they are reloaded`,
      );
      return;
    }
    this.#restarts.push(now);
    // The files are imported again: one changed to be writable by others since the first load is
    // not trusted any more.
    this.#files = this.#files.filter((file) => {
      const reason = untrustedFileReason(file, this.#dir);
      if (reason !== null) {
        this.#logger.warn(`after a hook host restart, ${file} is not loaded again: ${reason}`);
      }
      return reason === null;
    });
    const starting = this.#launch().then(({ host, files }) => {
      this.#noteChanges(files);
      if (!host) throw new Error("no TypeScript hook file could be loaded any more");
      this.#host = host;
      return host;
    }).finally(() => {
      if (this.#starting === starting) this.#starting = null;
    });
    // Callers see the failure when they await it; the log is the record either way.
    starting.catch((error) => {
      if (!this.#disposed) this.#logger.error(`hook host restart failed: ${error.message}`);
    });
    this.#starting = starting;
  }

  /** A restarted host re-imports the files, which may have changed on disk since the first load. */
  #noteChanges(files: HostFileResult[]): void {
    this.#missing.clear();
    for (const file of files) {
      if (!("error" in file)) continue;
      this.#missing.set(file.file, file.error);
      if (this.#loadedFirst.has(file.file)) {
        this.#logger.warn(`after a hook host restart, its hooks are gone: ${file.error}`);
      }
    }
    for (const { file, error } of this.excluded) this.#missing.set(file, error);
  }

  /** The host calls go to, waiting for one that is (re)starting. */
  async #ready(): Promise<HostProcess> {
    if (this.#disposed) throw new Error("the TypeScript hooks were unloaded");
    if (this.#checking) await this.#checking;
    if (this.#host && !this.#host.exited) return this.#host;
    if (!this.#starting && !this.#failing && !this.#host) this.#restart();
    if (this.#failing) {
      throw new Error("the TypeScript hook host keeps failing; see the server log");
    }
    if (this.#starting) return await this.#starting;
    // The current host has just exited and its replacement has not been asked for yet.
    await this.#host?.closed;
    return await this.#ready();
  }

  /** Runs hook `name` (from `file`) in the host. */
  async invoke(name: string, file: string, ctx: HookContext, signal: AbortSignal) {
    signal.throwIfAborted();
    const host = await this.#ready();
    signal.throwIfAborted();
    const index = host.indexByName.get(name);
    if (index === undefined) {
      const why = this.#missing.get(file) ?? `${file} no longer defines it`;
      throw new Error(`hook ${name} is no longer loaded since the hook host restarted: ${why}`);
    }
    const { id, result } = host.call(index, ctx);
    const onAbort = () => {
      host.abandon(id, signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      this.#checkAlive(host, name);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      const message = await result;
      if (!message.ok) {
        if (message.stack) this.#logger.debug(`hook ${name} threw`, { stack: message.stack });
        throw new Error(message.error);
      }
      if (ctx.point === "output" && message.state && typeof message.state === "object") {
        for (const key of Object.keys(ctx.state)) delete ctx.state[key];
        Object.assign(ctx.state, message.state);
      }
      return message.value;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * After an abandoned call: a host that does not answer a ping is stuck in synchronous code;
   * replace it. Calls made meanwhile wait for the verdict rather than queue behind the loop.
   */
  #checkAlive(host: HostProcess, name: string): void {
    if (host !== this.#host || host.exited || this.#disposed || this.#checking) return;
    const checking = (async () => {
      if (await host.ping(PING_TIMEOUT_MS)) return;
      if (host !== this.#host || host.exited || this.#disposed) return;
      this.#logger.warn(
        `hook ${name} did not return and the TypeScript hook host stopped answering; restarting it`,
      );
      this.#host = null;
      host.exitReason = `the hook host was restarted because hook ${name} did not return`;
      host.kill();
      this.#restart();
    })().finally(() => this.#checking = null);
    this.#checking = checking;
  }

  dispose(): Promise<void> {
    this.#disposing ??= (async () => {
      this.#disposed = true;
      this.#launching?.kill();
      await this.#checking;
      await this.#starting?.catch(() => {});
      await this.#host?.close(CLOSE_GRACE_MS);
    })();
    return this.#disposing;
  }
}

function toHook(
  info: HostHookInfo,
  file: string,
  manager: HostManager,
  defaultTimeoutMs: number,
): Hook {
  const required = info.required ?? false;
  return {
    name: info.name,
    point: info.point,
    source: { kind: "typescript", location: file },
    timeoutMs: info.timeout_ms ?? defaultTimeoutMs,
    required,
    onFailure: info.on_failure ?? defaultOnFailure(info.point, required),
    invoke: (ctx, signal) => manager.invoke(info.name, file, ctx, signal),
  };
}

/**
 * Loads the TypeScript hooks in `dir`: every `*.ts` file directly in it (not `*.d.ts`, not hidden
 * files), in file-name order, each exporting `HOOKS`. Files writable by others are refused with a
 * warning; files that fail to import or do not have the expected shape become problems (the other
 * files still load). The hooks run in a separate Deno process that is restarted when it dies or a
 * hook gets stuck in synchronous code; dispose the result to stop it.
 *
 * A missing folder, or one without hook files, gives an empty set and starts no process. The
 * compiled binary cannot import files, so there every file is a problem pointing to command hooks.
 *
 * @example
 * ```ts
 * await using loaded = await loadTypeScriptHooks("hooks", {
 *   defaultTimeoutMs: 5000,
 *   logger: createLogger("info"),
 * });
 * for (const problem of loaded.problems) console.error(`${problem.source}: ${problem.message}`);
 * const guard = loaded.hooks.find((hook) => hook.point === "pre_execution");
 * const result = await guard?.invoke(ctx, AbortSignal.timeout(guard.timeoutMs));
 * ```
 */
export async function loadTypeScriptHooks(
  dir: string,
  options: TypeScriptLoaderOptions,
): Promise<LoadedHooks> {
  const { logger, defaultTimeoutMs } = options;
  const standalone = options.standalone ?? Deno.build.standalone;
  const folder = resolve(dir);
  const problems: LoadProblem[] = [];
  const empty = (): LoadedHooks => ({
    hooks: [],
    problems,
    [Symbol.asyncDispose]: () => Promise.resolve(),
  });

  let files: string[] | null;
  try {
    files = await listHookFiles(folder);
  } catch (error) {
    const message = `the hooks folder cannot be read: ${(error as Error).message}`;
    logger.warn(`${folder}: ${message}`);
    problems.push({ source: folder, message });
    return empty();
  }
  if (!files || files.length === 0) return empty();

  if (standalone) {
    for (const file of files) problems.push({ source: file, message: COMPILED_BINARY_MESSAGE });
    return empty();
  }

  const trusted: string[] = [];
  for (const file of files) {
    let reason: string | null;
    try {
      reason = untrustedFileReason(file, folder);
    } catch (error) {
      // Deno.uid() needs --allow-sys; a file that cannot be checked is not trusted.
      reason = `${file} cannot be checked (${(error as Error).message})`;
    }
    if (reason === null) {
      trusted.push(file);
      continue;
    }
    const message = `refused: ${reason}`;
    logger.warn(`TypeScript hook file ${file} was not loaded: ${reason}`);
    problems.push({ source: file, message });
  }
  if (trusted.length === 0) return empty();

  const manager = new HostManager(trusted, folder, options.importTimeoutMs ?? 30_000, logger);
  let results: HostFileResult[];
  try {
    results = await manager.start();
  } catch (error) {
    await manager.dispose();
    const message = (error as Error).message;
    logger.error(message);
    for (const file of trusted) problems.push({ source: file, message });
    return empty();
  }
  const loadedBy = new Map(results.map((result) => [result.file, result]));
  const excluded = new Map(manager.excluded.map((entry) => [entry.file, entry.error]));
  const hooks: Hook[] = [];
  for (const file of trusted) {
    const result = loadedBy.get(file);
    const error = excluded.get(file) ?? (result && "error" in result ? result.error : undefined);
    if (error !== undefined) {
      problems.push({ source: file, message: error });
    } else if (result && "hooks" in result) {
      for (const info of result.hooks) hooks.push(toHook(info, file, manager, defaultTimeoutMs));
    }
  }
  if (hooks.length === 0) {
    await manager.dispose();
    return empty();
  }
  return { hooks, problems, [Symbol.asyncDispose]: () => manager.dispose() };
}
