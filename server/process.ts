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
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(program, options).spawn();
    } catch (error) {
      throw new SpawnError(`Cannot start ${program}: ${(error as Error).message}`, error);
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
    return kill(-this.pgid, signal) || (!this.#leaderExited && kill(this.pid, signal));
  }

  /** True while any process of the group is alive (zombies waiting for a reaper do not count). */
  isAlive(): boolean {
    if (!this.#leaderExited) return true;
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
    if (this.signal("SIGTERM")) this.signal("SIGCONT");
    let killed = false;
    if (!(await this.#waitGone(graceMs))) {
      killed = this.signal("SIGKILL");
      // SIGKILL cannot be ignored; the short wait only covers the kernel tearing processes down.
      await this.#waitGone(1000);
    }
    await this.status;
    return killed;
  }

  /** After the leader exited: stops what it left running in the group (`cmd &`). True if anything was. */
  async sweep(graceMs: number): Promise<boolean> {
    if (!this.isAlive()) return false;
    await this.stop(graceMs);
    return true;
  }

  async #waitGone(ms: number): Promise<boolean> {
    const deadline = performance.now() + ms;
    let pause = 2;
    while (this.isAlive()) {
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
 * kill(2): true when delivered, false when no such process (group) exists.
 *
 * @throws {SignalError} for anything else, e.g. Deno's run permission missing (Deno.kill needs
 * an unscoped --allow-run).
 */
function kill(pid: number, signal: Deno.Signal): boolean {
  try {
    Deno.kill(pid, signal);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    const target = pid < 0 ? `process group ${-pid}` : `process ${pid}`;
    throw new SignalError(`Cannot send ${signal} to ${target}: ${(error as Error).message}`, error);
  }
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
    Deno.kill(pid, "SIGCONT");
    return true;
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
      try {
        const candidate = `${dir}/${program}`;
        const info = Deno.statSync(candidate);
        if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) {
          path = candidate;
          break;
        }
      } catch {
        // Not in this directory.
      }
    }
    resolvedPrograms.set(program, path);
  }
  return path;
}

/** Whether a `setsid` binary can be run here; decides the group mode once per server. */
export async function detectGroupMode(): Promise<GroupMode> {
  try {
    const { success } = await new Deno.Command("setsid", {
      args: ["true"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return success ? "setsid" : "detached";
  } catch {
    return "detached";
  }
}

/** Whether `<shell> -c true` runs and succeeds here. */
async function shellWorks(shell: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(shell, {
      args: ["-c", "true"],
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
 * be run, else sh.
 *
 * @throws {Error} when the configured shell cannot run `-c true`.
 */
export async function resolveShell(configured?: string): Promise<string> {
  if (configured !== undefined) {
    if (await shellWorks(configured)) return configured;
    throw new Error(`CC_EXECUTOR_SHELL=${configured} cannot be run (tried: ${configured} -c true)`);
  }
  return (await shellWorks("bash")) ? "bash" : "sh";
}
