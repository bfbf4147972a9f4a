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
 *                               trimmed to about the replay buffer's worth of entries while the
 *                               job runs and to the finished replay's worth once it has ended
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
import { createClient } from "redis";
import type { Logger } from "../log.ts";
import type { Principal } from "../principal.ts";
import { ErrorCode, type JobsSubscribeResult, type JobStatus, RpcError } from "../protocol.ts";
import type { Job, Subscriber } from "../jobs.ts";
import { settlesWithin } from "../deadline.ts";

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
const TERMINAL = '"method":"process.completed"';

export interface JobEventStreamsOptions {
  redisUrl: string;
  /** @default "cc-executor:" */
  prefix?: string;
  nodeId: string;
  logger: Logger;
  /** Entries kept while a job runs (about the replay buffer's worth of chunks). */
  runningEntries: number;
  /** Entries kept once it has ended (about the finished replay's worth). */
  finishedEntries: number;
}

type Client = ReturnType<typeof createClient>;

/** One session following one job on another node. */
interface Follower {
  session: Subscriber;
  jobId: string;
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
  /** Followed streams: key -> the last entry id delivered, and who follows it. */
  readonly #followed = new Map<string, { lastId: string; followers: Follower[] }>();
  #loop: Promise<void> | null = null;
  #closed = false;

  private constructor(options: JobEventStreamsOptions, writer: Client, reader: Client) {
    this.#options = options;
    this.#writer = writer;
    this.#reader = reader;
    this.#prefix = `${options.prefix ?? "cc-executor:"}cluster:job:`;
  }

  static async open(options: JobEventStreamsOptions): Promise<JobEventStreams> {
    const make = () => {
      const client = createClient({
        url: options.redisUrl,
        // A frame that cannot be sent is dropped, not queued without bound.
        disableOfflineQueue: true,
        socket: { reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 2000) },
      });
      client.on("error", () => {/* reconnects; writes and reads report what they miss */});
      return client;
    };
    const writer = make();
    const reader = make();
    try {
      await Promise.all([writer.connect(), reader.connect()]);
    } catch (error) {
      writer.destroy();
      reader.destroy();
      throw error;
    }
    return new JobEventStreams(options, writer, reader);
  }

  /** Mirrors `job`'s notifications, from its first, into its stream. */
  mirror(job: Job): void {
    const events = this.#key(job.id, "events");
    const meta = this.#key(job.id, "meta");
    this.#send(
      this.#writer.multi()
        .hSet(meta, { node_id: this.#options.nodeId, principal: job.principal })
        .pExpire(meta, RUNNING_TTL_MS)
        .exec(),
      0,
    );
    const mirror: Subscriber = {
      id: `cluster-mirror:${job.id}`,
      send: (frame) => this.#append(events, meta, frame),
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
      owner = await this.#writer.hGetAll(this.#key(jobId, "meta"));
      if (owner.node_id === undefined) throw notFound();
      // The same answer as for a job that does not exist: whether it does is not theirs to know.
      if (!principal.admin && owner.principal !== principal.name) throw notFound();
      entries = await this.#writer.xRange(events, fromSeq > 0 ? `${fromSeq}-0` : "-", "+");
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
    const ended = frames.some((frame) => frame.includes(TERMINAL));
    const lastId = entries.at(-1)?.id ?? (fromSeq > 0 ? `${fromSeq - 1}-0` : "0-0");
    return {
      job_id: jobId,
      status: ended ? terminalStatus(frames.at(-1) ?? "") : "running",
      replay_from_seq: firstSeq,
      missed: firstSeq === null ? 0 : Math.max(0, firstSeq - Math.max(fromSeq, 1)),
      // Sent after the response, as a local subscribe's replay is.
      start: () => {
        for (const frame of frames) session.send(frame);
        if (!ended) this.#follow(events, lastId, { session, jobId });
      },
    };
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
    await settlesWithin(Promise.allSettled([...this.#inflight]), CLOSE_WAIT_MS);
    await this.#loop;
    this.#writer.destroy();
    this.#reader.destroy();
  }

  #append(events: string, meta: string, frame: string): void {
    const seq = /"seq":(\d+)/.exec(frame)?.[1];
    if (seq === undefined) return;
    const terminal = frame.includes(TERMINAL);
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
    const threshold = terminal ? this.#options.finishedEntries : this.#options.runningEntries;
    const write = this.#writer.multi().xAdd(events, `${seq}-0`, { frame }, {
      TRIM: { strategy: "MAXLEN", strategyModifier: "~", threshold },
    });
    // The first frame gives the stream its longest life; the last one its short one.
    const ttl = terminal ? FINISHED_TTL_MS : seq === "1" ? RUNNING_TTL_MS : null;
    this.#send(
      ttl === null
        ? write.exec()
        : write.pExpire(events, ttl).pExpire(meta, terminal ? FINISHED_TTL_MS : RUNNING_TTL_MS)
          .exec(),
      frame.length,
    );
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

  #follow(key: string, lastId: string, follower: Follower): void {
    const followed = this.#followed.get(key);
    if (followed) followed.followers.push(follower);
    else this.#followed.set(key, { lastId, followers: [follower] });
    this.#loop ??= this.#run().finally(() => (this.#loop = null));
  }

  async #run(): Promise<void> {
    while (!this.#closed && this.#followed.size > 0) {
      const streams = [...this.#followed].map(([key, { lastId }]) => ({ key, id: lastId }));
      let replies: StreamReplies;
      try {
        replies = await this.#reader.xRead(streams, {
          BLOCK: FOLLOW_BLOCK_MS,
          COUNT: 100,
        }) as StreamReplies;
      } catch (error) {
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
          followed.lastId = entry.id;
          const frame = entry.message.frame ?? "";
          for (const { session } of followed.followers) session.send(frame);
          if (frame.includes(TERMINAL)) this.#followed.delete(reply.name);
        }
      }
    }
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
