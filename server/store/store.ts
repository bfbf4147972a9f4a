/**
 * The store: the durable record of every job (history), the timing
 * statistics behind adaptive timeouts, and the sessions a server holds. Two
 * backends implement it, SQLite (embedded, the default) and Redis (shared by
 * several servers); tests/store_contract_test.ts runs the same suite against
 * both.
 *
 * @module
 */
import type { JobStatus } from "../protocol.ts";

/** A job's record status: a job's own status, or `interrupted` when its server died under it. */
export type RecordStatus = JobStatus | "interrupted" | "blocked";

/** Where an `execute`'s effective timeout came from. */
export type TimeoutSource = "request" | "history" | "default" | "none" | "limit";

/** What is known when a job is about to start; written before its process is spawned. */
export interface JobStart {
  job_id: string;
  command: string;
  /** The normalised command (see shape.ts), the key of the timing statistics. */
  shape: string;
  cwd: string | null;
  session_id: string | null;
  /** Which server runs it (CC_EXECUTOR_NODE_ID, default the host name). */
  node_id: string;
  /** That server's process id: a record whose server process is gone is swept as interrupted. */
  server_pid: number;
  /** Epoch milliseconds. */
  started_at: number;
  /** The effective wall-clock limit in seconds, null for none. */
  timeout_s: number | null;
  timeout_source: TimeoutSource;
  /**
   * The logical job this record is a retry attempt of (its own record's job id), null for a job's
   * own run. The store keeps what it is given: it neither checks that the parent is on record nor
   * chooses child ids (the caller names attempt N `<parent>#attempt-<N>`).
   * @default null
   */
  parent_job_id?: string | null;
  /** Which run of the logical job this is: 1 for its first. A whole number from 1. @default 1 */
  attempt?: number;
}

/** A start's retry links with their defaults filled in. */
export interface JobLinks {
  parent_job_id: string | null;
  attempt: number;
}

/**
 * The start's `parent_job_id` and `attempt`, defaulted (null, 1) for a caller that gives neither.
 * Rejects what the backends could not store or list consistently, so that it fails at the caller
 * rather than as a record no filter finds.
 * @throws {TypeError} naming the field and its value.
 */
export function jobLinks(start: JobStart): JobLinks {
  const parent = start.parent_job_id ?? null;
  const attempt = start.attempt ?? 1;
  if (parent !== null && (typeof parent !== "string" || parent === "")) {
    throw new TypeError(
      `Cannot record job "${start.job_id}": parent_job_id must be a non-empty string or null, got ${
        JSON.stringify(parent)
      }`,
    );
  }
  if (parent === start.job_id) {
    throw new TypeError(`Cannot record job "${start.job_id}": a job cannot be its own parent`);
  }
  if (typeof attempt !== "number" || !Number.isSafeInteger(attempt) || attempt < 1) {
    throw new TypeError(
      `Cannot record job "${start.job_id}": attempt must be a whole number from 1, got ${
        String(attempt)
      }`,
    );
  }
  return { parent_job_id: parent, attempt };
}

/** Written once the process exists, so a sweep after a crash can stop its group. */
export interface JobSpawned {
  pid: number;
  pgid: number;
}

/** Written when the job has ended. */
export interface JobEnd {
  /** `blocked`: a pre_execution hook refused the job, which never ran. */
  status: Exclude<RecordStatus, "interrupted">;
  /** Epoch milliseconds. */
  ended_at: number;
  duration_ms: number;
  exit_code: number | null;
  signal: string | null;
  reason: string | null;
  bytes_stdout: number;
  bytes_stderr: number;
  truncated: boolean;
  /** The first bytes of the output (stdout and stderr interleaved), bounded. */
  output_head: string;
  /** The last bytes of the output, bounded; empty when the head already holds all of it. */
  output_tail: string;
  /** What hooks attached to the job (JSON), null when none ran. */
  hooks: unknown;
}

/** A job's record as the store returns it: its start, and its end once it has one. */
export interface JobRecord
  extends
    Omit<JobStart, keyof JobLinks>,
    JobLinks,
    Omit<JobEnd, "status" | "ended_at" | "duration_ms"> {
  status: RecordStatus;
  pid: number | null;
  pgid: number | null;
  ended_at: number | null;
  duration_ms: number | null;
}

export interface ListQuery {
  /** At most this many, newest first (with `parent_job_id`: oldest attempt first). */
  limit: number;
  /** From `next_cursor` of the previous page (of the same query). */
  cursor?: string;
  /**
   * Only the records whose `parent_job_id` is this (a job's retry attempts), ordered by attempt,
   * then job id, instead of newest first. Combines with the other filters.
   * @default every record, children included
   */
  parent_job_id?: string;
  status?: RecordStatus;
  /** Case-insensitive substring of the command. */
  search?: string;
  /** Only jobs started at or after this epoch-millisecond time. */
  since?: number;
}

export interface ListPage {
  /** In the query's order, without output_head/output_tail (empty strings). */
  jobs: JobRecord[];
  /** Pass back as `cursor` for the next page; null on the last page. */
  next_cursor: string | null;
}

/** Timing of one command shape. */
export interface ShapeStats {
  shape: string;
  count: number;
  p50_ms: number;
  p95_ms: number;
}

export interface StoreStats {
  /** Jobs per status. */
  by_status: Partial<Record<RecordStatus, number>>;
  /** The most frequent shapes, most frequent first. */
  by_shape: ShapeStats[];
}

/** One finished run, as the record_metrics hook reports it. */
export interface MetricsSample {
  /** The command's shape (see shape.ts). */
  shape: string;
  /** How the run ended (a JobOutcome status: completed, failed, timed_out, ...). */
  status: string;
  duration_ms: number;
  /** Epoch milliseconds. */
  ended_at: number;
}

/**
 * Rejects a sample the backends could not add up (a duration that is not a finite number, say),
 * so that it fails at the caller rather than as a write Redis refuses later.
 * @throws {TypeError} naming the field and its value.
 */
export function checkMetricsSample(sample: MetricsSample): void {
  if (typeof sample.shape !== "string") {
    throw new TypeError(
      `Cannot record metrics: shape must be a string, got ${typeof sample.shape}`,
    );
  }
  if (typeof sample.status !== "string" || sample.status === "") {
    throw new TypeError(`Cannot record metrics: status must be a non-empty string`);
  }
  for (const field of ["duration_ms", "ended_at"] as const) {
    const value = sample[field];
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new TypeError(
        `Cannot record metrics: ${field} must be a finite number >= 0, got ${String(value)}`,
      );
    }
  }
}

/**
 * All-time counts of one command shape, from `recordMetrics`. Unlike `ShapeStats` they are not
 * computed from the job records, so they survive `prune`.
 */
export interface ShapeMetricsRecord {
  shape: string;
  /** Samples recorded. */
  runs: number;
  /** Runs by status, e.g. `{ completed: 40, failed: 2 }`; only statuses seen appear. */
  by_status: Record<string, number>;
  total_ms: number;
  max_ms: number;
  /** The latest `ended_at` recorded (epoch ms). */
  last_at: number;
}

/** How one retry that used a prompt template ended (templates/select.ts learns from these). */
export interface TemplateOutcome {
  /** The template's name, e.g. "concise". */
  template: string;
  /** True when the retry's run no longer hit the limit that made it necessary. */
  success: boolean;
  /** When the retry ended (epoch ms). */
  at: number;
}

/**
 * Rejects an outcome the backends could not count (an empty name, a time that is not a finite
 * number), so that it fails at the caller rather than as a write Redis refuses later.
 * @throws {TypeError} naming the field and its value.
 */
export function checkTemplateOutcome(outcome: TemplateOutcome): void {
  if (typeof outcome.template !== "string" || outcome.template === "") {
    throw new TypeError("Cannot record a template outcome: template must be a non-empty string");
  }
  if (typeof outcome.success !== "boolean") {
    throw new TypeError(
      `Cannot record a template outcome: success must be true or false, got ${
        String(outcome.success)
      }`,
    );
  }
  if (typeof outcome.at !== "number" || !Number.isFinite(outcome.at) || outcome.at < 0) {
    throw new TypeError(
      `Cannot record a template outcome: at must be a finite number >= 0, got ${
        String(outcome.at)
      }`,
    );
  }
}

/**
 * All-time counts of one prompt template's retries, from `recordTemplateOutcome`. Like the
 * metrics they are not tied to job records, so `prune` leaves them.
 */
export interface TemplateStatsRecord {
  template: string;
  /** Retries that used it. */
  uses: number;
  /** Of those, the ones that succeeded. */
  successes: number;
  /** The latest `at` recorded (epoch ms). */
  last_used_at: number;
}

/** "none": CC_EXECUTOR_HISTORY=off. */
export type StoreBackend = "sqlite" | "redis" | "none";

/** The health of the store, for /health and server.info. */
export interface StoreHealth {
  backend: StoreBackend;
  /** "degraded": the backend is unreachable; writes are queued (see the backend) and retried. */
  status: "ok" | "degraded";
  /** Writes waiting for the backend to come back. */
  pending_writes: number;
  /** Writes given up on (the queue overflowed); each is also logged. */
  dropped_writes: number;
  /** Where: the database file, or the Redis URL without its password. */
  location: string;
}

export interface Store extends AsyncDisposable {
  readonly backend: StoreBackend;

  /**
   * Records a job about to start (status running), with its retry links (`parent_job_id` null and
   * `attempt` 1 when not given). Rejects a start {@linkcode jobLinks} refuses.
   */
  jobStarted(start: JobStart): Promise<void>;
  /** Adds the process ids once spawned. */
  jobSpawned(jobId: string, spawned: JobSpawned): Promise<void>;
  /** Completes the record and feeds the shape's timing statistics. */
  jobEnded(jobId: string, end: JobEnd): Promise<void>;

  get(jobId: string): Promise<JobRecord | null>;
  list(query: ListQuery): Promise<ListPage>;
  /**
   * Records still `running` that belong to `nodeId` and to a server process other than
   * `serverPid` (0: any): candidates left behind by a server that died. The caller decides which
   * servers are gone, stops their groups and calls `markInterrupted`.
   */
  orphans(nodeId: string, serverPid: number): Promise<JobRecord[]>; // oldest first
  /**
   * Ends a record still `running` whose server is gone: `interrupted` (its own server found it
   * after a crash) or `lost` (another node of the cluster found its node down). A record that is
   * no longer running is left as it is.
   */
  markInterrupted(
    jobId: string,
    endedAt: number,
    reason: string,
    status?: "interrupted" | "lost",
  ): Promise<void>;

  /** The most recent durations (ms) of successful jobs of `shape`, newest first, at most `limit`. */
  durations(shape: string, limit: number): Promise<number[]>;
  stats(options: { shapes: number }): Promise<StoreStats>;
  /**
   * Adds one run to its shape's metrics. A write like the job writes: while Redis is unreachable
   * it is queued (and kept in the outbox) and resolves at once.
   */
  recordMetrics(sample: MetricsSample): Promise<void>;
  /**
   * The shapes with the most recorded runs, most runs first (ties by shape, in byte order), at
   * most `limit`. Rejects when the backend is unreachable or history is off, like `stats`.
   */
  metrics(limit: number): Promise<ShapeMetricsRecord[]>;
  /**
   * Counts one retry that used a prompt template. A write like the job writes: while Redis is
   * unreachable it is queued (and kept in the outbox) and resolves at once.
   */
  recordTemplateOutcome(outcome: TemplateOutcome): Promise<void>;
  /**
   * Every template with a recorded outcome, by name (in byte order). Rejects when the backend is
   * unreachable or history is off, like `metrics`.
   */
  templateStats(): Promise<TemplateStatsRecord[]>;
  /**
   * Deletes finished jobs that ended before `before` (epoch ms); resolves to how many. Each
   * record goes by its own end time: a retry attempt is no different from any record (it may go
   * before or after its parent's), and its parent's going leaves it. Rejects
   * when the backend is unreachable (never queued). Timing statistics may outlive the records
   * (Redis keeps its per-shape duration lists; SQLite computes them from the records), and the
   * metrics of `recordMetrics` and the template statistics are never pruned.
   */
  prune(before: number): Promise<number>;

  /** A session opened on this server; it expires `ttlMs` after the last heartbeat. */
  sessionOpened(sessionId: string, nodeId: string, ttlMs: number): Promise<void>;
  /** Extends every given session's expiry (called periodically by the server). */
  heartbeat(sessionIds: string[], ttlMs: number): Promise<void>;
  sessionClosed(sessionId: string): Promise<void>;
  /** Sessions not yet expired, across every server sharing the store. */
  liveSessions(): Promise<number>;

  health(): StoreHealth;
}
