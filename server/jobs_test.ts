import assert from "node:assert/strict";
import { defaultConfig } from "./config.ts";
import { JobManager, type Subscriber } from "./jobs.ts";
import { silentLogger } from "./log.ts";
import { ProcessGroup } from "./process.ts";

/** A subscriber that never catches up: every read it is asked about waits forever. */
const stalled = (id: string): Subscriber => ({
  id,
  send() {},
  ready: () => new Promise<void>(() => {}),
});

async function waitUntil(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

Deno.test("jobs: a job that fails on our side stops reading, even when held back by a stalled subscriber", async () => {
  const jobs = new JobManager({
    config: defaultConfig({ killGraceMs: 100 }),
    shell: "bash",
    groupMode: "setsid",
    logger: silentLogger,
    spawn: (spec, mode) => {
      const group = ProcessGroup.spawn(spec, mode);
      // What the job does once the shell has exited; failing there ends the job as `error`.
      group.sweep = () => Promise.reject(new Error("sweep failed (simulated)"));
      return group;
    },
  });
  const { job } = await jobs.start({ command: "echo hi; sleep 0.2" }, "owner");
  job.subscribe(stalled("slow"));
  await job.done;
  assert.equal(job.status, "error");
  assert.equal(job.reason, "sweep failed (simulated)");
  // The pumps let go of the pipes (a pending read would also show up as a leaked op).
  await waitUntil(
    () => !job.group.stdout.locked && !job.group.stderr.locked,
    "the pumps to release the pipes",
  );
});

Deno.test("jobs: finished jobs keep neither read nor chunk buffers", async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.ok(gc, "needs --v8-flags=--expose-gc, which `deno task test` passes");
  const jobs = new JobManager({
    // 1 MiB chunks make a kept chunk buffer obvious (40+ MiB for 40 jobs); kept 64 KiB read
    // buffers would be 5 MiB.
    config: defaultConfig({ chunkBytes: 1024 * 1024, keepFinishedJobs: 200 }),
    shell: "bash",
    groupMode: "setsid",
    logger: silentLogger,
  });
  const settle = async () => {
    // Backing stores of collected buffers are freed in a later task, then collected again.
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
    gc();
  };
  await (await jobs.start({ command: "true" }, "warm-up")).job.done;
  await settle();
  const before = Deno.memoryUsage().external;
  for (let i = 0; i < 40; i++) {
    const { job } = await jobs.start({ command: "echo out; echo err >&2" }, "owner");
    await job.done;
    assert.equal(job.status, "completed");
  }
  await settle();
  const grown = Deno.memoryUsage().external - before;
  assert.ok(grown < 2 * 1024 * 1024, `external memory grew ${grown} bytes for 40 finished jobs`);
});

Deno.test("jobs: a job that has started no longer also counts as starting against CC_EXECUTOR_MAX_JOBS", async () => {
  let second: Promise<unknown> | undefined;
  const jobs = new JobManager({
    config: defaultConfig({ maxJobs: 2, killGraceMs: 100 }),
    shell: "bash",
    groupMode: "setsid",
    logger: silentLogger,
    spawn: (spec, mode) => {
      const group = ProcessGroup.spawn(spec, mode);
      // The first job is running from here on, while its start() has not returned yet: a second
      // request checked then (as one whose handler awaited something can be) sees 1 job of 2.
      if (!second) {
        second = new Promise<void>((resolve) => queueMicrotask(() => resolve())).then(() =>
          jobs.start({ command: "sleep 5" }, "owner")
        );
      }
      return group;
    },
  });
  const first = await jobs.start({ command: "sleep 5" }, "owner");
  const { job } = await second as Awaited<ReturnType<JobManager["start"]>>;
  first.job.control("CANCEL");
  job.control("CANCEL");
  await Promise.all([first.job.done, job.done]);
});
