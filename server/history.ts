/**
 * History on the wire: store records as protocol HistoryRecords, and the
 * history.* methods' queries. The store speaks epoch milliseconds; the
 * protocol speaks ISO 8601.
 *
 * @module
 */
import {
  ErrorCode,
  type HistoryRecord,
  type HistoryStatsResult,
  type HistoryStatus,
  RpcError,
  type ShapeMetrics,
} from "./protocol.ts";
import { CursorError } from "./store/cursor.ts";
import { HistoryOffError } from "./store/none.ts";
import type { JobRecord, ShapeMetricsRecord, Store } from "./store/store.ts";

export function toHistoryRecord(record: JobRecord, includeOutput: boolean): HistoryRecord {
  return {
    job_id: record.job_id,
    command: record.command,
    shape: record.shape,
    cwd: record.cwd,
    session_id: record.session_id,
    node_id: record.node_id,
    status: record.status,
    pid: record.pid,
    pgid: record.pgid,
    started_at: new Date(record.started_at).toISOString(),
    ended_at: record.ended_at === null ? null : new Date(record.ended_at).toISOString(),
    duration_ms: record.duration_ms,
    exit_code: record.exit_code,
    signal: record.signal,
    reason: record.reason,
    bytes: { stdout: record.bytes_stdout, stderr: record.bytes_stderr },
    truncated: record.truncated,
    timeout: { seconds: record.timeout_s, source: record.timeout_source },
    parent_job_id: record.parent_job_id,
    attempt: record.attempt,
    hooks: record.hooks,
    ...(includeOutput ? { output: { head: record.output_head, tail: record.output_tail } } : {}),
  };
}

export async function listHistory(
  store: Store,
  params: {
    limit?: number;
    cursor?: string;
    status?: HistoryStatus;
    search?: string;
    since?: string;
    parent_job_id?: string;
  },
): Promise<{ jobs: HistoryRecord[]; next_cursor: string | null }> {
  try {
    const page = await store.list({
      limit: params.limit ?? 50,
      cursor: params.cursor,
      status: params.status,
      search: params.search,
      since: params.since === undefined ? undefined : Date.parse(params.since),
      parent_job_id: params.parent_job_id,
    });
    return {
      jobs: page.jobs.map((record) => toHistoryRecord(record, false)),
      next_cursor: page.next_cursor,
    };
  } catch (error) {
    if (error instanceof CursorError) {
      throw new RpcError(ErrorCode.INVALID_PARAMS, error.message, { cursor: params.cursor });
    }
    throw storeError(error);
  }
}

export async function getHistory(
  store: Store,
  jobId: string,
  includeOutput: boolean,
): Promise<HistoryRecord> {
  let record: JobRecord | null;
  try {
    record = await store.get(jobId);
  } catch (error) {
    throw storeError(error);
  }
  if (!record) {
    throw new RpcError(ErrorCode.JOB_NOT_FOUND, `Job "${jobId}" is not in the history`, {
      job_id: jobId,
    });
  }
  return toHistoryRecord(record, includeOutput);
}

/**
 * `history.stats`: counts per status, timing of the `shapes` most frequent shapes, and the
 * record_metrics counts of the `shapes` most-run shapes (empty when that hook never ran).
 */
export async function historyStats(store: Store, shapes: number): Promise<HistoryStatsResult> {
  try {
    const [stats, metrics] = await Promise.all([store.stats({ shapes }), store.metrics(shapes)]);
    return {
      by_status: stats.by_status as Record<string, number>,
      by_shape: stats.by_shape,
      metrics: metrics.map(toShapeMetrics),
    };
  } catch (error) {
    throw storeError(error);
  }
}

/** A shape's metrics on the wire: with their mean, and `last_at` in ISO 8601. */
export function toShapeMetrics(record: ShapeMetricsRecord): ShapeMetrics {
  return {
    shape: record.shape,
    runs: record.runs,
    by_status: record.by_status,
    total_ms: record.total_ms,
    mean_ms: record.runs > 0 ? record.total_ms / record.runs : 0,
    max_ms: record.max_ms,
    last_at: new Date(record.last_at).toISOString(),
  };
}

export async function pruneHistory(store: Store, olderThanSeconds: number, now: number) {
  const before = now - olderThanSeconds * 1000;
  try {
    return { deleted: await store.prune(before), before: new Date(before).toISOString() };
  } catch (error) {
    throw storeError(error);
  }
}

/** A store that cannot answer (Redis down, history off): the history methods say so with -32009. */
function storeError(error: unknown): RpcError {
  if (error instanceof HistoryOffError) {
    return new RpcError(ErrorCode.STORE_UNAVAILABLE, `History is unavailable: ${error.message}`, {
      history: "off",
    });
  }
  return new RpcError(
    ErrorCode.STORE_UNAVAILABLE,
    `History is unavailable: ${(error as Error)?.message ?? error}`,
  );
}
