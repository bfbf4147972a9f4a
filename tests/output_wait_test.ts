/** `jobs.output` and `jobs.wait` over the wire, and `execute` with subscribe: false. */
import assert from "node:assert/strict";
import { ExecutorClient } from "../server/client.ts";
import { RawClient, startTestServer } from "./test_util.ts";

Deno.test("jobs.output: a spilled job's output is all there, by offset, tail and grep", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  // 200,000 lines (~1.3 MB): far past what a job keeps in memory, so it spills to the spool.
  const outcome = await client.execute({ command: "seq 1 200000; echo 'warn: odd' >&2" });
  assert.equal(outcome.exitCode, 0);
  const id = outcome.jobId;
  const all = await client.request("jobs.output", { job_id: id, max_bytes: 4096 });
  assert.deepEqual(all.totals.stdout, { bytes: 1_288_895, lines: 200_000 });
  assert.deepEqual(all.totals.stderr, { bytes: 10, lines: 1 });
  assert.equal(all.incomplete, null);
  // stderr is small and kept whole; stdout is shaped into its first and last lines.
  const whys = all.sections.map((section) => `${section.stream}:${section.why}`);
  assert.deepEqual(whys, ["stdout:head", "stdout:tail", "stderr:all"]);
  assert.ok(all.sections[0]!.text.startsWith("1\n2\n3\n"));
  assert.ok(all.sections[1]!.text.endsWith("199999\n200000"));
  const shown = all.sections.reduce((sum, s) => sum + (s.end_offset - s.offset), 0);
  assert.equal(all.omitted_bytes, 1_288_895 + 10 - shown);

  const page = await client.request("jobs.output", {
    job_id: id,
    stream: "stdout",
    offset: 588_895, // the first byte of "100001\n"
    max_bytes: 14,
  });
  assert.equal(page.sections[0]!.text, "100001\n100002\n");
  assert.equal(page.sections[0]!.first_line, 100_001);
  assert.equal(page.next_offset, 588_909);

  const tail = await client.request("jobs.output", { job_id: id, stream: "stdout", tail_lines: 2 });
  assert.equal(tail.sections[0]!.text, "199999\n200000");
  const grep = await client.request("jobs.output", { job_id: id, grep: "^1999[0-9]{2}$|odd" });
  assert.equal(grep.matches, 101);
  assert.ok(grep.sections.some((s) => s.stream === "stderr" && s.text === "warn: odd"));
});

Deno.test("jobs.output: bad requests get -32602 naming the problem; unknown jobs -32001", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const { job_id } = await client.result("execute", { command: "echo hi" });
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ offset: 0 }, /offset reads one stream/],
    [{ head_lines: 1, grep: "x" }, /give one of offset, head_lines, tail_lines or grep/],
    [{ grep: "(" }, /grep: not a valid regular expression/],
    [{ context_lines: 2 }, /context_lines goes with grep/],
    [{ max_bytes: 0 }, /max_bytes/],
  ];
  for (const [params, message] of cases) {
    const response = await client.call("jobs.output", { job_id, ...params });
    assert.equal(response.error?.code, -32602, JSON.stringify(response));
    assert.match(response.error.message, message);
  }
  const missing = await client.call("jobs.output", { job_id: "nope" });
  assert.equal(missing.error?.code, -32001);
});

Deno.test("jobs.wait: pattern (old and new output), idle, timeout, finished", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const { job_id } = await client.request("execute", {
    command: "echo boot; sleep 0.3; printf 'listening on 80'; sleep 0.3; echo; echo done; sleep 30",
    subscribe: false,
  });
  // A line still being written (no newline yet) already matches.
  const listening = await client.request("jobs.wait", { job_id, pattern: "listening on \\d+" });
  assert.equal(listening.reason, "matched");
  assert.deepEqual(listening.match, {
    stream: "stdout",
    line: 2,
    offset: 5,
    text: "listening on 80",
  });
  // Output written before the call counts, unless new_output_only.
  const old = await client.request("jobs.wait", { job_id, pattern: "^BOOT$", ignore_case: true });
  assert.equal(old.match?.line, 1);
  const next = await client.request("jobs.wait", {
    job_id,
    pattern: "boot|done",
    new_output_only: true,
  });
  assert.equal(next.match?.text, "done");
  const idle = await client.request("jobs.wait", { job_id, idle_seconds: 0.2 });
  assert.equal(idle.reason, "idle");
  assert.equal(idle.status, "running");
  const timeout = await client.request("jobs.wait", {
    job_id,
    pattern: "never",
    timeout_seconds: 0.3,
  });
  assert.equal(timeout.reason, "timeout");
  assert.ok(timeout.waited_ms >= 250, `waited ${timeout.waited_ms} ms`);
  await client.cancel(job_id);
  const finished = await client.request("jobs.wait", { job_id, timeout_seconds: 30 });
  assert.equal(finished.reason, "finished");
  assert.equal(finished.status, "canceled");
});

Deno.test("execute: subscribe false sends no notifications for the job", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const { job_id } = await client.result("execute", { command: "echo quiet", subscribe: false });
  const done = await client.result("jobs.wait", { job_id, timeout_seconds: 30 });
  assert.equal(done.reason, "finished");
  await client.result("ping", {});
  assert.equal(client.frames.filter((f) => f.params?.job_id === job_id).length, 0);
});

Deno.test("jobs.output: past CC_EXECUTOR_SPOOL_MAX_BYTES the answer says so and still gives the end", async () => {
  await using server = await startTestServer({ spoolMaxBytes: 100_000 });
  await using client = await ExecutorClient.connect(server.url);
  const outcome = await client.execute({ command: "seq 1 50000; echo the-end", collect: false });
  const result = await client.request("jobs.output", { job_id: outcome.jobId, tail_lines: 1 });
  assert.equal(result.totals.stdout.bytes, 288_902);
  assert.match(
    result.incomplete!,
    /^stdout after byte 100000 was not kept: output past 100000 bytes/,
  );
  assert.ok(result.last_output!.endsWith("49999\n50000\nthe-end\n"), result.last_output);
  // What was kept is read as usual.
  const head = await client.request("jobs.output", { job_id: outcome.jobId, head_lines: 2 });
  assert.equal(head.sections[0]!.text, "1\n2");
});

Deno.test("jobs.wait: a cursor goes on where the last wait stopped; long lines are matched whole", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const { job_id } = await client.request("execute", {
    command: "echo a; echo b; sleep 0.5; echo c; sleep 30",
    subscribe: false,
  });
  const first = await client.request("jobs.wait", {
    job_id,
    pattern: "^b$",
    timeout_seconds: 10,
  });
  assert.equal(first.match?.line, 2);
  assert.deepEqual(first.cursor, {
    stdout: { offset: 2, line: 2 },
    stderr: { offset: 0, line: 1 },
  });
  const none = await client.request("jobs.wait", {
    job_id,
    pattern: "never",
    timeout_seconds: 0.1,
    cursor: first.cursor!,
  });
  assert.equal(none.reason, "timeout");
  assert.deepEqual(none.cursor!.stdout, { offset: 4, line: 3 });
  // From the cursor on, "a" and "b" are behind: the next match is "c".
  const next = await client.request("jobs.wait", {
    job_id,
    pattern: "^[abc]$",
    timeout_seconds: 10,
    cursor: none.cursor!,
  });
  assert.deepEqual(next.match, { stream: "stdout", line: 3, offset: 4, text: "c" });
  await client.cancel(job_id);

  // A progress bar: one line, redrawn with \r, "READY" past the 4,096th character.
  const bar = await client.request("execute", {
    command: "printf '%.0s#' $(seq 1 6000); printf ' READY'; sleep 30",
    subscribe: false,
  });
  const ready = await client.request("jobs.wait", {
    job_id: bar.job_id,
    pattern: "READY",
    timeout_seconds: 10,
  });
  assert.equal(ready.reason, "matched");
  assert.ok(ready.match!.text.length <= 1002, "the answer carries at most 1,000 characters of it");
  await client.cancel(bar.job_id);
});
