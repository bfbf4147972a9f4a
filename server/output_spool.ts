/**
 * Where a job's delivered output is kept in full, so `jobs.output` and the MCP
 * server can page through it or pick what to show long after the live stream
 * has moved on. Most jobs print little and never touch the disk: both streams
 * stay in memory until together they pass `memoryBytes`, then each spills to
 * its own file. The job's hot path only ever calls the synchronous `append`.
 *
 * @module
 */

import { utf8SafeLength } from "./chunker.ts";

export type SpoolStream = "stdout" | "stderr";

export interface OutputSpoolOptions {
  /** Folder for spill files (created if missing); null keeps memory only. */
  dir: string | null;
  /** Bytes (both streams together) kept in memory before the streams spill to files. @default 65536 */
  memoryBytes?: number;
  /**
   * Bytes of each stream kept at most; past them output is counted but not kept, and `lost`
   * says so. Bounds the disk a runaway job can fill. @default Infinity
   */
  maxBytes?: number;
}

/** One line of a stream, as `scanLines` yields it. */
export interface SpoolLine {
  /** 1-based line number within its stream. */
  line: number;
  /** Byte offset of the line's first byte within its stream. */
  offset: number;
  /** Byte length of the whole line including its "\n" (the last line may have none). */
  bytes: number;
  /** Bytes of `bytes` that end the line: 0 (a last line without "\n"), 1 ("\n") or 2 ("\r\n"). */
  eol: 0 | 1 | 2;
  /** The line's text without "\n" (and without a trailing "\r"), cut to maxLineChars characters. */
  text: string;
  /** True when text was cut. */
  cut: boolean;
}

/** Output that could not be kept: from `offset` on, `stream`'s bytes are missing. */
export interface SpoolLoss {
  stream: SpoolStream;
  offset: number;
  reason: string;
}

export interface ScanLinesOptions {
  /** Byte offset to start at; line numbers still count from the stream's start. @default 0 */
  fromOffset?: number;
  /**
   * Byte offset to stop at (clamped to what is kept), so a caller that read `bytes()` and
   * `lines()` first scans exactly what it counted while the job goes on appending.
   * @default everything kept when the scan starts
   */
  toOffset?: number;
  /** Characters of a line's text kept; the rest is only counted. @default 4096 */
  maxLineChars?: number;
  /**
   * The line number of the line that starts at fromOffset, when the caller knows it (a wait that
   * resumes where it stopped): the newlines before fromOffset are then not counted, which on a
   * long stream is a read of everything before it. @default counted
   */
  firstLine?: number;
}

/** Block size for file reads: big enough to be cheap, small enough to never hold a whole file. */
const BLOCK_BYTES = 64 * 1024;
/**
 * Output reaches the file in batches of this size (a part-filled one only when a read or the end
 * needs it): a write per 32 KiB chunk cost more server CPU than the rest of the output path.
 */
const WRITE_BATCH_BYTES = 256 * 1024;
const MAX_SPARE_BATCHES = 2;
/**
 * `ready()` asks the job to wait once this many bytes (both streams together) wait for the
 * writer: a job writing faster than the disk would otherwise pile its output up in memory.
 */
const BACKLOG_HIGH_BYTES = 8 * 1024 * 1024;
/** ...and lets it go on once fewer than this wait: a few batches, so the writer never idles. */
const BACKLOG_LOW_BYTES = 2 * 1024 * 1024;
/** Job ids up to this many UTF-8 bytes are spelled out in hex in the file name; longer ones hashed. */
const MAX_HEX_ID_BYTES = 100;

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

interface StreamState {
  readonly name: SpoolStream;
  /** Bytes appended, kept or not. */
  total: number;
  /** Lines are counted when asked for, not on the hot path: "\n"s in [0, countedTo). */
  newlines: number;
  countedTo: number;
  /** The byte at countedTo - 1 (-1 before any). */
  lastCounted: number;
  /** Serialises countLines calls, which share the count above. */
  counting: Promise<unknown>;
  /** Bytes that can be read: held in `chunks` before the spill, written to the file after it. */
  kept: number;
  /**
   * Bytes kept or on their way to the file (in `pending`, in `open` or being written): where
   * `kept` will be once the writer catches up. A read waits for the bytes before it, no more.
   */
  queued: number;
  /** Before the spill: the stream's bytes, in order. */
  chunks: Uint8Array[];
  /** After the spill: full batches waiting for the writer, in order. */
  pending: Uint8Array[];
  /**
   * After the spill: the batch being filled; appends copy into it, so a byte is copied once on
   * its way to the file however small the chunks are. Null until the next append needs one.
   */
  open: Uint8Array | null;
  /** Bytes of `open` filled. */
  openLength: number;
  /** Bytes of `open` already handed to the writer (it may take a batch before it is full). */
  openStart: number;
  /**
   * A reader or the end wants the bytes before this offset written, the part-filled batch
   * included if they reach into it. An offset, not a flag: under steady output a flag would stay
   * set and have every later part-filled batch written small.
   */
  flushTo: number;
  /** The running writer; it drains `pending` until empty and never rejects. */
  writing: Promise<void> | null;
  file: Deno.FsFile | null;
  /** The file was created (by this spool): later opens append instead of truncating. */
  created: boolean;
  /** Set once bytes were lost: everything from here on is dropped (but still counted). */
  lostAt: number | null;
  /** Past maxBytes: later bytes are counted, not kept (what came before is still written). */
  capped: boolean;
}

function newStream(name: SpoolStream): StreamState {
  return {
    name,
    total: 0,
    newlines: 0,
    countedTo: 0,
    lastCounted: -1,
    counting: Promise.resolve(),
    kept: 0,
    queued: 0,
    chunks: [],
    pending: [],
    open: null,
    openLength: 0,
    openStart: 0,
    flushTo: 0,
    writing: null,
    file: null,
    created: false,
    lostAt: null,
    capped: false,
  };
}

/**
 * A job's output, both streams, kept in full: in memory while small, in two
 * files once large. A read waits until what was appended before it is written
 * (not for the writer to go idle, which a busy job may never let it do), so it
 * sees at least everything appended before it.
 *
 * @example
 * ```ts
 * await using spool = new OutputSpool(job.id, { dir: spoolDir });
 * spool.append("stdout", chunkText); // on every output chunk
 * for await (const line of spool.scanLines("stdout")) console.log(line.line, line.text);
 * ```
 */
export class OutputSpool implements AsyncDisposable {
  readonly #jobId: string;
  readonly #dir: string | null;
  readonly #memoryBytes: number;
  readonly #maxBytes: number;
  /** Written batch buffers kept for reuse (at most MAX_SPARE_BATCHES; dropped at seal). */
  #spare: Uint8Array[] = [];
  readonly #streams: Record<SpoolStream, StreamState> = {
    stdout: newStream("stdout"),
    stderr: newStream("stderr"),
  };
  /** Bytes held in memory by both streams together, before the spill. */
  #memory = 0;
  #spilled = false;
  #disposed = false;
  #lost: SpoolLoss | null = null;
  /** Resolved (and replaced) whenever a write ends, a stream loses bytes or the spool is disposed. */
  #progress: PromiseWithResolvers<void> | null = null;
  /** Creating the folder and naming the files happen once, on the first write. */
  #prepared: Promise<string> | null = null;

  constructor(jobId: string, options: OutputSpoolOptions) {
    this.#jobId = jobId;
    this.#dir = options.dir;
    this.#memoryBytes = Math.max(0, options.memoryBytes ?? 65536);
    this.#maxBytes = Math.max(0, options.maxBytes ?? Infinity);
  }

  /**
   * Past maxBytes: counts `length` more bytes without keeping them. True when the chunk was
   * handled here (all of it beyond the cap); a chunk that crosses the cap is cut by the caller.
   */
  #overCap(s: StreamState, length: number): boolean {
    if (!s.capped) return false;
    s.total += length;
    return true;
  }

  /** The part of `bytes` the cap still allows; marks the stream capped when it cuts. */
  #underCap(s: StreamState, bytes: Uint8Array): Uint8Array {
    if (s.total + bytes.length <= this.#maxBytes) return bytes;
    const keep = utf8SafeLength(bytes, Math.max(0, this.#maxBytes - s.total));
    s.capped = true;
    this.#lost ??= {
      stream: s.name,
      offset: s.total + keep,
      reason: `output past ${this.#maxBytes} bytes of ${s.name} is not kept ` +
        "(CC_EXECUTOR_SPOOL_MAX_BYTES)",
    };
    // The cut part is counted here; the kept part is counted by the caller that keeps it.
    s.total += bytes.length - keep;
    return bytes.subarray(0, keep);
  }

  /** Synchronous and cheap: called on the hot output path for every chunk. Encodes to UTF-8. */
  append(stream: SpoolStream, text: string): void {
    if (text === "") return;
    const s = this.#streams[stream];
    // A chunk that may cross the cap is cut in bytes, at a character boundary.
    if (s.capped || s.total + text.length * 3 > this.#maxBytes) {
      return this.appendBytes(stream, encoder.encode(text));
    }
    if (this.#spilled && s.lostAt === null && !this.#disposed) {
      // Straight into the batch, without an intermediate array.
      let rest = text;
      while (true) {
        const open = this.#openBatch(s);
        const { read, written } = encoder.encodeInto(rest, open.subarray(s.openLength));
        s.openLength += written;
        s.total += written;
        s.queued += written;
        if (read === rest.length) break;
        rest = rest.slice(read);
        this.#closeBatch(s);
      }
      if (s.pending.length > 0) this.#startWriter(s);
      return;
    }
    this.#keep(s, encoder.encode(text));
  }

  /**
   * The same as `append(stream, decode(bytes))` for UTF-8 `bytes`, without transcoding: what the
   * job read, when no output hook changed it. `bytes` is copied (the caller may reuse it).
   */
  appendBytes(stream: SpoolStream, bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const s = this.#streams[stream];
    if (this.#overCap(s, bytes.length)) return;
    bytes = this.#underCap(s, bytes);
    if (bytes.length === 0) return;
    if (this.#spilled && s.lostAt === null && !this.#disposed) {
      s.total += bytes.length;
      s.queued += bytes.length;
      let at = 0;
      while (at < bytes.length) {
        const open = this.#openBatch(s);
        const n = Math.min(bytes.length - at, open.length - s.openLength);
        open.set(bytes.subarray(at, at + n), s.openLength);
        s.openLength += n;
        at += n;
        if (s.openLength === open.length) this.#closeBatch(s);
      }
      if (s.pending.length > 0) this.#startWriter(s);
      return;
    }
    this.#keep(s, bytes.slice());
  }

  #openBatch(s: StreamState): Uint8Array {
    if (s.open === null || s.openLength === s.open.length) {
      if (s.open !== null) this.#closeBatch(s);
      s.open = this.#spare.pop() ?? new Uint8Array(WRITE_BATCH_BYTES);
      s.openLength = 0;
    }
    return s.open;
  }

  /** Hands what the batch being filled holds to the writer; the next append starts a new one. */
  #closeBatch(s: StreamState): void {
    if (s.open !== null && s.openLength > s.openStart) {
      s.pending.push(s.open.subarray(s.openStart, s.openLength));
    }
    s.open = null;
    s.openLength = 0;
    s.openStart = 0;
  }

  /** Holds `bytes` (owned from here on) in memory, or queues them for the stream's file. */
  #keep(s: StreamState, bytes: Uint8Array): void {
    const offset = s.total;
    s.total += bytes.length;
    if (s.lostAt !== null || this.#disposed) return;

    if (!this.#spilled) {
      if (this.#memory + bytes.length <= this.#memoryBytes) {
        s.chunks.push(bytes);
        s.kept += bytes.length;
        s.queued += bytes.length;
        this.#memory += bytes.length;
        return;
      }
      if (this.#dir === null) {
        // Keep what still fits, cut where a character ends, so the kept text decodes cleanly.
        const keep = utf8SafeLength(bytes, Math.max(0, this.#memoryBytes - this.#memory));
        if (keep > 0) {
          s.chunks.push(bytes.slice(0, keep));
          s.kept += keep;
          s.queued += keep;
          this.#memory += keep;
        }
        this.#lose(
          s,
          offset + keep,
          `Output past ${this.#memoryBytes} bytes is not kept: the spool has no folder to spill to`,
        );
        return;
      }
      this.#spill();
    }
    s.pending.push(bytes);
    s.queued += bytes.length;
    this.#startWriter(s);
  }

  /** Total bytes appended to `stream`, including any that could not be kept. */
  bytes(stream: SpoolStream): number {
    return this.#streams[stream].total;
  }

  /**
   * Lines in the first `upTo` kept bytes of `stream` (default all): its "\n"s, plus 1 for a final
   * partial line. Counted here rather than on append, where a newline every 64 bytes cost a fifth
   * of the output throughput; later calls count only what was added since.
   */
  countLines(stream: SpoolStream, upTo = Infinity): Promise<number> {
    const s = this.#streams[stream];
    // What was appended before the call, not before this call's turn in the queue.
    const target = Math.min(s.queued, upTo);
    const run = s.counting.then(async () => {
      this.#checkOpen("count the lines of");
      const end = this.#readable(s, target);
      if (end < s.countedTo) {
        // An older snapshot than the count so far (a caller that read bytes() long ago).
        let newlines = 0;
        let last = -1;
        for await (const block of this.#blocks(s, 0, end)) {
          newlines += countNewlinesIn(block);
          last = block[block.length - 1]!;
        }
        return newlines + (end > 0 && last !== 10 ? 1 : 0);
      }
      for await (const block of this.#blocks(s, s.countedTo, end)) {
        s.newlines += countNewlinesIn(block);
        s.countedTo += block.length;
        s.lastCounted = block[block.length - 1]!;
      }
      return s.newlines + (s.countedTo > 0 && s.lastCounted !== 10 ? 1 : 0);
    });
    s.counting = run.catch(() => {});
    return run;
  }

  /**
   * Non-null once part of the output could not be kept (a spill failed, or dir is null and memory
   * is full): the first such loss. Each stream stops keeping bytes at its own first loss.
   */
  get lost(): SpoolLoss | null {
    return this.#lost;
  }

  /**
   * Up to maxBytes bytes of one stream from offset (clamped to what was appended before the
   * call). Waits until those bytes are written, not for later ones.
   */
  async read(stream: SpoolStream, offset: number, maxBytes: number): Promise<Uint8Array> {
    checkCount("offset", offset);
    checkCount("maxBytes", maxBytes);
    const s = this.#streams[stream];
    this.#checkOpen("read");
    const end = this.#readable(s, Math.min(s.queued, offset + maxBytes));
    if (end <= offset) return EMPTY;
    const out = new Uint8Array(end - offset);
    let got = 0;
    for await (const block of this.#blocks(s, offset, end)) {
      out.set(block, got);
      got += block.length;
    }
    return got === out.length ? out : out.subarray(0, got);
  }

  /** Every line of a stream in order, read in blocks (never the whole file at once). */
  async *scanLines(stream: SpoolStream, options: ScanLinesOptions = {}): AsyncIterable<SpoolLine> {
    const from = options.fromOffset ?? 0;
    const limit = options.maxLineChars ?? 4096;
    checkCount("fromOffset", from);
    checkCount("maxLineChars", limit);
    if (options.toOffset !== undefined) checkCount("toOffset", options.toOffset);
    const firstLine = options.firstLine;
    if (firstLine !== undefined && (!Number.isSafeInteger(firstLine) || firstLine < 1)) {
      throw new RangeError(`Invalid firstLine: ${firstLine} (expected a positive integer)`);
    }
    const s = this.#streams[stream];
    this.#checkOpen("scan");
    // The end is fixed before any await: a spill meanwhile moves the bytes, it does not end them.
    const end = this.#readable(s, Math.min(s.queued, options.toOffset ?? Infinity));
    if (end <= from) return;
    const blocks = (start: number, stop: number) => this.#blocks(s, start, stop);
    let lineNo = firstLine ?? 1 + (from > 0 ? await countNewlines(blocks(0, from)) : 0);

    // A line inside one block (almost all of them) is decoded in one call; a line spanning blocks
    // goes through a streaming decoder, which carries a character split between blocks.
    const whole = new TextDecoder();
    const spanning = new TextDecoder();
    let inSpanning = false;
    let start = from;
    let lineBytes = 0;
    let lastByte = -1;
    let text = "";
    let cut = false;
    const finishText = () => {
      if (!inSpanning) return;
      const rest = spanning.decode(); // also resets the decoder for the next line
      inSpanning = false;
      if (cut) return;
      text += rest;
      if (text.length > limit) {
        text = cutChars(text, limit);
        cut = true;
      }
    };

    for await (const block of blocks(from, end)) {
      // An ASCII block (most output) is decoded in one call and its lines are slices of it: a
      // decoder call and a subarray per line cost more than the rest of a scan of short lines.
      const ascii = isAscii(block) ? whole.decode(block) : null;
      let pos = 0;
      while (true) {
        const nl = block.indexOf(10, pos);
        const segEnd = nl === -1 ? block.length : nl;
        if (segEnd > pos) {
          lastByte = block[segEnd - 1]!;
          const fresh = lineBytes === 0;
          lineBytes += segEnd - pos;
          if (!cut) {
            if (fresh && nl !== -1) {
              text = ascii !== null
                ? ascii.slice(pos, segEnd)
                : whole.decode(block.subarray(pos, segEnd));
            } else {
              const seg = block.subarray(pos, segEnd);
              // A 5 MB line must not become a 5 MB string: decode only what can still be kept.
              // Three bytes give at least one UTF-16 unit, so this many bytes always suffice.
              const room = (limit - text.length + 1) * 3 + 8;
              text += spanning.decode(seg.length > room ? seg.subarray(0, room) : seg, {
                stream: true,
              });
              inSpanning = true;
            }
            if (text.length > limit) {
              text = cutChars(text, limit);
              cut = true;
            }
          }
        }
        if (nl === -1) break;
        lineBytes += 1;
        finishText();
        let eol: 1 | 2 = 1;
        if (lastByte === 13) {
          eol = 2;
          if (!cut && text.endsWith("\r")) text = text.slice(0, -1);
        }
        yield { line: lineNo++, offset: start, bytes: lineBytes, eol, text, cut };
        start += lineBytes;
        lineBytes = 0;
        lastByte = -1;
        text = "";
        cut = false;
        pos = nl + 1;
      }
    }
    if (lineBytes > 0) {
      finishText();
      // A last line without "\n" loses a trailing "\r" too (a progress line's), but it is no line
      // end: its byte stays content.
      if (lastByte === 13 && !cut && text.endsWith("\r")) text = text.slice(0, -1);
      yield { line: lineNo, offset: start, bytes: lineBytes, eol: 0, text, cut };
    }
  }

  /**
   * Undefined while less than 8 MiB (both streams together) waits to be written; else a promise
   * that resolves once less than 2 MiB does (or the spool is disposed). The job waits on it
   * before reading more of the command's output, as it does for a slow client: output faster
   * than the disk then slows the command down instead of filling memory.
   */
  ready(): Promise<void> | undefined {
    if (this.#disposed || this.#backlog() < BACKLOG_HIGH_BYTES) return undefined;
    return this.#drained();
  }

  async #drained(): Promise<void> {
    // The writer runs while full batches wait (and a lost stream drops its own), so this ends.
    while (!this.#disposed && this.#backlog() >= BACKLOG_LOW_BYTES) await this.#progressed();
  }

  /** Bytes of both streams appended to be kept but not written yet. */
  #backlog(): number {
    const { stdout, stderr } = this.#streams;
    return stdout.queued - stdout.kept + stderr.queued - stderr.kept;
  }

  /** True once the spool was disposed: it keeps nothing more and every read throws. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** The job has ended: close file handles (later reads open the file again). Idempotent. */
  async seal(): Promise<void> {
    this.#spare = []; // a finished job keeps no buffers for output it will not write
    for (const s of Object.values(this.#streams)) {
      // A writer may start again while this waits (a late append): wait until none runs. There is
      // no await between that check and the close, so none can start in between.
      this.#flush(s, s.queued);
      while (s.writing !== null) await s.writing;
      s.file?.close();
      s.file = null;
    }
  }

  /** Deletes the spill files; idempotent; further reads throw a clear Error. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    // Dropped before waiting for the writer: what is queued would be written only to be deleted.
    for (const s of Object.values(this.#streams)) {
      s.chunks = [];
      s.pending = [];
      s.open = null;
      s.openLength = 0;
      s.openStart = 0;
      s.queued = s.kept;
    }
    this.#memory = 0;
    this.#notify(); // readers and ready() waiting for writes stop waiting
    await this.seal();
    for (const s of Object.values(this.#streams)) {
      if (!s.created) continue;
      try {
        await Deno.remove(await this.#filePath(s.name));
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }

  #checkOpen(what: string): void {
    if (this.#disposed) {
      throw new Error(
        `Cannot ${what} the output of job ${JSON.stringify(this.#jobId)}: spool is disposed`,
      );
    }
  }

  /**
   * Where a read of the stream up to `target` (at most what was queued when it was asked for)
   * ends: `target`, unless the stream lost bytes, which then are never readable.
   */
  #readable(s: StreamState, target: number): number {
    // Without a loss every byte before queued is (or will be) readable; after it, what was
    // written is all there is (a loss drops the queue and stops the writer).
    return s.lostAt === null ? target : Math.min(target, s.kept);
  }

  /**
   * Waits until the stream's bytes before `target` are in its file, asking for the part-filled
   * batch if they reach into it; or until the stream loses bytes or the spool is disposed. It
   * waits for those bytes only: under steady output the writer never goes idle.
   */
  async #written(s: StreamState, target: number): Promise<void> {
    this.#flush(s, target);
    while (s.kept < target && s.lostAt === null && !this.#disposed && s.writing !== null) {
      await this.#progressed();
    }
  }

  /** A promise that resolves at the next write, loss or dispose. */
  #progressed(): Promise<void> {
    this.#progress ??= Promise.withResolvers<void>();
    return this.#progress.promise;
  }

  #notify(): void {
    const progress = this.#progress;
    this.#progress = null;
    progress?.resolve();
  }

  #lose(s: StreamState, offset: number, reason: string): void {
    s.lostAt = offset;
    s.pending = [];
    s.open = null;
    s.openLength = 0;
    s.openStart = 0;
    s.queued = s.kept; // nothing waits for the writer any more
    this.#lost ??= { stream: s.name, offset, reason };
    this.#notify();
  }

  /** Moves both streams from memory to their files: what memory held is written first. */
  #spill(): void {
    this.#spilled = true;
    this.#memory = 0;
    for (const s of Object.values(this.#streams)) {
      s.pending = s.chunks;
      s.chunks = [];
      s.kept = 0;
      if (s.pending.length > 0) this.#startWriter(s);
    }
  }

  /**
   * Has the writer write the bytes before `target`: the full batches, and the part-filled one
   * too if they reach into it.
   */
  #flush(s: StreamState, target: number): void {
    if (target > s.flushTo) s.flushTo = target;
    if (s.pending.length > 0 || this.#wantsOpen(s)) this.#startWriter(s);
  }

  /** Whether the part-filled batch holds bytes a reader or the end asked for. */
  #wantsOpen(s: StreamState): boolean {
    const unhanded = s.openLength - s.openStart;
    // Its unhanded bytes are the last queued ones: they start at queued - unhanded.
    return unhanded > 0 && s.flushTo > s.queued - unhanded;
  }

  #startWriter(s: StreamState): void {
    s.writing ??= this.#write(s);
  }

  /** Writes `pending` in order until it is empty; a failure is recorded as lost, never thrown. */
  async #write(s: StreamState): Promise<void> {
    let path = "";
    try {
      path = await this.#filePath(s.name);
      while ((s.pending.length > 0 || this.#wantsOpen(s)) && s.lostAt === null) {
        s.file ??= await Deno.open(path, {
          write: true,
          create: true,
          // The first open starts a fresh file (a stale one may survive a crash); after a seal,
          // late output goes on where the file ended.
          truncate: !s.created,
          append: s.created,
          mode: 0o600, // output may hold secrets
        });
        s.created = true;
        // A dispose while the file opened dropped what was queued.
        if (s.pending.length === 0 && !this.#wantsOpen(s)) continue;
        const batch = takeBatch(s);
        let done = 0;
        while (done < batch.length) {
          const n = await s.file.write(batch.subarray(done));
          done += n;
          s.kept += n;
          this.#notify(); // a reader may wait for just these bytes
        }
        this.#recycle(s, batch);
      }
    } catch (e) {
      const where = path === "" ? JSON.stringify(this.#dir) : path;
      this.#lose(
        s,
        s.kept,
        `Cannot spill ${s.name} of job ${JSON.stringify(this.#jobId)} to ${where}: ${
          errorMessage(e)
        }`,
      );
    } finally {
      s.writing = null;
      this.#notify();
    }
  }

  /**
   * Keeps the buffer of a batch that has been written to its end for the next batch: a fresh
   * 256 KiB buffer per batch left dead ones waiting for the garbage collector, and a job writing
   * fast raised the server's RSS by tens of MB.
   */
  #recycle(s: StreamState, batch: Uint8Array): void {
    const buffer = batch.buffer;
    if (
      buffer.byteLength !== WRITE_BATCH_BYTES ||
      batch.byteOffset + batch.length !== WRITE_BATCH_BYTES ||
      s.open?.buffer === buffer ||
      this.#spare.length >= MAX_SPARE_BATCHES ||
      this.#disposed
    ) return;
    this.#spare.push(new Uint8Array(buffer as ArrayBuffer));
  }

  /** `<dir>/<name>.<stream>`, creating dir on first use. */
  async #filePath(stream: SpoolStream): Promise<string> {
    this.#prepared ??= (async () => {
      const dir = this.#dir!;
      await Deno.mkdir(dir, { recursive: true });
      return `${dir.replace(/\/+$/, "") || "/"}/${await fileBase(this.#jobId)}`;
    })();
    return `${await this.#prepared}.${stream}`;
  }

  /**
   * The kept bytes of [start, stop) as blocks of at most BLOCK_BYTES, in order; `stop` at most
   * what was queued when the caller began. After the spill, waits until they are written: the
   * caller may have taken `stop` from memory just before a spill moved those bytes to `pending`.
   */
  async *#blocks(s: StreamState, start: number, stop: number): AsyncIterable<Uint8Array> {
    if (stop <= start) return;
    if (!this.#spilled) {
      // A snapshot of the chunk list: a spill while the caller iterates must not pull it away.
      yield* memoryBlocks(s.chunks.slice(), start, stop);
      return;
    }
    await this.#written(s, stop);
    this.#checkOpen("read");
    // Bytes lost before they were written are not in the file; bytes kept are (so it exists).
    stop = Math.min(stop, s.kept);
    if (stop <= start) return;
    using file = await Deno.open(await this.#filePath(s.name), { read: true });
    await file.seek(start, Deno.SeekMode.Start);
    // One buffer for the whole scan: each block is decoded before the next read.
    const buffer = new Uint8Array(BLOCK_BYTES);
    let at = start;
    while (at < stop) {
      const n = await file.read(buffer.subarray(0, Math.min(BLOCK_BYTES, stop - at)));
      if (n === null) break;
      at += n;
      yield buffer.subarray(0, n);
    }
  }
}

/**
 * A file name for a job id, which is client-chosen and may hold "/" or "..": the hex of its UTF-8
 * (no case, no separators, so it is safe on every file system), or a SHA-256 when that would
 * be too long for a file name.
 */
async function fileBase(jobId: string): Promise<string> {
  const bytes = encoder.encode(jobId);
  if (bytes.length > 0 && bytes.length <= MAX_HEX_ID_BYTES) return hex(bytes);
  return `sha256-${hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))}`;
}

function hex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

function* memoryBlocks(chunks: Uint8Array[], start: number, stop: number): Iterable<Uint8Array> {
  let at = 0;
  for (const chunk of chunks) {
    const chunkEnd = at + chunk.length;
    if (chunkEnd > start) {
      let from = Math.max(start, at) - at;
      const to = Math.min(stop, chunkEnd) - at;
      while (from < to) {
        const next = Math.min(to, from + BLOCK_BYTES);
        yield chunk.subarray(from, next);
        from = next;
      }
    }
    at = chunkEnd;
    if (at >= stop) return;
  }
}

/** Removes up to WRITE_BATCH_BYTES of pending chunks (at least one) and joins them. */
function takeBatch(s: StreamState): Uint8Array {
  // The batch being filled goes once the full ones have: the file stays in order.
  // The rest of its buffer keeps filling behind it, so a trickle of small chunks does not cost a
  // new buffer each.
  if (s.pending.length === 0) {
    const batch = s.open!.subarray(s.openStart, s.openLength);
    s.openStart = s.openLength;
    return batch;
  }
  let count = 0;
  let size = 0;
  while (count < s.pending.length && (count === 0 || size < WRITE_BATCH_BYTES)) {
    size += s.pending[count]!.length;
    count++;
  }
  const taken = s.pending.splice(0, count);
  if (taken.length === 1) return taken[0]!;
  const batch = new Uint8Array(size);
  let at = 0;
  for (const chunk of taken) {
    batch.set(chunk, at);
    at += chunk.length;
  }
  return batch;
}

function isAscii(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i]! >= 0x80) return false;
  return true;
}

function countNewlinesIn(block: Uint8Array): number {
  let count = 0;
  for (let i = block.indexOf(10); i !== -1; i = block.indexOf(10, i + 1)) count++;
  return count;
}

async function countNewlines(blocks: AsyncIterable<Uint8Array>): Promise<number> {
  let count = 0;
  for await (const block of blocks) {
    let i = block.indexOf(10);
    while (i !== -1) {
      count++;
      i = block.indexOf(10, i + 1);
    }
  }
  return count;
}

/** The first `limit` UTF-16 units of text, without splitting a surrogate pair. */
export function cutChars(text: string, limit: number): string {
  if (text.length <= limit) return text;
  let end = limit;
  const last = text.charCodeAt(end - 1);
  if (end > 0 && last >= 0xd800 && last <= 0xdbff) end--;
  return text.slice(0, end);
}

function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Invalid ${name}: ${value} (expected a non-negative integer)`);
  }
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
