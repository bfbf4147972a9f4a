/**
 * Review cases for requests forwarded to the node that runs a job (server/cluster/remote_control.ts).
 */
import assert from "node:assert/strict";
import { createClient } from "redis";
import type { ExecutorServer } from "../server/server.ts";
import { startNode as startClusterNode, writeTokenPolicy } from "./cluster_util.ts";
import { HAS_REDIS, startRedis } from "./redis_util.ts";
import { RawClient, waitUntil } from "./test_util.ts";

const MAIN = "main-token-0123456789abcdef";
const OTHER = "other-token-0123456789abcdef";

/** An in-process node on `redisUrl` with the main token and a restricted "other" token. */
async function startNode(redisUrl: string, id: string, dir: string): Promise<ExecutorServer> {
  const policy = await writeTokenPolicy(dir, { other: OTHER });
  return await startClusterNode(redisUrl, id, {
    CC_EXECUTOR_TOKEN: MAIN,
    CC_EXECUTOR_POLICY: policy,
  });
}

function connect(url: string, token: string): Promise<RawClient> {
  return RawClient.connect(url, { headers: { authorization: `Bearer ${token}` } });
}

Deno.test({
  name:
    "cluster remote: another token's job of a node that is gone is not found, as locally (no node named)",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const dir = await Deno.makeTempDir();
    const owner = await startNode(redis.url, "runs-it", dir);
    const asked = await startNode(redis.url, "asked", dir);
    try {
      let jobId: string;
      {
        await using main = await connect(owner.url, MAIN);
        ({ job_id: jobId } = await main.result("execute", { command: "true" }));
        await main.completion(jobId);
      }
      await using stranger = await connect(asked.url, OTHER);
      await waitUntil(async () => {
        const r = await stranger.call("jobs.get", { job_id: jobId });
        return r.error?.code === -32001;
      }, "the owner to refuse the stranger");
      await owner.shutdown();
      const r = await stranger.call("jobs.get", { job_id: jobId });
      assert.equal(r.error?.code, -32001, JSON.stringify(r.error));
      assert.doesNotMatch(r.error.message, /runs-it/);
    } finally {
      await owner.shutdown();
      await asked.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "cluster remote: a control request that is JSON but not an object does not crash the node",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const dir = await Deno.makeTempDir();
    const node = await startNode(redis.url, "target", dir);
    const raw = createClient({ url: redis.url });
    await raw.connect();
    try {
      for (const message of ["null", "1", '"x"', "{}", '{"id":"a","reply":"r"}', "[]"]) {
        assert.equal(await raw.publish("cc-executor:cluster:control:target", message), 1);
      }
      await raw.publish("cc-executor:cluster:reply:x", "null");
      await new Promise((resolve) => setTimeout(resolve, 500));
      await using main = await connect(node.url, MAIN);
      assert.equal((await main.result("execute", { command: "echo ok" })).status, "running");
    } finally {
      raw.destroy();
      await node.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "cluster remote: jobs.get of an unknown job does not hang on a Redis that stopped answering",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const dir = await Deno.makeTempDir();
    const node = await startNode(redis.url, "solo", dir);
    const pid = Number(
      new TextDecoder().decode(
        (await new Deno.Command("redis-cli", { args: ["-p", String(redis.port), "info", "server"] })
          .output()).stdout,
      ).match(/process_id:(\d+)/)![1],
    );
    try {
      await using main = await connect(node.url, MAIN);
      Deno.kill(pid, "SIGSTOP");
      const t0 = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const answer = await Promise.race([
        main.call("jobs.get", { job_id: "nope" }),
        new Promise<null>((r) => timer = setTimeout(() => r(null), 12_000)),
      ]);
      clearTimeout(timer);
      Deno.kill(pid, "SIGCONT");
      const took = performance.now() - t0;
      assert.notEqual(answer, null, "jobs.get did not answer within 12 s");
      // Redis has a deadline (2 s): far short of the 12 s this waits, whatever the load.
      assert.ok(took < 10_000, `jobs.get took ${took} ms`);
      assert.equal(answer!.error?.code, -32009);
    } finally {
      try {
        Deno.kill(pid, "SIGCONT");
      } catch { /* gone */ }
      await node.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "cluster remote: a request for a job of another node fails within its timeout while Redis holds writes",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const dir = await Deno.makeTempDir();
    const owner = await startNode(redis.url, "runs-it", dir);
    const asked = await startNode(redis.url, "asked", dir);
    const raw = createClient({ url: redis.url });
    await raw.connect();
    try {
      await using here = await connect(owner.url, MAIN);
      await using there = await connect(asked.url, MAIN);
      const { job_id: jobId } = await here.result("execute", { command: "sleep 30" });
      await waitUntil(
        async () => (await there.call("jobs.get", { job_id: jobId })).result,
        "remote get",
      );
      await raw.sendCommand(["CLIENT", "PAUSE", "15000", "WRITE"]);
      const t0 = performance.now();
      const answer = await there.call("control", { type: "CANCEL", job_id: jobId });
      const took = performance.now() - t0;
      await raw.sendCommand(["CLIENT", "UNPAUSE"]);
      // The 5 s deadline, not the 15 s pause: the bound leaves room for a loaded machine.
      assert.ok(took < 12_000, `control took ${took} ms`);
      assert.equal(answer.error?.code, -32016);
      assert.match(answer.error.message, /no answer within 5000 ms/);
    } finally {
      try {
        await raw.sendCommand(["CLIENT", "UNPAUSE"]);
      } catch { /* */ }
      raw.destroy();
      await owner.shutdown();
      await asked.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
