/**
 * Concurrency keys across the cluster (see server/key_locks.ts): one line per
 * key in Redis, so at most one job per key runs on all nodes together.
 *
 * Keys (under the store's prefix):
 *
 *     cluster:keys               set of the keys that have a line
 *     cluster:keyline:<key>      list of job ids in order; the head holds the key
 *     cluster:keywait:<job id>   hash: a job in a line that has not started: key, principal,
 *                                command, since, front_node (the node that waits for its turn),
 *                                instance (that node's server instance), reply (its channel)
 *     cluster:keyhold:<job id>   hash: a job that holds its key and runs: key, node_id
 *
 * A line never stays stuck behind a dead node: a head whose waiting server is gone (its node
 * down, or up again as another server instance, which knows nothing of the wait) is dropped
 * by the next node that looks; a head that runs on a node that died leaves when the cluster
 * marks it lost (server/cluster/reaper.ts); a head that is neither is dropped as stale.
 *
 * @module
 */
import type { KeyLocks, KeyWaiter } from "../key_locks.ts";
import { ErrorCode, RpcError } from "../protocol.ts";
import type { Logger } from "../log.ts";
import { type ClusterClient, clusterClient, connectAll, withDeadline } from "./redis_client.ts";
import type { NodeRegistry } from "./registry.ts";
import type { RemoteControl } from "./remote_control.ts";

/** How often a waiting job looks at its line when no nudge came. */
const LOOK_AGAIN_MS = 1000;
/** How often letting go of a key is tried (2 s apart) before it is logged as stuck. */
const LEAVE_ATTEMPTS = 30;

// KEYS: line, keywait, keys set, keyhold. ARGV: job id, key, then the keywait fields. Returns
// how many are ahead of the job, or -1 when a job with its id is in a line already (waiting, or
// holding a key): its id is taken.
const JOIN = `
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 or
    redis.call('LPOS', KEYS[1], ARGV[1]) then
  return -1
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[3], ARGV[2])
return redis.call('LLEN', KEYS[1]) - 1
`;

// KEYS: line, keywait, keyhold, keys set. ARGV: job id, key, prefix, '1' to leave only a job
// that has not started (one a node started holds its key until that node lets go). The job
// leaves its line; the new head, if it waits, is nudged. Returns -1 when a started job stayed.
const LEAVE = `
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then
  redis.call('SREM', KEYS[4], ARGV[2])
  return 0
end
local reply = redis.call('HGET', ARGV[3] .. 'cluster:keywait:' .. head, 'reply')
if reply then redis.call('PUBLISH', reply, cjson.encode({id = 'key:' .. head})) end
return 1
`;

// KEYS: keywait. ARGV: job id, prefix. Cancels a job that waits behind the head: 1 if it did.
const CANCEL = `
local key = redis.call('HGET', KEYS[1], 'key')
if not key then return 0 end
local line = ARGV[2] .. 'cluster:keyline:' .. key
if redis.call('LINDEX', line, 0) == ARGV[1] then return 0 end
redis.call('LREM', line, 0, ARGV[1])
local reply = redis.call('HGET', KEYS[1], 'reply')
redis.call('DEL', KEYS[1])
if reply then redis.call('PUBLISH', reply, cjson.encode({id = 'key:' .. ARGV[1]})) end
return 1
`;

// KEYS: line, keywait, keyhold. ARGV: job id, key, node id. The node that is about to start the
// job takes its key: only while the job is at the head of its line (its front node may have
// given up on it, or been dropped as gone, meanwhile). Returns 1 if it did.
const CLAIM = `
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[3], 'key', ARGV[2], 'node_id', ARGV[3])
return 1
`;

export interface RedisKeyLocksOptions {
  redisUrl: string;
  /** @default "cc-executor:" */
  prefix?: string;
  registry: NodeRegistry;
  remote: RemoteControl;
  logger: Logger;
}

export class RedisKeyLocks implements KeyLocks, AsyncDisposable {
  readonly #o: RedisKeyLocksOptions;
  readonly #client: ClusterClient;
  readonly #prefix: string;
  /** Lines being left in the background (tried again through an outage). */
  readonly #letting = new Set<Promise<void>>();
  readonly #closing = new AbortController();

  private constructor(options: RedisKeyLocksOptions, client: ClusterClient) {
    this.#o = options;
    this.#client = client;
    this.#prefix = options.prefix ?? "cc-executor:";
  }

  static async open(options: RedisKeyLocksOptions): Promise<RedisKeyLocks> {
    const client = clusterClient(options.redisUrl);
    await connectAll(client);
    return new RedisKeyLocks(options, client);
  }

  async join(waiter: KeyWaiter, reply?: string): Promise<number | null> {
    try {
      const ahead = await withDeadline(this.#client.eval(JOIN, {
        keys: [
          this.#line(waiter.key),
          this.#wait(waiter.jobId),
          `${this.#prefix}cluster:keys`,
          this.#hold(waiter.jobId),
        ],
        arguments: [
          waiter.jobId,
          waiter.key,
          ...Object.entries({
            key: waiter.key,
            principal: waiter.principal,
            command: waiter.command,
            since: String(waiter.since),
            front_node: this.#o.registry.id,
            instance: this.#o.registry.instance,
            reply: reply ?? this.#o.remote.replyChannel,
          }).flat(),
        ],
      }));
      return Number(ahead) < 0 ? null : Number(ahead);
    } catch (error) {
      throw unavailable("join the line of concurrency key " + waiter.key, error);
    }
  }

  async turn(key: string, jobId: string, giveUp: Promise<unknown>): Promise<boolean> {
    try {
      let gaveUp = false;
      giveUp.then(() => (gaveUp = true), () => {});
      for (;;) {
        const [head, at] = await withDeadline(Promise.all([
          this.#client.lIndex(this.#line(key), 0),
          this.#client.lPos(this.#line(key), jobId),
        ]));
        if (at === null) return false;
        if (head === jobId) return true;
        if (gaveUp) {
          await this.#leave(key, jobId, true);
          return false;
        }
        if (head !== null && await this.#stale(head)) {
          this.#o.logger.warn("dropped a job from a concurrency key's line: its node is gone", {
            key,
            job_id: head,
          });
          // Not if a node started it meanwhile (it claimed the key since this looked).
          await this.#leave(key, head, true);
          continue;
        }
        await Promise.race([this.#o.remote.notice(`key:${jobId}`, LOOK_AGAIN_MS), giveUp]);
      }
    } catch (error) {
      // The execute is answered with the error and will never start the job: its place must go,
      // or the line stops behind it for good (its server is alive, so it never looks stale).
      this.#letGo(key, jobId, true);
      throw unavailable("wait for concurrency key " + key, error);
    }
  }

  started(key: string, jobId: string, done: Promise<unknown>, nodeId?: string): void {
    const node = nodeId ?? this.#o.registry.id;
    const holding = withDeadline(
      this.#client.multi()
        .hSet(this.#hold(jobId), { key, node_id: node })
        .del(this.#wait(jobId))
        .exec(),
    ).catch((error) =>
      this.#o.logger.warn("could not record a concurrency key's holder", {
        key,
        job_id: jobId,
        error: String(error),
      })
    );
    done.finally(async () => {
      await holding;
      this.#letGo(key, jobId, false);
    });
  }

  async claim(key: string, jobId: string, nodeId: string): Promise<boolean> {
    try {
      const claimed = await withDeadline(this.#client.eval(CLAIM, {
        keys: [this.#line(key), this.#wait(jobId), this.#hold(jobId)],
        arguments: [jobId, key, nodeId],
      }));
      return claimed === 1;
    } catch (error) {
      throw unavailable("take concurrency key " + key, error);
    }
  }

  async abandon(key: string, jobId: string): Promise<void> {
    try {
      await this.#leave(key, jobId, true);
    } catch {
      this.#letGo(key, jobId, true);
    }
  }

  /**
   * Lets job `jobId` leave the line of `key` in the background: the next in line waits for this,
   * so it is tried again through a short Redis outage (not after this is disposed).
   */
  #letGo(key: string, jobId: string, waitingOnly: boolean): void {
    const letting = (async () => {
      for (let attempt = 1;; attempt++) {
        try {
          return await this.#leave(key, jobId, waitingOnly);
        } catch (error) {
          if (attempt === LEAVE_ATTEMPTS || this.#closing.signal.aborted) {
            this.#o.logger.error("could not let go of a concurrency key; the next in line waits", {
              key,
              job_id: jobId,
              error: String(error),
            });
            return;
          }
          await new Promise<void>((resolve) => {
            const timer = setTimeout(done, LOOK_AGAIN_MS * 2);
            const signal = this.#closing.signal;
            signal.addEventListener("abort", done, { once: true });
            function done() {
              clearTimeout(timer);
              signal.removeEventListener("abort", done);
              resolve();
            }
          });
        }
      }
    })();
    this.#letting.add(letting);
    letting.finally(() => this.#letting.delete(letting));
  }

  async leave(key: string, jobId: string): Promise<void> {
    await this.#leave(key, jobId, false);
  }

  async #leave(key: string, jobId: string, waitingOnly: boolean): Promise<void> {
    await withDeadline(this.#client.eval(LEAVE, {
      keys: [this.#line(key), this.#wait(jobId), this.#hold(jobId), `${this.#prefix}cluster:keys`],
      arguments: [jobId, key, this.#prefix, waitingOnly ? "1" : "0"],
    }));
  }

  async waiting(jobId: string): Promise<KeyWaiter | null> {
    try {
      const fields = await withDeadline(this.#client.hGetAll(this.#wait(jobId)));
      if (fields.key === undefined) return null;
      const head = await withDeadline(this.#client.lIndex(this.#line(fields.key), 0));
      if (head === jobId) return null;
      return {
        jobId,
        key: fields.key,
        principal: fields.principal ?? "",
        command: fields.command ?? "",
        since: Number(fields.since ?? 0),
      };
    } catch (error) {
      throw unavailable(`read job "${jobId}"'s place in a concurrency key's line`, error);
    }
  }

  async cancel(jobId: string): Promise<boolean> {
    try {
      const canceled = await withDeadline(this.#client.eval(CANCEL, {
        keys: [this.#wait(jobId)],
        arguments: [jobId, this.#prefix],
      }));
      return canceled === 1;
    } catch (error) {
      throw unavailable(`cancel job "${jobId}" waiting for its concurrency key`, error);
    }
  }

  async depth(): Promise<{ key: string; waiting: number; holder: string }[]> {
    try {
      const keys = (await withDeadline(this.#client.sMembers(`${this.#prefix}cluster:keys`)))
        .sort();
      const lines = await withDeadline(Promise.all(keys.map(async (key) => {
        const [length, holder] = await Promise.all([
          this.#client.lLen(this.#line(key)),
          this.#client.lIndex(this.#line(key), 0),
        ]);
        return { key, waiting: Math.max(0, length - 1), holder: holder ?? "" };
      })));
      return lines.filter((line) => line.holder !== "");
    } catch (error) {
      throw unavailable("read the concurrency keys' lines", error);
    }
  }

  /** The key job `jobId` of node `nodeId` held, if it held one (for the reaper). */
  async heldBy(jobId: string): Promise<string | null> {
    return await withDeadline(this.#client.hGet(this.#hold(jobId), "key")) ?? null;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // What is being let go of now gets its last try; no retry waits past this.
    this.#closing.abort();
    await Promise.all(this.#letting);
    this.#client.destroy();
  }

  /**
   * Whether the head of a line can never move on by itself: it waits in a server that is gone, or
   * it neither waits nor is known to run (its end was not written: a Redis outage at the time).
   * A head that runs on a node that died is left to the reaper, which marks it lost.
   */
  async #stale(head: string): Promise<boolean> {
    const [waitNode, waitInstance, holdNode] = await withDeadline(Promise.all([
      this.#client.hGet(this.#wait(head), "front_node"),
      this.#client.hGet(this.#wait(head), "instance"),
      this.#client.hGet(this.#hold(head), "node_id"),
    ]));
    // The execute waits in one server instance: a node restarted since (same id, up again) has
    // no such wait, and would never start it nor let it go.
    if (waitNode && waitInstance) {
      return await this.#o.registry.leaseHolder(waitNode) !== waitInstance;
    }
    if (waitNode) return !await this.#o.registry.isUp(waitNode);
    return !holdNode;
  }

  #line(key: string): string {
    return `${this.#prefix}cluster:keyline:${key}`;
  }

  #wait(jobId: string): string {
    return `${this.#prefix}cluster:keywait:${jobId}`;
  }

  #hold(jobId: string): string {
    return `${this.#prefix}cluster:keyhold:${jobId}`;
  }
}

/** A Redis failure on a request's path, as the clear error the request answers with. */
function unavailable(what: string, error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  return new RpcError(
    ErrorCode.STORE_UNAVAILABLE,
    `Cannot ${what}: the cluster's Redis: ${(error as Error)?.message ?? String(error)}`,
    {},
  );
}
