// The fake `claude` itself: its scenarios, attempts, records and speed, and that what it prints
// is read by server/claude/ the way real Claude output is.
import assert from "node:assert/strict";
import { claudeArgv, shellQuoteArgv } from "../../server/claude/invocation.ts";
import { detectLimit } from "../../server/claude/limits.ts";
import { StreamJsonReader } from "../../server/claude/stream_json.ts";

const FAKE = new URL("./claude", import.meta.url).pathname;
const decoder = new TextDecoder();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

// Variables a caller's environment might hold are blanked, so each test says what it wants.
const CLEAN = {
  FAKE_CLAUDE_SCENARIO: "",
  FAKE_CLAUDE_STATE: "",
  FAKE_CLAUDE_LOG: "",
  FAKE_CLAUDE_DELAY_MS: "",
  FAKE_CLAUDE_TZ: "",
  CLAUDE_CODE_MAX_OUTPUT_TOKENS: "",
};

async function run(args: string[], env: Record<string, string> = {}, stdin?: string): Promise<Run> {
  const started = performance.now();
  const child = new Deno.Command(FAKE, {
    args,
    env: { ...CLEAN, ...env },
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
    ms: performance.now() - started,
  };
}

const streamArgs = (
  prompt: string,
) => ["-p", "--output-format", "stream-json", "--verbose", prompt];

function readStream(stdout: string, now?: Date) {
  const reader = new StreamJsonReader(now ? { now: () => now } : {});
  const items = [...reader.push(stdout), ...reader.end()];
  assert.ok(items.every((item) => item.kind === "event"), "every stdout line is an event");
  return reader.progress;
}

Deno.test("fake claude: ok in each output format, with real-shaped events", async () => {
  const text = await run(["-p", "hello [[ok]]"]);
  assert.deepEqual([text.code, text.stdout, text.stderr], [
    0,
    "Done. This is fake Claude's answer (attempt 1).\n",
    "",
  ]);

  const json = await run(["-p", "--output-format=json", "hello"]);
  assert.equal(json.code, 0);
  const result = JSON.parse(json.stdout);
  assert.equal(result.type, "result");
  assert.equal(result.is_error, false);
  assert.equal(typeof result.total_cost_usd, "number");

  const stream = await run(streamArgs("hello [[ok:3]]"));
  assert.equal(stream.code, 0);
  const types = stream.stdout.trim().split("\n").map((line) => {
    const event = JSON.parse(line);
    return event.subtype ? `${event.type}/${event.subtype}` : event.type;
  });
  assert.deepEqual(types[0], "system/init");
  assert.deepEqual(types.at(-1), "result/success");
  const p = readStream(stream.stdout);
  assert.deepEqual(p.tool_uses, { Bash: 1, Read: 1, Grep: 1 });
  assert.equal(p.turns, 4);
  assert.equal(p.result?.num_turns, 4);
  assert.equal(p.claude_code_version, "2.1.197");
});

Deno.test("fake claude: each limit prints Claude's message on stdout, exits 1, and is detected", async () => {
  const now = new Date();
  const cases: [string, string][] = [
    ["[[token-limit]]", "token_limit"],
    ["[[usage-limit]]", "usage_limit"],
    ["[[weekly-limit]]", "usage_limit"],
    ["[[usage-limit-epoch:60]]", "usage_limit"],
    ["[[rate-limit]]", "rate_limit"],
    ["[[overloaded]]", "rate_limit"],
    ["[[context-overflow]]", "context_overflow"],
  ];
  for (const [prompt, kind] of cases) {
    const text = await run(["-p", prompt]);
    assert.equal(text.code, 1, prompt);
    assert.equal(text.stderr, "", `${prompt}: real Claude leaves stderr empty`);
    assert.equal(text.stdout.split("\n").length, 2, `${prompt}: one line`);
    assert.equal(detectLimit(text.stdout, now)?.kind, kind, prompt);

    const stream = await run(streamArgs(prompt));
    assert.equal(stream.code, 1, prompt);
    const p = readStream(stream.stdout, now);
    assert.equal(p.limit?.kind, kind, `${prompt} (stream-json)`);
    assert.equal(p.result?.is_error, true);
  }
});

Deno.test("fake claude: figures in the messages: maximum, reset time, retry-after", async () => {
  const token = await run(["-p", "[[token-limit]]"], { CLAUDE_CODE_MAX_OUTPUT_TOKENS: "8000" });
  assert.equal(
    token.stdout,
    "API Error: Claude's response exceeded the 8000 output token maximum. To configure this behavior, set the CLAUDE_CODE_MAX_OUTPUT_TOKENS environment variable.\n",
  );
  const param = await run(["-p", "[[token-limit:1234]]"]);
  const signal = detectLimit(param.stdout, new Date());
  assert.equal(signal?.kind === "token_limit" && signal.max_output_tokens, 1234);

  // Printed to the minute in the given zone: read back within a minute of the intended time.
  const before = Date.now();
  const usage = await run(["-p", "[[usage-limit:7200]]"], { FAKE_CLAUDE_TZ: "America/New_York" });
  assert.match(
    usage.stdout,
    /^You've hit your session limit · resets \d{1,2}(:\d\d)?[ap]m \(America\/New_York\)\n$/,
  );
  const read = detectLimit(usage.stdout, new Date());
  assert.ok(read?.kind === "usage_limit" && read.resets_at !== null);
  const resetMs = Date.parse(read.resets_at);
  assert.ok(
    resetMs > before + 7200_000 - 61_000 && resetMs <= Date.now() + 7200_000,
    read.resets_at,
  );

  const weekly = await run(["-p", "[[weekly-limit]]"], { FAKE_CLAUDE_TZ: "UTC" });
  assert.match(
    weekly.stdout,
    /^You've hit your weekly limit · resets [A-Z][a-z]{2} \d{1,2}, \d{1,2}(:\d\d)?[ap]m \(UTC\)\n$/,
  );

  // The epoch form and the stream's rate_limit_event are exact to the second.
  const epoch = await run(["-p", "[[usage-limit-epoch:2]]"]);
  const exact = detectLimit(epoch.stdout, new Date());
  assert.ok(exact?.kind === "usage_limit" && exact.resets_at !== null);
  assert.ok(Math.abs(Date.parse(exact.resets_at) - (Date.now() + 2000)) < 3000);

  const rate = await run(streamArgs("[[rate-limit:2]]"));
  const p = readStream(rate.stdout);
  assert.equal(p.limit?.kind === "rate_limit" && p.limit.retry_after_seconds, 2);
  assert.equal(p.api_retries, 2);
  const rateText = await run(["-p", "[[rate-limit:2]]"]);
  const fromText = detectLimit(rateText.stdout, new Date());
  assert.equal(
    fromText?.kind === "rate_limit" && fromText.retry_after_seconds,
    null,
    "text mode carries no retry-after",
  );
});

Deno.test("fake claude: a long answer trips no limit detector", async () => {
  const text = await run(["-p", "[[long-answer:100]]"]);
  assert.equal(text.code, 0);
  assert.ok(text.stdout.length > 20_000);
  assert.match(text.stdout, /tokens/);
  assert.equal(detectLimit(text.stdout, new Date()), null);
  const stream = await run(streamArgs("[[long-answer]]"));
  const p = readStream(stream.stdout);
  assert.equal(p.limit, null);
  assert.equal(p.result?.is_error, false);
});

Deno.test("fake claude: attempts are counted in the state file and pick the scenario's step", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fake_claude_" });
  try {
    const state = `${dir}/state`;
    const env = { FAKE_CLAUDE_STATE: state };
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) {
      codes.push((await run(["-p", "task [[token-limit-then-ok]]"], env)).code);
    }
    assert.deepEqual(codes, [1, 0, 0]);

    await Deno.remove(state);
    const steps: string[] = [];
    for (let i = 0; i < 4; i++) {
      const out = await run(["-p", "task"], {
        ...env,
        FAKE_CLAUDE_SCENARIO: "rate-limit:1*2,context-overflow,ok",
      });
      steps.push(detectLimit(out.stdout, new Date())?.kind ?? out.stdout.trim());
    }
    assert.deepEqual(steps, [
      "rate_limit",
      "rate_limit",
      "context_overflow",
      "Done. This is fake Claude's answer (attempt 4).",
    ]);

    // Runs started at once get distinct attempt numbers.
    await Deno.remove(state);
    const log = `${dir}/log`;
    await Promise.all([1, 2, 3, 4].map(() => run(["-p", "x"], { ...env, FAKE_CLAUDE_LOG: log })));
    const attempts = (await Deno.readTextFile(log)).trim().split("\n").map((line) =>
      JSON.parse(line).attempt
    );
    assert.deepEqual(attempts.sort(), [1, 2, 3, 4]);

    // Without a state file every run is attempt 1.
    assert.equal((await run(["-p", "[[token-limit,ok]]"])).code, 1);
    assert.equal((await run(["-p", "[[token-limit,ok]]"])).code, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fake claude: the log records the exact argv and prompt, also through sh -c", async () => {
  const dir = await Deno.makeTempDir({ prefix: "fake_claude_" });
  try {
    const log = `${dir}/log`;
    const prompts = [
      `it's "quoted" $(touch ${dir}/pwned) \`touch ${dir}/pwned\` $HOME`,
      "-rf starts with a dash",
      "line one\nline two\n\ttabbed",
      "é ñ 中文 🎉 [[ok]]",
      "p".repeat(50_000),
    ];
    for (const prompt of prompts) {
      const argv = claudeArgv(prompt, {
        outputFormat: "stream-json",
        model: "opus",
        program: FAKE,
      });
      const { code } = await new Deno.Command("sh", {
        args: ["-c", shellQuoteArgv(argv)],
        env: { ...CLEAN, FAKE_CLAUDE_LOG: log },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output();
      assert.equal(code, 0);
    }
    const records = (await Deno.readTextFile(log)).trim().split("\n").map((line) =>
      JSON.parse(line)
    );
    assert.deepEqual(records.map((record) => record.prompt), prompts);
    assert.deepEqual(records[1].argv, [
      "-p",
      "--output-format=stream-json",
      "--verbose",
      "--model=opus",
      "--",
      prompts[1],
    ]);
    assert.equal(records[0].model, "opus");
    assert.equal(records[0].output_format, "stream-json");
    await assert.rejects(Deno.stat(`${dir}/pwned`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fake claude: refuses what Claude 2.1.197 refuses, with its words; reads stdin", async () => {
  const noVerbose = await run(["-p", "--output-format", "stream-json", "x"]);
  assert.deepEqual([noVerbose.code, noVerbose.stdout, noVerbose.stderr], [
    1,
    "",
    "Error: When using --print, --output-format=stream-json requires --verbose\n",
  ]);
  const badFormat = await run(["-p", "--output-format", "xml", "x"]);
  assert.equal(badFormat.code, 1);
  assert.equal(
    badFormat.stderr,
    "error: option '--output-format <format>' argument 'xml' is invalid. Allowed choices are text, json, stream-json.\n",
  );
  const noPrompt = await run(["-p"]);
  assert.equal(noPrompt.code, 1);
  assert.equal(
    noPrompt.stderr,
    "Error: Input must be provided either through stdin or as a prompt argument when using --print\n",
  );
  const fromStdin = await run(["-p"], {}, "the prompt from stdin [[context-overflow]]\n");
  assert.deepEqual([fromStdin.code, fromStdin.stdout], [1, "Prompt is too long\n"]);
  const version = await run(["--version"]);
  assert.equal(version.stdout, "2.1.197 (Claude Code)\n");
  const unknown = await run(["-p", "[[no-such-step]]"]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /unknown scenario step "no-such-step"/);
});

Deno.test("fake claude: hang waits to be killed; delay spaces the events out", async () => {
  const child = new Deno.Command(FAKE, {
    args: streamArgs("[[hang]]"),
    env: CLEAN,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.match(decoder.decode(value), /"subtype":"init"/);
  child.kill("SIGTERM");
  const status = await child.status;
  assert.equal(status.signal, "SIGTERM");
  await reader.cancel();

  const slow = await run(streamArgs("[[ok]] [[delay:60]]"));
  assert.equal(slow.code, 0);
  const events = slow.stdout.trim().split("\n").length;
  assert.ok(slow.ms >= (events - 1) * 60, `${slow.ms} ms for ${events} events`);
});

Deno.test("fake claude: a run is fast (p50 and max reported)", async () => {
  await run(["-p", "warm up"]);
  const times: number[] = [];
  for (let i = 0; i < 10; i++) times.push((await run(streamArgs("[[ok]]"))).ms);
  times.sort((a, b) => a - b);
  const p50 = times[5]!;
  console.log(
    `fake claude: p50 ${p50.toFixed(0)} ms, max ${times.at(-1)!.toFixed(0)} ms over 10 runs`,
  );
  // 300 ms is the budget on a loaded 2-core machine; the bound here leaves room for a busier CI.
  assert.ok(p50 < 600, `p50 ${p50} ms`);
});
