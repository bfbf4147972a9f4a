import assert from "node:assert/strict";
import { ExecutorClient } from "../server/client.ts";
import { cliCommand, runCli } from "./cli_util.ts";
import { groupAlive, startTestServer } from "./test_util.ts";

Deno.test("cli jobs: list shows running and finished jobs, as a table or JSON", async () => {
  await using server = await startTestServer();
  const jobs = (...args: string[]) => runCli(["jobs", ...args, "--url", server.url]);
  const empty = await jobs("list");
  assert.equal(empty.code, 0);
  assert.equal(empty.stdout, "");
  assert.match(empty.stderr, /no jobs/);

  await using client = await ExecutorClient.connect(server.url);
  await client.execute({ command: "exit 2", job_id: "finished-one" });
  await client.request("execute", { command: "sleep 30", job_id: "still-running" });

  const table = await jobs("list");
  assert.equal(table.code, 0);
  const [header, first, second] = table.stdout.trimEnd().split("\n");
  assert.match(header!, /^JOB\s+STATUS\s+EXIT\s+DURATION\s+STARTED\s+COMMAND$/);
  assert.match(first!, /^still-running\s+running\s+\S+\s+.*sleep 30$/, "newest first");
  assert.match(second!, /^finished-one\s+failed\s+2\s+/);

  const json = JSON.parse((await jobs("list", "--json", "--status", "running")).stdout);
  assert.deepEqual(json.map((j: { job_id: string }) => j.job_id), ["still-running"]);
  assert.equal(json[0].command, "sleep 30");
  const limited = JSON.parse((await jobs("list", "--json", "--limit", "1")).stdout);
  assert.equal(limited.length, 1);
});

Deno.test("cli jobs: pause, resume and cancel reach the whole group; cancel waits for the outcome", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  await client.request("execute", {
    command: "sleep 30 & sleep 30; wait",
    job_id: "victim",
    detach: true,
  });
  const job = server.jobs.get("victim");
  const jobs = (...args: string[]) => runCli(["jobs", ...args, "--url", server.url]);

  const paused = await jobs("pause", "victim");
  assert.equal(paused.code, 0, paused.stderr);
  assert.equal(paused.stdout, "job victim: paused\n");
  assert.equal(job.status, "paused");
  const resumed = await jobs("resume", "victim");
  assert.equal(resumed.stdout, "job victim: running\n");

  const canceled = await jobs("cancel", "victim");
  assert.equal(canceled.code, 0, canceled.stderr);
  assert.equal(canceled.stdout, "job victim: canceled (canceled by request)\n");
  assert.equal(job.status, "canceled", "the outcome was in before the command returned");
  assert.equal(groupAlive(job.group.pgid), false);

  const again = await jobs("cancel", "victim");
  assert.equal(again.code, 1);
  assert.match(again.stderr, /it is not running \(status: canceled\)/);
  const missing = await jobs("pause", "no-such-job");
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'cc-executor: Job "no-such-job" not found\n');
});

Deno.test("cli jobs: cancel --no-wait returns once the cancel is sent", async () => {
  await using server = await startTestServer({ killGraceMs: 60_000 });
  await using client = await ExecutorClient.connect(server.url);
  const flag = `${Deno.makeTempDirSync()}/go`;
  // On SIGTERM it waits for the test's go-ahead, so "still stopping" does not depend on timing.
  await client.request("execute", {
    command: `trap 'while [ ! -e "${flag}" ]; do sleep 0.02; done; exit 0' TERM; sleep 30 & wait`,
    job_id: "slow-to-stop",
    detach: true,
  });
  const result = await runCli(["jobs", "cancel", "--no-wait", "--url", server.url, "slow-to-stop"]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "job slow-to-stop: cancel sent\n");
  const job = server.jobs.get("slow-to-stop");
  assert.equal(job.status, "running", "still stopping when the command returned");
  Deno.writeTextFileSync(flag, "");
  await job.done;
  assert.equal(job.status, "canceled");
});

Deno.test("cli jobs: attach says when the start of the output is no longer held", async () => {
  await using server = await startTestServer({
    replayBufferBytes: 64 * 1024,
    finishedReplayBytes: 64 * 1024,
    chunkBytes: 4096,
  });
  await using client = await ExecutorClient.connect(server.url);
  await client.execute({ command: "seq 1 100000", job_id: "chatty", collect: false });
  const result = await runCli(["jobs", "attach", "--url", server.url, "chatty"]);
  assert.equal(result.code, 0);
  assert.match(
    result.stderr,
    /no longer holds the start of job chatty's output; replaying from notification \d+ \(\d+ earlier ones dropped\)/,
  );
  assert.ok(result.stdout.endsWith("99999\n100000\n"));
  assert.ok(!result.stdout.startsWith("1\n"));
});

Deno.test("cli jobs: attach to an unknown job fails with 125; Ctrl-C stops following, the job runs on", async () => {
  await using server = await startTestServer();
  const unknown = await runCli(["jobs", "attach", "--url", server.url, "nope"]);
  assert.equal(unknown.code, 125);
  assert.equal(unknown.stderr, 'cc-executor: Job "nope" not found\n');

  await using client = await ExecutorClient.connect(server.url);
  await client.request("execute", {
    command: "echo started; sleep 30",
    job_id: "long",
    detach: true,
  });
  const child = cliCommand(["jobs", "attach", "--url", server.url, "long"]).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  assert.equal((await reader.read()).value, "started\n");
  child.kill("SIGINT");
  const stderr = new Response(child.stderr).text();
  while (!(await reader.read()).done);
  assert.equal((await child.status).code, 130);
  assert.match(await stderr, /stopped following job long; it keeps running/);
  const job = server.jobs.get("long");
  assert.equal(job.status, "running");
  assert.equal(groupAlive(job.group.pgid), true);
  await client.cancel("long");
});
