/**
 * Concurrency keys: an execute may carry `concurrency_key` (a repo path, say);
 * at most one job per key runs at a time, and the others wait their turn in
 * the order they came. Each key is a line: the job at its head runs (or is
 * starting), the ones behind wait. A job leaves its line when it ends, or when
 * it is canceled (or fails to start) before it ran.
 *
 * Two implementations: this one, in memory, for a server on its own; and the
 * cluster's (server/cluster/key_locks_redis.ts), one line per key in Redis for
 * every node, so the rule holds across the whole cluster.
 *
 * @module
 */

/** A job waiting in (or at the head of) a key's line, as jobs.get shows it. */
export interface KeyWaiter {
  jobId: string;
  key: string;
  principal: string;
  command: string;
  /** Epoch ms it joined the line. */
  since: number;
}

export interface KeyLocks {
  /**
   * Puts a job in its key's line; resolves to how many are ahead of it (0: its turn is now), or
   * null when a job with its id is in a line already (waiting, or holding its key): the id is
   * taken, and the job already there must not be touched by this one's cancel or end.
   * `reply` is where a node that cancels it tells this one (the cluster's).
   */
  join(waiter: KeyWaiter, reply?: string): Promise<number | null>;
  /**
   * Resolves true once the job is first in line, false once it is no longer in the line
   * (canceled). Ends early, false, when `give_up` settles (its connection closed).
   */
  turn(key: string, jobId: string, giveUp: Promise<unknown>): Promise<boolean>;
  /**
   * The job at the head of its line has started (on node `nodeId`); it holds the key until
   * `done` settles, then leaves the line.
   */
  started(key: string, jobId: string, done: Promise<unknown>, nodeId?: string): void;
  /**
   * Node `nodeId` is about to start the job (routed there): it takes the key, if the job is still
   * first in line. False when it is not (its front node gave up on it, or was dropped as gone):
   * it must not start then. The node lets go with `leave` (or `started`).
   */
  claim(key: string, jobId: string, nodeId: string): Promise<boolean>;
  /** The job ran and ended, or never will: the next in line goes. */
  leave(key: string, jobId: string): Promise<void>;
  /**
   * The execute that waited for the job's turn gives up on it (canceled, refused, an error): it
   * leaves the line, unless a node started it meanwhile (`claim`, `started`), which then holds
   * the key until the job ends. Never throws: a line it cannot reach now is left later.
   */
  abandon(key: string, jobId: string): Promise<void>;
  /** A job waiting for its turn (not one that holds the key), or null. */
  waiting(jobId: string): Promise<KeyWaiter | null>;
  /** Cancels a job waiting for its turn; false when it is not waiting (it runs, or never was). */
  cancel(jobId: string): Promise<boolean>;
  /** Every key with jobs waiting: their count behind the head. */
  depth(): Promise<{ key: string; waiting: number; holder: string }[]>;
}

/** The lines of one server, in memory. */
export class LocalKeyLocks implements KeyLocks {
  readonly #lines = new Map<string, KeyWaiter[]>();
  readonly #byJob = new Map<string, KeyWaiter>();
  /** Wakes the jobs of a line when it moves. */
  readonly #wakers = new Map<string, Set<() => void>>();
  /** Jobs that started (they hold their key until they end). */
  readonly #held = new Set<string>();

  join(waiter: KeyWaiter): Promise<number | null> {
    if (this.#byJob.has(waiter.jobId)) return Promise.resolve(null);
    const line = this.#lines.get(waiter.key) ?? [];
    line.push(waiter);
    this.#lines.set(waiter.key, line);
    this.#byJob.set(waiter.jobId, waiter);
    return Promise.resolve(line.length - 1);
  }

  async turn(key: string, jobId: string, giveUp: Promise<unknown>): Promise<boolean> {
    let gaveUp = false;
    giveUp.then(() => {
      gaveUp = true;
      this.#wake(key);
    }, () => {});
    for (;;) {
      const line = this.#lines.get(key) ?? [];
      const at = line.findIndex((w) => w.jobId === jobId);
      if (at === -1) return false;
      if (at === 0) return true;
      if (gaveUp) {
        await this.leave(key, jobId);
        return false;
      }
      await new Promise<void>((resolve) => {
        const wakers = this.#wakers.get(key) ?? new Set();
        wakers.add(resolve);
        this.#wakers.set(key, wakers);
      });
    }
  }

  started(key: string, jobId: string, done: Promise<unknown>): void {
    this.#held.add(jobId);
    done.finally(() => this.leave(key, jobId));
  }

  claim(key: string, jobId: string): Promise<boolean> {
    const first = this.#lines.get(key)?.[0]?.jobId === jobId;
    if (first) this.#held.add(jobId);
    return Promise.resolve(first);
  }

  abandon(key: string, jobId: string): Promise<void> {
    return this.#held.has(jobId) ? Promise.resolve() : this.leave(key, jobId);
  }

  leave(key: string, jobId: string): Promise<void> {
    const line = (this.#lines.get(key) ?? []).filter((w) => w.jobId !== jobId);
    if (line.length > 0) this.#lines.set(key, line);
    else this.#lines.delete(key);
    this.#byJob.delete(jobId);
    this.#held.delete(jobId);
    this.#wake(key);
    return Promise.resolve();
  }

  waiting(jobId: string): Promise<KeyWaiter | null> {
    const waiter = this.#byJob.get(jobId);
    if (!waiter) return Promise.resolve(null);
    const head = this.#lines.get(waiter.key)?.[0];
    return Promise.resolve(head?.jobId === jobId ? null : waiter);
  }

  async cancel(jobId: string): Promise<boolean> {
    const waiter = await this.waiting(jobId);
    if (!waiter) return false;
    await this.leave(waiter.key, jobId);
    return true;
  }

  depth(): Promise<{ key: string; waiting: number; holder: string }[]> {
    return Promise.resolve(
      [...this.#lines].map(([key, line]) => ({
        key,
        waiting: line.length - 1,
        holder: line[0]!.jobId,
      })),
    );
  }

  #wake(key: string): void {
    const wakers = this.#wakers.get(key);
    this.#wakers.delete(key);
    for (const wake of wakers ?? []) wake();
  }
}
