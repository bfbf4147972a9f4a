/**
 * Routing (server/cluster/routing.ts, job_queue.ts) and node loss (reaper.ts): executes that name
 * a node or labels, on real servers sharing one real redis-server.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../server/config.ts";
import { silentLogger } from "../server/log.ts";
import { type ExecutorServer, startServer } from "../server/server.ts";
import { cliCommand, runCli } from "./cli_util.ts";
import {
  type CliServer,
  killAll,
  redisUser,
  startNode,
  startNodeProcess,
  stopNodeProcess,
  writeTokenPolicy,
} from "./cluster_util.ts";
import { HAS_REDIS, startRedis } from "./redis_util.ts";
import { type Frame, groupAlive, RawClient, waitUntil } from "./test_util.ts";
import { JobQueue } from "../server/cluster/job_queue.ts";
import { createClient } from "redis";

/** The job's notifications as a client saw them, without what differs between two connections. */
function jobFrames(client: RawClient, jobId: string): string[] {
  return client.events(jobId).map((frame: Frame) => JSON.stringify(frame));
}

/**
 * A client of `frontUrl` with a `sleep 60` running on node "runner" (capacity 1) and a job
 * "never" queued behind it, whose execute is never answered.
 */
async function oneRunningOneQueued(frontUrl: string) {
  const client = await RawClient.connect(frontUrl);
  const running = await client.result("execute", { command: "sleep 60", node: "runner" });
  client.call("execute", { command: "echo never", node: "runner", job_id: "never" })
    .catch(() => {});
  await client.waitFor(
    (f: Frame) => f.method === "job.queued" && f.params.job_id === "never",
    "queued",
  );
  return { client, running };
}

/** Both jobs of `oneRunningOneQueued` end canceled, as the runner node sees them. */
async function bothCanceled(watcher: RawClient, running: { job_id: string; pgid: number }) {
  for (const jobId of [running.job_id, "never"]) {
    await waitUntil(async () => {
      const info = await watcher.result("jobs.get", { job_id: jobId });
      return info.status === "canceled";
    }, `job ${jobId} to be canceled`);
  }
  await waitUntil(() => !groupAlive(running.pgid), "its group to be gone");
}

Deno.test({
  name:
    "cluster routing: three server processes: a job pinned to another node, replayed from a third, canceled through a node that does not run it",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const nodes: CliServer[] = [];
    try {
      const [front, runner, third] = [
        await startNodeProcess(redis.url, "front"),
        await startNodeProcess(redis.url, "runner", { CC_EXECUTOR_NODE_LABELS: "linux,gpu" }),
        await startNodeProcess(redis.url, "third"),
      ];
      nodes.push(front, runner, third);

      // The CLI: a job pinned to another node runs there, streams here, exits with its code.
      const run = await runCli([
        "run",
        "--url",
        front.url,
        "--node",
        "runner",
        "echo on $CC_EXECUTOR_NODE_ID; echo oops >&2; exit 3",
      ]);
      assert.equal(run.code, 3, run.stderr);
      assert.equal(run.stdout, "on runner\n");
      assert.equal(run.stderr, "oops\n");
      const byLabels = await runCli(["run", "--url", third.url, "--labels", "gpu", "echo gpu"]);
      assert.equal(byLabels.code, 0, byLabels.stderr);
      assert.equal(byLabels.stdout, "gpu\n");

      // Frame for frame: what the front node relays is what the third node replays.
      await using client = await RawClient.connect(front.url);
      const started = await client.result("execute", {
        command: "for i in 1 2 3; do echo line $i; done; echo e >&2",
        node: "runner",
      });
      assert.ok(started.pid > 0);
      const done = await client.completion(started.job_id);
      assert.equal(done.status, "completed");
      assert.equal(client.output(started.job_id), "line 1\nline 2\nline 3\n");
      const queued = client.frames.find((f: Frame) => f.method === "job.queued");
      assert.deepEqual(queued?.params, {
        job_id: started.job_id,
        queue: "node:runner",
        waiting: 1,
      });
      await using late = await RawClient.connect(third.url);
      const replay = await late.result("jobs.subscribe", { job_id: started.job_id, from_seq: 0 });
      assert.equal(replay.status, "completed");
      await late.completion(started.job_id);
      assert.deepEqual(jobFrames(late, started.job_id), jobFrames(client, started.job_id));
      const record = await late.result("history.get", { job_id: started.job_id });
      assert.equal(record.node_id, "runner");

      // Canceled through the third node, which neither received nor runs it.
      const sleeper = await client.result("execute", { command: "sleep 60", node: "runner" });
      await client.waitFor(
        (f: Frame) => f.method === "process.started" && f.params.job_id === sleeper.job_id,
        "the sleeper's start",
      );
      const cancel = await runCli(["jobs", "cancel", "--url", third.url, sleeper.job_id]);
      assert.equal(cancel.code, 0, cancel.stderr);
      const end = await client.completion(sleeper.job_id);
      assert.equal(end.status, "canceled");
      await waitUntil(() => !groupAlive(sleeper.pgid), "the canceled job's group to be gone");
    } finally {
      for (const node of nodes) await stopNodeProcess(node);
    }
  },
});

Deno.test({
  name:
    "cluster routing: kill -9 of the node running a job: the job becomes lost, a retry_on_node_loss job moves to a live node, the restarted node stops what was left",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const nodes: CliServer[] = [];
    const pgids: number[] = [];
    try {
      const front = await startNodeProcess(redis.url, "front");
      const doomed = await startNodeProcess(redis.url, "doomed", { CC_EXECUTOR_NODE_LABELS: "w" });
      const spare = await startNodeProcess(redis.url, "spare", {
        CC_EXECUTOR_NODE_LABELS: "w",
        CC_EXECUTOR_NODE_CAPACITY: "1",
      });
      nodes.push(front, doomed, spare);
      await using client = await RawClient.connect(front.url);
      // The spare node is full, so the labelled job goes to the doomed one.
      const filler = await client.result("execute", {
        command: "sleep 60",
        node: "spare",
        detach: true,
      });
      pgids.push(filler.pgid);
      const pinned = await client.result("execute", {
        command: "echo started; sleep 60",
        node: "doomed",
      });
      pgids.push(pinned.pgid);
      const retried = await client.result("execute", {
        command: "echo run on $CC_EXECUTOR_NODE_ID; sleep 2; echo done",
        labels: ["w"],
        retry_on_node_loss: true,
      });
      pgids.push(retried.pgid);
      await client.waitFor(
        (f: Frame) => f.method === "process.output" && f.params.job_id === retried.job_id,
        "the retried job's first line",
      );
      assert.equal(client.output(retried.job_id), "run on doomed\n");

      doomed.child.kill("SIGKILL");
      await doomed.child.status;
      await doomed.log();

      const lost = await client.completion(pinned.job_id, 30_000);
      assert.equal(lost.status, "lost");
      assert.match(lost.reason, /its node "doomed" stopped answering/);
      assert.deepEqual(lost.bytes, { stdout: 8, stderr: 0 });
      const record = await client.result("history.get", { job_id: pinned.job_id });
      assert.equal(record.status, "lost");
      const info = await client.result("jobs.get", { job_id: pinned.job_id });
      assert.equal(info.status, "lost");

      // A job taken over from a dead node waits for a free slot like any other: the spare node
      // (the only other one with the label) is full, and its look that marked the job lost has
      // passed it by. Its one slot frees now.
      assert.equal(
        client.frames.some((f: Frame) => f.method === "job.node_lost"),
        false,
        "not taken over while the spare node is full",
      );
      await client.result("control", { type: "CANCEL", job_id: filler.job_id });

      const again = await client.completion(retried.job_id, 30_000);
      assert.equal(again.status, "completed");
      const moved = client.frames.find((f: Frame) =>
        f.method === "job.node_lost" && f.params.job_id === retried.job_id
      );
      assert.equal(moved?.params.node_id, "doomed");
      assert.equal(moved?.params.next_attempt, 2);
      assert.equal(client.output(retried.job_id), "run on doomed\nrun on spare\ndone\n");
      const seqs = client.events(retried.job_id).map((f: Frame) => f.params.seq);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "seqs go on in order");
      assert.equal(new Set(seqs).size, seqs.length, "no seq twice");

      // The lost job's processes outlived their server; its next start stops them.
      assert.ok(groupAlive(pinned.pgid), "the lost job's group still runs on its machine");
      const back = await startNodeProcess(redis.url, "doomed", { CC_EXECUTOR_NODE_LABELS: "w" });
      nodes.push(back);
      await waitUntil(() => !groupAlive(pinned.pgid), "the restarted node to stop the lost job");
    } finally {
      await killAll(nodes, pgids);
    }
  },
});

Deno.test({
  name:
    "cluster routing: a node takes no more than its capacity; the rest wait in the queue, visible in cluster status, and can be canceled there",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const front = await startNode(redis.url, "front");
    const small = await startNode(redis.url, "small", {
      CC_EXECUTOR_NODE_LABELS: "w",
      CC_EXECUTOR_NODE_CAPACITY: "1",
    });
    try {
      await using client = await RawClient.connect(front.url);
      const first = await client.result("execute", { command: "sleep 60", labels: ["w"] });
      // The second waits: its execute is answered once it starts.
      const second = client.call("execute", {
        command: "echo second",
        labels: ["w"],
        job_id: "second",
      });
      const queued = await client.waitFor(
        (f: Frame) => f.method === "job.queued" && f.params.job_id === "second",
        "the second job to be queued",
      );
      assert.equal(queued.params.queue, "labels:w");
      const third = client.call("execute", {
        command: "echo third",
        labels: ["w"],
        job_id: "third",
      });
      await client.waitFor(
        (f: Frame) => f.method === "job.queued" && f.params.job_id === "third",
        "the third job to be queued",
      );

      // run --detach returns once the job is queued, with its id; it runs later, unattended.
      const detached = await runCli([
        "run",
        "--detach",
        "--json",
        "--url",
        front.url,
        "--labels",
        "w",
        "--id",
        "later",
        "echo later",
      ]);
      assert.equal(detached.code, 0, detached.stderr);
      assert.deepEqual(JSON.parse(detached.stdout), {
        job_id: "later",
        status: "queued",
        queue: "labels:w",
      });
      const status = await client.result("cluster.status", {});
      assert.deepEqual(status.queues, [
        { queue: "labels:w", node: null, labels: ["w"], waiting: 3, taken: 0 },
      ]);
      const table = await runCli(["cluster", "status", "--url", front.url]);
      assert.match(table.stdout, /^labels:w\s+3\s+0$/m);
      assert.match(table.stderr, /3 job\(s\) waiting in the queues/);
      const waiting = await client.result("jobs.get", { job_id: "second" });
      assert.equal(waiting.status, "queued");
      assert.equal(waiting.command, "echo second");

      // Canceled from the other node while it waits: it never runs, and says so once.
      await using other = await RawClient.connect(small.url);
      const paused = await other.call("control", { type: "PAUSE", job_id: "second" });
      assert.equal(paused.error?.code, -32002);
      assert.deepEqual(await other.result("control", { type: "CANCEL", job_id: "second" }), {
        job_id: "second",
        status: "canceled",
      });
      const answer = await second;
      assert.equal(answer.result.status, "canceled");
      assert.equal(answer.result.pid, 0);
      const end = await client.completion("second");
      assert.equal(end.status, "canceled");
      assert.equal(end.reason, "canceled while queued");
      assert.equal((await client.result("history.get", { job_id: "second" })).status, "canceled");

      // A slot frees: the next in the queue starts, and not before.
      assert.equal(client.events("third").length, 0);
      await client.result("control", { type: "CANCEL", job_id: first.job_id });
      const thirdStarted = await third;
      assert.equal(thirdStarted.result.status, "running");
      const thirdEnd = await client.completion("third");
      assert.equal(thirdEnd.status, "completed");
      assert.equal(client.output("third"), "third\n");
      await using late = await RawClient.connect(small.url);
      await late.result("jobs.subscribe", { job_id: "later", from_seq: 0 });
      assert.equal((await late.completion("later")).status, "completed");
      assert.equal(late.output("later"), "later\n");
      const firstEnd = client.events(first.job_id).at(-1);
      const thirdStart = client.events("third")[0];
      assert.ok(
        client.frames.indexOf(firstEnd) < client.frames.indexOf(thirdStart),
        "the third started after the first ended",
      );
      const after = await client.result("cluster.status", {});
      assert.deepEqual(after.queues[0], {
        queue: "labels:w",
        node: null,
        labels: ["w"],
        waiting: 0,
        taken: 0,
      });
    } finally {
      await front.shutdown();
      await small.shutdown();
    }
  },
});

Deno.test({
  name:
    "cluster routing: a node serving several queues takes no more than its free slots; the rest stay for other nodes",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const front = await startNode(redis.url, "front");
    const small = await startNode(redis.url, "small", {
      CC_EXECUTOR_NODE_LABELS: "x,y",
      CC_EXECUTOR_NODE_CAPACITY: "1",
    });
    let big: ExecutorServer | undefined;
    try {
      await using client = await RawClient.connect(front.url);
      const jobs = [["x"], ["y"], ["x", "y"]].map((labels, i) =>
        client.call("execute", { command: "sleep 60", labels, job_id: `j${i}` })
      );
      await waitUntil(async () => {
        const { queues } = await client.result("cluster.status", {});
        const waiting = queues.reduce((n: number, q: { waiting: number }) => n + q.waiting, 0);
        const taken = queues.reduce((n: number, q: { taken: number }) => n + q.taken, 0);
        return waiting === 2 && taken === 0;
      }, "one job on the small node and two waiting, none held back by it");
      // A node with room comes: it gets the two at once.
      big = await startNode(redis.url, "big", { CC_EXECUTOR_NODE_LABELS: "x,y" });
      const started = await Promise.all(jobs);
      assert.deepEqual(started.map((r) => r.result?.status), ["running", "running", "running"]);
      const nodes = await Promise.all(
        ["j0", "j1", "j2"].map(async (id) => {
          await client.waitFor(
            (f: Frame) => f.method === "process.started" && f.params.job_id === id,
            `${id} started`,
          );
          return (await client.result("history.get", { job_id: id })).node_id;
        }),
      );
      assert.deepEqual(nodes.filter((n) => n === "small").length, 1, nodes.join(","));
      for (const id of ["j0", "j1", "j2"]) {
        await client.result("control", { type: "CANCEL", job_id: id });
      }
    } finally {
      await front.shutdown();
      await small.shutdown();
      await big?.shutdown();
    }
  },
});

Deno.test({
  name:
    "cluster routing: a closed connection cancels its routed jobs, queued or running elsewhere; a detached one keeps them",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const front = await startNode(redis.url, "front");
    const runner = await startNode(redis.url, "runner", { CC_EXECUTOR_NODE_CAPACITY: "1" });
    try {
      const { client, running } = await oneRunningOneQueued(front.url);
      await client.close();
      await using watcher = await RawClient.connect(runner.url);
      await bothCanceled(watcher, running);

      const keeper = await RawClient.connect(front.url);
      const kept = await keeper.result("execute", {
        command: "sleep 60",
        node: "runner",
        detach: true,
      });
      await keeper.close();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const info = await watcher.result("jobs.get", { job_id: kept.job_id });
      assert.equal(info.status, "running");
      await watcher.result("control", { type: "CANCEL", job_id: kept.job_id });
    } finally {
      await front.shutdown();
      await runner.shutdown();
    }
  },
});

Deno.test({
  name:
    "cluster routing: bad routes are clear errors: no such node, labels nobody has, node and labels together, no cluster",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const front = await startNode(redis.url, "front", { CC_EXECUTOR_NODE_LABELS: "linux" });
    const alone = await startServer(
      loadConfig({ env: { CC_EXECUTOR_PORT: "0", CC_EXECUTOR_DB: ":memory:" }, envFile: null }),
      { logger: silentLogger },
    );
    try {
      await using client = await RawClient.connect(front.url);
      const noNode = await client.call("execute", { command: "true", node: "nope" });
      assert.equal(noNode.error?.code, -32017);
      assert.match(
        noNode.error.message,
        /no node "nope" is in the cluster; nodes: front \(up, linux\)/,
      );
      const noLabels = await client.call("execute", { command: "true", labels: ["gpu", "linux"] });
      assert.equal(noLabels.error?.code, -32017);
      assert.match(noLabels.error.message, /no node that is up has the labels gpu,linux/);
      assert.deepEqual(noLabels.error.data.nodes, [{
        id: "front",
        status: "up",
        labels: ["linux"],
      }]);
      const both = await client.call("execute", { command: "true", node: "front", labels: ["x"] });
      assert.equal(both.error?.code, -32602);
      const loose = await client.call("execute", { command: "true", retry_on_node_loss: true });
      assert.equal(loose.error?.code, -32602);
      // Its own id runs here, without the queue.
      const here = await client.result("execute", { command: "echo here", node: "front" });
      await client.completion(here.job_id);
      assert.equal(client.frames.some((f: Frame) => f.method === "job.queued"), false);

      await using lonely = await RawClient.connect(alone.url);
      const none = await lonely.call("execute", { command: "true", node: "front" });
      assert.equal(none.error?.code, -32015);

      const usage = await runCli([
        "run",
        "--url",
        front.url,
        "--node",
        "a",
        "--labels",
        "b",
        "true",
      ]);
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /give --node or --labels, not both/);
    } finally {
      await front.shutdown();
      await alone.shutdown();
    }
  },
});

Deno.test({
  name:
    "cluster routing: a routed job's start record survives its mirror reaching Redis after it (two connections, no order between them)",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const runner = await startNode(redis.url, "runner");
    // The taking node's two writers, as separate connections: the queue records the start, the
    // job's stream (and its owner record) goes through the events connection, often behind
    // megabytes of other jobs' frames. Here the start record lands first.
    await using queue = await JobQueue.open({
      redisUrl: redis.url,
      nodeId: "runner",
      labels: [],
      logger: silentLogger,
    });
    try {
      const job = {
        job_id: "late-mirror",
        params: { command: "sleep 2", job_id: "late-mirror" },
        principal: "default",
        owner: "s",
        front_node: "front",
        reply: "cc-executor:cluster:reply:nobody",
        retry_on_node_loss: false,
        enqueued_at: Date.now(),
      };
      const queued = await queue.enqueue(job, "labels:elsewhere", "sleep 2");
      assert.ok("waiting" in queued);
      assert.equal(await queue.claim(job.job_id), "ok");
      const entry = { queue: "labels:elsewhere", entryId: "0-1", job };
      await queue.started(entry, {
        job_id: job.job_id,
        pid: 1,
        pgid: 1,
        status: "running",
        existing: false,
        timeout: { seconds: null, source: "none", samples: 0 },
      });
      // The job starts on the node, which mirrors it (its owner record) to Redis now.
      const { job: started } = await runner.jobs.start(
        { command: "sleep 2", job_id: job.job_id },
        "s",
      );
      await waitUntil(async () => {
        const client = await RawClient.connect(runner.url);
        try {
          const info = await client.call("jobs.get", { job_id: job.job_id });
          return info.result?.status === "running";
        } finally {
          await client.close();
        }
      }, "the job to run");
      await new Promise((resolve) => setTimeout(resolve, 300));
      const state = await queue.state(job.job_id);
      assert.equal(state?.state, "started", "the front node still finds the job started");
      started.terminate("canceled", "test over");
      await started.done;
    } finally {
      await runner.shutdown();
    }
  },
});

Deno.test({
  name:
    "cluster routing: many routed executes at once are all answered and all end (a taking node's start keeps the routing record the front node waits on)",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const nodes = [
      await startNode(redis.url, "one", { CC_EXECUTOR_NODE_LABELS: "w" }),
      await startNode(redis.url, "two", { CC_EXECUTOR_NODE_LABELS: "w" }),
      await startNode(redis.url, "three", { CC_EXECUTOR_NODE_LABELS: "w" }),
    ];
    const clients: RawClient[] = [];
    try {
      for (let k = 0; k < 8; k++) clients.push(await RawClient.connect(nodes[0]!.url));
      let left = 160;
      const ranOn = new Map<string, number>();
      await Promise.all(clients.map(async (client) => {
        while (left-- > 0) {
          // Before the fix, a start's mirror could erase the record after the taking node wrote
          // "started" to it: the execute then never got its answer.
          const started = await inTime(
            client.result("execute", { command: "true", labels: ["w"] }),
            "answer to a routed execute",
          );
          const done = await client.completion(started.job_id, 10_000);
          assert.equal(done.status, "completed");
          const record = await client.result("history.get", { job_id: started.job_id });
          ranOn.set(record.node_id, (ranOn.get(record.node_id) ?? 0) + 1);
        }
      }));
      assert.equal([...ranOn.values()].reduce((a, b) => a + b, 0), 160);
    } finally {
      for (const client of clients) await client.close();
      for (const node of nodes) await node.shutdown();
    }
  },
});

Deno.test({
  name:
    "cluster routing: a front node that shuts down cancels its connections' routed jobs (running elsewhere or queued) as a closed connection does",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const front = await startNode(redis.url, "front");
    const runner = await startNode(redis.url, "runner", { CC_EXECUTOR_NODE_CAPACITY: "1" });
    try {
      const { client, running } = await oneRunningOneQueued(front.url);
      await front.shutdown();
      await client.close();
      await using watcher = await RawClient.connect(runner.url);
      await bothCanceled(watcher, running);
    } finally {
      await front.shutdown();
      await runner.shutdown();
    }
  },
});

/** `promise`, or a failure naming `what` after 10 s. */
async function inTime<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ${what} within 10 s`)), 10_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name:
    "cluster routing: after Redis restarts empty, a node takes routed jobs again (its queues' consumer group is made anew)",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const front = await startNode(redis.url, "front");
    const runner = await startNode(redis.url, "runner", { CC_EXECUTOR_NODE_LABELS: "w" });
    try {
      await using client = await RawClient.connect(front.url);
      const before = await client.result("execute", { command: "echo before", labels: ["w"] });
      assert.equal((await client.completion(before.job_id)).status, "completed");

      // Nothing persisted: the queues, and the consumer group on them, are gone.
      await redis.restart();
      await waitUntil(async () => {
        const { nodes } = await client.result("cluster.status", {}).catch(() => ({ nodes: [] }));
        return nodes.filter((n: { status: string }) => n.status === "up").length === 2;
      }, "both nodes to be up again");

      for (const route of [{ node: "runner" }, { labels: ["w"] }]) {
        const after = await inTime(
          client.result("execute", { command: "echo after", ...route }),
          `answer to a routed execute (${JSON.stringify(route)}) after the restart`,
        );
        assert.equal((await client.completion(after.job_id)).status, "completed");
        assert.equal(client.output(after.job_id), "after\n");
      }
    } finally {
      await front.shutdown();
      await runner.shutdown();
    }
  },
});

Deno.test({
  name:
    "cluster routing: a routed job whose take meets a Redis error is taken again once Redis answers (not left in the node's pending list with its execute unanswered)",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const admin = createClient({ url: redis.url });
    await admin.connect();
    // The runner connects as a user of its own, so its commands can fail while the front's work.
    const runnerUrl = await redisUser(admin, redis.url, "runner");
    const front = await startNode(redis.url, "front");
    const runner = await startNode(runnerUrl, "runner", {
      CC_EXECUTOR_NODE_LABELS: "w",
      // Its heartbeat fails too while it cannot EVAL: it must not be taken for down meanwhile.
      CC_EXECUTOR_NODE_DOWN_AFTER: "30",
    });
    try {
      await using client = await RawClient.connect(front.url);
      // The runner can read the queue but not run the script that takes a job (a Redis error
      // between the read and the take, as in an outage that starts just then).
      await admin.sendCommand(["ACL", "SETUSER", "runner", "-eval"]);
      const answer = client.call("execute", {
        command: "echo taken",
        labels: ["w"],
        job_id: "blip",
      });
      await waitUntil(async () => {
        const pending = await admin.xPending("cc-executor:cluster:queue:labels:w", "runners")
          .catch(() => null);
        return pending?.pending === 1;
      }, "the runner to have read the entry");
      await new Promise((resolve) => setTimeout(resolve, 300));
      await admin.sendCommand(["ACL", "SETUSER", "runner", "+eval"]);

      const started = await inTime(answer, "answer to the execute once Redis answers again");
      assert.ok(started.result, JSON.stringify(started));
      assert.equal((await client.completion("blip")).status, "completed");
      assert.equal(client.output("blip"), "taken\n");
      await waitUntil(async () => {
        const { queues } = await client.result("cluster.status", {});
        return queues.every((q: { taken: number; waiting: number }) => q.taken + q.waiting === 0);
      }, "the entry to leave the queue");
    } finally {
      admin.destroy();
      await front.shutdown();
      await runner.shutdown();
    }
  },
});

Deno.test({
  name:
    "cluster routing: a taking node that cannot let go of the queue entry (a Redis error) neither turns the started job into a failed one nor runs a retry_on_node_loss job again after it ended",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const admin = createClient({ url: redis.url });
    await admin.connect();
    const runnerUrl = await redisUser(admin, redis.url, "runner");
    const runnerEnv = { CC_EXECUTOR_NODE_LABELS: "w", CC_EXECUTOR_DB: ":memory:" };
    const front = await startNode(redis.url, "front");
    let runner = await startNode(runnerUrl, "runner", runnerEnv);
    const dir = Deno.makeTempDirSync();
    const flag = `${dir}/runs`;
    try {
      await using client = await RawClient.connect(front.url);
      // The runner's XACK fails from now on: it cannot let go of the entries it takes.
      await admin.sendCommand(["ACL", "SETUSER", "runner", "-xack"]);

      const running = await client.result("execute", {
        command: "sleep 60",
        labels: ["w"],
        job_id: "kept",
      });
      assert.equal(running.status, "running");
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(
        await admin.hGet("cc-executor:cluster:job:kept:meta", "state"),
        "started",
        "a started job stays started",
      );
      assert.equal((await client.result("jobs.get", { job_id: "kept" })).status, "running");
      await client.result("control", { type: "CANCEL", job_id: "kept" });
      await client.completion("kept");

      const once = await client.result("execute", {
        command: `echo ran >> '${flag}'`,
        labels: ["w"],
        job_id: "once",
        retry_on_node_loss: true,
      });
      assert.equal((await client.completion(once.job_id)).status, "completed");
      // Long enough for the runner to give up letting go of the entry (it tries for 2 s).
      await new Promise((resolve) => setTimeout(resolve, 3000));
      // The runner's next server (Redis works for it again) finds the entry its predecessor held.
      await admin.sendCommand(["ACL", "SETUSER", "runner", "+xack"]);
      await runner.shutdown();
      runner = await startNode(runnerUrl, "runner", runnerEnv);
      await waitUntil(async () => {
        const { queues } = await client.result("cluster.status", {});
        return queues.every((q: { taken: number; waiting: number }) => q.taken + q.waiting === 0);
      }, "the held entries to leave the queue");
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(Deno.readTextFileSync(flag), "ran\n", "the ended job did not run again");
    } finally {
      admin.destroy();
      await front.shutdown();
      await runner.shutdown();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "cluster routing: a node that stops cleanly while running a retry_on_node_loss job lets go of its entry: the job is not run again elsewhere",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const dir = Deno.makeTempDirSync();
    const flag = `${dir}/runs`;
    Deno.writeTextFileSync(flag, "");
    const front = await startNode(redis.url, "front");
    const runner = await startNode(redis.url, "runner", { CC_EXECUTOR_NODE_LABELS: "w" });
    let spare: ExecutorServer | undefined;
    try {
      await using client = await RawClient.connect(front.url);
      const job = await client.result("execute", {
        command: `echo ran >> '${flag}'; sleep 60`,
        labels: ["w"],
        retry_on_node_loss: true,
        detach: true,
      });
      await waitUntil(() => Deno.readTextFileSync(flag) === "ran\n", "the job to run");
      spare = await startNode(redis.url, "spare", { CC_EXECUTOR_NODE_LABELS: "w" });
      await runner.shutdown();
      await client.completion(job.job_id);
      // Several looks of the spare node for nodes that are gone (every 2/3 s).
      await new Promise((resolve) => setTimeout(resolve, 3000));
      assert.equal(Deno.readTextFileSync(flag), "ran\n", "not run again after a clean stop");
      const { queues } = await client.result("cluster.status", {});
      assert.deepEqual(queues.map((q: { taken: number }) => q.taken), [0]);
    } finally {
      await front.shutdown();
      await runner.shutdown();
      await spare?.shutdown();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "cluster routing: a routed job whose record vanishes with Redis (a flush, a restart without persistence) gets a clear -32009, not an endless wait",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const front = await startNode(redis.url, "front");
    const runner = await startNode(redis.url, "runner", { CC_EXECUTOR_NODE_CAPACITY: "1" });
    try {
      await using client = await RawClient.connect(front.url);
      const busy = await client.result("execute", { command: "sleep 60", node: "runner" });
      const waiting = client.call("execute", { command: "true", node: "runner", job_id: "w" });
      await client.waitFor((f: Frame) => f.method === "job.queued" && f.params.job_id === "w", "w");
      const admin = createClient({ url: redis.url });
      await admin.connect();
      try {
        await admin.flushAll();
      } finally {
        admin.destroy();
      }
      const answer = await waiting;
      assert.equal(answer.error?.code, -32009, JSON.stringify(answer));
      assert.match(answer.error.message, /its record is gone from the cluster's Redis/);
      // Its record went too, so it is stopped where it runs.
      await using there = await RawClient.connect(runner.url);
      await there.result("control", { type: "CANCEL", job_id: busy.job_id });
    } finally {
      await front.shutdown();
      await runner.shutdown();
    }
  },
});

Deno.test({
  name:
    "cluster routing: Ctrl-C of run while its routed job waits in the queue cancels it there and then (it never runs), exit 130",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const front = await startNode(redis.url, "front");
    const runner = await startNode(redis.url, "runner", { CC_EXECUTOR_NODE_CAPACITY: "1" });
    try {
      const { client, running } = await oneRunningOneQueued(front.url);
      const child = cliCommand([
        "run",
        "--url",
        front.url,
        "--node",
        "runner",
        "--id",
        "late",
        "echo ran",
      ])
        .spawn();
      const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let said = "";
      while (!said.includes("queued in node:runner")) {
        const { value, done } = await stderr.read();
        if (done) break;
        said += value;
      }
      child.kill("SIGINT");
      // Before the fix, the cancel waited for the execute's answer, which comes only at the start.
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      const status = await child.status;
      clearTimeout(timer);
      while (!(await stderr.read()).done);
      await child.stdout.cancel();
      assert.equal(status.code, 130, "exits 130 while the job still waits");
      assert.equal((await client.result("jobs.get", { job_id: "late" })).status, "canceled");
      await client.result("control", { type: "CANCEL", job_id: running.job_id });
      // The job queued before it runs once the slot is free; it would run next.
      await client.completion("never", 10_000);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await client.close();
      assert.equal(runner.jobs.list().some((job) => job.id === "late"), false, "it never ran");
    } finally {
      await front.shutdown();
      await runner.shutdown();
    }
  },
});

Deno.test({
  name:
    "cluster routing: a retry_on_node_loss job whose node (the only one with its labels) is killed and restarts runs again there; its stream goes on instead of ending lost",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const nodes: CliServer[] = [];
    const pgids: number[] = [];
    try {
      const front = await startNodeProcess(redis.url, "front");
      const only = await startNodeProcess(redis.url, "only", { CC_EXECUTOR_NODE_LABELS: "w" });
      nodes.push(front, only);
      await using client = await RawClient.connect(front.url);
      const job = await client.result("execute", {
        command: "echo run; sleep 3; echo done",
        labels: ["w"],
        retry_on_node_loss: true,
      });
      pgids.push(job.pgid);
      await client.waitFor(
        (f: Frame) => f.method === "process.output" && f.params.job_id === job.job_id,
        "the first run's line",
      );
      only.child.kill("SIGKILL");
      await only.child.status;
      await only.log();
      // No other node has the label: it waits for this one, which comes back with its id.
      const back = await startNodeProcess(redis.url, "only", { CC_EXECUTOR_NODE_LABELS: "w" });
      nodes.push(back);
      const end = await client.completion(job.job_id, 30_000);
      // Before the fix, the restarted node's sweep ended its stream `lost` (so the client stopped
      // there), then ran it again all the same, behind the client's back.
      assert.equal(end.status, "completed", JSON.stringify(end));
      const methods = client.events(job.job_id).map((f: Frame) => f.method);
      assert.equal(methods.filter((m: string) => m === "process.completed").length, 1);
      assert.ok(
        client.frames.some((f: Frame) =>
          f.method === "job.node_lost" && f.params.job_id === job.job_id
        ),
        "job.node_lost tells of the second run",
      );
      assert.equal(client.output(job.job_id), "run\nrun\ndone\n");
    } finally {
      await killAll(nodes, pgids);
    }
  },
});

Deno.test({
  name:
    "cluster routing: a routed job runs for the token that sent it; another token neither sees nor cancels it, queued or running",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const dir = await Deno.makeTempDir();
    const main = "main-token-0123456789abcdef";
    const tokens = { alice: "alice-token-0123456789abcdef", bob: "bob-token-0123456789abcdef" };
    const policy = await writeTokenPolicy(dir, tokens);
    const env = { CC_EXECUTOR_TOKEN: main, CC_EXECUTOR_POLICY: policy };
    const front = await startNode(redis.url, "front", env);
    const runner = await startNode(redis.url, "runner", { ...env, CC_EXECUTOR_NODE_CAPACITY: "1" });
    const as = (url: string, token: string) =>
      RawClient.connect(url, { headers: { authorization: `Bearer ${token}` } });
    try {
      await using alice = await as(front.url, tokens.alice);
      await using bob = await as(front.url, tokens.bob);
      const running = await alice.result("execute", { command: "sleep 60", node: "runner" });
      alice.call("execute", { command: "echo later", node: "runner", job_id: "alice-queued" })
        .catch(() => {});
      await alice.waitFor((f: Frame) => f.method === "job.queued", "alice's second job queued");

      for (const jobId of [running.job_id, "alice-queued"]) {
        const seen = await bob.call("jobs.get", { job_id: jobId });
        assert.equal(seen.error?.code, -32001, `bob sees ${jobId}: ${JSON.stringify(seen)}`);
        const cancel = await bob.call("control", { type: "CANCEL", job_id: jobId });
        assert.equal(cancel.error?.code, -32001, `bob cancels ${jobId}: ${JSON.stringify(cancel)}`);
        const follow = await bob.call("jobs.subscribe", { job_id: jobId });
        assert.equal(follow.error?.code, -32001, `bob follows ${jobId}: ${JSON.stringify(follow)}`);
      }
      assert.equal((await alice.result("jobs.get", { job_id: "alice-queued" })).status, "queued");
      assert.equal((await alice.result("jobs.get", { job_id: running.job_id })).status, "running");

      // On the node that runs it, it is alice's job: hers to list, not bob's.
      await using aliceThere = await as(runner.url, tokens.alice);
      await using bobThere = await as(runner.url, tokens.bob);
      const hers = (await aliceThere.result("jobs.list", {})).jobs.map((j: { job_id: string }) =>
        j.job_id
      );
      assert.deepEqual(hers, [running.job_id]);
      assert.deepEqual((await bobThere.result("jobs.list", {})).jobs, []);

      await alice.result("control", { type: "CANCEL", job_id: "alice-queued" });
      await alice.result("control", { type: "CANCEL", job_id: running.job_id });
      assert.equal((await alice.completion(running.job_id)).status, "canceled");
    } finally {
      await front.shutdown();
      await runner.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
