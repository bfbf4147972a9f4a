/**
 * `cc-executor test stress` as users run it: a subprocess against a real
 * server, with a clean load (no failures) and one that leaves a process
 * behind (which it must report, exiting 1).
 *
 * @module
 */
import assert from "node:assert/strict";
import type { StressReport } from "../cli/stress.ts";
import { runCli, startCliServer } from "./cli_util.ts";

/** The report --json prints: the command's own type, so the test follows any change to it. */
type Report = StressReport;

async function withServer(fn: (url: string) => Promise<void>): Promise<void> {
  const server = await startCliServer();
  try {
    await fn(server.url);
  } finally {
    server.child.kill("SIGTERM");
    await server.child.status;
    await server.log();
  }
}

Deno.test("test stress: a mixed load over several connections loses nothing", async () => {
  await withServer(async (url) => {
    const result = await runCli([
      "test",
      "stress",
      "--tasks",
      "40",
      "--parallel",
      "8",
      "--url",
      url,
      "--json",
    ]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const report: Report = JSON.parse(result.stdout);
    assert.equal(report.ok, true);
    assert.deepEqual(report.failures, {});
    assert.deepEqual(report.leftovers, []);
    assert.equal(report.target.url, url);
    assert.equal(report.target.in_process, false);
    assert.deepEqual(report.jobs, {
      started: 40,
      finished: 40,
      parallel: 8,
      kinds: { fast: 10, slow: 10, chatty: 10, failing: 10 },
    });
    assert.deepEqual(report.outcomes, { "completed (exit 0)": 30, "failed (exit 3)": 10 });
    assert.ok(report.throughput_jobs_per_s > 0);
    const { p50, p95, p99, max } = report.latency_ms;
    assert.ok(p50 !== null && p95 !== null && p99 !== null && max !== null);
    assert.ok(p50 <= p95 && p95 <= p99 && p99 <= max);
    // The server runs on this machine: its RSS is read from /proc.
    assert.equal(typeof report.server.pid, "number");
    assert.ok(report.rss_kib.before! > 0 && report.rss_kib.after! > 0, report.rss_kib.source);
    assert.match(report.checks.history!, /^checked/);
    assert.match(report.checks.leftovers!, /^checked/);
    // No progress line off a terminal.
    assert.doesNotMatch(result.stderr, /jobs done/);
  });
});

Deno.test("test stress: a job that leaves a process behind is reported, exit 1", async () => {
  await withServer(async (url) => {
    // setsid takes the sleep out of the job's process group, so the server's group kill misses
    // it; the short sleep after it lets setsid run before the job ends.
    const leaky = "setsid sleep 60 >/dev/null 2>&1 & sleep 0.3";
    const result = await runCli([
      "test",
      "stress",
      "--tasks",
      "4",
      "--parallel",
      "2",
      "--command",
      "true",
      "--command",
      leaky,
      "--url",
      url,
      "--json",
    ]);
    const report: Report = JSON.parse(result.stdout);
    try {
      assert.equal(result.code, 1, result.stderr);
      assert.equal(report.ok, false);
      assert.deepEqual(report.failures, { "leftover process": 2 });
      assert.equal(report.leftovers.length, 2);
      for (const left of report.leftovers) {
        assert.equal(left.command, "sleep 60");
        const example = report.failure_examples.find((e) => e.job_id === left.job_id);
        assert.equal(example?.command, leaky);
      }
    } finally {
      for (const left of report.leftovers) {
        try {
          Deno.kill(left.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
  });
});

Deno.test("test stress: the human summary, and a usage error for an empty --command", async () => {
  await withServer(async (url) => {
    const result = await runCli([
      "test",
      "stress",
      "--tasks",
      "8",
      "--parallel",
      "2",
      "--url",
      url,
    ]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /^throughput: +[\d.]+ jobs\/s$/m);
    assert.match(result.stdout, /^latency: +p50 [\d.]+ ms, p95/m);
    assert.match(result.stdout, /^server RSS: +\d+ KiB before, \d+ KiB after/m);
    assert.match(result.stdout, /^no failures$/m);
  });
  const empty = await runCli(["test", "stress", "--command", " ", "--url", "ws://127.0.0.1:1"]);
  assert.equal(empty.code, 2, empty.stderr);
});
