/**
 * Scenario (j): many jobs running at once. A fresh server (its own process) gets `jobs` executes
 * of a long `sleep`, sent all at once over `connections` connections; the figures are how long
 * until every job has started (its execute answered and its `process.started` received) and the
 * server's RSS while they all run. Then every job is canceled and the bench checks that each
 * ended with one `process.completed` and that no process of theirs is left.
 *
 * @module
 */
import { ExecutorClient } from "../server/client.ts";
import { procStat } from "../server/process.ts";
import { checkFdLimit, type FdLimit, openFds } from "./fd_limit.ts";
import { type CapSetting, raiseCaps } from "./server_caps.ts";
import { within } from "./scenarios.ts";
import { RssSampler, ServerProcess, statusField, steadyRss } from "./server_process.ts";
import { sleep, summarize, type Summary } from "./stats.ts";

export interface SleepJobsOptions {
  cwd: string;
  jobs: number;
  connections: number;
  /** The sleep: longer than starting them all can take, so none ends by itself. */
  sleepSeconds: number;
}

export interface SleepJobsResult {
  jobs: number;
  connections: number;
  command: string;
  /** The caps the jobs needed, as the server started with them, and which the bench raised. */
  caps: CapSetting[];
  fdLimit: FdLimit;
  /** Server RSS with the connections open and no job, then with every job running; bytes. */
  idleRss: number;
  runningRss: number;
  /** Highest RSS sampled from the first execute to the last job's end. */
  peakRss: number;
  /** Once every job had ended. */
  endedRss: number;
  /** From the first execute sent to the last execute answered / last `process.started`, ms. */
  allAnsweredMs: number;
  allStartedMs: number;
  /** Each job's execute sent -> answered, ms. */
  executeMs: Summary;
  /** CPU seconds the server used starting them all. */
  startCpu: number;
  /** The jobs' own processes (found by their process groups) with all running, and their RSS summed. */
  jobProcesses: number;
  jobProcessesRss: number;
  /** File descriptors the server had open with every job running. */
  serverFds: number;
  /** From the first cancel sent to the last `process.completed`, ms. */
  endMs: number;
  /** How the jobs ended, by status (expected: all canceled). */
  statuses: Record<string, number>;
  /** Processes of the jobs' groups still alive after every job ended (expected: 0); killed then. */
  leftProcesses: number;
}

export type SleepJobsOutcome = SleepJobsResult | { skipped: string };

/** Per job the server holds a stdout and a stderr pipe; the rest is headroom. */
const FD_PER_JOB = 2;
const FD_HEADROOM = 256;

export async function measureSleepJobs(options: SleepJobsOptions): Promise<SleepJobsOutcome> {
  const perConnection = Math.ceil(options.jobs / options.connections);
  const historyDir = await Deno.makeTempDir({ prefix: "cc-executor-bench-sleep-" });
  try {
    const base = { CC_EXECUTOR_DB: `${historyDir}/history.db` };
    const { env, settings: caps } = raiseCaps([
      { variable: "CC_EXECUTOR_MAX_JOBS", field: "maxJobs", need: options.jobs },
      {
        variable: "CC_EXECUTOR_MAX_JOBS_PER_SESSION",
        field: "maxJobsPerSession",
        need: perConnection,
      },
      { variable: "CC_EXECUTOR_MAX_JOBS_PER_TOKEN", field: "maxJobsPerToken", need: options.jobs },
    ], base);
    await using server = await ServerProcess.start({ cwd: options.cwd, env: { ...base, ...env } });
    const fdLimit = checkFdLimit(server.pid, options.jobs * FD_PER_JOB + FD_HEADROOM);
    if (fdLimit.problem) return { skipped: `server: ${fdLimit.problem}` };
    const clients = await Promise.all(
      Array.from({ length: options.connections }, () => ExecutorClient.connect(server.url)),
    );
    try {
      return { ...await run(server, clients, options), caps, fdLimit };
    } finally {
      await Promise.all(clients.map((client) => client.close()));
    }
  } finally {
    await Deno.remove(historyDir, { recursive: true });
  }
}

async function run(
  server: ServerProcess,
  clients: ExecutorClient[],
  options: SleepJobsOptions,
): Promise<Omit<SleepJobsResult, "caps" | "fdLimit">> {
  const command = `sleep ${options.sleepSeconds}`;
  const ids = Array.from({ length: options.jobs }, (_, k) => `bench-sleep-${Date.now()}-${k}`);
  const clientOf = (k: number) => clients[k % clients.length]!;
  const started = new Map<string, number>();
  const completed = new Map<string, string>();
  const completions = new Map<string, number>();
  const pgids = new Set<number>();
  let allStarted!: () => void, allCompleted!: () => void;
  const startedAll = new Promise<void>((resolve) => (allStarted = resolve));
  const completedAll = new Promise<void>((resolve) => (allCompleted = resolve));
  const stops = clients.map((client) =>
    client.onNotification(({ method, params }) => {
      const id = params?.job_id;
      if (!id) return;
      if (method === "process.started" && !started.has(id)) {
        started.set(id, performance.now());
        pgids.add(Number(params.pgid));
        if (started.size === options.jobs) allStarted();
      } else if (method === "process.completed") {
        completions.set(id, (completions.get(id) ?? 0) + 1);
        if (!completed.has(id)) completed.set(id, String(params.status));
        if (completed.size === options.jobs) allCompleted();
      }
    })
  );
  await sleep(500);
  const idleRss = await steadyRss(server);
  using sampler = new RssSampler(server, 50);
  try {
    const cpu0 = server.cpuSeconds();
    const t0 = performance.now();
    const executeMs: number[] = [];
    let lastAnswer = t0;
    const answers = ids.map((job_id, k) => {
      const sent = performance.now();
      return clientOf(k).request("execute", { command, job_id }).then(() => {
        lastAnswer = performance.now();
        executeMs.push(lastAnswer - sent);
      });
    });
    await within(Promise.all([...answers, startedAll]), 120_000, "every sleep job started");
    const allStartedMs = Math.max(...started.values()) - t0;
    const startCpu = server.cpuSeconds() - cpu0;
    await sleep(1000);
    const runningRss = await steadyRss(server);
    const serverFds = openFds(server.pid);
    const processes = groupMembers(pgids);
    if (completed.size > 0) {
      throw new Error(`${completed.size} sleep job(s) ended before they were canceled`);
    }

    const t1 = performance.now();
    await Promise.all(ids.map((id, k) => clientOf(k).cancel(id)));
    await within(completedAll, 60_000, "every sleep job ended after its cancel");
    const endMs = performance.now() - t1;
    sampler.stop();
    const peakRss = Math.max(idleRss, sampler.peak);
    const duplicates = [...completions.values()].filter((n) => n !== 1).length;
    if (duplicates > 0) throw new Error(`${duplicates} job(s) got more than one process.completed`);
    const leftProcesses = await reap(pgids);
    await sleep(1000);
    const endedRss = await steadyRss(server);
    const statuses: Record<string, number> = {};
    for (const status of completed.values()) statuses[status] = (statuses[status] ?? 0) + 1;
    return {
      jobs: options.jobs,
      connections: clients.length,
      command,
      idleRss,
      runningRss,
      peakRss,
      endedRss,
      allAnsweredMs: lastAnswer - t0,
      allStartedMs,
      executeMs: summarize(executeMs),
      startCpu,
      jobProcesses: processes.length,
      jobProcessesRss: processes.reduce((sum, p) => sum + p.rss, 0),
      serverFds,
      endMs,
      statuses,
      leftProcesses,
    };
  } finally {
    for (const stop of stops) stop();
    // A failure part way must not leave sleeps behind (stopping the server would end them too).
    if (completed.size < ids.length) {
      await Promise.allSettled(ids.map((id, k) => clientOf(k).cancel(id)));
    }
  }
}

/**
 * Waits up to 5 s for the groups to empty, then kills what is left (so nothing outlives the
 * bench) and returns how many processes that was.
 */
async function reap(pgids: ReadonlySet<number>): Promise<number> {
  const deadline = performance.now() + 5_000;
  let left = groupMembers(pgids);
  while (left.length > 0 && performance.now() < deadline) {
    await sleep(50);
    left = groupMembers(pgids);
  }
  for (const pgid of new Set(left.map((p) => p.pgid))) {
    try {
      Deno.kill(-pgid, "SIGKILL");
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return left.length;
}

/** Every live (non-zombie) process whose process group is one of `pgids`, with its RSS, from /proc. */
function groupMembers(pgids: ReadonlySet<number>): { pid: number; pgid: number; rss: number }[] {
  const members: { pid: number; pgid: number; rss: number }[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    const fields = procStat(pid); // "state ppid pgrp ..."; null once it exited
    if (!fields || fields[0] === "Z" || fields[0] === "X") continue;
    const pgid = Number(fields[2]);
    if (!pgids.has(pgid)) continue;
    let rss = 0;
    try {
      rss = statusField(pid, "VmRSS");
    } catch {
      continue; // it exited between the two reads
    }
    members.push({ pid, pgid, rss });
  }
  return members;
}
