/**
 * The execute of a job with a `concurrency_key`: it joins the key's line
 * (server/key_locks.ts), is told `job.queued` when others are ahead, and
 * starts (here or routed) once its turn comes. Canceled while it waits (by
 * `control`, or its connection closing when it is not detached), it never
 * runs, and still ends with one outcome: the execute's answer says canceled,
 * a `process.completed` follows, and history records it.
 *
 * @module
 */
import type { KeyLocks } from "./key_locks.ts";
import type { JobManager } from "./jobs.ts";
import type { Logger } from "./log.ts";
import { neverStartedFrame, neverStartedResult, recordNeverRan } from "./never_ran.ts";
import { ErrorCode, type ExecuteParams, type ExecuteResult, RpcError } from "./protocol.ts";
import type { Session } from "./session.ts";
import type { Store } from "./store/store.ts";
import type { JobEventStreams } from "./cluster/job_events.ts";

export interface KeyWaitDeps {
  locks: KeyLocks;
  jobs: JobManager;
  store: Store;
  logger: Logger;
  /** This server's node id, in the record of a job canceled while it waited. */
  nodeId: string;
  /** The cluster's job streams (a canceled job's end goes there too); null: no cluster. */
  events: JobEventStreams | null;
  /** The command the job would run, for jobs.get and the record while it waits. */
  commandOf: (params: ExecuteParams) => string;
}

/**
 * Runs `start` with the job once it holds its key; `start` must call `locks.started` for a job
 * it started (the key is then let go when the job ends).
 */
export async function executeWithKey(
  params: ExecuteParams & { concurrency_key: string },
  session: Session,
  afterResponse: (fn: () => void) => void,
  deps: KeyWaitDeps,
  start: (params: ExecuteParams) => Promise<ExecuteResult>,
): Promise<ExecuteResult> {
  const { locks } = deps;
  const key = params.concurrency_key;
  const jobId = params.job_id ?? crypto.randomUUID();
  const withId = { ...params, job_id: jobId };
  // A retried execute of a job that runs here follows it, as without a key.
  if (deps.jobs.has(jobId)) return await start(withId);
  // An id in history is refused now, as it would be at the start: waiting first would let a
  // cancel record this job over that one.
  if (params.job_id !== undefined) await deps.jobs.checkIdUnused(jobId, session.principal);
  const command = deps.commandOf(withId);
  const since = Date.now();
  const ahead = await locks.join({ jobId, key, principal: session.principal.name, command, since });
  if (ahead === null) {
    // Another execute with this id waits for (or holds) a key: this one must not share its place,
    // nor cancel or end it.
    throw new RpcError(
      ErrorCode.JOB_ID_CONFLICT,
      `Cannot execute: job_id "${jobId}" is already used`,
      {
        job_id: jobId,
      },
    );
  }
  if (ahead > 0) {
    session.send(JSON.stringify({
      jsonrpc: "2.0",
      method: "job.queued",
      params: { job_id: jobId, queue: `key:${key}`, waiting: ahead + 1 },
    }));
  }
  // `control` without a job_id reaches it while it waits, as it would a running job.
  session.lastJobId = jobId;
  const giveUp = params.detach ? new Promise<never>(() => {}) : session.closed;
  if (!await locks.turn(key, jobId, giveUp)) {
    const reason = session.isOpen || params.detach
      ? "canceled while waiting for its concurrency key"
      : "client disconnected";
    await neverRan(jobId, command, reason, session, afterResponse, deps, params.subscribe);
    return neverStartedResult(jobId, "canceled");
  }
  try {
    const result = await start(withId);
    // Canceled in a routing queue, or lost before it ran: the next in line goes. So does it
    // when the execute found its id running already (started meanwhile without this key): it
    // follows that job, started nothing, and nobody would let go of its place otherwise.
    if (result.pid === 0 || result.existing) await locks.abandon(key, jobId);
    return result;
  } catch (error) {
    // Refused, or (routed) its fate unknown on a Redis error: a node that started it holds the
    // key (it claimed it), and one that comes to start it later finds it no longer in line.
    await locks.abandon(key, jobId);
    throw error;
  }
}

async function neverRan(
  jobId: string,
  command: string,
  reason: string,
  session: Session,
  afterResponse: (fn: () => void) => void,
  deps: KeyWaitDeps,
  subscribe: boolean | undefined,
): Promise<void> {
  await recordNeverRan(
    deps.store,
    { jobId, command, nodeId: deps.nodeId, sessionId: session.id },
    { status: "canceled", reason },
    deps.logger,
  );
  const { events } = deps;
  if (events) {
    // Followers on any node see it end; this connection follows it as any other.
    await events.end(jobId, {
      status: "canceled",
      reason,
      startedAt: Date.now(),
      principal: session.principal.name,
    }).catch((error) =>
      deps.logger.warn("could not end the stream of a job canceled while it waited", {
        job_id: jobId,
        error: String(error),
      })
    );
  }
  if (subscribe === false || !session.isOpen) return;
  afterResponse(() => session.send(neverStartedFrame(jobId, "canceled", reason)));
}
