/**
 * Scenario (l): what routing costs. One real redis-server; three cluster nodes (server processes
 * with REDIS_URL, ids node-1 to node-3, each labelled `bench`); and, for comparison, a server on
 * the same Redis with CC_EXECUTOR_CLUSTER=off (Redis as its history store only: no node, no job
 * streams). Every client connects to node-1, the front node, or to the cluster-off server.
 *
 * - jobs/s: `jobs` executes of `echo $CC_EXECUTOR_NODE_ID` over `connections` connections, each
 *   one job after another: to the cluster-off server; to node-1, run there (direct); and to
 *   node-1 with `labels: ["bench"]`, so the cluster's queue spreads them over the three nodes
 *   (routed). What each job prints says which node ran it.
 * - latency: one `true` at a time, execute sent -> `process.completed` received, on the
 *   cluster-off server, on node-1 (local), and sent to node-1 with `node: "node-2"` (routed).
 *
 * @module
 */
import { ExecutorClient, type RawNotification } from "../server/client.ts";
import type { ExecuteParams } from "../server/protocol.ts";
import { HAS_REDIS, type RedisServer, startRedis } from "../tests/redis_util.ts";
import { within } from "./scenarios.ts";
import { cpuSecondsOf, ownCpuSeconds, ServerProcess, track } from "./server_process.ts";
import { percentile, rotateRounds, summarize, type Summary } from "./stats.ts";

export interface RoutingOptions {
  cwd: string;
  /** Jobs per jobs/s run. */
  jobs: number;
  /** Connections sending them, each one job after another. */
  connections: number;
  /** jobs/s runs per path; each round runs every path once, in a rotating order. */
  rounds: number;
  /** Jobs per path before the first round (they also let every node find the label's queue). */
  warmupJobs: number;
  latencySamples: number;
  latencyWarmup: number;
}

export const NODES = ["node-1", "node-2", "node-3"] as const;
/** The cluster-off server's CC_EXECUTOR_NODE_ID: only what its jobs print and its records say. */
const OFF_ID = "cluster-off";
const LABEL = "bench";
const RATE_COMMAND = "echo $CC_EXECUTOR_NODE_ID";
const LATENCY_COMMAND = "true";

export const RATE_PATHS = ["off", "direct", "routed"] as const;
export type RatePath = (typeof RATE_PATHS)[number];
export const LATENCY_PATHS = ["off", "local", "routed"] as const;
export type LatencyPath = (typeof LATENCY_PATHS)[number];

export interface RoutingRate {
  jobs: number;
  seconds: number;
  perSecond: number;
  /** Jobs each server ran, by node id (what the job printed). */
  byNode: Record<string, number>;
  /** CPU seconds each server process used during the run, by node id (cluster-off included). */
  serverCpu: Record<string, number>;
  redisCpu: number;
  /** This (the client) process. */
  clientCpu: number;
}

/** A Summary with the 95th percentile too (nearest rank). */
export type Spread = Summary & { p95: number };

export interface RoutingLatency {
  /** execute sent -> its answer, ms. */
  answer: Spread;
  /** execute sent -> `process.started` received, ms. */
  started: Spread;
  /** execute sent -> `process.completed` received, ms. */
  completed: Spread;
  /** The job's own run (spawn -> end) as the node that ran it reports it, ms. */
  job: Spread;
}

export interface RoutingResult {
  nodes: string[];
  front: string;
  /** Where the routed latency samples run. */
  latencyNode: string;
  label: string;
  rateCommand: string;
  latencyCommand: string;
  jobs: number;
  connections: number;
  /** Every round's run, by path, in round order. */
  rates: Record<RatePath, RoutingRate[]>;
  latency: Record<LatencyPath, RoutingLatency>;
  /** How many nodes cluster.status on the front node counted up before the runs. */
  nodesUp: number;
}

export type RoutingOutcome = RoutingResult | { skipped: string };

export async function measureRouting(options: RoutingOptions): Promise<RoutingOutcome> {
  if (!HAS_REDIS) {
    return { skipped: "redis-server is not installed (apt-get install redis-server)" };
  }
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-bench-routing-" });
  const servers: ServerProcess[] = [];
  let redis: RedisServer | null = null;
  const released = Promise.withResolvers<void>();
  try {
    redis = await startRedis();
    const redisServer = redis;
    // redis-server is not a ServerProcess: registered here so an interrupted run stops it too,
    // after the servers that use it (a node stopping without its Redis waits on it).
    track({
      stop: async (graceMs?: number) => {
        await Promise.allSettled(servers.map((server) => server.stop(graceMs)));
        await redisServer.stop();
      },
    }, released.promise);
    const common = { REDIS_URL: redis.url, CC_EXECUTOR_NODE_LABELS: LABEL };
    const envs: [string, Record<string, string>][] = [
      [OFF_ID, { REDIS_URL: redis.url, CC_EXECUTOR_CLUSTER: "off" }],
      ...NODES.map((id): [string, Record<string, string>] => [id, { ...common }]),
    ];
    // Side by side: starting them one after another would take longer than the runs.
    const started = await Promise.allSettled(envs.map(([id, env]) =>
      ServerProcess.start({
        cwd: options.cwd,
        // CC_EXECUTOR_DB also places the Redis store's outbox: in the run's directory.
        env: { ...env, CC_EXECUTOR_NODE_ID: id, CC_EXECUTOR_DB: `${dir}/${id}.db` },
      })
    ));
    for (const s of started) if (s.status === "fulfilled") servers.push(s.value);
    const failed = started.find((s) => s.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const byId = new Map(envs.map(([id], k) => [id, servers[k]!]));
    return await run(byId, redis, options);
  } finally {
    await Promise.allSettled(servers.map((server) => server.stop()));
    if (redis) await redis[Symbol.asyncDispose]();
    released.resolve();
    await Deno.remove(dir, { recursive: true });
  }
}

async function run(
  servers: Map<string, ServerProcess>,
  redis: RedisServer,
  options: RoutingOptions,
): Promise<RoutingResult> {
  const front = NODES[0];
  const other = NODES[1];
  const offServer = servers.get(OFF_ID)!;
  const frontServer = servers.get(front)!;
  const connect = (server: ServerProcess) =>
    Promise.all(
      Array.from({ length: options.connections }, async () =>
        new Watcher(await ExecutorClient.connect(server.url))),
    );
  const watchers: Watcher[] = [];
  try {
    const off = await connect(offServer);
    watchers.push(...off);
    const onFront = await connect(frontServer);
    watchers.push(...onFront);
    const status = await onFront[0]!.client.request("cluster.status", {});
    const nodesUp = status.nodes.filter((n) => n.status === "up").length;
    if (nodesUp !== NODES.length) {
      throw new Error(
        `cluster.status on ${front}: ${nodesUp} node(s) up, expected ${NODES.length}`,
      );
    }

    const paths: Record<RatePath, { watchers: Watcher[]; params: ExecuteParams; ran: string[] }> = {
      off: { watchers: off, params: { command: RATE_COMMAND }, ran: [OFF_ID] },
      direct: { watchers: onFront, params: { command: RATE_COMMAND }, ran: [front] },
      routed: {
        watchers: onFront,
        params: { command: RATE_COMMAND, labels: [LABEL] },
        ran: [...NODES],
      },
    };
    const cpu = () => ({
      servers: Object.fromEntries([...servers].map(([id, server]) => [id, server.cpuSeconds()])),
      redis: cpuSecondsOf(redis.pid!),
      client: ownCpuSeconds(),
    });
    const rateRun = async (path: RatePath, jobs: number): Promise<RoutingRate> => {
      const { watchers, params, ran } = paths[path];
      const byNode: Record<string, number> = {};
      let sent = 0;
      const cpu0 = cpu();
      const t0 = performance.now();
      await Promise.all(watchers.map(async (watcher) => {
        while (sent < jobs) {
          sent++;
          const { stdout } = await watcher.run(params);
          const node = stdout.trim();
          if (!ran.includes(node)) {
            throw new Error(
              `(l) ${path}: a job printed ${JSON.stringify(stdout)}, expected one of ${ran}`,
            );
          }
          byNode[node] = (byNode[node] ?? 0) + 1;
        }
      }));
      const seconds = (performance.now() - t0) / 1000;
      const cpu1 = cpu();
      return {
        jobs,
        seconds,
        perSecond: jobs / seconds,
        byNode,
        serverCpu: Object.fromEntries(
          Object.entries(cpu1.servers).map(([id, s]) => [id, s - (cpu0.servers[id] ?? 0)]),
        ),
        redisCpu: cpu1.redis - cpu0.redis,
        clientCpu: cpu1.client - cpu0.client,
      };
    };
    for (const path of RATE_PATHS) await rateRun(path, options.warmupJobs);
    const rates: Record<RatePath, RoutingRate[]> = { off: [], direct: [], routed: [] };
    for (let round = 0; round < options.rounds; round++) {
      for (let k = 0; k < RATE_PATHS.length; k++) {
        const path = RATE_PATHS[(round + k) % RATE_PATHS.length]!;
        rates[path].push(await rateRun(path, options.jobs));
      }
    }

    const samples = Object.fromEntries(
      LATENCY_PATHS.map((path) => [path, [] as Timing[]]),
    ) as Record<LatencyPath, Timing[]>;
    const kind = (path: LatencyPath, watcher: Watcher, params: ExecuteParams) =>
    async (
      keep: boolean,
    ) => {
      const timing = await watcher.run(params);
      if (keep) samples[path].push(timing);
    };
    await rotateRounds([
      kind("off", off[0]!, { command: LATENCY_COMMAND }),
      kind("local", onFront[0]!, { command: LATENCY_COMMAND }),
      kind("routed", onFront[0]!, { command: LATENCY_COMMAND, node: other }),
    ], { warmup: options.latencyWarmup, samples: options.latencySamples });
    const latencyOf = (timings: Timing[]): RoutingLatency => ({
      answer: spread(timings.map((t) => t.answerMs)),
      started: spread(timings.map((t) => t.startedMs)),
      completed: spread(timings.map((t) => t.completedMs)),
      job: spread(timings.map((t) => t.jobMs)),
    });
    return {
      nodes: [...NODES],
      front,
      latencyNode: other,
      label: LABEL,
      rateCommand: RATE_COMMAND,
      latencyCommand: LATENCY_COMMAND,
      jobs: options.jobs,
      connections: options.connections,
      rates,
      latency: {
        off: latencyOf(samples.off),
        local: latencyOf(samples.local),
        routed: latencyOf(samples.routed),
      },
      nodesUp,
    };
  } finally {
    await Promise.all(watchers.map((watcher) => watcher.close()));
  }
}

function spread(samples: number[]): Spread {
  return { ...summarize(samples), p95: percentile([...samples].sort((a, b) => a - b), 95) };
}

interface Timing {
  answerMs: number;
  startedMs: number;
  completedMs: number;
  jobMs: number;
  stdout: string;
}

interface Waiting {
  t0: number;
  startedMs: number;
  stdout: string;
  completed: PromiseWithResolvers<{ ms: number; status: string; jobMs: number }>;
}

/**
 * One connection that runs a job at a time and times it: the answer, `process.started` and
 * `process.completed` as they arrive. ExecutorClient.execute gives the end only.
 */
class Watcher {
  readonly client: ExecutorClient;
  readonly #waiting = new Map<string, Waiting>();
  readonly #stop: () => void;

  constructor(client: ExecutorClient) {
    this.client = client;
    this.#stop = client.onNotification((n) => this.#on(n));
  }

  async run(params: ExecuteParams): Promise<Timing> {
    const jobId = crypto.randomUUID();
    const waiting: Waiting = {
      t0: performance.now(),
      startedMs: NaN,
      stdout: "",
      completed: Promise.withResolvers(),
    };
    this.#waiting.set(jobId, waiting);
    try {
      const what = `(l) execute ${JSON.stringify(params)} -> process.completed`;
      await within(this.client.request("execute", { ...params, job_id: jobId }), 30_000, what);
      const answerMs = performance.now() - waiting.t0;
      const end = await within(waiting.completed.promise, 30_000, what);
      if (end.status !== "completed") {
        throw new Error(`(l) execute ${JSON.stringify(params)}: ${end.status}`);
      }
      return {
        answerMs,
        startedMs: waiting.startedMs,
        completedMs: end.ms,
        jobMs: end.jobMs,
        stdout: waiting.stdout,
      };
    } finally {
      this.#waiting.delete(jobId);
    }
  }

  close(): Promise<void> {
    this.#stop();
    return this.client.close();
  }

  #on({ method, params }: RawNotification): void {
    const waiting = params?.job_id === undefined ? undefined : this.#waiting.get(params.job_id);
    if (!waiting) return;
    const ms = performance.now() - waiting.t0;
    if (method === "process.started") waiting.startedMs = ms;
    else if (method === "process.output" && params!.stream === "stdout") {
      waiting.stdout += String(params!.data);
    } else if (method === "process.completed") {
      waiting.completed.resolve({
        ms,
        status: String(params!.status),
        jobMs: Number(params!.duration_ms),
      });
    }
  }
}
