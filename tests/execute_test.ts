import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { RawClient, runJob, startTestServer } from "./test_util.ts";

Deno.test("execute: exit codes map to completed, failed and killed", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const ok = await runJob(client, { command: "true" });
  assert.equal(ok.done.status, "completed");
  assert.equal(ok.done.exit_code, 0);
  assert.equal(ok.done.signal, null);

  const failed = await runJob(client, { command: "exit 42" });
  assert.equal(failed.done.status, "failed");
  assert.equal(failed.done.exit_code, 42);

  const killed = await runJob(client, { command: "kill -KILL $$" });
  assert.equal(killed.done.status, "killed");
  assert.equal(killed.done.exit_code, null);
  assert.equal(killed.done.signal, "SIGKILL");
  assert.equal(killed.done.reason, "killed by SIGKILL");
});

Deno.test("execute: stdout and stderr arrive separately, in order, with contiguous offsets", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const { jobId, done } = await runJob(client, {
    command: "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.02; done",
  });
  assert.equal(client.output(jobId, "stdout"), "out1\nout2\nout3\n");
  assert.equal(client.output(jobId, "stderr"), "err1\nerr2\nerr3\n");
  assert.deepEqual(done.bytes, { stdout: 15, stderr: 15 });

  const events = client.events(jobId);
  assert.equal(events[0].method, "process.started");
  assert.equal(events.at(-1).method, "process.completed");
  assert.equal(
    events.filter((e) => e.method === "process.completed").length,
    1,
    "exactly one terminal event",
  );
  const seqs = events.map((e) => e.params.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), "seq counts 1, 2, 3, ... with no gaps");
  for (const stream of ["stdout", "stderr"]) {
    let offset = 0;
    for (
      const e of events.filter((e) => e.method === "process.output" && e.params.stream === stream)
    ) {
      assert.equal(e.params.offset, offset);
      assert.equal(e.params.type, stream, "type mirrors stream for earlier clients");
      offset += new TextEncoder().encode(e.params.data).length;
    }
  }
});

Deno.test("execute: the response comes before the job's first notification", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const result = await client.result("execute", { command: "echo fast" });
  await client.completion(result.job_id);
  const responseAt = client.frames.findIndex((f) => f.result?.job_id === result.job_id);
  const startedAt = client.frames.findIndex((f) => f.method === "process.started");
  assert.ok(responseAt >= 0 && responseAt < startedAt);
});

Deno.test("execute: cwd and env are honoured, env merged over the server's", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const dir = await Deno.makeTempDir();
  try {
    const { jobId, done } = await runJob(client, {
      command: 'pwd; echo "$GREETING"; test -n "$PATH" && echo has-path',
      cwd: dir,
      env: { GREETING: "hello world" },
    });
    assert.equal(done.status, "completed");
    assert.equal(client.output(jobId), `${await Deno.realPath(dir)}\nhello world\nhas-path\n`);
  } finally {
    await Deno.remove(dir);
  }
});

Deno.test("execute: a job that sets its own PATH still gets the server's shell and setsid", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const { jobId, done } = await runJob(client, {
    command: 'echo "$PATH"',
    env: { PATH: "/nonexistent/bin" },
  });
  assert.equal(done.status, "completed", JSON.stringify(done));
  assert.equal(client.output(jobId), "/nonexistent/bin\n");
});

Deno.test("execute: a bad cwd is a clear error, not a job", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const missing = await client.call("execute", { command: "pwd", cwd: "/no/such/dir" });
  assert.equal(missing.error.code, -32005);
  assert.equal(missing.error.message, 'Cannot execute: cwd "/no/such/dir" does not exist');
  const file = await Deno.makeTempFile();
  try {
    const notDir = await client.call("execute", { command: "pwd", cwd: file });
    assert.equal(notDir.error.code, -32005);
    assert.match(notDir.error.message, /is not a directory/);
  } finally {
    await Deno.remove(file);
  }
  assert.equal((await client.result("jobs.list", {})).jobs.length, 0);
});

Deno.test("execute: stdin is closed by default, or fed from the request", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const closed = await runJob(client, { command: "cat; echo end" });
  assert.equal(client.output(closed.jobId), "end\n", "cat saw EOF at once");
  const fed = await runJob(client, { command: "tr a-z A-Z", stdin: "shout\nlouder\n" });
  assert.equal(client.output(fed.jobId), "SHOUT\nLOUDER\n");
});

Deno.test("execute: keep_stdin_open lets jobs.input write and close stdin", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const { job_id } = await client.result("execute", {
    command: 'while read -r line; do echo "got $line"; done; echo bye',
    keep_stdin_open: true,
  });
  const first = await client.result("jobs.input", { job_id, data: "one\n" });
  assert.deepEqual(first, { job_id, bytes_written: 4, stdin_open: true });
  await client.waitFor((f) => f.params?.data?.includes("got one"), "the echo of the first line");
  const last = await client.result("jobs.input", { job_id, data: "two\n", eof: true });
  assert.equal(last.stdin_open, false);
  const done = await client.completion(job_id);
  assert.equal(done.status, "completed");
  assert.equal(client.output(job_id), "got one\ngot two\nbye\n");
  const after = await client.call("jobs.input", { job_id, data: "late" });
  assert.equal(after.error.code, -32007);
  assert.match(after.error.message, /stdin is closed/);
});

Deno.test("execute: 20 MiB of output arrives complete and intact", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const size = 20 * 1024 * 1024;
  const command = `seq 1 10000000 | head -c ${size}`;
  const { jobId, done } = await runJob(client, { command });
  assert.equal(done.status, "completed");
  assert.equal(done.bytes.stdout, size);
  const received = client.output(jobId);
  const expected = new TextDecoder().decode(
    (await new Deno.Command("bash", { args: ["-c", command], stdout: "piped" }).output()).stdout,
  );
  assert.equal(received.length, size);
  assert.equal(
    createHash("sha256").update(received).digest("hex"),
    createHash("sha256").update(expected).digest("hex"),
  );
  const chunks = client.events(jobId).filter((e) => e.method === "process.output");
  assert.ok(
    chunks.length < size / 16_384,
    `coalesced into ${chunks.length} chunks, not one per write`,
  );
});

Deno.test("execute: a 50 MB line without a newline is delivered, in chunks", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const size = 50 * 1000 * 1000;
  const { jobId, done } = await runJob(client, {
    command: `head -c ${size} /dev/zero | tr '\\0' x`,
  });
  assert.equal(done.status, "completed");
  assert.equal(done.bytes.stdout, size);
  const chunks = client.events(jobId).filter((e) => e.method === "process.output");
  assert.equal(chunks.reduce((n, e) => n + e.params.data.length, 0), size);
  assert.ok(chunks.every((e) => /^x+$/.test(e.params.data)));
  assert.ok(chunks.length > 1);
});

Deno.test("execute: multi-byte characters are never split across chunks", async () => {
  // Tiny chunks and no coalescing delay put a chunk boundary inside characters as often as possible.
  await using server = await startTestServer({
    chunkBytes: 1024,
    replayBufferBytes: 1024 * 1024,
    coalesceMs: 0,
  });
  await using client = await RawClient.connect(server.url);
  const { jobId, done } = await runJob(client, {
    command: "for i in $(seq 1 3000); do printf 'é€😀'; done",
  });
  const chunks = client.events(jobId).filter((e) => e.method === "process.output");
  assert.ok(chunks.length > 10, "the output really was cut into many chunks");
  for (const chunk of chunks) {
    assert.doesNotMatch(chunk.params.data, /\uFFFD/, "no replacement characters");
  }
  assert.equal(client.output(jobId), "é€😀".repeat(3000));
  assert.equal(done.bytes.stdout, new TextEncoder().encode("é€😀").length * 3000);
});

Deno.test("execute: invalid UTF-8 is replaced, never dropped, and byte counts stay exact", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const { jobId, done } = await runJob(client, { command: "printf 'a\\xffb\\xc3'" });
  assert.equal(client.output(jobId), "a\uFFFDb\uFFFD");
  assert.equal(done.bytes.stdout, 4);
});

Deno.test("execute: max_output_bytes cuts the output at a character boundary and says so", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  // stderr is written only after 1 MB of stdout has been read (the pipe holds far less), so the
  // budget is spent on stdout first, every time.
  const { jobId, done } = await runJob(client, {
    command: "printf 'aé'; head -c 1000000 /dev/zero; printf 'xyz' >&2",
    max_output_bytes: 2,
  });
  assert.equal(done.status, "completed", "the command itself ran to the end");
  assert.equal(done.truncated, true);
  assert.deepEqual(
    done.bytes,
    { stdout: 1_000_003, stderr: 3 },
    "bytes count what the command wrote",
  );
  assert.equal(client.output(jobId, "stdout") + client.output(jobId, "stderr"), "a");
  const outputs = client.events(jobId).filter((e) => e.method === "process.output");
  assert.equal(outputs.at(-1).params.truncated, true, "the last delivered chunk is marked");
});

Deno.test("execute: a client-chosen job_id makes a retried execute attach instead of running twice", async () => {
  await using server = await startTestServer();
  await using first = await RawClient.connect(server.url);
  const marker = await Deno.makeTempFile();
  try {
    const command = `echo run >> ${marker}; sleep 0.3; echo done`;
    const a = await first.result("execute", { command, job_id: "build-42" });
    assert.equal(a.existing, false);
    await using retry = await RawClient.connect(server.url);
    const b = await retry.result("execute", { command, job_id: "build-42" });
    assert.equal(b.existing, true);
    assert.equal(b.pid, a.pid);
    const done = await retry.completion("build-42");
    assert.equal(done.status, "completed");
    assert.equal(retry.output("build-42"), "done\n", "the retry sees the output too");
    assert.equal(await Deno.readTextFile(marker), "run\n", "the command ran once");

    const conflict = await retry.call("execute", { command: "echo other", job_id: "build-42" });
    assert.equal(conflict.error.code, -32006);
    assert.match(conflict.error.message, /already used by a different command/);
    const badId = await retry.call("execute", { command: "true", job_id: "../etc" });
    assert.equal(badId.error.code, -32602);
  } finally {
    await Deno.remove(marker);
  }
});

Deno.test("execute: the concurrency limit refuses extra jobs with a clear error", async () => {
  await using server = await startTestServer({ maxJobs: 2 });
  await using client = await RawClient.connect(server.url);
  const a = await client.result("execute", { command: "sleep 30" });
  const b = await client.result("execute", { command: "sleep 30" });
  const refused = await client.call("execute", { command: "echo third" });
  assert.equal(refused.error.code, -32003);
  assert.deepEqual(refused.error.data, { running: 2, limit: 2 });
  assert.match(refused.error.message, /CC_EXECUTOR_MAX_JOBS/);
  await client.result("control", { type: "CANCEL", job_id: a.job_id });
  await client.completion(a.job_id);
  const c = await client.result("execute", { command: "echo third" });
  assert.equal((await client.completion(c.job_id)).status, "completed", "a slot freed up");
  await client.result("control", { type: "CANCEL", job_id: b.job_id });
  await client.completion(b.job_id);
});
