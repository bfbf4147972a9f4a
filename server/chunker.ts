/**
 * Output coalescing: turns the reads of one pipe into chunks that are big
 * enough to be cheap (a chatty command does not become a frame per byte) and
 * never split a UTF-8 character. Chunks are cut by size, not by line, so a
 * 50 MB line arrives as a run of chunks instead of being held or dropped.
 *
 * @module
 */

/** What setTimeout returns (a number in Deno, an object under Node typings). */
export type Timer = ReturnType<typeof setTimeout>;

/** A piece of one stream, ready to send. */
export interface ByteChunk {
  /** Byte offset of `bytes` within its stream. */
  offset: number;
  bytes: Uint8Array;
}

export interface CoalescerOptions {
  /** Emit as soon as this many bytes are pending. */
  maxBytes: number;
  /** Emit pending bytes at most this long after the first of them arrived; 0 emits every push. */
  delayMs: number;
  /** @default globalThis.setTimeout */
  setTimer?: (fn: () => void, ms: number) => Timer;
  /** @default globalThis.clearTimeout */
  clearTimer?: (id: Timer) => void;
}

/**
 * Collects the reads of one stream and emits them as coalesced chunks.
 *
 * @example
 * ```ts
 * const c = new Coalescer((chunk) => send(chunk), { maxBytes: 65536, delayMs: 4 });
 * for await (const bytes of child.stdout) c.push(bytes);
 * c.end();
 * ```
 */
export class Coalescer {
  #parts: Uint8Array[] = [];
  #pending = 0;
  #offset = 0;
  #timer: Timer | undefined;
  #ended = false;
  readonly #emit: (chunk: ByteChunk) => void;
  readonly #maxBytes: number;
  readonly #delayMs: number;
  readonly #setTimer: (fn: () => void, ms: number) => Timer;
  readonly #clearTimer: (id: Timer) => void;

  constructor(emit: (chunk: ByteChunk) => void, options: CoalescerOptions) {
    this.#emit = emit;
    this.#maxBytes = options.maxBytes;
    this.#delayMs = options.delayMs;
    this.#setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.#clearTimer = options.clearTimer ?? ((id) => clearTimeout(id));
  }

  /** Bytes received but not yet emitted. */
  get pendingBytes(): number {
    return this.#pending;
  }

  /** Bytes emitted so far: the offset of the next chunk. */
  get emittedBytes(): number {
    return this.#offset;
  }

  push(bytes: Uint8Array): void {
    if (this.#ended) throw new Error("Coalescer: push after end");
    if (bytes.length === 0) return;
    this.#parts.push(bytes);
    this.#pending += bytes.length;
    while (this.#pending >= this.#maxBytes) {
      if (!this.#emitUpTo(this.#maxBytes)) break;
    }
    if (this.#pending === 0) return this.#cancelTimer();
    if (this.#delayMs === 0) return this.flush();
    this.#timer ??= this.#setTimer(() => {
      this.#timer = undefined;
      this.flush();
    }, this.#delayMs);
  }

  /** Emits everything pending except a trailing incomplete UTF-8 character. */
  flush(): void {
    this.#cancelTimer();
    if (this.#pending > 0) this.#emitUpTo(this.#pending);
  }

  /** Emits everything, incomplete characters included: the stream is over. */
  end(): void {
    if (this.#ended) return;
    this.#cancelTimer();
    this.#ended = true;
    if (this.#pending > 0) this.#emitBytes(this.#take(this.#pending));
  }

  /** Emits up to `limit` bytes cut at a character boundary; false when nothing could be cut. */
  #emitUpTo(limit: number): boolean {
    const head = this.#peek(Math.min(limit + 3, this.#pending));
    // Only a flush of fewer than 4 bytes that are all one incomplete character cuts nothing.
    const cut = utf8SafeLength(head, Math.min(limit, head.length));
    if (cut === 0) return false;
    this.#emitBytes(this.#take(cut));
    return true;
  }

  #emitBytes(bytes: Uint8Array): void {
    const offset = this.#offset;
    this.#offset += bytes.length;
    this.#emit({ offset, bytes });
  }

  /** The first `n` pending bytes, without consuming them. */
  #peek(n: number): Uint8Array {
    const first = this.#parts[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = new Uint8Array(n);
    let filled = 0;
    for (const part of this.#parts) {
      const take = Math.min(part.length, n - filled);
      out.set(part.subarray(0, take), filled);
      filled += take;
      if (filled === n) break;
    }
    return out;
  }

  /** Removes and returns the first `n` pending bytes. */
  #take(n: number): Uint8Array {
    const out = this.#peek(n);
    let left = n;
    while (left > 0) {
      const part = this.#parts[0]!;
      if (part.length <= left) {
        this.#parts.shift();
        left -= part.length;
      } else {
        this.#parts[0] = part.subarray(left);
        left = 0;
      }
    }
    this.#pending -= n;
    // `out` may share memory with a pending part; nothing ever writes to either, so that is safe.
    return out;
  }

  #cancelTimer(): void {
    if (this.#timer !== undefined) {
      this.#clearTimer(this.#timer);
      this.#timer = undefined;
    }
  }
}

/**
 * The length of the longest prefix of `bytes[0..length)` that does not end
 * inside a UTF-8 character. Invalid sequences are not held back (the decoder
 * replaces them), only a well-formed but incomplete trailing character is.
 */
export function utf8SafeLength(bytes: Uint8Array, length = bytes.length): number {
  let i = length - 1;
  let continuation = 0;
  while (i >= 0 && continuation < 4 && (bytes[i]! & 0xc0) === 0x80) {
    i--;
    continuation++;
  }
  if (i < 0 || continuation === 4) return length;
  const lead = bytes[i]!;
  const size = lead >= 0xf8 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (size === 1) return length;
  return i + size > length ? i : length;
}
