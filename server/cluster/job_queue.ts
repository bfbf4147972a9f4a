/**
 * Routing: a job that names a node or labels waits in a Redis stream until a
 * node that may run it, with a free slot, takes it. Each queue is consumed
 * through one consumer group ("runners"), each node being a consumer named by
 * its id, so an entry goes to exactly one node, and an entry a node took but
 * never let go of stays in that node's pending-entry list, where another node
 * can reclaim it once the taker is gone (server/cluster/reaper.ts).
 *
 * Keys (under the store's prefix):
 *
 *     cluster:queue:node:<id>      stream: jobs pinned to node <id>
 *     cluster:queue:labels:<a,b>   stream: jobs asking for labels a and b (sorted, deduplicated)
 *     cluster:queues               set of queue names (`node:<id>`, `labels:<a,b>`) ever used,
 *                                  so nodes find the label queues they can serve
 *     cluster:job:<id>:meta        hash: the job's routing state, then (job_events.ts) its owner
 *
 * A routed job's `state`: `queued` -> `starting` (a node took it) -> `started` or `failed`
 * (refused there: a hook, the policy, a limit), or `queued` -> `canceled`; a `started` job with
 * retry_on_node_loss becomes `ended` when its run is over (it is never run again then), and a
 * job whose node died becomes `lost`. The transitions
 * are scripts, so a cancel and a take never both win, and two nodes never both take a job.
 *
 * @module
 */
import { z } from "zod";
import type { Logger } from "../log.ts";
import { type ClusterClient, clusterClient, connectAll, withDeadline } from "./redis_client.ts";
import { ErrorCode, type ExecuteResult, RpcError } from "../protocol.ts";

/** The consumer group every node reads the queues through. */
const GROUP = "runners";
/** Longest a read blocks before it looks for new label queues and free slots again. */
const READ_BLOCK_MS = 1000;
/** How long a job's routing record lives (a queued job waits at most this long). */
export const QUEUED_TTL_MS = 7 * 24 * 3600 * 1000;

/** What a queue entry holds: everything the taking node needs to start the job. */
export const RoutedJob = z.object({
  job_id: z.string(),
  /** The execute's params, less the routing fields; the taking node checks them again. */
  params: z.record(z.string(), z.unknown()),
  /** The token name it runs for; the taking node applies that token's policy and limits. */
  principal: z.string(),
  /** The session that sent the execute (recorded as the job's session). */
  owner: z.string(),
  /** The node that received the execute, and its channel for "your job has moved on" nudges. */
  front_node: z.string(),
  reply: z.string(),
  retry_on_node_loss: z.boolean(),
  enqueued_at: z.number(),
});
export type RoutedJob = z.infer<typeof RoutedJob>;

/** Where a routed job stands. */
export type RoutedState =
  | { state: "queued"; queue: string; principal: string; command: string; enqueuedAt: number }
  | { state: "starting"; node: string; principal: string; command: string }
  | { state: "started"; node: string; principal: string; result: ExecuteResult }
  | { state: "failed"; principal: string; error: { code: number; message: string; data?: unknown } }
  | { state: "canceled"; principal: string }
  | { state: "lost"; principal: string; node: string };

/** A queue's name for a route: `node:<id>`, or `labels:<a,b>` with the labels sorted. */
export function queueName(route: { node?: string; labels?: string[] }): string {
  if (route.node !== undefined) return `node:${route.node}`;
  return `labels:${[...new Set(route.labels ?? [])].sort().join(",")}`;
}

/** Whether a node with `nodeId` and `labels` may take jobs from queue `queue`. */
export function serves(queue: string, nodeId: string, labels: readonly string[]): boolean {
  if (queue.startsWith("node:")) return queue.slice(5) === nodeId;
  if (!queue.startsWith("labels:")) return false;
  const wanted = queue.slice(7).split(",");
  return wanted.every((label) => labels.includes(label));
}

// KEYS: meta, queue stream, queue set. ARGV: job JSON, principal, queue name, ttl, command,
// front node, its reply channel, enqueued at. Returns {1, entry id, length} or {0, state, principal, command} when the id is used.
const ENQUEUE = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  local old = redis.call('HMGET', KEYS[1], 'state', 'principal', 'command')
  return {0, old[1] or '', old[2] or '', old[3] or ''}
end
local id = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'queued', 'principal', ARGV[2], 'queue', ARGV[3],
  'entry', id, 'command', ARGV[5], 'front_node', ARGV[6], 'reply', ARGV[7], 'enqueued_at', ARGV[8])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
return {1, id, redis.call('XLEN', KEYS[2])}
`;

// KEYS: meta. ARGV: this node, the node it takes the job over from ('' for none). Returns 'ok'
// when this node now holds the job to start, 'again:<attempt>' when it holds a job the dead node
// had started with retry_on_node_loss (to run again), else the job's state ('' for no record).
// A job the dead node started without retry_on_node_loss is never taken: it is lost, not re-run.
const TAKE = `
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'starting', 'node_id', ARGV[1])
  return 'ok'
end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'node_id') == ARGV[2] then
  if st == 'starting' then
    redis.call('HSET', KEYS[1], 'state', 'starting', 'node_id', ARGV[1])
    return 'ok'
  end
  if st == 'started' and redis.call('HGET', KEYS[1], 'retry_on_node_loss') == '1' then
    local attempt = redis.call('HGET', KEYS[1], 'attempt') or '1'
    redis.call('HSET', KEYS[1], 'state', 'starting', 'node_id', ARGV[1])
    return 'again:' .. attempt
  end
end
return st or ''
`;

// KEYS: meta. ARGV: the node that is down. Returns 'lost' when the job is now marked lost,
// 'retry' when it is to be run again instead (a queue entry holds it), 'done' when it was marked
// already (or its run ended), 'other' when another node holds it now.
const MARK_LOST = `
if redis.call('HGET', KEYS[1], 'node_id') ~= ARGV[1] then return 'other' end
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'lost' or st == 'ended' then return 'done' end
if st == 'started' and redis.call('HGET', KEYS[1], 'retry_on_node_loss') == '1' then
  return 'retry'
end
redis.call('HSET', KEYS[1], 'state', 'lost')
return 'lost'
`;

// KEYS: meta. ARGV: this node. A job this node started has ended here (not if another node
// took it over meanwhile).
const ENDED = `
if redis.call('HGET', KEYS[1], 'node_id') == ARGV[1] and
  redis.call('HGET', KEYS[1], 'state') == 'started' then
  redis.call('HSET', KEYS[1], 'state', 'ended')
end
return 1
`;

// KEYS: meta, queue stream. ARGV: the nudge for the front node. Returns 1 when the job was
// queued and is now canceled.
const CANCEL_QUEUED = `
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
local entry = redis.call('HGET', KEYS[1], 'entry')
redis.call('HSET', KEYS[1], 'state', 'canceled')
if entry then redis.call('XDEL', KEYS[2], entry) end
local reply = redis.call('HGET', KEYS[1], 'reply')
if reply then redis.call('PUBLISH', reply, ARGV[1]) end
return 1
`;

export interface JobQueueOptions {
  redisUrl: string;
  /** @default "cc-executor:" */
  prefix?: string;
  nodeId: string;
  labels: readonly string[];
  logger: Logger;
}

/** One taken entry, for the node that took it. */
export interface TakenEntry {
  queue: string;
  entryId: string;
  job: RoutedJob;
  /** The node that took it first and is gone (reclaimed), or this node's own id (taken by its
   * previous server); absent for an entry read from the queue. */
  from?: string;
}

/** A queue's depth for `cluster.status`. */
export interface QueueDepth {
  queue: string;
  node: string | null;
  labels: string[] | null;
  waiting: number;
  taken: number;
}

type Client = ClusterClient;

export class JobQueue implements AsyncDisposable {
  readonly #options: JobQueueOptions;
  readonly #client: Client;
  /** Blocks in XREADGROUP: a connection of its own. */
  readonly #reader: Client;
  readonly #prefix: string;
  readonly #grouped = new Set<string>();
  #loop: Promise<void> | null = null;
  #closed = false;
  #failing = false;
  #wake: (() => void) | null = null;
  /**
   * Entries this node holds in its pending list and has not started: read past the free slots
   * (XREADGROUP's COUNT is per stream), taken over from a dead node, or whose take met a Redis
   * error. Started first, one at a time, as slots free; nothing else starts routed jobs, so two
   * takes never both count the same free slot.
   */
  readonly #backlog: TakenEntry[] = [];

  private constructor(options: JobQueueOptions, client: Client, reader: Client) {
    this.#options = options;
    this.#client = client;
    this.#reader = reader;
    this.#prefix = `${options.prefix ?? "cc-executor:"}cluster:`;
  }

  static async open(options: JobQueueOptions): Promise<JobQueue> {
    const client = clusterClient(options.redisUrl);
    const reader = clusterClient(options.redisUrl);
    await connectAll(client, reader);
    return new JobQueue(options, client, reader);
  }

  /**
   * Puts `job` in `queue`. Resolves to the queue's length with it, or to the state of the job
   * that already has this id (a retried execute, or a conflict for the caller to judge).
   * @throws {RpcError} STORE_UNAVAILABLE when Redis cannot be written.
   */
  async enqueue(
    job: RoutedJob,
    queue: string,
    command: string,
  ): Promise<{ waiting: number } | { existing: RoutedState | null }> {
    try {
      const reply = await withDeadline(this.#client.eval(ENQUEUE, {
        keys: [this.#meta(job.job_id), this.#queueKey(queue), `${this.#prefix}queues`],
        arguments: [
          JSON.stringify(job),
          job.principal,
          queue,
          String(QUEUED_TTL_MS),
          command,
          job.front_node,
          job.reply,
          String(job.enqueued_at),
        ],
      })) as [number, string, number | string];
      if (reply[0] === 1) return { waiting: Number(reply[2]) };
      return { existing: await this.state(job.job_id) };
    } catch (error) {
      throw unavailable(job.job_id, error);
    }
  }

  /**
   * Whether node `nodeId`'s run of job `jobId` is one that its queue entry will run again: a
   * retry_on_node_loss job it started and whose end it never recorded (it died under it).
   */
  async runsAgain(jobId: string, nodeId: string): Promise<boolean> {
    const [state, node, retry] = await withDeadline(
      this.#client.hmGet(this.#meta(jobId), ["state", "node_id", "retry_on_node_loss"]),
    );
    return state === "started" && node === nodeId && retry === "1";
  }

  /** Where routed job `jobId` stands; null when it was never routed (or its record is gone). */
  async state(jobId: string): Promise<RoutedState | null> {
    let meta: Record<string, string>;
    try {
      meta = await withDeadline(this.#client.hGetAll(this.#meta(jobId)));
    } catch (error) {
      throw unavailable(jobId, error);
    }
    const principal = meta.principal ?? "";
    switch (meta.state) {
      case "queued":
        return {
          state: "queued",
          queue: meta.queue ?? "",
          principal,
          command: meta.command ?? "",
          enqueuedAt: Number(meta.enqueued_at ?? 0),
        };
      case "starting":
        return {
          state: "starting",
          node: meta.node_id ?? "",
          principal,
          command: meta.command ?? "",
        };
      // A job whose run ended reads as started: what the front node answers with is the same.
      case "started":
      case "ended":
        return {
          state: "started",
          node: meta.node_id ?? "",
          principal,
          result: JSON.parse(meta.result ?? "null"),
        };
      case "failed":
        return { state: "failed", principal, error: JSON.parse(meta.error ?? "null") };
      case "canceled":
        return { state: "canceled", principal };
      case "lost":
        return { state: "lost", principal, node: meta.node_id ?? "" };
      default:
        // Never routed, or (for a moment) a routed job whose start is rewriting its record.
        return null;
    }
  }

  /** Cancels job `jobId` if it is still waiting in its queue; true if it was. */
  async cancelQueued(jobId: string, queue: string): Promise<boolean> {
    try {
      const canceled = await withDeadline(this.#client.eval(CANCEL_QUEUED, {
        keys: [this.#meta(jobId), this.#queueKey(queue)],
        arguments: [nudge(jobId)],
      }));
      return canceled === 1;
    } catch (error) {
      throw unavailable(jobId, error);
    }
  }

  /** Records that this node started routed job `jobId` (after its mirror rewrote the record). */
  async started(entry: TakenEntry, result: ExecuteResult, attempt = 1): Promise<void> {
    await withDeadline(
      this.#client.multi()
        .hSet(this.#meta(entry.job.job_id), {
          state: "started",
          result: JSON.stringify(result),
          queue: entry.queue,
          entry: entry.entryId,
          front_node: entry.job.front_node,
          retry_on_node_loss: entry.job.retry_on_node_loss ? "1" : "0",
          attempt: String(attempt),
          routed: JSON.stringify(entry.job),
        })
        .publish(entry.job.reply, nudge(entry.job.job_id))
        .exec(),
    );
  }

  /** Records that routed job `jobId` could not start here, with the error its execute gets. */
  async failed(entry: TakenEntry, error: RpcError): Promise<void> {
    await withDeadline(
      this.#client.multi()
        .hSet(this.#meta(entry.job.job_id), {
          state: "failed",
          error: JSON.stringify({ code: error.code, message: error.message, data: error.data }),
        })
        .publish(entry.job.reply, nudge(entry.job.job_id))
        .exec(),
    );
  }

  /** Records that this node's run of a routed job it started is over (see ENDED). */
  async ended(entry: TakenEntry): Promise<void> {
    await withDeadline(this.#client.eval(ENDED, {
      keys: [this.#meta(entry.job.job_id)],
      arguments: [this.#options.nodeId],
    }));
  }

  /** Lets go of a taken entry: it leaves the queue for good. */
  async release(entry: { queue: string; entryId: string }): Promise<void> {
    const key = this.#queueKey(entry.queue);
    await withDeadline(
      this.#client.multi().xAck(key, GROUP, entry.entryId).xDel(key, entry.entryId).exec(),
    );
  }

  /** Every queue with its waiting and taken jobs. */
  async depth(): Promise<QueueDepth[]> {
    const names = (await withDeadline(this.#client.sMembers(`${this.#prefix}queues`))).sort();
    const depths: QueueDepth[] = [];
    for (const queue of names) {
      const key = this.#queueKey(queue);
      const [length, groups] = await withDeadline(Promise.all([
        this.#client.xLen(key),
        this.#client.xInfoGroups(key).catch(() => []),
      ]));
      const group = (groups as { name: string; pending: number }[])
        .find((g) => String(g.name) === GROUP);
      const taken = Number(group?.pending ?? 0);
      depths.push({
        queue,
        node: queue.startsWith("node:") ? queue.slice(5) : null,
        labels: queue.startsWith("labels:") ? queue.slice(7).split(",") : null,
        waiting: Math.max(0, Number(length) - taken),
        taken,
      });
    }
    return depths;
  }

  /**
   * Takes jobs from the queues this node serves while `freeSlots()` is above zero, and hands
   * each to `take`. Runs until disposed; `wake()` says a slot has freed.
   */
  consume(freeSlots: () => number, take: (entry: TakenEntry) => Promise<void>): void {
    this.#loop ??= this.#consume(freeSlots, take);
  }

  /** A slot may have freed: look at the queues now rather than at the next timeout. */
  wake(): void {
    this.#wake?.();
  }

  /** How many entries this node holds and has not started yet (they will take free slots). */
  get held(): number {
    return this.#backlog.length;
  }

  /** Entries this node took over (reclaim): started by the consume loop as slots free. */
  adopt(entries: TakenEntry[]): void {
    this.#backlog.push(...entries);
    this.#wake?.();
  }

  /**
   * Up to `limit` of the entries of queue `queue` that consumer `nodeId` took and never let go
   * of, now this node's, each with the job it holds (entries deleted meanwhile are dropped).
   */
  async reclaim(queue: string, nodeId: string, limit: number): Promise<TakenEntry[]> {
    if (limit <= 0) return [];
    const key = this.#queueKey(queue);
    const pending = await withDeadline(
      this.#client.xPendingRange(key, GROUP, "-", "+", Math.min(limit, 1000), {
        consumer: nodeId,
      }),
    );
    if (pending.length === 0) return [];
    const claimed = await withDeadline(
      this.#client.xClaim(key, GROUP, this.#options.nodeId, 0, pending.map((p) => p.id)),
    );
    const entries: TakenEntry[] = [];
    for (const message of claimed) {
      if (message === null) continue;
      const job = parseJob(message.message.job);
      if (job === null) {
        await this.release({ queue, entryId: message.id });
        continue;
      }
      entries.push({ queue, entryId: message.id, job, from: nodeId });
    }
    return entries;
  }

  /** Whether this node may take jobs from queue `queue` (its node, or labels it has). */
  serves(queue: string): boolean {
    return serves(queue, this.#options.nodeId, this.#options.labels);
  }

  /**
   * The entries this node's consumer took before and never let go of: left by this node's
   * previous server, which died (jobs it had not started, or ran with retry_on_node_loss).
   */
  async leftByPredecessor(): Promise<TakenEntry[]> {
    const entries: TakenEntry[] = [];
    for (const queue of await this.queues()) {
      if (!this.serves(queue)) continue;
      const key = this.#queueKey(queue);
      const pending = await withDeadline(
        this.#client.xPendingRange(key, GROUP, "-", "+", 1000, {
          consumer: this.#options.nodeId,
        }).catch(() => []),
      );
      if (pending.length === 0) continue;
      const claimed = await withDeadline(
        this.#client.xClaim(key, GROUP, this.#options.nodeId, 0, pending.map((p) => p.id)),
      );
      for (const message of claimed) {
        if (message === null) continue;
        const job = parseJob(message.message.job);
        if (job === null) await this.release({ queue, entryId: message.id });
        else entries.push({ queue, entryId: message.id, job, from: this.#options.nodeId });
      }
    }
    return entries;
  }

  /** The consumers of queue `queue` that hold taken entries. */
  async holders(queue: string): Promise<string[]> {
    const pending = await withDeadline(
      this.#client.xPending(this.#queueKey(queue), GROUP).catch(() => null),
    );
    return (pending?.consumers ?? []).map((c) => String(c.name));
  }

  /** Every queue name ever used. */
  async queues(): Promise<string[]> {
    return await withDeadline(this.#client.sMembers(`${this.#prefix}queues`));
  }

  /** Marks job `jobId` of node `nodeId` (which is down) lost, exactly once; see MARK_LOST. */
  async markLost(jobId: string, nodeId: string): Promise<"lost" | "retry" | "done" | "other"> {
    return String(
      await withDeadline(this.#client.eval(MARK_LOST, {
        keys: [this.#meta(jobId)],
        arguments: [nodeId],
      })),
    ) as "lost" | "retry" | "done" | "other";
  }

  /** Takes job `jobId` for this node (over from `from`, a node that is gone); see TAKE. */
  async claim(jobId: string, from = ""): Promise<string> {
    return String(
      await withDeadline(this.#client.eval(TAKE, {
        keys: [this.#meta(jobId)],
        arguments: [this.#options.nodeId, from],
      })),
    );
  }

  /**
   * Takes no more entries; the connection that records and lets go of taken ones stays open
   * (until disposed) for the jobs still running.
   */
  async stopConsuming(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#wake?.();
      // Cuts a blocked read short.
      this.#reader.destroy();
    }
    await this.#loop;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stopConsuming();
    this.#client.destroy();
  }

  async #consume(freeSlots: () => number, take: (entry: TakenEntry) => Promise<void>) {
    const { nodeId, labels, logger } = this.#options;
    // What this node's previous server took and never let go of comes first (it died).
    try {
      this.#backlog.push(...await this.leftByPredecessor());
    } catch (error) {
      logger.warn("cannot look for routed jobs a previous server took", { error: String(error) });
    }
    while (!this.#closed) {
      if (freeSlots() <= 0) {
        await this.#nap(READ_BLOCK_MS);
        continue;
      }
      if (this.#backlog.length > 0) {
        // A take that failed (Redis) is tried again after a pause, not at once: no spinning.
        if (!await this.#drain(freeSlots, take)) await this.#nap(READ_BLOCK_MS);
        continue;
      }
      try {
        const names = [`node:${nodeId}`, ...(await this.queues())]
          .filter((queue, i, all) => all.indexOf(queue) === i && serves(queue, nodeId, labels));
        for (const queue of names) await this.#ensureGroup(queue);
        // XREADGROUP's COUNT is per stream: a node serving several queues reads them one at a
        // time first, so it never takes more than its free slots and leaves the rest to others.
        for (const queue of names) {
          const room = freeSlots() - this.#backlog.length;
          if (room <= 0) break;
          await this.#keep(
            await this.#reader.xReadGroup(
              GROUP,
              nodeId,
              { key: this.#queueKey(queue), id: ">" },
              { COUNT: room },
            ) as StreamReplies,
          );
        }
        if (this.#backlog.length === 0) {
          // Nothing waiting: block on all of them until something comes (one each, at most).
          await this.#keep(
            await this.#reader.xReadGroup(
              GROUP,
              nodeId,
              names.map((queue) => ({ key: this.#queueKey(queue), id: ">" })),
              { COUNT: 1, BLOCK: READ_BLOCK_MS },
            ) as StreamReplies,
          );
        }
        this.#recovered();
      } catch (error) {
        if (this.#closed) return;
        // A Redis that restarted empty has no consumer group (NOGROUP): make the groups again.
        this.#grouped.clear();
        this.#failed(error);
        await this.#nap(READ_BLOCK_MS);
      }
    }
  }

  /**
   * Starts entries of the backlog, oldest first, while slots are free. False when a take met a
   * Redis error: that entry is still this node's (in its pending list) and goes to the back, to
   * be tried again, rather than be forgotten with its execute unanswered.
   */
  async #drain(
    freeSlots: () => number,
    take: (entry: TakenEntry) => Promise<void>,
  ): Promise<boolean> {
    while (this.#backlog.length > 0 && freeSlots() > 0 && !this.#closed) {
      const entry = this.#backlog.shift()!;
      try {
        await take(entry);
      } catch (error) {
        this.#backlog.push(entry);
        this.#failed(error);
        return false;
      }
    }
    this.#recovered();
    return true;
  }

  #failed(error: unknown): void {
    if (!this.#failing) {
      this.#options.logger.warn("taking routed jobs failed; retrying", { error: String(error) });
    }
    this.#failing = true;
  }

  #recovered(): void {
    if (this.#failing) this.#options.logger.info("taking routed jobs works again");
    this.#failing = false;
  }

  /** Puts each entry read in the backlog (dropping what is not a job). */
  async #keep(replies: StreamReplies): Promise<void> {
    for (const reply of replies ?? []) {
      const queue = reply.name.slice(`${this.#prefix}queue:`.length);
      for (const message of reply.messages) {
        const job = parseJob(message.message.job);
        const entry = { queue, entryId: message.id };
        if (job === null) {
          this.#options.logger.warn("dropped a queue entry that is not a job", entry);
          await this.release(entry);
          continue;
        }
        this.#backlog.push({ ...entry, job });
      }
    }
  }

  async #ensureGroup(queue: string): Promise<void> {
    if (this.#grouped.has(queue)) return;
    try {
      await withDeadline(
        this.#client.xGroupCreate(this.#queueKey(queue), GROUP, "0", { MKSTREAM: true }),
      );
    } catch (error) {
      if (!String(error).includes("BUSYGROUP")) throw error;
    }
    this.#grouped.add(queue);
  }

  #nap(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    }).finally(() => (this.#wake = null)) as Promise<void>;
  }

  #queueKey(queue: string): string {
    return `${this.#prefix}queue:${queue}`;
  }

  #meta(jobId: string): string {
    return `${this.#prefix}job:${jobId}:meta`;
  }
}

/** The message a node publishes on a front node's channel when a job it routed moved on. */
export function nudge(jobId: string): string {
  return JSON.stringify({ id: `routed:${jobId}` });
}

function parseJob(text: string | undefined): RoutedJob | null {
  try {
    const parsed = RoutedJob.safeParse(JSON.parse(text ?? ""));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

function unavailable(jobId: string, error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  return new RpcError(
    ErrorCode.STORE_UNAVAILABLE,
    `Cannot route job "${jobId}": the cluster's Redis: ${(error as Error).message}`,
    { job_id: jobId },
  );
}

/** XREADGROUP's answer (RESP2): null when the block timed out. */
type StreamReplies =
  | { name: string; messages: { id: string; message: Record<string, string> }[] }[]
  | null;
