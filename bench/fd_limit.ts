/**
 * Open-file limits of the bench and its servers. Scenario (i) holds a thousand sockets open on
 * each side and (j) two pipes per job in the server: more than the soft limit many systems start
 * processes with (1024). Deno raises its own soft limit to the hard one when it starts, so the bench
 * and every server it starts (`deno run`) already may open all they are allowed to; what is left is
 * to see whether the hard limit is enough, and skip the scenario with the reason when it is not.
 * Linux only, like the rest of the bench (/proc).
 *
 * @module
 */

export interface FdLimit {
  soft: number;
  hard: number;
  /** Why the limit is too low for the scenario; null when it is high enough. */
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

/** Whether `pid` may open `need` files; the caller decides whether to go on and says so. */
export function checkFdLimit(pid: number, need: number): FdLimit {
  const limit = readFdLimit(pid);
  const problem = limit.soft >= need
    ? null
    : `the open-file limit of pid ${pid} is ${limit.soft} ` +
      `(hard ${limit.hard}), below the ${need} needed (raise the hard limit: ulimit -Hn as root)`;
  return { ...limit, problem };
}
