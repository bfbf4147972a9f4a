/**
 * A server's part in a cluster, in one place: it joins (the node registry),
 * opens its channels (job streams, remote control, routing queues), and once
 * the server has its job manager, routes, takes routed jobs within its
 * capacity and looks out for dead nodes. The server holds one of these, or
 * none when it is no node (no REDIS_URL, or CC_EXECUTOR_CLUSTER=off), and
 * loads this module only then: node-redis is not small.
 *
 * @module
 */
import { hostname } from "node:os";
import type { ServerConfig } from "../config.ts";
import type { Job, JobManager } from "../jobs.ts";
import type { Logger } from "../log.ts";
import type { Principal } from "../principal.ts";
import type { JobRecord, Store } from "../store/store.ts";
import { VERSION } from "../version.ts";
import { JobEventStreams } from "./job_events.ts";
import { JobQueue } from "./job_queue.ts";
import { Reaper } from "./reaper.ts";
import { NodeRegistry } from "./registry.ts";
import { RemoteControl, type RemoteHandler } from "./remote_control.ts";
import { Router } from "./routing.ts";
import { RedisKeyLocks } from "./key_locks_redis.ts";

/** Joining failed: the message says why, for the server's start error. */
export class ClusterJoinError extends Error {
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
    this.name = "ClusterJoinError";
  }
}

/** What the member needs from the server once it has a job manager. */
export interface MemberServices {
  jobs: JobManager;
  store: Store;
  /** The token named `name` as this server knows it; null when unknown. */
  principal: (name: string) => Principal | null;
  /** What this node does with requests other nodes send for its jobs. */
  remoteHandler: RemoteHandler;
}

export class ClusterMember {
  readonly registry: NodeRegistry;
  readonly events: JobEventStreams;
  readonly remote: RemoteControl;
  readonly queue: JobQueue;
  readonly locks: RedisKeyLocks;
  #router: Router | null = null;
  #reaper: Reaper | null = null;
  #stopping: Promise<void> | null = null;
  readonly #config: ServerConfig;
  readonly #logger: Logger;

  private constructor(
    config: ServerConfig,
    logger: Logger,
    parts: {
      registry: NodeRegistry;
      events: JobEventStreams;
      remote: RemoteControl;
      queue: JobQueue;
      locks: RedisKeyLocks;
    },
  ) {
    this.#config = config;
    this.#logger = logger;
    this.registry = parts.registry;
    this.events = parts.events;
    this.remote = parts.remote;
    this.queue = parts.queue;
    this.locks = parts.locks;
  }

  /**
   * Registers this server as a node and opens its channels; undefined when it is no node.
   * @throws {ClusterJoinError} the node id is taken, or Redis cannot be used.
   */
  static async join(
    config: ServerConfig,
    logger: Logger,
    { nodeUrl, running }: { nodeUrl: () => string | null; running: () => number },
  ): Promise<ClusterMember | undefined> {
    if (!config.cluster || !config.redisUrl) return undefined;
    let registry: NodeRegistry;
    try {
      registry = await NodeRegistry.open({
        redisUrl: config.redisUrl,
        prefix: config.redisPrefix,
        node: {
          id: config.nodeId,
          labels: config.cluster.labels,
          capacity: config.cluster.capacity,
          version: VERSION,
          hostname: hostname(),
          pid: Deno.pid,
        },
        nodeUrl,
        downAfterMs: config.cluster.downAfterMs,
        running,
        logger,
      });
    } catch (error) {
      // Two servers on one machine with no id of their own both default to the host name.
      const hint = error instanceof Error && error.name === "NodeIdInUseError" &&
          config.cluster.idIsHostName
        ? ". The id is this machine's host name, the default: with two servers on one machine, " +
          "give each its own CC_EXECUTOR_NODE_ID (or set CC_EXECUTOR_CLUSTER=off on one)"
        : "";
      throw new ClusterJoinError(
        `Cannot start: cannot join the cluster: ${(error as Error).message}${hint}`,
        error,
      );
    }
    logger.info("joined the cluster", {
      node_id: config.nodeId,
      labels: config.cluster.labels,
      capacity: config.cluster.capacity,
    });
    const options = {
      redisUrl: config.redisUrl,
      prefix: config.redisPrefix,
      nodeId: config.nodeId,
      logger,
    };
    let events: JobEventStreams | undefined;
    let remote: RemoteControl | undefined;
    let queue: JobQueue | undefined;
    try {
      events = await JobEventStreams.open(options);
      remote = await RemoteControl.open(options);
      queue = await JobQueue.open({ ...options, labels: config.cluster.labels });
      const locks = await RedisKeyLocks.open({ ...options, registry, remote });
      return new ClusterMember(config, logger, { registry, events, remote, queue, locks });
    } catch (error) {
      await queue?.[Symbol.asyncDispose]();
      await remote?.[Symbol.asyncDispose]();
      await events?.[Symbol.asyncDispose]();
      await registry[Symbol.asyncDispose]();
      throw new ClusterJoinError(
        `Cannot start: cannot open the cluster's channels: ${(error as Error).message}`,
        error,
      );
    }
  }

  /** Routes executes that name a node or labels; null until `serve`. */
  get router(): Router | null {
    return this.#router;
  }

  /** The records of this node's jobs that the cluster marked lost while it was down. */
  async lostWhileDown(store: Store): Promise<JobRecord[]> {
    try {
      const ids = await this.events.takeLost(this.registry.id);
      const records = await Promise.all(ids.map((id) => store.get(id)));
      return records.filter((record): record is JobRecord => record !== null);
    } catch (error) {
      this.#logger.warn("cannot look for jobs the cluster marked lost", { error: String(error) });
      return [];
    }
  }

  /**
   * Jobs the start-up sweep found left by this node's previous server end in their streams too
   * (as `lost`: their server died under them), so clients following them from other nodes stop
   * waiting.
   */
  async endSwept(swept: JobRecord[]): Promise<void> {
    for (const record of swept) {
      try {
        // A retry_on_node_loss job this node died under is still in its pending list: its
        // consumer runs it again as the next attempt, and the stream goes on (job.node_lost).
        if (await this.queue.runsAgain(record.job_id, this.registry.id)) continue;
        await this.events.end(record.job_id, {
          status: "lost",
          reason: "its server died; it was marked interrupted when the server started again",
          startedAt: record.started_at,
        });
        await this.events.forgetRunning(this.registry.id, record.job_id);
      } catch (error) {
        this.#logger.warn("cannot end the stream of a job left by a previous server", {
          job_id: record.job_id,
          error: String(error),
        });
      }
    }
  }

  /** Each job this node starts: its notifications go to its stream; its end frees a slot. */
  jobStarted(job: Job): void {
    this.events.mirror(job);
    job.done.then(() => this.queue.wake());
  }

  /**
   * Starts serving: requests for this node's jobs, routed executes, routed jobs taken from the
   * queues while fewer than CC_EXECUTOR_NODE_CAPACITY jobs run, and the look-out for dead nodes.
   */
  serve({ jobs, store, principal, remoteHandler }: MemberServices): void {
    this.remote.serve(remoteHandler);
    const router = new Router({
      queue: this.queue,
      registry: this.registry,
      events: this.events,
      remote: this.remote,
      jobs,
      store,
      principal,
      claudeBin: this.#config.claudeBin,
      locks: this.locks,
      logger: this.#logger,
    });
    const capacity = this.#config.cluster?.capacity ?? jobs.config.maxJobs;
    const freeSlots = () => capacity - jobs.busyCount;
    this.#router = router;
    this.#reaper = new Reaper({
      registry: this.registry,
      queue: this.queue,
      events: this.events,
      store,
      jobs,
      locks: this.locks,
      freeSlots,
      lostAfterMs: this.#config.cluster?.lostAfterMs ?? 0,
      logger: this.#logger,
    });
    this.queue.consume(freeSlots, (entry) => router.take(entry));
    this.#reaper.start();
  }

  /** Takes no more routed jobs (one taken is started, or left for another node to reclaim). */
  stopTaking(): Promise<void> {
    return this.#stopping ??= (async () => {
      await this.#reaper?.[Symbol.asyncDispose]();
      await this.queue.stopConsuming();
    })();
  }

  /** After the jobs ended: their last frames reach their streams, then the node leaves. */
  async leave(): Promise<void> {
    await this.stopTaking();
    // The jobs have ended: their queue entries are let go of before the queue's connection closes.
    await this.#router?.settled();
    await this.queue[Symbol.asyncDispose]();
    await this.locks[Symbol.asyncDispose]();
    await this.remote[Symbol.asyncDispose]();
    await this.events[Symbol.asyncDispose]();
    await this.registry[Symbol.asyncDispose]();
  }
}
