/**
 * Every job's notifications, also in Redis: each node appends the frames of
 * the jobs it runs to a stream per job, with the frame's own sequence number
 * as the entry id (`<seq>-0`), so any node can replay a job from any
 * `from_seq` and follow it live, exactly as the owning node would: after a
 * reconnect to another node, or after the client's own node restarted.
 *
 * Keys (under the store's prefix):
 *
 *     cluster:job:<id>:events   stream of {frame}: the notification as sent on the WebSocket,
 *                               trimmed (MINID) to what the job's own replay buffer holds: the
 *                               replay buffer's worth while the job runs, the finished replay's
 *                               worth once it has ended
 *     cluster:job:<id>:meta     hash {node_id, principal}: who runs it, and whose it is
 *
 * Both expire `FINISHED_TTL_MS` after the job ends (or `RUNNING_TTL_MS` after it starts, renewed
 * never: a job that runs longer loses its stream, not its process).
 *
 * Writing never holds a job up: frames are sent without waiting (node-redis pipelines them, in
 * order, on one connection). If Redis falls behind by more than `MAX_PENDING_BYTES`, output frames
 * are dropped (a follower then sees a gap in sequence numbers, reported as `missed`); the terminal
 * frame is always sent.
 *
 * Following uses a second connection that blocks in XREAD on every stream some session of this
 * node follows, woken every `FOLLOW_BLOCK_MS` to take in new ones.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import { type ClusterClient, clusterClient, connectAll, withDeadline } from "./redis_client.ts";
import type { Principal } from "../principal.ts";
import { ErrorCode, type JobsSubscribeResult, type JobStatus, RpcError } from "../protocol.ts";
import type { Job, Subscriber } from "../jobs.ts";
import { settlesWithin } from "../deadline.ts";
import { completedFrame } from "../never_ran.ts";

/** How long a finished job's stream stays readable. */
export const FINISHED_TTL_MS = 3600 * 1000;
/** How long a job's stream lives from its start at most. */
export const RUNNING_TTL_MS = 7 * 24 * 3600 * 1000;
/** Frames waiting for Redis past which output frames are dropped. */
const MAX_PENDING_BYTES = 16 * 1024 * 1024;
/** Longest a follow read blocks before it takes in streams followed since. */
const FOLLOW_BLOCK_MS = 250;
/** How long closing waits for frames still on their way to Redis. */
const CLOSE_WAIT_MS = 2000;
/** Frames whose method ends a job: the last entry of its stream. */
const TERMINAL_START = '{"jsonrpc":"2.0","method":"process.completed",';

// KEYS: events, meta, the node's running set. ARGV: node id, principal, ttl, job id, '1' to keep
// the stream (a job taken over after its node died). A fresh start owns the id's records; the
// routing record of a job this node took from a queue (state starting or started, node_id this
// node) stays, whether its start was written before or after this.
const MIRROR_START = `
local st = redis.call('HGET', KEYS[2], 'state')
local routedHere = (st == 'starting' or st == 'started') and
  redis.call('HGET', KEYS[2], 'node_id') == ARGV[1]
if ARGV[5] ~= '1' then redis.call('DEL', KEYS[1]) end
if not routedHere then redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[2], 'node_id', ARGV[1], 'principal', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
-- The node's running jobs, for whoever finds the node gone (server/cluster/reaper.ts).
redis.call('SADD', KEYS[3], ARGV[4])
return 1
`;

/**
 * Whether `frame` is a job's terminal notification. Job frames are written by `Job.#emit` as
 * `{"jsonrpc":"2.0","method":...,"params":...}`, so the method is at the start: a look at the
 * first bytes, not a scan of every output chunk (up to CC_EXECUTOR_CHUNK_BYTES each).
 */
function isTerminal(frame: string): boolean {
  return frame.startsWith(TERMINAL_START);
}

export interface JobEventStreamsOptions {
  redisUrl: string;
  /** @default "cc-executor:" */
  prefix?: string;
  nodeId: string;
  logger: Logger;
}

type Client = ClusterClient;

/** One session following one job on another node. */
interface Follower {
  session: Subscriber;
  jobId: string;
  /** The last seq this session has been sent (by its replay, then by the follow). */
  lastSeq: number;
}

export class JobEventStreams implements AsyncDisposable {
  readonly #options: JobEventStreamsOptions;
  readonly #writer: Client;
  readonly #reader: Client;
  readonly #prefix: string;
  #pendingBytes = 0;
  #dropping = false;
  /** Writes not yet answered, so closing waits for the last frames (a job's end) to be sent. */
  readonly #inflight = new Set<Promise<unknown>>();
  /**
   * Followed streams: key -> who follows it. Each follower has its own cursor: a follower that
   * joins a stream read already has a replay that may be ahead of or behind the others'.
   */
  readonly #followed = new Map<string, { followers: Follower[] }>();
  #loop: Promise<void> | null = null;
  #closed = false;

  private constructor(options: JobEventStreamsOptions, writer: Client, reader: Client) {
    this.#options = options;
    this.#writer = writer;
    this.#reader = reader;
    this.#prefix = `${options.prefix ?? "cc-executor:"}cluster:job:`;
  }

  static async open(options: JobEventStreamsOptions): Promise<JobEventStreams> {
    const writer = clusterClient(options.redisUrl);
    const reader = clusterClient(options.redisUrl);
    await connectAll(writer, reader);
    return new JobEventStreams(options, writer, reader);
  }

  /** Mirrors `job`'s notifications, from its first, into its stream. */
  mirror(job: Job): void {
    const events = this.#key(job.id, "events");
    const meta = this.#key(job.id, "meta");
    // A client-chosen id may have been used before (on any node, by any token): this job owns the
    // id's stream now, and no frame of the earlier one is replayed as its. Unless it is that job,
    // run again after its node died: then its stream goes on. One script, because a routed job's
    // record shares the meta hash (job_queue.ts) and the taking node writes its start there on
    // another connection: whichever lands first, the routing record must survive this.
    this.#send(
      this.#writer.eval(MIRROR_START, {
        keys: [events, meta, this.runningKey(this.#options.nodeId)],
        arguments: [
          this.#options.nodeId,
          job.principal,
          String(RUNNING_TTL_MS),
          job.id,
          job.takenOver ? "1" : "0",
        ],
      }),
      0,
    );
    job.done.then(() =>
      this.#send(this.#writer.sRem(this.runningKey(this.#options.nodeId), job.id), 0)
    );
    // The stream holds what the job's own replay buffer holds: the same seqs, so the same
    // `missed` from any node, however small the frames.
    const oldest = () => job.oldestReplaySeq ?? 0;
    const mirror: Subscriber = {
      id: `cluster-mirror:${job.id}`,
      send: (frame) => this.#append(events, meta, frame, oldest),
      // The job never waits for Redis: frames past MAX_PENDING_BYTES are dropped instead.
      ready: () => undefined,
    };
    job.subscribe(mirror, 0);
  }

  /**
   * Replays job `jobId` of another node from `fromSeq` to `session`, then follows it live until
   * it ends or the session unsubscribes.
   * @throws {RpcError} JOB_NOT_FOUND when no node has the job's stream, or it is not the
   * principal's to see.
   */
  async subscribe(
    session: Subscriber,
    principal: Principal,
    jobId: string,
    fromSeq: number,
  ): Promise<JobsSubscribeResult & { start: () => void }> {
    const notFound = () =>
      new RpcError(ErrorCode.JOB_NOT_FOUND, `Job "${jobId}" not found`, { job_id: jobId });
    const events = this.#key(jobId, "events");
    let owner: Record<string, string>;
    let entries: { id: string; message: Record<string, string> }[];
    try {
      owner = await withDeadline(this.#writer.hGetAll(this.#key(jobId, "meta")));
      // A routed job that never started (canceled in its queue) has a state and no node.
      if (owner.node_id === undefined && owner.state === undefined) throw notFound();
      // The same answer as for a job that does not exist: whether it does is not theirs to know.
      if (!principal.admin && owner.principal !== principal.name) throw notFound();
      entries = await withDeadline(
        this.#writer.xRange(events, fromSeq > 0 ? `${fromSeq}-0` : "-", "+"),
      );
    } catch (error) {
      if (error instanceof RpcError) throw error;
      throw new RpcError(
        ErrorCode.STORE_UNAVAILABLE,
        `Cannot read job "${jobId}" from the cluster: ${(error as Error).message}`,
        { job_id: jobId },
      );
    }
    const frames = entries.map((entry) => entry.message.frame ?? "");
    const firstSeq = entries.length > 0 ? Number(entries[0]!.id.split("-")[0]) : null;
    const ended = frames.some(isTerminal);
    const lastSeq = entries.length > 0
      ? Number(entries.at(-1)!.id.split("-")[0])
      : Math.max(fromSeq - 1, 0);
    return {
      job_id: jobId,
      status: ended ? terminalStatus(frames.at(-1) ?? "") : "running",
      replay_from_seq: firstSeq,
      missed: firstSeq === null ? 0 : Math.max(0, firstSeq - Math.max(fromSeq, 1)),
      // Sent after the response, as a local subscribe's replay is.
      start: () => {
        for (const frame of frames) session.send(frame);
        if (!ended) this.#follow(events, { session, jobId, lastSeq });
      },
    };
  }

  /**
   * The node that runs (or ran) job `jobId` and the token that owns it, from its stream's record;
   * null when no node has one (never was, or expired an hour after it ended).
   * @throws {RpcError} STORE_UNAVAILABLE when Redis cannot be read.
   */
  async owner(jobId: string): Promise<{ nodeId: string; principal: string | null } | null> {
    try {
      const [nodeId, principal] = await withDeadline(
        this.#writer.hmGet(this.#key(jobId, "meta"), ["node_id", "principal"]),
      );
      return nodeId == null ? null : { nodeId, principal: principal ?? null };
    } catch (error) {
      throw new RpcError(
        ErrorCode.STORE_UNAVAILABLE,
        `Cannot look up job "${jobId}" in the cluster: ${(error as Error).message}`,
        { job_id: jobId },
      );
    }
  }

  /**
   * Ends job `jobId`'s stream for a job whose own node cannot: one canceled while it waited in a
   * queue, or one whose node died under it (status `lost`). The terminal frame follows the last
   * frame in the stream, with the byte counts its output frames show, so followers end as they
   * would at a real end. Resolves to that frame.
   */
  async end(
    jobId: string,
    end: { status: JobStatus; reason: string; startedAt: number; principal?: string },
  ): Promise<string> {
    const events = this.#key(jobId, "events");
    const meta = this.#key(jobId, "meta");
    const last = await withDeadline(this.#writer.xRevRange(events, "+", "-", { COUNT: 500 }));
    const lastSeq = last.length > 0 ? Number(last[0]!.id.split("-")[0]) : 0;
    const bytes = { stdout: 0, stderr: 0 };
    for (const entry of last) {
      try {
        const { method, params } = JSON.parse(entry.message.frame ?? "");
        if (method !== "process.output") continue;
        const stream = params.stream as "stdout" | "stderr";
        const reached = params.offset + new TextEncoder().encode(params.data).length;
        bytes[stream] = Math.max(bytes[stream], reached);
      } catch {
        // Not a frame of ours: it counts for nothing.
      }
    }
    const frame = completedFrame(jobId, {
      seq: lastSeq + 1,
      status: end.status,
      reason: end.reason,
      durationMs: Math.max(0, Date.now() - end.startedAt),
      bytes,
    });
    await withDeadline(
      this.#writer.multi()
        .xAdd(events, `${lastSeq + 1}-0`, { frame })
        // A job that never ran anywhere has no record of whose it is yet: followers need one.
        .hSetNX(meta, "state", end.status)
        .hSetNX(meta, "principal", end.principal ?? "default")
        .pExpire(events, FINISHED_TTL_MS)
        .pExpire(meta, FINISHED_TTL_MS)
        .exec(),
    );
    return frame;
  }

  /**
   * Adds `job.node_lost` to job `jobId`'s stream: its node died, and this node runs it again
   * (retry_on_node_loss). Resolves to the seq it took; the new run's notifications follow it.
   */
  async nodeLost(jobId: string, nodeId: string, nextAttempt: number): Promise<number> {
    const events = this.#key(jobId, "events");
    const last = await withDeadline(this.#writer.xRevRange(events, "+", "-", { COUNT: 1 }));
    const seq = (last.length > 0 ? Number(last[0]!.id.split("-")[0]) : 0) + 1;
    const frame = JSON.stringify({
      jsonrpc: "2.0",
      method: "job.node_lost",
      params: { job_id: jobId, seq, node_id: nodeId, next_attempt: nextAttempt },
    });
    await withDeadline(this.#writer.xAdd(events, `${seq}-0`, { frame }));
    return seq;
  }

  /** The jobs node `nodeId` was running at its last word (see `runningKey`). */
  async runningOn(nodeId: string): Promise<string[]> {
    return await withDeadline(this.#writer.sMembers(this.runningKey(nodeId)));
  }

  /** Notes that job `jobId` of node `nodeId` was marked lost, for that node's next start. */
  async noteLost(nodeId: string, jobId: string): Promise<void> {
    await withDeadline(
      this.#writer.multi().sAdd(this.#lostKey(nodeId), jobId)
        .pExpire(this.#lostKey(nodeId), RUNNING_TTL_MS).exec(),
    );
  }

  /** The jobs of node `nodeId` marked lost while it was down, each once (the list is emptied). */
  async takeLost(nodeId: string): Promise<string[]> {
    const [ids] = await withDeadline(
      this.#writer.multi().sMembers(this.#lostKey(nodeId)).del(this.#lostKey(nodeId)).exec(),
    ) as unknown as [string[], number];
    return ids;
  }

  #lostKey(nodeId: string): string {
    return `${this.#options.prefix ?? "cc-executor:"}cluster:node:${nodeId}:lost`;
  }

  /** Drops job `jobId` from node `nodeId`'s running jobs (it was marked lost, or moved). */
  async forgetRunning(nodeId: string, jobId: string): Promise<void> {
    await withDeadline(this.#writer.sRem(this.runningKey(nodeId), jobId));
  }

  /** Stops `sessionId` following `jobId` (every job, without one); true if it was. */
  unsubscribe(sessionId: string, jobId?: string): boolean {
    let removed = false;
    for (const [key, followed] of this.#followed) {
      const before = followed.followers.length;
      followed.followers = followed.followers.filter((f) =>
        f.session.id !== sessionId || (jobId !== undefined && f.jobId !== jobId)
      );
      removed ||= followed.followers.length < before;
      if (followed.followers.length === 0) this.#followed.delete(key);
    }
    return removed;
  }

  /** Sends what is still waiting (within CLOSE_WAIT_MS), stops following, and disconnects. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#closed = true;
    this.#followed.clear();
    // The follow loop's read is cut short (it may wait on a Redis that no longer answers).
    this.#reader.destroy();
    await settlesWithin(Promise.allSettled([...this.#inflight]), CLOSE_WAIT_MS);
    await this.#loop;
    this.#writer.destroy();
  }

  #append(events: string, meta: string, frame: string, oldest: () => number): void {
    const seq = /"seq":(\d+)/.exec(frame)?.[1];
    if (seq === undefined) return;
    const terminal = isTerminal(frame);
    if (!terminal && this.#pendingBytes > MAX_PENDING_BYTES) {
      if (!this.#dropping) {
        this.#dropping = true;
        this.#options.logger.warn(
          "Redis is behind the jobs' output; dropping frames from streams",
          {
            pending_bytes: this.#pendingBytes,
          },
        );
      }
      return;
    }
    // Plain commands, not MULTI: one connection keeps them in order, and node-redis pipelines
    // those sent in the same turn, so a frame costs one command, not three.
    const added = this.#writer.xAdd(events, `${seq}-0`, { frame }, {
      TRIM: { strategy: "MINID", strategyModifier: "~", threshold: oldest() },
    });
    if (terminal) {
      // The job shrinks its replay buffer to the finished size right after this frame.
      queueMicrotask(() =>
        this.#send(
          this.#writer.multi().xTrim(events, "MINID", oldest())
            .pExpire(events, FINISHED_TTL_MS).pExpire(meta, FINISHED_TTL_MS).exec(),
          0,
        )
      );
    }
    // The first frame gives the stream its longest life; the last one its short one (above).
    this.#send(added, frame.length);
    if (seq === "1") this.#send(this.#writer.pExpire(events, RUNNING_TTL_MS), 0);
  }

  #send(sent: Promise<unknown>, bytes: number): void {
    this.#pendingBytes += bytes;
    this.#inflight.add(sent);
    sent.finally(() => this.#inflight.delete(sent)).catch(() => {});
    sent.then(
      () => {
        this.#pendingBytes -= bytes;
        if (this.#dropping && this.#pendingBytes < MAX_PENDING_BYTES / 2) this.#dropping = false;
      },
      (error) => {
        this.#pendingBytes -= bytes;
        this.#options.logger.debug("a job frame did not reach Redis", { error: String(error) });
      },
    );
  }

  #follow(key: string, follower: Follower): void {
    const followed = this.#followed.get(key);
    if (followed) {
      // Subscribing again replaces the follow, as a local subscribe does: one copy of each frame.
      followed.followers = followed.followers.filter((f) => f.session.id !== follower.session.id);
      followed.followers.push(follower);
    } else this.#followed.set(key, { followers: [follower] });
    this.#loop ??= this.#run().finally(() => (this.#loop = null));
  }

  async #run(): Promise<void> {
    while (!this.#closed && this.#followed.size > 0) {
      // From the follower furthest behind; the others skip what they have (see below).
      const from = new Map(
        [...this.#followed].map(([key, { followers }]) => [
          key,
          Math.min(...followers.map((f) => f.lastSeq)),
        ]),
      );
      const streams = [...from].map(([key, seq]) => ({ key, id: `${seq}-0` }));
      let replies: StreamReplies;
      try {
        replies = await this.#reader.xRead(streams, {
          BLOCK: FOLLOW_BLOCK_MS,
          COUNT: 100,
        }) as StreamReplies;
      } catch (error) {
        if (this.#closed) return;
        this.#options.logger.debug("following job streams failed; retrying", {
          error: String(error),
        });
        await new Promise((resolve) => setTimeout(resolve, FOLLOW_BLOCK_MS));
        continue;
      }
      for (const reply of replies ?? []) {
        const followed = this.#followed.get(reply.name);
        if (!followed) continue;
        for (const entry of reply.messages) {
          const seq = Number(entry.id.split("-")[0]);
          const frame = entry.message.frame ?? "";
          for (const follower of followed.followers) {
            // Joined since this read was sent, from further back: the next read starts there.
            if (follower.lastSeq < (from.get(reply.name) ?? 0)) continue;
            if (seq <= follower.lastSeq) continue;
            follower.lastSeq = seq;
            follower.session.send(frame);
          }
          if (isTerminal(frame)) {
            // Done for those that have the end; one still behind (it joined since this read was
            // sent) stays, and the next read, from where it is, brings it the rest.
            followed.followers = followed.followers.filter((f) => f.lastSeq < seq);
            if (followed.followers.length === 0) this.#followed.delete(reply.name);
          }
        }
      }
    }
  }

  /** The set of the jobs node `nodeId` runs (each added at its start, removed at its end). */
  runningKey(nodeId: string): string {
    return `${this.#options.prefix ?? "cc-executor:"}cluster:node:${nodeId}:jobs`;
  }

  #key(jobId: string, kind: "events" | "meta"): string {
    return `${this.#prefix}${jobId}:${kind}`;
  }
}

/** XREAD's answer (RESP2): null when the block timed out. */
type StreamReplies =
  | { name: string; messages: { id: string; message: Record<string, string> }[] }[]
  | null;

/** The status a terminal frame names. */
function terminalStatus(frame: string): JobStatus {
  try {
    return JSON.parse(frame).params.status;
  } catch {
    return "error";
  }
}
