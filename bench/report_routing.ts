/**
 * The report's part for scenario (l), routing: jobs/s through one node and routed over three, and
 * the latency routing adds. No targets: the issue asks for the figures, and with every node on
 * one machine routed jobs/s says what routing costs, not what more machines would give. Pure, like
 * report.ts: the same results give the same text.
 *
 * @module
 */
import type { BenchResults, Verdict } from "./report.ts";
import type { RatePath, RoutingLatency, RoutingRate, RoutingResult } from "./routing.ts";
import { fixed, ratio } from "./stats.ts";

const recorded = (scenario: string, measured: string, baseline = "", ratio = ""): Verdict => ({
  scenario,
  measured,
  baseline,
  ratio,
  target: "recorded",
  pass: null,
});

/** The median jobs/s of a path's rounds (the upper middle one of an even count). */
function medianRate(rates: readonly RoutingRate[]): number {
  const sorted = rates.map((x) => x.perSecond).sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

const plusMs = (ms: number) => `${ms >= 0 ? "+" : ""}${fixed(ms, 2)} ms`;

/** Summary rows of (l). */
export function routingVerdicts(r: BenchResults): Verdict[] {
  const l = r.routing;
  const rate = `(l) jobs/s, routed by label over 3 nodes`;
  const latency = "(l) `true` p50, routed to another node";
  const cluster = "(l) `true` p50, cluster node vs cluster off";
  if (!l || "skipped" in l) {
    const why = l ? "skipped (see (l))" : "not run";
    return [recorded(rate, why), recorded(latency, why), recorded(cluster, why)];
  }
  const routed = medianRate(l.rates.routed), direct = medianRate(l.rates.direct);
  const { local, routed: far, off } = l.latency;
  return [
    recorded(rate, fixed(routed, 1), `${fixed(direct, 1)} direct`, ratio(routed, direct)),
    recorded(
      latency,
      `${fixed(far.completed.p50, 2)} ms`,
      `${fixed(local.completed.p50, 2)} ms local`,
      plusMs(far.completed.p50 - local.completed.p50),
    ),
    recorded(
      cluster,
      `${fixed(local.completed.p50, 2)} ms`,
      `${fixed(off.completed.p50, 2)} ms off`,
      plusMs(local.completed.p50 - off.completed.p50),
    ),
  ];
}

export function renderRoutingSection(r: BenchResults): string[] {
  const s = r.settings.routing;
  const lines = [
    "## (l) Routing: one node against three",
    "",
    "One real redis-server on loopback and four servers of their own on it: three cluster nodes",
    "(`REDIS_URL`, `CC_EXECUTOR_NODE_ID` node-1 to node-3, each with `CC_EXECUTOR_NODE_LABELS=bench`)",
    "and, for comparison, a server with `CC_EXECUTOR_CLUSTER=off` (Redis as its history store only:",
    "it is no node and mirrors no job to a stream). Every client connects to node-1, the front node,",
    "or to the cluster-off server.",
    "",
    `- Jobs/s: ${s.jobs} executes of \`echo $CC_EXECUTOR_NODE_ID\` over ${s.connections} connections, each one job`,
    "  after another: to the cluster-off server; to node-1, run there (direct); and to node-1 with",
    '  `labels: ["bench"]`, so the label\'s queue spreads them over the three nodes (routed; node-1',
    "  takes its share too). What each job prints says which node ran it. Each path first runs",
    `  ${s.warmupJobs} jobs of warm-up (nodes look for new label queues once a second, so the first routed`,
    `  jobs wait for that); then ${s.rounds} round(s) of each, in a rotating order; the median round counts.`,
    "- Latency: one `true` at a time on one connection, from sending `execute` to receiving",
    "  `process.completed`: on the cluster-off server, on node-1 (local), and sent to node-1 with",
    '  `node: "node-2"` (routed: node-1 queues it, node-2 takes and runs it, node-1 answers the',
    "  execute with node-2's answer and relays the job's notifications from its Redis stream).",
    `  ${s.latencySamples} samples of each after ${s.latencyWarmup} warm-up rounds, in a rotating order, in ms.`,
    "",
    "All four servers, Redis and the bench share this machine's CPUs, so routing cannot add",
    "capacity here: routed jobs/s measures what routing costs (a job's start passes through the",
    "front node, Redis and the taking node, and its notifications through Redis back to the front",
    "node), not what three machines would give.",
    "",
  ];
  const l = r.routing;
  if (!l) return [...lines, "Not run.", ""];
  if ("skipped" in l) return [...lines, `Skipped: ${l.skipped}.`, ""];
  return [...lines, ...rateTable(l), ...latencyTable(l)];
}

function rateTable(l: RoutingResult): string[] {
  const direct = medianRate(l.rates.direct);
  const front = (path: RatePath) => path === "off" ? "cluster-off" : l.front;
  const row = (name: string, path: RatePath) => {
    const rates = l.rates[path];
    if (rates.length === 0) return `| ${name} | not run | | | | | | |`;
    const jobs = rates.reduce((sum, x) => sum + x.jobs, 0);
    const perJob = (cpu: (x: RoutingRate) => number) =>
      fixed(rates.reduce((sum, x) => sum + cpu(x), 0) / jobs * 1000, 2);
    const byNode: Record<string, number> = {};
    for (const x of rates) {
      for (const [node, n] of Object.entries(x.byNode)) byNode[node] = (byNode[node] ?? 0) + n;
    }
    const ranOn = Object.entries(byNode).sort(([a], [b]) => a.localeCompare(b))
      .map(([node, n]) => `${node} ${fixed((n / jobs) * 100, 0)}%`).join(", ");
    const median = medianRate(rates);
    return `| ${name} | ${rates.map((x) => fixed(x.perSecond, 1)).join(" / ")} | ${
      fixed(median, 1)
    } | ${ratio(median, direct)} | ${ranOn} | ${perJob((x) => x.serverCpu[front(path)] ?? 0)} | ${
      perJob((x) =>
        Object.entries(x.serverCpu).filter(([id]) => id !== front(path))
          .reduce((sum, [, cpu]) => sum + cpu, 0)
      )
    } | ${perJob((x) => x.redisCpu)} | ${perJob((x) => x.clientCpu)} |`;
  };
  return [
    "| Path | rounds, jobs/s | median jobs/s | vs direct | ran on | receiving server CPU ms/job | other servers CPU ms/job | redis-server CPU ms/job | client CPU ms/job |",
    "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    row("cluster off (Redis store only)", "off"),
    row("direct: node-1 runs them", "direct"),
    row("routed: to node-1 with `labels`", "routed"),
    "",
    "The receiving server is the one the clients connect to (node-1, or the cluster-off server);",
    "the other servers are the rest of the four, which idle (heartbeats, queue reads) unless they",
    "run routed jobs. Server CPU excludes the jobs' own processes.",
    "",
    `In all, the four servers and redis-server used ${
      cpuTotal(l, "routed")
    } ms of CPU per routed job against ${cpuTotal(l, "direct")} ms`,
    `per direct one (${cpuTotal(l, "off")} ms with the cluster off).`,
    "",
  ];
}

/** Every server's CPU and redis-server's, per job, over a path's rounds; ms. */
function cpuTotal(l: RoutingResult, path: RatePath): string {
  const rates = l.rates[path];
  const jobs = rates.reduce((sum, x) => sum + x.jobs, 0);
  const cpu = rates.reduce(
    (sum, x) => sum + x.redisCpu + Object.values(x.serverCpu).reduce((a, b) => a + b, 0),
    0,
  );
  return fixed((cpu / jobs) * 1000, 2);
}

function latencyTable(l: RoutingResult): string[] {
  const { off, local, routed } = l.latency;
  const row = (name: string, x: RoutingLatency) => {
    const c = x.completed;
    return `| ${name} | ${c.n} | ${fixed(c.min, 2)} | ${fixed(c.p50, 2)} | ${fixed(c.p95, 2)} | ${
      fixed(c.p99, 2)
    } | ${fixed(c.max, 2)} | ${fixed(x.answer.p50, 2)} | ${fixed(x.started.p50, 2)} | ${
      fixed(x.job.p50, 2)
    } |`;
  };
  return [
    "| `true`, one at a time | n | min | p50 | p95 | p99 | max | answer p50 | `process.started` p50 | the job, p50 |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    row("cluster off (Redis store only)", off),
    row("cluster node, local (node-1)", local),
    row(`routed (node-1 -> ${l.latencyNode})`, routed),
    "",
    "The columns after max are p50s of when the execute's answer and `process.started` arrived,",
    "counted from the execute too, and of the job's own run as its node times it (spawn to end).",
    "",
    `Routing adds ${plusMs(routed.completed.p50 - local.completed.p50)} at p50 (${
      plusMs(routed.completed.p95 - local.completed.p95)
    } at p95). The routed execute is answered ${
      plusMs(routed.answer.p50 - local.answer.p50)
    } later at p50 (the front node`,
    "queues the job, the taking node reads, claims and starts it and records its answer, the front",
    "node reads that), but that answer is only given once the job has been spawned, so much of the",
    "wait overlaps the job's own run; its notifications then come through the job's Redis stream.",
    `A job on a cluster node (which also writes each notification to its job's stream) takes ${
      fixed(local.completed.p50, 2)
    } ms`,
    `at p50 against ${fixed(off.completed.p50, 2)} ms on the cluster-off server (${
      plusMs(local.completed.p50 - off.completed.p50)
    }).`,
    "",
  ];
}
