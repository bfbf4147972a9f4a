/**
 * Scenario (f): what recording history costs. The (b) load (`echo hi` over
 * N connections) through servers that differ only in their store: none
 * (CC_EXECUTOR_HISTORY=off), SQLite (a file, WAL), and Redis (a real
 * redis-server on loopback, when installed). The paths alternate in rounds so
 * drift lands on all of them alike.
 *
 * @module
 */
import { ExecutorClient } from "../server/client.ts";
import { HAS_REDIS, startRedis } from "../tests/redis_util.ts";
import { type Rate, rate, serverEcho } from "./scenarios.ts";
import { ServerProcess } from "./server_process.ts";

export interface StoreCostOptions {
  cwd: string;
  parallel: number;
  seconds: number;
  warmupSeconds: number;
  /** Measured rounds per backend; each round runs every backend once. */
  rounds: number;
}

export type StoreCostBackend = "off" | "sqlite" | "redis";

export interface StoreCostResult {
  /** Per backend, every round's rate; redis is missing when redis-server is not installed. */
  rates: Partial<Record<StoreCostBackend, Rate[]>>;
  redisSkipped: string | null;
}

export async function measureStoreCost(options: StoreCostOptions): Promise<StoreCostResult> {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-bench-store-" });
  await using redis = HAS_REDIS ? await startRedis() : null;
  const backends: [StoreCostBackend, Record<string, string>][] = [
    ["off", { CC_EXECUTOR_HISTORY: "off" }],
    ["sqlite", { CC_EXECUTOR_DB: `${dir}/history.db` }],
  ];
  // CC_EXECUTOR_DB also places the Redis store's outbox: in the run's directory, not the user's.
  if (redis) backends.push(["redis", { REDIS_URL: redis.url, CC_EXECUTOR_DB: `${dir}/redis.db` }]);
  const rates: StoreCostResult["rates"] = {};
  try {
    for (let round = 0; round < options.rounds; round++) {
      for (const [name, env] of backends) {
        await using server = await ServerProcess.start({
          cwd: options.cwd,
          // The timeout estimate reads history on every execute: part of the store's cost.
          env: { ...env, CC_EXECUTOR_HISTORY_RETENTION_DAYS: "0" },
        });
        const clients = await Promise.all(
          Array.from({ length: options.parallel }, () => ExecutorClient.connect(server.url)),
        );
        try {
          const job = (worker: number) => serverEcho(clients[worker]!);
          await rate(options.parallel, options.warmupSeconds, job, server);
          (rates[name] ??= []).push(await rate(options.parallel, options.seconds, job, server));
        } finally {
          await Promise.all(clients.map((client) => client.close()));
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return {
    rates,
    redisSkipped: redis ? null : "redis-server is not installed (apt-get install redis-server)",
  };
}
