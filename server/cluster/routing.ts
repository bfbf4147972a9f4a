/**
 * Routed executes, both ends: the node a client sent `execute` with `node` or
 * `labels` to (the front node) puts the job in the cluster's queue
 * (job_queue.ts), tells the client it is queued, waits until a node has
 * started it, answers the execute with that node's answer, and relays the
 * job's notifications from its stream (job_events.ts), so the client sees what
 * it would see if the job ran where it connected. The node that takes the job
 * starts it as one of its own, for the token that asked.
 *
 * @module
 */
import type { Job, JobManager } from "../jobs.ts";
import type { KeyLocks } from "../key_locks.ts";
import type { Logger } from "../log.ts";
import type { Principal } from "../principal.ts";
import {
  ErrorCode,
  ExecuteParams,
  type ExecuteResult,
  type JobInfo,
  type JobStatus,
  RpcError,
} from "../protocol.ts";
import { toJobParams } from "../claude/prompt.ts";
import type { Store } from "../store/store.ts";
import { neverStartedResult, notRunInfo, recordNeverRan } from "../never_ran.ts";
import type { Session } from "../session.ts";
import type { JobEventStreams } from "./job_events.ts";
import {
  type JobQueue,
  type QueueDepth,
  queueName,
  type RoutedState,
  serves,
  type TakenEntry,
} from "./job_queue.ts";
import type { NodeRegistry } from "./registry.ts";
import type { RemoteControl } from "./remote_control.ts";

/** How often a front node looks at a waiting job's record when no nudge came. */
const LOOK_AGAIN_MS = 1000;
/** Looks at a waiting job's record that find it gone before its execute says so. */
const RECORD_GONE_LOOKS = 3;
/** How often a taking node tries to record a routed job's start before it stops the job. */
const RECORD_START_ATTEMPTS = 3;

export interface RouterOptions {
  queue: JobQueue;
  registry: NodeRegistry;
  events: JobEventStreams;
  remote: RemoteControl;
  jobs: JobManager;
  store: Store;
  /** The token named `name` as this node knows it (its policy file); null when unknown. */
  principal: (name: string) => Principal | null;
  claudeBin: string;
  /** The cluster's concurrency keys: a routed job with one holds it while it runs here. */
  locks: KeyLocks;
  logger: Logger;
}

export class Router {
  readonly #o: RouterOptions;
  /** Routed jobs of this node's sessions that end with their session (not detached). */
  readonly #bound = new Map<string, Set<string>>();
  /** Queue entries of started jobs being let go of (a retry_on_node_loss job's, at its end). */
  readonly #lettingGo = new Set<Promise<void>>();

  constructor(options: RouterOptions) {
    this.#o = options;
  }

  /** Whether `params` asks for another node than this one. */
  wantsRouting(params: ExecuteParams): boolean {
    if (params.labels !== undefined || params.retry_on_node_loss) return true;
    return params.node !== undefined && params.node !== this.#o.registry.id;
  }

  /**
   * The front node's execute: queues the job, waits for a node to start it, and answers as that
   * node did; `afterResponse` then starts relaying the job's notifications to `session`.
   * @throws {RpcError} NO_ELIGIBLE_NODE, JOB_ID_CONFLICT, the taking node's refusal.
   */
  async execute(
    params: ExecuteParams,
    session: Session,
    afterResponse: (fn: () => void) => void,
  ): Promise<ExecuteResult> {
    const { node, labels, retry_on_node_loss: retry, subscribe, ...request } = params;
    await this.#checkEligible({ node, labels });
    const jobId = params.job_id ?? crypto.randomUUID();
    const queue = queueName({ node, labels });
    const command = toJobParams(request, this.#o.claudeBin).command;
    const { principal } = session;
    const queued = await this.#o.queue.enqueue(
      {
        job_id: jobId,
        params: { ...request, job_id: jobId },
        principal: principal.name,
        owner: session.id,
        front_node: this.#o.registry.id,
        reply: this.#o.remote.replyChannel,
        retry_on_node_loss: retry ?? false,
        enqueued_at: Date.now(),
      },
      queue,
      command,
    );
    let existing = false;
    if ("existing" in queued) {
      const old = queued.existing;
      const theirs = old !== null && (principal.admin || old.principal === principal.name);
      const same = old !== null && "command" in old ? old.command === command : old !== null;
      if (!theirs || !same) {
        throw new RpcError(
          ErrorCode.JOB_ID_CONFLICT,
          `Cannot execute: job_id "${jobId}" is already used${
            theirs ? " by a different command" : ""
          }`,
          { job_id: jobId },
        );
      }
      existing = true;
    } else {
      session.send(JSON.stringify({
        jsonrpc: "2.0",
        method: "job.queued",
        params: { job_id: jobId, queue, waiting: queued.waiting },
      }));
    }
    if (!request.detach) this.#bind(session.id, jobId);
    // `control` without a job_id reaches it while it waits, as it would a local job.
    session.lastJobId = jobId;
    const result = await this.#waitForStart(jobId, session, existing);
    if (subscribe !== false && session.isOpen) {
      const follow = await this.#o.events.subscribe(session, principal, jobId, 0);
      afterResponse(() => {
        if (session.isOpen) follow.start();
      });
    }
    return result;
  }

  /**
   * The taking node's part: starts a job from the queue as one of its own, for the token that
   * asked, and records how that went for the front node.
   */
  async take(entry: TakenEntry): Promise<void> {
    const { job } = entry;
    const from = entry.from ?? "";
    const { logger, queue, jobs } = this.#o;
    const held = await queue.claim(job.job_id, from);
    if (held !== "ok" && !held.startsWith("again:")) {
      // Canceled while it waited, or taken over already: nothing of it is ours to run.
      await queue.release(entry);
      return;
    }
    let started: Job;
    /** The concurrency key this node took for the job (let go of if it does not start it). */
    let claimed: string | null = null;
    try {
      const principal = this.#o.principal(job.principal);
      if (principal === null) {
        throw new RpcError(
          ErrorCode.FORBIDDEN,
          `Cannot execute on node "${this.#o.registry.id}": it does not know token "${job.principal}" (give every node the same policy file)`,
          { token: job.principal, node_id: this.#o.registry.id },
        );
      }
      const parsed = ExecuteParams.safeParse(job.params);
      if (!parsed.success) {
        throw new RpcError(ErrorCode.INVALID_PARAMS, "Invalid params for a routed execute", {
          issues: parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
        });
      }
      const params = toJobParams(parsed.data, this.#o.claudeBin);
      if (held.startsWith("again:")) {
        // Its node died while running it, and it asked to be run again: the next attempt, with
        // its notifications after the dead run's, so its followers go on.
        const attempt = Number(held.slice(6)) + 1;
        const lastSeq = await this.#o.events.nodeLost(job.job_id, from, attempt);
        params.takeOver = { lastSeq, attempt };
      }
      const key = parsed.data.concurrency_key;
      if (key !== undefined) {
        // Its front node waited for its turn, but may have given up on it since (an error, or
        // it is gone and another node dropped it from the line): then it must not run, or it
        // would run beside the key's next holder.
        if (!await this.#o.locks.claim(key, job.job_id, this.#o.registry.id)) {
          throw new RpcError(
            ErrorCode.JOB_NOT_RUNNING,
            `Cannot start job "${job.job_id}": it is no longer first in the line of concurrency key ${key} (its execute gave up on it before it was taken)`,
            { job_id: job.job_id, concurrency_key: key },
          );
        }
        claimed = key;
      }
      const start = await jobs.start(params, job.owner, principal);
      started = start.job;
      if (claimed !== null) {
        // A job this node runs already with the id (it came without the key) is followed: it
        // holds no key, so the key goes at once; a job started here holds it until it ends.
        this.#o.locks.started(
          claimed,
          started.id,
          start.existing ? Promise.resolve() : started.done,
          this.#o.registry.id,
        );
        claimed = null;
      }
      await this.#recordStart(entry, started, start.existing);
    } catch (error) {
      // A job that did not start lets go of the key it took now (tried again over an outage).
      if (claimed !== null) {
        this.#o.locks.started(claimed, job.job_id, Promise.resolve(), this.#o.registry.id);
      }
      const refusal = error instanceof RpcError
        ? error
        : new RpcError(ErrorCode.INTERNAL_ERROR, "Internal error", {});
      if (!(error instanceof RpcError)) {
        logger.error("a routed job failed to start", {
          job_id: job.job_id,
          error: String((error as Error)?.stack ?? error),
        });
      }
      await queue.failed(entry, refusal).catch(() => {});
      await queue.release(entry).catch(() => {});
      return;
    }
    // Started, and its start told: a Redis error from here on is no reason to call it failed.
    // A job that may run again elsewhere keeps its entry until it ends: if this node dies
    // first, the entry is still in its pending list, for another node to take over.
    if (job.retry_on_node_loss) {
      const letGo = started.done.then(() => this.#letGo(entry, true));
      this.#lettingGo.add(letGo);
      letGo.finally(() => this.#lettingGo.delete(letGo));
    } else await this.#letGo(entry, false);
  }

  /**
   * Resolves once the entries of the jobs started here are let go of (call it after the jobs
   * ended, before the queue's connection closes): a retry_on_node_loss job that ended at
   * shutdown must not be left for another node to run again.
   */
  async settled(): Promise<void> {
    await Promise.all(this.#lettingGo);
  }

  /**
   * Lets go of a started job's queue entry (tried again over a short outage), recording first,
   * when `ended`, that its run here is over, so that the entry, should it stay in this node's
   * pending list, is never taken for a retry_on_node_loss job to run again.
   */
  async #letGo(entry: TakenEntry, ended: boolean): Promise<void> {
    for (let attempt = 1;; attempt++) {
      try {
        if (ended) await this.#o.queue.ended(entry);
        return await this.#o.queue.release(entry);
      } catch (error) {
        if (attempt < RECORD_START_ATTEMPTS) {
          await new Promise((resolve) => setTimeout(resolve, LOOK_AGAIN_MS));
          continue;
        }
        // It stays in this node's pending list: its next server (or a node taking over) finds
        // the job started or ended there, and lets go of it then.
        this.#o.logger.warn("cannot let go of a routed job's queue entry", {
          job_id: entry.job.job_id,
          error: String(error),
        });
        return;
      }
    }
  }

  /**
   * Tells the front node the job started (through Redis, tried again over a short outage). A job
   * whose start cannot be told is stopped: its client would never hear of it.
   */
  async #recordStart(entry: TakenEntry, started: Job, existing: boolean): Promise<void> {
    const result = {
      job_id: started.id,
      pid: started.group.pid,
      pgid: started.group.pgid,
      status: started.status,
      existing,
      timeout: started.timeout,
    };
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#o.queue.started(entry, result, started.attempt);
      } catch (error) {
        if (attempt < RECORD_START_ATTEMPTS) {
          await new Promise((resolve) => setTimeout(resolve, LOOK_AGAIN_MS));
          continue;
        }
        started.terminate(
          "canceled",
          "its start could not be recorded in the cluster's Redis, so its client could not follow it",
        );
        throw new RpcError(
          ErrorCode.STORE_UNAVAILABLE,
          `Cannot start a routed job: the cluster's Redis: ${(error as Error).message}`,
          { job_id: started.id },
        );
      }
    }
  }

  /**
   * A routed job that has not started (or never will): its state, if `principal` may see it.
   * Null when the job is not one, or not theirs (the same answer as for no job at all).
   */
  async waiting(jobId: string, principal: Principal): Promise<RoutedState | null> {
    const state = await this.#o.queue.state(jobId);
    if (state === null || state.state === "started") return null;
    if (!principal.admin && state.principal !== principal.name) return null;
    return state;
  }

  /** jobs.get of a routed job that is not running anywhere. */
  info(jobId: string, state: RoutedState): JobInfo {
    const status: JobStatus = state.state === "canceled" || state.state === "lost"
      ? state.state
      : state.state === "failed"
      ? "error"
      : "queued";
    return notRunInfo(jobId, {
      command: "command" in state ? state.command : "",
      status,
      since: state.state === "queued" ? state.enqueuedAt : null,
      reason: state.state === "failed" ? state.error.message : null,
    });
  }

  /**
   * Cancels routed job `jobId` while it waits in its queue: it never runs, its stream ends with
   * `process.completed` (status canceled) and its record says so. False when it was no longer
   * waiting (a node took it meanwhile: cancel it there).
   */
  async cancelQueued(jobId: string, state: RoutedState, reason: string): Promise<boolean> {
    if (state.state !== "queued") return false;
    if (!(await this.#o.queue.cancelQueued(jobId, state.queue))) return false;
    // The record first: a follower that sees the stream end may read history at once.
    await recordNeverRan(
      this.#o.store,
      { jobId, command: state.command, nodeId: this.#o.registry.id, sessionId: null },
      { status: "canceled", reason },
      this.#o.logger,
    );
    await this.#o.events.end(jobId, { status: "canceled", reason, startedAt: Date.now() });
    return true;
  }

  /** Every routing queue with its waiting and taken jobs, for `cluster.status`. */
  async depth(): Promise<QueueDepth[]> {
    try {
      return await this.#o.queue.depth();
    } catch (error) {
      throw new RpcError(
        ErrorCode.STORE_UNAVAILABLE,
        `Cannot read the cluster's queues: ${(error as Error).message}`,
        {},
      );
    }
  }

  /**
   * A session closed (or is about to, its server shutting down): its routed jobs that are not
   * detached are canceled, wherever they are. Resolves once the cancels were sent.
   */
  async sessionClosed(session: Session): Promise<void> {
    const bound = this.#bound.get(session.id);
    this.#bound.delete(session.id);
    await Promise.all([...bound ?? []].map((jobId) => this.#cancelFor(session, jobId)));
  }

  async #cancelFor(session: Session, jobId: string): Promise<void> {
    try {
      const state = await this.#o.queue.state(jobId);
      if (state === null) return;
      if (state.state === "queued") {
        if (await this.cancelQueued(jobId, state, "client disconnected")) return;
      }
      const again = await this.#o.queue.state(jobId);
      if (again?.state !== "started" && again?.state !== "starting") return;
      const { name, admin } = session.principal;
      await this.#o.remote.send(again.node, jobId, { name, admin }, {
        action: "control",
        type: "CANCEL",
      });
    } catch (error) {
      // Ended already (not running), or its node is gone: nothing is left to cancel.
      this.#o.logger.debug("could not cancel a routed job of a closed connection", {
        job_id: jobId,
        error: String(error),
      });
    }
  }

  #bind(sessionId: string, jobId: string): void {
    const bound = this.#bound.get(sessionId) ?? new Set();
    bound.add(jobId);
    this.#bound.set(sessionId, bound);
  }

  async #waitForStart(jobId: string, session: Session, existing: boolean): Promise<ExecuteResult> {
    for (let missing = 0;;) {
      const state = await this.#o.queue.state(jobId);
      // The record is written before the job is queued and kept through its start: one that is
      // gone went with Redis (a restart without persistence, a flush). Say so, rather than wait
      // for ever for a start nobody will report.
      if (state === null && ++missing >= RECORD_GONE_LOOKS) {
        throw new RpcError(
          ErrorCode.STORE_UNAVAILABLE,
          `Cannot follow routed job "${jobId}": its record is gone from the cluster's Redis ` +
            "(restarted without persistence?); it may or may not run",
          { job_id: jobId },
        );
      }
      switch (state?.state) {
        case "started":
          return { ...state.result, existing };
        case "failed": {
          const { code, message, data } = state.error;
          if (code === ErrorCode.HOOK_BLOCKED) {
            session.send(JSON.stringify({ jsonrpc: "2.0", method: "hook.blocked", params: data }));
          }
          throw new RpcError(code, message, data);
        }
        case "canceled":
        case "lost":
          return neverStartedResult(jobId, state.state, existing);
      }
      if (!session.isOpen) return neverStartedResult(jobId, "canceled", existing);
      await Promise.race([this.#o.remote.notice(`routed:${jobId}`, LOOK_AGAIN_MS), session.closed]);
    }
  }

  async #checkEligible(route: { node?: string; labels?: string[] }): Promise<void> {
    let nodes;
    try {
      nodes = await this.#o.registry.nodes();
    } catch (error) {
      throw new RpcError(
        ErrorCode.STORE_UNAVAILABLE,
        `Cannot route the job: cannot read the cluster's nodes: ${(error as Error).message}`,
        {},
      );
    }
    const up = nodes.filter((n) => n.status === "up");
    const queue = queueName(route);
    if (up.some((n) => serves(queue, n.id, n.labels))) return;
    const known =
      nodes.map((n) => `${n.id} (${n.status}${n.labels.length ? `, ${n.labels.join(",")}` : ""})`)
        .join("; ") || "none";
    const why = route.node !== undefined
      ? nodes.some((n) => n.id === route.node)
        ? `node "${route.node}" is down`
        : `no node "${route.node}" is in the cluster`
      : `no node that is up has the labels ${queue.slice(7)}`;
    throw new RpcError(ErrorCode.NO_ELIGIBLE_NODE, `Cannot execute: ${why}; nodes: ${known}`, {
      queue,
      nodes: nodes.map((n) => ({ id: n.id, status: n.status, labels: n.labels })),
    });
  }
}
