/**
 * What to show of a job's output within a byte budget: the whole of it when
 * it fits, else the start, the lines around errors and the end; or a mode the
 * caller picks (a byte range, the first or last lines, grep). An agent reads
 * this instead of megabytes of log, so nothing is cut silently: every view
 * says how many bytes and lines it left out. The budget covers what the caller
 * prints around each section too (SECTION_OVERHEAD_BYTES apiece), so a view of
 * many small sections still fits once printed.
 *
 * Every mode reads each stream in one forward pass over `scanLines` and keeps
 * only what it may show (bounded by the budget), so a 5 MB stream costs one
 * scan, not a 5 MB string.
 *
 * @module
 */

import { cutChars, type OutputSpool, type SpoolLine, type SpoolStream } from "./output_spool.ts";
import { utf8SafeLength } from "./chunker.ts";

export type ViewMode =
  /**
   * Everything if it fits, else head + lines around errors + tail (only the tail when the budget
   * has room for one section).
   */
  | { kind: "summary" }
  /** Raw text of ONE stream from a byte offset (streams must have length 1). */
  | { kind: "range"; offset: number }
  | { kind: "head"; lines: number }
  | { kind: "tail"; lines: number }
  | { kind: "grep"; pattern: RegExp; context: number; maxMatches: number };

export interface ViewRequest {
  /** In the order to show them (usually ["stdout", "stderr"]). */
  streams: SpoolStream[];
  mode: ViewMode;
  /**
   * Most bytes the view may return: the sum over its sections of the text's UTF-8 bytes plus
   * SECTION_OVERHEAD_BYTES.
   */
  budgetBytes: number;
  /** Longest line shown in line modes; longer ones are cut and marked. @default 2000 */
  maxLineChars?: number;
}

export interface ViewSection {
  stream: SpoolStream;
  /** Why it is shown: the whole stream, a byte range, the first/last lines, lines matching (grep) or around error lines (summary). */
  why: "all" | "range" | "head" | "tail" | "match" | "error";
  /** 1-based, inclusive. */
  first_line: number;
  /** Inclusive. */
  last_line: number;
  /** Byte offset of the first shown byte. */
  offset: number;
  /** Byte offset just past the last shown byte (a shown line's "\n" counts as shown). */
  end_offset: number;
  /** The lines joined with "\n" (range: the raw text). */
  text: string;
}

export interface OutputView {
  sections: ViewSection[];
  /** Bytes / lines of the selected streams that no section shows. */
  omitted_bytes: number;
  omitted_lines: number;
  /** True when the budget (or maxMatches) cut what the mode asked for. */
  truncated: boolean;
  /** Each selected stream's bytes and lines, counted once before the scan (what the view covers). */
  totals: Partial<Record<SpoolStream, { bytes: number; lines: number }>>;
  /** grep: how many lines matched in all (even those not shown). */
  matches?: number;
  /** range: where the next read continues, null at the end of the stream. */
  next_offset?: number | null;
}

/**
 * Lines that look like errors, for summary mode. Counts of zero ("0 errors", "no errors",
 * "failed: 0") are not errors.
 */
export const ERROR_LINE: RegExp =
  /(?<!\b(?:0|no|zero|without)\s+)\b(?:errors?|fail(?:s|ed|ures?)?|fatal|panic(?:ked)?|exception|traceback|denied|segmentation fault|assert(?:ion)?(?:error)?|abort(?:ed)?|not found|no such file)\b(?![:=]?\s*0\b)|\berr!|[✗✘]/i;

/**
 * Bytes of the budget each section costs besides its text: the header a caller prints for it
 * (the MCP text has one of about 80 characters). Charged so that many small sections (a log
 * with thousands of error lines) cannot push the printed view past its budget.
 */
export const SECTION_OVERHEAD_BYTES = 100;

/** Lines of context shown on each side of an error line in summary mode. */
const ERROR_CONTEXT = 2;
/** Summary shares of a stream that does not fit: head, lines around errors, tail (the rest). */
const HEAD_SHARE = 0.25;
const ERROR_SHARE = 0.30;
const DEFAULT_MAX_LINE_CHARS = 2000;
/** Characters of each line grep searches: more than it shows, bounded so one line stays cheap. */
const GREP_LINE_CHARS = 65536;

const decoder = new TextDecoder();

/**
 * Picks what to show of `spool` for `request` within `request.budgetBytes`.
 *
 * @example
 * ```ts
 * const view = await viewOutput(spool, {
 *   streams: ["stdout", "stderr"],
 *   mode: { kind: "summary" },
 *   budgetBytes: 20_000,
 * });
 * for (const s of view.sections) print(`${s.stream} ${s.why} ${s.first_line}-${s.last_line}\n${s.text}`);
 * ```
 */
export async function viewOutput(spool: OutputSpool, request: ViewRequest): Promise<OutputView> {
  const budget = request.budgetBytes;
  const maxLineChars = request.maxLineChars ?? DEFAULT_MAX_LINE_CHARS;
  checkCount("budgetBytes", budget);
  checkCount("maxLineChars", maxLineChars);
  if (maxLineChars === 0) throw new RangeError("Invalid maxLineChars: 0 (expected at least 1)");
  // Counted before the scans, which then stop at these offsets: a job still writing cannot make
  // the shown part outgrow the totals.
  const streams = await Promise.all([...new Set(request.streams)].map(async (stream) => {
    const bytes = spool.bytes(stream);
    return { stream, bytes, lines: await spool.countLines(stream, bytes) };
  }));
  const mode = request.mode;
  const ctx: Context = { spool, maxLineChars };
  let picked: Picked;
  switch (mode.kind) {
    case "summary":
      picked = await summary(ctx, streams, budget);
      break;
    case "head":
    case "tail":
      checkCount(`${mode.kind} lines`, mode.lines);
      picked = await headOrTail(ctx, streams, budget, mode.kind, mode.lines);
      break;
    case "grep":
      checkCount("context", mode.context);
      checkCount("maxMatches", mode.maxMatches);
      picked = await grep(ctx, streams, budget, mode.pattern, mode.context, mode.maxMatches);
      break;
    case "range": {
      const [only] = streams;
      if (only === undefined || streams.length !== 1) {
        throw new RangeError(`Range mode reads one stream, got ${streams.length}`);
      }
      checkCount("offset", mode.offset);
      picked = await range(spool, only, mode.offset, budget);
      break;
    }
  }
  const view: OutputView = {
    sections: picked.sections.map((s) => s.section),
    omitted_bytes: sum(streams.map((s) => s.bytes)) - sum(picked.sections.map((s) => s.shownBytes)),
    omitted_lines: sum(streams.map((s) => s.lines)) - sum(picked.sections.map((s) => s.shownLines)),
    truncated: picked.truncated,
    totals: Object.fromEntries(
      streams.map(({ stream, bytes, lines }) => [stream, { bytes, lines }]),
    ),
  };
  if (picked.matches !== undefined) view.matches = picked.matches;
  if (picked.nextOffset !== undefined) view.next_offset = picked.nextOffset;
  return view;
}

interface Context {
  spool: OutputSpool;
  maxLineChars: number;
}

/** A stream's totals, read once when the view starts. */
interface Snapshot {
  stream: SpoolStream;
  bytes: number;
  lines: number;
}

interface Picked {
  sections: Counted[];
  truncated: boolean;
  matches?: number;
  nextOffset?: number | null;
}

/** A section and the source bytes and lines it shows, for the omitted counts. */
interface Counted {
  section: ViewSection;
  shownBytes: number;
  shownLines: number;
}

/** One line as it would be shown. */
interface Shown {
  line: number;
  offset: number;
  /** Source bytes of the whole line, its end included. */
  bytes: number;
  /** Source bytes of the line without its end. */
  contentBytes: number;
  /** What is shown: the line, or its start and a marker that says how much is missing. */
  text: string;
  /** The line's start before any marker, to cut it shorter when the budget needs to. */
  source: string;
  /** UTF-8 bytes of `text` plus 1 for the "\n" that joins it to the next line. */
  cost: number;
  /** Source bytes shown (the line end counts as shown). */
  shownBytes: number;
  /** Offset just past the last shown source byte. */
  endOffset: number;
  /** Cut shorter than maxLineChars to fit the budget. */
  cutByBudget: boolean;
}

// ---------------------------------------------------------------------------------------------
// summary

async function summary(ctx: Context, streams: Snapshot[], budget: number): Promise<Picked> {
  // The size of a stream is what it asks for: one that fits within its fair share keeps it.
  const needs = streams.map((s) => s.bytes === 0 ? 0 : s.bytes + SECTION_OVERHEAD_BYTES);
  const shares = shareBudget(needs, budget);
  const out: Picked = { sections: [], truncated: false };
  for (const [i, snap] of streams.entries()) {
    if (snap.bytes === 0) continue;
    const one = await summarizeStream(ctx, snap, shares[i]!);
    out.sections.push(...one.sections);
    out.truncated ||= one.truncated;
  }
  return out;
}

interface Window {
  lines: Shown[];
  /** Line numbers of the lines that matched (the others are context). */
  matches: Set<number>;
}

/**
 * One forward pass: keeps what the whole, the head, the tail and the error windows may need.
 * `budget` includes SECTION_OVERHEAD_BYTES per section.
 */
async function summarizeStream(
  ctx: Context,
  snap: Snapshot,
  budget: number,
): Promise<{ sections: Counted[]; truncated: boolean }> {
  // Text of one section ("all"), or of head, errors and tail, whose two sections are reserved
  // first: the head and the tail keep their place however many error windows there are.
  const oneRoom = budget - SECTION_OVERHEAD_BYTES;
  const parts = budget - 2 * SECTION_OVERHEAD_BYTES;
  const headShare = Math.floor(Math.max(0, parts) * HEAD_SHARE);
  const errorShare = Math.floor(Math.max(0, parts) * ERROR_SHARE);
  const tailShare = Math.max(0, parts) - headShare - errorShare;
  // Whole lines while the whole stream may still fit: one section has one "\n" less than its
  // lines' costs, hence oneRoom + 1.
  let whole: Shown[] | null = [];
  let wholeCost = 0;
  // Candidates bounded by the whole budget: unused error share flows to the head and the tail.
  const head: Shown[] = [];
  let headCost = 0;
  let headOpen = true;
  // The head's own share, known during the pass: error windows start after it.
  let baseCost = 0;
  let baseOpen = true;
  let baseEnd = 0;
  const tail = new Ring(budget);
  const before = new Ring(budget, ERROR_CONTEXT);
  const windows: Window[] = [];
  let windowCost = 0;
  let after = 0;
  let scanned = 0;

  for await (
    const l of ctx.spool.scanLines(snap.stream, {
      toOffset: snap.bytes,
      // Long enough that a stream which fits is shown uncut; longer lines cannot fit anyway.
      maxLineChars: Math.max(ctx.maxLineChars, budget + 1),
    })
  ) {
    scanned++;
    const d = shown(l, ctx.maxLineChars);
    if (whole !== null) {
      const u = l.cut ? null : l.text.length <= ctx.maxLineChars ? d : shown(l, Infinity);
      if (u === null || wholeCost + u.cost > oneRoom + 1) {
        whole = null;
      } else {
        whole.push(u);
        wholeCost += u.cost;
      }
    }
    if (headOpen) {
      if (headCost + d.cost <= budget || head.length === 0) {
        head.push(d);
        headCost += d.cost;
      } else {
        headOpen = false;
      }
    }
    const inBase = scanned === 1 || (baseOpen && baseCost + d.cost <= headShare);
    if (inBase) {
      baseCost += d.cost;
      baseEnd = l.line;
    } else {
      baseOpen = false;
    }
    tail.push(d);

    if (!inBase) {
      const current = windows.at(-1);
      if (ERROR_LINE.test(l.text)) {
        if (windowCost < errorShare) {
          const count = windows.length;
          windowCost += addToWindow(windows, before, d, ERROR_CONTEXT, baseEnd);
          if (windows.length > count) windowCost += SECTION_OVERHEAD_BYTES;
          after = ERROR_CONTEXT;
        }
      } else if (after > 0 && current?.lines.at(-1)?.line === l.line - 1) {
        current.lines.push(d);
        windowCost += d.cost;
        after--;
      }
    }
    before.push(d);
  }

  if (whole !== null) {
    return {
      sections: whole.length > 0 ? [counted(snap.stream, "all", whole)] : [],
      truncated: false,
    };
  }
  if (headOpen && head.length === scanned && headCost <= oneRoom + 1) {
    // Every line fits once long ones are cut to maxLineChars.
    return { sections: [counted(snap.stream, "all", head)], truncated: true };
  }
  if (parts <= 0) {
    // No room for two sections: the end, which says how the command ended, is what is shown.
    const end = takeBack(tail.toArray(), oneRoom);
    return { sections: end.length > 0 ? [counted(snap.stream, "tail", end)] : [], truncated: true };
  }

  let headPart = takeFront(head, headShare);
  const tailLines = tail.toArray();
  let tailPart = takeBack(tailLines, tailShare);
  if (tailPart.length > 0 && headPart.length > 0 && tailPart[0]!.line <= headPart.at(-1)!.line) {
    // Only a line too long for either share, cut to fit both, can meet itself: show it once.
    tailPart = [];
    headPart = takeFront(head, oneRoom);
  }
  const headEnd = () => headPart.at(-1)?.line ?? 0;
  const tailStart = () => tailPart[0]?.line ?? Infinity;
  const errors = pickWindows(windows, errorShare, headEnd(), tailStart(), SECTION_OVERHEAD_BYTES);

  // Unused share (mostly the error share, when there are few errors) flows to the tail and the
  // head, in proportion to their own shares; what one cannot take goes to the other.
  let left = parts - sumCost(headPart) - sumCost(tailPart) -
    sum(errors.map((e) => sumCost(e) + SECTION_OVERHEAD_BYTES));
  const firstError = errors[0]?.[0]?.line ?? Infinity;
  const lastError = errors.at(-1)?.at(-1)?.line ?? 0;
  const growTail = (room: number) => {
    if (tailPart.length === 0) return 0;
    let at = tailLines.indexOf(tailPart[0]!) - 1;
    let used = 0;
    const floor = Math.max(lastError, headEnd());
    const added: Shown[] = [];
    for (; at >= 0; at--) {
      const line = tailLines[at]!;
      if (line.line <= floor || used + line.cost > room) break;
      added.push(line);
      used += line.cost;
    }
    tailPart = [...added.reverse(), ...tailPart];
    return used;
  };
  const growHead = (room: number) => {
    let used = 0;
    const ceiling = Math.min(firstError, tailStart());
    for (let at = headPart.length; at < head.length; at++) {
      const line = head[at]!;
      if (line.line >= ceiling || used + line.cost > room) break;
      headPart.push(line);
      used += line.cost;
    }
    return used;
  };
  left -= growTail(Math.floor(left * (1 - HEAD_SHARE - ERROR_SHARE) / (1 - ERROR_SHARE)));
  left -= growHead(left);
  left -= growTail(left);

  const sections: Counted[] = [];
  if (headPart.length > 0) sections.push(counted(snap.stream, "head", headPart));
  for (const lines of errors) sections.push(counted(snap.stream, "error", lines));
  if (tailPart.length > 0) sections.push(counted(snap.stream, "tail", tailPart));
  return { sections, truncated: true };
}

/**
 * Adds a matching line to the last window, or opens a new one with the lines before it that
 * are after `floor` and after the last window. Returns the cost added.
 */
function addToWindow(
  windows: Window[],
  before: Ring,
  line: Shown,
  context: number,
  floor: number,
): number {
  const current = windows.at(-1);
  const lastLine = current?.lines.at(-1)?.line ?? 0;
  const from = Math.max(floor, lastLine, line.line - context - 1);
  const lead = before.toArray().filter((l) => l.line > from);
  const added = [...lead, line];
  const firstNew = added[0]!.line;
  if (current !== undefined && firstNew === lastLine + 1) {
    current.lines.push(...added);
    current.matches.add(line.line);
  } else {
    windows.push({ lines: added, matches: new Set([line.line]) });
  }
  return sumCost(added);
}

/**
 * Windows between `after` and `before` (exclusive), earliest first, as many as fit in `room`
 * with `overhead` charged for each; the first that does not fit whole is shown from its first
 * match as far as it fits.
 */
function pickWindows(
  windows: Window[],
  room: number,
  after: number,
  before: number,
  overhead: number,
): Shown[][] {
  const picked: Shown[][] = [];
  let used = 0;
  for (const w of windows) {
    const lines = w.lines.filter((l) => l.line > after && l.line < before);
    const firstMatch = lines.findIndex((l) => w.matches.has(l.line));
    if (firstMatch === -1) continue;
    const cost = sumCost(lines) + overhead;
    if (used + cost <= room) {
      picked.push(lines);
      used += cost;
      continue;
    }
    const part = takeFront(lines.slice(firstMatch), room - used - overhead);
    if (part.length > 0) picked.push(part);
    break;
  }
  return picked;
}

// ---------------------------------------------------------------------------------------------
// head, tail

async function headOrTail(
  ctx: Context,
  streams: Snapshot[],
  budget: number,
  kind: "head" | "tail",
  count: number,
): Promise<Picked> {
  // First what each stream would show with the whole budget, then the budget is shared by need.
  const candidates: Shown[][] = [];
  for (const snap of streams) {
    const lines: Shown[] = [];
    if (count > 0) {
      const ring = new Ring(budget, count);
      let cost = 0;
      for await (const l of scan(ctx, snap)) {
        const d = shown(l, ctx.maxLineChars);
        if (kind === "tail") {
          ring.push(d);
          continue;
        }
        lines.push(d);
        cost += d.cost;
        if (lines.length >= count || cost > budget) break;
      }
      if (kind === "tail") lines.push(...ring.toArray());
    }
    candidates.push(lines);
  }
  const needs = candidates.map((c) => c.length === 0 ? 0 : sumCost(c) + SECTION_OVERHEAD_BYTES);
  const shares = shareBudget(needs, budget);
  const out: Picked = { sections: [], truncated: false };
  for (const [i, snap] of streams.entries()) {
    const room = shares[i]! - SECTION_OVERHEAD_BYTES;
    const lines = kind === "head"
      ? takeFront(candidates[i]!, room)
      : takeBack(candidates[i]!, room);
    if (lines.length > 0) out.sections.push(counted(snap.stream, kind, lines));
    const asked = Math.min(count, snap.lines);
    if (lines.length < asked || lines.some((l) => l.cutByBudget)) out.truncated = true;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// grep

async function grep(
  ctx: Context,
  streams: Snapshot[],
  budget: number,
  pattern: RegExp,
  context: number,
  maxMatches: number,
): Promise<Picked> {
  // A global or sticky regex keeps lastIndex between tests and would skip matches.
  const re = new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, ""));
  let matches = 0;
  let kept = 0; // matching lines collected, over all streams: maxMatches is for the whole view
  let truncated = false;
  const collected: Window[][] = [];
  for (const snap of streams) {
    const windows: Window[] = [];
    const before = new Ring(budget, context);
    let cost = 0;
    let after = 0;
    // Long lines are searched further than they are shown (a match past the cut still counts).
    const searchChars = Math.max(ctx.maxLineChars, GREP_LINE_CHARS);
    for await (const l of scan(ctx, snap, searchChars)) {
      const d = shown(l, ctx.maxLineChars);
      const isMatch = re.test(l.text);
      if (isMatch) matches++;
      if (isMatch && kept < maxMatches && cost <= budget) {
        kept++;
        const count = windows.length;
        cost += addToWindow(windows, before, d, context, 0);
        if (windows.length > count) cost += SECTION_OVERHEAD_BYTES;
        after = context;
      } else if (isMatch) {
        truncated = true;
        after = 0; // a match not shown is not shown as context either
      } else if (after > 0 && cost <= budget && windows.at(-1)?.lines.at(-1)?.line === l.line - 1) {
        windows.at(-1)!.lines.push(d);
        cost += d.cost;
        after--;
      }
      if (context > 0) before.push(d);
    }
    collected.push(windows);
  }
  const shares = shareBudget(
    collected.map((ws) => sum(ws.map((w) => sumCost(w.lines) + SECTION_OVERHEAD_BYTES))),
    budget,
  );
  const out: Picked = { sections: [], truncated, matches };
  for (const [i, snap] of streams.entries()) {
    const windows = collected[i]!;
    const picked = pickWindows(windows, shares[i]!, 0, Infinity, SECTION_OVERHEAD_BYTES);
    const all = sum(windows.map((w) => w.lines.length));
    const shownLines = sum(picked.map((p) => p.length));
    if (shownLines < all || picked.some((p) => p.some((l) => l.cutByBudget))) out.truncated = true;
    for (const lines of picked) out.sections.push(counted(snap.stream, "match", lines));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// range

async function range(
  spool: OutputSpool,
  snap: Snapshot,
  offset: number,
  budget: number,
): Promise<Picked> {
  const room = Math.max(0, budget - SECTION_OVERHEAD_BYTES); // one section
  const from = Math.min(offset, snap.bytes);
  // Up to 3 bytes more: a start inside a character moves forward past its rest.
  const asked = Math.min(room + 3, snap.bytes - from);
  const raw = await spool.read(snap.stream, from, asked);
  let skip = 0;
  if (from > 0) { while (skip < Math.min(3, raw.length) && (raw[skip]! & 0xc0) === 0x80) skip++; }
  const start = from + skip;
  const body = raw.subarray(skip);
  // The end of what can be read now: the snapshot's end, or where kept bytes stop.
  const atEnd = raw.length < asked || from + raw.length >= snap.bytes;
  let n = Math.min(body.length, room);
  // Cut where a character ends, unless this is the end of the stream and all of it fits.
  if (n < body.length || !atEnd) n = utf8SafeLength(body, n);
  let text = decoder.decode(body.subarray(0, n));
  // Invalid bytes decode to U+FFFD, 3 bytes each: cut further until the text fits.
  for (let excess = utf8Length(text) - room; excess > 0; excess = utf8Length(text) - room) {
    n = utf8SafeLength(body, Math.max(0, n - excess));
    text = decoder.decode(body.subarray(0, n));
  }
  const end = start + n;
  const nextOffset = atEnd && end >= from + raw.length ? null : end;
  if (n === 0) return { sections: [], truncated: nextOffset !== null, nextOffset };

  // The line of the first byte: scanLines counts the newlines before it in blocks.
  let firstLine = 1;
  for await (const l of spool.scanLines(snap.stream, { fromOffset: start, toOffset: start + 1 })) {
    firstLine = l.line;
  }
  let newlines = 0;
  for (let i = body.indexOf(10); i !== -1 && i < n; i = body.indexOf(10, i + 1)) newlines++;
  const endsWithNewline = body[n - 1] === 10;
  const lastLine = firstLine + newlines - (endsWithNewline ? 1 : 0);
  const section: ViewSection = {
    stream: snap.stream,
    why: "range",
    first_line: firstLine,
    last_line: lastLine,
    offset: start,
    end_offset: end,
    text,
  };
  return {
    sections: [{ section, shownBytes: n, shownLines: lastLine - firstLine + 1 }],
    truncated: nextOffset !== null,
    nextOffset,
  };
}

// ---------------------------------------------------------------------------------------------
// shared

function scan(
  ctx: Context,
  snap: Snapshot,
  maxLineChars = ctx.maxLineChars,
): AsyncIterable<SpoolLine> {
  return ctx.spool.scanLines(snap.stream, { toOffset: snap.bytes, maxLineChars });
}

function marker(omittedBytes: number): string {
  return ` … [+${omittedBytes} bytes]`;
}

/** A line as shown with lines cut to `maxChars` characters. */
function shown(l: SpoolLine, maxChars: number): Shown {
  const contentBytes = l.bytes - l.eol;
  if (!l.cut && l.text.length <= maxChars) {
    return {
      line: l.line,
      offset: l.offset,
      bytes: l.bytes,
      contentBytes,
      text: l.text,
      source: l.text,
      cost: utf8Length(l.text) + 1,
      shownBytes: l.bytes,
      endOffset: l.offset + l.bytes,
      cutByBudget: false,
    };
  }
  return withStart(l, contentBytes, cutChars(l.text, maxChars), false);
}

/** The line cut to `start` plus a marker of the bytes left out. */
function withStart(
  l: { line: number; offset: number; bytes: number },
  contentBytes: number,
  start: string,
  cutByBudget: boolean,
): Shown {
  // Bytes are counted from the decoded text: exact for valid UTF-8, clamped for the rest.
  const startBytes = Math.min(utf8Length(start), contentBytes);
  const omitted = contentBytes - startBytes;
  const text = start + marker(omitted);
  return {
    line: l.line,
    offset: l.offset,
    bytes: l.bytes,
    contentBytes,
    text,
    source: start,
    cost: utf8Length(text) + 1,
    shownBytes: l.bytes - omitted,
    endOffset: l.offset + startBytes,
    cutByBudget,
  };
}

/** `line` cut shorter so that its cost is at most `room`, or null if not even a marker fits. */
function refit(line: Shown, room: number): Shown | null {
  // The marker can only get shorter as more is cut: its longest form bounds the room.
  const target = room - 1 - utf8Length(marker(line.contentBytes));
  if (target < 0) return null;
  const source = line.source;
  let bytes = 0;
  let i = 0;
  while (i < source.length) {
    const c = source.codePointAt(i)!;
    const size = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (bytes + size > target) break;
    bytes += size;
    i += c > 0xffff ? 2 : 1;
  }
  return withStart(line, line.contentBytes, source.slice(0, i), true);
}

/** The first lines whose costs fit `room`; a first line too long for it is cut to fit. */
function takeFront(lines: Shown[], room: number): Shown[] {
  const out: Shown[] = [];
  let used = 0;
  for (const line of lines) {
    if (used + line.cost > room) break;
    out.push(line);
    used += line.cost;
  }
  if (out.length === 0 && lines[0] !== undefined) {
    const cut = refit(lines[0], room);
    if (cut !== null) out.push(cut);
  }
  return out;
}

/** The last lines whose costs fit `room`; a last line too long for it is cut to fit. */
function takeBack(lines: Shown[], room: number): Shown[] {
  let used = 0;
  let at = lines.length;
  while (at > 0 && used + lines[at - 1]!.cost <= room) used += lines[--at]!.cost;
  if (at === lines.length && at > 0) {
    const cut = refit(lines[at - 1]!, room);
    return cut === null ? [] : [cut];
  }
  return lines.slice(at);
}

function counted(stream: SpoolStream, why: ViewSection["why"], lines: Shown[]): Counted {
  const first = lines[0]!;
  const last = lines.at(-1)!;
  return {
    section: {
      stream,
      why,
      first_line: first.line,
      last_line: last.line,
      offset: first.offset,
      end_offset: last.endOffset,
      text: lines.map((l) => l.text).join("\n"),
    },
    shownBytes: sum(lines.map((l) => l.shownBytes)),
    shownLines: lines.length,
  };
}

/**
 * Shares `budget` by need: in order of need, each gets what it needs up to an equal part of
 * what is left, so a small need is met whole and the rest is divided evenly.
 */
function shareBudget(needs: number[], budget: number): number[] {
  const shares = needs.map(() => 0);
  const order = needs.map((_, i) => i).sort((a, b) => needs[a]! - needs[b]!);
  let left = budget;
  for (const [k, i] of order.entries()) {
    const give = Math.min(needs[i]!, Math.floor(left / (order.length - k)));
    shares[i] = give;
    left -= give;
  }
  return shares;
}

/** The last lines pushed, at most `maxCount` and (beyond the newest) at most `maxCost`. */
class Ring {
  // A circular buffer: dropping the oldest line moves an index. (Compacting an array by slices
  // instead cost a fifth of a summary of 2-byte lines.)
  #items: (Shown | undefined)[] = new Array(16);
  #start = 0;
  #size = 0;
  #cost = 0;
  readonly #maxCost: number;
  readonly #maxCount: number;

  constructor(maxCost: number, maxCount = Infinity) {
    this.#maxCost = maxCost;
    this.#maxCount = maxCount;
  }

  push(line: Shown): void {
    if (this.#maxCount === 0) return;
    if (this.#size === this.#items.length) this.#grow();
    this.#items[(this.#start + this.#size) % this.#items.length] = line;
    this.#size++;
    this.#cost += line.cost;
    while (this.#size > 1 && (this.#cost > this.#maxCost || this.#size > this.#maxCount)) {
      const oldest = this.#items[this.#start]!;
      this.#items[this.#start] = undefined;
      this.#start = (this.#start + 1) % this.#items.length;
      this.#size--;
      this.#cost -= oldest.cost;
    }
  }

  #grow(): void {
    const items = this.toArray() as (Shown | undefined)[];
    items.length = this.#items.length * 2;
    this.#items = items;
    this.#start = 0;
  }

  toArray(): Shown[] {
    const out: Shown[] = [];
    for (let k = 0; k < this.#size; k++) {
      out.push(this.#items[(this.#start + k) % this.#items.length]!);
    }
    return out;
  }
}

/** Bytes of `text` in UTF-8 (a lone surrogate counts as the 3 bytes of U+FFFD), without encoding it. */
export function utf8Length(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      n += 1;
    } else if (
      c >= 0xd800 && c <= 0xdbff && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      n += 2; // a pair: 4 bytes for 2 units
      i++;
    } else {
      n += 2;
    }
  }
  return n;
}

function sumCost(lines: Shown[]): number {
  let total = 0;
  for (const l of lines) total += l.cost;
  return total;
}

function sum(values: number[]): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}

function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Invalid ${name}: ${value} (expected a non-negative integer)`);
  }
}
