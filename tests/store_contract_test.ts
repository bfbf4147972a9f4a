/**
 * One contract for every store: the same suite runs against SqliteStore (a
 * temporary file) and RedisStore (a fresh redis-server per test), so the two
 * backends answer every method with the same results. Then what only Redis
 * has: outages, the write queue, URLs with passwords, prefixes.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { createClient } from "redis";
import { createLogger, type Logger } from "../server/log.ts";
import { CursorError, encodeCursor } from "../server/store/cursor.ts";
import { redactRedisUrl, RedisStore, RedisUnavailableError } from "../server/store/redis.ts";
import { HistoryOffError, NoStore } from "../server/store/none.ts";
import { Outbox } from "../server/store/outbox.ts";
import { SqliteStore } from "../server/store/sqlite.ts";
import type {
  JobEnd,
  JobRecord,
  JobSpawned,
  JobStart,
  ListQuery,
  Store,
} from "../server/store/store.ts";
import { freePort, HAS_REDIS, startRedis } from "./redis_util.ts";
import { waitUntil } from "./test_util.ts";

/** 2023-11-14T22:13:20Z: every time in these tests is an offset from it. */
const T0 = 1_700_000_000_000;

interface Clock {
  now: number;
}

interface Backend {
  name: "sqlite" | "redis";
  ignore: boolean;
  open(now: () => number): Promise<{ store: Store } & AsyncDisposable>;
}

const sqlite: Backend = {
  name: "sqlite",
  ignore: false,
  async open(now) {
    const dir = await Deno.makeTempDir({ prefix: "cc-executor-store-" });
    const store = new SqliteStore(`${dir}/store.db`, { now });
    return {
      store,
      async [Symbol.asyncDispose]() {
        await store[Symbol.asyncDispose]();
        await Deno.remove(dir, { recursive: true });
      },
    };
  },
};

const redis: Backend = {
  name: "redis",
  ignore: !HAS_REDIS,
  async open(now) {
    const server = await startRedis();
    let store: RedisStore;
    try {
      store = await RedisStore.open(server.url, { now, prefix: "contract:" });
    } catch (error) {
      await server[Symbol.asyncDispose]();
      throw error;
    }
    return {
      store,
      async [Symbol.asyncDispose]() {
        await store[Symbol.asyncDispose]();
        await server[Symbol.asyncDispose]();
      },
    };
  },
};

// ---- records as the tests write and expect them ----------------------------------------------

function start(id: string, overrides: Partial<JobStart> = {}): JobStart {
  return {
    job_id: id,
    command: `echo ${id}`,
    shape: "echo",
    cwd: "/srv/app",
    session_id: "session-1",
    node_id: "node-a",
    server_pid: 4242,
    started_at: T0,
    timeout_s: 30,
    timeout_source: "request",
    ...overrides,
  };
}

function end(overrides: Partial<JobEnd> = {}): JobEnd {
  return {
    status: "completed",
    ended_at: T0 + 1500,
    duration_ms: 1500,
    exit_code: 0,
    signal: null,
    reason: null,
    bytes_stdout: 12,
    bytes_stderr: 0,
    truncated: false,
    output_head: "hello world\n",
    output_tail: "",
    hooks: null,
    ...overrides,
  };
}

/** The record of a job that was started (and maybe spawned and ended). */
function record(s: JobStart, spawned?: JobSpawned | null, e?: JobEnd): JobRecord {
  return {
    // A start without retry links is a job's own first run.
    parent_job_id: null,
    attempt: 1,
    ...s,
    status: "running",
    pid: spawned?.pid ?? null,
    pgid: spawned?.pgid ?? null,
    ended_at: null,
    duration_ms: null,
    exit_code: null,
    signal: null,
    reason: null,
    bytes_stdout: 0,
    bytes_stderr: 0,
    truncated: false,
    output_head: "",
    output_tail: "",
    hooks: null,
    ...e,
  };
}

/** As `list` returns it: without the output. */
function listed(r: JobRecord): JobRecord {
  return { ...r, output_head: "", output_tail: "" };
}

/** Starts (and, given an end, ends) a job. */
async function add(store: Store, s: JobStart, e?: JobEnd): Promise<void> {
  await store.jobStarted(s);
  if (e) await store.jobEnded(s.job_id, e);
}

/** Every page of a query, following next_cursor; fails on a loop. */
async function allPages(store: Store, query: ListQuery): Promise<JobRecord[][]> {
  const pages: JobRecord[][] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ ...query, cursor });
    pages.push(page.jobs);
    cursor = page.next_cursor ?? undefined;
    assert.ok(pages.length < 100, "list keeps returning a next_cursor");
  } while (cursor);
  return pages;
}

const ids = (jobs: JobRecord[]) => jobs.map((job) => job.job_id);

// ---- the contract ------------------------------------------------------------------------------

function contract(backend: Backend): void {
  const test = (name: string, fn: (store: Store, clock: Clock) => Promise<void>) =>
    Deno.test({
      name: `store contract (${backend.name}): ${name}`,
      ignore: backend.ignore,
      async fn() {
        const clock = { now: T0 };
        await using opened = await backend.open(() => clock.now);
        await fn(opened.store, clock);
      },
    });

  test("jobStarted records a running job whose fields round-trip exactly, types included", async (store) => {
    const bare = start("bare", {
      cwd: null,
      session_id: null,
      timeout_s: null,
      timeout_source: "none",
    });
    const full = start("full", {
      command: "FOO='a b' npm test -- --grep 'é ü' \\\n  && echo \"done\"",
      shape: "npm test",
      timeout_s: 2.5,
      timeout_source: "history",
      server_pid: 1,
      started_at: T0 + 1,
    });
    await store.jobStarted(bare);
    await store.jobStarted(full);
    assert.deepStrictEqual(await store.get("bare"), record(bare));
    assert.deepStrictEqual(await store.get("full"), record(full));
  });

  test("jobSpawned adds the process ids; for an unknown job it records nothing", async (store) => {
    const s = start("a");
    await store.jobStarted(s);
    await store.jobSpawned("a", { pid: 31337, pgid: 31337 });
    assert.deepStrictEqual(await store.get("a"), record(s, { pid: 31337, pgid: 31337 }));
    await store.jobSpawned("ghost", { pid: 1, pgid: 1 });
    assert.equal(await store.get("ghost"), null);
  });

  test("jobEnded completes the record with every field, hooks as JSON", async (store) => {
    const killed = start("killed");
    const killedEnd = end({
      status: "timed_out",
      ended_at: T0 + 5000,
      duration_ms: 4999.5,
      exit_code: null,
      signal: "SIGKILL",
      reason: "timed out after 5 s",
      bytes_stdout: 10_000_000_000,
      bytes_stderr: 7,
      truncated: true,
      output_head: "first line\nsecond: é ✓ 🚀\n",
      output_tail: "...\nlast line\n",
      hooks: {
        post: [{ name: "lint", ok: false, data: { n: 1.5, s: "x", nothing: null, list: [true] } }],
      },
    });
    await store.jobStarted(killed);
    await store.jobSpawned("killed", { pid: 100, pgid: 100 });
    await store.jobEnded("killed", killedEnd);
    assert.deepStrictEqual(
      await store.get("killed"),
      record(killed, { pid: 100, pgid: 100 }, killedEnd),
    );

    const failed = start("failed", { started_at: T0 + 1 });
    const failedEnd = end({ status: "failed", exit_code: 2, output_head: "" });
    await add(store, failed, failedEnd);
    assert.deepStrictEqual(await store.get("failed"), record(failed, null, failedEnd));

    await store.jobEnded("ghost", end());
    assert.equal(await store.get("ghost"), null);
  });

  test("jobStarted again with the same id replaces the record", async (store) => {
    await add(store, start("a"), end());
    const again = start("a", { command: "echo again", started_at: T0 + 10, node_id: "node-b" });
    await store.jobStarted(again);
    assert.deepStrictEqual(await store.get("a"), record(again));
    assert.deepStrictEqual(ids((await store.list({ limit: 10, status: "running" })).jobs), ["a"]);
    assert.deepStrictEqual(ids((await store.list({ limit: 10, status: "completed" })).jobs), []);
    assert.deepStrictEqual(await store.stats({ shapes: 5 }), {
      by_status: { running: 1 },
      by_shape: [],
    });
    assert.deepStrictEqual(ids(await store.orphans("node-b", 1)), ["a"]);
    assert.deepStrictEqual(await store.orphans("node-a", 1), []);
  });

  test("get of an unknown job is null", async (store) => {
    assert.equal(await store.get("nope"), null);
  });

  test("list returns newest first, without the output, at most limit", async (store) => {
    const starts = ["a", "b", "c", "d", "e"].map((id, i) => start(id, { started_at: T0 + i }));
    for (const s of starts) await store.jobStarted(s);
    const cEnd = end({ ended_at: T0 + 100, output_tail: "tail" });
    await store.jobEnded("c", cEnd);

    const first = await store.list({ limit: 3 });
    assert.deepStrictEqual(first.jobs, [
      listed(record(starts[4]!)),
      listed(record(starts[3]!)),
      listed(record(starts[2]!, null, cEnd)),
    ]);
    assert.equal(typeof first.next_cursor, "string");

    const exact = await store.list({ limit: 5 });
    assert.deepStrictEqual(ids(exact.jobs), ["e", "d", "c", "b", "a"]);
    assert.equal(exact.next_cursor, null, "no next page when the page holds the last job");
    assert.equal((await store.list({ limit: 50 })).jobs.length, 5);
  });

  test("list pages with a stable cursor across equal started_at (no duplicates, no gaps)", async (store) => {
    // 23 jobs in groups of 5 sharing a start time, written in a scrambled order.
    const starts = Array.from(
      { length: 23 },
      (_, i) =>
        start(`job-${String((i * 7) % 23).padStart(2, "0")}`, {
          started_at: T0 + Math.floor(((i * 7) % 23) / 5) * 1000,
        }),
    );
    await Promise.all(starts.map((s) => store.jobStarted(s)));
    const expected = [...starts]
      .sort((a, b) => b.started_at - a.started_at || (a.job_id < b.job_id ? 1 : -1))
      .map((s) => s.job_id);

    for (const limit of [1, 4, 5, 7]) {
      const pages = await allPages(store, { limit });
      assert.deepStrictEqual(pages.flat().map((job) => job.job_id), expected, `limit ${limit}`);
      assert.ok(pages.every((page) => page.length === limit || page === pages.at(-1)));
    }

    // Jobs started after the first page do not shift the next pages.
    const page1 = await store.list({ limit: 6 });
    await store.jobStarted(start("newer", { started_at: T0 + 99_000 }));
    await store.jobStarted(start("job-99", { started_at: T0 + 4000 })); // ties the newest group
    let rest: string[] = [];
    let cursor = page1.next_cursor;
    while (cursor) {
      const page = await store.list({ limit: 6, cursor });
      rest = rest.concat(ids(page.jobs));
      cursor = page.next_cursor;
    }
    assert.deepStrictEqual([...ids(page1.jobs), ...rest], expected);
  });

  test("list filters by status, including interrupted", async (store) => {
    await add(store, start("ok", { started_at: T0 + 1 }), end());
    await add(store, start("bad", { started_at: T0 + 2 }), end({ status: "failed", exit_code: 1 }));
    await add(store, start("run1", { started_at: T0 + 3 }));
    await add(store, start("run2", { started_at: T0 + 4 }));
    await add(store, start("lost", { started_at: T0 + 5 }));
    await store.markInterrupted("lost", T0 + 60_000, "server died");

    const by = async (status: ListQuery["status"]) =>
      ids(await allPages(store, { limit: 1, status }).then((pages) => pages.flat()));
    assert.deepStrictEqual(await by("interrupted"), ["lost"]);
    assert.deepStrictEqual(await by("running"), ["run2", "run1"]);
    assert.deepStrictEqual(await by("completed"), ["ok"]);
    assert.deepStrictEqual(await by("failed"), ["bad"]);
    assert.deepStrictEqual(await by("canceled"), []);
  });

  test("list search matches a case-insensitive substring of the command", async (store) => {
    const commands = ["npm TEST", "npm run build", "git status", "echo Test me", "cargo test"];
    for (const [i, command] of commands.entries()) {
      await add(store, start(`j${i}`, { command, started_at: T0 + i }));
    }
    await store.jobEnded("j4", end());
    for (const search of ["test", "TeSt", "TEST"]) {
      assert.deepStrictEqual(ids((await store.list({ limit: 10, search })).jobs), [
        "j4",
        "j3",
        "j0",
      ]);
    }
    assert.deepStrictEqual(ids((await store.list({ limit: 10, search: "n b" })).jobs), ["j1"]);
    assert.deepStrictEqual((await store.list({ limit: 10, search: "zzz" })).jobs, []);
    assert.deepStrictEqual(
      ids((await store.list({ limit: 10, search: "test", status: "running" })).jobs),
      ["j3", "j0"],
    );
    const pages = await allPages(store, { limit: 1, search: "test" });
    assert.deepStrictEqual(pages.map(ids), [["j4"], ["j3"], ["j0"]]);
  });

  test("list search walks past many jobs that do not match", async (store) => {
    const matching = new Set([3, 700, 1190]);
    await Promise.all(
      Array.from(
        { length: 1200 },
        (_, i) =>
          store.jobStarted(start(`j${String(i).padStart(4, "0")}`, {
            command: matching.has(i) ? `make NEEDLE-${i}` : `echo haystack ${i}`,
            started_at: T0 + i,
          })),
      ),
    );
    const pages = await allPages(store, { limit: 2, search: "needle" });
    assert.deepStrictEqual(pages.map(ids), [["j1190", "j0700"], ["j0003"]]);
    const recent = await store.list({ limit: 5, search: "needle", since: T0 + 500 });
    assert.deepStrictEqual(ids(recent.jobs), ["j1190", "j0700"]);
    assert.equal(recent.next_cursor, null);
  });

  test("list since keeps the jobs started at or after it", async (store) => {
    for (let i = 0; i < 6; i++) await store.jobStarted(start(`j${i}`, { started_at: T0 + i * 10 }));
    assert.deepStrictEqual(ids((await store.list({ limit: 10, since: T0 + 20 })).jobs), [
      "j5",
      "j4",
      "j3",
      "j2",
    ]);
    const pages = await allPages(store, { limit: 3, since: T0 + 20 });
    assert.deepStrictEqual(pages.map(ids), [["j5", "j4", "j3"], ["j2"]]);
    assert.deepStrictEqual((await store.list({ limit: 10, since: T0 + 51 })).jobs, []);
  });

  test("list rejects a cursor it did not make with CursorError", async (store) => {
    await store.jobStarted(start("a"));
    for (const cursor of ["not base64 %%%", btoa("no colon"), btoa(":a"), btoa("1.5:a")]) {
      // `async` so that a synchronous throw counts as a rejection too.
      await assert.rejects(async () => await store.list({ limit: 5, cursor }), CursorError);
    }
    // A cursor past every job is simply the end.
    const past = await store.list({ limit: 5, cursor: encodeCursor(T0 - 1, "a") });
    assert.deepStrictEqual(past, { jobs: [], next_cursor: null });
  });

  test("orphans are the running jobs of this node left by another server process", async (store) => {
    const orphan1 = start("orphan1", { server_pid: 100 });
    const orphan2 = start("orphan2", { server_pid: 101, started_at: T0 + 1 });
    await store.jobStarted(orphan1);
    await store.jobStarted(orphan2);
    await store.jobSpawned("orphan2", { pid: 555, pgid: 555 });
    await store.jobStarted(start("mine", { server_pid: 200 }));
    await store.jobStarted(start("other-node", { server_pid: 100, node_id: "node-b" }));
    await add(store, start("finished", { server_pid: 100 }), end());
    await add(store, start("interrupted", { server_pid: 100 }));
    await store.markInterrupted("interrupted", T0 + 10, "server died");

    const found = (await store.orphans("node-a", 200)).sort((a, b) => a.job_id < b.job_id ? -1 : 1);
    assert.deepStrictEqual(found, [
      record(orphan1),
      record(orphan2, { pid: 555, pgid: 555 }),
    ]);
    assert.deepStrictEqual(await store.orphans("node-c", 200), []);
  });

  test("markInterrupted ends only running jobs", async (store) => {
    const lost = start("lost", { started_at: T0 + 10 });
    await store.jobStarted(lost);
    await store.jobSpawned("lost", { pid: 7, pgid: 7 });
    await store.markInterrupted("lost", T0 + 4010, "the server (pid 4242) died");
    assert.deepStrictEqual(await store.get("lost"), {
      ...record(lost, { pid: 7, pgid: 7 }),
      status: "interrupted",
      ended_at: T0 + 4010,
      duration_ms: 4000,
      reason: "the server (pid 4242) died",
    });
    assert.deepStrictEqual(await store.orphans("node-a", 1), []);

    const done = start("done");
    const doneEnd = end();
    await add(store, done, doneEnd);
    await store.markInterrupted("done", T0 + 9999, "too late");
    await store.markInterrupted("lost", T0 + 9999, "twice");
    await store.markInterrupted("ghost", T0 + 9999, "never ran");
    assert.deepStrictEqual(await store.get("done"), record(done, null, doneEnd));
    assert.equal((await store.get("lost"))?.reason, "the server (pid 4242) died");
    assert.equal(await store.get("ghost"), null);
  });

  test("durations are the completed runs of a shape, newest first, at most limit", async (store) => {
    const shape = "npm test";
    let n = 0;
    const run = async (shapeOf: string, e: Partial<JobEnd>) => {
      n++;
      await add(
        store,
        start(`j${n}`, { shape: shapeOf, started_at: T0 + n }),
        end({ ended_at: T0 + 1000 + n, ...e }),
      );
    };
    await run(shape, { duration_ms: 100 });
    await run(shape, { duration_ms: 200.5 });
    await run(shape, { status: "failed", exit_code: 1, duration_ms: 999 });
    await run("make", { duration_ms: 5 });
    await run(shape, { duration_ms: 300 });
    await store.jobStarted(start("running", { shape }));
    await store.jobStarted(start("lost", { shape }));
    await store.markInterrupted("lost", T0 + 5000, "server died");

    assert.deepStrictEqual(await store.durations(shape, 10), [300, 200.5, 100]);
    assert.deepStrictEqual(await store.durations(shape, 2), [300, 200.5]);
    assert.deepStrictEqual(await store.durations("make", 10), [5]);
    assert.deepStrictEqual(await store.durations("unknown", 10), []);
    assert.deepStrictEqual(await store.durations(shape, 0), []);
  });

  test("stats counts jobs by status and times the most frequent shapes", async (store) => {
    let n = 0;
    const run = async (shape: string, e: Partial<JobEnd> = {}) => {
      n++;
      await add(
        store,
        start(`j${n}`, { shape, started_at: T0 + n }),
        end({ ended_at: T0 + 1000 + n, ...e }),
      );
    };
    for (const ms of [30, 10, 20]) await run("make", { duration_ms: ms });
    // "npm test" and "ls" tie at 2: the name decides, as ORDER BY count DESC, shape does.
    for (const ms of [100, 300]) await run("npm test", { duration_ms: ms });
    for (const ms of [1, 2]) await run("ls", { duration_ms: ms });
    await run("git status", { duration_ms: 7 });
    await run("git status", { status: "failed", exit_code: 1 });
    await store.jobStarted(start("running", { shape: "sleep" }));
    await store.jobStarted(start("lost", { shape: "sleep" }));
    await store.markInterrupted("lost", T0 + 10, "server died");

    const make = { shape: "make", count: 3, p50_ms: 20, p95_ms: 30 };
    const ls = { shape: "ls", count: 2, p50_ms: 1, p95_ms: 2 };
    const npm = { shape: "npm test", count: 2, p50_ms: 100, p95_ms: 300 };
    const git = { shape: "git status", count: 1, p50_ms: 7, p95_ms: 7 };
    const byStatus = { completed: 8, failed: 1, running: 1, interrupted: 1 };
    assert.deepStrictEqual(await store.stats({ shapes: 2 }), {
      by_status: byStatus,
      by_shape: [make, ls],
    });
    assert.deepStrictEqual(await store.stats({ shapes: 10 }), {
      by_status: byStatus,
      by_shape: [make, ls, npm, git],
    });
    assert.deepStrictEqual(await store.stats({ shapes: 0 }), { by_status: byStatus, by_shape: [] });
  });

  test("prune deletes the finished jobs that ended before the cut-off", async (store) => {
    const cut = T0 + 300;
    await add(store, start("old-ok", { started_at: T0 }), end({ ended_at: T0 + 100 }));
    await add(
      store,
      start("old-failed", { started_at: T0 + 1 }),
      end({ status: "failed", exit_code: 1, ended_at: T0 + 200 }),
    );
    await add(store, start("old-lost", { started_at: T0 + 2 }));
    await store.markInterrupted("old-lost", T0 + 50, "server died");
    await add(store, start("at-cut", { started_at: T0 + 3 }), end({ ended_at: cut }));
    await add(store, start("new-ok", { started_at: T0 + 4 }), end({ ended_at: T0 + 400 }));
    await add(store, start("old-running", { started_at: T0 - 10_000 }));

    assert.equal(await store.prune(cut), 3);
    for (const id of ["old-ok", "old-failed", "old-lost"]) assert.equal(await store.get(id), null);
    assert.deepStrictEqual(ids((await store.list({ limit: 10 })).jobs), [
      "new-ok",
      "at-cut",
      "old-running",
    ]);
    assert.deepStrictEqual(ids((await store.list({ limit: 10, status: "failed" })).jobs), []);
    const stats = await store.stats({ shapes: 5 });
    assert.deepStrictEqual(stats.by_status, { completed: 2, running: 1 });
    assert.deepStrictEqual(stats.by_shape.map(({ shape, count }) => ({ shape, count })), [
      { shape: "echo", count: 2 },
    ]);
    assert.equal(await store.prune(cut), 0);
    assert.equal(await store.prune(T0 + 1_000_000), 2);
    assert.deepStrictEqual(ids((await store.list({ limit: 10 })).jobs), ["old-running"]);
  });

  test("recordMetrics adds up runs, statuses and times per shape; metrics lists most runs first", async (store) => {
    const sample = (shape: string, status: string, duration_ms: number, ended_at: number) =>
      store.recordMetrics({ shape, status, duration_ms, ended_at });
    assert.deepStrictEqual(await store.metrics(10), []);
    // Fractional durations: both backends add them up in doubles, in the order recorded.
    await sample("npm test", "completed", 0.1, T0 + 10);
    await sample("npm test", "completed", 0.2, T0 + 30);
    await sample("npm test", "failed", 4000.5, T0 + 20); // ended earlier: last_at stays T0 + 30
    await sample("make", "timed_out", 30_000, T0 + 5);
    await sample("make", "completed", 12, T0 + 6);
    await sample("", "error", 0, T0 + 7); // a command with no shape still counts
    // Shapes tied on runs come in byte order ("Z" < "b" < "é"), as stats' shapes do.
    for (const shape of ["é x", "b:c", "Zed"]) await sample(shape, "killed", 1, T0 + 1);

    const npm = {
      shape: "npm test",
      runs: 3,
      by_status: { completed: 2, failed: 1 },
      total_ms: 0.1 + 0.2 + 4000.5,
      max_ms: 4000.5,
      last_at: T0 + 30,
    };
    const make = {
      shape: "make",
      runs: 2,
      by_status: { timed_out: 1, completed: 1 },
      total_ms: 30_012,
      max_ms: 30_000,
      last_at: T0 + 6,
    };
    const one = (shape: string, status: string, ms: number, at: number) => ({
      shape,
      runs: 1,
      by_status: { [status]: 1 },
      total_ms: ms,
      max_ms: ms,
      last_at: at,
    });
    const all = [
      npm,
      make,
      one("", "error", 0, T0 + 7),
      one("Zed", "killed", 1, T0 + 1),
      one("b:c", "killed", 1, T0 + 1),
      one("é x", "killed", 1, T0 + 1),
    ];
    assert.deepStrictEqual(await store.metrics(100), all);
    for (const limit of [1, 2, 3, 4, 5]) {
      assert.deepStrictEqual(await store.metrics(limit), all.slice(0, limit), `limit ${limit}`);
    }
    assert.deepStrictEqual(await store.metrics(0), []);
  });

  test("metrics are kept apart from the job records: prune leaves them", async (store) => {
    await add(store, start("old", { shape: "make" }), end({ ended_at: T0 + 10 }));
    await store.recordMetrics({
      shape: "make",
      status: "completed",
      duration_ms: 10,
      ended_at: T0,
    });
    // Job records alone add nothing to the metrics: only recordMetrics does.
    assert.deepStrictEqual((await store.metrics(5)).map((m) => [m.shape, m.runs]), [["make", 1]]);
    assert.equal(await store.prune(T0 + 1_000_000), 1);
    assert.equal(await store.get("old"), null);
    assert.deepStrictEqual(await store.metrics(5), [{
      shape: "make",
      runs: 1,
      by_status: { completed: 1 },
      total_ms: 10,
      max_ms: 10,
      last_at: T0,
    }]);
    assert.deepStrictEqual((await store.stats({ shapes: 5 })).by_shape, []);
  });

  test("recordMetrics rejects a sample it could not add up, and records nothing", async (store) => {
    const good = { shape: "make", status: "completed", duration_ms: 1, ended_at: T0 };
    for (
      const bad of [
        { ...good, duration_ms: NaN },
        { ...good, duration_ms: Infinity },
        { ...good, duration_ms: -1 },
        { ...good, ended_at: NaN },
        { ...good, status: "" },
      ]
    ) {
      await assert.rejects(
        async () => await store.recordMetrics(bad),
        (error: Error) =>
          error instanceof TypeError && /^Cannot record metrics: /.test(error.message),
        JSON.stringify(bad),
      );
    }
    assert.deepStrictEqual(await store.metrics(5), []);
  });

  test("recordTemplateOutcome counts uses and successes per template; templateStats lists them by name", async (store) => {
    const outcome = (template: string, success: boolean, at: number) =>
      store.recordTemplateOutcome({ template, success, at });
    assert.deepStrictEqual(await store.templateStats(), []);
    await outcome("very_concise", true, T0 + 10);
    await outcome("very_concise", false, T0 + 30);
    await outcome("very_concise", true, T0 + 20); // ended earlier: last_used_at stays T0 + 30
    await outcome("concise", false, T0 + 5);
    await outcome("concise", false, T0 + 6);
    // Any name round-trips, colons included; the order is byte order ("Z" < "a" < "é").
    for (const template of ["é", "a:b:c", "Zed"]) await outcome(template, true, T0 + 1);
    assert.deepStrictEqual(await store.templateStats(), [
      { template: "Zed", uses: 1, successes: 1, last_used_at: T0 + 1 },
      { template: "a:b:c", uses: 1, successes: 1, last_used_at: T0 + 1 },
      { template: "concise", uses: 2, successes: 0, last_used_at: T0 + 6 },
      { template: "very_concise", uses: 3, successes: 2, last_used_at: T0 + 30 },
      { template: "é", uses: 1, successes: 1, last_used_at: T0 + 1 },
    ]);
  });

  test("template statistics are kept apart from the job records: prune leaves them", async (store) => {
    await add(store, start("retry", { command: "claude -p x" }), end({ ended_at: T0 + 10 }));
    await store.recordTemplateOutcome({ template: "concise", success: true, at: T0 + 10 });
    await store.recordMetrics({
      shape: "claude",
      status: "completed",
      duration_ms: 1,
      ended_at: T0,
    });
    assert.equal(await store.prune(T0 + 1_000_000), 1);
    assert.equal(await store.get("retry"), null);
    assert.deepStrictEqual(await store.templateStats(), [
      { template: "concise", uses: 1, successes: 1, last_used_at: T0 + 10 },
    ]);
    // The two kinds of statistics do not mix.
    assert.deepStrictEqual((await store.metrics(5)).map((m) => m.shape), ["claude"]);
  });

  test("recordTemplateOutcome rejects an outcome it could not count, and records nothing", async (store) => {
    const good = { template: "concise", success: true, at: T0 };
    for (
      const bad of [
        { ...good, template: "" },
        { ...good, at: NaN },
        { ...good, at: -1 },
        { ...good, success: "yes" as unknown as boolean },
      ]
    ) {
      await assert.rejects(
        async () => await store.recordTemplateOutcome(bad),
        (error: Error) =>
          error instanceof TypeError && /^Cannot record a template outcome: /.test(error.message),
        JSON.stringify(bad),
      );
    }
    assert.deepStrictEqual(await store.templateStats(), []);
  });

  test("a retry attempt's parent and attempt round-trip; a start without them is a first run", async (store) => {
    const parent = start("p");
    const child = start("p.attempt-3", { parent_job_id: "p", attempt: 3, started_at: T0 + 1 });
    const explicit = start("q", { parent_job_id: null, attempt: 1, started_at: T0 + 2 });
    // A caller from before retry links passes neither field.
    assert.equal("parent_job_id" in parent || "attempt" in parent, false);
    for (const s of [parent, child, explicit]) await store.jobStarted(s);
    assert.deepStrictEqual(await store.get("p"), record(parent));
    assert.deepStrictEqual(await store.get("p.attempt-3"), record(child));
    assert.deepStrictEqual(await store.get("q"), record(explicit));

    // Spawned, ended or interrupted, a record keeps its links.
    const childEnd = end({ status: "failed", exit_code: 1 });
    await store.jobSpawned("p.attempt-3", { pid: 9, pgid: 9 });
    await store.jobEnded("p.attempt-3", childEnd);
    const lost = start("p.attempt-4", { parent_job_id: "p", attempt: 4, started_at: T0 + 3 });
    await store.jobStarted(lost);
    await store.markInterrupted("p.attempt-4", T0 + 10, "server died");
    const childRecord = record(child, { pid: 9, pgid: 9 }, childEnd);
    assert.deepStrictEqual(await store.get("p.attempt-3"), childRecord);
    assert.deepStrictEqual(
      [(await store.get("p.attempt-4"))?.parent_job_id, (await store.get("p.attempt-4"))?.attempt],
      ["p", 4],
    );
    // Listed (by default every record, attempts included) with both fields.
    const page = await store.list({ limit: 10 });
    assert.deepStrictEqual(ids(page.jobs), ["p.attempt-4", "q", "p.attempt-3", "p"]);
    assert.deepStrictEqual(page.jobs[2], listed(childRecord));
    assert.deepStrictEqual(page.jobs[3], listed(record(parent)));
    assert.deepStrictEqual(
      (await store.orphans("node-a", 1)).map((r) => [r.job_id, r.parent_job_id, r.attempt]),
      [["p", null, 1], ["q", null, 1]],
    );
  });

  test("jobStarted rejects retry links it could not store, and records nothing", async (store) => {
    for (
      const [links, message] of [
        [{ attempt: 0 }, /attempt must be a whole number from 1, got 0$/],
        [{ attempt: 1.5 }, /attempt must be a whole number from 1, got 1\.5$/],
        [{ attempt: NaN }, /attempt must be a whole number from 1, got NaN$/],
        [{ parent_job_id: "" }, /parent_job_id must be a non-empty string or null, got ""$/],
        [{ parent_job_id: "bad" }, /a job cannot be its own parent$/],
      ] as [Partial<JobStart>, RegExp][]
    ) {
      await assert.rejects(
        async () => await store.jobStarted(start("bad", links)),
        (error: Error) => {
          assert.ok(error instanceof TypeError, String(error));
          assert.match(error.message, /^Cannot record job "bad": /);
          assert.match(error.message, message);
          return true;
        },
        JSON.stringify(links),
      );
    }
    assert.equal(await store.get("bad"), null);
    assert.deepStrictEqual((await store.list({ limit: 5 })).jobs, []);
  });

  test("list with parent_job_id: that job's attempts, oldest attempt first, paged; filters combine", async (store) => {
    await add(store, start("p", { started_at: T0 }), end({ status: "failed", exit_code: 1 }));
    // Attempts 2..12 started in a scrambled order (start times do not follow attempts), with
    // ids whose byte order is not the attempts' ("p.attempt-10" < "p.attempt-2").
    const attempts = Array.from({ length: 11 }, (_, i) => i + 2);
    const startedAt = new Map<string, number>();
    for (const [i, n] of [...attempts].reverse().entries()) {
      startedAt.set(`p.attempt-${n}`, T0 + 100 + ((i * 5) % 11));
      await add(
        store,
        start(`p.attempt-${n}`, {
          parent_job_id: "p",
          attempt: n,
          started_at: startedAt.get(`p.attempt-${n}`),
          command: n % 3 === 0 ? `claude -p SHORTER ${n}` : `claude -p ${n}`,
        }),
        n === 12 ? undefined : end({
          status: n % 2 === 0 ? "failed" : "completed",
          exit_code: n % 2 === 0 ? 1 : 0,
          ended_at: T0 + 1000 + n,
        }),
      );
    }
    // Two records of one attempt: the job id orders them.
    await add(store, start("p.attempt-7b", { parent_job_id: "p", attempt: 7, started_at: T0 + 1 }));
    await add(store, start("q.attempt-2", { parent_job_id: "q", attempt: 2, started_at: T0 + 5 }));
    await add(store, start("lone", { started_at: T0 + 6 }));

    const expected = attempts.flatMap((n) =>
      n === 7 ? ["p.attempt-7", "p.attempt-7b"] : [`p.attempt-${n}`]
    );
    assert.deepStrictEqual(
      ids((await store.list({ limit: 50, parent_job_id: "p" })).jobs),
      expected,
    );
    for (const limit of [1, 3, 5, 12]) {
      const pages = await allPages(store, { limit, parent_job_id: "p" });
      assert.deepStrictEqual(pages.flat().map((job) => job.job_id), expected, `limit ${limit}`);
      assert.ok(pages.every((page) => page.length === limit || page === pages.at(-1)));
    }
    const exact = await store.list({ limit: expected.length, parent_job_id: "p" });
    assert.equal(exact.next_cursor, null, "no next page when the page holds the last attempt");

    // The other filters narrow the attempts and keep their order, a page at a time.
    const by = async (query: Omit<ListQuery, "limit" | "parent_job_id">) =>
      (await allPages(store, { limit: 2, parent_job_id: "p", ...query })).flat().map((j) =>
        j.job_id
      );
    assert.deepStrictEqual(
      await by({ status: "failed" }),
      [2, 4, 6, 8, 10].map((n) => `p.attempt-${n}`),
    );
    assert.deepStrictEqual(await by({ status: "running" }), ["p.attempt-7b", "p.attempt-12"]);
    assert.deepStrictEqual(
      await by({ search: "shorter" }),
      [3, 6, 9, 12].map((n) => `p.attempt-${n}`),
    );
    assert.deepStrictEqual(
      await by({ search: "shorter", status: "completed" }),
      ["p.attempt-3", "p.attempt-9"],
    );
    const late = expected.filter((id) => (startedAt.get(id) ?? T0) >= T0 + 106);
    assert.equal(late.length, 5);
    assert.deepStrictEqual(await by({ since: T0 + 106 }), late);

    assert.deepStrictEqual(ids((await store.list({ limit: 5, parent_job_id: "q" })).jobs), [
      "q.attempt-2",
    ]);
    assert.deepStrictEqual(await store.list({ limit: 5, parent_job_id: "lone" }), {
      jobs: [],
      next_cursor: null,
    });
    assert.deepStrictEqual(await store.list({ limit: 5, parent_job_id: "nobody" }), {
      jobs: [],
      next_cursor: null,
    });
    // Without the filter, every record, newest first, as before.
    const newest = [...startedAt].sort(([, a], [, b]) => b - a).map(([id]) => id);
    const everything = (await store.list({ limit: 100 })).jobs;
    assert.equal(everything.length, expected.length + 3);
    assert.deepStrictEqual(ids(everything).slice(0, 3), newest.slice(0, 3));
  });

  test("retry attempts are replaced and pruned like any record, each by its own end time", async (store) => {
    await add(store, start("p", { started_at: T0 }), end({ ended_at: T0 + 100 }));
    const child = (n: number, ended: number) =>
      add(
        store,
        start(`p.attempt-${n}`, { parent_job_id: "p", attempt: n, started_at: T0 + n }),
        end({ ended_at: ended }),
      );
    await child(2, T0 + 50);
    await child(3, T0 + 500);
    await add(store, start("p.attempt-4", { parent_job_id: "p", attempt: 4, started_at: T0 + 4 }));
    const under = async (parent: string) =>
      ids((await store.list({ limit: 10, parent_job_id: parent })).jobs);
    assert.deepStrictEqual(await under("p"), ["p.attempt-2", "p.attempt-3", "p.attempt-4"]);

    // Replaced by a record of another parent: it leaves p's attempts.
    await store.jobStarted(
      start("p.attempt-4", { parent_job_id: "r", attempt: 2, started_at: T0 + 9 }),
    );
    assert.deepStrictEqual(await under("p"), ["p.attempt-2", "p.attempt-3"]);
    assert.deepStrictEqual(await under("r"), ["p.attempt-4"]);
    // ...or by one with no parent at all.
    await store.jobStarted(start("p.attempt-4", { started_at: T0 + 9 }));
    assert.deepStrictEqual(await under("r"), []);

    // The cut-off falls between the parent's end and its first attempt's, and before the second's:
    // the first attempt goes with its parent, the second stays, listed under the parent it had.
    assert.equal(await store.prune(T0 + 200), 2);
    assert.equal(await store.get("p"), null);
    assert.equal(await store.get("p.attempt-2"), null);
    assert.deepStrictEqual(await under("p"), ["p.attempt-3"]);
    assert.equal((await store.get("p.attempt-3"))?.parent_job_id, "p");
    assert.equal(await store.prune(T0 + 1000), 1);
    assert.deepStrictEqual(await under("p"), []);
    assert.deepStrictEqual(ids((await store.list({ limit: 10 })).jobs), ["p.attempt-4"]);
  });

  test(
    "sessions are live until they expire; heartbeat extends them; closed ones are gone",
    async (store, clock) => {
      await store.sessionOpened("s1", "node-a", 1000);
      await store.sessionOpened("s2", "node-b", 1000);
      await store.sessionOpened("s3", "node-a", 5000);
      assert.equal(await store.liveSessions(), 3);

      clock.now = T0 + 800;
      await store.heartbeat(["s1", "never-opened"], 1000); // s1 now expires at T0 + 1800
      assert.equal(await store.liveSessions(), 3);

      clock.now = T0 + 1000; // s2 expires at this very moment: still live
      assert.equal(await store.liveSessions(), 3);
      clock.now = T0 + 1001;
      assert.equal(await store.liveSessions(), 2);
      await store.heartbeat([], 1000);
      assert.equal(await store.liveSessions(), 2);

      await store.sessionClosed("s3");
      assert.equal(await store.liveSessions(), 1);
      clock.now = T0 + 1801;
      assert.equal(await store.liveSessions(), 0);
    },
  );
}

contract(sqlite);
contract(redis);

// ---- SQLite only -------------------------------------------------------------------------------

/** Takes a database back to schema version 3: before retry links (migration 4). */
function downgradeToVersion3(db: DatabaseSync): void {
  db.exec(
    "DROP INDEX jobs_by_parent; ALTER TABLE jobs DROP COLUMN parent_job_id; " +
      "ALTER TABLE jobs DROP COLUMN attempt; PRAGMA user_version = 3;",
  );
}

Deno.test("store sqlite: a database from before metrics is migrated forward, its records kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-store-" });
  const path = `${dir}/store.db`;
  try {
    {
      await using store = new SqliteStore(path);
      await add(store, start("a"), end());
    }
    // Back to schema version 1: as a cc-executor from before record_metrics left it.
    const db = new DatabaseSync(path);
    downgradeToVersion3(db);
    db.exec(
      "DROP TABLE shape_metrics; DROP TABLE shape_metrics_status; DROP TABLE template_stats; " +
        "PRAGMA user_version = 1;",
    );
    db.close();
    {
      await using store = new SqliteStore(path);
      assert.deepStrictEqual(await store.get("a"), record(start("a"), null, end()));
      assert.deepStrictEqual(await store.metrics(5), []);
      await store.recordMetrics({
        shape: "echo",
        status: "completed",
        duration_ms: 2,
        ended_at: T0,
      });
      assert.equal((await store.metrics(5))[0]?.runs, 1);
    }
    const reopened = new DatabaseSync(path);
    const version = reopened.prepare("PRAGMA user_version").get() as { user_version: number };
    reopened.exec("PRAGMA user_version = 99");
    reopened.close();
    assert.equal(version.user_version, 4);
    assert.throws(
      () => new SqliteStore(path),
      /has schema version 99, newer than this cc-executor knows \(4\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store sqlite: a database from before template statistics gains them, its metrics kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-store-" });
  const path = `${dir}/store.db`;
  try {
    {
      await using store = new SqliteStore(path);
      await add(store, start("a"), end());
      await store.recordMetrics({
        shape: "echo",
        status: "completed",
        duration_ms: 2,
        ended_at: T0,
      });
    }
    // Back to schema version 2: as a cc-executor from before prompt templates left it.
    const db = new DatabaseSync(path);
    downgradeToVersion3(db);
    db.exec("DROP TABLE template_stats; PRAGMA user_version = 2;");
    db.close();
    {
      await using store = new SqliteStore(path);
      assert.deepStrictEqual(await store.get("a"), record(start("a"), null, end()));
      assert.equal((await store.metrics(5))[0]?.runs, 1);
      assert.deepStrictEqual(await store.templateStats(), []);
      await store.recordTemplateOutcome({ template: "concise", success: false, at: T0 });
      assert.deepStrictEqual(await store.templateStats(), [
        { template: "concise", uses: 1, successes: 0, last_used_at: T0 },
      ]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store sqlite: a version-3 database gains retry links; its records become first runs of no parent", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-store-" });
  const path = `${dir}/store.db`;
  try {
    {
      await using store = new SqliteStore(path);
      await add(store, start("old-done"), end());
      await store.jobStarted(start("old-running", { started_at: T0 + 1 }));
      await store.recordTemplateOutcome({ template: "concise", success: true, at: T0 });
    }
    const db = new DatabaseSync(path);
    downgradeToVersion3(db);
    // A row as a version-3 server wrote it, with the columns it knew.
    db.exec(
      `INSERT INTO jobs (job_id, command, shape, node_id, server_pid, started_at, timeout_source,
         status) VALUES ('raw', 'ls', 'ls', 'node-a', 1, ${T0 + 2}, 'none', 'running')`,
    );
    db.close();
    {
      await using store = new SqliteStore(path);
      assert.deepStrictEqual(await store.get("old-done"), record(start("old-done"), null, end()));
      const raw = await store.get("raw");
      assert.deepStrictEqual([raw?.parent_job_id, raw?.attempt], [null, 1]);
      assert.deepStrictEqual(
        (await store.list({ limit: 10 })).jobs.map((j) => [j.job_id, j.parent_job_id, j.attempt]),
        [["raw", null, 1], ["old-running", null, 1], ["old-done", null, 1]],
      );
      assert.deepStrictEqual((await store.templateStats()).map((t) => t.uses), [1]);
      const child = start("old-done.attempt-2", {
        parent_job_id: "old-done",
        attempt: 2,
        started_at: T0 + 3,
      });
      await store.jobStarted(child);
      assert.deepStrictEqual(await store.get(child.job_id), record(child));
      assert.deepStrictEqual(
        ids((await store.list({ limit: 5, parent_job_id: "old-done" })).jobs),
        [child.job_id],
      );
    }
    const reopened = new DatabaseSync(path);
    try {
      const version = reopened.prepare("PRAGMA user_version").get() as { user_version: number };
      assert.equal(version.user_version, 4);
      // The parent filter is an index lookup, not a scan of every job.
      const plan = reopened.prepare(
        `EXPLAIN QUERY PLAN SELECT job_id FROM jobs WHERE parent_job_id = ?
         ORDER BY attempt, job_id LIMIT 5`,
      ).all("old-done") as { detail: string }[];
      assert.match(
        plan.map((row) => row.detail).join("\n"),
        /USING (COVERING )?INDEX jobs_by_parent/,
      );
    } finally {
      reopened.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- no store (history off) --------------------------------------------------------------------

Deno.test("store none: template outcomes cost nothing; reading the statistics says history is off", async () => {
  await using store: Store = new NoStore();
  await store.recordTemplateOutcome({ template: "concise", success: true, at: T0 });
  await assert.rejects(store.templateStats(), HistoryOffError);
  await assert.rejects(store.metrics(5), HistoryOffError);
});

// ---- Redis only --------------------------------------------------------------------------------

/** A logger that keeps its lines. */
function capture(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger("debug", { write: (line) => lines.push(line) }), lines };
}

const redisTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name: `store redis: ${name}`, ignore: !HAS_REDIS, fn });

redisTest("an outage queues writes, reads fail fast, and the queue replays in order", async () => {
  await using server = await startRedis();
  const { logger, lines } = capture();
  await using store = await RedisStore.open(server.url, { logger });
  assert.deepStrictEqual(store.health(), {
    backend: "redis",
    status: "ok",
    pending_writes: 0,
    dropped_writes: 0,
    location: server.url,
  });

  await server.stop();
  await waitUntil(() => store.health().status === "degraded", "the store to see the outage");
  // Nothing is answering: each of these would hang if it waited for Redis.
  const a = start("a");
  const aEnd = end({ hooks: { ok: true } });
  await store.jobStarted(a);
  await store.jobSpawned("a", { pid: 10, pgid: 10 });
  await store.jobEnded("a", aEnd);
  const b = start("b", { started_at: T0 + 1 });
  await store.jobStarted(b);
  await store.markInterrupted("b", T0 + 5001, "server died");
  await store.sessionOpened("s1", "node-a", 3_600_000);
  assert.deepStrictEqual(store.health(), {
    backend: "redis",
    status: "degraded",
    pending_writes: 6,
    dropped_writes: 0,
    location: server.url,
  });
  const unreachable = (error: unknown) => {
    assert.ok(error instanceof RedisUnavailableError, String(error));
    assert.match(error.message, new RegExp(`^Redis at ${server.url} is unreachable: .+`));
    return true;
  };
  await assert.rejects(store.get("a"), unreachable);
  await assert.rejects(store.list({ limit: 5 }), unreachable);
  await assert.rejects(store.durations("echo", 5), unreachable);
  await assert.rejects(store.stats({ shapes: 5 }), unreachable);
  await assert.rejects(store.orphans("node-a", 1), unreachable);
  await assert.rejects(store.liveSessions(), unreachable);

  // Let node-redis fail a few reconnect attempts: the outage is still logged once.
  await new Promise((resolve) => setTimeout(resolve, 300));
  await server.restart();
  await waitUntil(
    () => store.health().status === "ok" && store.health().pending_writes === 0,
    "the queued writes to land",
  );
  assert.deepStrictEqual(await store.get("a"), record(a, { pid: 10, pgid: 10 }, aEnd));
  assert.deepStrictEqual(await store.get("b"), {
    ...record(b),
    status: "interrupted",
    ended_at: T0 + 5001,
    duration_ms: 5000,
    reason: "server died",
  });
  assert.deepStrictEqual(await store.durations("echo", 5), [1500]);
  assert.equal(await store.liveSessions(), 1);
  assert.equal(store.health().dropped_writes, 0);

  const warnings = lines.filter((line) => line.includes(" WARN "));
  assert.equal(warnings.length, 1, warnings.join(""));
  assert.match(warnings[0]!, new RegExp(`Redis at ${server.url} is unreachable`));
  assert.equal(lines.filter((line) => / INFO .* is back/.test(line)).length, 1, lines.join(""));
});

redisTest("writes cut off in flight are queued again in their place and replayed", async () => {
  await using server = await startRedis();
  const raw = createClient({ url: server.url });
  await raw.connect();
  try {
    await using store = await RedisStore.open(server.url);
    // Hold every write at the server, so these three are sent and unanswered...
    await raw.sendCommand(["CLIENT", "PAUSE", "10000", "WRITE"]);
    const s = start("a");
    const e = end();
    const writes = Promise.all([
      store.jobStarted(s),
      store.jobSpawned("a", { pid: 9, pgid: 9 }),
      store.jobEnded("a", e),
    ]);
    await waitUntil(
      async () => /blocked_clients:1\b/.test(await raw.info("clients")),
      "the first write to be held by the pause",
    );
    // ...then cut the store's connection under them.
    await raw.sendCommand(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    await raw.sendCommand(["CLIENT", "UNPAUSE"]);
    await writes;
    await waitUntil(
      () => store.health().status === "ok" && store.health().pending_writes === 0,
      "the writes to be replayed",
    );
    assert.deepStrictEqual(await store.get("a"), record(s, { pid: 9, pgid: 9 }, e));
    assert.deepStrictEqual(await store.durations("echo", 10), [1500]);
  } finally {
    raw.destroy();
  }
});

redisTest("a Redis that stops answering does not hold up writers or readers", async () => {
  await using server = await startRedis();
  const raw = createClient({ url: server.url });
  await raw.connect();
  try {
    const { logger, lines } = capture();
    await using store = await RedisStore.open(server.url, { logger, replyTimeoutMs: 200 });
    // Connected, but no write is answered until UNPAUSE.
    await raw.sendCommand(["CLIENT", "PAUSE", "60000", "WRITE"]);
    const s = start("a");
    const e = end();
    await store.jobStarted(s); // resolves once the deadline passes
    assert.equal(store.health().status, "degraded");
    await store.jobSpawned("a", { pid: 9, pgid: 9 }); // queued at once
    await store.jobEnded("a", e);
    assert.ok(store.health().pending_writes >= 2, JSON.stringify(store.health()));
    await assert.rejects(store.get("a"), (error: Error) => {
      assert.ok(error instanceof RedisUnavailableError, String(error));
      assert.match(error.message, /^Redis at redis:\/\/127\.0\.0\.1:\d+ is unreachable: /);
      return true;
    });
    assert.ok(
      lines.some((line) => / WARN .*has not answered for 200 ms/.test(line)),
      lines.join(""),
    );

    await raw.sendCommand(["CLIENT", "UNPAUSE"]);
    await waitUntil(
      () => store.health().status === "ok" && store.health().pending_writes === 0,
      "the writes to land",
    );
    assert.deepStrictEqual(await store.get("a"), record(s, { pid: 9, pgid: 9 }, e));
  } finally {
    raw.destroy();
  }
});

redisTest(
  "a connection silent past the deadlines is replaced; its writes land once, in order",
  async () => {
    await using server = await startRedis();
    const raw = createClient({ url: server.url });
    await raw.connect();
    try {
      const { logger, lines } = capture();
      await using store = await RedisStore.open(server.url, { logger, replyTimeoutMs: 150 });
      // Writes are held for 2.5 s: long past the 450 ms after which the socket is given up.
      await raw.sendCommand(["CLIENT", "PAUSE", "2500", "WRITE"]);
      const s = start("a");
      const e = end();
      await Promise.all([
        store.jobStarted(s),
        store.jobSpawned("a", { pid: 9, pgid: 9 }),
        store.jobEnded("a", e),
      ]);
      await waitUntil(
        () => lines.some((line) => / WARN .*Redis at .* is unreachable/.test(line)),
        "the silent connection to be given up",
      );
      await waitUntil(
        () => store.health().status === "ok" && store.health().pending_writes === 0,
        "the writes to land once the pause ends",
      );
      assert.deepStrictEqual(await store.get("a"), record(s, { pid: 9, pgid: 9 }, e));
      assert.deepStrictEqual(await store.durations("echo", 10), [1500]);
      assert.deepStrictEqual((await store.stats({ shapes: 5 })).by_shape[0]?.count, 1);
    } finally {
      raw.destroy();
    }
  },
);

redisTest("past maxPendingWrites the oldest queued writes are dropped, each logged", async () => {
  await using server = await startRedis();
  const { logger, lines } = capture();
  await using store = await RedisStore.open(server.url, { logger, maxPendingWrites: 3 });
  await server.stop();
  await waitUntil(() => store.health().status === "degraded", "the store to see the outage");
  for (let i = 1; i <= 5; i++) await store.jobStarted(start(`j${i}`, { started_at: T0 + i }));
  assert.equal(store.health().pending_writes, 3);
  assert.equal(store.health().dropped_writes, 2);
  const drops = lines.filter((line) => line.includes(" WARN ") && line.includes("dropped"));
  assert.equal(drops.length, 2, lines.join(""));
  assert.match(drops[0]!, /jobStarted j1\b/);
  assert.match(drops[1]!, /jobStarted j2\b/);

  await server.restart();
  await waitUntil(() => store.health().pending_writes === 0, "the queued writes to land");
  assert.deepStrictEqual(ids((await store.list({ limit: 10 })).jobs), ["j5", "j4", "j3"]);
  assert.equal(store.health().dropped_writes, 2);
});

redisTest("dispose waits briefly for Redis to write what is queued", async () => {
  await using server = await startRedis();
  {
    await using store = await RedisStore.open(server.url);
    await server.stop();
    await waitUntil(() => store.health().status === "degraded", "the store to see the outage");
    await store.jobStarted(start("queued"));
    // Let the reconnect delay grow (to ~0.4-0.8 s), so the store is still waiting to reconnect
    // when it is disposed, well within the 2 s it waits.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await server.restart();
  } // disposed here, before it has reconnected
  await using reader = await RedisStore.open(server.url);
  assert.deepStrictEqual(await reader.get("queued"), record(start("queued")));
});

redisTest(
  "metrics writes wait out an outage in order, and survive a restart in the outbox",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "cc-executor-store-" });
    try {
      await using server = await startRedis();
      const outboxPath = `${dir}/redis-outbox.db`;
      const sample = { shape: "make", status: "completed", duration_ms: 5, ended_at: T0 };
      {
        await using store = await RedisStore.open(server.url, {
          outboxPath,
          connectTimeoutMs: 500,
        });
        await server.stop();
        await waitUntil(() => store.health().status === "degraded", "the store to see the outage");
        await store.recordMetrics(sample); // resolves at once: queued
        await store.recordMetrics({
          ...sample,
          status: "failed",
          duration_ms: 7,
          ended_at: T0 + 1,
        });
        assert.equal(store.health().pending_writes, 2);
        await assert.rejects(store.metrics(5), RedisUnavailableError);
      } // disposed with Redis still down: the writes stay in the outbox
      await server.restart();
      await using next = await RedisStore.open(server.url, { outboxPath });
      await waitUntil(() => next.health().pending_writes === 0, "the outbox to be replayed");
      assert.deepStrictEqual(await next.metrics(5), [{
        shape: "make",
        runs: 2,
        by_status: { completed: 1, failed: 1 },
        total_ms: 12,
        max_ms: 7,
        last_at: T0 + 1,
      }]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

redisTest(
  "template outcomes wait out an outage in order, and survive a restart in the outbox",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "cc-executor-store-" });
    try {
      await using server = await startRedis();
      const outboxPath = `${dir}/redis-outbox.db`;
      {
        await using store = await RedisStore.open(server.url, {
          outboxPath,
          connectTimeoutMs: 500,
        });
        await server.stop();
        await waitUntil(() => store.health().status === "degraded", "the store to see the outage");
        // Each resolves at once: queued.
        await store.recordTemplateOutcome({ template: "concise", success: false, at: T0 });
        await store.recordTemplateOutcome({ template: "concise", success: true, at: T0 + 2 });
        await store.recordTemplateOutcome({ template: "outline_only", success: true, at: T0 + 1 });
        assert.equal(store.health().pending_writes, 3);
        await assert.rejects(store.templateStats(), RedisUnavailableError);
      } // disposed with Redis still down: the writes stay in the outbox
      await server.restart();
      await using next = await RedisStore.open(server.url, { outboxPath });
      await waitUntil(() => next.health().pending_writes === 0, "the outbox to be replayed");
      assert.deepStrictEqual(await next.templateStats(), [
        { template: "concise", uses: 2, successes: 1, last_used_at: T0 + 2 },
        { template: "outline_only", uses: 1, successes: 1, last_used_at: T0 + 1 },
      ]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

redisTest(
  "a retry attempt's writes wait out an outage, survive a restart in the outbox, keep their links",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "cc-executor-store-" });
    try {
      await using server = await startRedis();
      const outboxPath = `${dir}/redis-outbox.db`;
      const parent = start("p");
      const child = start("p.attempt-2", { parent_job_id: "p", attempt: 2, started_at: T0 + 1 });
      const childEnd = end({ ended_at: T0 + 2000, duration_ms: 1999 });
      {
        await using store = await RedisStore.open(server.url, {
          outboxPath,
          connectTimeoutMs: 500,
        });
        await server.stop();
        await waitUntil(() => store.health().status === "degraded", "the store to see the outage");
        // Each resolves at once: queued.
        await store.jobStarted(parent);
        await store.jobEnded("p", end({ status: "failed", exit_code: 1 }));
        await store.jobStarted(child);
        await store.jobSpawned(child.job_id, { pid: 7, pgid: 7 });
        await store.jobEnded(child.job_id, childEnd);
        assert.equal(store.health().pending_writes, 5);
      } // disposed with Redis still down: the writes stay in the outbox
      await server.restart();
      await using next = await RedisStore.open(server.url, { outboxPath });
      await waitUntil(() => next.health().pending_writes === 0, "the outbox to be replayed");
      const childRecord = record(child, { pid: 7, pgid: 7 }, childEnd);
      assert.deepStrictEqual(await next.get(child.job_id), childRecord);
      assert.deepStrictEqual((await next.list({ limit: 5, parent_job_id: "p" })).jobs, [
        listed(childRecord),
      ]);
      assert.deepStrictEqual(
        (await next.list({ limit: 5 })).jobs.map((j) => [j.job_id, j.parent_job_id, j.attempt]),
        [["p.attempt-2", "p", 2], ["p", null, 1]],
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

redisTest(
  "records and outbox writes from before retry links read as first runs of no parent",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "cc-executor-store-" });
    try {
      await using server = await startRedis();
      const raw = createClient({ url: server.url });
      await raw.connect();
      try {
        const outboxPath = `${dir}/redis-outbox.db`;
        const prefix = "cc-executor:";
        {
          // A jobStarted an older server left in the outbox: its fields have neither link.
          using outbox = new Outbox(outboxPath);
          outbox.add("jobStarted", `${prefix}job:queued`, [
            prefix,
            "queued",
            String(T0 + 1),
            "node-a",
            ...["job_id", "queued", "command", "echo queued", "shape", "echo", "node_id", "node-a"],
            ...["server_pid", "4242", "started_at", String(T0 + 1), "timeout_source", "none"],
            ...["status", "running"],
          ]);
        }
        await using store = await RedisStore.open(server.url, { outboxPath });
        await waitUntil(() => store.health().pending_writes === 0, "the outbox to be replayed");
        const queued = await store.get("queued");
        assert.deepStrictEqual(
          [queued?.command, queued?.parent_job_id, queued?.attempt],
          ["echo queued", null, 1],
        );
        // A hash an older server wrote has no attempt field.
        await add(store, start("old"), end());
        assert.equal(await raw.hDel(`${prefix}job:old`, "attempt"), 1);
        assert.deepStrictEqual(await store.get("old"), record(start("old"), null, end()));
        assert.deepStrictEqual(
          (await store.list({ limit: 5 })).jobs.map((j) => [j.job_id, j.parent_job_id, j.attempt]),
          [["queued", null, 1], ["old", null, 1]],
        );
      } finally {
        raw.destroy();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

redisTest("a parent's attempts index follows replacement and prune, and empties away", async () => {
  await using server = await startRedis();
  const raw = createClient({ url: server.url });
  await raw.connect();
  try {
    await using store = await RedisStore.open(server.url);
    const index = "cc-executor:jobs:parent:p";
    for (const n of [2, 3]) {
      await add(
        store,
        start(`p.attempt-${n}`, { parent_job_id: "p", attempt: n, started_at: T0 + n }),
        end({ ended_at: T0 + 10 * n }),
      );
    }
    assert.deepStrictEqual(await raw.zRangeWithScores(index, 0, -1), [
      { value: "p.attempt-2", score: 2 },
      { value: "p.attempt-3", score: 3 },
    ]);
    await store.jobStarted(start("p.attempt-3", { started_at: T0 + 9 }));
    assert.deepStrictEqual(await raw.zRange(index, 0, -1), ["p.attempt-2"]);
    assert.equal(await store.prune(T0 + 1000), 1);
    assert.equal(await raw.exists(index), 0);
  } finally {
    raw.destroy();
  }
});

Deno.test("store redis: open rejects naming the URL without its password when Redis is unreachable", async () => {
  const port = freePort();
  const started = performance.now();
  await assert.rejects(
    RedisStore.open(`redis://user:s3cret@127.0.0.1:${port}/0`, { connectTimeoutMs: 300 }),
    (error: Error) => {
      assert.match(
        error.message,
        new RegExp(`^Cannot connect to Redis at redis://user:\\*\\*\\*@127\\.0\\.0\\.1:${port}/0`),
      );
      assert.ok(!error.message.includes("s3cret"), error.message);
      return true;
    },
  );
  assert.ok(performance.now() - started < 5000, "gave up long after connectTimeoutMs");
  await assert.rejects(RedisStore.open("redis://:s3cret@[::1"), (error: Error) => {
    assert.match(error.message, /^Invalid Redis URL/);
    assert.ok(!error.message.includes("s3cret"), error.message);
    return true;
  });
});

Deno.test("store redis: redactRedisUrl hides only the password", () => {
  assert.equal(redactRedisUrl("redis://:pw@host:6379/2"), "redis://:***@host:6379/2");
  assert.equal(redactRedisUrl("rediss://user:p%40ss@host"), "rediss://user:***@host");
  assert.equal(redactRedisUrl("redis://user@host:6379"), "redis://user@host:6379");
  assert.equal(redactRedisUrl("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
});

redisTest(
  "a password-protected Redis works, and health shows it without the password",
  async () => {
    await using server = await startRedis({ password: "s3cret" });
    await using store = await RedisStore.open(server.url);
    await store.jobStarted(start("a"));
    assert.deepStrictEqual(await store.get("a"), record(start("a")));
    assert.deepStrictEqual(store.health(), {
      backend: "redis",
      status: "ok",
      pending_writes: 0,
      dropped_writes: 0,
      location: `redis://:***@127.0.0.1:${server.port}`,
    });
  },
);

redisTest("prefixes keep deployments apart; reads never walk the key space", async () => {
  await using server = await startRedis();
  const raw = createClient({ url: server.url });
  await raw.connect();
  try {
    await using one = await RedisStore.open(server.url);
    await using two = await RedisStore.open(server.url, { prefix: "two:" });
    await add(one, start("a", { command: "make all" }), end());
    await two.sessionOpened("s", "node-a", 60_000);
    assert.equal(await raw.exists("cc-executor:job:a"), 1);
    // Writes about unknown jobs leave nothing behind.
    await one.jobSpawned("ghost", { pid: 1, pgid: 1 });
    await one.jobEnded("ghost", end());
    await one.markInterrupted("ghost", T0, "server died");
    assert.equal(await raw.exists("cc-executor:job:ghost"), 0);
    assert.deepStrictEqual((await two.list({ limit: 5 })).jobs, []);
    assert.equal(await two.get("a"), null);
    assert.equal(await one.liveSessions(), 0);
    assert.equal(await two.liveSessions(), 1);

    await raw.configResetStat();
    await one.get("a");
    await one.list({ limit: 5 });
    await one.list({ limit: 5, search: "make", status: "completed", since: T0 });
    await one.list({ limit: 5, parent_job_id: "a", search: "make", status: "completed" });
    await one.list({ limit: 5, parent_job_id: "a", cursor: encodeCursor(2, "a.attempt-2") });
    await one.orphans("node-a", 1);
    await one.durations("make", 10);
    await one.stats({ shapes: 5 });
    await one.recordMetrics({ shape: "make", status: "completed", duration_ms: 1, ended_at: T0 });
    await one.metrics(5);
    await one.recordTemplateOutcome({ template: "concise", success: true, at: T0 });
    await one.templateStats();
    await one.prune(T0);
    await one.liveSessions();
    const commandStats = await raw.info("commandstats");
    assert.doesNotMatch(commandStats, /cmdstat_(keys|scan):/);
    assert.match(commandStats, /cmdstat_zrange:/);
  } finally {
    raw.destroy();
  }
});
