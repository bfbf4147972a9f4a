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

/** Dropped slots at the front are compacted away once there are this many (and they are half). */
const COMPACT_AFTER = 1024;

export class ReplayBuffer {
  /** Held entries are #entries[#head..]; slots before #head are cleared so their frames can be freed. */
  #entries: (Entry | undefined)[] = [];
  #head = 0;
  #size = 0;
  #maxSize: number;

  /** @param maxSize budget in UTF-16 code units of serialized frames (bytes, for ASCII output). */
  constructor(maxSize: number) {
    this.#maxSize = maxSize;
  }

  /** What the held frames add up to, in the unit of the budget. */
  get size(): number {
    return this.#size;
  }

  /** Frames held now. */
  get length(): number {
    return this.#entries.length - this.#head;
  }

  /** Adds a frame; drops the oldest ones past the budget, but always keeps the newest. */
  add(seq: number, frame: string): void {
    this.#entries.push({ seq, frame });
    this.#size += frame.length;
    this.#dropPastBudget();
  }

  /** Lowers the budget (a finished job needs less) and drops what no longer fits. */
  shrink(maxSize: number): void {
    if (maxSize >= this.#maxSize) return;
    this.#maxSize = maxSize;
    this.#dropPastBudget();
  }

  /** Frames with seq >= fromSeq that are still held, oldest first. */
  /** The sequence number of the oldest frame held; null when none is. O(1), unlike `from`. */
  get oldestSeq(): number | null {
    return this.#entries[this.#head]?.seq ?? null;
  }

  from(fromSeq: number): ReplaySlice {
    const oldest = this.#entries[this.#head];
    if (!oldest) return { frames: [], firstSeq: null, missed: 0 };
    const wanted = Math.max(fromSeq, 1);
    // Sequence numbers are consecutive, so the first wanted frame's index is arithmetic.
    const start = this.#head + Math.max(0, wanted - oldest.seq);
    const frames: string[] = [];
    for (let i = start; i < this.#entries.length; i++) frames.push(this.#entries[i]!.frame);
    return {
      frames,
      firstSeq: frames.length > 0 ? this.#entries[start]!.seq : null,
      missed: Math.max(0, oldest.seq - wanted),
    };
  }

  #dropPastBudget(): void {
    while (this.#size > this.#maxSize && this.#entries.length - this.#head > 1) {
      this.#size -= this.#entries[this.#head]!.frame.length;
      this.#entries[this.#head++] = undefined;
    }
    if (this.#head > COMPACT_AFTER && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }
}
