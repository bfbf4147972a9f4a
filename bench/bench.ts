/**
 * `deno task bench`: starts the server in its own process, measures the
 * scenarios of docs/performance.md against their bare-spawn baselines in one
 * run, writes the report and stops the server.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { ExecutorClient } from "../server/client.ts";
import { measureCliRun } from "./cli_run.ts";
import { measureHookCost } from "./hook_cost.ts";
import { measureIdleConnections } from "./idle_connections.ts";
import { measureStoreCost } from "./store_cost.ts";
import { measureRouting } from "./routing.ts";
import { type BenchResults, type BenchSettings, renderReport, verdicts } from "./report.ts";
import { measureLatency, measureOutput, measureRate, measureSlowReader } from "./scenarios.ts";
import { measureSleepJobs } from "./sleep_jobs.ts";
import { measureSpoolCost } from "./spool_cost.ts";
import { ServerProcess, stopAll } from "./server_process.ts";
import { MiB } from "./stats.ts";
import { measureWebsocketd } from "./websocketd.ts";

/** The checkout this bench belongs to: its server is the default one to measure. */
const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);
const DEFAULT_OUT = "docs/performance.md";
const SCENARIOS = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"] as const;
type Scenario = (typeof SCENARIOS)[number];

/** Sized to keep the whole run near a minute on 2 CPUs while p99 still rests on 5+ samples. */
const FULL: BenchSettings = {
  latencySamples: 500,
  latencyWarmup: 30,
  parallel: 8,
  rateSeconds: 5,
  rateWarmupSeconds: 1,
  outputBytes: 512 * MiB,
  outputRuns: 3,
  outputWarmupBytes: 16 * MiB,
  slow: { bytes: 512 * MiB, chunkBytes: 64 * 1024, intervalMs: 10, seconds: 9 },
  cliSamples: 40,
  cliWarmup: 3,
  storeRounds: 2,
  storeSeconds: 4,
  // Many short turns, unlike (f)'s two long ones: the empty-chain target is 5%, and the median of
  // ten turns shrugs off the few that another tenant of the machine slowed down.
  hookRounds: 10,
  hookSeconds: 2,
  // 50 at a time: a crowd arriving; all 1,000 at once mostly measures the listen backlog.
  idle: { connections: 1000, concurrency: 50, settleSeconds: 2 },
  // The sleep only has to outlast starting them all (about 15 s here); they are canceled then.
  sleepJobs: { jobs: 500, connections: 10, sleepSeconds: 120 },
  // Line mode sends a message per 64-byte line at a few MiB/s: 8 MiB keeps a run near 2 s.
  websocketd: {
    latencySamples: 200,
    latencyWarmup: 10,
    binaryBytes: 128 * MiB,
    lineBytes: 8 * MiB,
    runs: 3,
  },
  // 300 jobs per run: a few seconds even routed; three rounds of three paths stay near 30 s.
  routing: {
    jobs: 300,
    connections: 8,
    rounds: 3,
    warmupJobs: 40,
    latencySamples: 100,
    latencyWarmup: 10,
  },
};

/** For trying the bench out, not for the report. */
const QUICK: BenchSettings = {
  ...FULL,
  latencySamples: 60,
  latencyWarmup: 5,
  rateSeconds: 1,
  rateWarmupSeconds: 0.3,
  outputBytes: 64 * MiB,
  outputRuns: 1,
  outputWarmupBytes: 4 * MiB,
  slow: { ...FULL.slow, seconds: 3 },
  cliSamples: 8,
  cliWarmup: 1,
  storeRounds: 1,
  storeSeconds: 1,
  hookRounds: 2,
  hookSeconds: 1,
  idle: { ...FULL.idle, connections: 200 },
  sleepJobs: { ...FULL.sleepJobs, jobs: 100 },
  websocketd: {
    latencySamples: 40,
    latencyWarmup: 3,
    binaryBytes: 32 * MiB,
    lineBytes: 2 * MiB,
    runs: 1,
  },
  routing: { ...FULL.routing, jobs: 100, rounds: 1, latencySamples: 30, latencyWarmup: 3 },
};

export async function bench(args: string[]): Promise<number> {
  const program = new Command("bench")
    .description("measure cc-executor against bare spawns and write docs/performance.md")
    .option(
      "--only <scenarios>",
      `comma-separated subset of ${SCENARIOS.join(",")}`,
      SCENARIOS.join(","),
    )
    .option("--quick", "fewer samples, for trying the bench out")
    .option(
      "--out <file>",
      `where the report goes, - for stdout only (default: ${DEFAULT_OUT} for a full run of this checkout, else -)`,
    )
    .option(
      "--server-dir <dir>",
      "run the server of another checkout (e.g. with a change to compare); the client stays this one's",
    )
    .parse(args, { from: "user" });
  const options = program.opts();
  const only = new Set(options.only.split(",").map((s) => s.trim()));
  for (const name of only) {
    if (!SCENARIOS.includes(name as Scenario)) {
      console.error(`bench: unknown scenario "${name}" (expected some of ${SCENARIOS.join(",")})`);
      return 2;
    }
  }
  // Only a full run of this checkout's server replaces the published figures unless --out says so.
  const full = only.size === SCENARIOS.length && !options.quick && !options.serverDir;
  const out = options.out ?? (full ? DEFAULT_OUT : "-");
  const settings = options.quick ? QUICK : FULL;
  const run = (name: Scenario) => only.has(name);

  const date = new Date();
  const t0 = performance.now();
  const overrides = serverOverrides();
  log(`starting the server (deno run -A main.ts server start)${describe(overrides)}`);
  if (options.serverDir) log(`server from ${options.serverDir}`);
  const serverDir = options.serverDir ?? ROOT;
  // History goes to a file of the run's own, not the user's.
  const historyDir = await Deno.makeTempDir({ prefix: "cc-executor-bench-" });
  const server = await ServerProcess.start({
    cwd: serverDir,
    env: { CC_EXECUTOR_DB: `${historyDir}/history.db` },
  });
  // Ctrl-C during the run: still stop every server (and with them every job) and websocketd
  // before leaving, including those a scenario started for itself.
  const onInterrupt = () => {
    log("interrupted: stopping the servers");
    stopAll(5_000).finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  let results: BenchResults;
  try {
    await using client = await ExecutorClient.connect(server.url);
    const info = await client.request("server.info", {});
    log(
      `server pid ${server.pid} on ${server.url}: shell ${info.shell}, groups ${info.process_groups}`,
    );
    results = {
      date,
      seconds: 0,
      machine: await machine(),
      server: {
        version: info.version,
        shell: info.shell,
        processGroups: info.process_groups,
        overrides,
        dir: options.serverDir ?? null,
        revision: await revision(serverDir),
      },
      settings,
      latency: null,
      rate: null,
      output: null,
      slow: null,
      cli: null,
      store: null,
      hooks: null,
      spool: null,
      idle: null,
      sleep: null,
      websocketd: null,
      routing: null,
      rss: [{ after: "start (idle)", bytes: server.rss() }],
    };
    // (d) first, on the fresh server: every other scenario leaves the server's RSS grown (Deno keeps
    // what it allocated for spawns and streams), and that residue is not the slow reader's doing.
    // The RSS after each scenario is reported on its own.
    if (run("d")) {
      log(`(d) slow reader: ${settings.slow.seconds} s`);
      results.slow = await measureSlowReader(server, client, settings.slow);
      results.rss.push({ after: "(d) slow reader", bytes: server.rss() });
    }
    if (run("a")) {
      log(`(a) latency: ${settings.latencySamples} samples per path`);
      results.latency = await measureLatency(client, {
        samples: settings.latencySamples,
        warmup: settings.latencyWarmup,
      });
      results.rss.push({ after: "(a) latency", bytes: server.rss() });
    }
    if (run("b")) {
      log(`(b) jobs/s: ${settings.parallel} parallel, ${settings.rateSeconds} s per path`);
      results.rate = await measureRate(server, {
        parallel: settings.parallel,
        seconds: settings.rateSeconds,
        warmupSeconds: settings.rateWarmupSeconds,
      });
      results.rss.push({ after: "(b) jobs/s", bytes: server.rss() });
    }
    if (run("c")) {
      log(`(c) output: ${settings.outputRuns} x ${settings.outputBytes / MiB} MiB per path`);
      results.output = await measureOutput(server, client, {
        bytes: settings.outputBytes,
        runs: settings.outputRuns,
        warmupBytes: settings.outputWarmupBytes,
      });
      results.rss.push({ after: "(c) output", bytes: server.rss() });
    }
    if (run("e")) {
      log(`(e) cc-executor run "true": ${settings.cliSamples} samples per path`);
      results.cli = await measureCliRun({
        samples: settings.cliSamples,
        warmup: settings.cliWarmup,
        main: `${ROOT}main.ts`,
        url: server.url,
      });
      results.rss.push({ after: "(e) cli run", bytes: server.rss() });
    }
    if (run("k")) {
      log(
        `(k) websocketd side by side: ${settings.websocketd.latencySamples} echo samples per path, output ${
          settings.websocketd.binaryBytes / MiB
        } and ${settings.websocketd.lineBytes / MiB} MiB`,
      );
      results.websocketd = await measureWebsocketd(server, client, settings.websocketd);
      if (results.websocketd.installed) {
        results.rss.push({ after: "(k) websocketd side by side", bytes: server.rss() });
      } else log(results.websocketd.skipped);
    }
    if (run("f")) {
      log(
        `(f) store cost: jobs/s with history off, SQLite, Redis; ${settings.storeRounds} x ${settings.storeSeconds} s each`,
      );
      results.store = await measureStoreCost({
        cwd: serverDir,
        parallel: settings.parallel,
        seconds: settings.storeSeconds,
        warmupSeconds: settings.rateWarmupSeconds,
        rounds: settings.storeRounds,
      });
    }
    if (run("g")) {
      log(
        `(g) hook cost: jobs/s with no hooks, an empty chain, TypeScript, command, redact_secrets; ${settings.hookRounds} rounds of ${settings.hookSeconds} s each`,
      );
      results.hooks = await measureHookCost({
        cwd: serverDir,
        parallel: settings.parallel,
        seconds: settings.hookSeconds,
        warmupSeconds: settings.rateWarmupSeconds,
        rounds: settings.hookRounds,
      });
    }
    if (run("h")) {
      log(
        `(h) spool cost: output with every byte kept vs none; ${settings.outputRuns} x ${
          settings.outputBytes / MiB
        } MiB each`,
      );
      results.spool = await measureSpoolCost({
        cwd: serverDir,
        bytes: settings.outputBytes,
        runs: settings.outputRuns,
        warmupBytes: settings.outputWarmupBytes,
      });
    }
    if (run("i")) {
      log(
        `(i) ${settings.idle.connections} idle connections, ${settings.idle.concurrency} opening at a time`,
      );
      results.idle = await measureIdleConnections({ cwd: serverDir, ...settings.idle });
      if ("skipped" in results.idle) log(`(i) skipped: ${results.idle.skipped}`);
    }
    if (run("j")) {
      log(
        `(j) ${settings.sleepJobs.jobs} concurrent "sleep ${settings.sleepJobs.sleepSeconds}" jobs over ${settings.sleepJobs.connections} connections`,
      );
      results.sleep = await measureSleepJobs({ cwd: serverDir, ...settings.sleepJobs });
      if ("skipped" in results.sleep) log(`(j) skipped: ${results.sleep.skipped}`);
    }
    if (run("l")) {
      const r = settings.routing;
      log(
        `(l) routing: ${r.rounds} x ${r.jobs} jobs over ${r.connections} connections per path, ${r.latencySamples} latency samples per path; one redis-server, three nodes, one server with the cluster off`,
      );
      results.routing = await measureRouting({ cwd: serverDir, ...r });
      if ("skipped" in results.routing) log(`(l) skipped: ${results.routing.skipped}`);
    }
  } catch (error) {
    log(`failed: ${(error as Error)?.stack ?? error}`);
    if (server.output.trim()) log(`the server printed:\n${server.output.trim()}`);
    return 1;
  } finally {
    const status = await server.stop();
    await Deno.remove(historyDir, { recursive: true });
    Deno.removeSignalListener("SIGINT", onInterrupt);
    log(`server stopped (${status.signal ?? `exit code ${status.code}`})`);
  }
  results.seconds = (performance.now() - t0) / 1000;

  const report = await formatMarkdown(renderReport(results));
  if (out === "-") {
    console.log(report);
  } else {
    await Deno.writeTextFile(out, report);
    log(`wrote ${out}`);
  }
  for (const v of verdicts(results)) {
    if (v.pass === null) continue;
    log(
      `${
        v.pass ? "PASS" : "MISS"
      } ${v.scenario}: ${v.measured} vs ${v.baseline} (${v.ratio}; target ${v.target})`,
    );
  }
  return 0;
}

/**
 * `deno fmt` of the report, with this project's settings, so the written file passes
 * `deno fmt --check` (part of `deno task ok`) as it is.
 */
async function formatMarkdown(markdown: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext=md", "-"],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(markdown));
  await writer.close();
  const { success, stdout, stderr } = await child.output();
  if (!success) throw new Error(`deno fmt failed: ${new TextDecoder().decode(stderr)}`);
  return new TextDecoder().decode(stdout);
}

/** CC_EXECUTOR_* settings the server inherits from this environment: they change what is measured. */
function serverOverrides(): Record<string, string> {
  const ignored = new Set([
    "CC_EXECUTOR_HOST",
    "CC_EXECUTOR_PORT",
    "CC_EXECUTOR_ENV_FILE",
    "CC_EXECUTOR_TOKEN",
  ]);
  return Object.fromEntries(
    Object.entries(Deno.env.toObject())
      .filter(([key, value]) => key.startsWith("CC_EXECUTOR_") && !ignored.has(key) && value !== "")
      .sort(([a], [b]) => a.localeCompare(b)),
  );
}

function describe(overrides: Record<string, string>): string {
  const entries = Object.entries(overrides);
  return entries.length ? ` with ${entries.map(([k, v]) => `${k}=${v}`).join(" ")}` : "";
}

async function machine(): Promise<BenchResults["machine"]> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
  const meminfo = await Deno.readTextFile("/proc/meminfo");
  return {
    cpus: await nproc(),
    cpuModel: cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? "unknown",
    memoryBytes: Number(meminfo.match(/^MemTotal:\s+(\d+) kB/m)?.[1] ?? NaN) * 1024,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    kernel: Deno.osRelease(),
  };
}

/** The checkout's commit, "-dirty" when it has uncommitted changes; null outside git. */
async function revision(dir: string): Promise<string | null> {
  try {
    const { stdout, success } = await new Deno.Command("git", {
      args: ["-C", dir, "describe", "--always", "--dirty"],
      stderr: "null",
    }).output();
    return success ? new TextDecoder().decode(stdout).trim() : null;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** What `nproc` says (CPUs this process may use), as the report promises. */
async function nproc(): Promise<number> {
  try {
    const { stdout, success } = await new Deno.Command("nproc", { stderr: "null" }).output();
    const n = Number(new TextDecoder().decode(stdout).trim());
    if (success && n > 0) return n;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return navigator.hardwareConcurrency;
}

function log(message: string): void {
  console.error(`[bench] ${message}`);
}

if (import.meta.main) {
  Deno.exitCode = await bench(Deno.args);
}
