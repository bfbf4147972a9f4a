import assert from "node:assert/strict";
import { RawWebSocket } from "./raw_websocket.ts";
import { groupAlive, RawClient, runJob, startTestServer, waitUntil } from "./test_util.ts";

Deno.test("disconnect: a client that goes away takes its jobs down with it", async () => {
  await using server = await startTestServer();
  const client = await RawClient.connect(server.url);
  const { job_id, pgid } = await client.result("execute", {
    command: "sleep 30 & sleep 30 & wait",
  });
  await client.close();
  await using observer = await RawClient.connect(server.url);
  const info = await waitUntil(async () => {
    const job = await observer.result("jobs.get", { job_id });
    return job.status !== "running" && job;
  }, "the job to end after the disconnect");
  assert.equal(info.status, "canceled");
  assert.equal(info.reason, "client disconnected");
  assert.equal(groupAlive(pgid), false);
});

Deno.test("detach: a detached job survives its client and can be followed from another connection", async () => {
  await using server = await startTestServer();
  const starter = await RawClient.connect(server.url);
  const { job_id, pgid } = await starter.result("execute", {
    command: "echo before; sleep 0.4; echo after",
    detach: true,
  });
  await starter.waitFor((f) => f.params?.data === "before\n", "the first line");
  await starter.close();
  assert.ok(groupAlive(pgid), "still running after the disconnect");

  await using follower = await RawClient.connect(server.url);
  const sub = await follower.result("jobs.subscribe", { job_id });
  assert.equal(sub.status, "running");
  assert.equal(sub.replay_from_seq, 1);
  assert.equal(sub.missed, 0);
  const done = await follower.completion(job_id);
  assert.equal(done.status, "completed");
  assert.equal(follower.output(job_id), "before\nafter\n", "replay, then live");
  const seqs = follower.events(job_id).map((e) => e.params.seq);
  assert.deepEqual(
    seqs,
    seqs.map((_, i) => i + 1),
    "no gap and no duplicate between replay and live",
  );
});

Deno.test("subscribe: from_seq replays only what comes after it, even after the job ended", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const { jobId } = await runJob(client, {
    command: "echo one; sleep 0.05; echo two; sleep 0.05; echo three",
  });
  const all = client.events(jobId);
  const second = all.find((e) => e.params.data === "two\n");

  await using late = await RawClient.connect(server.url);
  const sub = await late.result("jobs.subscribe", { job_id: jobId, from_seq: second.params.seq });
  assert.equal(sub.status, "completed");
  assert.equal(sub.replay_from_seq, second.params.seq);
  await late.completion(jobId);
  assert.equal(late.output(jobId), "two\nthree\n");
  assert.deepEqual(
    late.events(jobId).map((e) => e.params.seq),
    all.filter((e) => e.params.seq >= second.params.seq).map((e) => e.params.seq),
  );
});

Deno.test("subscribe: reports what the bounded replay buffer no longer holds", async () => {
  await using server = await startTestServer({
    replayBufferBytes: 64 * 1024,
    chunkBytes: 8 * 1024,
  });
  await using client = await RawClient.connect(server.url);
  const { jobId, done } = await runJob(client, {
    command: "head -c 1000000 /dev/zero | tr '\\0' z",
  });
  await using late = await RawClient.connect(server.url);
  const sub = await late.result("jobs.subscribe", { job_id: jobId });
  assert.ok(sub.missed > 0, "early chunks were dropped");
  assert.equal(sub.replay_from_seq, sub.missed + 1);
  const replayed = await late.completion(jobId);
  assert.deepEqual(replayed, done, "the terminal notification is always replayable");
  assert.ok(late.output(jobId).length <= 64 * 1024);
});

Deno.test("subscribe: a finished job keeps only CC_EXECUTOR_FINISHED_REPLAY_BYTES of its replay", async () => {
  await using server = await startTestServer({
    replayBufferBytes: 1024 * 1024,
    finishedReplayBytes: 64 * 1024,
    chunkBytes: 8 * 1024,
  });
  await using client = await RawClient.connect(server.url);
  const { jobId, done } = await runJob(client, {
    command: "head -c 500000 /dev/zero | tr '\\0' z",
  });
  assert.ok(client.output(jobId).length === 500_000, "live subscribers got everything");
  await using late = await RawClient.connect(server.url);
  const sub = await late.result("jobs.subscribe", { job_id: jobId });
  assert.ok(sub.missed > 0);
  assert.deepEqual(await late.completion(jobId), done);
  const kept = late.output(jobId).length;
  assert.ok(kept > 0 && kept <= 64 * 1024, `replayed ${kept} bytes of output`);
});

Deno.test("subscribe: unknown jobs and unsubscribe", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const missing = await client.call("jobs.subscribe", { job_id: "ghost" });
  assert.equal(missing.error.code, -32001);
  const { job_id } = await client.result("execute", {
    command: "sleep 0.3; echo late",
    detach: true,
  });
  await using other = await RawClient.connect(server.url);
  await other.result("jobs.subscribe", { job_id });
  assert.deepEqual(await other.result("jobs.unsubscribe", { job_id }), {
    job_id,
    subscribed: true,
  });
  await client.completion(job_id);
  assert.equal(other.output(job_id), "", "nothing arrives after unsubscribe");
  assert.equal(other.events(job_id).filter((e) => e.method === "process.completed").length, 0);
});

Deno.test("jobs.list and jobs.get describe running and finished jobs", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const finished = await runJob(client, { command: "echo hi", cwd: "/" });
  const running = await client.result("execute", { command: "sleep 30" });
  const list = (await client.result("jobs.list", {})).jobs;
  assert.deepEqual(list.map((j: { job_id: string }) => j.job_id), [running.job_id, finished.jobId]);
  const onlyRunning = (await client.result("jobs.list", { status: "running" })).jobs;
  assert.deepEqual(onlyRunning.map((j: { job_id: string }) => j.job_id), [running.job_id]);
  assert.equal((await client.result("jobs.list", { limit: 1 })).jobs.length, 1);

  const info = await client.result("jobs.get", { job_id: finished.jobId });
  assert.equal(info.command, "echo hi");
  assert.equal(info.cwd, "/");
  assert.equal(info.status, "completed");
  assert.equal(info.exit_code, 0);
  assert.deepEqual(info.bytes, { stdout: 3, stderr: 0 });
  assert.equal(info.detach, false);
  assert.ok(info.duration_ms >= 0 && info.ended_at !== null);
  assert.equal(info.last_seq, 3);
  await client.result("control", { type: "CANCEL", job_id: running.job_id });
  await client.completion(running.job_id);
});

Deno.test("finished jobs are kept up to CC_EXECUTOR_KEEP_FINISHED_JOBS", async () => {
  await using server = await startTestServer({ keepFinishedJobs: 2 });
  await using client = await RawClient.connect(server.url);
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await runJob(client, { command: `echo ${i}` })).jobId);
  const list = (await client.result("jobs.list", {})).jobs.map((j: { job_id: string }) => j.job_id);
  assert.deepEqual(list, [ids[2], ids[1]]);
  assert.equal((await client.call("jobs.get", { job_id: ids[0] })).error.code, -32001);
});

Deno.test("the shell exiting stops what it left running in its group", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const { done, pgid, jobId } = await runJob(client, { command: "sleep 30 & echo left-behind" });
  assert.equal(done.status, "completed");
  assert.equal(client.output(jobId), "left-behind\n");
  assert.equal(groupAlive(pgid), false, "the background sleep did not outlive the job");
});

/** Kills a process that escaped its job's group, so a test leaves nothing running. */
function killEscapee(pid: number): void {
  try {
    Deno.kill(pid, "SIGKILL");
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

Deno.test("a process that leaves the group cannot hold the job open forever", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  // setsid puts the sleep in a session of its own, out of reach of the group, holding stdout open.
  // The fifo makes the shell wait until the escape has happened, so the sweep cannot pre-empt it.
  const { jobId, done } = await runJob(client, {
    command: 'f=$(mktemp -u); mkfifo "$f"; setsid sh -c \'echo "escaped $$"; echo > \'"$f"\'; ' +
      'exec sleep 3\' & read -r _ < "$f"; rm "$f"',
  });
  const output = client.output(jobId);
  const escapee = Number(/^escaped (\d+)\n$/.exec(output)?.[1]);
  try {
    assert.equal(done.status, "completed");
    assert.ok(
      done.duration_ms < 2900,
      `ended after ${done.duration_ms} ms, without waiting for the escapee`,
    );
    const errors = client.events(jobId).filter((e) => e.method === "process.error");
    assert.equal(errors.length, 1);
    assert.equal(
      errors[0].params.message,
      "Stopped reading stdout and stderr: a process outside the job's process group still holds the pipe open",
    );
    assert.ok(escapee > 0, `the escapee said who it is: ${JSON.stringify(output)}`);
  } finally {
    if (escapee > 0) killEscapee(escapee);
  }
});

Deno.test("an escaped process that keeps writing cannot hold the job open either", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  // The escapee writes without pause, so the pipe is never silent; it stops only when it is killed
  // or the pipe closes (yes exits on EPIPE once the server stops reading).
  const { jobId, done } = await runJob(client, {
    command: 'f=$(mktemp -u); mkfifo "$f"; setsid sh -c \'echo "escaped $$" >&2; ' +
      'echo > \'"$f"\'; exec yes\' & read -r _ < "$f"; rm "$f"',
  });
  const escapee = Number(/^escaped (\d+)\n/.exec(client.output(jobId, "stderr"))?.[1]);
  try {
    assert.equal(done.status, "completed");
    assert.ok(done.duration_ms < 5000, `ended after ${done.duration_ms} ms`);
    const errors = client.events(jobId).filter((e) => e.method === "process.error");
    // Stopping reading stdout closes it, so `yes` dies of SIGPIPE and stderr reaches its end.
    assert.deepEqual(errors.map((e) => e.params.message), [
      "Stopped reading stdout: a process outside the job's process group still holds the pipe open",
    ]);
    assert.ok(done.bytes.stdout > 0, "what it wrote before was delivered");
  } finally {
    if (escapee > 0) killEscapee(escapee);
  }
});

Deno.test("shutdown: a peer that stops reading and never answers the close cannot hold it up", async () => {
  const server = await startTestServer();
  const peer = await RawWebSocket.connect(server.url);
  try {
    const started = performance.now();
    await server.shutdown();
    const took = performance.now() - started;
    assert.ok(took < 5000, `shutdown took ${Math.round(took)} ms`);
  } finally {
    peer.close();
    await server.shutdown();
  }
});

Deno.test("websocket ping: a peer that stops answering is dropped and its jobs are canceled", async () => {
  await using server = await startTestServer({ wsIdleTimeoutSeconds: 1 });
  // Raw TCP that never reads, so never answers a ping.
  await using dead = await RawWebSocket.connect(server.url);
  await dead.sendText(JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "execute",
    params: { command: "sleep 30", job_id: "orphan" },
  }));
  await using observer = await RawClient.connect(server.url);
  const done = await waitUntil(async () => {
    const job = (await observer.call("jobs.get", { job_id: "orphan" })).result;
    return job && job.status !== "running" && job;
  }, "the dead peer's job to be canceled");
  assert.equal(done.status, "canceled");
  assert.equal(done.reason, "client disconnected");
});

Deno.test("server.info and ping", async () => {
  await using server = await startTestServer({ maxJobs: 9 });
  await using client = await RawClient.connect(server.url);
  const info = await client.result("server.info", {});
  assert.equal(info.name, "cc-executor");
  assert.equal(info.sessions, 1);
  assert.equal(info.running_jobs, 0);
  assert.equal(info.shell, "bash");
  assert.equal(info.process_groups, "setsid");
  assert.equal(info.limits.max_jobs, 9);
  const pong = await client.result("ping", {});
  assert.equal(pong.pong, true);
  assert.ok(!Number.isNaN(Date.parse(pong.time)));
  assert.deepEqual(await client.result("pong", {}), {}, "earlier clients' pong is accepted");
});
