/**
 * Rendering a template: its placeholders replaced by the prompt, the token
 * limit Claude hit, a word budget derived from it and the attempt number.
 *
 * @module
 */
import type { Placeholder, Template } from "./loader.ts";

/**
 * Claude Code's own output limit when CLAUDE_CODE_MAX_OUTPUT_TOKENS is not set (its message:
 * "response exceeded the 32000 output token maximum"); used when the limit hit is not known.
 */
export const DEFAULT_MAX_OUTPUT_TOKENS = 32_000;

/**
 * Words asked for per token of the limit. English prose runs at about 0.75 words per token and
 * code at far fewer; 0.6 leaves room for markup, code and the tool calls around the answer.
 */
export const WORDS_PER_TOKEN = 0.6;

/** The attempt a template is rendered for when none is given: the first retry. */
export const DEFAULT_ATTEMPT = 2;

/**
 * The word budget for an answer that must fit in `maxOutputTokens`: ~0.6 words per token, rounded
 * down to a round number (10s below 1,000 words, 100s from there) so it reads as a target rather
 * than a computed figure. At least 10.
 *
 * @example
 * ```ts
 * wordBudget(32000); // 19200
 * wordBudget(1000); // 600
 * ```
 */
export function wordBudget(maxOutputTokens: number): number {
  const words = maxOutputTokens * WORDS_PER_TOKEN;
  const step = words < 1000 ? 10 : 100;
  return Math.max(10, Math.floor(words / step) * step);
}

/** What a template's placeholders are filled with. */
export interface RenderValues {
  /** The original prompt: substituted as it is. */
  prompt: string;
  /** The output-token limit Claude hit. @default DEFAULT_MAX_OUTPUT_TOKENS */
  max_output_tokens?: number;
  /** The attempt the rendered prompt is for (1 is the original run). @default DEFAULT_ATTEMPT */
  attempt?: number;
}

/** A rendered prompt and the figures that went into it. */
export interface Rendered {
  text: string;
  max_output_tokens: number;
  word_budget: number;
  attempt: number;
}

/**
 * Fills in a template. Values are substituted verbatim in one pass: text inside the prompt that
 * looks like a placeholder (`{{word_budget}}`) stays as it is.
 *
 * @example
 * ```ts
 * const { text } = renderTemplate(set.get("concise")!, {
 *   prompt: "Explain the build",
 *   max_output_tokens: 8000,
 * });
 * ```
 * @throws {RangeError} when max_output_tokens or attempt is not a whole number of at least 1.
 */
export function renderTemplate(template: Template, values: RenderValues): Rendered {
  const maxOutputTokens = values.max_output_tokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
  const attempt = values.attempt ?? DEFAULT_ATTEMPT;
  for (const [name, value] of [["max_output_tokens", maxOutputTokens], ["attempt", attempt]]) {
    if (!Number.isSafeInteger(value) || (value as number) < 1) {
      throw new RangeError(
        `Cannot render template "${template.name}": ${name} must be a whole number of at least 1, ` +
          `got ${value}`,
      );
    }
  }
  const budget = wordBudget(maxOutputTokens);
  const fill: Record<Placeholder, string> = {
    prompt: values.prompt,
    max_output_tokens: String(maxOutputTokens),
    word_budget: String(budget),
    attempt: String(attempt),
  };
  const text = template.parts.map((part) => "text" in part ? part.text : fill[part.placeholder])
    .join("");
  return { text, max_output_tokens: maxOutputTokens, word_budget: budget, attempt };
}
