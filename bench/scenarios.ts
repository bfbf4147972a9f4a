/**
 * The four measurements, each against its baseline in the same run: the
 * server's figure means little on its own, since machines differ far more
 * than the server's overhead does. Baselines are bare `Deno.Command` spawns
 * in this (the client) process, doing what the server does for a job minus
 * the server: spawn, read stdout and stderr to the end, await the status.
 *
 * @module
 */
import { ExecutorClient } from "../server/client.ts";
import { drainUntilCompleted, RawWebSocket, readSlowly } from "./raw_reader.ts";
import { ownCpuSeconds, RssSampler, type ServerProcess } from "./server_process.ts";
import { median, rotateRounds, sleep, summarize, type Summary } from "./stats.ts";

export const ECHO = "echo hi";

/** Printable output: NUL bytes would be JSON-escaped to six bytes each and measure the escaper. */
export function outputCommand(bytes: number): string {
  return `yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c ${bytes}`;
}

/** How a job is started by a baseline: the shell itself, or through setsid as the server does. */
export type Spawner = "bash" | "setsid";

/** Spawns `bash -c command` (optionally via setsid), reads both pipes to the end, awaits the status. */
async function bareRun(spawner: Spawner, command: string): Promise<{ stdout: number }> {
  const args = spawner === "setsid" ? ["bash", "-c", command] : ["-c", command];
  const child = new Deno.Command(spawner, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const [stdout, , status] = await Promise.all([
    countBytes(child.stdout),
    countBytes(child.stderr),
    child.status,
  ]);
  if (!status.success) throw new Error(`${spawner} -c ${command}: exit code ${status.code}`);
  return { stdout };
}

async function countBytes(stream: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const chunk of stream) n += chunk.length;
  return n;
}

/**
 * Fails instead of hanging when an answer never comes (a server that loses
 * `process.completed` would otherwise stall the bench forever).
 */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

export async function serverEcho(client: ExecutorClient): Promise<number> {
  const outcome = await within(
    client.execute({ command: ECHO }),
    10_000,
    `execute "${ECHO}" -> process.completed`,
  );
  if (!outcome.success || outcome.stdout !== "hi\n") {
    throw new Error(
      `execute "${ECHO}": ${outcome.status}, stdout ${JSON.stringify(outcome.stdout)}`,
    );
  }
  return outcome.durationMs;
}

export async function bareEcho(spawner: Spawner): Promise<void> {
  const { stdout } = await bareRun(spawner, ECHO);
  if (stdout !== 3) {
    throw new Error(`${spawner} -c "${ECHO}": ${stdout} bytes of stdout, expected 3`);
  }
}

// -- (a) latency --------------------------------------------------------------------------------

export interface LatencyOptions {
  samples: number;
  warmup: number;
}

export interface LatencyResult {
  /** execute sent -> process.completed received, ms. */
  server: Summary;
  /** The job's own duration as the server reports it (spawn -> completed), ms. */
  serverJob: Summary;
  bare: Summary;
  setsid: Summary;
}

/**
 * One sample of each kind per round, in a rotating order, so drift (CPU
 * frequency, page cache, another tenant) lands on all three alike.
 */
export async function measureLatency(
  client: ExecutorClient,
  options: LatencyOptions,
): Promise<LatencyResult> {
  const samples = {
    server: [] as number[],
    serverJob: [] as number[],
    bare: [] as number[],
    setsid: [] as number[],
  };
  const kinds = [
    async (keep: boolean) => {
      const t0 = performance.now();
      const jobMs = await serverEcho(client);
      if (keep) samples.server.push(performance.now() - t0), samples.serverJob.push(jobMs);
    },
    async (keep: boolean) => {
      const t0 = performance.now();
      await bareEcho("bash");
      if (keep) samples.bare.push(performance.now() - t0);
    },
    async (keep: boolean) => {
      const t0 = performance.now();
      await bareEcho("setsid");
      if (keep) samples.setsid.push(performance.now() - t0);
    },
  ];
  await rotateRounds(kinds, options);
  return {
    server: summarize(samples.server),
    serverJob: summarize(samples.serverJob),
    bare: summarize(samples.bare),
    setsid: summarize(samples.setsid),
  };
}

// -- (b) jobs per second ------------------------------------------------------------------------

export interface RateOptions {
  parallel: number;
  seconds: number;
  warmupSeconds: number;
}

export interface Rate {
  jobs: number;
  seconds: number;
  perSecond: number;
  /** CPU seconds the server process used during the run (null for baselines: there is none). */
  serverCpu: number | null;
  /** CPU seconds this process used (client side, or the spawning for baselines; not the children). */
  clientCpu: number;
}

export interface RateResult {
  server: Rate;
  bare: Rate;
  setsid: Rate;
}

/** Runs `parallel` loops of `job` until `seconds` have passed; the jobs in flight then still count. */
export async function rate(
  parallel: number,
  seconds: number,
  job: (worker: number) => Promise<unknown>,
  server: ServerProcess | null,
): Promise<Rate> {
  const cpu0 = ownCpuSeconds(), serverCpu0 = server?.cpuSeconds() ?? 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let jobs = 0;
  await Promise.all(Array.from({ length: parallel }, async (_, worker) => {
    while (performance.now() < deadline) {
      await job(worker);
      jobs++;
    }
  }));
  const elapsed = (performance.now() - start) / 1000;
  return {
    jobs,
    seconds: elapsed,
    perSecond: jobs / elapsed,
    serverCpu: server ? server.cpuSeconds() - serverCpu0 : null,
    clientCpu: ownCpuSeconds() - cpu0,
  };
}

/** `parallel` connections, each running one job after another, against as many bare spawn loops. */
export async function measureRate(
  server: ServerProcess,
  options: RateOptions,
): Promise<RateResult> {
  const clients = await Promise.all(
    Array.from({ length: options.parallel }, () => ExecutorClient.connect(server.url)),
  );
  try {
    const viaServer = (worker: number) => serverEcho(clients[worker]!);
    const bare = () => bareEcho("bash");
    const setsid = () => bareEcho("setsid");
    const result: Partial<RateResult> = {};
    // Warm each path up right before it is measured.
    for (
      const [name, job, srv] of [
        ["server", viaServer, server],
        ["bare", bare, null],
        ["setsid", setsid, null],
      ] as const
    ) {
      await rate(options.parallel, options.warmupSeconds, job, srv);
      result[name] = await rate(options.parallel, options.seconds, job, srv);
    }
    return result as RateResult;
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}

// -- (c) output throughput ----------------------------------------------------------------------

export interface OutputOptions {
  bytes: number;
  runs: number;
  warmupBytes: number;
}

export interface OutputPath {
  /** Wall time of each run, ms (command start -> last byte and status). */
  ms: number[];
  /** Bytes of command output per second, median run. */
  bytesPerSecond: number;
  serverCpu: number | null;
  clientCpu: number;
}

export interface OutputResult {
  /** ExecutorClient.execute with collect: false, counting onStdout. */
  server: OutputPath;
  /** The same job read by a client that parses frame headers only. */
  raw: OutputPath;
  /** The command piped locally into this process. */
  bare: OutputPath;
  /** The server's peak RSS during the ExecutorClient runs, bytes. */
  serverPeakRss: number;
  /** The server's RSS right after the last run, bytes: what the runs leave behind. */
  afterRss: number;
}

/** Runs the (c) command through `client`, checks every byte arrived, and returns the job's id. */
export async function serverOutput(client: ExecutorClient, bytes: number): Promise<string> {
  let received = 0;
  const outcome = await within(
    client.execute({
      command: outputCommand(bytes),
      collect: false,
      // The output is ASCII, so characters are bytes.
      onStdout: (text) => void (received += text.length),
    }),
    120_000,
    "execute output -> process.completed",
  );
  if (!outcome.success || received !== bytes || outcome.bytes.stdout !== bytes) {
    throw new Error(
      `execute output: ${outcome.status}, received ${received} bytes, server read ${outcome.bytes.stdout}, expected ${bytes}`,
    );
  }
  return outcome.jobId;
}

async function rawOutput(server: ServerProcess, bytes: number, id: string): Promise<number> {
  using ws = await RawWebSocket.connect(server.url, authHeaders());
  const t0 = performance.now();
  await ws.sendText(JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "execute",
    params: { command: outputCommand(bytes), job_id: id },
  }));
  const { completed } = await within(
    drainUntilCompleted(ws),
    120_000,
    "raw execute output -> process.completed",
  );
  const ms = performance.now() - t0;
  if (completed.status !== "completed" || completed.bytes.stdout !== bytes) {
    throw new Error(
      `raw execute output: ${completed.status}, server read ${completed.bytes.stdout}, expected ${bytes}`,
    );
  }
  return ms;
}

async function bareOutput(bytes: number): Promise<void> {
  const { stdout } = await bareRun("bash", outputCommand(bytes));
  if (stdout !== bytes) throw new Error(`bare output: read ${stdout} bytes, expected ${bytes}`);
}

/** Rounds of server, raw client and local pipe, rotating the order; the median run counts. */
export async function measureOutput(
  server: ServerProcess,
  client: ExecutorClient,
  options: OutputOptions,
): Promise<OutputResult> {
  let rawRuns = 0;
  const paths = {
    server: async (bytes: number) => {
      const t0 = performance.now();
      await serverOutput(client, bytes);
      return performance.now() - t0;
    },
    raw: (bytes: number) => rawOutput(server, bytes, `bench-raw-${Date.now()}-${rawRuns++}`),
    bare: async (bytes: number) => {
      const t0 = performance.now();
      await bareOutput(bytes);
      return performance.now() - t0;
    },
  };
  const names = ["server", "raw", "bare"] as const;
  for (const name of names) await paths[name](options.warmupBytes);

  const ms = { server: [] as number[], raw: [] as number[], bare: [] as number[] };
  const cpu = { server: [0, 0], raw: [0, 0], bare: [0, 0] };
  server.resetPeak();
  let serverPeakRss = 0;
  for (let round = 0; round < options.runs; round++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(round + k) % names.length]!;
      const cpu0 = ownCpuSeconds(), serverCpu0 = server.cpuSeconds();
      using sampler = name === "server" ? new RssSampler(server) : null;
      ms[name].push(await paths[name](options.bytes));
      if (sampler) serverPeakRss = Math.max(serverPeakRss, sampler.peak);
      cpu[name][0]! += ownCpuSeconds() - cpu0;
      cpu[name][1]! += server.cpuSeconds() - serverCpu0;
    }
  }
  const path = (name: (typeof names)[number]): OutputPath => ({
    ms: ms[name],
    bytesPerSecond: options.bytes / (median(ms[name]) / 1000),
    clientCpu: cpu[name][0]! / options.runs,
    serverCpu: name === "bare" ? null : cpu[name][1]! / options.runs,
  });
  return {
    server: path("server"),
    raw: path("raw"),
    bare: path("bare"),
    serverPeakRss,
    afterRss: server.rss(),
  };
}

// -- (d) memory under a slow reader -------------------------------------------------------------

export interface SlowReaderOptions {
  bytes: number;
  chunkBytes: number;
  intervalMs: number;
  seconds: number;
}

export interface SlowReaderResult {
  /** Server RSS just before, bytes (median of a few samples). */
  baselineRss: number;
  /** Highest VmRSS sampled every 20 ms from the execute to the job's end, bytes. */
  peakSampledRss: number;
  /** VmHWM after the run, reset just before it; null when the reset was not permitted. */
  peakHwm: number | null;
  /** Server RSS once the job had been canceled, bytes. */
  afterRss: number;
  samples: number;
  /** Bytes the slow client took off the socket, and how fast. */
  clientBytes: number;
  clientSeconds: number;
  /** Bytes the server had read from the command when the client left. */
  commandBytes: number;
  /** How the job ended once the client disconnected (expected: canceled). */
  status: string;
  reason: string | null;
  /** From the disconnect to the job's end, ms. */
  cancelMs: number;
}

/**
 * The output command again, read by a client that takes ~chunkBytes per
 * intervalMs, then disconnects. What the server holds meanwhile is what
 * backpressure leaves in its buffers.
 */
export async function measureSlowReader(
  server: ServerProcess,
  observer: ExecutorClient,
  options: SlowReaderOptions,
): Promise<SlowReaderResult> {
  await sleep(500);
  const before: number[] = [];
  for (let i = 0; i < 5; i++) before.push(server.rss()), await sleep(20);
  const baselineRss = median(before);
  const reset = server.resetPeak();
  using sampler = new RssSampler(server, 20);
  const jobId = `bench-slow-${Date.now()}`;
  let clientBytes: number, clientSeconds: number, commandBytes: number;
  let closedAt: number;
  {
    using ws = await RawWebSocket.connect(server.url, authHeaders());
    await ws.sendText(JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "execute",
      params: { command: outputCommand(options.bytes), job_id: jobId },
    }));
    const read = await readSlowly(ws, {
      chunkBytes: options.chunkBytes,
      intervalMs: options.intervalMs,
      durationMs: options.seconds * 1000,
    });
    clientBytes = read.bytes;
    clientSeconds = read.seconds;
    commandBytes = (await observer.request("jobs.get", { job_id: jobId })).bytes.stdout;
    closedAt = performance.now();
  }
  // The server cancels a job whose (non-detached) owner went away.
  let info = await observer.request("jobs.get", { job_id: jobId });
  while (info.status === "running" || info.status === "paused") {
    if (performance.now() - closedAt > 20_000) {
      throw new Error(`job ${jobId} still ${info.status} 20 s after its client disconnected`);
    }
    await sleep(20);
    info = await observer.request("jobs.get", { job_id: jobId });
  }
  const cancelMs = performance.now() - closedAt;
  await sleep(500);
  sampler.stop();
  return {
    baselineRss,
    peakSampledRss: sampler.peak,
    peakHwm: reset ? server.peakRss() : null,
    afterRss: server.rss(),
    samples: sampler.samples.length,
    clientBytes,
    clientSeconds,
    commandBytes,
    status: info.status,
    reason: info.reason,
    cancelMs,
  };
}

/** The raw clients authenticate like ExecutorClient does, when the server wants a token. */
function authHeaders(): Record<string, string> {
  const token = Deno.env.get("CC_EXECUTOR_TOKEN");
  return token ? { authorization: `Bearer ${token}` } : {};
}
