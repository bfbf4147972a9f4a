/**
 * What the cluster does about a node that died: every live node looks, a
 * few times per down time, for nodes whose lease has lapsed, and
 *
 * - takes over the queue entries such a node had taken and not let go of (it
 *   died before starting them, or was running them with `retry_on_node_loss`),
 *   and starts them itself: the entries move from the dead node's
 *   pending-entry list to this node's (XCLAIM), so exactly one node gets each;
 * - marks the jobs it was running `lost` (never re-run behind anyone's back: a
 *   command may not be safe to repeat): their streams end with a
 *   `process.completed` whose status is `lost`, so followers end, and their
 *   records say so. The node's processes may well still run on its machine
 *   (its server died, not necessarily the machine); when the node starts
 *   again, its start-up sweep stops them (server/sweep.ts).
 *
 * A node acts only once its own lease has been held without a break for the
 * down time: a lease that vanished with a Redis restart is retaken within a
 * heartbeat by its live owner, and must not be taken for a dead node's.
 *
 * @module
 */
import type { JobManager } from "../jobs.ts";
import type { RedisKeyLocks } from "./key_locks_redis.ts";
import type { Logger } from "../log.ts";
import type { Store } from "../store/store.ts";
import type { JobEventStreams } from "./job_events.ts";
import type { JobQueue } from "./job_queue.ts";
import type { NodeRegistry } from "./registry.ts";

export interface ReaperOptions {
  registry: NodeRegistry;
  queue: JobQueue;
  events: JobEventStreams;
  store: Store;
  jobs: JobManager;
  /** The concurrency keys: a lost job lets go of the key it held. */
  locks: RedisKeyLocks;
  /** Jobs this node can start now (CC_EXECUTOR_NODE_CAPACITY less what it runs). */
  freeSlots: () => number;
  /** How long a node must have been seen down before this node acts (CC_EXECUTOR_NODE_LOST_AFTER). */
  lostAfterMs: number;
  logger: Logger;
  /** @default performance.now */
  now?: () => number;
}

export class Reaper implements AsyncDisposable {
  readonly #o: ReaperOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #sweeping: Promise<void> | null = null;
  #failing = false;
  /** When this node first saw each node that is gone (by its own clock: no skew). */
  readonly #goneSince = new Map<string, number>();

  constructor(options: ReaperOptions) {
    this.#o = options;
    options.registry.onLeaseLapsed = () => void this.#lapsed();
  }

  /** Looks three times per down time (as often as heartbeats go). */
  start(): void {
    const every = Math.max(50, Math.floor(this.#o.registry.downAfterMs / 3));
    this.#timer = setTimeout(() => {
      this.#sweeping = this.sweep().then(
        () => {
          if (this.#failing) this.#o.logger.info("looking for dead nodes works again");
          this.#failing = false;
        },
        (error) => {
          if (!this.#failing) {
            this.#o.logger.warn("looking for dead nodes failed; retrying", {
              error: String(error),
            });
          }
          this.#failing = true;
        },
      ).finally(() => {
        this.#sweeping = null;
        if (this.#timer !== undefined) this.start();
      });
    }, every);
  }

  /** One look: reclaims the queue entries and marks lost the jobs of nodes that are gone. */
  async sweep(): Promise<void> {
    const { registry, queue, logger } = this.#o;
    if (!registry.steadyFor(registry.downAfterMs)) return;
    const seen = new Set<string>();
    const goneLongEnough = async (nodeId: string) => {
      if (nodeId === registry.id || await registry.isUp(nodeId)) return false;
      seen.add(nodeId);
      const since = this.#goneSince.get(nodeId) ?? this.#now();
      this.#goneSince.set(nodeId, since);
      return this.#now() - since >= this.#o.lostAfterMs;
    };
    for (const name of await queue.queues()) {
      // Only where this node may run the jobs: a dead node's pinned jobs wait for it to return.
      if (!queue.serves(name)) continue;
      for (const holder of await queue.holders(name)) {
        if (!await goneLongEnough(holder)) continue;
        // No more than this node has room for: the rest stay for other nodes, or the next look.
        const entries = await queue.reclaim(name, holder, this.#o.freeSlots() - queue.held);
        for (const entry of entries) {
          logger.warn("took over a routed job from a node that is gone", {
            job_id: entry.job.job_id,
            from: holder,
            queue: name,
          });
        }
        // Started by the queue's consume loop, the one place routed jobs start (so two takes never
        // count one free slot, and a take that meets a Redis error is tried again).
        queue.adopt(entries);
      }
    }
    for (const node of await registry.nodes()) {
      if (node.status !== "down" || !await goneLongEnough(node.id)) continue;
      await this.#markLost(node.id);
    }
    // A node seen up again starts its count afresh the next time it goes.
    for (const nodeId of this.#goneSince.keys()) {
      if (!seen.has(nodeId)) this.#goneSince.delete(nodeId);
    }
  }

  #now(): number {
    return this.#o.now?.() ?? performance.now();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#sweeping;
  }

  /**
   * This node's own lease lapsed (it was cut off from Redis for the down time): other nodes may
   * have marked its jobs lost, or run them again elsewhere. Those are stopped here, so that no
   * job runs twice and none goes on after the cluster has told its clients that it ended.
   */
  async #lapsed(): Promise<void> {
    const { jobs, events, registry, logger } = this.#o;
    for (const job of jobs.list({ status: "running" }).concat(jobs.list({ status: "paused" }))) {
      try {
        const owner = await events.owner(job.id);
        const state = await this.#o.queue.state(job.id);
        // Nothing on record (a Redis that restarted empty) is no sign that others took it.
        const takenElsewhere = owner !== null && owner.nodeId !== registry.id;
        if (!takenElsewhere && state?.state !== "lost") continue;
        logger.warn("stopped a job the cluster took for lost while this node was cut off", {
          job_id: job.id,
        });
        job.terminate(
          "canceled",
          "the cluster took this job for lost while its node was cut off from Redis",
        );
      } catch (error) {
        logger.warn("could not check a job after this node's lease lapsed", {
          job_id: job.id,
          error: String(error),
        });
      }
    }
  }

  async #markLost(nodeId: string): Promise<void> {
    const { events, queue, store, logger } = this.#o;
    for (const jobId of await events.runningOn(nodeId)) {
      // Exactly one node marks it (and a job taken over meanwhile is not this node's to mark).
      const marked = await queue.markLost(jobId, nodeId);
      if (marked === "retry") continue;
      if (marked === "lost") {
        const reason = `its node "${nodeId}" stopped answering (down); it may or may not have ` +
          "finished, and may still be running there until that node starts again";
        const startedAt = (await store.get(jobId).catch(() => null))?.started_at ?? Date.now();
        // The record first: a follower that sees the stream end may read history at once.
        await store.markInterrupted(jobId, Date.now(), reason, "lost");
        await events.end(jobId, { status: "lost", reason, startedAt });
        // Its processes may live on: the node stops them when it starts again.
        await events.noteLost(nodeId, jobId);
        const key = await this.#o.locks.heldBy(jobId);
        if (key !== null) await this.#o.locks.leave(key, jobId);
        logger.warn("marked a job of a node that is down as lost", {
          job_id: jobId,
          node_id: nodeId,
        });
      }
      await events.forgetRunning(nodeId, jobId);
    }
  }
}
