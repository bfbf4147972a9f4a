import assert from "node:assert/strict";
import {
  detectLimit,
  limitFromResultEvent,
  limitFromStreamEvent,
  LimitWatcher,
  parseResetTime,
  zonedToUtc,
} from "./limits.ts";

const FIXTURES = new URL("../../tests/fixtures/claude/", import.meta.url);

interface PositiveCase {
  text?: string;
  event?: unknown;
  now?: string;
  time_zone?: string;
  expect: Record<string, unknown>;
  source: string;
  note?: string;
}

interface NegativeCase {
  text: string;
  note?: string;
}

const positives: PositiveCase[] = JSON.parse(
  await Deno.readTextFile(new URL("limits_positive.json", FIXTURES)),
);
const negatives: NegativeCase[] = JSON.parse(
  await Deno.readTextFile(new URL("limits_negative.json", FIXTURES)),
);

// A fixed zone for cases that do not name one, so the corpus passes whatever TZ the machine has.
const DEFAULT_NOW = "2026-07-01T10:00:00Z";

Deno.test("limits: every line of the positive corpus is detected with its figures", () => {
  assert.ok(positives.length >= 40, `only ${positives.length} positive cases`);
  for (const item of positives) {
    const now = new Date(item.now ?? DEFAULT_NOW);
    const options = { timeZone: item.time_zone ?? "UTC" };
    const signal = item.event !== undefined
      ? limitFromStreamEvent(item.event, now, options)
      : detectLimit(item.text!, now, options);
    const label = `${JSON.stringify(item.text ?? item.event)} (${item.source})`;
    assert.ok(signal !== null, `not detected: ${label}`);
    const picked = Object.fromEntries(
      Object.keys(item.expect).map((
        key,
      ) => [key, (signal as unknown as Record<string, unknown>)[key]]),
    );
    assert.deepEqual(picked, item.expect, label);
    assert.ok(signal.matched.length > 0, label);
  }
});

Deno.test("limits: no line of the negative corpus is a signal", () => {
  assert.ok(negatives.length >= 40, `only ${negatives.length} negative cases`);
  const now = new Date(DEFAULT_NOW);
  for (const { text } of negatives) {
    assert.equal(detectLimit(text, now), null, `false positive: ${JSON.stringify(text)}`);
    if (text.startsWith("{")) {
      const event = JSON.parse(text);
      assert.equal(limitFromStreamEvent(event, now), null, `false positive event: ${text}`);
    }
  }
});

Deno.test("limits: the negative corpus read as one block of output is no signal either", () => {
  const block = negatives.map((item) => item.text).join("\n");
  assert.equal(detectLimit(block, new Date(DEFAULT_NOW)), null);
});

Deno.test("limits: a limit line inside longer output is found, and the first one wins", () => {
  const output = [
    "Reading the repository...",
    "API Error: Claude's response exceeded the 32000 output token maximum. To configure this behavior, set the CLAUDE_CODE_MAX_OUTPUT_TOKENS environment variable.",
    "Prompt is too long",
  ].join("\r\n");
  const signal = detectLimit(output, new Date(DEFAULT_NOW));
  assert.equal(signal?.kind, "token_limit");
});

Deno.test("limits: usage-limit messages of claude-messages.md, verbatim, with every <which>", () => {
  const now = new Date("2026-07-01T10:00:00Z");
  const which = [
    "session limit",
    "weekly limit",
    "usage limit",
    "Opus limit",
    "limit",
    "org's monthly usage limit",
    "org's monthly spend limit",
  ];
  for (const limit of which) {
    const signal = detectLimit(`You've hit your ${limit} · resets 3pm (Europe/London)`, now);
    assert.equal(signal?.kind, "usage_limit", limit);
    assert.equal(signal.kind === "usage_limit" && signal.limit, limit);
    assert.equal(signal.kind === "usage_limit" && signal.resets_at, "2026-07-01T14:00:00.000Z");
    const bare = detectLimit(`You've hit your ${limit}`, now);
    assert.equal(bare?.kind === "usage_limit" && bare.resets_at, null, limit);
    assert.equal(bare?.retryable, false, "no reset time: not retryable");
  }
});

Deno.test("limits: a reset time is the next such time in its zone", () => {
  // 14:30 in London (BST): 3pm is today, 2pm is tomorrow.
  const now = new Date("2026-07-01T13:30:00Z");
  assert.equal(parseResetTime("3pm (Europe/London)", now)?.iso, "2026-07-01T14:00:00.000Z");
  assert.equal(parseResetTime("2pm (Europe/London)", now)?.iso, "2026-07-02T13:00:00.000Z");
  assert.equal(parseResetTime("12am (UTC)", now)?.iso, "2026-07-02T00:00:00.000Z");
  assert.equal(parseResetTime("12pm (UTC)", now)?.iso, "2026-07-02T12:00:00.000Z");
  assert.equal(parseResetTime("12:05pm (Asia/Kolkata)", now)?.iso, "2026-07-02T06:35:00.000Z");
  // A time just passed (within the grace) is the reset that just happened.
  assert.equal(parseResetTime("2:25pm (Europe/London)", now)?.iso, "2026-07-01T13:25:00.000Z");
  assert.equal(
    parseResetTime("2:25pm (Europe/London)", now, { pastGraceMs: 0 })?.iso,
    "2026-07-02T13:25:00.000Z",
  );
  assert.equal(parseResetTime("13pm (UTC)", now), null);
  assert.equal(parseResetTime("soon", now), null);
  assert.equal(parseResetTime("3pm (Not/AZone)", now), null);
  // Without a zone, the given default zone.
  assert.deepEqual(parseResetTime("9pm", now, { timeZone: "Asia/Tokyo" }), {
    iso: "2026-07-02T12:00:00.000Z",
    zone: "Asia/Tokyo",
  });
});

Deno.test("limits: wall-clock times across DST changes follow Temporal's compatible rules", () => {
  // London 2026-03-29: 01:00 GMT becomes 02:00 BST; 01:30 does not exist and moves forward.
  assert.equal(
    new Date(zonedToUtc(2026, 3, 29, 0, 30, "Europe/London")).toISOString(),
    "2026-03-29T00:30:00.000Z",
  );
  assert.equal(
    new Date(zonedToUtc(2026, 3, 29, 1, 30, "Europe/London")).toISOString(),
    "2026-03-29T01:30:00.000Z",
  );
  assert.equal(
    new Date(zonedToUtc(2026, 3, 29, 2, 30, "Europe/London")).toISOString(),
    "2026-03-29T01:30:00.000Z",
  );
  assert.equal(
    new Date(zonedToUtc(2026, 3, 29, 3, 0, "Europe/London")).toISOString(),
    "2026-03-29T02:00:00.000Z",
  );
  // London 2026-10-25: 02:00 BST becomes 01:00 GMT; 01:30 happens twice, the first is taken.
  assert.equal(
    new Date(zonedToUtc(2026, 10, 25, 1, 30, "Europe/London")).toISOString(),
    "2026-10-25T00:30:00.000Z",
  );
  assert.equal(
    new Date(zonedToUtc(2026, 10, 25, 2, 30, "Europe/London")).toISOString(),
    "2026-10-25T02:30:00.000Z",
  );
  // Southern hemisphere: Sydney leaves DST on 2026-04-05 (03:00 AEDT -> 02:00 AEST).
  assert.equal(
    new Date(zonedToUtc(2026, 4, 5, 2, 30, "Australia/Sydney")).toISOString(),
    "2026-04-04T15:30:00.000Z",
  );
  // A zone with a 45-minute offset and one without DST.
  assert.equal(
    new Date(zonedToUtc(2026, 7, 1, 12, 0, "Asia/Kathmandu")).toISOString(),
    "2026-07-01T06:15:00.000Z",
  );
  assert.equal(
    new Date(zonedToUtc(2026, 7, 1, 12, 0, "UTC")).toISOString(),
    "2026-07-01T12:00:00.000Z",
  );
});

Deno.test("limits: 'tomorrow' is the next calendar day, also when the clocks change overnight", () => {
  // 23:00 EST on 2026-03-07; 9am the next day is EDT (UTC-4), not 24 h later.
  const now = new Date("2026-03-08T04:00:00Z");
  assert.equal(parseResetTime("9am (America/New_York)", now)?.iso, "2026-03-08T13:00:00.000Z");
  // 23:00 EDT on 2026-10-31; 9am on 2026-11-01 is EST (UTC-5).
  assert.equal(
    parseResetTime("9am (America/New_York)", new Date("2026-11-01T03:00:00Z"))?.iso,
    "2026-11-01T14:00:00.000Z",
  );
});

Deno.test("limits: a result event counts only when it is an error", () => {
  const now = new Date(DEFAULT_NOW);
  const base = { type: "result", subtype: "success", result: "Prompt is too long" };
  assert.equal(limitFromResultEvent({ ...base, is_error: false }, now), null);
  assert.equal(limitFromResultEvent({ ...base, is_error: true }, now)?.kind, "context_overflow");
  assert.equal(limitFromResultEvent({ ...base, type: "assistant", is_error: true }, now), null);
  assert.equal(limitFromResultEvent("Prompt is too long", now), null);
  assert.equal(limitFromResultEvent(null, now), null);
  // error_during_execution carries its messages in `errors`.
  const errors = {
    type: "result",
    subtype: "error_during_execution",
    is_error: true,
    errors: ["x", "API Error: Rate limit reached"],
  };
  assert.equal(limitFromResultEvent(errors, now)?.kind, "rate_limit");
  // A 529 with a message Claude is not known to print is still an overload.
  const overloaded = limitFromResultEvent({
    type: "result",
    is_error: true,
    api_error_status: 529,
    result: "?",
  }, now);
  assert.deepEqual(
    overloaded?.kind === "rate_limit" &&
      [overloaded.cause, overloaded.status, overloaded.retryable],
    ["overloaded", 529, true],
  );
  // Other API errors are not limits.
  assert.equal(
    limitFromResultEvent({
      type: "result",
      is_error: true,
      api_error_status: 500,
      result: "API Error: 500",
    }, now),
    null,
  );
});

Deno.test("limits: retryable follows the kind (and for usage limits, a known reset)", () => {
  const now = new Date(DEFAULT_NOW);
  const kinds = (text: string) => {
    const signal = detectLimit(text, now);
    return signal === null ? null : [signal.kind, signal.retryable];
  };
  assert.deepEqual(kinds("API Error: Claude's response exceeded the 32000 output token maximum."), [
    "token_limit",
    true,
  ]);
  assert.deepEqual(kinds("API Error: Rate limit reached"), ["rate_limit", true]);
  assert.deepEqual(kinds("API Error: Repeated 529 Overloaded errors"), ["rate_limit", true]);
  assert.deepEqual(kinds("Prompt is too long"), ["context_overflow", false]);
  assert.deepEqual(kinds("You've hit your session limit · resets 3pm (UTC)"), [
    "usage_limit",
    true,
  ]);
  assert.deepEqual(kinds("You've hit your session limit"), ["usage_limit", false]);
});

Deno.test("limits: the epoch form accepts milliseconds too, and an over-long line is skipped", () => {
  const ms = detectLimit("Claude AI usage limit reached|1755615600000", new Date(DEFAULT_NOW));
  assert.equal(ms?.kind === "usage_limit" && ms.resets_at, "2025-08-19T15:00:00.000Z");
  assert.equal(detectLimit(`Prompt is too long${" ".repeat(5000)}x`, new Date(DEFAULT_NOW)), null);
});

Deno.test("limits: LimitWatcher reads lines cut across chunks and reports each kind once", () => {
  const watcher = new LimitWatcher({ now: () => new Date(DEFAULT_NOW) });
  const output =
    "Working...\nAPI Error: Rate limit reached\nAPI Error: Rate limit reached\nPrompt is too long";
  const signals = [];
  for (let i = 0; i < output.length; i += 3) signals.push(...watcher.push(output.slice(i, i + 3)));
  assert.deepEqual(signals.map((signal) => signal.kind), ["rate_limit"]);
  assert.deepEqual(watcher.end().map((signal) => signal.kind), ["context_overflow"]);
  // An over-long line is skipped whole, even when a message follows on the same line.
  const long = new LimitWatcher();
  assert.deepEqual(long.push("x".repeat(5000)), []);
  assert.deepEqual(long.push(" Prompt is too long\nPrompt is too long\n").map((s) => s.kind), [
    "context_overflow",
  ]);
});
