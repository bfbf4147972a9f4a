/**
 * Reading `claude -p --output-format stream-json --verbose` output as it arrives.
 *
 * Claude Code writes one JSON event per line on stdout (shapes as Claude Code 2.1.197 prints
 * them; see tests/fixtures/claude/):
 *
 * - `{"type":"system","subtype":"init","session_id":...,"model":...,"tools":[...],"claude_code_version":...}`
 * - `{"type":"assistant","message":{"id":"msg_...","model":...,"content":[{"type":"text",...}|{"type":"tool_use","name":...}],"usage":{...}},"session_id":...}`,
 *   one event per content block, blocks of one API response sharing `message.id`; an API error
 *   comes as a synthetic one (`"model":"<synthetic>"`, top-level `"error":"rate_limit"`, ...)
 * - `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":...,"is_error":false,...}]}}`
 * - `{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":...,"error_status":429,...}`
 *   while Claude retries a failed API call itself
 * - `{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"|"allowed_warning"|"rejected","resetsAt":<epoch s>,"rateLimitType":"five_hour",...}}`
 * - finally `{"type":"result","subtype":"success"|"error_max_turns"|"error_during_execution",
 *   "is_error":...,"result":...,"total_cost_usd":...,"usage":{...},"num_turns":...,"duration_ms":...,"session_id":...}`
 *
 * {@link StreamJsonReader} takes stdout in chunks cut anywhere (bytes or text), yields each event
 * with what it changed in a {@link ClaudeProgress} summary, keeps lines that are not JSON events
 * as text, and never throws on what Claude prints.
 *
 * @module
 */

import { type DetectLimitOptions, limitFromStreamEvent, type LimitSignal } from "./limits.ts";

/** Token counts, as Claude's result event gives them. */
export interface ClaudeUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

/** The final `result` event, reduced to what a client needs. */
export interface ClaudeResult {
  /** "success" (also for API errors in Claude 2.1.x), "error_max_turns", "error_during_execution"... */
  subtype: string;
  is_error: boolean;
  /** The answer, or the error message; null when the event has none. */
  text: string | null;
  total_cost_usd: number | null;
  usage: ClaudeUsage | null;
  num_turns: number | null;
  duration_ms: number | null;
  duration_api_ms: number | null;
  session_id: string | null;
  /** The HTTP status of the API error that ended the run (Claude 2.1.x), or null. */
  api_error_status: number | null;
}

/** One `system/api_retry` event: Claude is retrying a failed API call by itself. */
export interface ClaudeApiRetry {
  attempt: number;
  max_retries: number | null;
  retry_delay_ms: number | null;
  error_status: number | null;
  /** Claude's name for the error: "rate_limit", "overloaded", "server_error"... */
  error: string | null;
}

/** What a Claude run has done so far, as its stream-json events tell. */
export interface ClaudeProgress {
  session_id: string | null;
  model: string | null;
  claude_code_version: string | null;
  /** Assistant responses so far (API round trips: content blocks of one message count once). */
  turns: number;
  /** Tool uses by tool name. */
  tool_uses: Record<string, number>;
  tool_use_count: number;
  /** Tool results that came back with `is_error: true`. */
  tool_errors: number;
  /** The latest assistant text block (cut to `maxTextLength`). */
  last_assistant_text: string | null;
  /** How many times Claude retried an API call by itself, and the latest retry. */
  api_retries: number;
  last_api_retry: ClaudeApiRetry | null;
  /** The limit the run hit, when it hit one (see limits.ts). */
  limit: LimitSignal | null;
  /** From the final result event; null until it arrives. */
  result: ClaudeResult | null;
  /** JSON events read, and other non-blank lines kept as text. */
  events: number;
  text_lines: number;
}

/** Why a {@link ProgressDelta} was produced; several can hold for one event. */
export type ProgressReason =
  | "init"
  | "turn"
  | "text"
  | "tool_use"
  | "tool_error"
  | "api_retry"
  | "limit"
  | "result";

/**
 * What one event changed that is worth a progress notification. Fields are present only when
 * they changed (`turns`, `tool_uses` and `tool_use_count` come together).
 */
export interface ProgressDelta {
  reasons: ProgressReason[];
  session_id?: string;
  model?: string;
  turns?: number;
  /** The tools this event used, in order. */
  tools?: string[];
  tool_uses?: Record<string, number>;
  tool_use_count?: number;
  tool_errors?: number;
  text?: string;
  api_retry?: ClaudeApiRetry;
  /** A limit newly seen, or one a later event added figures to (a reset time, a retry-after). */
  limit?: LimitSignal;
  result?: ClaudeResult;
}

/** A parsed stream-json event: a JSON object with a string `type`. */
export type ClaudeStreamEvent = Record<string, unknown> & { type: string };

/** What {@link StreamJsonReader.push} yields, one per non-blank line. */
export type StreamJsonItem =
  | { kind: "event"; event: ClaudeStreamEvent; delta: ProgressDelta | null }
  | { kind: "text"; line: string; truncated?: boolean };

/** Options of {@link StreamJsonReader}. */
export interface StreamJsonReaderOptions {
  /** The clock for reset times in limit signals. @default () => new Date() */
  now?: () => Date;
  /** Options for reading limit messages (zone, grace). */
  limits?: DetectLimitOptions;
  /**
   * A line longer than this (a tool result with a huge file) is not parsed: its first 200
   * characters come back as a truncated text item and the rest is skipped.
   * @default 16_777_216
   */
  maxLineLength?: number;
  /** How much of an assistant text block the progress keeps. @default 4000 */
  maxTextLength?: number;
}

/**
 * Reads Claude's stream-json stdout as it arrives.
 *
 * @example
 * ```ts
 * const reader = new StreamJsonReader();
 * for await (const chunk of child.stdout) {
 *   for (const item of reader.push(chunk)) {
 *     if (item.kind === "event" && item.delta) notify("claude.event", item.delta);
 *   }
 * }
 * reader.end();
 * const { result } = reader.progress; // cost, usage, result text
 * ```
 */
export class StreamJsonReader {
  /** The start of a line still waiting for its newline, in the pieces it came in. */
  #pending: string[] = [];
  #pendingLength = 0;
  #discarding = false;
  #decoder = new TextDecoder();
  #messageIds = new Set<string>();
  #rejectedResetsAt: number | null = null;
  #progress: ClaudeProgress = {
    session_id: null,
    model: null,
    claude_code_version: null,
    turns: 0,
    tool_uses: {},
    tool_use_count: 0,
    tool_errors: 0,
    last_assistant_text: null,
    api_retries: 0,
    last_api_retry: null,
    limit: null,
    result: null,
    events: 0,
    text_lines: 0,
  };
  readonly #now: () => Date;
  readonly #limits: DetectLimitOptions;
  readonly #maxLine: number;
  readonly #maxText: number;

  constructor(options: StreamJsonReaderOptions = {}) {
    this.#now = options.now ?? (() => new Date());
    this.#limits = options.limits ?? {};
    this.#maxLine = options.maxLineLength ?? 16_777_216;
    this.#maxText = options.maxTextLength ?? 4000;
  }

  /** A copy of the summary so far. */
  get progress(): ClaudeProgress {
    return structuredClone(this.#progress);
  }

  /** The running totals a progress notification carries, without copying the whole summary. */
  get totals(): Pick<ClaudeProgress, "turns" | "tool_use_count" | "session_id" | "model"> & {
    tool_uses: Record<string, number>;
  } {
    const p = this.#progress;
    return {
      turns: p.turns,
      tool_uses: { ...p.tool_uses },
      tool_use_count: p.tool_use_count,
      session_id: p.session_id,
      model: p.model,
    };
  }

  /**
   * Feeds a chunk of stdout (bytes may split a UTF-8 character; text may split a line) and
   * returns the items for the lines it completed.
   */
  push(chunk: string | Uint8Array): StreamJsonItem[] {
    const text = typeof chunk === "string" ? chunk : this.#decoder.decode(chunk, { stream: true });
    return this.#take(text);
  }

  /** Ends the input: the last line counts even without a newline. */
  end(): StreamJsonItem[] {
    const items = this.#take(this.#decoder.decode());
    const last = this.#pending.join("");
    this.#pending = [];
    this.#pendingLength = 0;
    if (!this.#discarding && last.trim() !== "") items.push(this.#line(last));
    this.#discarding = false;
    return items;
  }

  #take(text: string): StreamJsonItem[] {
    const items: StreamJsonItem[] = [];
    let start = 0;
    for (;;) {
      // Only the new text is searched: a long line arriving in many chunks is joined once, when
      // its newline comes, not rescanned on every chunk.
      const newline = text.indexOf("\n", start);
      if (newline === -1) break;
      const piece = text.slice(start, newline);
      const line = this.#pending.length > 0 ? this.#pending.join("") + piece : piece;
      this.#pending = [];
      this.#pendingLength = 0;
      start = newline + 1;
      if (this.#discarding) {
        this.#discarding = false; // the rest of an over-long line ends here
      } else if (line.length > this.#maxLine) {
        items.push(this.#overlong(line));
      } else if (line.trim() !== "") {
        items.push(this.#line(line));
      }
    }
    const rest = text.slice(start);
    if (rest.length > 0 && !this.#discarding) {
      this.#pending.push(rest);
      this.#pendingLength += rest.length;
      if (this.#pendingLength > this.#maxLine) {
        items.push(this.#overlong(this.#pending.join("")));
        this.#pending = [];
        this.#pendingLength = 0;
        this.#discarding = true;
      }
    }
    return items;
  }

  #overlong(line: string): StreamJsonItem {
    this.#progress.text_lines++;
    return { kind: "text", line: line.slice(0, 200), truncated: true };
  }

  #line(raw: string): StreamJsonItem {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trimStart().startsWith("{")) {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (e) {
        if (!(e instanceof SyntaxError)) throw e;
      }
      if (isEvent(value)) {
        this.#progress.events++;
        return { kind: "event", event: value, delta: this.onEvent(value) };
      }
    }
    this.#progress.text_lines++;
    return { kind: "text", line };
  }

  /**
   * Applies one parsed event to the progress; returns what changed that is worth notifying, or
   * null (partial-message chunks, plain tool results, unknown event types).
   */
  onEvent(event: unknown): ProgressDelta | null {
    if (!isEvent(event)) return null;
    const p = this.#progress;
    const delta: ProgressDelta = { reasons: [] };
    const sessionId = str(event.session_id);
    if (sessionId !== null && p.session_id === null) {
      p.session_id = sessionId;
      delta.session_id = sessionId;
    }

    switch (event.type) {
      case "system":
        if (event.subtype === "init") {
          p.model = str(event.model) ?? p.model;
          p.claude_code_version = str(event.claude_code_version) ?? p.claude_code_version;
          delta.reasons.push("init");
          if (p.session_id !== null) delta.session_id = p.session_id;
          if (p.model !== null) delta.model = p.model;
        } else if (event.subtype === "api_retry") {
          const retry: ClaudeApiRetry = {
            attempt: num(event.attempt) ?? p.api_retries + 1,
            max_retries: num(event.max_retries),
            retry_delay_ms: num(event.retry_delay_ms),
            error_status: num(event.error_status),
            error: str(event.error),
          };
          p.api_retries++;
          p.last_api_retry = retry;
          delta.reasons.push("api_retry");
          delta.api_retry = retry;
        }
        break;
      case "assistant":
        this.#assistant(event, delta);
        break;
      case "user":
        for (const block of contentBlocks(event)) {
          if (block.type === "tool_result" && block.is_error === true) {
            p.tool_errors++;
            delta.tool_errors = p.tool_errors;
            if (!delta.reasons.includes("tool_error")) delta.reasons.push("tool_error");
          }
        }
        break;
      case "rate_limit_event": {
        const info = isRecord(event.rate_limit_info) ? event.rate_limit_info : {};
        if (info.status === "rejected" && typeof info.resetsAt === "number") {
          this.#rejectedResetsAt = info.resetsAt;
        }
        break;
      }
      case "result":
        p.result = resultOf(event);
        delta.reasons.push("result");
        delta.result = p.result;
        break;
    }

    this.#limit(event, delta);
    return delta.reasons.length > 0 ? delta : null;
  }

  #assistant(event: ClaudeStreamEvent, delta: ProgressDelta): void {
    const p = this.#progress;
    // A synthetic message carries an API error, not an answer: it is read only for its limit.
    if (typeof event.error === "string") return;
    const message = isRecord(event.message) ? event.message : {};
    const model = str(message.model);
    if (p.model === null && model !== null && model !== "<synthetic>") {
      p.model = model;
      delta.model = model;
    }
    const id = str(message.id);
    if (id === null || !this.#messageIds.has(id)) {
      if (id !== null) this.#messageIds.add(id);
      p.turns++;
      delta.reasons.push("turn");
      delta.turns = p.turns;
    }
    for (const block of contentBlocks(event)) {
      if (block.type === "text" && typeof block.text === "string" && block.text.trim() !== "") {
        const text = block.text.length > this.#maxText
          ? `${block.text.slice(0, this.#maxText)}…`
          : block.text;
        p.last_assistant_text = text;
        delta.text = text;
        if (!delta.reasons.includes("text")) delta.reasons.push("text");
      } else if (block.type === "tool_use") {
        const name = str(block.name) ?? "unknown";
        p.tool_uses[name] = (p.tool_uses[name] ?? 0) + 1;
        p.tool_use_count++;
        (delta.tools ??= []).push(name);
        delta.tool_uses = { ...p.tool_uses };
        delta.tool_use_count = p.tool_use_count;
        if (!delta.reasons.includes("tool_use")) delta.reasons.push("tool_use");
      }
    }
    if (delta.reasons.includes("turn") || delta.reasons.includes("tool_use")) {
      delta.turns = p.turns;
      delta.tool_uses = { ...p.tool_uses };
      delta.tool_use_count = p.tool_use_count;
    }
  }

  /**
   * Records a limit the event reveals. A kind is reported once; again only when a later event
   * adds a figure: the exact reset epoch of a `rate_limit_event`, or the delay of Claude's last
   * `api_retry` (which honours the server's retry-after) as the retry-after of a rate limit.
   */
  #limit(event: ClaudeStreamEvent, delta: ProgressDelta): void {
    const found = limitFromStreamEvent(event, this.#now(), this.#limits);
    if (found === null) return;
    const signal = { ...found } as LimitSignal;
    const retry = this.#progress.last_api_retry;
    if (
      signal.kind === "rate_limit" && signal.retry_after_seconds === null && retry !== null &&
      retry.retry_delay_ms !== null && (retry.error_status === 429 || retry.error_status === 529)
    ) {
      signal.retry_after_seconds = retry.retry_delay_ms / 1000;
    }
    if (
      signal.kind === "usage_limit" && this.#rejectedResetsAt !== null &&
      event.type !== "rate_limit_event"
    ) {
      // The event's epoch is to the second; a printed "3:07pm" only to the minute.
      signal.resets_at = new Date(this.#rejectedResetsAt * 1000).toISOString();
      signal.retryable = true;
    }
    const old = this.#progress.limit;
    if (old !== null && old.kind === signal.kind && !addsFigures(old, signal)) return;
    const merged = old !== null && old.kind === signal.kind ? mergeLimits(old, signal) : signal;
    this.#progress.limit = merged;
    delta.limit = merged;
    delta.reasons.push("limit");
  }
}

function addsFigures(old: LimitSignal, next: LimitSignal): boolean {
  if (old.kind === "usage_limit" && next.kind === "usage_limit") {
    return old.resets_at === null && next.resets_at !== null;
  }
  if (old.kind === "rate_limit" && next.kind === "rate_limit") {
    return old.retry_after_seconds === null && next.retry_after_seconds !== null;
  }
  if (old.kind === "token_limit" && next.kind === "token_limit") {
    return old.max_output_tokens === null && next.max_output_tokens !== null;
  }
  return false;
}

/** The later signal, keeping any figure only the earlier one had. */
function mergeLimits(old: LimitSignal, next: LimitSignal): LimitSignal {
  const merged = { ...next } as Record<string, unknown>;
  for (const [key, value] of Object.entries(old)) {
    if (merged[key] === null && value !== null) merged[key] = value;
  }
  return merged as unknown as LimitSignal;
}

function resultOf(event: ClaudeStreamEvent): ClaudeResult {
  const usage = isRecord(event.usage)
    ? {
      input_tokens: num(event.usage.input_tokens) ?? 0,
      output_tokens: num(event.usage.output_tokens) ?? 0,
      cache_creation_input_tokens: num(event.usage.cache_creation_input_tokens) ?? 0,
      cache_read_input_tokens: num(event.usage.cache_read_input_tokens) ?? 0,
    }
    : null;
  return {
    subtype: str(event.subtype) ?? "unknown",
    is_error: event.is_error === true,
    text: str(event.result),
    total_cost_usd: num(event.total_cost_usd),
    usage,
    num_turns: num(event.num_turns),
    duration_ms: num(event.duration_ms),
    duration_api_ms: num(event.duration_api_ms),
    session_id: str(event.session_id),
    api_error_status: num(event.api_error_status),
  };
}

function contentBlocks(event: ClaudeStreamEvent): Record<string, unknown>[] {
  const message = isRecord(event.message) ? event.message : {};
  return Array.isArray(message.content) ? message.content.filter(isRecord) : [];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isEvent(value: unknown): value is ClaudeStreamEvent {
  return isRecord(value) && typeof value.type === "string";
}

function str(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}
