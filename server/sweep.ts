/**
 * The start-up sweep: a server killed with SIGKILL leaves `running` records
 * behind, and maybe their process groups. The next server on the same node
 * marks those records `interrupted` and stops any group still alive from them, where it can tell
 * that the group is the job's (from /proc); a group it cannot check is left alone and logged.
 *
 * @module
 */
import type { Logger } from "./log.ts";
import { liveMembers, processAlive, processStartedAt, signalByProgram } from "./process.ts";
import type { JobRecord, Store } from "./store/store.ts";

export interface SweepOptions {
  nodeId: string;
  /** Between SIGTERM and SIGKILL. */
  killGraceMs: number;
  logger: Logger;
  /**
   * Records of this node that the cluster marked `lost` while it was down (server/cluster/
   * reaper.ts): their groups may live on too, and are stopped the same way. @default []
   */
  lost?: JobRecord[];
}

/** Sweeps what dead servers of this node left; resolves to the records it marked. */
export async function sweepOrphans(store: Store, options: SweepOptions): Promise<JobRecord[]> {
  let orphans: JobRecord[];
  try {
    // Every running record of this node (0 is no server's pid): a record with our own pid is a
    // previous server's that had the same pid (a container restarted), and is an orphan too.
    orphans = await store.orphans(options.nodeId, 0);
  } catch (error) {
    options.logger.warn("cannot look for jobs left by a previous server", {
      error: (error as Error).message,
    });
    return [];
  }
  // Another server on this node sharing the store is alive: its jobs are its own business.
  const dead = orphans.filter((record) => !serverAlive(record));
  await Promise.all(dead.map(async (record) => {
    const owned = record.pgid !== null ? ownsGroup(record) : "no";
    const stopped = owned === "yes" && await stopGroup(record.pgid!, options.killGraceMs);
    const reason = `the server (pid ${record.server_pid}) stopped without ending the job; ${
      owned === "unknown"
        ? `its process group ${record.pgid} was left alone: without /proc the server cannot tell ` +
          "whether it is still the job's"
        : stopped
        ? "its process group was stopped at the next start"
        : "no process of it was left"
    }`;
    await store.markInterrupted(record.job_id, Date.now(), reason);
    if (owned === "unknown") {
      // What is left of the group, if anything, is for someone who can tell it is the job's.
      options.logger.warn(
        "job interrupted by a server crash; its process group could not be checked and may " +
          "still be running",
        { job_id: record.job_id, pgid: record.pgid },
      );
      return;
    }
    options.logger.warn("job interrupted by a server crash", {
      job_id: record.job_id,
      pgid: record.pgid,
      stopped,
    });
  }));
  for (const record of options.lost ?? []) {
    if (record.pgid === null || ownsGroup(record) !== "yes") continue;
    const stopped = await stopGroup(record.pgid, options.killGraceMs);
    options.logger.warn("stopped what was left of a job the cluster marked lost", {
      job_id: record.job_id,
      pgid: record.pgid,
      stopped,
    });
  }
  return dead;
}

/**
 * Whether group `pgid` is still the job's: its leader (pid = pgid) started when the job did. A
 * pgid can be reused after a reboot or a long time; a group whose leader is gone but whose
 * members live on can only be the job's (a new group needs a leader with that pid).
 *
 * "unknown" without /proc: Deno opens it only to --allow-all, so a locked-down server never has it
 * (nor has macOS). A signal could tell that some group has that pgid, not whose it is, and a pgid
 * reused by another group of this user would be stopped in the job's place: such a group is left
 * alone.
 */
function ownsGroup(record: JobRecord): "yes" | "no" | "unknown" {
  const pgid = record.pgid!;
  const started = processStartedAt(pgid);
  // The record is written just before the spawn, which a slow store can delay by seconds.
  if (started !== null) {
    return started >= record.started_at - 1000 && started <= record.started_at + 30_000
      ? "yes"
      : "no";
  }
  const live = liveMembers(pgid);
  if (live !== undefined) return live > 0 ? "yes" : "no";
  return "unknown";
}

/** SIGTERM to the group, the grace period, SIGKILL; true when something was signalled. */
async function stopGroup(pgid: number, graceMs: number): Promise<boolean> {
  if (!(await signal(pgid, "SIGTERM"))) return false;
  await signal(pgid, "SIGCONT");
  const deadline = performance.now() + graceMs;
  while ((await groupLive(pgid)) && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  if (await groupLive(pgid)) await signal(pgid, "SIGKILL");
  return true;
}

/** Live members in the group: from /proc, else whether a signal still finds any (zombies too). */
async function groupLive(pgid: number): Promise<boolean> {
  const live = liveMembers(pgid);
  return live !== undefined ? live > 0 : await signal(pgid, "SIGCONT");
}

/** Deno.kill, or the `kill` program under a scoped --allow-run. */
async function signal(pgid: number, name: Deno.Signal): Promise<boolean> {
  try {
    return await signalByProgram(-pgid, name);
  } catch {
    return false; // not ours to signal: nothing more can be done from here
  }
}

/**
 * Whether the server that wrote `record` still runs: a process with its pid that started before
 * the job did. Not this process (it has no jobs yet), and not a later process that got the pid.
 */
function serverAlive(record: JobRecord): boolean {
  if (record.server_pid === Deno.pid || !processAlive(record.server_pid)) return false;
  const started = processStartedAt(record.server_pid);
  return started === null || started <= record.started_at + 1000;
}
