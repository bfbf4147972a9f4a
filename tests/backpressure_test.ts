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

Deno.test("backpressure: a client that stops reading stops the command, not the heap", async () => {
  await using server = await startTestServer();
  await using observer = await RawClient.connect(server.url);
  await using stalled = await RawWebSocket.connect(server.url);
  // 4 GiB: far more than any buffer on the way could hold.
  await stalled.sendText(JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "execute",
    params: {
      command: "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 4294967296",
      job_id: "flood",
    },
  }));
  await observer.waitFor(() => true, "anything");
  await waitUntil(
    async () => (await observer.call("jobs.get", { job_id: "flood" })).result,
    "the job",
  );
  const rssBefore = Deno.memoryUsage().rss;
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
