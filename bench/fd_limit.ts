/**
 * Open-file limits of the bench and its servers. Scenario (i) holds a thousand sockets open on
 * each side and (j) two pipes per job in the server: more than the soft limit many systems start
 * processes with (1024). A process may raise its own soft limit up to the hard one, and root may
 * raise another's, which util-linux's `prlimit` does; Deno has no setrlimit of its own. Linux only,
 * like the rest of the bench (/proc).
 *
 * @module
 */

export interface FdLimit {
  soft: number;
  hard: number;
  /** The soft limit before the bench raised it; null when it was already high enough. */
  raisedFrom: number | null;
  /** Why a too-low limit could not be raised; null when it is high enough. */
  problem: string | null;
}

/** "Max open files" of /proc/<pid>/limits; "unlimited" is Infinity. */
export function readFdLimit(pid: number): { soft: number; hard: number } {
  const limits = Deno.readTextFileSync(`/proc/${pid}/limits`);
  const match = limits.match(/^Max open files\s+(\S+)\s+(\S+)/m);
  if (!match) throw new Error(`/proc/${pid}/limits has no "Max open files" line`);
  const value = (s: string) => s === "unlimited" ? Infinity : Number(s);
  return { soft: value(match[1]!), hard: value(match[2]!) };
}

/** File descriptors the process has open right now. */
export function openFds(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/**
 * Makes sure `pid` may open `need` files: raises its soft limit to the hard one when it is lower
 * (children started afterwards inherit the new limit). Never throws for a limit it cannot raise:
 * the caller decides whether to go on, and says so in the report.
 */
export async function ensureFdLimit(pid: number, need: number): Promise<FdLimit> {
  const before = readFdLimit(pid);
  if (before.soft >= need) return { ...before, raisedFrom: null, problem: null };
  const target = Number.isFinite(before.hard) ? before.hard : need;
  let failure = "";
  try {
    const { success, stderr } = await new Deno.Command("prlimit", {
      args: ["--pid", String(pid), `--nofile=${target}:`],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!success) failure = new TextDecoder().decode(stderr).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    failure = "prlimit is not installed (util-linux)";
  }
  const after = readFdLimit(pid);
  const problem = after.soft >= need
    ? null
    : `the open-file limit of pid ${pid} is ${after.soft} ` +
      `(hard ${after.hard}), below the ${need} needed${failure ? `; prlimit: ${failure}` : ""}`;
  return {
    ...after,
    raisedFrom: after.soft !== before.soft ? before.soft : null,
    problem,
  };
}
