import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  ExecutorClient,
  ExecutorRpcError,
  type JobEvent,
} from "../server/client.ts";
import { groupAlive, RawClient, startTestServer } from "./test_util.ts";

Deno.test("client: execute resolves to the outcome with stdout, stderr and interleaved output", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  assert.match(client.sessionId, /^[0-9a-f-]{36}$/);
  const ok = await client.execute({ command: "echo out; sleep 0.05; echo err >&2" });
  assert.equal(ok.success, true);
  assert.equal(ok.status, "completed");
  assert.equal(ok.exitCode, 0);
  assert.equal(ok.stdout, "out\n");
  assert.equal(ok.stderr, "err\n");
  assert.equal(ok.output, "out\nerr\n");
  assert.equal(ok.error, null);
  assert.deepEqual(ok.bytes, { stdout: 4, stderr: 4 });
  assert.ok(ok.durationMs >= 0);

  const failed = await client.execute({ command: "exit 3" });
  assert.equal(failed.success, false);
  assert.equal(failed.status, "failed");
  assert.equal(failed.exitCode, 3);
  assert.equal(failed.error, "exit code 3");

  const timedOut = await client.execute({ command: "sleep 30", timeout: 0.2 });
  assert.equal(timedOut.status, "timed_out");
  assert.equal(timedOut.error, "timed out after 0.2s");
  assert.equal(timedOut.signal, "SIGTERM");
});

Deno.test("client: streaming callbacks see every chunk as it arrives, in order", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const out: string[] = [];
  const err: string[] = [];
  const events: JobEvent[] = [];
  const result = await client.execute({
    command: "for i in 1 2 3; do echo $i; echo e$i >&2; sleep 0.03; done",
    onStdout: (text) => out.push(text),
    onStderr: (text) => err.push(text),
    onEvent: (event) => events.push(event),
    collect: false,
  });
  // The two pipes are read independently, so only the order within each stream is guaranteed
  // (and how writes are coalesced depends on timing, so compare the text, not the chunking).
  assert.equal(out.join(""), "1\n2\n3\n");
  assert.equal(err.join(""), "e1\ne2\ne3\n");
  assert.equal(events[0]!.method, "process.started");
  assert.equal(events.at(-1)!.method, "process.completed");
  const seqs = events.map((e) => e.params.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), "events arrive in seq order");
  assert.equal(result.stdout, "", "collect: false keeps nothing");
  assert.deepEqual(result.bytes, { stdout: 6, stderr: 9 });
});

Deno.test("client: stream() yields events up to completion; breaking out cancels the job", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const events: JobEvent[] = [];
  for await (const event of client.stream({ command: "echo a; echo b" })) events.push(event);
  assert.equal(events[0]!.method, "process.started");
  assert.equal(events.at(-1)!.method, "process.completed");
  const text = events.flatMap((e) => e.method === "process.output" ? [e.params.data] : []).join("");
  assert.equal(text, "a\nb\n");

  let pgid = 0;
  let jobId = "";
  for await (const event of client.stream({ command: "echo first; sleep 30" })) {
    if (event.method === "process.started") {
      [pgid, jobId] = [event.params.pgid, event.params.job_id];
    }
    if (event.method === "process.output") break;
  }
  const info = await client.request("jobs.get", { job_id: jobId });
  assert.ok(["running", "canceled"].includes(info.status));
  const done = await client.subscribe(jobId);
  assert.equal(done.status, "canceled");
  assert.equal(groupAlive(pgid), false);
});

Deno.test("client: aborting the signal cancels the remote job", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const controller = new AbortController();
  const result = await client.execute({
    command: "echo started; sleep 30",
    signal: controller.signal,
    onStdout: () => controller.abort(),
  });
  assert.equal(result.status, "canceled");
  assert.equal(result.error, "canceled by request");
  assert.equal(result.stdout, "started\n");
});

Deno.test("client: refusals reject with ExecutorRpcError carrying code and data", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const error = await client.execute({ command: "ls", cwd: "/no/such/dir" }).catch((e) => e);
  assert.ok(error instanceof ExecutorRpcError);
  assert.equal(error.code, -32005);
  assert.deepEqual(error.data, { cwd: "/no/such/dir" });
  const invalid = await client.execute({ command: "" }).catch((e) => e);
  assert.ok(invalid instanceof ExecutorRpcError);
  assert.equal(invalid.code, -32602);
});

Deno.test("client: bad params are refused before sending, exactly as the server would refuse them", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  await using raw = await RawClient.connect(server.url);
  const bad = { command: "true", timeout: -1, env: { "": "x" } };
  let settled = false;
  // deno-lint-ignore no-explicit-any
  const refusal = client.request("execute", bad as any).catch((e) => {
    settled = true;
    return e;
  });
  await Promise.resolve();
  await Promise.resolve();
  assert.ok(settled, "refused at once, without a round trip to the server");
  const local = await refusal;
  assert.ok(local instanceof ExecutorRpcError);
  const remote = (await raw.call("execute", bad)).error;
  assert.deepEqual({ code: local.code, message: local.message, data: local.data }, remote);
  assert.deepEqual(
    (local.data as { issues: { path: string }[] }).issues.map((i) => i.path),
    ["timeout", "env."], // the empty key is the last path segment
  );
  assert.equal(server.jobs.list().length, 0, "nothing was started");
});

Deno.test("client: input, pause, resume and cancel by job id", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const job = client.execute({
    command: "read -r name; echo hello $name",
    keep_stdin_open: true,
    job_id: "greet",
  });
  await client.input("greet", "ada\n", { eof: true });
  assert.equal((await job).stdout, "hello ada\n");

  const long = client.execute({ command: "sleep 30", job_id: "long" });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal((await client.pause("long")).status, "paused");
  assert.equal((await client.resume("long")).status, "running");
  assert.equal((await client.cancel("long")).job_id, "long");
  assert.equal((await long).status, "canceled");
});

Deno.test("client: another client can follow a detached job with subscribe", async () => {
  await using server = await startTestServer();
  const starter = await ExecutorClient.connect(server.url);
  const started = starter.execute({
    command: "echo one; sleep 0.3; echo two",
    detach: true,
    job_id: "shared",
  })
    .catch((e) => e);
  await new Promise((r) => setTimeout(r, 100));
  await starter.close();
  assert.ok((await started) instanceof ConnectionClosedError);
  assert.equal((await started).jobId, "shared", "the error says which job to resubscribe to");

  await using follower = await ExecutorClient.connect(server.url);
  const outcome = await follower.subscribe("shared");
  assert.equal(outcome.status, "completed");
  assert.equal(outcome.stdout, "one\ntwo\n");
});

Deno.test("client: connection failures are ConnectionClosedError with the reason", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close(); // nothing listens there now
  const refused = await ExecutorClient.connect(`ws://127.0.0.1:${port}/ws`).catch((e) => e);
  assert.ok(refused instanceof ConnectionClosedError);
  assert.match(refused.message, new RegExp(`^Cannot connect to ws://127.0.0.1:${port}/ws: `));

  await using server = await startTestServer({ token: "client-test-token-123" });
  const anonymous = await ExecutorClient.connect(server.url, { token: "" }).catch((e) => e);
  assert.ok(anonymous instanceof ConnectionClosedError);
  await using authed = await ExecutorClient.connect(server.url, { token: "client-test-token-123" });
  assert.equal((await authed.execute({ command: "echo in" })).stdout, "in\n");
});

Deno.test("client: a job running when the server shuts down ends as canceled, then the connection closes", async () => {
  const server = await startTestServer();
  const client = await ExecutorClient.connect(server.url);
  const job = client.execute({ command: "sleep 30 & sleep 30 & wait" });
  await new Promise((r) => setTimeout(r, 100));
  const stopping = server.shutdown();
  const outcome = await job;
  assert.equal(outcome.status, "canceled");
  assert.equal(outcome.error, "server shutting down");
  await stopping;
  await client.closed;
  const late = await client.execute({ command: "true" }).catch((e) => e);
  assert.ok(late instanceof ConnectionClosedError);
  assert.match(late.message, /code 1001: server shutting down/);
});
