import assert from "node:assert/strict";
import { ExecutorClient } from "../server/client.ts";
import { RedisStore } from "../server/store/redis.ts";
import { HAS_REDIS, startRedis } from "./redis_util.ts";
import { startTestServer, waitUntil } from "./test_util.ts";

async function health(url: string) {
  const response = await fetch(url.replace("ws:", "http:").replace(/ws$/, "health"));
  return await response.json();
}

Deno.test({
  name: "redis outage: jobs keep running, /health says degraded, and every record lands after",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis({ persist: true });
    await using server = await startTestServer({ redisUrl: redis.url });
    await using client = await ExecutorClient.connect(server.url);
    assert.equal((await client.request("server.info", {})).store.backend, "redis");

    // A job runs across the outage: it starts with Redis up and ends while it is down.
    const flag = `${Deno.makeTempDirSync()}/go`;
    const across = client.execute({
      command: `while [ ! -e '${flag}' ]; do sleep 0.02; done; echo across`,
      job_id: "across",
    });
    await waitUntil(() => server.jobs.list().length === 1, "the job to start");
    await redis.stop();
    Deno.writeTextFileSync(flag, "");
    assert.equal((await across).stdout, "across\n");
    // New jobs start and finish while Redis is down.
    const during = await client.execute({ command: "echo during", job_id: "during" });
    assert.equal(during.stdout, "during\n");
    const degraded = await health(server.url);
    assert.equal(degraded.status, "degraded");
    assert.ok(degraded.store.pending_writes > 0, JSON.stringify(degraded));
    // Reads say why at once instead of hanging.
    await assert.rejects(client.request("history.get", { job_id: "during" }), /unavailable/i);

    await redis.restart();
    await waitUntil(async () => (await health(server.url)).status === "ok", "the store to recover");
    const acrossRecord = await client.request("history.get", { job_id: "across" });
    assert.equal(acrossRecord.status, "completed");
    const duringRecord = await client.request("history.get", {
      job_id: "during",
      include_output: true,
    });
    assert.equal(duringRecord.status, "completed");
    assert.equal(duringRecord.output!.head, "during\n");
    assert.equal((await client.request("server.info", {})).store.dropped_writes, 0);
  },
});

Deno.test({
  name:
    "redis outage: job writes queued when the server dies are kept on disk and sent at the next start",
  ignore: !HAS_REDIS,
  fn: async () => {
    const dir = Deno.makeTempDirSync();
    const outboxPath = `${dir}/redis-outbox.db`;
    try {
      await using redis = await startRedis({ persist: true });
      const start = {
        job_id: "queued",
        command: "sleep 1000",
        shape: "sleep",
        cwd: null,
        session_id: null,
        node_id: "outbox-test",
        server_pid: 999_999_9,
        started_at: Date.now(),
        timeout_s: null,
        timeout_source: "none" as const,
      };
      {
        const store = await RedisStore.open(redis.url, { outboxPath, prefix: "outbox:" });
        await redis.stop();
        // Both resolve at once: queued, in memory and in the outbox.
        await store.jobStarted(start);
        await store.jobSpawned("queued", { pid: 4242, pgid: 4242 });
        assert.equal(store.health().pending_writes, 2);
        // The server goes away with Redis still down (dispose gives up after its flush window).
        await store[Symbol.asyncDispose]();
      }
      await redis.restart();
      await using next = await RedisStore.open(redis.url, { outboxPath, prefix: "outbox:" });
      await waitUntil(async () => (await next.get("queued").catch(() => null)) !== null, "replay");
      const record = (await next.get("queued"))!;
      assert.equal(record.status, "running");
      assert.equal(record.pgid, 4242, "the sweep can find the group");
      assert.deepEqual(await next.orphans("outbox-test", 0).then((r) => r.map((x) => x.job_id)), [
        "queued",
      ]);
      assert.equal(next.health().pending_writes, 0);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
