/**
 * A job's replay buffer: the serialized notifications it sent, newest kept,
 * oldest dropped past a size budget. It is what lets `jobs.subscribe` replay
 * after a reconnect without memory growing with the output.
 *
 * @module
 */

interface Entry {
  seq: number;
  frame: string;
}

export interface ReplaySlice {
  frames: string[];
  /** Sequence number of the first frame returned; null when none is. */
  firstSeq: number | null;
  /** Frames asked for (seq >= fromSeq) that were already dropped. */
  missed: number;
}

export class ReplayBuffer {
  #entries: Entry[] = [];
  #head = 0;
  #size = 0;
  readonly #maxSize: number;

  /** @param maxSize budget in UTF-16 code units of serialized frames (bytes, for ASCII output). */
  constructor(maxSize: number) {
    this.#maxSize = maxSize;
  }

  get size(): number {
    return this.#size;
  }

  /** Adds a frame; drops the oldest ones past the budget, but always keeps the newest. */
  add(seq: number, frame: string): void {
    this.#entries.push({ seq, frame });
    this.#size += frame.length;
    while (this.#size > this.#maxSize && this.#entries.length - this.#head > 1) {
      this.#size -= this.#entries[this.#head]!.frame.length;
      this.#head++;
    }
    // Compact now and then so dropped entries do not pile up at the front.
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Frames with seq >= fromSeq that are still held, oldest first. */
  from(fromSeq: number): ReplaySlice {
    const frames: string[] = [];
    let firstSeq: number | null = null;
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i]!;
      if (entry.seq < fromSeq) continue;
      firstSeq ??= entry.seq;
      frames.push(entry.frame);
    }
    const oldestHeld = this.#entries[this.#head]?.seq;
    const wanted = Math.max(fromSeq, 1);
    const missed = oldestHeld === undefined ? 0 : Math.max(0, oldestHeld - wanted);
    return { frames, firstSeq, missed };
  }
}
