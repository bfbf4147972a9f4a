/**
 * One process group: spawn `<shell> -c <command>` as the leader of a new
 * group, signal the whole group, and stop it (SIGTERM, a grace period,
 * SIGKILL). A group is what lets cancel and timeout reach every descendant,
 * including `cmd &`.
 *
 * Two ways to get a group, chosen once per server:
 * - `setsid`: run `/usr/bin/setsid <shell> -c ...`. setsid is not a group
 *   leader when Deno spawns it, so it calls setsid(2) and execs the shell in
 *   place: the shell's pid is the pgid. Cheapest (one extra exec).
 * - `detached`: Deno's `detached: true`, which forks the runtime. Slower; used
 *   where there is no setsid binary (macOS).
 *
 * Under a scoped `--allow-run` (a list of programs, `deno task start:locked`) two things change.
 * Deno.kill needs `--allow-run` unscoped, so signals go through the `kill` program instead
 * (`kill -s TERM -- -<pgid>`), which must be on the list. And setsid execs the shell out of
 * Deno's sight, so the leader is checked against the list here, as Deno would check it: a
 * program off the list fails to start with a message that says how to widen the list. Whether
 * `--allow-run` is scoped is decided once; the unscoped path is unchanged.
 *
 * @module
 */

export type GroupMode = "setsid" | "detached";

export interface SpawnSpec {
  shell: string;
  /** Run as `<shell> -c <command>`; for display only when `argv` is given. */
  command: string;
  /**
   * Run this program with these arguments directly, with no shell: for commands cc-executor builds
   * itself (a `claude -p <prompt>` run), so no text in an argument can be read as shell syntax.
   */
  argv?: readonly string[];
  cwd?: string;
  /** Merged over `baseEnv`, or over the server's environment without one. */
  env?: Record<string, string>;
  /**
   * The environment the command starts from instead of the server's (server/job_env.ts: the
   * server's without what it withholds).
   */
  baseEnv?: Record<string, string>;
  /** Pipe stdin (for `stdin` text or `jobs.input`); otherwise the command reads /dev/null. */
  pipeStdin: boolean;
}

/** A signal could not be delivered for a reason other than the group being gone. */
export class SignalError extends Error {
  constructor(message: string, override readonly cause: unknown) {
    super(message);
    this.name = "SignalError";
  }
}

/** The shell could not be started. */
export class SpawnError extends Error {
  constructor(message: string, override readonly cause: unknown) {
    super(message);
    this.name = "SpawnError";
  }
}

let scopedRun: boolean | undefined;

/**
 * Whether this process's `--allow-run` is a list of programs (or missing) rather than unscoped.
 * Asked once: permissions can only shrink while a process runs, and a server that lost its
 * unscoped `--allow-run` midway would fail its signals either way.
 */
export function runIsScoped(): boolean {
  return scopedRun ??= Deno.permissions.querySync({ name: "run" }).state !== "granted";
}

/**
 * Why Deno's permissions refuse to run `program` (a name looked up on PATH, or a path), as a
 * message that names it and says how to widen them; null when they allow it, which an unscoped
 * `--allow-run` always does.
 *
 * @example
 * ```ts
 * runRefusal("claude");
 * // 'Deno's permissions refuse to run claude: it is not on the server's --allow-run list ...'
 * ```
 */
export function runRefusal(program: string): string | null {
  if (!runIsScoped()) return null;
  if (Deno.permissions.querySync({ name: "run", command: program }).state === "granted") {
    return null;
  }
  return `Deno's permissions refuse to run ${program}: it is not on the server's --allow-run ` +
    `list (or was not found on PATH when the server started); add it there to allow it, e.g. ` +
    `--allow-run=bash,sh,setsid,kill,${program}`;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A running process group, disposable: leaving an `await using` block stops
 * whatever is still running in it.
 *
 * @example
 * ```ts
 * await using group = ProcessGroup.spawn({ shell: "bash", command: "sleep 10 & wait", pipeStdin: false }, "setsid");
 * await group.stop(2000); // SIGTERM to the group, 2 s grace, then SIGKILL
 * ```
 */
export class ProcessGroup implements AsyncDisposable {
  readonly pid: number;
  /** Equal to `pid`: the shell leads its own group. */
  readonly pgid: number;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  readonly stdin: WritableStream<Uint8Array> | null;
  /** Resolves when the group leader (the shell) has exited and been reaped. */
  readonly status: Promise<Deno.CommandStatus>;
  #leaderExited = false;

  private constructor(child: Deno.ChildProcess, pipeStdin: boolean) {
    this.pid = child.pid;
    this.pgid = child.pid;
    this.stdout = child.stdout;
    this.stderr = child.stderr;
    this.stdin = pipeStdin ? child.stdin : null;
    this.status = child.status.then((status) => {
      this.#leaderExited = true;
      return status;
    });
  }

  /**
   * Starts the shell as the leader of a new process group.
   *
   * @throws {SpawnError} when the program cannot be started (missing, not permitted).
   */
  static spawn(spec: SpawnSpec, mode: GroupMode): ProcessGroup {
    // Found on the server's PATH, not the job's: a job that sets its own PATH still gets its shell.
    const [leader, ...args] = spec.argv && spec.argv.length > 0
      ? [onServerPath(spec.argv[0]!), ...spec.argv.slice(1)]
      : [onServerPath(spec.shell), "-c", spec.command];
    const options: Deno.CommandOptions = {
      args: mode === "setsid" ? [leader!, ...args] : args,
      cwd: spec.cwd,
      ...(spec.baseEnv
        ? { clearEnv: true, env: { ...spec.baseEnv, ...spec.env } }
        : { env: spec.env }),
      stdin: spec.pipeStdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      detached: mode === "detached",
    };
    const program = mode === "setsid" ? onServerPath("setsid") : leader!;
    // Deno checks only what it spawns itself, which under setsid is setsid: the leader is
    // checked here, as Deno would check it. (Nothing to ask under an unscoped --allow-run.)
    const refused = runRefusal(leader!);
    if (refused !== null) throw new SpawnError(`Cannot start ${leader}: ${refused}`, null);
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(program, options).spawn();
    } catch (error) {
      // NotCapable past the check above: an LD_* or DYLD_* variable in the environment, which
      // Deno refuses to pass to any program under a scoped --allow-run.
      const hint = error instanceof Deno.errors.NotCapable && runIsScoped()
        ? " (under a scoped --allow-run; withhold it from commands with CC_EXECUTOR_ENV_WITHHOLD)"
        : "";
      throw new SpawnError(`Cannot start ${program}: ${(error as Error).message}${hint}`, error);
    }
    return new ProcessGroup(child, spec.pipeStdin);
  }

  get leaderExited(): boolean {
    return this.#leaderExited;
  }

  /**
   * Sends `signal` to every process of the group; false when none is left.
   * Right after spawn, before setsid(2) has run, the group does not exist yet,
   * so the signal goes to the leader itself, which has not forked anything.
   *
   * @throws {SignalError} when the signal cannot be sent for another reason.
   */
  signal(signal: Deno.Signal): boolean {
    return signalProcess(-this.pgid, signal) ||
      (!this.#leaderExited && signalProcess(this.pid, signal));
  }

  /** True while any process of the group is alive (zombies waiting for a reaper do not count). */
  isAlive(): boolean {
    if (!this.#leaderExited) return true;
    if (runIsScoped()) {
      // A signal costs a `kill` process here: /proc answers alone where it can be read.
      const live = liveMembers(this.pgid);
      if (live !== undefined) return live > 0;
    }
    // SIGCONT is harmless to a group we only probe while stopping it, and wakes stopped members.
    if (!this.signal("SIGCONT")) return false;
    return liveMembers(this.pgid) !== 0;
  }

  /**
   * Stops the whole group: SIGTERM (and SIGCONT, so stopped processes can act
   * on it), up to `graceMs` for everything to exit, then SIGKILL. Resolves
   * when the leader has been reaped; returns true when SIGKILL was needed.
   */
  async stop(graceMs: number): Promise<boolean> {
    const byProgram = runIsScoped();
    if (await this.#signal("SIGTERM", byProgram)) await this.#signal("SIGCONT", byProgram);
    let killed = false;
    if (!(await this.#waitGone(graceMs, byProgram))) {
      killed = await this.#signal("SIGKILL", byProgram);
      // SIGKILL cannot be ignored; the short wait only covers the kernel tearing processes down.
      await this.#waitGone(1000, byProgram);
    }
    await this.status;
    return killed;
  }

  /** After the leader exited: stops what it left running in the group (`cmd &`). True if anything was. */
  async sweep(graceMs: number): Promise<boolean> {
    if (!(runIsScoped() ? await this.#alive(true) : this.isAlive())) return false;
    await this.stop(graceMs);
    return true;
  }

  /**
   * `signal()`, or under a scoped --allow-run the same through the `kill` program, awaited so that
   * the event loop goes on while it runs (stopping a group probes it often, and every job that
   * ends is swept).
   */
  async #signal(signal: Deno.Signal, byProgram: boolean): Promise<boolean> {
    if (!byProgram) return this.signal(signal);
    return await signalByProgram(-this.pgid, signal) ||
      (!this.#leaderExited && await signalByProgram(this.pid, signal));
  }

  /** `isAlive()`, or its `kill` program form (see #signal). */
  async #alive(byProgram: boolean): Promise<boolean> {
    if (!byProgram) return this.isAlive();
    if (!this.#leaderExited) return true;
    const live = liveMembers(this.pgid);
    if (live !== undefined) return live > 0;
    return await signalByProgram(-this.pgid, "SIGCONT");
  }

  async #waitGone(ms: number, byProgram: boolean): Promise<boolean> {
    const deadline = performance.now() + ms;
    let pause = 2;
    while (await this.#alive(byProgram)) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await sleep(Math.min(pause, left));
      pause = Math.min(pause * 2, 50);
    }
    return true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop(0);
  }
}

/**
 * kill(2) to `pid` (a process group when negative): true when delivered, false when no such
 * process (group) exists. Deno.kill where `--allow-run` is unscoped; the `kill` program where it
 * is a list, since Deno.kill needs it unscoped.
 *
 * @throws {SignalError} for anything else: not permitted, or the `kill` program not allowed.
 */
export function signalProcess(pid: number, signal: Deno.Signal): boolean {
  if (runIsScoped()) return killProgram(pid, signal);
  try {
    Deno.kill(pid, signal);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw new SignalError(
      `Cannot send ${signal} to ${target(pid)}: ${(error as Error).message}`,
      error,
    );
  }
}

function target(pid: number): string {
  return pid < 0 ? `process group ${-pid}` : `process ${pid}`;
}

const decoder = new TextDecoder();

/**
 * `kill -s <signal> -- <pid>`, waited for: synchronous like Deno.kill, since callers count on a
 * pause or a SIGKILL having been delivered when it returns. About 5 ms a signal on our 2-core
 * machines, during which the event loop waits; stopping a group uses {@link signalByProgram}
 * instead.
 */
function killProgram(pid: number, signal: Deno.Signal): boolean {
  let output: Deno.CommandOutput;
  try {
    output = killCommand(pid, signal).outputSync();
  } catch (error) {
    throw killFailed(pid, signal, error);
  }
  return killDelivered(pid, signal, output);
}

/**
 * {@link signalProcess} without holding up the event loop while the `kill` program runs (under a
 * scoped --allow-run; Deno.kill otherwise).
 *
 * @throws {SignalError} as signalProcess does.
 */
export async function signalByProgram(pid: number, signal: Deno.Signal): Promise<boolean> {
  if (!runIsScoped()) return signalProcess(pid, signal);
  let output: Deno.CommandOutput;
  try {
    output = await killCommand(pid, signal).output();
  } catch (error) {
    throw killFailed(pid, signal, error);
  }
  return killDelivered(pid, signal, output);
}

/**
 * An empty environment: nothing in it for Deno to refuse (LD_*), and the C locale's
 * "No such process".
 */
function killCommand(pid: number, signal: Deno.Signal): Deno.Command {
  return new Deno.Command(onServerPath("kill"), {
    args: ["-s", signal.replace(/^SIG/, ""), "--", String(pid)],
    clearEnv: true,
    env: {},
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
}

function killFailed(pid: number, signal: Deno.Signal, error: unknown): SignalError {
  const why = error instanceof Deno.errors.NotCapable
    ? runRefusal("kill") ?? (error as Error).message
    : (error as Error).message;
  return new SignalError(`Cannot send ${signal} to ${target(pid)}: ${why}`, error);
}

/** True when delivered, false for no such process; a SignalError for anything else. */
function killDelivered(pid: number, signal: Deno.Signal, output: Deno.CommandOutput): boolean {
  if (output.success) return true;
  const message = decoder.decode(output.stderr).trim();
  if (/no such process/i.test(message)) return false;
  throw new SignalError(
    `Cannot send ${signal} to ${target(pid)}: ${message || `kill exited with ${output.code}`}`,
    null,
  );
}

let procReadable: boolean | undefined;

/**
 * The fields of /proc/<pid>/stat after the command name, the state first; null when there is no
 * such process (or no /proc). The command name may hold spaces and parentheses, hence lastIndexOf.
 */
export function procStat(pid: number): string[] | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/**
 * True while process `pid` exists and is not a zombie. Without /proc (macOS) a SIGCONT probe
 * decides: harmless to a running process, and it fails for a missing one.
 */
export function processAlive(pid: number): boolean {
  const fields = procStat(pid);
  if (fields) return fields[0] !== "Z" && fields[0] !== "X";
  if (procStat(Deno.pid) !== null) return false; // /proc works: there is no such process
  try {
    return signalProcess(pid, "SIGCONT");
  } catch {
    return false;
  }
}

/** When process `pid` started (epoch ms, to within a clock tick), from /proc; null if unknown. */
export function processStartedAt(pid: number): number | null {
  // Field 22 of stat, the start time in clock ticks after boot; the 20th after the command name.
  const ticks = Number(procStat(pid)?.[19]);
  let bootSeconds = NaN;
  try {
    bootSeconds = Number(/^btime (\d+)$/m.exec(Deno.readTextFileSync("/proc/stat"))?.[1]);
  } catch {
    return null;
  }
  if (!Number.isFinite(ticks) || !Number.isFinite(bootSeconds)) return null;
  // USER_HZ is 100 on every Linux architecture Deno runs on.
  return bootSeconds * 1000 + ticks * 10;
}

/**
 * Live (non-zombie) processes in group `pgid`, from /proc; undefined where
 * /proc cannot be read (not Linux, or not permitted), in which case callers
 * trust the kill(2) probe. Orphans whose reaper never reaps them (PID 1 in
 * many containers) stay zombies forever and would otherwise look alive.
 */
export function liveMembers(pgid: number): number | undefined {
  if (procReadable === false) return undefined;
  let count = 0;
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const fields = procStat(Number(entry.name));
      if (!fields) continue; // the process exited while we looked
      // "state ppid pgrp ...".
      if (Number(fields[2]) === pgid && fields[0] !== "Z" && fields[0] !== "X") count++;
    }
  } catch {
    procReadable = false;
    return undefined;
  }
  procReadable = true;
  return count;
}

const resolvedPrograms = new Map<string, string>();

/**
 * A bare program name as an absolute path on this process's PATH (the name itself when it is not
 * found there, or is already a path). Deno looks a name up on the child's PATH, which a job may set
 * to anything.
 */
function onServerPath(program: string): string {
  if (program.includes("/")) return program;
  let path = resolvedPrograms.get(program);
  if (path === undefined) {
    path = program;
    for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
      if (!dir) continue;
      const candidate = `${dir}/${program}`;
      try {
        const info = Deno.statSync(candidate);
        if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) {
          path = candidate;
          break;
        }
      } catch (error) {
        // A locked-down server may not read the folders on PATH. Deno resolved the names on its
        // --allow-run list on this same PATH at start: the path it allows is the one to run.
        if (
          error instanceof Deno.errors.NotCapable && runIsScoped() &&
          Deno.permissions.querySync({ name: "run", command: candidate }).state === "granted"
        ) {
          path = candidate;
          break;
        }
        // Otherwise not in this directory.
      }
    }
    resolvedPrograms.set(program, path);
  }
  return path;
}

/**
 * The environment of the start-up probes: the server's, except under a scoped --allow-run, where
 * Deno refuses any program given an LD_* or DYLD_* variable; that refusal is for the jobs to
 * report, each with Deno's own message, not for a probe to misreport as a missing program.
 */
function probeEnv(): Pick<Deno.CommandOptions, "clearEnv" | "env"> {
  return runIsScoped() ? { clearEnv: true, env: { PATH: Deno.env.get("PATH") ?? "" } } : {};
}

/** Whether a `setsid` binary can be run here; decides the group mode once per server. */
export async function detectGroupMode(): Promise<GroupMode> {
  // Off a scoped --allow-run (asking Deno could prompt): Linux has one, so the start check names
  // it, rather than every job paying for detached spawns without a word.
  if (runRefusal("setsid") !== null) return Deno.build.os === "linux" ? "setsid" : "detached";
  try {
    const { success } = await new Deno.Command("setsid", {
      args: ["true"],
      ...probeEnv(),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return success ? "setsid" : "detached";
  } catch {
    return "detached";
  }
}

/**
 * What the server itself runs that a scoped `--allow-run` leaves out: the shell (every command),
 * setsid (when groups are made with it) and kill (every signal: Deno.kill needs `--allow-run`
 * unscoped). Empty under an unscoped `--allow-run`.
 */
export function missingRunPrograms(shell: string, groupMode: GroupMode): string[] {
  if (!runIsScoped()) return [];
  const needed = [shell, ...(groupMode === "setsid" ? ["setsid"] : []), "kill"];
  return needed.filter((program) => runRefusal(program) !== null);
}

/** Whether `<shell> -c true` runs and succeeds here. */
async function shellWorks(shell: string): Promise<boolean> {
  if (runRefusal(shell) !== null) return false; // and no permission prompt
  try {
    const { success } = await new Deno.Command(shell, {
      args: ["-c", "true"],
      ...probeEnv(),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/**
 * The shell to run commands with: `configured` when given (checked once, so a
 * typo stops the start instead of failing every job), else bash where it can
 * be run (and Deno's permissions allow it), else sh.
 *
 * @throws {Error} when the configured shell cannot run `-c true`, or is off a scoped --allow-run.
 */
export async function resolveShell(configured?: string): Promise<string> {
  if (configured !== undefined) {
    const refused = runRefusal(configured);
    if (refused !== null) {
      throw new Error(`CC_EXECUTOR_SHELL=${configured} cannot be run: ${refused}`);
    }
    if (await shellWorks(configured)) return configured;
    throw new Error(`CC_EXECUTOR_SHELL=${configured} cannot be run (tried: ${configured} -c true)`);
  }
  return (await shellWorks("bash")) ? "bash" : "sh";
}
