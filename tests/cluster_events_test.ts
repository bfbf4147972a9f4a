/**
 * The job event streams against a real redis-server: a job of one token is
 * "not found" to another token's followers on other nodes, as it is locally,
 * and a follower gets the frames in order and stops at the job's end.
 */
import assert from "node:assert/strict";
import { JobEventStreams } from "../server/cluster/job_events.ts";
import type { Job, Subscriber } from "../server/jobs.ts";
import { UNRESTRICTED } from "../server/job_admission.ts";
import { silentLogger } from "../server/log.ts";
import { RpcError } from "../server/protocol.ts";
import { HAS_REDIS, startRedis } from "./redis_util.ts";
import { waitUntil } from "./test_util.ts";

const frame = (method: string, params: Record<string, unknown>) =>
  JSON.stringify({ jsonrpc: "2.0", method, params });

/** A job as the mirror sees one: an id, an owner, and a subscribe that hands over frames. */
function fakeJob(id: string, principal: string) {
  let mirror: Subscriber | undefined;
  const job = {
    id,
    principal,
    subscribe: (subscriber: Subscriber) => {
      mirror = subscriber;
      return { frames: [], firstSeq: null, missed: 0 };
    },
    previewReplay: () => ({ firstSeq: 1, missed: 0 }),
  } as unknown as Job;
  return { job, emit: (text: string) => mirror!.send(text) };
}

function collector(id: string): Subscriber & { frames: string[] } {
  const frames: string[] = [];
  return { id, frames, send: (text) => frames.push(text), ready: () => undefined };
}

async function open(url: string, nodeId: string): Promise<JobEventStreams> {
  return await JobEventStreams.open({
    redisUrl: url,
    nodeId,
    logger: silentLogger,
  });
}

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
    emit(frame("process.started", { job_id: "j-1", seq: 1, pid: 1, pgid: 1 }));
    emit(
      frame("process.output", { job_id: "j-1", seq: 2, stream: "stdout", offset: 0, data: "hi\n" }),
    );

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
    emit(frame("process.completed", { job_id: "j-1", seq: 3, status: "completed", exit_code: 0 }));
    await waitUntil(() => mine.frames.length === 3, "the follower to get the end");
    assert.deepEqual(mine.frames.map((f) => JSON.parse(f).params.seq), [1, 2, 3]);
    // Followed to its end: nothing more is read for it.
    assert.equal(other.unsubscribe("s2", "j-1"), false);
  },
});
