/**
 * The job event streams against a real redis-server: a job of one token is "not found" to
 * another token's followers on other nodes, as it is locally; every follower of a job (a second
 * one, one that subscribes again, one whose replay is ahead of the follow loop) gets every frame
 * once and in order; and a Redis that stopped answering neither hangs a subscribe nor closing.
 */
import assert from "node:assert/strict";
import { JobEventStreams } from "../server/cluster/job_events.ts";
import type { Job, Subscriber } from "../server/jobs.ts";
import { UNRESTRICTED } from "../server/job_admission.ts";
import { silentLogger } from "../server/log.ts";
import { RpcError } from "../server/protocol.ts";
import { HAS_REDIS, startRedis } from "./redis_util.ts";
import { waitUntil } from "./test_util.ts";

const frame = (method: string, seq: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ jsonrpc: "2.0", method, params: { job_id: "j", seq, ...extra } });
const output = (seq: number) =>
  frame("process.output", seq, { stream: "stdout", offset: seq, data: `${seq}\n` });
const completed = (seq: number) => frame("process.completed", seq, { status: "completed" });

function fakeJob(id: string, principal: string) {
  let mirror: Subscriber | undefined;
  const job = {
    id,
    principal,
    subscribe: (subscriber: Subscriber) => {
      mirror = subscriber;
      return { frames: [], firstSeq: null, missed: 0 };
    },
    oldestReplaySeq: 1,
    takenOver: false,
    // Never ends here: the tests end the stream with a terminal frame of their own.
    done: new Promise<void>(() => {}),
  } as unknown as Job;
  return { job, emit: (text: string) => mirror!.send(text) };
}

function collector(id: string): Subscriber & { frames: string[]; seqs: () => number[] } {
  const frames: string[] = [];
  return {
    id,
    frames,
    seqs: () => frames.map((f) => JSON.parse(f).params.seq),
    send: (text) => frames.push(text),
    ready: () => undefined,
  };
}

function open(url: string, nodeId: string): Promise<JobEventStreams> {
  return JobEventStreams.open({
    redisUrl: url,
    nodeId,
    logger: silentLogger,
  });
}

/** Subscribes `session` to job `jobId` through `streams` once its stream has reached Redis. */
async function followOnceThere(
  streams: JobEventStreams,
  session: Subscriber,
  jobId: string,
): Promise<void> {
  await waitUntil(async () => {
    try {
      (await streams.subscribe(session, UNRESTRICTED, jobId, 0)).start();
      return true;
    } catch {
      return false;
    }
  }, "the job's stream");
}

Deno.test({
  name:
    "job events: a second follower of a job followed already misses no frame and gets none twice",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    await using owner = await open(redis.url, "owner");
    await using other = await open(redis.url, "other");
    const { job, emit } = fakeJob("j", "main");
    owner.mirror(job);
    emit(frame("process.started", 1));
    const a = collector("a");
    await followOnceThere(other, a, "j");
    await waitUntil(() => a.frames.length === 1, "a's replay");
    // b's replay is read now (seq 1); its follow starts once its response is out, by which
    // time the follow loop may have moved on.
    const b = collector("b");
    const subscribed = await other.subscribe(b, UNRESTRICTED, "j", 0);
    emit(output(2));
    await waitUntil(() => a.frames.length === 2, "a gets 2");
    subscribed.start();
    emit(output(3));
    emit(completed(4));
    await waitUntil(() => a.frames.length === 4, "a gets the end");
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(a.seqs(), [1, 2, 3, 4]);
    assert.deepEqual(b.seqs(), [1, 2, 3, 4]);
  },
});

Deno.test({
  name: "job events: a follower whose replay is ahead of the follow loop gets no frame twice",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    await using owner = await open(redis.url, "owner");
    await using other = await open(redis.url, "other");
    const { job, emit } = fakeJob("j", "main");
    owner.mirror(job);
    emit(frame("process.started", 1));
    await waitUntil(async () => {
      try {
        await other.subscribe(collector("x"), UNRESTRICTED, "j", 0);
        return true;
      } catch {
        return false;
      }
    }, "the stream");
    // a follows from the start; b's replay already holds 2 and 3 while the loop has sent a only 1.
    const a = collector("a");
    const first = await other.subscribe(a, UNRESTRICTED, "j", 0);
    emit(output(2));
    emit(output(3));
    const b = collector("b");
    await waitUntil(async () => {
      const s = await other.subscribe(collector("probe"), UNRESTRICTED, "j", 0);
      return s.start !== undefined && (await Promise.resolve(true));
    }, "2 and 3 in Redis");
    const second = await other.subscribe(b, UNRESTRICTED, "j", 0);
    first.start();
    second.start();
    emit(completed(4));
    await waitUntil(() => a.frames.length >= 4 && b.frames.length >= 4, "both get the end");
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(a.seqs(), [1, 2, 3, 4]);
    assert.deepEqual(b.seqs(), [1, 2, 3, 4]);
  },
});

Deno.test({
  name: "job events: a session that subscribes again gets each live frame once, as locally",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    await using owner = await open(redis.url, "owner");
    await using other = await open(redis.url, "other");
    const { job, emit } = fakeJob("j", "main");
    owner.mirror(job);
    emit(frame("process.started", 1));
    const a = collector("a");
    await followOnceThere(other, a, "j");
    await waitUntil(() => a.frames.length === 1, "a's replay");
    // Again from where it is: the replay is empty, and the follow replaces the first.
    (await other.subscribe(a, UNRESTRICTED, "j", 2)).start();
    emit(output(2));
    emit(completed(3));
    await waitUntil(() => a.seqs().includes(3), "the end");
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(a.seqs(), [1, 2, 3]);
  },
});

Deno.test({
  name:
    "job events: a job that reuses a client-chosen id shows none of the earlier job's frames, whoever ran it",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    await using first = await open(redis.url, "first");
    await using second = await open(redis.url, "second");
    await using third = await open(redis.url, "third");
    const alice = fakeJob("build", "alice");
    first.mirror(alice.job);
    alice.emit(frame("process.started", 1));
    alice.emit(
      frame("process.output", 2, { stream: "stdout", offset: 0, data: "alice's secret\n" }),
    );
    alice.emit(completed(3));
    const bobToken = { ...UNRESTRICTED, name: "bob", admin: false };
    await waitUntil(async () => {
      const s = await third.subscribe(collector("p"), UNRESTRICTED, "build", 0);
      return s.status === "completed";
    }, "alice's job in Redis");
    // Later, bob's job with the same id on another node (no shared history to refuse it).
    const bob = fakeJob("build", "bob");
    second.mirror(bob.job);
    bob.emit(frame("process.started", 1));
    const b = collector("b");
    await waitUntil(async () => {
      try {
        const s = await third.subscribe(collector("p2"), bobToken, "build", 0);
        return s.replay_from_seq === 1;
      } catch {
        return false;
      }
    }, "bob's job in Redis");
    const subscribed = await third.subscribe(b, bobToken, "build", 0);
    assert.equal(subscribed.status, "running");
    subscribed.start();
    bob.emit(output(2));
    bob.emit(completed(3));
    await waitUntil(() => b.seqs().includes(3), "bob's end");
    assert.ok(!b.frames.some((f) => f.includes("alice")), b.frames.join(""));
    assert.deepEqual(b.seqs(), [1, 2, 3]);
  },
});

Deno.test({
  name:
    "job events: a Redis that stops answering fails a subscribe in time and does not hold up closing",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    const owner = await open(redis.url, "owner");
    const other = await open(redis.url, "other");
    const { job, emit } = fakeJob("j", "main");
    owner.mirror(job);
    emit(frame("process.started", 1));
    const a = collector("a");
    await followOnceThere(other, a, "j");
    // Every client's commands wait (as with a paused or partitioned Redis) for 8 s.
    const admin = await Deno.connect({ hostname: "127.0.0.1", port: redis.port });
    await admin.write(new TextEncoder().encode("CLIENT PAUSE 8000 ALL\r\n"));
    await admin.read(new Uint8Array(64));
    admin.close();
    let t0 = performance.now();
    await assert.rejects(
      other.subscribe(collector("b"), UNRESTRICTED, "other-job", 0),
      (error) => error instanceof RpcError && error.code === -32009,
    );
    // Bounds well past the 2 s deadlines but short of the 8 s pause: not a timing target, only
    // proof that nothing waited for Redis to answer again.
    assert.ok(performance.now() - t0 < 7000, `subscribe took ${performance.now() - t0} ms`);
    emit(output(2)); // on its way when the owner closes
    t0 = performance.now();
    await other[Symbol.asyncDispose]();
    await owner[Symbol.asyncDispose]();
    assert.ok(performance.now() - t0 < 7000, `closing took ${performance.now() - t0} ms`);
  },
});

Deno.test({
  name:
    "job events: another token's job is not found from another node; its own token and the main one follow it",
  ignore: !HAS_REDIS,
  fn: async () => {
    await using redis = await startRedis();
    await using owner = await open(redis.url, "owner");
    await using other = await open(redis.url, "other");
    const { job, emit } = fakeJob("j-1", "reviewer");
    owner.mirror(job);
    emit(frame("process.started", 1, { job_id: "j-1", pid: 1, pgid: 1 }));
    emit(frame("process.output", 2, { job_id: "j-1", stream: "stdout", offset: 0, data: "hi\n" }));

    const stranger = { ...UNRESTRICTED, name: "ci", admin: false, history: true };
    await waitUntil(async () => {
      try {
        await other.subscribe(collector("s0"), UNRESTRICTED, "j-1", 0);
        return true;
      } catch {
        return false;
      }
    }, "the stream to reach Redis");
    await assert.rejects(
      other.subscribe(collector("s1"), stranger, "j-1", 0),
      (error) => error instanceof RpcError && error.code === -32001,
    );

    const mine = collector("s2");
    const reviewer = { ...stranger, name: "reviewer" };
    const subscribed = await other.subscribe(mine, reviewer, "j-1", 0);
    assert.equal(subscribed.status, "running");
    subscribed.start();
    emit(frame("process.completed", 3, { job_id: "j-1", status: "completed", exit_code: 0 }));
    await waitUntil(() => mine.frames.length === 3, "the follower to get the end");
    assert.deepEqual(mine.frames.map((f) => JSON.parse(f).params.seq), [1, 2, 3]);
    // Followed to its end: nothing more is read for it.
    assert.equal(other.unsubscribe("s2", "j-1"), false);
  },
});
