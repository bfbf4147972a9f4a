/**
 * Scenario (i): what an open connection costs the server. A fresh server (its own process, as
 * every bench server) is measured idle, then while `connections` WebSocket clients are connected
 * to it and do nothing, then once they have all closed. A connection counts as open once its
 * client received the server's `connected` notification (ExecutorClient.connect resolves then).
 *
 * @module
 */
import { ExecutorClient } from "../server/client.ts";
import { checkFdLimit, type FdLimit, openFds } from "./fd_limit.ts";
import { type CapSetting, raiseCaps } from "./server_caps.ts";
import { RssSampler, ServerProcess, steadyRss } from "./server_process.ts";
import { sleep, summarize, type Summary } from "./stats.ts";

export interface IdleConnectionsOptions {
  cwd: string;
  connections: number;
  /** Connections being opened at once: a crowd of agents arriving, not one SYN flood. */
  concurrency: number;
  /** How long the connections are held idle before the RSS is read, seconds. */
  settleSeconds: number;
}

export interface IdleConnectionsResult {
  connections: number;
  concurrency: number;
  /** CC_EXECUTOR_MAX_SESSIONS as the server started with it, and whether the bench raised it. */
  caps: CapSetting[];
  fdLimits: { bench: FdLimit; server: FdLimit };
  /** Server RSS before the first connection, with all open (after settling), after all closed; bytes. */
  idleRss: number;
  openRss: number;
  closedRss: number;
  /** Highest RSS sampled while the connections were being opened and held (not once closing). */
  peakRss: number;
  /** From the first connect to the last `connected` notification, ms. */
  openMs: number;
  /** Each connection's own connect -> `connected`, ms. */
  connectMs: Summary;
  /** CPU seconds the server used opening them all. */
  openCpu: number;
  /** Sessions the server counted with all open (server.info, asked over one of them). */
  serverSessions: number;
  /** File descriptors the server had open with all connected, and idle before. */
  serverFds: { idle: number; open: number };
}

export type IdleConnectionsOutcome = IdleConnectionsResult | { skipped: string };

/** Headroom for what a process has open besides the connections (runtime, pipes, the store). */
const FD_HEADROOM = 256;

export async function measureIdleConnections(
  options: IdleConnectionsOptions,
): Promise<IdleConnectionsOutcome> {
  const need = options.connections + FD_HEADROOM;
  const bench = checkFdLimit(Deno.pid, need);
  if (bench.problem) return { skipped: `bench process: ${bench.problem}` };
  const { env, settings: caps } = raiseCaps([
    { variable: "CC_EXECUTOR_MAX_SESSIONS", field: "maxSessions", need: options.connections },
  ], { CC_EXECUTOR_HISTORY: "off" });
  // History off: no job runs here, and the store's upkeep would only add noise to the RSS.
  await using server = await ServerProcess.start({
    cwd: options.cwd,
    env: { CC_EXECUTOR_HISTORY: "off", ...env },
  });
  const serverLimit = checkFdLimit(server.pid, need);
  if (serverLimit.problem) return { skipped: `server: ${serverLimit.problem}` };

  await sleep(500);
  const idleRss = await steadyRss(server);
  const idleFds = openFds(server.pid);
  using sampler = new RssSampler(server, 50);
  const clients: ExecutorClient[] = [];
  try {
    const connectMs: number[] = [];
    const cpu0 = server.cpuSeconds();
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: options.concurrency }, async () => {
      while (next < options.connections) {
        next++;
        const t = performance.now();
        clients.push(await ExecutorClient.connect(server.url, { timeoutMs: 30_000 }));
        connectMs.push(performance.now() - t);
      }
    }));
    const openMs = performance.now() - t0;
    const openCpu = server.cpuSeconds() - cpu0;
    const info = await clients[0]!.request("server.info", {});
    await sleep(options.settleSeconds * 1000);
    const openRss = await steadyRss(server);
    const openFdCount = openFds(server.pid);
    sampler.stop();
    const peakRss = Math.max(idleRss, sampler.peak);
    await Promise.all(clients.splice(0).map((client) => client.close()));
    await sleep(1000);
    const closedRss = await steadyRss(server);
    return {
      connections: options.connections,
      concurrency: options.concurrency,
      caps,
      fdLimits: { bench, server: serverLimit },
      idleRss,
      openRss,
      closedRss,
      peakRss,
      openMs,
      connectMs: summarize(connectMs),
      openCpu,
      serverSessions: info.sessions,
      serverFds: { idle: idleFds, open: openFdCount },
    };
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}
