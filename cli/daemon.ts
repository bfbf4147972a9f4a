/**
 * A server in the background: starting one detached from the terminal (pid
 * file and log in the state directory), and stopping it gracefully.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { VERSION } from "../server/version.ts";
import { processAlive } from "../server/process.ts";
import { CliError, type Output } from "./output.ts";
import {
  logFilePath,
  type PidFile,
  pidFilePath,
  readPidFile,
  recordedServerAlive,
  removePidFile,
  stateDir,
} from "./state.ts";
import { httpUrl } from "./target.ts";
import { certificateHint } from "../server/tls.ts";

export interface DetachOptions {
  host?: string;
  port?: string;
  /** Give up when /health has not answered within this time. @default 30000 */
  readyTimeoutMs?: number;
}

/** Starts `server start` in its own session with output to the log; resolves once /health answers. */
export async function startDetached(options: DetachOptions, output: Output): Promise<PidFile> {
  const dir = stateDir();
  try {
    Deno.mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new CliError(`Cannot create the state directory ${dir}: ${(error as Error).message}`);
  }
  // Two starts at once must not both pass the "already running" check: the second waits here
  // until the first has its server answering (the kernel drops the lock if this process dies).
  using _lock = await lockStateDir(dir);
  const pidPath = pidFilePath(dir);
  const log = logFilePath(dir);
  const existing = readPidFile(pidPath);
  if (existing && recordedServerAlive(pidPath, existing)) {
    throw new CliError(
      `A detached server is already running (pid ${existing.pid}, ${existing.url}). ` +
        "Stop it with `cc-executor server stop`, or use `server restart`.",
    );
  }
  if (existing) removePidFile(pidPath, existing.pid);

  const [program, ...prefix] = selfInvocation();
  const args = [...prefix, "server", "start", "--pid-file", pidPath];
  if (options.host !== undefined) args.push("--host", options.host);
  if (options.port !== undefined) args.push("--port", options.port);
  const logStart = fileSize(log);
  Deno.writeTextFileSync(log, `--- ${new Date().toISOString()} server start --detach\n`, {
    append: true,
  });
  // sh only redirects: the server's own output and anything the runtime prints (a panic) land in
  // the log. `detached` makes it a session leader, so the terminal's Ctrl-C and hangup miss it.
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'exec "$@" >>"$0" 2>&1', log, program!, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((status) => (exited = status));

  const spinner = output.spinner("starting cc-executor in the background");
  const deadline = performance.now() + (options.readyTimeoutMs ?? 30_000);
  try {
    while (true) {
      if (exited) {
        throw new CliError(
          `The server exited during start (code ${exited.code}):\n${
            tail(readFrom(log, logStart))
          }\nFull log: ${log}`,
        );
      }
      const recorded = readPidFile(pidPath);
      // Our child wrote the pid file once listening; with TLS, a certificate this process does not
      // trust (no DENO_CERT) still proves that much.
      if (
        recorded?.pid === child.pid && (await answersHealth(recorded.url, { untrustedOk: true }))
      ) return recorded;
      if (performance.now() > deadline) {
        child.kill("SIGTERM");
        throw new CliError(
          `The server did not answer /health within ${
            Math.round((options.readyTimeoutMs ?? 30_000) / 1000)
          } s; stopped it. Log: ${log}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    spinner.stop();
  }
}

export interface StopOptions {
  /** How long the graceful stop may take before the server is told to kill every job now. */
  timeoutMs: number;
}

/** Outcome of `stopDetached`: the server that was stopped, or null when none was running. */
export async function stopDetached(options: StopOptions, output: Output): Promise<PidFile | null> {
  const pidPath = pidFilePath();
  const recorded = readPidFile(pidPath);
  if (!recorded) return null;
  if (!recordedServerAlive(pidPath, recorded)) {
    removePidFile(pidPath, recorded.pid);
    return null;
  }
  const spinner = output.spinner(`stopping cc-executor (pid ${recorded.pid})`);
  try {
    // First SIGTERM: every job is stopped (SIGTERM, grace, SIGKILL) and reported, then it exits.
    Deno.kill(recorded.pid, "SIGTERM");
    if (await exits(recorded.pid, options.timeoutMs)) return recorded;
    // Second: the server SIGKILLs every group and exits within about 2 s.
    output.err(
      `cc-executor: the server did not stop within ${
        options.timeoutMs / 1000
      } s; killing its jobs now`,
    );
    spinner.update(`killing the jobs of pid ${recorded.pid}`);
    Deno.kill(recorded.pid, "SIGTERM");
    if (await exits(recorded.pid, 10_000)) return recorded;
    throw new CliError(
      `The server (pid ${recorded.pid}) is still running after two SIGTERMs; see ${recorded.log}`,
    );
  } finally {
    spinner.stop();
    if (!processAlive(recorded.pid)) removePidFile(pidPath, recorded.pid);
  }
}

/** An exclusive lock on `<dir>/server.lock`, held until disposed. */
async function lockStateDir(dir: string): Promise<Disposable> {
  const path = join(dir, "server.lock");
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { create: true, write: true });
  } catch (error) {
    throw new CliError(`Cannot write to the state directory ${dir}: ${(error as Error).message}`);
  }
  await file.lock(true);
  return { [Symbol.dispose]: () => file.close() };
}

/**
 * Whether something answers GET /health at the server of `wsUrl`. `untrustedOk`: a TLS server
 * whose certificate this process refuses (not trusted here, or naming another host) counts as
 * answering.
 */
export async function answersHealth(
  wsUrl: string,
  options: { untrustedOk?: boolean } = {},
): Promise<boolean> {
  try {
    const response = await fetch(httpUrl(wsUrl, "/health"), { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.ok;
  } catch (error) {
    return options.untrustedOk === true && certificateHint(error, wsUrl) !== null;
  }
}

/**
 * The program and arguments that started this process, up to (not including) the CLI's own
 * arguments: `deno run <flags> main.ts`, or the compiled binary alone. Re-running it with other
 * arguments keeps the same permissions and runtime flags.
 */
export function selfInvocation(): string[] {
  try {
    const argv = Deno.readTextFileSync("/proc/self/cmdline").split("\0");
    if (argv.at(-1) === "") argv.pop();
    const prefix = argv.slice(0, argv.length - Deno.args.length);
    if (prefix.length > 0) return [Deno.execPath(), ...prefix.slice(1)];
  } catch {
    // No /proc (macOS): fall through.
  }
  if (Deno.build.standalone) return [Deno.execPath()];
  const all = ["read", "write", "net", "env", "run", "sys", "ffi"] as const;
  if (all.every((name) => Deno.permissions.querySync({ name }).state === "granted")) {
    return [Deno.execPath(), "run", "-A", Deno.mainModule];
  }
  throw new CliError(
    "Cannot tell how this process was started, so cannot start it in the background. " +
      "Run `server start` in the foreground (under nohup or a service manager) instead.",
  );
}

/** Polls until `pid` is gone; false after `timeoutMs`. */
async function exits(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (processAlive(pid)) {
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

function fileSize(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
}

/** The any-address binds, and the loopback address of their family (as a URL hostname). */
const ANY_ADDRESS_LOOPBACK: Record<string, string> = { "0.0.0.0": "127.0.0.1", "::": "[::1]" };

function readFrom(path: string, offset: number): string {
  const bytes = Deno.readFileSync(path);
  return new TextDecoder().decode(bytes.subarray(offset));
}

function tail(text: string, lines = 15): string {
  return text.trimEnd().split("\n").slice(-lines).map((line) => `  ${line}`).join("\n");
}

/**
 * The record a server started with `--pid-file` writes once it listens, at `url`. A server bound to
 * every address (0.0.0.0, ::) is recorded at the loopback address of that family: the commands
 * that find it through this record run on this machine, and a certificate made for the machine
 * names 127.0.0.1, never 0.0.0.0. `host` keeps the bind, for `server restart`.
 */
export function pidRecord(url: string, pidPath: string): PidFile {
  const reachable = new URL(url);
  const bound = reachable.hostname.replace(/^\[(.*)\]$/, "$1");
  const loopback = ANY_ADDRESS_LOOPBACK[bound];
  if (loopback !== undefined) reachable.hostname = loopback;
  return {
    pid: Deno.pid,
    url: reachable.href,
    ...(loopback !== undefined ? { host: bound } : {}),
    log: logFilePath(dirname(pidPath)),
    started_at: new Date().toISOString(),
    version: VERSION,
  };
}
