/**
 * Opens the store the configuration names: none with CC_EXECUTOR_HISTORY=off,
 * Redis when REDIS_URL is set, else the SQLite file CC_EXECUTOR_DB.
 *
 * @module
 */
import { dirname, join } from "node:path";
import type { ServerConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import { NoStore } from "./none.ts";
import { SqliteStore } from "./sqlite.ts";
import type { Store } from "./store.ts";

/** @throws {Error} saying which store could not be opened and why. */
export async function openStore(config: ServerConfig, logger: Logger): Promise<Store> {
  if (!config.history) return new NoStore();
  if (config.redisUrl) {
    // Loaded only when configured: the Redis client is a large module graph.
    const { RedisStore } = await import("./redis.ts");
    return await RedisStore.open(config.redisUrl, {
      prefix: config.redisPrefix,
      logger,
      // Job writes waiting out a Redis outage are also kept on disk, beside where SQLite would be.
      outboxPath: config.db === ":memory:"
        ? undefined
        : join(dirname(config.db), "redis-outbox.db"),
    });
  }
  try {
    return new SqliteStore(config.db);
  } catch (error) {
    throw new Error(`Cannot open the history database ${config.db}: ${(error as Error).message}`);
  }
}
