/**
 * No history (CC_EXECUTOR_HISTORY=off): jobs run and are kept in memory as
 * always, nothing is written anywhere, and the history methods say it is off.
 *
 * @module
 */
import type {
  JobRecord,
  ListPage,
  ShapeMetricsRecord,
  Store,
  StoreHealth,
  StoreStats,
  TemplateStatsRecord,
} from "./store.ts";

export class HistoryOffError extends Error {
  constructor() {
    super("history is off on this server (CC_EXECUTOR_HISTORY=off)");
    this.name = "HistoryOffError";
  }
}

export class NoStore implements Store {
  readonly backend = "none" as const;
  jobStarted(): Promise<void> {
    return Promise.resolve();
  }
  jobSpawned(): Promise<void> {
    return Promise.resolve();
  }
  jobEnded(): Promise<void> {
    return Promise.resolve();
  }
  get(): Promise<JobRecord | null> {
    return Promise.reject(new HistoryOffError());
  }
  list(): Promise<ListPage> {
    return Promise.reject(new HistoryOffError());
  }
  orphans(): Promise<JobRecord[]> {
    return Promise.resolve([]);
  }
  markInterrupted(): Promise<void> {
    return Promise.resolve();
  }
  /** No history: every request without a timeout gets the default. */
  durations(): Promise<number[]> {
    return Promise.resolve([]);
  }
  stats(): Promise<StoreStats> {
    return Promise.reject(new HistoryOffError());
  }
  /** Nothing is kept, so record_metrics costs nothing; reading them says history is off. */
  recordMetrics(): Promise<void> {
    return Promise.resolve();
  }
  metrics(): Promise<ShapeMetricsRecord[]> {
    return Promise.reject(new HistoryOffError());
  }
  /** Nothing is kept: retries still choose templates, every one counting as never used. */
  recordTemplateOutcome(): Promise<void> {
    return Promise.resolve();
  }
  templateStats(): Promise<TemplateStatsRecord[]> {
    return Promise.reject(new HistoryOffError());
  }
  prune(): Promise<number> {
    return Promise.reject(new HistoryOffError());
  }
  sessionOpened(): Promise<void> {
    return Promise.resolve();
  }
  heartbeat(): Promise<void> {
    return Promise.resolve();
  }
  sessionClosed(): Promise<void> {
    return Promise.resolve();
  }
  liveSessions(): Promise<number> {
    return Promise.resolve(0);
  }
  health(): StoreHealth {
    return { backend: "none", status: "ok", pending_writes: 0, dropped_writes: 0, location: "" };
  }
  [Symbol.asyncDispose](): Promise<void> {
    return Promise.resolve();
  }
}
