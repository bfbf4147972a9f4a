/**
 * The node registry: every server that shares a Redis registers itself as a
 * node (its id, labels, capacity, load and address) and keeps a lease alive
 * with a heartbeat. A node whose lease lapses is down: nobody has to notice
 * and write it down, because the lease is a Redis key with a TTL, so "down"
 * is simply the key being gone.
 *
 * Keys (under the store's prefix):
 *
 *     cluster:nodes             sorted set of node ids by last heartbeat (epoch ms): every node
 *                               that ever registered, until it leaves cleanly
 *     cluster:node:<id>         hash: what the node said about itself at its last heartbeat
 *     cluster:lease:<id>        string: the instance holding the id, with a TTL of the down time
 *
 * One id is held by one server process at a time (the lease's value is that
 * process's instance id): a second server started with the same id is
 * refused while the first one's lease is alive, so two servers never act as
 * one node. A server that comes back after its lease lapsed (a Redis outage,
 * a long pause) takes it again if nobody else has.
 *
 * @module
 */
import { type ClusterClient, clusterClient, connectAll, withDeadline } from "./redis_client.ts";
import type { Logger } from "../log.ts";
import { processAlive } from "../process.ts";
import type { ClusterNode } from "../protocol.ts";

/** What a node says about itself. */
export interface NodeIdentity {
  id: string;
  labels: string[];
  /** Jobs it runs at once. */
  capacity: number;
  version: string;
  hostname: string;
  pid: number;
  /**
   * Which kernel boot and pid namespace `pid` is a process id of (see `machineIdentity`): a pid
   * says whether a process lives only to someone in the same namespace. Null: unknown, so no
   * other server's lease is ever taken early. @default machineIdentity()
   */
  machine?: string | null;
}

/**
 * This kernel boot and pid namespace, such as `cb04af6a-.../pid:[4026531836]`; null without /proc
 * (or without the permission to read it). Two servers with the same host name can be on two
 * machines (cloud images called `localhost`, containers given one `--hostname`) or in two pid
 * namespaces of one machine (containers with host networking): only a server in the holder's own
 * boot and namespace can tell from a pid that the holder is gone.
 */
export function machineIdentity(): string | null {
  try {
    const boot = Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
    return `${boot}/${Deno.readLinkSync("/proc/self/ns/pid")}`;
  } catch (error) {
    if (
      error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotCapable ||
      error instanceof Deno.errors.PermissionDenied
    ) return null;
    throw error;
  }
}

/** A node as the registry knows it. */
export type NodeState = ClusterNode;

export interface NodeRegistryOptions {
  redisUrl: string;
  /** @default "cc-executor:" */
  prefix?: string;
  node: NodeIdentity;
  /**
   * Where clients reach it (CC_EXECUTOR_NODE_URL, else its listen URL), read at each heartbeat:
   * the listen URL is known only once the server listens, after the node has registered.
   */
  nodeUrl: () => string | null;
  /** A node whose heartbeat is this late is down. */
  downAfterMs: number;
  /** Its jobs running now, reported with each heartbeat. */
  running: () => number;
  logger: Logger;
  /** @default Date.now */
  now?: () => number;
  /** Whether process `pid` of this machine lives. @default processAlive */
  isAlive?: (pid: number) => boolean;
}

/** Another live server holds the node id. */
export class NodeIdInUseError extends Error {
  constructor(id: string, holder: Record<string, string>, leaseMs: number) {
    super(
      `node id "${id}" is in use by a live server (pid ${holder.pid ?? "?"} on ` +
        `${holder.hostname ?? "?"}); set CC_EXECUTOR_NODE_ID to another id, or wait ` +
        `${Math.ceil(leaseMs / 1000)} s if that server is gone`,
    );
    this.name = "NodeIdInUseError";
  }
}

/**
 * A node that has been down this long is forgotten: its record expires, and the next read of the
 * list drops it. Without this, every id that ever crashed (pod names) would be listed for ever.
 */
export const FORGET_AFTER_MS = 7 * 24 * 3600 * 1000;

// KEYS: lease, node hash, nodes set. ARGV: instance, ttl ms, now ms, node id, then the hash's
// fields and values. Takes or renews the lease unless another instance holds it: 1 renewed, 2
// taken (it was free: the first beat, or ours had lapsed), 0 held by another.
const HEARTBEAT = `
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[2], ${FORGET_AFTER_MS})
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
if holder then return 1 end
return 2
`;

// KEYS: lease, node hash, nodes set. ARGV: instance, node id. Leaves only if the lease is ours.
const LEAVE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
`;

// KEYS: lease. ARGV: instance. Drops the lease only if that instance still holds it.
const RELEASE_IF_HELD_BY = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

export class NodeRegistry implements AsyncDisposable {
  readonly #options: NodeRegistryOptions;
  readonly #client: ClusterClient;
  readonly #prefix: string;
  readonly #instance = crypto.randomUUID();
  readonly #startedAt: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #beating: Promise<void> | null = null;
  /** Whether the last heartbeat held the lease; false once another instance took it. */
  #holding = true;
  /** Whether heartbeats are failing: logged once when they start to, and once when they recover. */
  #failing = false;
  /** Since when (epoch ms) every heartbeat has renewed the lease; null while they fail. */
  #steadySince: number | null = null;
  /** Whether this server has held the lease before (a free lease then means it lapsed). */
  #heldBefore = false;
  /**
   * Called when a heartbeat finds this node's own lease had lapsed (Redis lost it, or this server
   * could not reach Redis for the down time): other nodes may have taken its jobs for lost.
   */
  onLeaseLapsed: (() => void) | null = null;
  readonly #machine: string | null;

  private constructor(options: NodeRegistryOptions, client: ClusterClient) {
    this.#options = options;
    this.#client = client;
    this.#prefix = `${options.prefix ?? "cc-executor:"}cluster:`;
    this.#startedAt = this.#now();
    this.#machine = options.node.machine === undefined ? machineIdentity() : options.node.machine;
  }

  /**
   * Connects, takes the node's lease and starts the heartbeat.
   * @throws {NodeIdInUseError} when another live server holds the id.
   */
  static async open(options: NodeRegistryOptions): Promise<NodeRegistry> {
    const client = clusterClient(options.redisUrl);
    await connectAll(client);
    const registry = new NodeRegistry(options, client);
    try {
      // The last heartbeat again before refusing: the holder's lease may have lapsed meanwhile.
      if (
        !await registry.#heartbeat() && !await registry.#takeOverFromDeadProcess() &&
        !await registry.#heartbeat()
      ) {
        const holder = await client.hGetAll(registry.#key("node", options.node.id));
        const leaseMs = await client.pTTL(registry.#key("lease", options.node.id));
        throw new NodeIdInUseError(options.node.id, holder, Math.max(leaseMs, 0));
      }
    } catch (error) {
      client.destroy();
      throw error;
    }
    registry.#schedule();
    return registry;
  }

  get id(): string {
    return this.#options.node.id;
  }

  get downAfterMs(): number {
    return this.#options.downAfterMs;
  }

  /**
   * Whether this node has held its lease without a break for `ms`: only then can it trust that a
   * lease it finds missing lapsed, rather than vanished with a Redis restart that the node's
   * owner has not yet heard of (every live node retakes its lease within a heartbeat).
   */
  steadyFor(ms: number): boolean {
    return this.#steadySince !== null && this.#now() - this.#steadySince >= ms;
  }

  /** This server's instance id: what its lease holds while it runs. */
  get instance(): string {
    return this.#instance;
  }

  /** The instance holding node `nodeId`'s lease; null when it lapsed (the node is down). */
  async leaseHolder(nodeId: string): Promise<string | null> {
    return await withDeadline(this.#client.get(this.#key("lease", nodeId)));
  }

  /** Whether node `nodeId`'s lease lives (it is up). */
  async isUp(nodeId: string): Promise<boolean> {
    return await withDeadline(this.#client.exists(this.#key("lease", nodeId))) === 1;
  }

  /** Sends a heartbeat now (the listen URL became known); false when another instance took the id. */
  async refresh(): Promise<boolean> {
    return this.#holding = await this.#heartbeat();
  }

  /** Every node that registered and has not left: up while its lease lives, else down. */
  async nodes(): Promise<NodeState[]> {
    const ids = await withDeadline(this.#client.zRange(`${this.#prefix}nodes`, 0, -1));
    const states = await withDeadline(Promise.all(ids.map(async (id) => {
      const [fields, lease] = await Promise.all([
        this.#client.hGetAll(this.#key("node", id)),
        this.#client.exists(this.#key("lease", id)),
      ]);
      return fields.id === undefined ? id : nodeState(fields, lease === 1);
    })));
    // Ids whose record has expired (down for FORGET_AFTER_MS) leave the list.
    const forgotten = states.filter((s): s is string => typeof s === "string");
    if (forgotten.length > 0) {
      await withDeadline(this.#client.zRem(`${this.#prefix}nodes`, forgotten));
    }
    return states.filter((s): s is NodeState => typeof s !== "string").sort((a, b) =>
      a.id.localeCompare(b.id)
    );
  }

  /** Leaves the cluster (a clean stop is not "down") and closes the connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#beating;
    const id = this.#options.node.id;
    try {
      if (this.#client.isReady) {
        await withDeadline(this.#client.eval(LEAVE, {
          keys: [this.#key("lease", id), this.#key("node", id), `${this.#prefix}nodes`],
          arguments: [this.#instance, id],
        }));
      }
    } catch (error) {
      this.#options.logger.warn("could not leave the cluster cleanly", { error: String(error) });
    } finally {
      this.#client.destroy();
    }
  }

  #schedule(): void {
    // Three beats per lease: one lost beat (a slow Redis, a busy event loop) does not mark it down.
    this.#timer = setTimeout(() => {
      this.#beating = this.#heartbeat().then(
        (held) => {
          if (!held && this.#holding) {
            this.#options.logger.error(
              "another server took this node's id; two servers now claim it",
              {
                node_id: this.#options.node.id,
              },
            );
          }
          this.#holding = held;
          if (this.#failing) {
            this.#failing = false;
            this.#options.logger.info("cluster heartbeat works again", {
              node_id: this.#options.node.id,
              holding: held,
            });
          }
        },
        (error) => {
          // Once per outage, not at every beat: an hour without Redis is not a thousand lines.
          this.#steadySince = null;
          if (this.#failing) return;
          this.#failing = true;
          this.#options.logger.warn("cluster heartbeat failed; retrying", { error: String(error) });
        },
      ).finally(() => {
        this.#beating = null;
        if (this.#timer !== undefined) this.#schedule();
      });
    }, Math.max(50, Math.floor(this.#options.downAfterMs / 3)));
  }

  /**
   * A server restarted on the same machine after a crash finds its old lease still alive: when
   * the process holding it is gone from this boot and pid namespace (or has our own pid there), the
   * id is taken at once rather than after the lease lapses. Anything less certain (another machine
   * or namespace, even under the same host name; a live pid; no /proc) is left to the lease.
   */
  async #takeOverFromDeadProcess(): Promise<boolean> {
    const { node, logger, isAlive = processAlive } = this.#options;
    if (this.#machine === null) return false;
    const lease = this.#key("lease", node.id);
    const holder = await withDeadline(this.#client.hGetAll(this.#key("node", node.id)));
    const pid = Number(holder.pid);
    // Our own pid in our own namespace is a predecessor's (a container restarted): it is dead.
    if (
      holder.instance === undefined || holder.machine !== this.#machine || !(pid > 0) ||
      (pid !== node.pid && isAlive(pid))
    ) {
      return false;
    }
    // Only the instance whose record was read: the lease may have changed hands since.
    await withDeadline(
      this.#client.eval(RELEASE_IF_HELD_BY, { keys: [lease], arguments: [holder.instance] }),
    );
    if (!await this.#heartbeat()) return false;
    logger.warn("took over the node id from a server that died on this machine", {
      node_id: node.id,
      dead_pid: pid,
    });
    return true;
  }

  async #heartbeat(): Promise<boolean> {
    const { node, downAfterMs } = this.#options;
    const now = this.#now();
    const fields: Record<string, string> = {
      id: node.id,
      url: this.#options.nodeUrl() ?? "",
      labels: JSON.stringify(node.labels),
      capacity: String(node.capacity),
      version: node.version,
      hostname: node.hostname,
      pid: String(node.pid),
      instance: this.#instance,
      machine: this.#machine ?? "",
      running: String(this.#options.running()),
      started_at: String(this.#startedAt),
      heartbeat_at: String(now),
    };
    const held = await withDeadline(this.#client.eval(HEARTBEAT, {
      keys: [this.#key("lease", node.id), this.#key("node", node.id), `${this.#prefix}nodes`],
      arguments: [
        this.#instance,
        String(downAfterMs),
        String(now),
        node.id,
        ...Object.entries(fields).flat(),
      ],
    }));
    if (held === 0) {
      this.#steadySince = null;
      return false;
    }
    if (held === 2 && this.#heldBefore) {
      // Held a moment ago, free now: it lapsed (a Redis restart that lost it, or a stall).
      this.#options.logger.warn("this node's cluster lease had lapsed; took it again", {
        node_id: node.id,
      });
      this.onLeaseLapsed?.();
    }
    if (held === 2 || this.#steadySince === null) this.#steadySince = now;
    this.#heldBefore = true;
    return true;
  }

  #key(kind: "lease" | "node", id: string): string {
    return `${this.#prefix}${kind}:${id}`;
  }

  #now(): number {
    return (this.#options.now ?? Date.now)();
  }
}

function nodeState(fields: Record<string, string>, up: boolean): NodeState {
  return {
    id: fields.id!,
    url: fields.url || null,
    labels: JSON.parse(fields.labels ?? "[]"),
    capacity: Number(fields.capacity),
    version: fields.version ?? "",
    hostname: fields.hostname ?? "",
    pid: Number(fields.pid),
    status: up ? "up" : "down",
    running: Number(fields.running ?? 0),
    started_at: new Date(Number(fields.started_at)).toISOString(),
    last_heartbeat_at: new Date(Number(fields.heartbeat_at)).toISOString(),
  };
}
