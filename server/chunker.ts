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
  /**
   * Valid only during the emit callback: it is a view of the coalescer's buffer, which is reused
   * for the next bytes. Decode or copy it before returning.
   */
  bytes: Uint8Array;
}

export interface CoalescerOptions {
  /** Emit as soon as this many bytes are pending; also the size of the one buffer it keeps. */
  maxBytes: number;
  /** Emit pending bytes at most this long after the first of them arrived; 0 emits every push. */
  delayMs: number;
  /** @default globalThis.setTimeout */
  setTimer?: (fn: () => void, ms: number) => Timer;
  /** @default globalThis.clearTimeout */
  clearTimer?: (id: Timer) => void;
}

const EMPTY = new Uint8Array(0);

/** The longest incomplete UTF-8 character: what a cut may carry over to the next chunk. */
const MAX_CARRY = 3;

/**
 * Collects the reads of one stream and emits them as coalesced chunks. It
 * copies what it is given into one buffer of `maxBytes`, which is reused for
 * the whole stream: a fast command's output costs one copy, not an
 * allocation per read.
 *
 * @example
 * ```ts
 * const c = new Coalescer((chunk) => send(decoder.decode(chunk.bytes)), { maxBytes: 65536, delayMs: 4 });
 * for await (const bytes of child.stdout) c.push(bytes);
 * c.end();
 * ```
 */
export class Coalescer {
  /** Allocated at the first push and released at the end: a silent stream costs nothing. */
  #buffer: Uint8Array = EMPTY;
  readonly #capacity: number;
  /** Bytes at the start of #buffer not yet emitted. */
  #pending = 0;
  #offset = 0;
  #timer: Timer | undefined;
  #ended = false;
  readonly #emit: (chunk: ByteChunk) => void;
  readonly #delayMs: number;
  readonly #setTimer: (fn: () => void, ms: number) => Timer;
  readonly #clearTimer: (id: Timer) => void;

  constructor(emit: (chunk: ByteChunk) => void, options: CoalescerOptions) {
    this.#emit = emit;
    // A full buffer must always hold more than one incomplete character, or nothing could be cut.
    this.#capacity = Math.max(options.maxBytes, MAX_CARRY + 1);
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
    if (bytes.length > 0 && this.#buffer.length === 0) {
      this.#buffer = new Uint8Array(this.#capacity);
    }
    while (bytes.length > 0) {
      const take = Math.min(bytes.length, this.#buffer.length - this.#pending);
      this.#buffer.set(take === bytes.length ? bytes : bytes.subarray(0, take), this.#pending);
      this.#pending += take;
      bytes = bytes.subarray(take);
      if (this.#pending === this.#buffer.length) this.#emitUpTo(this.#pending);
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
    if (this.#pending > 0) this.#emitBytes(this.#pending);
    this.#buffer = EMPTY;
  }

  /** Emits up to `limit` pending bytes, cut at a character boundary, and keeps the rest. */
  #emitUpTo(limit: number): void {
    const cut = utf8SafeLength(this.#buffer, limit);
    if (cut > 0) this.#emitBytes(cut);
  }

  /** Emits the first `n` pending bytes and moves what is left (at most a character) to the front. */
  #emitBytes(n: number): void {
    const offset = this.#offset;
    this.#offset += n;
    this.#emit({ offset, bytes: this.#buffer.subarray(0, n) });
    if (n < this.#pending) this.#buffer.copyWithin(0, n, this.#pending);
    this.#pending -= n;
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
