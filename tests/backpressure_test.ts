import assert from "node:assert/strict";
import { RawWebSocket } from "./raw_websocket.ts";
import { groupAlive, RawClient, startTestServer, waitUntil } from "./test_util.ts";

const MiB = 1024 * 1024;

/** Polls a job's stdout byte count until two readings `gapMs` apart agree. */
async function settledBytes(observer: RawClient, jobId: string, gapMs = 300): Promise<number> {
  let last = -1;
  await waitUntil(
    async () => {
      const bytes = (await observer.result("jobs.get", { job_id: jobId })).bytes.stdout as number;
      const settled = bytes === last;
      last = bytes;
      if (!settled) await new Promise((r) => setTimeout(r, gapMs));
      return settled;
    },
    "the job's output to stop growing",
    20_000,
  );
  return last;
}

/** 4 GiB of output: far more than any buffer on the way could hold. */
const FLOOD = "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 4294967296";

/** Starts a flood job from a client that never reads, and waits until the observer sees it. */
async function startFlood(
  stalled: RawWebSocket,
  observer: RawClient,
  params: Record<string, unknown> & { job_id: string },
): Promise<void> {
  await stalled.sendText(JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "execute",
    params: { command: FLOOD, ...params },
  }));
  await waitUntil(
    async () => (await observer.call("jobs.get", { job_id: params.job_id })).result,
    "the job",
  );
}

Deno.test("backpressure: a client that stops reading stops the command, not the heap", async () => {
  await using server = await startTestServer();
  await using observer = await RawClient.connect(server.url);
  await using stalled = await RawWebSocket.connect(server.url);
  const rssBefore = Deno.memoryUsage().rss;
  await startFlood(stalled, observer, { job_id: "flood" });
  const plateau = await settledBytes(observer, "flood");
  assert.ok(plateau > 0, "it did produce output");
  assert.ok(plateau < 128 * MiB, `read ${(plateau / MiB).toFixed(1)} MiB before blocking`);
  const info = await observer.result("jobs.get", { job_id: "flood" });
  assert.equal(info.status, "running", "blocked, not finished or killed");
  const growth = Deno.memoryUsage().rss - rssBefore;
  assert.ok(growth < 128 * MiB, `RSS grew ${(growth / MiB).toFixed(1)} MiB`);

  // Reading again lets the command go on.
  for (let i = 0; i < 200; i++) await stalled.read(1 << 20);
  await waitUntil(
    async () => (await observer.result("jobs.get", { job_id: "flood" })).bytes.stdout > plateau,
    "the job to resume once the client reads",
  );

  // Going away cancels it (it was not detached) and its group with it.
  stalled.close();
  await waitUntil(
    async () => (await observer.result("jobs.get", { job_id: "flood" })).status === "canceled",
    "the job to be canceled",
  );
  assert.equal(groupAlive(info.pgid), false);
});

Deno.test("backpressure: a job with no subscribers reads freely and keeps only its replay buffer", async () => {
  await using server = await startTestServer({ replayBufferBytes: MiB });
  await using starter = await RawClient.connect(server.url);
  const { job_id } = await starter.result("execute", {
    command: "head -c 67108864 /dev/zero | tr '\\0' q",
    detach: true,
    job_id: "unwatched",
  });
  await starter.close();
  await using observer = await RawClient.connect(server.url);
  const info = await waitUntil(async () => {
    const job = await observer.result("jobs.get", { job_id });
    return job.status !== "running" && job;
  }, "the detached job to finish");
  assert.equal(info.status, "completed");
  assert.equal(info.bytes.stdout, 64 * MiB);
  const sub = await observer.result("jobs.subscribe", { job_id });
  assert.ok(sub.missed > 0);
  await observer.completion(job_id);
  assert.ok(observer.output(job_id).length <= MiB);
});

Deno.test("backpressure: a job held back by a stalled client still times out, and frees its slot", async () => {
  await using server = await startTestServer({ maxJobs: 1 });
  await using observer = await RawClient.connect(server.url);
  await using stalled = await RawWebSocket.connect(server.url);
  await startFlood(stalled, observer, { job_id: "held", timeout: 1 });
  const { pgid } = await observer.result("jobs.get", { job_id: "held" });
  const sub = await observer.result("jobs.subscribe", { job_id: "held", from_seq: 1_000_000 });
  assert.equal(sub.status, "running");
  const done = await observer.completion("held");
  assert.equal(done.status, "timed_out");
  assert.equal(done.reason, "timed out after 1s");
  assert.equal(groupAlive(pgid), false);
  assert.equal((await observer.result("server.info", {})).running_jobs, 0, "the slot is free");
  const next = await observer.result("execute", { command: "echo next" });
  assert.equal((await observer.completion(next.job_id)).status, "completed");
});

Deno.test("backpressure: cancel and server shutdown are not held up by a stalled client", async () => {
  const server = await startTestServer();
  try {
    await using observer = await RawClient.connect(server.url);
    await using stalled = await RawWebSocket.connect(server.url);
    await startFlood(stalled, observer, { job_id: "cancel-me" });
    await settledBytes(observer, "cancel-me");
    await observer.result("jobs.subscribe", { job_id: "cancel-me", from_seq: 1_000_000 });
    await observer.result("control", { type: "CANCEL", job_id: "cancel-me" });
    assert.equal((await observer.completion("cancel-me")).status, "canceled");

    await startFlood(stalled, observer, { job_id: "at-shutdown", detach: true });
    await settledBytes(observer, "at-shutdown");
    const { pgid } = await observer.result("jobs.get", { job_id: "at-shutdown" });
    const started = performance.now();
    await server.shutdown();
    // The stop sequence (grace 300 ms) plus at most 1 s for each bounded wait on the stalled peer.
    const took = performance.now() - started;
    assert.ok(took < 8000, `shutdown took ${Math.round(took)} ms`);
    assert.equal(server.jobs.get("at-shutdown").status, "canceled");
    assert.equal(groupAlive(pgid), false);
  } finally {
    await server.shutdown();
  }
});

Deno.test("backpressure: unsubscribing a stalled client lets the job read again", async () => {
  await using server = await startTestServer();
  await using observer = await RawClient.connect(server.url);
  await using stalled = await RawWebSocket.connect(server.url);
  await startFlood(stalled, observer, { job_id: "unsub" });
  const plateau = await settledBytes(observer, "unsub");
  await stalled.sendText(JSON.stringify({
    jsonrpc: "2.0",
    id: 2,
    method: "jobs.unsubscribe",
    params: { job_id: "unsub" },
  }));
  await waitUntil(
    async () =>
      (await observer.result("jobs.get", { job_id: "unsub" })).bytes.stdout > plateau + 64 * MiB,
    "the job to read on without its stalled subscriber",
    20_000,
  );
  await observer.result("control", { type: "CANCEL", job_id: "unsub" });
});

Deno.test("backpressure: time held back by a slow client does not count as idle", async () => {
  await using server = await startTestServer();
  await using observer = await RawClient.connect(server.url);
  await using stalled = await RawWebSocket.connect(server.url);
  await startFlood(stalled, observer, { job_id: "not-idle", idle_timeout: 0.3 });
  await settledBytes(observer, "not-idle");
  // Settling took at least two polls 300 ms apart; let a few more idle periods pass.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const info = await observer.result("jobs.get", { job_id: "not-idle" });
  assert.equal(info.status, "running", `ended as ${info.status} (${info.reason})`);
  await observer.result("control", { type: "CANCEL", job_id: "not-idle" });
});

Deno.test("backpressure: what a command writes as it handles SIGTERM is read despite a stalled client", async () => {
  // A grace period longer than the test: the job must end by exiting on TERM, not by SIGKILL.
  await using server = await startTestServer({ killGraceMs: 20_000 });
  await using observer = await RawClient.connect(server.url);
  await using stalled = await RawWebSocket.connect(server.url);
  // The TERM handler writes 300 kB to stderr: more than a pipe holds, so it would block if the
  // job kept waiting for the stalled client.
  await startFlood(stalled, observer, {
    job_id: "last-words",
    command: `trap 'head -c 300000 /dev/zero | tr "\\0" t >&2; exit 0' TERM; ${FLOOD}`,
  });
  await settledBytes(observer, "last-words");
  await observer.result("jobs.subscribe", { job_id: "last-words", from_seq: 1_000_000 });
  await observer.result("control", { type: "CANCEL", job_id: "last-words" });
  const done = await observer.completion("last-words");
  assert.equal(done.status, "canceled");
  assert.equal(done.signal, null, "the shell exited by itself, it was not killed");
  assert.equal(done.exit_code, 0);
  // Plus whatever bash says of the pipeline TERM ended ("Terminated").
  assert.ok(done.bytes.stderr >= 300_000, `stderr: ${done.bytes.stderr} bytes`);
});
