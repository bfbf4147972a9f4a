/**
 * Several servers, one real redis-server: each registers as a node with a
 * heartbeat, `cluster status` shows them all from any of them, a node killed
 * with SIGKILL is down once its lease lapses, a clean stop leaves at once, and
 * a node id held by a live server cannot be taken.
 */
import assert from "node:assert/strict";
import type { ClusterStatusResult } from "../server/protocol.ts";
import { runCli, startCliServer } from "./cli_util.ts";
import { type CliServer, startNodeProcess, stopNodeProcess } from "./cluster_util.ts";
import { HAS_REDIS, startRedis } from "./redis_util.ts";
import { RawClient, startTestServer, waitUntil } from "./test_util.ts";

async function clusterStatus(url: string): Promise<ClusterStatusResult> {
  const { code, stdout, stderr } = await runCli(["cluster", "status", "--json", "--url", url]);
  assert.equal(code, 0, stderr);
  return JSON.parse(stdout);
}

Deno.test({
  name:
    "cluster: three servers on one Redis are nodes; any of them lists all three with labels and capacity",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const nodes: CliServer[] = [];
    try {
      nodes.push(
        await startNodeProcess(redis.url, "build-1", { CC_EXECUTOR_NODE_LABELS: "linux,gpu" }),
      );
      nodes.push(
        await startNodeProcess(redis.url, "build-2", {
          CC_EXECUTOR_NODE_LABELS: "linux,repo:foo",
          CC_EXECUTOR_NODE_CAPACITY: "4",
        }),
      );
      nodes.push(await startNodeProcess(redis.url, "build-3"));
      for (const node of nodes) {
        const status = await clusterStatus(node.url);
        assert.deepEqual(
          status.nodes.map((n) => [n.id, n.status, n.labels, n.capacity]),
          [
            ["build-1", "up", ["linux", "gpu"], 100],
            ["build-2", "up", ["linux", "repo:foo"], 4],
            ["build-3", "up", [], 100],
          ],
        );
        assert.equal(status.down_after_seconds, 2);
        assert.equal(status.node_id, status.nodes.find((n) => n.url === node.url)?.id);
        assert.ok(status.nodes.every((n) => n.pid > 0 && n.running === 0));
      }

      // The table names each node and says which one answered.
      const table = await runCli(["cluster", "status", "--url", nodes[1]!.url]);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^build-2 \(this\)\s+up\s+0\/4\s+linux,repo:foo/m);
      assert.match(table.stderr, /3 of 3 node\(s\) up; answered by build-2/);
    } finally {
      for (const node of nodes) await stopNodeProcess(node);
    }
  },
});

Deno.test({
  name:
    "cluster: a node killed with SIGKILL is down once its heartbeat lapses; its id is free again then",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const survivor = await startNodeProcess(redis.url, "stays");
    try {
      const victim = await startNodeProcess(redis.url, "dies");
      victim.child.kill("SIGKILL");
      await victim.child.status;
      await victim.log();
      // CC_EXECUTOR_NODE_DOWN_AFTER=2: down within about 2 s; the wait allows for a slow machine.
      const down = await waitUntil(
        async () => {
          const status = await clusterStatus(survivor.url);
          const dies = status.nodes.find((n) => n.id === "dies");
          return dies?.status === "down" ? status : null;
        },
        "the killed node to be down",
        20_000,
      );
      assert.equal(down!.nodes.find((n) => n.id === "stays")?.status, "up");

      // Its lease has lapsed, so a server started again with its id takes it back.
      const again = await startNodeProcess(redis.url, "dies");
      try {
        const status = await clusterStatus(survivor.url);
        assert.equal(status.nodes.find((n) => n.id === "dies")?.status, "up");
      } finally {
        await stopNodeProcess(again);
      }
      // A clean stop leaves the cluster at once: the node is gone, not down.
      const after = await clusterStatus(survivor.url);
      assert.deepEqual(after.nodes.map((n) => n.id), ["stays"]);
    } finally {
      await stopNodeProcess(survivor);
    }
  },
});

Deno.test({
  name:
    "cluster: jobs list --all-nodes shows what runs on every node, and marks the jobs of a node that is down",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    // The asker never marks the dead worker's job lost here: the test looks at it while down.
    const asker = await startNodeProcess(redis.url, "asker", {
      CC_EXECUTOR_NODE_LOST_AFTER: "600",
    });
    const worker = await startNodeProcess(redis.url, "worker");
    // The job's group outlives its killed server: the test stops it (its pid is its group's id).
    let pgid: number | null = null;
    try {
      const started = await runCli(["run", "--detach", "--url", worker.url, "sleep 60"]);
      assert.equal(started.code, 0, started.stderr);
      const jobId = started.stdout.trim();

      // The pid is recorded just after the process starts, so it may take a moment to show.
      const jobs = await waitUntil(async () => {
        const listed = await runCli(["jobs", "list", "--all-nodes", "--json", "--url", asker.url]);
        assert.equal(listed.code, 0, listed.stderr);
        const jobs = JSON.parse(listed.stdout);
        return jobs[0]?.pid ? jobs : null;
      }, "the worker's job with its pid");
      pgid = jobs[0].pid;
      assert.deepEqual(
        jobs.map((j: Record<string, unknown>) => [j.job_id, j.node_id, j.node_status, j.command]),
        [[jobId, "worker", "up", "sleep 60"]],
      );
      // The asker's own list holds only its own jobs: none.
      const local = await runCli(["jobs", "list", "--json", "--url", asker.url]);
      assert.deepEqual(JSON.parse(local.stdout), []);

      worker.child.kill("SIGKILL");
      await worker.child.status;
      await worker.log();
      await waitUntil(
        async () => {
          const { stdout } = await runCli(["jobs", "list", "--all-nodes", "--url", asker.url]);
          return new RegExp(`^${jobId}\\s+worker \\(down\\)\\s+\\S+ \\S+\\s+sleep 60$`, "m").test(
            stdout,
          );
        },
        "the dead worker's job to be shown on a node that is down",
        20_000,
      );

      const usage = await runCli([
        "jobs",
        "list",
        "--all-nodes",
        "--status",
        "failed",
        "--url",
        asker.url,
      ]);
      assert.equal(usage.code, 2);
      assert.match(
        usage.stderr,
        /--all-nodes lists running jobs; for others use `history list --status`/,
      );
    } finally {
      await stopNodeProcess(asker);
      try {
        worker.child.kill("SIGKILL");
      } catch { /* already gone */ }
      if (pgid !== null) {
        try {
          Deno.kill(-pgid, "SIGKILL");
        } catch { /* already gone */ }
      }
    }
  },
});

Deno.test({
  name: "cluster: a node id held by a live server cannot be taken; the start fails and says why",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const first = await startNodeProcess(redis.url, "only-one");
    try {
      const second = await runCli(["server", "start"], {
        env: {
          REDIS_URL: redis.url,
          CC_EXECUTOR_NODE_ID: "only-one",
          CC_EXECUTOR_PORT: "0",
        },
      });
      assert.equal(second.code, 1);
      assert.match(
        second.stderr,
        /Cannot start: cannot join the cluster: node id "only-one" is in use by a live server \(pid \d+ on [^)]+\); set CC_EXECUTOR_NODE_ID to another id/,
      );
      assert.doesNotMatch(second.stderr, /^\s+at /m);
      assert.doesNotMatch(second.stderr, /host name, the default/);
      // The first one is untouched.
      assert.equal((await clusterStatus(first.url)).nodes.length, 1);
    } finally {
      await stopNodeProcess(first);
    }
  },
});

Deno.test({
  name:
    "cluster: a server restarted on the same machine after SIGKILL takes its node id back at once",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    // A long lease: without the takeover the restart would be refused for a minute.
    const env = { CC_EXECUTOR_NODE_DOWN_AFTER: "60" };
    const crashed = await startNodeProcess(redis.url, "restarts", env);
    crashed.child.kill("SIGKILL");
    await crashed.child.status;
    await crashed.log();
    const again = await startNodeProcess(redis.url, "restarts", env);
    try {
      const status = await clusterStatus(again.url);
      assert.deepEqual(status.nodes.map((n) => [n.id, n.status, n.url]), [
        ["restarts", "up", again.url],
      ]);
    } finally {
      await stopNodeProcess(again);
    }
    assert.match(
      await again.log(),
      /took over the node id from a server that died on this machine.*"dead_pid":\d+/,
    );
  },
});

Deno.test({
  name:
    "cluster: off without REDIS_URL or with CC_EXECUTOR_CLUSTER=off; cluster status says so and exits 1",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using plain = await startTestServer();
    const alone = await runCli(["cluster", "status", "--url", plain.url]);
    assert.equal(alone.code, 1);
    assert.match(alone.stderr, /This server is not a node of a cluster: start it with REDIS_URL/);

    await using redis = await startRedis();
    const off = await startNodeProcess(redis.url, "store-only", { CC_EXECUTOR_CLUSTER: "off" });
    try {
      const status = await runCli(["cluster", "status", "--url", off.url]);
      assert.equal(status.code, 1);
      assert.match(status.stderr, /not a node of a cluster/);
      const bad = await runCli(["server", "start"], {
        env: {
          REDIS_URL: redis.url,
          CC_EXECUTOR_NODE_LABELS: "gpu,bad label",
          CC_EXECUTOR_PORT: "0",
        },
      });
      assert.equal(bad.code, 1, bad.stderr);
      assert.match(bad.stderr, /CC_EXECUTOR_NODE_LABELS="gpu,bad label": each label: letters/);
    } finally {
      await stopNodeProcess(off);
    }
  },
});

Deno.test({
  name:
    "cluster: two servers on one machine that both default to the host name: the second is told what to do",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const first = await startCliServer({ REDIS_URL: redis.url });
    try {
      const second = await runCli(["server", "start"], {
        env: { REDIS_URL: redis.url, CC_EXECUTOR_PORT: "0" },
      });
      assert.equal(second.code, 1);
      assert.match(
        second.stderr,
        /is in use by a live server .*The id is this machine's host name, the default: with two servers on one machine, give each its own CC_EXECUTOR_NODE_ID \(or set CC_EXECUTOR_CLUSTER=off on one\)/,
      );
    } finally {
      await stopNodeProcess(first);
    }
  },
});

Deno.test({
  name:
    "cluster: a job's notifications can be replayed and followed from any node, the same frames as on its own",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const owner = await startNodeProcess(redis.url, "owner");
    const other = await startNodeProcess(redis.url, "other");
    try {
      await using here = await RawClient.connect(owner.url);
      await using there = await RawClient.connect(other.url);
      // The job waits for its input, so what "there" sees first can only be a replay.
      const started = await here.result("execute", {
        command: "echo one; read go; echo two >&2; echo three $go; exit 4",
        keep_stdin_open: true,
      });
      const jobId = started.job_id;
      await here.waitFor((f) => f.method === "process.output" && f.params.job_id === jobId, "one");

      const subscribed = await there.result("jobs.subscribe", { job_id: jobId });
      assert.deepEqual(subscribed, {
        job_id: jobId,
        status: "running",
        replay_from_seq: 1,
        missed: 0,
      });
      await there.waitFor(
        (f) => f.method === "process.output" && f.params.job_id === jobId,
        "the replay of one on the other node",
      );
      await here.result("jobs.input", { job_id: jobId, data: "now\n", eof: true });
      const doneThere = await there.completion(jobId);
      const doneHere = await here.completion(jobId);
      assert.equal(doneThere.status, "failed");
      assert.equal(doneThere.exit_code, 4);
      // Every notification, with its seq and offsets, exactly as the owner sent them.
      assert.deepEqual(there.events(jobId), here.events(jobId));
      assert.deepEqual(doneThere, doneHere);
      assert.equal(there.output(jobId), "one\nthree now\n");
      assert.equal(there.output(jobId, "stderr"), "two\n");
      // Followed to its end, so no longer followed: as for a local job, not an error.
      assert.deepEqual(await there.result("jobs.unsubscribe", { job_id: jobId }), {
        job_id: jobId,
        subscribed: false,
      });
      const unknown = await there.call("jobs.unsubscribe", { job_id: "no-such-job" });
      assert.equal(unknown.error.code, -32001);

      // After it ended, from a node started since, from a given notification on.
      const late = await startNodeProcess(redis.url, "late");
      try {
        await using client = await RawClient.connect(late.url);
        const three = here.events(jobId).find((e) =>
          e.method === "process.output" && e.params.data === "three now\n"
        );
        const replay = await client.result("jobs.subscribe", {
          job_id: jobId,
          from_seq: three.params.seq,
        });
        assert.equal(replay.status, "failed");
        assert.equal(replay.replay_from_seq, three.params.seq);
        await client.completion(jobId);
        assert.deepEqual(
          client.events(jobId),
          here.events(jobId).filter((e) => e.params.seq >= three.params.seq),
        );
        const missing = await client.call("jobs.subscribe", { job_id: "no-such-job" });
        assert.equal(missing.error.code, -32001);
        assert.equal(missing.error.message, 'Job "no-such-job" not found');
      } finally {
        await stopNodeProcess(late);
      }
    } finally {
      await stopNodeProcess(owner);
      await stopNodeProcess(other);
    }
  },
});

Deno.test({
  name:
    "cluster: a finished job of many small notifications replays from another node as much as from its own",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const owner = await startNodeProcess(redis.url, "owner", { CC_EXECUTOR_COALESCE_MS: "0" });
    const other = await startNodeProcess(redis.url, "other");
    try {
      await using here = await RawClient.connect(owner.url);
      await using there = await RawClient.connect(other.url);
      // One line per notification: far fewer bytes than the finished replay keeps (256 KiB).
      const started = await here.result("execute", {
        command: "for i in $(seq 300); do echo line $i; sleep 0.002; done",
      });
      await here.completion(started.job_id);
      const local = await here.result("jobs.subscribe", { job_id: started.job_id });
      assert.equal(local.missed, 0);
      const remote = await there.result("jobs.subscribe", { job_id: started.job_id });
      await there.completion(started.job_id);
      assert.deepEqual(remote, local);
      // "here" got the job live and then its replay: once each.
      const live = here.events(started.job_id);
      assert.deepEqual(there.events(started.job_id), live.slice(live.length / 2));
    } finally {
      await stopNodeProcess(owner);
      await stopNodeProcess(other);
    }
  },
});

Deno.test({
  name:
    "cluster: a job is read, fed, paused, resumed and canceled through a node that does not run it",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const owner = await startNodeProcess(redis.url, "runs-it");
    const other = await startNodeProcess(redis.url, "asked");
    try {
      await using here = await RawClient.connect(owner.url);
      await using there = await RawClient.connect(other.url);
      const { job_id: jobId } = await here.result("execute", {
        command: "read line; echo got $line; sleep 60",
        keep_stdin_open: true,
      });

      const info = await there.result("jobs.get", { job_id: jobId });
      assert.equal(info.job_id, jobId);
      assert.equal(info.status, "running");
      assert.equal(info.pid, (await here.result("jobs.get", { job_id: jobId })).pid);

      const fed = await there.result("jobs.input", { job_id: jobId, data: "hello\n" });
      assert.deepEqual(fed, { job_id: jobId, bytes_written: 6, stdin_open: true });
      await here.waitFor(
        (f) => f.method === "process.output" && f.params.data === "got hello\n",
        "the job to read what the other node sent",
      );

      assert.deepEqual(await there.result("control", { type: "PAUSE", job_id: jobId }), {
        job_id: jobId,
        status: "paused",
      });
      await here.waitFor((f) => f.method === "process.paused", "process.paused");
      assert.equal(
        (await there.result("control", { type: "RESUME", job_id: jobId })).status,
        "running",
      );

      // The CLI through the other node: cancel waits for the outcome, read from the stream.
      const canceled = await runCli(["jobs", "cancel", jobId, "--url", other.url]);
      assert.equal(canceled.code, 0, canceled.stderr);
      assert.match(canceled.stdout, new RegExp(`job ${jobId}: canceled`));
      assert.equal((await here.completion(jobId)).status, "canceled");

      // The owner's errors come back as they are.
      const again = await there.call("control", { type: "CANCEL", job_id: jobId });
      assert.equal(again.error.code, -32002);
      assert.match(again.error.message, /not running \(status: canceled\)/);

      // A job whose node is gone: the request says so instead of waiting.
      const { job_id: orphan, pgid: orphanGroup } = await here.result("execute", {
        command: "sleep 60",
        detach: true,
      });
      owner.child.kill("SIGKILL");
      await owner.child.status;
      await owner.log();
      const lost = await there.call("control", { type: "CANCEL", job_id: orphan });
      assert.equal(lost.error.code, -32016);
      assert.match(
        lost.error.message,
        new RegExp(`Cannot reach node "runs-it", which runs job "${orphan}": it is not connected`),
      );
      // Its group outlived the killed server: the test stops it.
      Deno.kill(-orphanGroup, "SIGKILL");
    } finally {
      try {
        owner.child.kill("SIGKILL");
      } catch { /* already gone */ }
      await stopNodeProcess(other);
    }
  },
});
