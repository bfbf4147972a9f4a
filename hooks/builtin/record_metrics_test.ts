import assert from "node:assert/strict";
import { SqliteStore } from "../../server/store/sqlite.ts";
import { NoStore } from "../../server/store/none.ts";
import type { JobOutcome, PostExecutionContext } from "../types.ts";
import { RECORD_METRICS, recordMetricsHook } from "./record_metrics.ts";

function outcome(overrides: Partial<JobOutcome> = {}): JobOutcome {
  return {
    status: "completed",
    exit_code: 0,
    signal: null,
    duration_ms: 1234.5,
    reason: null,
    bytes: { stdout: 3, stderr: 0 },
    truncated: false,
    output: { head: "ok\n", tail: "" },
    ...overrides,
  };
}

function context(command: string, o: JobOutcome, dryRun = false): PostExecutionContext {
  return {
    point: "post_execution",
    job_id: "j",
    session_id: null,
    attempt: 1,
    dry_run: dryRun,
    request: { command, cwd: null, env: {}, timeout: null },
    outcome: o,
    attached: {},
  };
}

const signal = new AbortController().signal;

Deno.test("record_metrics: each run adds to its command shape's metrics, attaching nothing", async () => {
  await using store = new SqliteStore(":memory:");
  let now = 1_700_000_000_000;
  const hook = recordMetricsHook({ store, timeoutMs: 5000, now: () => now });
  assert.equal(hook.name, RECORD_METRICS);
  assert.equal(hook.point, "post_execution");
  assert.deepEqual(hook.source, { kind: "builtin", location: RECORD_METRICS });
  assert.equal(hook.onFailure, "proceed");
  assert.equal(
    await hook.invoke(context("FOO=1 npm test -- --watch", outcome()), signal),
    undefined,
  );
  now += 1000;
  await hook.invoke(
    context("npm test", outcome({ status: "failed", exit_code: 1, duration_ms: 10 })),
    signal,
  );
  assert.deepEqual(await store.metrics(5), [{
    shape: "npm test",
    runs: 2,
    by_status: { completed: 1, failed: 1 },
    total_ms: 1244.5,
    max_ms: 1234.5,
    last_at: now,
  }]);
});

Deno.test("record_metrics: a dry run records nothing; a store that fails makes the hook reject", async () => {
  await using store = new SqliteStore(":memory:");
  const hook = recordMetricsHook({ store, timeoutMs: 5000 });
  await hook.invoke(context("make", outcome(), true), signal);
  assert.deepEqual(await store.metrics(5), []);
  await store[Symbol.asyncDispose]();
  await assert.rejects(hook.invoke(context("make", outcome()), signal));
  // History off: nothing to write to, and nothing fails.
  const off = recordMetricsHook({ store: new NoStore(), timeoutMs: 5000 });
  assert.equal(await off.invoke(context("make", outcome()), signal), undefined);
});
