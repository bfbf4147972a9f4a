import assert from "node:assert/strict";
import { groupAlive, RawClient, runJob, startTestServer, waitUntil } from "./test_util.ts";

/** A command that starts background children and says when they all exist. */
const FAMILY = "sleep 30 & sleep 30 & (sleep 30 & wait) & echo ready; wait";

async function startFamily(client: RawClient, params: Record<string, unknown> = {}) {
  const result = await client.result("execute", { command: FAMILY, ...params });
  await client.waitFor(
    (f) => f.params?.job_id === result.job_id && f.params?.data === "ready\n",
    "ready",
  );
  assert.ok(groupAlive(result.pgid));
  return result as { job_id: string; pgid: number };
}

Deno.test("timeout: ends the job as timed_out and kills the whole group", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const job = await startFamily(client, { timeout: 0.5 });
  const done = await client.completion(job.job_id);
  assert.equal(done.status, "timed_out");
  assert.equal(done.reason, "timed out after 0.5s");
  assert.equal(done.signal, "SIGTERM");
  assert.ok(done.duration_ms >= 450, `ran ${done.duration_ms} ms`);
  assert.equal(groupAlive(job.pgid), false, "no process of the group survives");
});

Deno.test("timeout: a group that ignores SIGTERM is killed after the grace period", async () => {
  await using server = await startTestServer({ killGraceMs: 200 });
  await using client = await RawClient.connect(server.url);
  const { job_id, pgid } = await client.result("execute", {
    command: "trap '' TERM; sleep 30 & echo ready; wait",
    timeout: 0.3,
  });
  const done = await client.completion(job_id);
  assert.equal(done.status, "timed_out", "never success, even though the shell trapped TERM");
  assert.equal(done.signal, "SIGKILL");
  assert.equal(groupAlive(pgid), false);
});

Deno.test("timeout: values a timer cannot wait for are refused, not fired at once", async () => {
  // Without the server's cap (CC_EXECUTOR_MAX_TIMEOUT), the timer's own limit is what refuses.
  await using server = await startTestServer({ maxTimeoutSeconds: null });
  await using client = await RawClient.connect(server.url);
  for (const param of ["timeout", "idle_timeout"]) {
    const response = await client.call("execute", { command: "true", [param]: 2_147_484 });
    assert.equal(response.error?.code, -32602, JSON.stringify(response));
    assert.equal(response.error.data.issues[0].path, param);
    assert.match(response.error.data.issues[0].message, /at most 2147483 seconds/);
  }
  const longest = await client.result("execute", { command: "true", timeout: 2_147_483 });
  assert.equal((await client.completion(longest.job_id)).status, "completed");
});

Deno.test("idle_timeout: a silent job is stopped, one that keeps talking is not", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const silent = await client.result("execute", {
    command: `echo hi; ${FAMILY}`,
    idle_timeout: 0.4,
  });
  const silentDone = await client.completion(silent.job_id);
  assert.equal(silentDone.status, "timed_out");
  assert.equal(silentDone.reason, "idle for 0.4s (no output)");
  assert.equal(groupAlive(silent.pgid), false);

  const chatty = await runJob(client, {
    command: "for i in $(seq 1 8); do echo tick; sleep 0.1; done",
    idle_timeout: 0.5,
  });
  assert.equal(chatty.done.status, "completed", "output kept resetting the idle timer");
});

Deno.test("cancel: ends the job as canceled and kills the whole group", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const job = await startFamily(client);
  const canceled = await client.result("control", { type: "CANCEL", job_id: job.job_id });
  assert.equal(canceled.job_id, job.job_id);
  const done = await client.completion(job.job_id);
  assert.equal(done.status, "canceled");
  assert.equal(done.reason, "canceled by request");
  assert.equal(groupAlive(job.pgid), false);
  assert.equal(
    client.events(job.job_id).filter((e) => e.method === "process.completed").length,
    1,
    "exactly one terminal notification",
  );
});

Deno.test("pause and resume: SIGSTOP and SIGCONT reach the whole group", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  // The output comes from a background child, so only a group-wide stop silences it.
  const { job_id, pgid } = await client.result("execute", {
    command: "(while true; do echo tick; sleep 0.02; done) & wait",
    timeout: 30,
  });
  await client.waitFor(
    (f) => f.method === "process.output" && f.params.job_id === job_id,
    "first tick",
  );
  const paused = await client.result("control", { type: "pause", job_id });
  assert.equal(paused.status, "paused");
  await client.waitFor(
    (f) => f.method === "process.paused" && f.params.job_id === job_id,
    "process.paused",
  );
  const bytesNow = async () => (await client.result("jobs.get", { job_id })).bytes.stdout as number;
  // Output already in the pipe still lands; wait until the count settles (it never would if the
  // background child kept running), then check it stays put.
  let before = await bytesNow();
  await waitUntil(async () => {
    await new Promise((r) => setTimeout(r, 100));
    const now = await bytesNow();
    const settled = now === before;
    before = now;
    return settled;
  }, "the output to stop while paused");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(
    (await client.result("jobs.get", { job_id })).bytes.stdout,
    before,
    "silent while paused",
  );
  assert.equal((await client.result("jobs.get", { job_id })).status, "paused");

  const again = await client.call("control", { type: "PAUSE", job_id });
  assert.equal(again.error.code, -32002);
  assert.match(again.error.message, /already paused/);

  assert.equal((await client.result("control", { type: "RESUME", job_id })).status, "running");
  await client.waitFor(
    (f) => f.method === "process.resumed" && f.params.job_id === job_id,
    "process.resumed",
  );
  await waitUntil(
    async () => (await client.result("jobs.get", { job_id })).bytes.stdout > before,
    "output after resume",
  );
  await client.result("control", { type: "CANCEL", job_id });
  assert.equal((await client.completion(job_id)).status, "canceled");
  assert.equal(groupAlive(pgid), false);
});

Deno.test("cancel: a paused job can still be canceled", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const job = await startFamily(client);
  await client.result("control", { type: "PAUSE", job_id: job.job_id });
  await client.result("control", { type: "CANCEL", job_id: job.job_id });
  const done = await client.completion(job.job_id);
  assert.equal(done.status, "canceled");
  assert.equal(done.signal, "SIGTERM", "TERM was delivered, so CONT followed it");
  assert.equal(groupAlive(job.pgid), false);
});

Deno.test("control: without job_id it acts on the connection's latest job", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const none = await client.call("control", { type: "CANCEL" });
  assert.equal(none.error.code, -32001);
  assert.match(none.error.message, /started no job; pass job_id/);
  await client.result("execute", { command: "sleep 30" });
  const latest = await client.result("execute", { command: "sleep 30" });
  const canceled = await client.result("control", { type: "CANCEL" });
  assert.equal(canceled.job_id, latest.job_id);
  assert.equal((await client.completion(latest.job_id)).status, "canceled");
});

Deno.test("control: clear errors for unknown jobs, finished jobs and bad types", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const unknown = await client.call("control", { type: "CANCEL", job_id: "nope" });
  assert.equal(unknown.error.code, -32001);
  assert.equal(unknown.error.message, 'Job "nope" not found');

  const { jobId } = await runJob(client, { command: "true" });
  const finished = await client.call("control", { type: "CANCEL", job_id: jobId });
  assert.equal(finished.error.code, -32002);
  assert.equal(
    finished.error.message,
    `Cannot cancel job "${jobId}": it is not running (status: completed)`,
  );
  assert.deepEqual(finished.error.data, { job_id: jobId, status: "completed" });

  const resume = await client.call("control", { type: "RESUME", job_id: jobId });
  assert.equal(resume.error.code, -32002);

  const badType = await client.call("control", { type: "EXPLODE", job_id: jobId });
  assert.equal(badType.error.code, -32602);

  // Still "running" while its stop sequence runs (the shell ignores TERM), yet not controllable.
  const stubborn = await client.result("execute", {
    command: "trap '' TERM; echo ready; sleep 30 & wait",
  });
  await client.waitFor((f) => f.params?.data === "ready\n", "ready");
  await client.result("control", { type: "CANCEL", job_id: stubborn.job_id });
  const again = await client.call("control", { type: "PAUSE", job_id: stubborn.job_id });
  assert.equal(again.error.code, -32002);
  assert.equal(
    again.error.message,
    `Cannot pause job "${stubborn.job_id}": it is already being stopped (canceled by request)`,
  );
  assert.deepEqual(again.error.data, {
    job_id: stubborn.job_id,
    status: "running",
    state: "stopping",
  });
  assert.equal((await client.completion(stubborn.job_id)).status, "canceled");
});
