import assert from "node:assert/strict";
import { ExecutorClient, ExecutorRpcError } from "../server/client.ts";
import { defaultConfig } from "../server/config.ts";
import { ErrorCode } from "../server/protocol.ts";
import { silentLogger } from "../server/log.ts";
import { startServer } from "../server/server.ts";
import { SqliteStore } from "../server/store/sqlite.ts";
import { startCliServer } from "./cli_util.ts";
import { groupAlive, RawClient, startTestServer, waitUntil } from "./test_util.ts";

const policy = defaultConfig().timeouts;

Deno.test("history: a job's record is written as it starts and completed when it ends", async () => {
  await using server = await startTestServer({ historyOutputChars: 10 });
  await using client = await ExecutorClient.connect(server.url);
  const result = await client.execute({
    // One stream only: the order between stdout and stderr is the order the server read them.
    command: "printf 0123456789abcdefghijklmnopqrstuvwxyz; exit 3",
    job_id: "recorded",
    timeout: 60,
  });
  assert.equal(result.exitCode, 3);
  const record = await client.request("history.get", { job_id: "recorded", include_output: true });
  assert.equal(record.status, "failed");
  assert.equal(record.exit_code, 3);
  assert.equal(record.shape, "printf");
  assert.equal(record.session_id, client.sessionId);
  assert.equal(record.node_id, defaultConfig().nodeId);
  assert.ok(record.pgid! > 0 && record.pid === record.pgid);
  assert.deepEqual(record.bytes, { stdout: 36, stderr: 0 });
  assert.deepEqual(record.timeout, { seconds: 60, source: "request" });
  assert.ok(record.duration_ms! >= 0 && record.ended_at !== null);
  // The head and tail are bounded (10 characters each here).
  assert.equal(record.output!.head, "0123456789");
  assert.equal(record.output!.tail, "qrstuvwxyz");
  const listed = await client.request("history.list", { limit: 5 });
  assert.equal(listed.jobs[0]!.job_id, "recorded");
  assert.equal(listed.jobs[0]!.output, undefined, "lists carry no output");
});

Deno.test("history: jobs outlive the in-memory job table, and history.list pages through them", async () => {
  await using server = await startTestServer({ keepFinishedJobs: 1 });
  await using client = await ExecutorClient.connect(server.url);
  for (let i = 0; i < 5; i++) await client.execute({ command: `echo ${i}`, job_id: `job-${i}` });
  await assert.rejects(client.request("jobs.get", { job_id: "job-0" }), /not found/);
  assert.equal((await client.request("history.get", { job_id: "job-0" })).status, "completed");
  const seen: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.request("history.list", { limit: 2, cursor });
    seen.push(...page.jobs.map((job) => job.job_id));
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  assert.deepEqual(seen, ["job-4", "job-3", "job-2", "job-1", "job-0"]);
  const searched = await client.request("history.list", { search: "ECHO 3" });
  assert.deepEqual(searched.jobs.map((job) => job.job_id), ["job-3"]);
  await assert.rejects(client.request("history.list", { cursor: "garbage!" }), (error) => {
    assert.ok(error instanceof ExecutorRpcError);
    assert.equal(error.code, ErrorCode.INVALID_PARAMS);
    return true;
  });
  await assert.rejects(client.request("history.get", { job_id: "never" }), (error) => {
    assert.ok(error instanceof ExecutorRpcError);
    assert.equal(error.code, ErrorCode.JOB_NOT_FOUND);
    return true;
  });
});

Deno.test("history: without a timeout, a command gets one estimated from its history", async () => {
  await using server = await startTestServer({
    timeouts: { ...policy, defaultSeconds: 7, floorSeconds: 2, ceilingSeconds: 60 },
  });
  await using client = await ExecutorClient.connect(server.url);
  const first = await client.request("execute", { command: "sleep 0.05" });
  assert.deepEqual(first.timeout, { seconds: 7, source: "default", samples: 0 });
  await server.jobs.get(first.job_id).done;
  for (let i = 0; i < 2; i++) await client.execute({ command: "sleep 0.05" });
  // Three successful runs of the shape "sleep": 3 x p95, at least the floor (2 s).
  const estimated = await client.request("execute", { command: "sleep 0.05" });
  assert.equal(estimated.timeout.source, "history");
  assert.equal(estimated.timeout.samples, 3);
  const seconds = estimated.timeout.seconds!;
  assert.ok(seconds >= 2 && seconds <= 60, `estimated ${seconds} s`);
  await server.jobs.get(estimated.job_id).done;
  // The estimate is enforced, and the reason says where it came from.
  const slow = await client.execute({ command: `sleep 0.05; sleep ${seconds + 30}` });
  assert.equal(slow.status, "timed_out");
  assert.equal(slow.error, `timed out after ${seconds}s (estimated from this command's history)`);
  // A run the estimate cut short raises the next estimate to at least 3 times it.
  const next = await client.request("execute", { command: "sleep 0.01" });
  assert.equal(next.timeout.seconds, Math.min(60, seconds * 3));
  await server.jobs.get(next.job_id).done;
  const given = await client.request("execute", { command: "sleep 0.01", timeout: 2 });
  assert.deepEqual(given.timeout, { seconds: 2, source: "request", samples: 0 });
  await server.jobs.get(given.job_id).done;
});

Deno.test("history: two executes with one job_id in one batch run the command once", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  client.socket.send(JSON.stringify([1, 2, 3].map((id) => ({
    jsonrpc: "2.0",
    id,
    method: "execute",
    params: { command: "sleep 0.2", job_id: "once" },
  }))));
  const batch = await client.waitFor((f) => Array.isArray(f), "the batch response");
  const results = batch.map((r: { result: { pgid: number; existing: boolean } }) => r.result);
  assert.equal(new Set(results.map((r: { pgid: number }) => r.pgid)).size, 1);
  assert.deepEqual(results.map((r: { existing: boolean }) => r.existing).sort(), [
    false,
    true,
    true,
  ]);
  await server.jobs.get("once").done;
});

Deno.test("history: a job id is never reused, even after the job has left memory", async () => {
  await using server = await startTestServer({ keepFinishedJobs: 0 });
  await using client = await ExecutorClient.connect(server.url);
  await client.execute({ command: "echo first", job_id: "unique" });
  await assert.rejects(client.execute({ command: "echo first", job_id: "unique" }), (error) => {
    assert.ok(error instanceof ExecutorRpcError);
    assert.equal(error.code, ErrorCode.JOB_ID_CONFLICT);
    assert.match(error.message, /job_id "unique" was already used \(status: completed/);
    return true;
  });
  const record = await client.request("history.get", { job_id: "unique", include_output: true });
  assert.equal(record.output!.head, "first\n", "the first record is intact");
});

Deno.test("history: a record write that meets a locked database is retried, not lost", async () => {
  const dir = Deno.makeTempDirSync();
  const db = `${dir}/history.db`;
  try {
    await using server = await startTestServer({ db });
    await using client = await ExecutorClient.connect(server.url);
    // Another process (here: another connection) holds the write lock longer than the busy wait.
    const { DatabaseSync } = await import("node:sqlite");
    const other = new DatabaseSync(db);
    other.exec("BEGIN IMMEDIATE");
    const release = setTimeout(() => other.exec("COMMIT"), 1500);
    try {
      const result = await client.execute({ command: "echo locked-out", job_id: "retried" });
      assert.equal(result.stdout, "locked-out\n", "the job ran regardless");
    } finally {
      await new Promise((resolve) => setTimeout(resolve, 1600));
      clearTimeout(release);
      other.close();
    }
    await waitUntil(async () => {
      const record = await client.request("history.get", { job_id: "retried" }).catch(() => null);
      return record?.status === "completed";
    }, "the retried writes to land");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("history: with adaptive timeouts off (and no CC_EXECUTOR_MAX_TIMEOUT), a request without a timeout has none", async () => {
  await using server = await startTestServer({
    timeouts: { ...policy, adaptive: false },
    maxTimeoutSeconds: null,
  });
  await using client = await ExecutorClient.connect(server.url);
  const started = await client.request("execute", { command: "true" });
  assert.deepEqual(started.timeout, { seconds: null, source: "none", samples: 0 });
  await server.jobs.get(started.job_id).done;
});

Deno.test("history: CC_EXECUTOR_HISTORY=off records nothing and says so", async () => {
  await using server = await startTestServer({ history: false });
  await using client = await ExecutorClient.connect(server.url);
  const result = await client.execute({ command: "echo still runs" });
  assert.equal(result.stdout, "still runs\n");
  await assert.rejects(client.request("history.list", {}), (error) => {
    assert.ok(error instanceof ExecutorRpcError);
    assert.equal(error.code, ErrorCode.STORE_UNAVAILABLE);
    assert.match(error.message, /history is off/);
    return true;
  });
  assert.equal((await client.request("server.info", {})).store.backend, "none");
});

Deno.test("history: prune deletes what ended before the cut-off; retention prunes at start", async () => {
  const dir = Deno.makeTempDirSync();
  const db = `${dir}/history.db`;
  try {
    {
      await using server = await startTestServer({ db, historyRetentionDays: 0 });
      await using client = await ExecutorClient.connect(server.url);
      await client.execute({ command: "echo old", job_id: "old" });
      const pruned = await client.request("history.prune", { older_than_seconds: 3600 });
      assert.equal(pruned.deleted, 0, "it ended moments ago");
    }
    // Age the record by 40 days, as if the server had been idle since.
    {
      await using store = new SqliteStore(db);
      const record = (await store.get("old"))!;
      const aged = Date.now() - 40 * 86_400_000;
      await store.jobStarted({ ...record, started_at: aged - 1000 });
      await store.jobEnded("old", {
        status: "completed",
        ended_at: aged,
        duration_ms: 1000,
        exit_code: 0,
        signal: null,
        reason: null,
        bytes_stdout: 4,
        bytes_stderr: 0,
        truncated: false,
        output_head: "old\n",
        output_tail: "",
        hooks: null,
      });
    }
    await using server = await startTestServer({ db, historyRetentionDays: 30 });
    await using client = await ExecutorClient.connect(server.url);
    await waitUntil(
      async () => (await client.request("history.list", {})).jobs.length === 0,
      "the 40-day-old record to be pruned at start",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("history: a server killed with SIGKILL leaves its job interrupted at the next start, group stopped", async () => {
  const dir = Deno.makeTempDirSync();
  const env = { CC_EXECUTOR_DB: `${dir}/history.db`, CC_EXECUTOR_NODE_ID: "sweep-test" };
  try {
    const first = await startCliServer(env);
    const client = await ExecutorClient.connect(first.url);
    const started = await client.request("execute", {
      command: "sleep 60 & sleep 60; wait",
      job_id: "orphan",
      detach: true,
    });
    first.child.kill("SIGKILL");
    await first.child.status;
    await client.closed;
    await first.child.stdout.cancel();
    await first.log();
    assert.equal(groupAlive(started.pgid), true, "a SIGKILLed server cannot stop its groups");

    const second = await startCliServer(env);
    try {
      await using again = await ExecutorClient.connect(second.url);
      const record = await again.request("history.get", { job_id: "orphan" });
      assert.equal(record.status, "interrupted");
      assert.match(record.reason!, /stopped without ending the job; its process group was stopped/);
      assert.equal(groupAlive(started.pgid), false, "the sweep stopped the group");
    } finally {
      second.child.kill("SIGTERM");
      await second.child.status;
      await second.child.stdout.cancel();
      await second.log();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("history: a record left by an earlier server with this very pid is swept too", async () => {
  const dir = Deno.makeTempDirSync();
  const db = `${dir}/history.db`;
  try {
    {
      // A container restarted: the new server got the pid the old one had.
      await using store = new SqliteStore(db);
      await store.jobStarted({
        job_id: "same-pid",
        command: "sleep 1000",
        shape: "sleep",
        cwd: null,
        session_id: null,
        node_id: defaultConfig().nodeId,
        server_pid: Deno.pid,
        started_at: Date.now() - 60_000,
        timeout_s: null,
        timeout_source: "none",
      });
    }
    await using server = await startTestServer({ db });
    await using client = await ExecutorClient.connect(server.url);
    const record = await client.request("history.get", { job_id: "same-pid" });
    assert.equal(record.status, "interrupted");
    assert.match(record.reason!, /no process of it was left/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("history: a client that leaves while its job is being recorded does not leave the job running", async () => {
  /** A store whose start records take a while (a busy disk, a distant Redis). */
  class SlowStore extends SqliteStore {
    override async jobStarted(start: Parameters<SqliteStore["jobStarted"]>[0]) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      return super.jobStarted(start);
    }
  }
  await using store = new SlowStore(":memory:");
  await using server = await startServer(defaultConfig({ port: 0, killGraceMs: 300 }), {
    logger: silentLogger,
    store,
  });
  const client = await RawClient.connect(server.url);
  client.sendText(JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "execute",
    params: { command: "sleep 30", job_id: "abandoned" },
  }));
  await new Promise((resolve) => setTimeout(resolve, 50));
  client.socket.close();
  await client.closed;
  const job = (await waitUntil(
    () => server.jobs.list().find((j) => j.id === "abandoned"),
    "the job to be spawned",
  ))!;
  await job.done;
  assert.equal(job.status, "canceled");
  assert.equal(job.reason, "client disconnected");
  assert.equal(groupAlive(job.group.pgid), false);
});

Deno.test("history: server.info and /health report the store", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const info = await client.request("server.info", {});
  assert.deepEqual(info.store, {
    backend: "sqlite",
    status: "ok",
    pending_writes: 0,
    dropped_writes: 0,
    location: ":memory:",
  });
  const health = await (await fetch(server.url.replace("ws:", "http:").replace(/ws$/, "health")))
    .json();
  assert.equal(health.status, "ok");
  assert.deepEqual(health.store, { backend: "sqlite", status: "ok", pending_writes: 0 });
});
