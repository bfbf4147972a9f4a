/**
 * Executes per minute per token: a token bucket per principal, full at start, refilled
 * continuously, so a burst up to the minute's allowance passes and a steady flood is held to it.
 *
 * @module
 */

export class ExecuteRate {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  /**
   * Takes one execute for `key` at `now` (ms). Returns 0 when it may go, else the milliseconds
   * until one more would be allowed. `perMinute` 0 means no limit.
   */
  take(key: string, perMinute: number, now: number): number {
    if (perMinute <= 0) return 0;
    const perMs = perMinute / 60_000;
    const bucket = this.#buckets.get(key) ?? { tokens: perMinute, at: now };
    bucket.tokens = Math.min(perMinute, bucket.tokens + Math.max(0, now - bucket.at) * perMs);
    bucket.at = now;
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) / perMs);
  }
}
