/**
 * The node registry's edges: a Redis that stops answering, Redis outages, and which dead holder
 * of a node id may be taken over at once (and which live one must not be).
 */
import assert from "node:assert/strict";
import { createClient } from "redis";
import { defaultConfig } from "../server/config.ts";
import { createLogger, type Logger } from "../server/log.ts";
import { ExecutorClient } from "../server/client.ts";
import { startServer } from "../server/server.ts";
import { startCliServer } from "./cli_util.ts";
import { HAS_REDIS, startRedis } from "./redis_util.ts";
import { waitUntil } from "./test_util.ts";

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return Object.assign(createLogger("debug", { write: (line: string) => lines.push(line) }), {
    lines,
  });
}

function nodeConfig(redisUrl: string, nodeId: string, downAfterMs = 1500) {
  return defaultConfig({
    port: 0,
    killGraceMs: 300,
    redisUrl,
    nodeId,
    cluster: {
      labels: [],
      capacity: 4,
      downAfterMs,
      lostAfterMs: 0,
      url: null,
      idIsHostName: false,
    },
  });
}

async function withRedisClient<T>(
  url: string,
  fn: (client: ReturnType<typeof createClient>) => Promise<T>,
): Promise<T> {
  const client = createClient({ url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    client.destroy();
  }
}

/** Whether this process may make pid namespaces (root with util-linux unshare). */
const CAN_UNSHARE = (() => {
  try {
    return new Deno.Command("unshare", { args: ["--pid", "--fork", "--mount-proc", "true"] })
      .outputSync().success;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "cluster: shutdown does not wait for ever on a Redis that stopped answering",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const pid = await withRedisClient(
      redis.url,
      async (c) => Number(/process_id:(\d+)/.exec(await c.info("server"))![1]),
    );
    const server = await startServer(nodeConfig(redis.url, "hung"), { logger: recordingLogger() });
    Deno.kill(pid, "SIGSTOP");
    try {
      // A heartbeat goes out into the silence.
      await new Promise((resolve) => setTimeout(resolve, 800));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        server.shutdown().then(() => "stopped"),
        // Each part gives up on Redis after 2 s, a few of them in turn; the bound is far past
        // that, so a loaded machine cannot fail it, and still proves shutdown does not hang.
        new Promise((resolve) => timer = setTimeout(() => resolve("still waiting"), 20_000)),
      ]);
      clearTimeout(timer);
      assert.equal(outcome, "stopped");
    } finally {
      Deno.kill(pid, "SIGCONT");
      await server.finished;
    }
  },
});

Deno.test({
  name: "cluster: a Redis outage is logged once, its end once, and the node is up again after it",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const logger = recordingLogger();
    await using _server = await startServer(nodeConfig(redis.url, "outage"), { logger });
    await redis.stop();
    // Six heartbeat periods (1.5 s / 3).
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await redis.restart();
    await withRedisClient(redis.url, (c) =>
      waitUntil(
        async () => await c.exists("cc-executor:cluster:lease:outage") === 1,
        "the lease to be taken again",
      ));
    await waitUntil(
      () => logger.lines.some((l) => l.includes("cluster heartbeat works again")),
      "the recovery to be logged",
    );
    assert.equal(logger.lines.filter((l) => l.includes("cluster heartbeat failed")).length, 1);
  },
});

Deno.test({
  name:
    "cluster: a restart that got its dead predecessor's pid (a container restarted) takes the id at once",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    // The predecessor: registered with a 60 s lease, then killed. It had the pid the new server
    // gets (pid 1 in a container); here the new server is this test process.
    const holder = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./fixtures/cluster_holder.ts", import.meta.url).pathname],
      env: { REDIS_URL: redis.url, NODE_ID: "same-pid", AS_PID: String(Deno.pid) },
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.match((await reader.read()).value ?? "", /registered/);
    holder.kill("SIGKILL");
    await holder.status;
    await reader.cancel();

    const logger = recordingLogger();
    await using _server = await startServer(
      {
        ...nodeConfig(redis.url, "same-pid"),
        cluster: { ...nodeConfig("", "").cluster!, downAfterMs: 60_000 },
      },
      { logger },
    );
    assert.ok(logger.lines.some((l) => l.includes("took over the node id")));
  },
});

Deno.test({
  name:
    "cluster: a live server with the same host name in another pid namespace keeps its id (no takeover)",
  ignore: !HAS_REDIS || !CAN_UNSHARE,
  fn: async () => {
    await using redis = await startRedis();
    const env = {
      REDIS_URL: redis.url,
      CC_EXECUTOR_NODE_ID: "one-host-two-namespaces",
      CC_EXECUTOR_NODE_DOWN_AFTER: "30",
    };
    const first = await startCliServer(env);
    try {
      // The same machine and host name, its own pid namespace: a container with host networking.
      const second = new Deno.Command("unshare", {
        args: [
          "--pid",
          "--fork",
          "--mount-proc",
          "--kill-child=SIGTERM",
          Deno.execPath(),
          "run",
          "-A",
          new URL("../main.ts", import.meta.url).pathname,
          "server",
          "start",
        ],
        env: {
          ...env,
          CC_EXECUTOR_PORT: "0",
          CC_EXECUTOR_DB: ":memory:",
          CC_EXECUTOR_ENV_FILE: "/nonexistent/.env",
          CC_EXECUTOR_STATE_DIR: "/nonexistent/state",
        },
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const lines = second.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let log = "";
      while (true) {
        const { value, done } = await lines.read();
        if (done) break;
        log += value;
        if (/listening on/.test(log)) {
          // unshare ignores SIGTERM while it waits; --kill-child passes SIGTERM on when it dies.
          second.kill("SIGKILL");
          while (!(await lines.read()).done) { /* drain */ }
          break;
        }
      }
      const { code } = await second.status;
      assert.doesNotMatch(log, /took over the node id/);
      assert.equal(code, 1, log);
      assert.match(log, /node id "one-host-two-namespaces" is in use by a live server/);
    } finally {
      first.child.kill("SIGTERM");
      await first.child.status;
      await first.log();
    }
  },
});

Deno.test({
  name: "registry: a node whose record has expired (down for a week) is forgotten at the next read",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    await using server = await startServer(nodeConfig(redis.url, "stays"), {
      logger: recordingLogger(),
    });
    await withRedisClient(redis.url, async (client) => {
      const ttl = await client.pTTL("cc-executor:cluster:node:stays");
      assert.ok(ttl > 6 * 24 * 3600 * 1000, `the record lives about a week, not for ever: ${ttl}`);
      // A node that crashed long ago: in the list, its record expired.
      await client.zAdd("cc-executor:cluster:nodes", { score: 1, value: "long-gone" });
    });
    const client = await ExecutorClient.connect(server.url);
    try {
      const status = await client.request("cluster.status", {});
      assert.deepEqual(status.nodes.map((n) => n.id), ["stays"]);
    } finally {
      await client.close();
    }
    await withRedisClient(redis.url, async (client) => {
      assert.deepEqual(await client.zRange("cc-executor:cluster:nodes", 0, -1), ["stays"]);
    });
  },
});
