/**
 * What a running server does for its store in the background: keeps its
 * sessions alive there (heartbeats, so a crashed server's sessions expire)
 * and prunes history past its retention.
 *
 * @module
 */
import type { ServerConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import type { Store } from "./store.ts";

/** A session not heartbeaten for this long is gone (its server died). */
export const SESSION_TTL_MS = 60_000;
const HEARTBEAT_MS = SESSION_TTL_MS / 3;
const PRUNE_EVERY_MS = 60 * 60 * 1000;

export class StoreUpkeep {
  #store: Store;
  #config: Pick<ServerConfig, "nodeId" | "historyRetentionDays">;
  #logger: Logger;
  #heartbeat: ReturnType<typeof setInterval>;
  #prune: ReturnType<typeof setInterval> | undefined;
  #pending = new Set<Promise<unknown>>();

  constructor(
    store: Store,
    config: Pick<ServerConfig, "nodeId" | "historyRetentionDays">,
    logger: Logger,
    sessionIds: () => string[],
  ) {
    this.#store = store;
    this.#config = config;
    this.#logger = logger;
    this.#heartbeat = setInterval(() => {
      const ids = sessionIds();
      if (ids.length > 0) this.#track("heartbeat", store.heartbeat(ids, SESSION_TTL_MS));
    }, HEARTBEAT_MS);
    if (config.historyRetentionDays > 0) {
      this.#pruneNow();
      this.#prune = setInterval(() => this.#pruneNow(), PRUNE_EVERY_MS);
    }
  }

  sessionOpened(id: string): void {
    this.#track("session", this.#store.sessionOpened(id, this.#config.nodeId, SESSION_TTL_MS));
  }

  sessionClosed(id: string): void {
    this.#track("session", this.#store.sessionClosed(id));
  }

  /** Stops the timers and waits for writes in flight. */
  async stop(): Promise<void> {
    clearInterval(this.#heartbeat);
    clearInterval(this.#prune);
    await Promise.all(this.#pending);
  }

  #pruneNow(): void {
    const before = Date.now() - this.#config.historyRetentionDays * 86_400_000;
    this.#track(
      "prune",
      this.#store.prune(before).then((deleted) => {
        if (deleted > 0) this.#logger.info("pruned history", { deleted });
      }),
    );
  }

  #track(what: string, work: Promise<unknown>): void {
    const tracked = work.catch((error) =>
      this.#logger.warn(`store: ${what} failed`, { error: (error as Error).message })
    ).finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  }
}
