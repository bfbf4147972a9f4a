import assert from "node:assert/strict";
import { type ProgressDelta, type StreamJsonItem, StreamJsonReader } from "./stream_json.ts";

const FIXTURES = new URL("../../tests/fixtures/claude/", import.meta.url);
const fixture = (name: string) => Deno.readTextFileSync(new URL(name, FIXTURES));
const encoder = new TextEncoder();

/** Feeds `bytes` in chunks of the given sizes (cycled) and returns every item, end included. */
function readInChunks(bytes: Uint8Array, sizes: number[], reader = new StreamJsonReader()) {
  const items: StreamJsonItem[] = [];
  let offset = 0;
  for (let k = 0; offset < bytes.length; k++) {
    const size = sizes[k % sizes.length]!;
    items.push(...reader.push(bytes.subarray(offset, offset + size)));
    offset += size;
  }
  items.push(...reader.end());
  return { items, progress: reader.progress };
}

Deno.test("stream_json: a successful run's progress: turns, tools by name, text, cost and usage", () => {
  const reader = new StreamJsonReader();
  const items = [...reader.push(fixture("stream_ok.jsonl")), ...reader.end()];
  assert.ok(items.every((item) => item.kind === "event"));
  const p = reader.progress;
  assert.equal(p.model, "claude-sonnet-4-5-20250929");
  assert.equal(p.claude_code_version, "2.1.197");
  assert.match(p.session_id ?? "", /^[0-9a-f-]{36}$/);
  // Two tool rounds (text + tool_use blocks share a message id) and the final answer.
  assert.equal(p.turns, 3);
  assert.deepEqual(p.tool_uses, { Bash: 1, Read: 1 });
  assert.equal(p.tool_use_count, 2);
  assert.equal(p.tool_errors, 0);
  assert.equal(p.last_assistant_text, "Done. This is fake Claude's answer (attempt 1).");
  assert.equal(p.limit, null);
  assert.equal(p.events, 9);
  assert.equal(p.text_lines, 0);
  assert.ok(p.result !== null);
  assert.equal(p.result.subtype, "success");
  assert.equal(p.result.is_error, false);
  assert.equal(p.result.text, "Done. This is fake Claude's answer (attempt 1).");
  assert.equal(p.result.num_turns, 3);
  assert.equal(p.result.session_id, p.session_id);
  assert.ok((p.result.total_cost_usd ?? 0) > 0);
  assert.deepEqual(p.result.usage, {
    input_tokens: 30,
    output_tokens: 200,
    cache_creation_input_tokens: 1500,
    cache_read_input_tokens: 70000,
  });
});

Deno.test("stream_json: the deltas say what is worth notifying, and nothing else", () => {
  const reader = new StreamJsonReader();
  const deltas = reader.push(fixture("stream_ok.jsonl"))
    .map((item) => item.kind === "event" ? item.delta : undefined);
  const reasons = deltas.map((delta) => delta?.reasons.join("+") ?? null);
  assert.deepEqual(reasons, [
    "init",
    "turn+text", // round 1: text block
    "tool_use", // same message: a tool use, not a new turn
    null, // a plain tool result
    "turn+text",
    "tool_use",
    null,
    "turn+text", // the answer
    "result",
  ]);
  const tool = deltas[5] as ProgressDelta;
  assert.deepEqual(tool.tools, ["Read"]);
  assert.deepEqual(tool.tool_uses, { Bash: 1, Read: 1 });
  assert.equal(tool.turns, 2);
  assert.equal((deltas[0] as ProgressDelta).model, "claude-sonnet-4-5-20250929");
  assert.equal((deltas[8] as ProgressDelta).result?.is_error, false);
});

Deno.test("stream_json: chunks cut anywhere, even inside a UTF-8 character, give the same result", () => {
  const text = fixture("stream_ok.jsonl") + fixture("real-2.1.197/not_logged_in.stream.jsonl");
  const bytes = encoder.encode(text);
  assert.ok(bytes.length > text.length, "the corpus has multi-byte characters (·, 🎉)");
  const whole = readInChunks(bytes, [bytes.length]);
  for (const sizes of [[1], [2], [3], [7, 1, 13], [64], [4096]]) {
    const cut = readInChunks(bytes, sizes);
    assert.deepEqual(cut.items, whole.items, `chunk sizes ${sizes}`);
    assert.deepEqual(cut.progress, whole.progress, `chunk sizes ${sizes}`);
  }
  // Text chunks cut mid-line work the same way.
  const reader = new StreamJsonReader();
  const items: StreamJsonItem[] = [];
  for (let i = 0; i < text.length; i += 5) items.push(...reader.push(text.slice(i, i + 5)));
  items.push(...reader.end());
  assert.deepEqual(items, whole.items);
});

Deno.test("stream_json: lines that are not events are kept as text; blank lines and CRLF are fine", () => {
  const reader = new StreamJsonReader();
  const items = [
    ...reader.push(
      'warning: something\r\n\n{"type":"system","subtype":"init","session_id":"s1"}\r\n',
    ),
    ...reader.push('{"no_type":1}\n[1,2]\n"str"\n{broken json\n   \n'),
    ...reader.push('{"type":"result","subtype":"success","is_error":false,"result":"ok"}'),
    ...reader.end(),
  ];
  assert.deepEqual(items.map((item) => item.kind === "text" ? item.line : item.event.type), [
    "warning: something",
    "system",
    '{"no_type":1}',
    "[1,2]",
    '"str"',
    "{broken json",
    "result",
  ]);
  const p = reader.progress;
  assert.equal(p.session_id, "s1");
  assert.equal(p.text_lines, 5);
  assert.equal(p.events, 2);
  assert.equal(p.result?.text, "ok", "the last line counts without a newline once the input ends");
});

Deno.test("stream_json: a real Claude Code 2.1.197 error run (not logged in) is read, and is no limit", () => {
  const reader = new StreamJsonReader();
  reader.push(fixture("real-2.1.197/not_logged_in.stream.jsonl"));
  reader.end();
  const p = reader.progress;
  assert.equal(p.claude_code_version, "2.1.197");
  assert.equal(p.model, "claude-opus-4-8[1m]");
  assert.equal(p.turns, 0, "a synthetic error message is not a turn");
  assert.equal(p.last_assistant_text, null);
  assert.equal(p.result?.is_error, true);
  assert.equal(p.result?.text, "Not logged in · Please run /login");
  assert.equal(p.result?.api_error_status, null);
  assert.equal(p.result?.total_cost_usd, 0);
  assert.equal(p.limit, null);
  // The json format's single object reads the same way.
  const json = new StreamJsonReader();
  json.push(fixture("real-2.1.197/not_logged_in.json-format.jsonl"));
  assert.equal(json.progress.result?.text, "Not logged in · Please run /login");
});

Deno.test("stream_json: Claude 2.1.83's allowed rate_limit_event is not a limit", () => {
  const reader = new StreamJsonReader();
  reader.push(fixture("stream_2.1.83_rate_limit_event_allowed.jsonl"));
  const p = reader.progress;
  assert.equal(p.limit, null);
  assert.equal(p.result?.is_error, false);
  assert.equal(p.last_assistant_text, "\n\nHello.");
  assert.equal(p.claude_code_version, "2.1.83");
});

Deno.test("stream_json: a usage limit is reported once, at the rejected rate_limit_event, to the second", () => {
  const text = fixture("stream_usage_limit.jsonl");
  const epoch = Number(/"resetsAt":(\d+)/.exec(text)![1]);
  const now = new Date((epoch - 5400) * 1000);
  const reader = new StreamJsonReader({ now: () => now });
  const items = reader.push(text);
  const limits = items.flatMap((item) => item.kind === "event" && item.delta?.limit ? [item] : []);
  assert.equal(limits.length, 1, "the synthetic message and the result add nothing new");
  assert.equal(limits[0]!.kind === "event" && limits[0]!.event.type, "rate_limit_event");
  const limit = reader.progress.limit;
  assert.ok(limit?.kind === "usage_limit");
  assert.equal(limit.resets_at, new Date(epoch * 1000).toISOString());
  assert.equal(limit.limit, "session limit");
  assert.equal(limit.retryable, true);
  assert.equal(reader.progress.result?.api_error_status, 429);
});

Deno.test("stream_json: a printed usage limit without the event still yields a reset time", () => {
  const reader = new StreamJsonReader({ now: () => new Date("2026-07-01T10:00:00Z") });
  reader.push(
    `{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"result":"You've hit your session limit · resets 3pm (Europe/London)"}\n`,
  );
  const limit = reader.progress.limit;
  assert.ok(limit?.kind === "usage_limit");
  assert.equal(limit.resets_at, "2026-07-01T14:00:00.000Z");
});

Deno.test("stream_json: a rate limit takes its retry-after from Claude's api_retry delay", () => {
  const reader = new StreamJsonReader();
  const items = reader.push(fixture("stream_rate_limit.jsonl"));
  const retries = items.flatMap((item) =>
    item.kind === "event" && item.delta?.api_retry ? [item.delta.api_retry] : []
  );
  assert.equal(retries.length, 2);
  assert.deepEqual(retries[0], {
    attempt: 1,
    max_retries: 10,
    retry_delay_ms: 2000,
    error_status: 429,
    error: "rate_limit",
  });
  const p = reader.progress;
  assert.equal(p.api_retries, 2);
  assert.ok(p.limit?.kind === "rate_limit");
  assert.equal(p.limit.retry_after_seconds, 2);
  assert.equal(p.limit.status, 429);
  assert.equal(p.limit.retryable, true);
  const reported = items.filter((item) => item.kind === "event" && item.delta?.limit);
  assert.equal(reported.length, 1, "reported at the synthetic message, not again at the result");
});

Deno.test("stream_json: a token limit carries the maximum from the message", () => {
  const reader = new StreamJsonReader();
  reader.push(fixture("stream_token_limit.jsonl"));
  const p = reader.progress;
  assert.ok(p.limit?.kind === "token_limit");
  assert.equal(p.limit.max_output_tokens, 32000);
  assert.equal(p.limit.retryable, true);
  assert.equal(p.tool_use_count, 1, "the work before the failure is still counted");
  assert.equal(p.result?.is_error, true);
});

Deno.test("stream_json: a later event that adds a figure reports the limit again, merged", () => {
  const reader = new StreamJsonReader();
  const first = reader.onEvent({
    type: "result",
    is_error: true,
    api_error_status: 429,
    result: "API Error: Rate limit reached",
  });
  assert.equal(first?.limit?.kind === "rate_limit" && first.limit.retry_after_seconds, null);
  reader.onEvent({
    type: "system",
    subtype: "api_retry",
    attempt: 1,
    retry_delay_ms: 1500,
    error_status: 429,
  });
  const again = reader.onEvent({
    type: "result",
    is_error: true,
    result: "API Error: Rate limit reached",
  });
  assert.equal(again?.limit?.kind === "rate_limit" && again.limit.retry_after_seconds, 1.5);
  const same = reader.onEvent({
    type: "result",
    is_error: true,
    result: "API Error: Rate limit reached",
  });
  assert.equal(same?.limit, undefined, "nothing new: not reported a third time");
});

Deno.test("stream_json: tool errors, unknown events and partial-message chunks", () => {
  const reader = new StreamJsonReader();
  assert.equal(
    reader.onEvent({ type: "stream_event", event: { type: "content_block_delta" } }),
    null,
  );
  assert.equal(reader.onEvent({ type: "something_new" }), null);
  assert.equal(reader.onEvent("not an event"), null);
  const error = reader.onEvent({
    type: "user",
    message: {
      content: [{ type: "tool_result", tool_use_id: "t", is_error: true, content: "boom" }],
    },
  });
  assert.deepEqual(error, { reasons: ["tool_error"], tool_errors: 1 });
  // An assistant message without an id counts as its own turn; a tool use without a name too.
  const delta = reader.onEvent({ type: "assistant", message: { content: [{ type: "tool_use" }] } });
  assert.deepEqual(delta?.tools, ["unknown"]);
  assert.equal(delta?.turns, 1);
});

Deno.test("stream_json: an over-long line is cut to a text item and the stream goes on", () => {
  const reader = new StreamJsonReader({ maxLineLength: 1000, maxTextLength: 10 });
  const long = `{"type":"user","pad":"${"x".repeat(5000)}"}`;
  const items = [
    ...reader.push(long.slice(0, 2500)),
    ...reader.push(long.slice(2500) + "\n"),
    ...reader.push(`${long}\n`),
    ...reader.push(
      '{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"0123456789abc"}]}}\n',
    ),
  ];
  assert.deepEqual(
    items.map((item) =>
      item.kind === "text" ? [item.line.length, item.truncated] : item.event.type
    ),
    [
      [200, true],
      [200, true],
      "assistant",
    ],
  );
  assert.equal(reader.progress.last_assistant_text, "0123456789…");
  assert.equal(reader.progress.text_lines, 2);
});

Deno.test("stream_json: progress is a copy the caller cannot change", () => {
  const reader = new StreamJsonReader();
  reader.push(fixture("stream_ok.jsonl"));
  const copy = reader.progress;
  copy.tool_uses.Bash = 99;
  copy.turns = 0;
  assert.equal(reader.progress.tool_uses.Bash, 1);
  assert.equal(reader.progress.turns, 3);
});
