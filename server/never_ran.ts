/**
 * A job that ended before it ever ran: canceled while it waited (in a routing
 * queue, or for its concurrency key). It still gets exactly one outcome: the
 * execute's answer says so, a `process.completed` follows, and history keeps a
 * record of it.
 *
 * @module
 */
import type { Logger } from "./log.ts";
import type { ExecuteResult, JobInfo, JobStatus } from "./protocol.ts";
import { commandShape } from "./store/shape.ts";
import type { Store } from "./store/store.ts";

/** What the execute of a job that never started answers. */
export function neverStartedResult(
  jobId: string,
  status: JobStatus,
  existing = false,
): ExecuteResult {
  return {
    job_id: jobId,
    pid: 0,
    pgid: 0,
    status,
    existing,
    timeout: { seconds: null, source: "none", samples: 0 },
  };
}

/**
 * A `process.completed` written by the server rather than by a job: for a job that never started,
 * or one whose node died under it (then seq follows the last frame its stream holds).
 */
export function completedFrame(
  jobId: string,
  end: {
    seq: number;
    status: JobStatus;
    reason: string;
    durationMs?: number;
    bytes?: { stdout: number; stderr: number };
  },
): string {
  return JSON.stringify({
    jsonrpc: "2.0",
    method: "process.completed",
    params: {
      job_id: jobId,
      seq: end.seq,
      status: end.status,
      exit_code: null,
      signal: null,
      duration_ms: end.durationMs ?? 0,
      bytes: end.bytes ?? { stdout: 0, stderr: 0 },
      truncated: false,
      reason: end.reason,
    },
  });
}

/** The `process.completed` of a job that never started, as its only notification (seq 1). */
export function neverStartedFrame(jobId: string, status: JobStatus, reason: string): string {
  return completedFrame(jobId, { seq: 1, status, reason });
}

/** Records a job that never ran (a failure to record is logged: the outcome stands). */
export async function recordNeverRan(
  store: Store,
  job: { jobId: string; command: string; nodeId: string; sessionId: string | null },
  end: { status: "canceled"; reason: string },
  logger: Logger,
): Promise<void> {
  const now = Date.now();
  try {
    // A client-chosen id may be one history holds already (another job's, maybe another
    // token's): that record stays as it is.
    if (await store.get(job.jobId) !== null) {
      logger.warn("did not record a job that never ran: its id is in history already", {
        job_id: job.jobId,
      });
      return;
    }
    await store.jobStarted({
      job_id: job.jobId,
      command: job.command,
      shape: commandShape(job.command),
      cwd: null,
      session_id: job.sessionId,
      node_id: job.nodeId,
      server_pid: Deno.pid,
      started_at: now,
      timeout_s: null,
      timeout_source: "none",
    });
    await store.jobEnded(job.jobId, {
      status: end.status,
      ended_at: now,
      duration_ms: 0,
      exit_code: null,
      signal: null,
      reason: end.reason,
      bytes_stdout: 0,
      bytes_stderr: 0,
      truncated: false,
      output_head: "",
      output_tail: "",
      hooks: null,
    });
  } catch (error) {
    logger.warn("could not record a job that never ran", {
      job_id: job.jobId,
      error: String(error),
    });
  }
}

/** jobs.get of a job that has not run (queued, or waiting for its concurrency key) or never will. */
export function notRunInfo(
  jobId: string,
  job: { command: string; status: JobStatus; since: number | null; reason: string | null },
): JobInfo {
  return {
    job_id: jobId,
    command: job.command,
    cwd: null,
    status: job.status,
    pid: 0,
    pgid: 0,
    detach: false,
    started_at: new Date(job.since ?? 0).toISOString(),
    ended_at: null,
    duration_ms: null,
    exit_code: null,
    signal: null,
    bytes: { stdout: 0, stderr: 0 },
    truncated: false,
    last_seq: 0,
    reason: job.reason,
    attempt: 1,
  };
}
