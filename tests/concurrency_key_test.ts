/**
 * Concurrency keys: at most one job per key runs at a time, the others wait in order; on a
 * lone server (in memory) and across the nodes of a cluster (Redis).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadConfig } from "../server/config.ts";
import { silentLogger } from "../server/log.ts";
import { startServer } from "../server/server.ts";
import { cliCommand, runCli, startCliServer } from "./cli_util.ts";
import { killAll, redisUser, startNode, writeTokenPolicy } from "./cluster_util.ts";
import { HAS_REDIS, startRedis } from "./redis_util.ts";
import { type Frame, RawClient, startTestServer, waitUntil } from "./test_util.ts";
import { createClient } from "redis";

/**
 * A job that writes when it starts and ends to `log`, with a pause between, so overlapping runs
 * of the same key would interleave their lines.
 */
function marker(log: string, name: string): string {
  return `echo "start ${name}" >> ${log}; sleep 0.3; echo "end ${name}" >> ${log}`;
}

/** The lines of `log` come in start/end pairs of one job each: no two ran at once. */
async function assertOneAtATime(log: string, names: string[]): Promise<string[]> {
  const lines = (await Deno.readTextFile(log)).trim().split("\n");
  assert.equal(lines.length, names.length * 2, lines.join("\n"));
  const order: string[] = [];
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i]!.replace(/^start /, "");
    assert.equal(lines[i + 1], `end ${name}`, `overlap at line ${i + 1}:\n${lines.join("\n")}`);
    order.push(name);
  }
  assert.deepEqual([...order].sort(), [...names].sort());
  return order;
}

Deno.test("concurrency key: jobs with one key run one at a time, in the order they came; other keys do not wait", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const dir = await Deno.makeTempDir();
  const log = join(dir, "log");
  try {
    const answers = ["a", "b", "c"].map((name) =>
      client.call("execute", { command: marker(log, name), concurrency_key: "/repo", job_id: name })
    );
    // Another key runs at once, whatever /repo is doing.
    const other = await client.result("execute", {
      command: "echo free",
      concurrency_key: "/elsewhere",
    });
    assert.equal(other.status, "running");
    const queued = await client.waitFor(
      (f: Frame) => f.method === "job.queued" && f.params.job_id === "c",
      "c to be queued",
    );
    assert.deepEqual(queued.params, { job_id: "c", queue: "key:/repo", waiting: 3 });
    assert.equal(
      client.frames.some((f: Frame) => f.method === "job.queued" && f.params.job_id === "a"),
      false,
    );
    const waiting = await client.result("jobs.get", { job_id: "c" });
    assert.equal(waiting.status, "queued");
    assert.equal(waiting.reason, "waiting for concurrency key /repo");
    for (const answer of answers) assert.equal((await answer).result.status, "running");
    for (const name of ["a", "b", "c"]) await client.completion(name);
    assert.deepEqual(await assertOneAtATime(log, ["a", "b", "c"]), ["a", "b", "c"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("concurrency key: a waiting job canceled (or whose connection closes) never runs, ends canceled once and is recorded; the line moves on", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const dir = await Deno.makeTempDir();
  const ran = join(dir, "ran");
  try {
    const holder = await client.result("execute", { command: "sleep 60", concurrency_key: "k" });
    const waiter = client.call("execute", {
      command: `touch ${ran}`,
      concurrency_key: "k",
      job_id: "waiter",
    });
    await client.waitFor((f: Frame) => f.method === "job.queued", "the waiter to be queued");
    const paused = await client.call("control", { type: "PAUSE", job_id: "waiter" });
    assert.equal(paused.error?.code, -32002);
    // The connection's latest job is the waiter: control without a job_id reaches it.
    assert.deepEqual(await client.result("control", { type: "CANCEL" }), {
      job_id: "waiter",
      status: "canceled",
    });
    const answer = (await waiter).result;
    assert.equal(answer.status, "canceled");
    const end = await client.completion("waiter");
    assert.equal(end.status, "canceled");
    assert.equal(end.reason, "canceled while waiting for its concurrency key");
    assert.equal(client.events("waiter").length, 1);
    assert.equal((await client.result("history.get", { job_id: "waiter" })).status, "canceled");

    // A connection that goes away takes its waiting job with it.
    const leaver = await RawClient.connect(server.url);
    leaver.call("execute", { command: `touch ${ran}`, concurrency_key: "k", job_id: "gone" })
      .catch(() => {});
    await leaver.waitFor((f: Frame) => f.method === "job.queued", "queued");
    await leaver.close();
    await waitUntil(async () => {
      const record = await client.call("history.get", { job_id: "gone" });
      return record.result?.status === "canceled";
    }, "the departed connection's job to be canceled");

    // The next in line goes once the holder ends; nothing canceled ever ran.
    const next = client.call("execute", {
      command: "echo next",
      concurrency_key: "k",
      job_id: "n",
    });
    await client.result("control", { type: "CANCEL", job_id: holder.job_id });
    assert.equal((await next).result.status, "running");
    await client.completion("n");
    assert.equal(client.output("n"), "next\n");
    await assert.rejects(Deno.stat(ran), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("concurrency key: run --concurrency-key waits its turn", async () => {
  const dir = await Deno.makeTempDir();
  const log = join(dir, "log");
  const server = await startCliServer({ CC_EXECUTOR_DB: ":memory:" });
  try {
    const url = server.url;
    const first = runCli(["run", "--url", url, "--concurrency-key", "/r", marker(log, "one")]);
    await waitUntil(async () => (await Deno.readTextFile(log).catch(() => "")).length > 0, "one");
    const second = await runCli(["run", "--url", url, "--concurrency-key", "/r", "echo two"]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, "two\n");
    assert.equal((await first).code, 0);
    assert.match(await Deno.readTextFile(log), /start one\nend one\n/);
  } finally {
    server.child.kill("SIGTERM");
    await server.child.status;
    await server.log();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "concurrency key: across nodes, jobs with one key sent to three nodes at once (some routed) run one at a time",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const nodes = [
      await startNode(redis.url, "n1"),
      await startNode(redis.url, "n2"),
      await startNode(redis.url, "n3"),
    ];
    const dir = await Deno.makeTempDir();
    const log = join(dir, "log");
    try {
      const clients = await Promise.all(nodes.map((node) => RawClient.connect(node.url)));
      const names: string[] = [];
      const answers = [];
      for (let i = 0; i < 6; i++) {
        const name = `job${i}`;
        names.push(name);
        const client = clients[i % 3]!;
        // Every other one routed to the next node: the key holds wherever a job runs.
        const route = i % 2 === 1 ? { node: `n${((i + 1) % 3) + 1}` } : {};
        answers.push(
          client.call("execute", {
            command: marker(log, name),
            concurrency_key: "/shared/repo",
            job_id: name,
            ...route,
          }),
        );
      }
      const status = await clients[0]!.result("cluster.status", {});
      const line = status.queues.find((q: { queue: string }) => q.queue === "key:/shared/repo");
      assert.ok(line, JSON.stringify(status.queues));
      assert.equal(line.taken, 1);
      for (const answer of answers) assert.equal((await answer).result?.status, "running");
      for (let i = 0; i < 6; i++) await clients[i % 3]!.completion(`job${i}`, 30_000);
      await assertOneAtATime(log, names);
      for (const client of clients) await client.close();
    } finally {
      for (const node of nodes) await node.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "concurrency key: the holder's node killed with SIGKILL lets go of the key once its job is lost; the next job runs",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const env = { REDIS_URL: redis.url, CC_EXECUTOR_NODE_DOWN_AFTER: "2" };
    const holder = await startCliServer({ ...env, CC_EXECUTOR_NODE_ID: "holder" });
    const next = await startCliServer({ ...env, CC_EXECUTOR_NODE_ID: "next" });
    let pgid = 0;
    try {
      await using a = await RawClient.connect(holder.url);
      const held = await a.result("execute", { command: "sleep 60", concurrency_key: "k" });
      pgid = held.pgid;
      await using b = await RawClient.connect(next.url);
      const waiting = b.call("execute", {
        command: "echo mine",
        concurrency_key: "k",
        job_id: "w",
      });
      await b.waitFor((f: Frame) => f.method === "job.queued", "the second job to wait");
      holder.child.kill("SIGKILL");
      await holder.child.status;
      assert.equal((await waiting).result?.status, "running");
      await b.completion("w", 30_000);
      assert.equal(b.output("w"), "mine\n");
      const record = await b.result("history.get", { job_id: held.job_id });
      assert.equal(record.status, "lost");
    } finally {
      for (const node of [holder, next]) {
        try {
          node.child.kill("SIGKILL");
        } catch { /* gone */ }
        await node.child.status;
        await node.log();
      }
      try {
        if (pgid) Deno.kill(-pgid, "SIGKILL");
      } catch { /* gone */ }
    }
  },
});

const MAIN = "main-token-0123456789abcdef";
const OTHER = "other-token-0123456789abcdef";

Deno.test("concurrency key: a job id another token uses (waiting for a key, or in history) is refused, not put in the line; the owner's job is untouched", async () => {
  const dir = await Deno.makeTempDir();
  const policy = await writeTokenPolicy(dir, { other: OTHER });
  const server = await startServer(
    loadConfig({
      env: {
        CC_EXECUTOR_PORT: "0",
        CC_EXECUTOR_TOKEN: MAIN,
        CC_EXECUTOR_POLICY: policy,
        CC_EXECUTOR_KILL_GRACE_MS: "300",
        CC_EXECUTOR_DB: ":memory:",
      },
      envFile: null,
    }),
    { logger: silentLogger },
  );
  const connect = (token: string) =>
    RawClient.connect(server.url, { headers: { authorization: `Bearer ${token}` } });
  try {
    await using owner = await connect(MAIN);
    await using stranger = await connect(OTHER);
    const finished = await owner.result("execute", { command: "echo mine", job_id: "finished" });
    await owner.completion("finished");
    const holder = await owner.result("execute", { command: "sleep 60", concurrency_key: "k" });
    const mine = owner.call("execute", {
      command: "echo waited",
      concurrency_key: "k",
      job_id: "mine",
    });
    await owner.waitFor(
      (f: Frame) => f.method === "job.queued" && f.params.job_id === "mine",
      "the owner's job to wait",
    );

    // Its id, waiting for the key: refused at once, as a running job's id would be.
    const twin = await stranger.call("execute", {
      command: "echo theirs",
      concurrency_key: "k",
      job_id: "mine",
    });
    assert.equal(twin.error?.code, -32006, JSON.stringify(twin));
    const cancel = await stranger.call("control", { type: "CANCEL", job_id: "mine" });
    assert.equal(cancel.error?.code, -32001, JSON.stringify(cancel));
    assert.equal((await owner.result("jobs.get", { job_id: "mine" })).status, "queued");

    // An id in history: refused before it waits, so a cancel cannot rewrite that record.
    const reused = await stranger.call("execute", {
      command: "echo theirs",
      concurrency_key: "k",
      job_id: finished.job_id,
    });
    assert.equal(reused.error?.code, -32006, JSON.stringify(reused));
    const record = await owner.result("history.get", { job_id: "finished" });
    assert.equal(record.status, "completed");
    assert.equal(record.command, "echo mine");

    await owner.result("control", { type: "CANCEL", job_id: holder.job_id });
    assert.equal((await mine).result?.status, "running");
    await owner.completion("mine");
    assert.equal(owner.output("mine"), "waited\n");
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "concurrency key: a waiting job's node killed and restarted at once does not stop the line for good",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const env = { REDIS_URL: redis.url, CC_EXECUTOR_NODE_DOWN_AFTER: "2" };
    const a = await startCliServer({ ...env, CC_EXECUTOR_NODE_ID: "a" });
    let b = await startCliServer({ ...env, CC_EXECUTOR_NODE_ID: "b" });
    const servers = [a, b];
    try {
      await using onA = await RawClient.connect(a.url);
      const held = await onA.result("execute", { command: "sleep 60", concurrency_key: "k" });
      {
        await using onB = await RawClient.connect(b.url);
        onB.call("execute", { command: "echo orphan", concurrency_key: "k", job_id: "orphan" })
          .catch(() => {});
        await onB.waitFor((f: Frame) => f.method === "job.queued", "the orphan to wait");
        // Its server dies with its execute waiting; the node comes back at once, same id.
        b.child.kill("SIGKILL");
        await b.child.status;
        await b.log();
      }
      b = await startCliServer({ ...env, CC_EXECUTOR_NODE_ID: "b" });
      servers.push(b);
      const next = onA.call("execute", { command: "echo next", concurrency_key: "k", job_id: "n" });
      await onA.waitFor(
        (f: Frame) => f.method === "job.queued" && f.params.job_id === "n",
        "the next job to wait",
      );
      await onA.result("control", { type: "CANCEL", job_id: held.job_id });
      // The orphan's execute died with its server: nobody will start it, so it must not hold the
      // line (RawClient gives up on an answer after 15 s).
      assert.equal((await next).result?.status, "running");
      await onA.completion("n");
      assert.equal(onA.output("n"), "next\n");
    } finally {
      await killAll(servers);
    }
  },
});

Deno.test("concurrency key: a waiting execute whose job id meanwhile ran without the key follows that job and lets go of the key", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const holder = await client.result("execute", { command: "sleep 60", concurrency_key: "k" });
  const keyed = client.call("execute", {
    command: "echo twin",
    concurrency_key: "k",
    job_id: "twin",
  });
  await client.waitFor(
    (f: Frame) => f.method === "job.queued" && f.params.job_id === "twin",
    "the keyed execute to wait",
  );
  // The same id and command, without a key: it runs at once (a retry that dropped the key).
  assert.equal(
    (await client.result("execute", { command: "echo twin", job_id: "twin" })).status,
    "running",
  );
  await client.completion("twin");
  await client.result("control", { type: "CANCEL", job_id: holder.job_id });
  // The waiting execute follows the job that ran: it started nothing, so it holds no key.
  assert.equal((await keyed).result?.existing, true);
  const next = await client.call("execute", {
    command: "echo next",
    concurrency_key: "k",
    job_id: "next",
  });
  assert.equal(next.result?.status, "running", JSON.stringify(next));
  await client.completion("next");
});

Deno.test({
  name:
    "concurrency key: a waiting execute that meets a Redis error is answered with it and leaves the line (the line does not stop behind it for good)",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const admin = createClient({ url: redis.url });
    await admin.connect();
    // The waiter's node connects as a user of its own, so its commands can fail while others work.
    const waiterUrl = await redisUser(admin, redis.url, "waiter");
    const a = await startNode(redis.url, "a");
    const b = await startNode(waiterUrl, "b");
    try {
      await using onA = await RawClient.connect(a.url);
      await using onB = await RawClient.connect(b.url);
      const held = await onA.result("execute", { command: "sleep 60", concurrency_key: "k" });
      const waiting = onB.call("execute", {
        command: "echo blip",
        concurrency_key: "k",
        job_id: "blip",
      });
      await onB.waitFor((f: Frame) => f.method === "job.queued", "the waiter to wait");
      // Its look at the line fails (an outage that starts while it waits).
      await admin.sendCommand(["ACL", "SETUSER", "waiter", "-lpos"]);
      const failed = await waiting;
      await admin.sendCommand(["ACL", "SETUSER", "waiter", "+lpos"]);
      assert.equal(failed.error?.code, -32009, JSON.stringify(failed));

      const next = onA.call("execute", { command: "echo next", concurrency_key: "k", job_id: "n" });
      await onA.waitFor(
        (f: Frame) => f.method === "job.queued" && f.params.job_id === "n",
        "the next job to wait",
      );
      await onA.result("control", { type: "CANCEL", job_id: held.job_id });
      // The failed execute started nothing and never will: it must not hold the key.
      assert.equal((await next).result?.status, "running");
      await onA.completion("n");
      assert.equal(onA.output("n"), "next\n");
    } finally {
      admin.destroy();
      await a.shutdown();
      await b.shutdown();
    }
  },
});

Deno.test({
  name:
    "concurrency key: a routed job whose front node meets a Redis error while the job waits in its routing queue never runs beside the next holder of its key",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const admin = createClient({ url: redis.url });
    await admin.connect();
    const frontUrl = await redisUser(admin, redis.url, "front");
    const front = await startNode(frontUrl, "front", {
      // Its heartbeat fails too while it cannot HGETALL: it must not be taken for down meanwhile.
      CC_EXECUTOR_NODE_DOWN_AFTER: "30",
    });
    const runner = await startNode(redis.url, "runner", { CC_EXECUTOR_NODE_CAPACITY: "1" });
    const dir = await Deno.makeTempDir();
    const log = join(dir, "log");
    try {
      await using onFront = await RawClient.connect(front.url);
      await using onRunner = await RawClient.connect(runner.url);
      // The runner is full: the routed job waits in its queue, holding its key.
      const busy = await onRunner.result("execute", { command: "sleep 60" });
      const routed = onFront.call("execute", {
        command: marker(log, "routed"),
        concurrency_key: "k",
        node: "runner",
        job_id: "routed",
        detach: true,
      });
      await onFront.waitFor(
        (f: Frame) => f.method === "job.queued" && f.params.job_id === "routed",
        "the routed job to be queued",
      );
      // The front cannot read the job's routing state: its execute fails (an outage).
      await admin.sendCommand(["ACL", "SETUSER", "front", "-hgetall"]);
      const failed = await routed;
      await admin.sendCommand(["ACL", "SETUSER", "front", "+hgetall"]);
      assert.equal(failed.error?.code, -32009, JSON.stringify(failed));

      // Another job with the key (on the front), then the runner gets room for the routed one.
      const next = await onFront.call("execute", {
        command: `echo "start next" >> ${log}; sleep 2; echo "end next" >> ${log}`,
        concurrency_key: "k",
        job_id: "next",
      });
      assert.equal(next.result?.status, "running", JSON.stringify(next));
      await onRunner.result("control", { type: "CANCEL", job_id: busy.job_id });
      await onFront.completion("next");
      // Time for the routed job to run if the runner took it.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await assertOneAtATime(log, ["next"]);
      // The runner found it no longer first in its key's line, and refused it.
      await waitUntil(async () => {
        const info = await onFront.result("jobs.get", { job_id: "routed" });
        return info.status === "error" && /concurrency key k/.test(info.reason);
      }, "the routed job to be refused");
    } finally {
      admin.destroy();
      await front.shutdown();
      await runner.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("concurrency key: Ctrl-C of run while its job waits for the key cancels it there and then (it never runs), exit 130", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const dir = await Deno.makeTempDir();
  const ran = join(dir, "ran");
  try {
    const holder = await client.result("execute", { command: "sleep 60", concurrency_key: "k" });
    const child = cliCommand([
      "run",
      "--url",
      server.url,
      "--concurrency-key",
      "k",
      "--id",
      "waiter",
      `touch ${ran}`,
    ]).spawn();
    const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let said = "";
    while (!said.includes("queued in key:k")) {
      const { value, done } = await stderr.read();
      if (done) break;
      said += value;
    }
    child.kill("SIGINT");
    // Before the fix, the cancel waited for the execute's answer, which comes only at the start:
    // run hung while the key was held, and the job ran once it was free.
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    const status = await child.status;
    clearTimeout(timer);
    while (!(await stderr.read()).done);
    await child.stdout.cancel();
    assert.equal(status.code, 130, "exits 130 while the key is still held");
    assert.equal((await client.result("history.get", { job_id: "waiter" })).status, "canceled");
    await client.result("control", { type: "CANCEL", job_id: holder.job_id });
    await client.completion(holder.job_id);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await assert.rejects(Deno.stat(ran), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
