/**
 * The `redact_secrets` built-in (CC_EXECUTOR_REDACT_SECRETS=on): scrubs
 * secrets from every chunk of output before it is sent or stored, replacing
 * each with `[REDACTED:<name>]`:
 *
 * - the values of the variables named in CC_EXECUTOR_SECRET_ENV_VARS, from the
 *   server's environment and from the job's request (values shorter than 8
 *   characters are ignored: they would match ordinary text);
 * - common token shapes: GitHub (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`,
 *   `github_pat_`), Anthropic (`sk-ant-`), OpenAI (`sk-`, `sk-proj-`), AWS
 *   access key ids (`AKIA`/`ASIA`), Slack (`xoxb-`...), the token of an
 *   `Authorization: Bearer` header, and private key blocks (`-----BEGIN ...
 *   PRIVATE KEY-----` to its `-----END`).
 *
 * A secret can be cut anywhere between two chunks (or several), so the hook
 * holds back the shortest end of the text that could still be the start of
 * one, and sends it with the next chunk once that is decided (or at the end of
 * the stream). Held text is bounded: {@linkcode MAX_HELD} characters (more only
 * for a configured secret longer than that), and {@linkcode MAX_HELD_PRIVATE_KEY}
 * for a private key block still open, past which the held text is replaced
 * whole and the rest of the block dropped up to its end. Within those bounds,
 * the output of any split equals the redaction of the whole text at once.
 *
 * @module
 */
import type { Hook } from "../hook.ts";
import type { HookContext, HookResult } from "../types.ts";

/** The built-in's name, as `hooks list` and records show it. */
export const REDACT_SECRETS = "redact_secrets";

/** Configured values shorter than this are not scrubbed (too likely to match ordinary text). */
export const MIN_SECRET_LENGTH = 8;

/** The most text held back at the end of a chunk (characters), unless a secret is longer. */
export const MAX_HELD = 4096;

/** The most text held back for a private key block whose end has not been seen. */
export const MAX_HELD_PRIVATE_KEY = 65536;

/** A value to scrub and the variable it came from (the name goes in the replacement). */
export interface Secret {
  name: string;
  value: string;
}

/**
 * One stream's state between calls, kept in `ctx.state` (plain JSON: it would survive a copy).
 * All fields are absent at the start.
 */
export interface RedactState {
  /** Text not yet sent: it may be the start of a secret. */
  held?: string;
  /** The last character sent before `held`, for the patterns that look at what precedes them. */
  prev?: string;
  /** Inside a private key block that was too long to hold: drop text up to its end. */
  inKey?: boolean;
}

// ---- the patterns -------------------------------------------------------------------------------

/** A token pattern: a whole match, and a start still waiting for the text that decides it. */
interface TokenRule {
  name: string;
  /** A complete match (non-capturing groups only). */
  full: string;
  /**
   * A start of a match that more text could still complete or lengthen, up to the end of the text
   * (anchored there with `$`): a prefix of the fixed part, or the fixed part and a body shorter
   * than its longest.
   */
  partial: string;
  /** The token itself when the match also holds a prefix to keep (a header). */
  replace?: (match: string) => string;
}

/** Nested optional groups: `a(?:b(?:c)?)?` matches every non-empty prefix of `abc`. */
function prefixes(units: readonly string[]): string {
  return units.reduceRight((rest, unit) => rest === "" ? unit : `${unit}(?:${rest})?`, "");
}

const chars = (word: string) => [...word];

/** Token characters after `Bearer`, as RFC 6750 allows them. */
const BEARER_TOKEN = "[A-Za-z0-9._~+/=-]";

/** Before a token: not a letter or digit (so `task-...` is not an `sk-` key). */
const ALNUM_BEFORE = "(?<![A-Za-z0-9])";
const KEY_BEFORE = "(?<![A-Za-z0-9_-])";

/** Body lengths are bounded so that a partial token never needs more than MAX_HELD. */
const TOKEN_RULES: readonly TokenRule[] = [
  {
    name: "github_token",
    full: `${ALNUM_BEFORE}gh[pousr]_[A-Za-z0-9]{20,255}`,
    partial: `${ALNUM_BEFORE}${prefixes(["g", "h", "[pousr]", "_[A-Za-z0-9]{0,254}"])}`,
  },
  {
    name: "github_token",
    full: `${ALNUM_BEFORE}github_pat_[A-Za-z0-9_]{20,255}`,
    partial: `${ALNUM_BEFORE}${prefixes([...chars("github_pat_"), "[A-Za-z0-9_]{0,254}"])}`,
  },
  // Before openai_api_key, which would match these keys too.
  {
    name: "anthropic_api_key",
    full: `${KEY_BEFORE}sk-ant-[A-Za-z0-9_-]{20,255}`,
    partial: `${KEY_BEFORE}${prefixes([...chars("sk-ant-"), "[A-Za-z0-9_-]{0,254}"])}`,
  },
  {
    name: "openai_api_key",
    full: `${KEY_BEFORE}sk-[A-Za-z0-9_-]{20,255}`,
    partial: `${KEY_BEFORE}${prefixes([...chars("sk-"), "[A-Za-z0-9_-]{0,254}"])}`,
  },
  {
    name: "aws_access_key_id",
    full: `${ALNUM_BEFORE}(?:AKIA|ASIA)[A-Z0-9]{16}`,
    partial: `${ALNUM_BEFORE}${prefixes(["A", "[KS]", "I", "A", "[A-Z0-9]{0,15}"])}`,
  },
  {
    name: "slack_token",
    full: `${ALNUM_BEFORE}xox[abprs]-[A-Za-z0-9-]{10,255}`,
    partial: `${ALNUM_BEFORE}${prefixes(["x", "o", "x", "[abprs]", "-[A-Za-z0-9-]{0,254}"])}`,
  },
  {
    // `Authorization: Bearer x`, `"authorization": "Bearer x"`, `Proxy-Authorization: bearer x`.
    name: "bearer_token",
    full: `(?i:${ALNUM_BEFORE}authorization["']?[ \\t]{0,8}[:=][ \\t]{0,8}["']?bearer[ \\t]{1,8}` +
      `${BEARER_TOKEN}{1,1024})`,
    partial: `(?i:${ALNUM_BEFORE}${
      prefixes([
        ...chars("authorization"),
        `["']?`,
        "[ \\t]{0,8}",
        "[:=]",
        "[ \\t]{0,8}",
        `["']?`,
        ...chars("bearer"),
        "[ \\t]{1,8}",
        `${BEARER_TOKEN}{0,1023}`,
      ])
    })`,
    replace: (match) => match.replace(new RegExp(`${BEARER_TOKEN}+$`), "[REDACTED:bearer_token]"),
  },
  {
    // An unfinished block (the output ended inside it) is redacted to the end. A block whose end
    // has not been seen yet is held by `#openKey`, not by this partial (which covers the header).
    name: "private_key",
    full: "-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY-----[\\s\\S]*?" +
      "(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY-----|$)",
    partial: prefixes([...chars("-----BEGIN"), "[A-Z0-9 ]{0,51}-{0,4}"]),
  },
];

/** How far back from the end a token partial can start: the longest any of them can be. */
const TOKEN_REACH = 1100;

/** Every token match contains one of these (case folded): without one, no token can be there. */
const ANCHOR = /gh[pousr]_|github_pat_|sk-|AKIA|ASIA|xox[abprs]-|authorization|-----BEGIN/i;
/** The longest anchor: a partial without a whole anchor starts within this many characters. */
const ANCHOR_REACH = "authorization".length;

const KEY_HEADER = /-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY-----/g;
const KEY_FOOTER = /-----END[A-Z0-9 ]{0,40}PRIVATE KEY-----/g;
/** The end of a text that could be the start of a footer. */
const FOOTER_START = new RegExp(`${prefixes([...chars("-----END"), "[A-Z0-9 ]{0,51}-{0,4}"])}$`);

const TOKEN_PARTIAL = new RegExp(`(?:${TOKEN_RULES.map((r) => `(${r.partial})`).join("|")})$`, "g");

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

/** A position where the text may or may not hold a secret, depending on what follows. */
interface Undecided {
  at: number;
  /** The pattern or variable it may be, for the replacement if it is held too long. */
  name: string;
  /** An open private key block, which may be held longer. */
  key: boolean;
}

// ---- the redactor -------------------------------------------------------------------------------

/**
 * Redacts one set of secrets (and the token patterns) from text given whole (`redact`) or chunk by
 * chunk (`push`). Reusable across streams: all per-stream data is in the state passed in.
 *
 * @example
 * ```ts
 * const redactor = new Redactor([{ name: "GITHUB_TOKEN", value: "s3cr3t-value" }]);
 * const state: RedactState = {};
 * redactor.push(state, "token: s3cr", false); // "token: " (the rest may be the secret)
 * redactor.push(state, "3t-value\n", false); // "[REDACTED:GITHUB_TOKEN]\n"
 * redactor.push(state, "", true); // "" (nothing left)
 * ```
 */
export class Redactor {
  readonly #literals: Secret[];
  readonly #names: string[];
  readonly #replacers: ((match: string) => string)[];
  readonly #all: RegExp;
  readonly #maxHeld: number;

  /** `secrets` shorter than MIN_SECRET_LENGTH are ignored; of equal values, the first name wins. */
  constructor(secrets: readonly Secret[]) {
    const seen = new Set<string>();
    this.#literals = secrets
      .filter((s) => s.value.length >= MIN_SECRET_LENGTH && !seen.has(s.value) && seen.add(s.value))
      // Longest first: of two secrets that start alike, the longer one wins where both match.
      .sort((a, b) => b.value.length - a.value.length);
    const sources = [
      ...this.#literals.map((s) => escapeRegExp(s.value)),
      ...TOKEN_RULES.map((r) => r.full),
    ];
    this.#names = [...this.#literals.map((s) => s.name), ...TOKEN_RULES.map((r) => r.name)];
    this.#replacers = [
      ...this.#literals.map((s) => () => `[REDACTED:${s.name}]`),
      ...TOKEN_RULES.map((r) => r.replace ?? (() => `[REDACTED:${r.name}]`)),
    ];
    this.#all = new RegExp(sources.map((source) => `(${source})`).join("|"), "g");
    this.#maxHeld = Math.max(MAX_HELD, ...this.#literals.map((s) => s.value.length));
  }

  /** How many configured values are scrubbed (after dropping short and duplicate ones). */
  get secretCount(): number {
    return this.#literals.length;
  }

  /** The whole text redacted at once: what any split of it through `push` adds up to. */
  redact(text: string): string {
    return this.push({}, text, true);
  }

  /**
   * The text to send for one chunk; `state` carries what is held back to the next call. With
   * `final`, everything held is released (redacted) and `state` is left empty.
   */
  push(state: RedactState, data: string, final: boolean): string {
    if (state.inKey) return this.#inKey(state, data, final);
    const held = state.held ?? "";
    const prev = state.prev ?? "";
    if (held === "" && !final && this.#nothingToFind(data)) {
      // The common case: no configured secret, no token anchor anywhere near. Sent as it is.
      if (data !== "") state.prev = data.at(-1);
      return data;
    }
    const text = prev + held + data;
    const begin = prev.length;
    let out = "";
    let pos = begin;
    let undecided = final ? null : this.#undecided(text, pos);
    const all = this.#all;
    all.lastIndex = pos;
    while (true) {
      const limit = undecided?.at ?? text.length;
      const match = all.exec(text);
      if (match === null || match.index >= limit) {
        out += text.slice(pos, limit);
        pos = limit;
        break;
      }
      // Before the first undecided position, a match is final whatever follows (see #undecided).
      const rule = match.findIndex((group, i) => i > 0 && group !== undefined) - 1;
      out += text.slice(pos, match.index) + this.#replacers[rule]!(match[0]);
      pos = match.index + match[0].length;
      all.lastIndex = pos;
      // Positions inside the match are never scanned: look again past it.
      if (undecided !== null && pos > undecided.at) undecided = this.#undecided(text, pos);
    }
    const rest = text.slice(pos);
    if (final) {
      delete state.held;
      delete state.prev;
      return out;
    }
    if (
      undecided !== null && rest.length > (undecided.key ? MAX_HELD_PRIVATE_KEY : this.#maxHeld)
    ) {
      // Held too long: give up waiting, and send the held text as one redaction rather than risk
      // it. An open key block keeps being dropped until its end.
      out += `[REDACTED:${undecided.name}]`;
      if (undecided.key) {
        state.inKey = true;
        state.held = FOOTER_START.exec(rest)?.[0] ?? "";
        delete state.prev;
      } else {
        state.held = "";
        state.prev = rest.at(-1);
      }
      return out;
    }
    state.held = rest;
    if (pos > 0) state.prev = text[pos - 1];
    return out;
  }

  /** True when `data` can hold no secret, not even the start of one (and nothing is held). */
  #nothingToFind(data: string): boolean {
    if (this.#literals.length > 0 || ANCHOR.test(data)) return false;
    // No whole anchor: a token could only start in the last few characters (as a prefix of one).
    // Short chunks take the long way, which sees the character before them.
    if (data.length <= ANCHOR_REACH) return data === "";
    TOKEN_PARTIAL.lastIndex = data.length - ANCHOR_REACH;
    return !TOKEN_PARTIAL.test(data);
  }

  /**
   * The first position at or after `from` where whether a secret starts depends on text not yet
   * seen: a configured value or a token cut short by the end of `text` (or whose body reaches it
   * and could go on), or a private key block whose end has not come. Null when there is none.
   * Every such start reaches the end of `text`, so only its last stretch is searched.
   */
  #undecided(text: string, from: number): Undecided | null {
    let found: Undecided | null = null;
    const consider = (at: number, name: string, key: boolean) => {
      if (found === null || at < found.at) found = { at, name, key };
    };
    TOKEN_PARTIAL.lastIndex = Math.max(from, text.length - TOKEN_REACH);
    const token = TOKEN_PARTIAL.exec(text);
    if (token !== null) {
      consider(
        token.index,
        TOKEN_RULES[token.findIndex((g, i) => i > 0 && g !== undefined) - 1]!.name,
        false,
      );
    }
    for (const { name, value } of this.#literals) {
      const first = value.charCodeAt(0);
      for (let i = Math.max(from, text.length - value.length + 1); i < text.length; i++) {
        if (text.charCodeAt(i) === first && value.startsWith(text.slice(i))) {
          consider(i, name, false);
          break;
        }
      }
    }
    const key = openKey(text, from);
    if (key !== null) consider(key, "private_key", true);
    return found;
  }

  /** Inside a key block given up on: nothing is sent until its footer, then the rest goes on. */
  #inKey(state: RedactState, data: string, final: boolean): string {
    const text = (state.held ?? "") + data;
    KEY_FOOTER.lastIndex = 0;
    const footer = KEY_FOOTER.exec(text);
    if (footer === null) {
      if (final) {
        delete state.inKey;
        delete state.held;
        delete state.prev;
      } else {
        state.held = FOOTER_START.exec(text)?.[0] ?? "";
      }
      return "";
    }
    delete state.inKey;
    state.held = "";
    state.prev = "-";
    return this.push(state, text.slice(footer.index + footer[0].length), final);
  }
}

/** The first private key header at or after `from` with no footer after it, or null. */
function openKey(text: string, from: number): number | null {
  KEY_HEADER.lastIndex = from;
  for (let header = KEY_HEADER.exec(text); header !== null; header = KEY_HEADER.exec(text)) {
    KEY_FOOTER.lastIndex = header.index + header[0].length;
    const footer = KEY_FOOTER.exec(text);
    if (footer === null) return header.index;
    // A closed block is one match: a header inside it ends at the same footer.
    KEY_HEADER.lastIndex = footer.index + footer[0].length;
  }
  return null;
}

// ---- the hook -----------------------------------------------------------------------------------

/**
 * The values to scrub: each named variable's value in each environment, in the order given (the
 * name is what the replacement shows). A value with surrounding white space (read from a file,
 * say) is scrubbed with and without it.
 */
export function secretsFrom(
  names: readonly string[],
  ...envs: readonly Record<string, string>[]
): Secret[] {
  const secrets: Secret[] = [];
  for (const name of names) {
    for (const env of envs) {
      const value = env[name];
      if (value === undefined) continue;
      secrets.push({ name, value });
      const trimmed = value.trim();
      if (trimmed !== value) secrets.push({ name, value: trimmed });
    }
  }
  return secrets;
}

export interface RedactSecretsOptions {
  /** Variables whose values are scrubbed (CC_EXECUTOR_SECRET_ENV_VARS). */
  secretEnvVars: readonly string[];
  /** The server's environment (a snapshot; the hook never reads Deno.env). */
  env: Record<string, string>;
  /** Milliseconds one call may take. */
  timeoutMs: number;
}

/** Redactors by their secrets: a job's chunks, and jobs with the same env, share one. */
const CACHE_SIZE = 16;

/**
 * An output hook that redacts secrets from each chunk (see the module documentation), holding the
 * start of a possible secret in `ctx.state` until the next chunk. Its `on_failure` is `block`: if
 * it fails, the runner withholds the chunk rather than let a secret through.
 */
export function redactSecretsHook(options: RedactSecretsOptions): Hook {
  const cache = new Map<string, Redactor>();
  const redactorFor = (requestEnv: Record<string, string>): Redactor => {
    const secrets = secretsFrom(options.secretEnvVars, options.env, requestEnv);
    const key = JSON.stringify(secrets.map((s) => [s.name, s.value]));
    let redactor = cache.get(key);
    if (redactor) {
      // Most recently used last, so the oldest is the one dropped.
      cache.delete(key);
    } else {
      redactor = new Redactor(secrets);
      if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
    }
    cache.set(key, redactor);
    return redactor;
  };
  return {
    name: REDACT_SECRETS,
    point: "output",
    source: { kind: "builtin", location: REDACT_SECRETS },
    timeoutMs: options.timeoutMs,
    onFailure: "block",
    required: false,
    invoke(ctx: HookContext): Promise<HookResult> {
      try {
        if (ctx.point !== "output") {
          throw new Error(`${REDACT_SECRETS} runs at output, not ${ctx.point}`);
        }
        const redactor = redactorFor(ctx.request.env);
        return Promise.resolve({
          data: redactor.push(ctx.state as RedactState, ctx.data, ctx.final),
        });
      } catch (error) {
        return Promise.reject(error);
      }
    },
  };
}
