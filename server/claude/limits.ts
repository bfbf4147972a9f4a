/**
 * Detecting that a Claude Code run hit a limit, from the lines it prints and from its
 * `--output-format stream-json`/`json` events.
 *
 * Where the wording comes from (each pattern below names its source):
 * - Claude Code 2.1.197 (npm `@anthropic-ai/claude-code`), read from the shipped binary and from
 *   runs of it: in `-p` mode an API failure is a result with `is_error: true` whose `result` is
 *   the message; text mode prints that message on **stdout** (not stderr) and exits 1.
 * - Earlier releases, as users quoted them in anthropics/claude-code issues, with the version the
 *   report gave.
 *
 * Every pattern is anchored at the start of a line (after blanks and the TUI's `⎿`/`⏺`/`●`
 * marks): Claude prints these messages alone on their line, so a line that merely mentions tokens,
 * limits or 429 in passing, or a JSON log that quotes a message inside a string, is not a signal.
 *
 * What counts as what:
 * - `token_limit`: the response ran past the output-token maximum. Retryable: a more concise
 *   prompt can fit.
 * - `usage_limit`: a plan limit (session, weekly, Opus, monthly spend...) with its reset time.
 *   Retryable when the reset time is known (wait until then); not when it is unknown.
 * - `rate_limit`: HTTP 429 / `rate_limit_error`, and also 529 / `overloaded_error`
 *   (`cause: "overloaded"`): both say "the same request will work if sent again later", so both
 *   are retryable and are waited out the same way. `retry_after_seconds` is set when the output
 *   gives it (Claude's `system/api_retry` events carry the delay it computed from the server's
 *   `retry-after`; text output never does).
 * - `context_overflow`: the prompt and history do not fit the context window. Not retryable:
 *   the same input fails the same way, and a terser answer does not shrink the input.
 *
 * Not signals: the warnings Claude prints while a run goes on ("You've used 90% of your weekly
 * limit · resets ...", "Approaching session limit"), and its own retry notices ("API Error (429
 * ...) · Retrying in 4 seconds… (attempt 1/10)"): Claude is still retrying, and the run may well
 * succeed.
 *
 * @module
 */

/** The kinds of limit a Claude run can hit. */
export type LimitKind = "token_limit" | "usage_limit" | "rate_limit" | "context_overflow";

interface LimitSignalBase {
  kind: LimitKind;
  /** Whether running again (after a wait, or with a shorter prompt) can succeed. */
  retryable: boolean;
  /** The text that matched: one line, or the event field it came from. */
  matched: string;
}

/** The response ran past the output-token maximum. */
export interface TokenLimitSignal extends LimitSignalBase {
  kind: "token_limit";
  /** The maximum the message names (32000 by default; CLAUDE_CODE_MAX_OUTPUT_TOKENS sets it). */
  max_output_tokens: number | null;
}

/** A plan's usage limit was reached. */
export interface UsageLimitSignal extends LimitSignalBase {
  kind: "usage_limit";
  /** Which limit, as Claude names it: "session limit", "weekly limit", "Opus limit", "limit"... */
  limit: string;
  /** When it resets (ISO 8601, UTC); null when the message gives no time or it cannot be read. */
  resets_at: string | null;
  /** The reset time as printed ("3pm (Europe/London)"), or the epoch; null when none. */
  reset_text: string | null;
  /** The IANA zone the printed time is in; null when the reset came as an epoch or is unknown. */
  time_zone: string | null;
}

/** The API refused the request for now: HTTP 429, or 529 overloaded. */
export interface RateLimitSignal extends LimitSignalBase {
  kind: "rate_limit";
  cause: "rate_limit" | "overloaded";
  /** The HTTP status when known (429, 529). */
  status: number | null;
  /** How long to wait before retrying, when the output says. */
  retry_after_seconds: number | null;
}

/** The input does not fit the model's context window. */
export interface ContextOverflowSignal extends LimitSignalBase {
  kind: "context_overflow";
  /** From "input length and `max_tokens` exceed context limit: A + B > C", when given. */
  input_tokens: number | null;
  max_tokens: number | null;
  context_limit: number | null;
}

/** What {@link detectLimit} and the event readers report. */
export type LimitSignal =
  | TokenLimitSignal
  | UsageLimitSignal
  | RateLimitSignal
  | ContextOverflowSignal;

/** Options of {@link detectLimit} and the event readers. */
export interface DetectLimitOptions {
  /**
   * The zone of a reset time printed without one ("5-hour limit reached ∙ resets 9pm", Claude
   * Code 1.0.x): Claude prints local times, and the claude process runs on this machine.
   * @default the runtime's zone (Intl.DateTimeFormat().resolvedOptions().timeZone)
   */
  timeZone?: string;
  /**
   * How far in the past a printed time-of-day may be and still mean "today" rather than
   * "tomorrow". Claude prints minutes only, and a message read a little late names a time just
   * passed: that limit has reset, it is not a day away.
   * @default 600_000 (10 minutes)
   */
  pastGraceMs?: number;
}

/**
 * The first limit signal in `text` (one line or many), or null.
 *
 * `now` anchors reset times printed without a date ("resets 3pm (Europe/London)" is the next 3pm
 * in London after `now`).
 *
 * @example
 * ```ts
 * detectLimit("You've hit your session limit · resets 3pm (Europe/London)", new Date("2026-07-01T10:00:00Z"));
 * // { kind: "usage_limit", limit: "session limit", resets_at: "2026-07-01T14:00:00.000Z", retryable: true, ... }
 * ```
 */
export function detectLimit(
  text: string,
  now: Date,
  options: DetectLimitOptions = {},
): LimitSignal | null {
  for (const raw of text.split(/\r?\n/)) {
    const signal = detectLine(raw, now, options);
    if (signal !== null) return signal;
  }
  return null;
}

/**
 * The limit a stream-json/json `result` event reports, or null.
 *
 * Only an error result counts (`is_error: true`; Claude 2.1.x marks API failures that way even
 * under `subtype: "success"`), so an answer that discusses limits is never a signal. The message
 * is read from `result` (and `errors`); when it is not one Claude is known to print,
 * `api_error_status` 429/529 still tells a rate limit.
 */
export function limitFromResultEvent(
  event: unknown,
  now: Date,
  options: DetectLimitOptions = {},
): LimitSignal | null {
  if (!isRecord(event) || event.type !== "result" || event.is_error !== true) return null;
  const texts = [event.result, ...(Array.isArray(event.errors) ? event.errors : [])]
    .filter((text): text is string => typeof text === "string");
  for (const text of texts) {
    const signal = detectLimit(text, now, options);
    if (signal !== null) return signal;
  }
  const status = typeof event.api_error_status === "number" ? event.api_error_status : null;
  if (status === 429 || status === 529) {
    return {
      kind: "rate_limit",
      cause: status === 429 ? "rate_limit" : "overloaded",
      status,
      retry_after_seconds: null,
      retryable: true,
      matched: texts[0] ?? `api_error_status: ${status}`,
    };
  }
  return null;
}

/**
 * The limit any stream-json event reports, or null: a `result` (see
 * {@link limitFromResultEvent}); a `rate_limit_event` whose status is `rejected` (Claude Code
 * 2.1.x: a plan limit, with the exact reset epoch); or the synthetic `assistant` message Claude
 * emits for an API error (`error: "rate_limit" | "max_output_tokens" | ...`, its text the message).
 */
export function limitFromStreamEvent(
  event: unknown,
  now: Date,
  options: DetectLimitOptions = {},
): LimitSignal | null {
  if (!isRecord(event)) return null;
  if (event.type === "result") return limitFromResultEvent(event, now, options);
  if (event.type === "rate_limit_event") {
    const info = event.rate_limit_info;
    if (!isRecord(info) || info.status !== "rejected") return null;
    const resetsAt = typeof info.resetsAt === "number" ? epochToIso(info.resetsAt) : null;
    return {
      kind: "usage_limit",
      limit: RATE_LIMIT_TYPES[String(info.rateLimitType)] ?? "limit",
      resets_at: resetsAt,
      reset_text: typeof info.resetsAt === "number" ? String(info.resetsAt) : null,
      time_zone: null,
      retryable: resetsAt !== null,
      matched: `rate_limit_event ${JSON.stringify(info)}`,
    };
  }
  if (event.type === "assistant" && typeof event.error === "string") {
    const message = isRecord(event.message) ? event.message : {};
    const content = Array.isArray(message.content) ? message.content : [];
    const text = content
      .map((block) => isRecord(block) && typeof block.text === "string" ? block.text : "")
      .join("\n");
    const signal = detectLimit(text, now, options);
    if (signal !== null) return signal;
    if (event.error === "max_output_tokens" && text !== "") {
      return { kind: "token_limit", max_output_tokens: null, retryable: true, matched: text };
    }
  }
  return null;
}

/** Options of {@link LimitWatcher}. */
export interface LimitWatcherOptions {
  /** The clock for reset times. @default () => new Date() */
  now?: () => Date;
  /** Options for reading the messages (zone, grace). */
  limits?: DetectLimitOptions;
}

/**
 * Watches a text stream (the stdout of a text-mode run, or any run's stderr) for limit lines,
 * fed in chunks cut anywhere. Each kind is reported once: Claude prints a limit once, and a
 * later line of the same kind is not news.
 *
 * @example
 * ```ts
 * const watcher = new LimitWatcher();
 * for (const chunk of chunks) {
 *   for (const signal of watcher.push(chunk)) notify(signal); // error.token_limit_exceeded, ...
 * }
 * watcher.end();
 * ```
 */
export class LimitWatcher {
  #partial = "";
  #skipping = false;
  #seen = new Set<LimitKind>();
  readonly #now: () => Date;
  readonly #limits: DetectLimitOptions;

  constructor(options: LimitWatcherOptions = {}) {
    this.#now = options.now ?? (() => new Date());
    this.#limits = options.limits ?? {};
  }

  /** Feeds text; returns the signals of the lines it completed (usually none). */
  push(text: string): LimitSignal[] {
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop()!;
    const signals = this.#read(lines);
    // No message of Claude's is this long: a longer line is output, not a limit, and is not kept.
    if (this.#partial.length > MAX_LINE) {
      this.#partial = "";
      this.#skipping = true;
    }
    return signals;
  }

  /** Ends the stream: the last line counts even without a newline. */
  end(): LimitSignal[] {
    const signals = this.#read([this.#partial]);
    this.#partial = "";
    return signals;
  }

  #read(lines: string[]): LimitSignal[] {
    const signals: LimitSignal[] = [];
    for (const line of lines) {
      if (this.#skipping) { // the rest of an over-long line
        this.#skipping = false;
        continue;
      }
      const signal = detectLine(line, this.#now(), this.#limits);
      if (signal !== null && !this.#seen.has(signal.kind)) {
        this.#seen.add(signal.kind);
        signals.push(signal);
      }
    }
    return signals;
  }
}

// The names Claude Code 2.1.197 gives its rate-limit types in messages.
const RATE_LIMIT_TYPES: Record<string, string> = {
  five_hour: "session limit",
  seven_day: "weekly limit",
  seven_day_opus: "Opus limit",
  seven_day_sonnet: "Sonnet limit",
  overage: "usage limit",
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------
// Lines

// ANSI colour and cursor sequences, which a terminal-bound claude may print.
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
// Blanks and the marks Claude's interactive UI puts before a message.
const LEAD = /^[\s⎿⏺●]+/;
// "API Error: " stands before most API messages; some older ones appeared without it.
const API_ERROR = /^API Error:\s*/;

// Claude Code 1.0.x–2.1.197: "API Error: Claude's response exceeded the 32000 output token
// maximum. To configure this behavior, set the CLAUDE_CODE_MAX_OUTPUT_TOKENS environment
// variable." Tolerated: no "API Error:" prefix, a typographic apostrophe, "32,000".
const TOKEN_LIMIT = /^(?:Claude['’]s )?response exceeded the (\d[\d,]*) output token maximum\b/i;

// "You've hit your session limit · resets 3pm (Europe/London)" (2.1.197; 2.1.x from early 2026
// printed "You've hit your limit · resets 1pm (Europe/Lisbon)", some quoted with " - ").
const HIT_YOUR = /^You['’]ve hit your ((?:[\w'’.-]+ ){0,4}?limit)\b(.*)$/;
// "5-hour limit reached ∙ resets 9pm" (1.0.1xx, late 2025, local time without a zone).
const LIMIT_REACHED = /^((?:[\w-]+ ){0,3}limit) reached\s*[·•∙\-–]\s*resets\s+(.+)$/i;
// "Claude AI usage limit reached|1755615600" (1.0.x: the reset as epoch seconds).
const EPOCH_FORM = /^Claude AI usage limit reached\|(\d{9,13})\s*$/;
// "Claude usage limit reached. Your limit will reset at 5pm (Europe/Warsaw)." (1.0.x).
const USAGE_REACHED =
  /^Claude (?:AI )?usage limit reached\.?(?:\s+Your limit will reset at (.+?)\.?)?\s*$/;
// The reset part of a usage message: " · resets <when>" up to the zone's ")" or the line's end.
// (A zone has a "/" in it; text glued after the ")" — "(Asia/Seoul)/login to ..." — is not.)
const RESETS = /^\s*[·•∙\-–]\s*resets\s+([^·•∙()]*?\([^()]*\)|[^·•∙/()]+?)(?=\s*[·•∙/]|\s*$)/;

// "Prompt is too long" (2.0.x–2.1.197, the whole message).
const PROMPT_TOO_LONG = /^Prompt is too long\.?$/;
// "The model has reached its context window limit." (2.1.197, after "API Error: ").
const CONTEXT_WINDOW = /^The model has reached its context window limit\b/;
// "API Error: 400 {..."input length and `max_tokens` exceed context limit: 184915 + 20000 >
// 204648, ..."}" (0.2.x, 1.0.x) and the API's "prompt is too long: 215000 tokens > 200000
// maximum", inside the error JSON that older releases printed after "API Error: 400".
const EXCEED_CONTEXT =
  /input length and `?max_tokens`? exceed context limit:\s*(\d+)\s*\+\s*(\d+)\s*>\s*(\d+)/;
const API_PROMPT_TOO_LONG = /prompt is too long:\s*(\d+)\s*tokens\s*>\s*(\d+)\s*maximum/i;

// After "API Error: " (all 429 and 529 forms):
// "Rate limit reached" (2.1.49–2.1.84);
// "Request rejected (429) · <server message>" (2.1.18x–2.1.197);
// "Server is temporarily limiting requests (not your usage limit) · Rate limited" (2.1.153+);
// "429 {"type":"error","error":{"type":"rate_limit_error",...}}" (0.2.x, 1.0.x);
// "Repeated 529 Overloaded errors" (1.0.x–2.0.x; 2.1.197 adds ". The API is at capacity ...");
// "529 Overloaded. This is a server-side issue, usually temporary ..." (2.1.195);
// "529 {"type":"error","error":{"type":"overloaded_error",...}}" (2.1.85).
const RATE_LIMITED =
  /^(?:Rate limit reached\b|Request rejected \(429\)|Server is temporarily limiting requests\b|429\b.*\brate_limit_error\b)/;
const OVERLOADED =
  /^(?:Repeated 529 Overloaded errors\b|529\b.*\b(?:Overloaded|overloaded_error)\b)/;
// Claude Code 2.1.197 reports these as rate-limit errors of its own, without "API Error: ".
const HIGH_LOAD = /^(?:Opus|Sonnet|Fable|\w+) is experiencing high load, please use \/model\b/;
// A wait the message names: "retry after 30 seconds", "retry-after: 30", "try again in 30s".
const RETRY_AFTER =
  /\b(?:retry[- ]after|try again in|retrying in)\s*:?\s*(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?)?\b/i;

/** Longer lines are never read as a limit message. */
const MAX_LINE = 4000;

function detectLine(raw: string, now: Date, options: DetectLimitOptions): LimitSignal | null {
  const line = raw.replace(ANSI, "").replace(LEAD, "").trimEnd();
  if (line === "" || line.length > MAX_LINE) return null; // no message of Claude's is that long
  const api = API_ERROR.exec(line);
  const body = api === null ? line : line.slice(api[0].length);

  const token = TOKEN_LIMIT.exec(body);
  if (token !== null) {
    return {
      kind: "token_limit",
      max_output_tokens: Number(token[1]!.replaceAll(",", "")),
      retryable: true,
      matched: line,
    };
  }

  if (api === null) {
    const usage = usageLimit(line, now, options);
    if (usage !== null) return usage;
    if (HIGH_LOAD.test(line)) {
      return rateLimit("overloaded", 529, line);
    }
  }

  if (PROMPT_TOO_LONG.test(body) || CONTEXT_WINDOW.test(body)) {
    return contextOverflow(line, null, null, null);
  }
  if (api !== null) {
    const exceed = EXCEED_CONTEXT.exec(body);
    if (exceed !== null) {
      return contextOverflow(line, Number(exceed[1]), Number(exceed[2]), Number(exceed[3]));
    }
    const tooLong = API_PROMPT_TOO_LONG.exec(body);
    if (tooLong !== null) {
      return contextOverflow(line, Number(tooLong[1]), null, Number(tooLong[2]));
    }
    if (RATE_LIMITED.test(body)) return rateLimit("rate_limit", 429, line);
    if (OVERLOADED.test(body)) return rateLimit("overloaded", 529, line);
  }
  return null;
}

function rateLimit(
  cause: "rate_limit" | "overloaded",
  status: number,
  line: string,
): RateLimitSignal {
  const wait = RETRY_AFTER.exec(line);
  let seconds: number | null = null;
  if (wait !== null) {
    seconds = Number(wait[1]);
    if (wait[2] !== undefined && /^m/i.test(wait[2])) seconds /= 1000;
  }
  return {
    kind: "rate_limit",
    cause,
    status,
    retry_after_seconds: seconds,
    retryable: true,
    matched: line,
  };
}

function contextOverflow(
  line: string,
  input: number | null,
  max: number | null,
  limit: number | null,
): ContextOverflowSignal {
  return {
    kind: "context_overflow",
    input_tokens: input,
    max_tokens: max,
    context_limit: limit,
    retryable: false,
    matched: line,
  };
}

function usageLimit(line: string, now: Date, options: DetectLimitOptions): UsageLimitSignal | null {
  const epoch = EPOCH_FORM.exec(line);
  if (epoch !== null) {
    const resetsAt = epochToIso(Number(epoch[1]));
    return usageSignal(line, "usage limit", resetsAt, epoch[1]!, null);
  }
  const reached = USAGE_REACHED.exec(line);
  if (reached !== null) return usageWithTime(line, "usage limit", reached[1] ?? null, now, options);
  const hit = HIT_YOUR.exec(line);
  if (hit !== null) {
    const resets = RESETS.exec(hit[2]!);
    return usageWithTime(line, hit[1]!, resets?.[1] ?? null, now, options);
  }
  const limitReached = LIMIT_REACHED.exec(line);
  if (limitReached !== null) {
    return usageWithTime(line, limitReached[1]!, limitReached[2]!, now, options);
  }
  return null;
}

function usageWithTime(
  line: string,
  limit: string,
  when: string | null,
  now: Date,
  options: DetectLimitOptions,
): UsageLimitSignal {
  if (when === null) return usageSignal(line, limit, null, null, null);
  const parsed = parseResetTime(when.trim(), now, options);
  return usageSignal(line, limit, parsed?.iso ?? null, when.trim(), parsed?.zone ?? null);
}

function usageSignal(
  line: string,
  limit: string,
  resetsAt: string | null,
  resetText: string | null,
  zone: string | null,
): UsageLimitSignal {
  return {
    kind: "usage_limit",
    limit,
    resets_at: resetsAt,
    reset_text: resetText,
    time_zone: zone,
    retryable: resetsAt !== null,
    matched: line,
  };
}

function epochToIso(value: number): string | null {
  // Seconds, as Claude prints them; a 13-digit value is milliseconds.
  const ms = value >= 1e12 ? value : value * 1000;
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

// ---------------------------------------------------------------------------
// Reset times

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

// Claude Code 2.1.197 formats a reset with toLocaleString("en-US") and lowercases AM/PM:
// "3pm", "12:50am", "Dec 1, 9am", "Jan 2, 2027, 9am" when the year differs; then " (Zone)".
// `/usage` prints "Jul 11 at 12pm"; some ICU builds put U+202F before "PM".
const RESET_TIME = new RegExp(
  "^(?:(?<month>[A-Za-z]{3})[a-z]*\\.? (?<day>\\d{1,2}),?\\s+(?:(?<year>\\d{4}),?\\s+)?(?:at\\s+)?)?" +
    "(?<hour>\\d{1,2})(?::(?<minute>\\d{2}))?\\s*(?<half>[ap])\\.?m\\.?" +
    "(?:\\s*\\((?<zone>[^()]+)\\))?$",
  "i",
);

/** A reset time as printed, read as the next such instant after `now` (minus the grace). */
export function parseResetTime(
  when: string,
  now: Date,
  options: DetectLimitOptions = {},
): { iso: string; zone: string } | null {
  const match = RESET_TIME.exec(when.replace(/[\u00a0\u202f]/g, " ").trim());
  if (match === null || match.groups === undefined) return null;
  const g = match.groups;
  const zone = g.zone?.trim() ?? options.timeZone ??
    Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!isTimeZone(zone)) return null;
  const hour12 = Number(g.hour);
  const minute = g.minute === undefined ? 0 : Number(g.minute);
  if (hour12 < 1 || hour12 > 12 || minute > 59) return null;
  const hour = (hour12 % 12) + (g.half!.toLowerCase() === "p" ? 12 : 0);
  const earliest = now.getTime() - (options.pastGraceMs ?? 600_000);
  const today = zonedDate(now, zone);

  let instant: number;
  if (g.month !== undefined) {
    const month = MONTHS.indexOf(g.month.toLowerCase()) + 1;
    const day = Number(g.day);
    if (month === 0 || day < 1 || day > 31) return null;
    if (g.year !== undefined) {
      instant = zonedToUtc(Number(g.year), month, day, hour, minute, zone);
    } else {
      instant = zonedToUtc(today.year, month, day, hour, minute, zone);
      if (instant < earliest) instant = zonedToUtc(today.year + 1, month, day, hour, minute, zone);
    }
  } else {
    instant = zonedToUtc(today.year, today.month, today.day, hour, minute, zone);
    if (instant < earliest) {
      // The next day by the calendar (not +24 h, which a DST change would skew).
      const next = new Date(Date.UTC(today.year, today.month - 1, today.day + 1));
      instant = zonedToUtc(
        next.getUTCFullYear(),
        next.getUTCMonth() + 1,
        next.getUTCDate(),
        hour,
        minute,
        zone,
      );
    }
  }
  return { iso: new Date(instant).toISOString(), zone };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let format = formatters.get(zone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(zone, format);
  }
  return format;
}

function isTimeZone(zone: string): boolean {
  try {
    formatter(zone);
    return true;
  } catch (e) {
    if (e instanceof RangeError) return false;
    throw e;
  }
}

interface WallTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

function wallTime(instant: number, zone: string): WallTime {
  const parts: Record<string, number> = {};
  for (const part of formatter(zone).formatToParts(new Date(instant))) {
    if (part.type !== "literal") parts[part.type] = Number(part.value);
  }
  return {
    year: parts.year!,
    month: parts.month!,
    day: parts.day!,
    hour: parts.hour! % 24,
    minute: parts.minute!,
    second: parts.second!,
  };
}

function zonedDate(now: Date, zone: string): WallTime {
  return wallTime(now.getTime(), zone);
}

/** The zone's offset from UTC at an instant, in ms (positive east of Greenwich). */
function offsetAt(instant: number, zone: string): number {
  const w = wallTime(instant, zone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return asUtc - Math.floor(instant / 1000) * 1000;
}

/**
 * The instant a wall-clock time in `zone` names. An ambiguous time (the hour repeated when
 * clocks go back) is its first occurrence; a time that does not exist (skipped when clocks go
 * forward) moves forward by the gap. These are Temporal's "compatible" rules.
 */
export function zonedToUtc(
  year: number,
  month: number,
  day: number,
  hour: number,
  minute: number,
  zone: string,
): number {
  const local = Date.UTC(year, month - 1, day, hour, minute);
  const day_ = 86_400_000;
  const before = offsetAt(local - day_, zone);
  const after = offsetAt(local + day_, zone);
  const candidates = [...new Set([before, after])]
    .map((offset) => local - offset)
    .filter((instant) => local - offsetAt(instant, zone) === instant)
    .sort((a, b) => a - b);
  if (candidates.length > 0) return candidates[0]!;
  return local - before; // in the gap: read with the offset from before the change
}
