/**
 * Watches one run of a Claude job's output and turns what it sees into
 * notifications: `claude.event` for progress read from stream-json, and
 * `error.token_limit_exceeded` / `error.rate_limit_exceeded` the moment a limit
 * shows up, with the figures parsed from it. At the end it gives the summary
 * that `process.completed` carries as `claude`.
 *
 * @module
 */
import type { ClaudeInvocation } from "./invocation.ts";
import { type LimitSignal, LimitWatcher } from "./limits.ts";
import { type ClaudeResult, type ProgressDelta, StreamJsonReader } from "./stream_json.ts";

/** A notification for the job to send (it adds job_id and seq). */
export type ClaudeNotice =
  | { method: "claude.event"; params: ClaudeEventFields }
  | { method: "error.token_limit_exceeded"; params: LimitFields }
  | { method: "error.rate_limit_exceeded"; params: LimitFields };

/** Progress after one event: what changed (`reasons`) and the totals so far. */
export interface ClaudeEventFields {
  reasons: string[];
  turns: number;
  tool_uses: Record<string, number>;
  tool_use_count: number;
  session_id: string | null;
  model: string | null;
  /** The tools this event used. */
  tools?: string[];
  /** The latest assistant text, bounded. */
  text?: string;
  result?: ClaudeResult;
}

/** A limit as clients get it: the signal's fields (see limits.ts) and the message seen. */
export type LimitFields = Omit<LimitSignal, "matched"> & { message: string };

/** What `process.completed.claude` holds. */
export interface ClaudeSummary {
  /** The result event's answer or error text; null without stream-json or before a result. */
  result: string | null;
  is_error: boolean | null;
  subtype: string | null;
  cost_usd: number | null;
  usage: Record<string, number> | null;
  num_turns: number | null;
  session_id: string | null;
  model: string | null;
  tool_use_count: number;
  /** The first limit the run hit, with its figures; null when none. */
  limit: LimitFields | null;
}

export class ClaudeWatcher {
  readonly #stream: StreamJsonReader | null;
  readonly #stdoutLimits: LimitWatcher | null;
  readonly #stderrLimits: LimitWatcher;
  /** Limit kinds already told, so a message repeated on both streams is told once. */
  readonly #told = new Set<string>();
  #limit: LimitSignal | null = null;

  constructor(
    invocation: Pick<ClaudeInvocation, "outputFormat">,
    options: { now?: () => Date } = {},
  ) {
    // `json` is one result event on one line: read like stream-json.
    const streaming = invocation.outputFormat !== "text";
    this.#stream = streaming ? new StreamJsonReader({ now: options.now }) : null;
    // Without stream-json Claude prints its limit messages on stdout as plain text (2.1.x).
    this.#stdoutLimits = streaming ? null : new LimitWatcher({ now: options.now });
    this.#stderrLimits = new LimitWatcher({ now: options.now });
  }

  /** The first limit seen, or null. */
  get limit(): LimitSignal | null {
    return this.#limit;
  }

  stdout(text: string): ClaudeNotice[] {
    if (this.#stdoutLimits) return this.#limits(this.#stdoutLimits.push(text));
    return this.#events(this.#stream!.push(text));
  }

  stderr(text: string): ClaudeNotice[] {
    return this.#limits(this.#stderrLimits.push(text));
  }

  /** The run's output has ended: what its last lines say. */
  end(): ClaudeNotice[] {
    const notices = this.#limits(this.#stderrLimits.end());
    if (this.#stdoutLimits) notices.push(...this.#limits(this.#stdoutLimits.end()));
    else notices.push(...this.#events(this.#stream!.end()));
    return notices;
  }

  summary(): ClaudeSummary {
    const progress = this.#stream?.progress;
    const result = progress?.result ?? null;
    return {
      result: result?.text ?? null,
      is_error: result?.is_error ?? null,
      subtype: result?.subtype ?? null,
      cost_usd: result?.total_cost_usd ?? null,
      usage: result?.usage ? { ...result.usage } : null,
      num_turns: result?.num_turns ?? null,
      session_id: progress?.session_id ?? null,
      model: progress?.model ?? null,
      tool_use_count: progress?.tool_use_count ?? 0,
      limit: this.#limit && limitFields(this.#limit),
    };
  }

  #events(items: ReturnType<StreamJsonReader["push"]>): ClaudeNotice[] {
    const notices: ClaudeNotice[] = [];
    for (const item of items) {
      if (item.kind !== "event" || !item.delta) continue;
      const delta: ProgressDelta = item.delta;
      if (delta.limit) notices.push(...this.#limits([delta.limit]));
      const reasons = delta.reasons.filter((reason) => reason !== "limit");
      if (reasons.length === 0) continue;
      notices.push({
        method: "claude.event",
        params: {
          reasons,
          ...this.#stream!.totals,
          ...(delta.tools ? { tools: delta.tools } : {}),
          ...(delta.text !== undefined ? { text: delta.text } : {}),
          ...(delta.result ? { result: delta.result } : {}),
        },
      });
    }
    return notices;
  }

  #limits(signals: LimitSignal[]): ClaudeNotice[] {
    const notices: ClaudeNotice[] = [];
    for (const signal of signals) {
      // A later event may add figures (an exact reset time): keep them for the summary.
      if (this.#limit === null || this.#limit.kind === signal.kind) this.#limit = signal;
      if (this.#told.has(signal.kind)) continue;
      this.#told.add(signal.kind);
      const method = signal.kind === "token_limit" || signal.kind === "context_overflow"
        ? "error.token_limit_exceeded"
        : "error.rate_limit_exceeded";
      notices.push({ method, params: limitFields(signal) });
    }
    return notices;
  }
}

function limitFields(signal: LimitSignal): LimitFields {
  const { matched, ...fields } = signal;
  return { ...fields, message: matched };
}
