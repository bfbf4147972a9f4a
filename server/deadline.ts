/**
 * Bounded waits: wait for something, but not forever. Used wherever a peer or
 * a process we do not control could otherwise hold us up (a pipe an escaped
 * process keeps open, a close handshake that never comes, a shutdown stuck on
 * either).
 *
 * @module
 */

/**
 * Resolves true when `promise` settles within `ms`, false when the time runs
 * out first. A rejection of `promise` in time is passed on. The timer never
 * outlives the wait.
 *
 * @example
 * ```ts
 * if (!(await settlesWithin(socketClosed, 1000))) console.warn("peer did not close in time");
 * ```
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeUp = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), timeUp]);
  } finally {
    clearTimeout(timer);
  }
}
