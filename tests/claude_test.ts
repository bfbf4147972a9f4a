/**
 * Claude runs through a real server, with the fake `claude` of tests/fake_claude/ (it prints what
 * Claude Code 2.1.197 prints, without a network): progress from stream-json, limits told the
 * moment they show, the summary in process.completed, and prompts passed with no shell.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ExecutorClient, ExecutorRpcError, type JobEvent } from "../server/client.ts";
import { defaultConfig } from "../server/config.ts";
import { ErrorCode } from "../server/protocol.ts";
import { runCli } from "./cli_util.ts";
import { RawClient, startTestServer, waitUntil } from "./test_util.ts";

const FAKE_DIR = new URL("./fake_claude/", import.meta.url).pathname;
const FAKE_CLAUDE = join(FAKE_DIR, "claude");

async function run(client: ExecutorClient, params: Parameters<ExecutorClient["execute"]>[0]) {
  const events: JobEvent[] = [];
  const outcome = await client.execute({ ...params, onEvent: (event) => events.push(event) });
  return { outcome, events };
}

function logOf(file: string): { argv: string[]; prompt: string }[] {
  return Deno.readTextFileSync(file).trim().split("\n").map((line) => JSON.parse(line));
}

Deno.test("claude: a prompt runs claude -p with no shell; progress, result, cost and usage reach the client", async () => {
  const log = Deno.makeTempFileSync({ suffix: ".jsonl" });
  await using server = await startTestServer({ claudeBin: FAKE_CLAUDE });
  await using client = await ExecutorClient.connect(server.url);
  // Everything a shell would act on, and a leading dash claude would read as an option.
  const prompt = `-rf "it's" $(touch /tmp/cc-pwned) \`id\` ; echo owned\nsecond line [[ok:2]]`;
  const { outcome, events } = await run(client, { prompt, env: { FAKE_CLAUDE_LOG: log } });
  assert.equal(outcome.status, "completed", outcome.stderr);
  const [received] = logOf(log);
  assert.equal(received!.prompt, prompt, "the prompt arrives as one argument, untouched");
  assert.deepEqual(received!.argv.slice(-2), ["--", prompt]);

  const started = events.find((e) => e.method === "process.started");
  assert.ok(started?.method === "process.started");
  // The command shown and recorded is the argv, quoted: pasted into a shell it runs the same.
  assert.match(
    started.params.command,
    /fake_claude\/claude -p '--output-format=stream-json' --verbose -- '-rf /,
  );

  const progress = events.filter((e) => e.method === "claude.event");
  assert.ok(progress.length >= 3, `progress events: ${progress.length}`);
  const last = progress.at(-1)!;
  assert.ok(last.method === "claude.event");
  assert.ok(last.params.reasons.includes("result"));
  assert.deepEqual(last.params.tool_uses, { Bash: 1, Read: 1 }, "two tool rounds, as asked");

  const done = events.find((e) => e.method === "process.completed");
  assert.ok(done?.method === "process.completed");
  const claude = done.params.claude!;
  assert.equal(claude.is_error, false);
  assert.equal(typeof claude.result, "string");
  assert.ok(claude.result!.length > 0);
  assert.ok(claude.cost_usd! > 0);
  assert.ok(claude.usage!.output_tokens! > 0);
  assert.equal(claude.tool_use_count, 2);
  assert.equal(claude.limit, null);
  assert.equal(events.some((e) => e.method.startsWith("error.")), false);
});

Deno.test("claude: the output-token limit is told at once, with the maximum from the message", async () => {
  await using server = await startTestServer({ claudeBin: FAKE_CLAUDE });
  await using client = await ExecutorClient.connect(server.url);
  for (const output_format of ["stream-json", "text", "json"] as const) {
    const { outcome, events } = await run(client, {
      prompt: "write a very long essay [[token-limit:16000]]",
      claude: { output_format },
    });
    assert.equal(outcome.status, "failed");
    const at = events.findIndex((e) => e.method === "error.token_limit_exceeded");
    assert.ok(at >= 0, `${output_format}: no token limit notification`);
    assert.equal(
      events.filter((e) => e.method.startsWith("error.")).length,
      1,
      `${output_format}: told once`,
    );
    const notice = events[at]!;
    assert.ok(notice.method === "error.token_limit_exceeded");
    assert.equal(notice.params.kind, "token_limit");
    assert.equal(notice.params.max_output_tokens, 16000);
    assert.equal(notice.params.retryable, true);
    assert.match(notice.params.message, /exceeded the 16000 output token maximum/);
    const doneAt = events.findIndex((e) => e.method === "process.completed");
    assert.ok(at < doneAt, "told before the job ends");
    const done = events[doneAt]!;
    assert.ok(done.method === "process.completed");
    assert.equal(done.params.claude!.limit!.kind, "token_limit");
  }
});

Deno.test("claude: a usage limit is told with its reset time; a rate limit with retry-after", async () => {
  await using server = await startTestServer({ claudeBin: FAKE_CLAUDE });
  await using client = await ExecutorClient.connect(server.url);
  const before = Date.now();
  const usage = await run(client, {
    prompt: "hello [[usage-limit:7200]]",
    env: { FAKE_CLAUDE_TZ: "Europe/London" },
  });
  const told = usage.events.find((e) => e.method === "error.rate_limit_exceeded");
  assert.ok(told?.method === "error.rate_limit_exceeded");
  assert.equal(told.params.kind, "usage_limit");
  assert.equal(told.params.retryable, true);
  const resets = Date.parse(told.params.resets_at!);
  // Two hours away, to the minute (stream-json also carries the exact epoch).
  assert.ok(Math.abs(resets - (before + 7200_000)) < 5 * 60_000, told.params.resets_at!);

  const rate = await run(client, { prompt: "hello [[rate-limit:3]]" });
  const limited = rate.events.find((e) => e.method === "error.rate_limit_exceeded");
  assert.ok(limited?.method === "error.rate_limit_exceeded");
  assert.equal(limited.params.kind, "rate_limit");
  assert.equal(limited.params.retry_after_seconds, 3);
});

Deno.test("claude: a claude run in shell text is recognised; ordinary output about tokens is not a limit", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const path = `${FAKE_DIR}:${Deno.env.get("PATH")}`;
  const shell = await run(client, {
    command: `cd /tmp && FOO=1 claude -p "a long answer [[long-answer:30]]" --output-format text`,
    env: { PATH: path },
  });
  assert.equal(shell.outcome.status, "completed", shell.outcome.stderr);
  assert.match(shell.outcome.stdout, /token/i, "the answer talks about tokens and limits");
  assert.equal(shell.events.some((e) => e.method.startsWith("error.")), false);
  const done = shell.events.find((e) => e.method === "process.completed");
  assert.ok(done?.method === "process.completed" && done.params.claude, "it is a Claude run");
  assert.equal(done.params.claude.limit, null);

  // The very line Claude prints at the limit, from a command that runs no claude: not a limit.
  const plain = await run(client, {
    command:
      `echo claude; echo "API Error: Claude's response exceeded the 32000 output token maximum."`,
  });
  const plainDone = plain.events.find((e) => e.method === "process.completed");
  assert.ok(plainDone?.method === "process.completed");
  assert.equal(plainDone.params.claude, undefined, "echo claude runs no claude");
  assert.equal(plain.events.some((e) => e.method.startsWith("error.")), false);
});

Deno.test("claude: limits are read past max_output_bytes; a claude program of another name is still watched", async () => {
  // A wrapper named claude-code: the job is known to be a Claude run from how it was built.
  const bin = Deno.makeTempDirSync();
  const wrapper = join(bin, "claude-code");
  Deno.writeTextFileSync(wrapper, `#!/bin/sh\nexec '${FAKE_CLAUDE}' "$@"\n`);
  Deno.chmodSync(wrapper, 0o755);
  await using server = await startTestServer({ claudeBin: wrapper });
  await using client = await ExecutorClient.connect(server.url);
  const { outcome, events } = await run(client, {
    prompt: "long [[token-limit]]",
    max_output_bytes: 100,
  });
  assert.equal(outcome.truncated, true);
  assert.ok(events.some((e) => e.method === "error.token_limit_exceeded"), "seen past the cut");
  const done = events.find((e) => e.method === "process.completed");
  assert.ok(done?.method === "process.completed");
  assert.equal(done.params.claude!.limit!.max_output_tokens, 32000);
});

Deno.test("claude: with output hooks, Claude's text stays out of the notifications (it would bypass them)", async () => {
  await using server = await startTestServer({
    claudeBin: FAKE_CLAUDE,
    hooks: { ...defaultConfig().hooks, dir: "/nonexistent-hooks", redactSecrets: true },
  });
  await using client = await ExecutorClient.connect(server.url);
  const { outcome, events } = await run(client, { prompt: "hello [[ok]]" });
  assert.equal(outcome.status, "completed");
  const progress = events.filter((e) => e.method === "claude.event");
  assert.ok(progress.length > 0);
  for (const event of progress) {
    assert.ok(event.method === "claude.event");
    assert.equal(event.params.text, undefined);
    assert.equal(event.params.result?.text ?? null, null);
  }
  const done = events.find((e) => e.method === "process.completed");
  assert.ok(done?.method === "process.completed");
  assert.equal(done.params.claude!.result, null);
  assert.ok(done.params.claude!.cost_usd! > 0, "the figures stay");
});

Deno.test("claude: execute takes a command or a prompt, not both; claude options need a prompt", async () => {
  await using server = await startTestServer({ claudeBin: FAKE_CLAUDE });
  await using client = await ExecutorClient.connect(server.url);
  for (
    const params of [
      { command: "echo", prompt: "hi" },
      {},
      { command: "echo", claude: { model: "sonnet" } },
      { command: "claude -p hi", retry: { max_attempts: 2 } },
      { prompt: "hi", claude: { args: ["--", "--print"] } },
    ]
  ) {
    await assert.rejects(client.request("execute", params as never), (error) => {
      assert.ok(error instanceof ExecutorRpcError, String(error));
      assert.equal(error.code, ErrorCode.INVALID_PARAMS);
      return true;
    }, JSON.stringify(params));
  }
  // The same refusal from the server itself, not only from the client's check before sending.
  await using raw = await RawClient.connect(server.url);
  const both = await raw.call("execute", { command: "echo", prompt: "hi" });
  assert.equal(both.error.code, ErrorCode.INVALID_PARAMS);
  assert.match(both.error.message, /give command or prompt, not both/);
});

Deno.test("claude retry: an output-token limit reruns the prompt through a concise template, and the template's record counts it", async () => {
  const state = Deno.makeTempFileSync();
  const log = Deno.makeTempFileSync({ suffix: ".jsonl" });
  await using server = await startTestServer({ claudeBin: FAKE_CLAUDE });
  await using client = await ExecutorClient.connect(server.url);
  const prompt = "explain the codebase [[token-limit:8000,ok]]";
  const { outcome, events } = await run(client, {
    prompt,
    retry: { max_attempts: 3 },
    env: { FAKE_CLAUDE_STATE: state, FAKE_CLAUDE_LOG: log },
  });
  assert.equal(outcome.status, "completed", JSON.stringify(events.map((e) => e.method)));
  assert.equal(outcome.attempts, 2);
  const methods = events.map((e) => e.method).filter((m) =>
    m !== "process.output" && m !== "claude.event"
  );
  assert.deepEqual(methods, [
    "process.started",
    "error.token_limit_exceeded",
    "claude.retry",
    "process.started",
    "process.completed",
  ]);
  const retry = events.find((e) => e.method === "claude.retry");
  assert.ok(retry?.method === "claude.retry");
  assert.equal(retry.params.attempt, 2);
  assert.equal(retry.params.reason, "token_limit");
  assert.equal(retry.params.wait_seconds, 0);
  const template = retry.params.template!;
  assert.ok(["concise", "summary_first", "very_concise", "outline_only"].includes(template));
  const [first, second] = logOf(log);
  assert.equal(first!.prompt, prompt);
  assert.notEqual(second!.prompt, prompt, "the retry's prompt is rewritten");
  assert.ok(second!.prompt.includes(prompt), "and still holds the whole task");
  assert.match(second!.prompt, /8000/, "it names the limit that was hit");
  const listed = await client.request("templates.list", {});
  const used = listed.templates.find((t) => t.name === template)!;
  assert.equal(used.uses, 1);
  assert.equal(used.successes, 1);
  // Each attempt is its own record in history, linked to the job's.
  const attempts = await waitUntil(async () => {
    const page = await client.request("history.list", { parent_job_id: outcome.jobId });
    return page.jobs.length === 2 && page.jobs.every((j) => j.ended_at !== null) ? page.jobs : null;
  }, "both attempts' records");
  assert.deepEqual(
    attempts!.map((j) => [j.job_id, j.attempt, j.status, j.parent_job_id]),
    [
      [`${outcome.jobId}#attempt-1`, 1, "failed", outcome.jobId],
      [`${outcome.jobId}#attempt-2`, 2, "completed", outcome.jobId],
    ],
  );
  assert.equal(attempts![0]!.command.includes(prompt), true);
  const parent = await client.request("history.get", { job_id: outcome.jobId });
  assert.equal(parent.status, "completed");
  assert.equal(parent.parent_job_id, null);
});

Deno.test("claude retry: a rate limit waits for its retry-after; a reset beyond max_wait_seconds ends the job saying when", async () => {
  const state = Deno.makeTempFileSync();
  await using server = await startTestServer({ claudeBin: FAKE_CLAUDE });
  await using client = await ExecutorClient.connect(server.url);
  const started = performance.now();
  const limited = await run(client, {
    prompt: "hello [[rate-limit:1,ok]]",
    retry: { max_attempts: 2 },
    env: { FAKE_CLAUDE_STATE: state },
  });
  assert.equal(limited.outcome.status, "completed");
  assert.equal(limited.outcome.attempts, 2);
  const retry = limited.events.find((e) => e.method === "claude.retry");
  assert.ok(retry?.method === "claude.retry");
  assert.equal(retry.params.reason, "rate_limit");
  assert.equal(retry.params.wait_seconds, 1);
  assert.ok(performance.now() - started >= 1000, "it waited");

  const far = await run(client, {
    prompt: "hello [[usage-limit:7200]]",
    retry: { max_attempts: 3, max_wait_seconds: 60 },
  });
  assert.equal(far.outcome.status, "failed");
  assert.equal(far.outcome.attempts, 1);
  assert.match(far.outcome.error!, /resets at \d{4}-\d\d-\d\dT.*beyond max_wait_seconds \(60\)/);
  assert.equal(far.events.some((e) => e.method === "claude.retry"), false);

  // strategy "wait" does not rewrite prompts.
  const waitOnly = await run(client, {
    prompt: "hello [[token-limit]]",
    retry: { max_attempts: 3, strategy: "wait" },
  });
  assert.equal(waitOnly.outcome.attempts, 1);
});

Deno.test("claude retry: a cancel during the wait ends the job at once, with no further run", async () => {
  await using server = await startTestServer({ claudeBin: FAKE_CLAUDE });
  await using client = await ExecutorClient.connect(server.url);
  const events: JobEvent[] = [];
  const outcome = client.execute({
    prompt: "hello [[rate-limit:30]]",
    retry: { max_attempts: 2 },
    job_id: "waiting",
    onEvent: (event) => events.push(event),
  });
  outcome.catch(() => {});
  await waitUntil(
    () => events.some((e) => e.method === "claude.retry"),
    "the retry to be announced",
  );
  const before = performance.now();
  await client.request("control", { type: "CANCEL", job_id: "waiting" });
  const done = await outcome;
  assert.ok(performance.now() - before < 5000, "not after the 30 s wait");
  assert.equal(done.attempts, 1);
  assert.match(done.error!, /canceled while waiting for the limit to lift/);
  assert.equal(events.filter((e) => e.method === "process.started").length, 1);
});

Deno.test("claude: cc-executor run --prompt prints Claude's answer; --retry runs again after a limit", async () => {
  await using server = await startTestServer({ claudeBin: FAKE_CLAUDE });
  const answer = await runCli(["run", "--url", server.url, "--prompt", "hello [[ok]]"]);
  assert.equal(answer.code, 0, answer.stderr);
  assert.ok(answer.stdout.trim().length > 0, "the answer, as text");
  assert.doesNotMatch(answer.stdout, /^\{"type"/m, "not stream-json lines");

  const state = Deno.makeTempFileSync();
  const retried = await runCli([
    "run",
    "--url",
    server.url,
    "--retry",
    "2",
    "-e",
    `FAKE_CLAUDE_STATE=${state}`,
    "--prompt",
    "essay [[token-limit,ok]]",
  ]);
  assert.equal(retried.code, 0, retried.stderr);
  assert.match(retried.stdout, /exceeded the 32000 output token maximum/, "the first run's output");

  const both = await runCli(["run", "--url", server.url, "--prompt", "hi", "echo", "x"]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /give a command or --prompt, not both/);
  const input = await runCli([
    "run",
    "--url",
    server.url,
    "--retry",
    "2",
    "--stdin-file",
    "-",
    "--prompt",
    "summarise",
  ], { stdin: "a document" });
  assert.equal(input.code, 2);
  assert.match(input.stderr, /--retry cannot be used with --stdin-file/);
  const stray = await runCli(["run", "--url", server.url, "--retry", "2", "echo x"]);
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /--retry goes with --prompt/);
});
