/**
 * `cc-executor test stress`: load against a server, N jobs across P
 * connections, that checks what must hold under load rather than timing it
 * only: every job started gets exactly one terminal notification and a
 * history record, its exit code is the one its command must give, and no
 * process of any job is left once the run is over.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import {
  ConnectionClosedError,
  type ExecutorClient,
  ExecutorRpcError,
  type RawNotification,
} from "../server/client.ts";
import { percentile } from "../bench/stats.ts";
import { isLoopbackHost } from "../server/config.ts";
import { procStat } from "../server/process.ts";
import type { ProcessCompletedParams, ServerInfoResult } from "../server/protocol.ts";
import { positiveInt, seconds } from "./args.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import type { LocalServer } from "./local.ts";
import { CliError, type Output, UsageError } from "./output.ts";
import { connectTo, resolveTarget, rpc, START_HINT, type Target, withTarget } from "./target.ts";

/** One kind of job in the mix, with the outcome its command must have. */
interface JobKind {
  name: string;
  command: string;
  /** null: any outcome is accepted (a command given with --command). */
  expect: { status: string; exitCode: number; stdoutBytes?: number } | null;
}

/** Fast, slow, chatty and failing: the default load. */
export const MIX: readonly JobKind[] = [
  { name: "fast", command: "true", expect: { status: "completed", exitCode: 0 } },
  { name: "slow", command: "sleep 0.2", expect: { status: "completed", exitCode: 0 } },
  // 108,894 bytes: 9 one-digit, 90 two-digit, ... and 10,001 five-digit numbers, one a line.
  {
    name: "chatty",
    command: "seq 1 20000",
    expect: { status: "completed", exitCode: 0, stdoutBytes: 108_894 },
  },
  { name: "failing", command: "exit 3", expect: { status: "failed", exitCode: 3 } },
];

/** The variable every job gets, so processes a job leaves behind can be found by it. */
export const RUN_VARIABLE = "CC_EXECUTOR_STRESS_RUN";
/** And the job's id, so a process that left its job's group still names its job. */
const JOB_VARIABLE = "CC_EXECUTOR_STRESS_JOB";

export interface StressOptions {
  tasks?: number;
  parallel: number;
  command?: string[];
  mix?: true;
  duration?: number;
  jobTimeout: number;
  url?: string;
  token?: string;
  json?: true;
}

/** What the run found; `--json` prints it as is. */
export interface StressReport {
  ok: boolean;
  /** source: --url, CC_EXECUTOR_URL, pid file, default, or in-process (none answered). */
  target: { url: string; source: string; in_process: boolean };
  server: { version: string; pid: number | null; store: string };
  jobs: { started: number; finished: number; parallel: number; kinds: Record<string, number> };
  duration_ms: number;
  throughput_jobs_per_s: number;
  latency_ms: { p50: number | null; p95: number | null; p99: number | null; max: number | null };
  outcomes: Record<string, number>;
  checks: { terminal: string; history: string; leftovers: string; output_size: string };
  failures: Record<string, number>;
  failure_examples: { kind: string; job_id: string; command: string; detail: string }[];
  leftovers: { job_id: string | null; pid: number; pgid: number; command: string }[];
  rss_kib: { before: number | null; after: number | null; source: string };
}

/** `test stress`. */
export function stressCommand(ctx: CliContext) {
  return withTarget(
    new Command("stress")
      .description(
        "run N jobs across P connections against a server and check that none is lost, " +
          "duplicated, unrecorded or leaves a process behind; reports throughput, latency and RSS",
      )
      .option(
        "-n, --tasks <N>",
        "jobs to run (default 100; with --duration: at most N)",
        positiveInt,
      )
      .option("-p, --parallel <P>", "connections, each running one job at a time", positiveInt, 8)
      .option(
        "-c, --command <command>",
        "run this command line (repeatable; jobs take them in turn); any exit code is accepted",
        (value: string, previous: string[] = []) => [...previous, value],
      )
      .option(
        "--mix",
        "fast (true), slow (sleep 0.2), chatty (seq 1 20000) and failing (exit 3) jobs, each " +
          "checked for its exit code (the default without --command)",
      )
      .option("--duration <seconds>", "keep starting jobs for this long", seconds)
      .option(
        "--job-timeout <seconds>",
        "each job's timeout; a job with no outcome 30 s past it counts as lost",
        seconds,
        60,
      )
      .option("--json", "print one JSON report instead of the summary"),
  )
    .addHelpText(
      "after",
      `
Without --url (or CC_EXECUTOR_URL) it uses the detached or default server, and when none
answers it starts a temporary one inside this process. Exit code 0 when nothing failed,
1 when any check failed.
${
        examples([
          ["cc-executor test stress", "100 mixed jobs over 8 connections"],
          ["cc-executor test stress --tasks 1000 --parallel 50", "the load issue 9 asks for"],
          [
            'cc-executor test stress --duration 60 --parallel 20 --command "make -q"',
            "one command, for a minute",
          ],
          ["cc-executor test stress --json | jq .failures", "for scripts"],
        ])
      }`,
    )
    .action(async (options) => {
      const report = await stress(options, ctx.output);
      if (options.json) ctx.output.json(report);
      else printReport(report, ctx.output);
      ctx.setExitCode(report.ok ? 0 : 1);
    });
}

/** Collects failures by kind, with the first few as examples. */
class Failures {
  counts: Record<string, number> = {};
  examples: StressReport["failure_examples"] = [];
  add(kind: string, job: { id: string; command: string }, detail: string): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    if (this.examples.length < 20) {
      this.examples.push({ kind, job_id: job.id, command: job.command, detail });
    }
  }
}

interface JobRecord {
  id: string;
  kind: JobKind;
  command: string;
  sentAt: number;
  latencyMs: number | null;
  pgid: number | null;
  pid: number | null;
  terminal: ProcessCompletedParams | null;
}

async function stress(options: StressOptions, output: Output): Promise<StressReport> {
  const kinds = jobKinds(options);
  const limit = options.tasks ?? (options.duration !== undefined ? Infinity : 100);
  let local: LocalServer | undefined;
  let target = resolveTarget(options);
  let probe: ExecutorClient;
  try {
    probe = await connectTo(target);
  } catch (error) {
    // Only an address nobody chose falls back: a named server that is down is an error.
    if (
      !(error instanceof CliError) || (target.source !== "default" && target.source !== "pid file")
    ) {
      throw error;
    }
    local = await (await import("./local.ts")).startLocalServer(1);
    target = local.target;
    probe = await connectTo(target, { hint: START_HINT });
  }
  try {
    return await runStress(target, probe, local, kinds, limit, options, output);
  } finally {
    await probe.close();
    await local?.[Symbol.asyncDispose]();
  }
}

function jobKinds(options: StressOptions): JobKind[] {
  const commands = (options.command ?? []).map((command, i) => {
    if (command.trim() === "") throw new UsageError("test stress: --command is empty");
    return { name: `command ${i + 1}`, command, expect: null };
  });
  return [...(options.mix || commands.length === 0 ? MIX : []), ...commands];
}

async function runStress(
  target: Target,
  probe: ExecutorClient,
  local: LocalServer | undefined,
  kinds: JobKind[],
  limit: number,
  options: StressOptions,
  output: Output,
): Promise<StressReport> {
  const runId = crypto.randomUUID().slice(0, 8);
  const info = await rpc(() => probe.request("server.info", {}));
  const onThisMachine = local !== undefined ||
    isLoopbackHost(new URL(target.url).hostname.replace(/^\[(.*)\]$/, "$1"));
  const serverPid = local ? Deno.pid : onThisMachine ? info.pid : null;
  const rssBefore = serverPid === null ? null : readRssKib(serverPid);
  const failures = new Failures();
  const jobs: JobRecord[] = [];
  /** process.completed notifications per job id, counted as they arrive, replays included. */
  const terminals = new Map<string, number>();
  const waiting = new Map<string, (done: ProcessCompletedParams) => void>();
  const deadline = options.duration !== undefined
    ? performance.now() + options.duration * 1000
    : Infinity;
  // Capped at the longest wait a timer takes: past it setTimeout fires at once, and --job-timeout
  // near its maximum (2,147,483 s) would report every job lost after a millisecond.
  const lostAfterMs = Math.min((options.jobTimeout + 30) * 1000, 2 ** 31 - 1);
  let next = 0;
  let finished = 0;

  const progress = output.spinner("test stress: connecting");
  const ticker = setInterval(() => {
    const total = Number.isFinite(limit) ? `/${limit}` : "";
    progress.update(
      `test stress: ${finished}${total} jobs done, ${next - finished} running, ` +
        `${Object.values(failures.counts).reduce((a, b) => a + b, 0)} failures`,
    );
  }, 200);

  const listen = (note: RawNotification) => {
    if (note.method !== "process.completed") return;
    const jobId = note.params?.job_id;
    if (jobId === undefined) return;
    terminals.set(jobId, (terminals.get(jobId) ?? 0) + 1);
    waiting.get(jobId)?.(note.params as unknown as ProcessCompletedParams);
  };

  const runOne = async (client: ExecutorClient, job: JobRecord): Promise<"ok" | "closed"> => {
    const done = Promise.withResolvers<ProcessCompletedParams | "lost">();
    waiting.set(job.id, done.resolve);
    const timer = setTimeout(() => done.resolve("lost"), lostAfterMs);
    try {
      job.sentAt = performance.now();
      const started = await Promise.race([
        client.request("execute", {
          command: job.command,
          job_id: job.id,
          timeout: options.jobTimeout,
          env: { [RUN_VARIABLE]: runId, [JOB_VARIABLE]: job.id },
        }),
        done.promise,
      ]);
      if (started === "lost") {
        failures.add("lost job", job, `no answer to execute within ${lostAfterMs} ms`);
        return "ok";
      }
      if ("pgid" in started) {
        job.pgid = started.pgid;
        job.pid = started.pid;
      }
      const end = await done.promise;
      if (end === "lost") {
        failures.add("lost job", job, `no process.completed within ${lostAfterMs} ms`);
        return "ok";
      }
      job.latencyMs = performance.now() - job.sentAt;
      job.terminal = end;
      checkOutcome(job, end, failures);
      return "ok";
    } catch (error) {
      if (error instanceof ExecutorRpcError) {
        failures.add(`execute error ${error.code}`, job, error.message);
        return "ok";
      }
      if (error instanceof ConnectionClosedError) {
        failures.add("connection lost", job, error.message);
        return "closed";
      }
      throw error;
    } finally {
      clearTimeout(timer);
      waiting.delete(job.id);
      finished++;
    }
  };

  const worker = async () => {
    let client: ExecutorClient | undefined;
    let stop: (() => void) | undefined;
    try {
      while (next < limit && performance.now() < deadline) {
        if (!client) {
          try {
            client = await connectTo(target);
          } catch (error) {
            failures.add("connect error", { id: "-", command: "-" }, (error as Error).message);
            return;
          }
          stop = client.onNotification(listen);
        }
        const i = next++;
        const kind = kinds[i % kinds.length]!;
        const job: JobRecord = {
          id: `stress-${runId}-${i}`,
          kind,
          command: kind.command,
          sentAt: 0,
          latencyMs: null,
          pgid: null,
          pid: null,
          terminal: null,
        };
        jobs.push(job);
        if (await runOne(client, job) === "closed") {
          stop?.();
          client = undefined;
        }
      }
    } finally {
      // Duplicates may trail the first terminal: give them a moment before the connection goes.
      await new Promise((resolve) => setTimeout(resolve, 200));
      stop?.();
      await client?.close();
    }
  };

  const startedAt = performance.now();
  try {
    await Promise.all(Array.from({ length: options.parallel }, worker));
  } finally {
    clearInterval(ticker);
  }
  const elapsedMs = performance.now() - startedAt;

  progress.update("test stress: checking terminals, history and processes");
  for (const job of jobs) {
    const count = terminals.get(job.id) ?? 0;
    if (count > 1) failures.add("duplicate terminal", job, `${count} process.completed`);
  }
  const history = await checkHistory(probe, info, jobs, failures);
  const leftovers = onThisMachine ? await findLeftovers(jobs, runId, info) : [];
  for (const left of leftovers) {
    const job = jobs.find((job) => job.id === left.job_id) ??
      { id: left.job_id ?? "?", command: "?" };
    failures.add("leftover process", job, `pid ${left.pid} (group ${left.pgid}): ${left.command}`);
  }
  progress.stop();

  const rssAfter = serverPid === null ? null : readRssKib(serverPid);
  const latencies = jobs.flatMap((job) => job.latencyMs === null ? [] : [job.latencyMs]);
  latencies.sort((a, b) => a - b);
  const outcomes: Record<string, number> = {};
  const kindCounts: Record<string, number> = {};
  for (const job of jobs) {
    kindCounts[job.kind.name] = (kindCounts[job.kind.name] ?? 0) + 1;
    if (!job.terminal) continue;
    const key = job.terminal.exit_code !== null
      ? `${job.terminal.status} (exit ${job.terminal.exit_code})`
      : job.terminal.status;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  }
  const completed = jobs.filter((job) => job.terminal !== null).length;
  return {
    ok: Object.keys(failures.counts).length === 0,
    target: {
      url: target.url,
      source: local ? "in-process" : target.source,
      in_process: local !== undefined,
    },
    server: { version: info.version, pid: serverPid, store: info.store.backend },
    jobs: {
      started: jobs.length,
      finished: completed,
      parallel: options.parallel,
      kinds: kindCounts,
    },
    duration_ms: Math.round(elapsedMs),
    throughput_jobs_per_s: round(completed / (elapsedMs / 1000)),
    latency_ms: {
      p50: latency(latencies, 50),
      p95: latency(latencies, 95),
      p99: latency(latencies, 99),
      max: latencies.length ? round(latencies.at(-1)!) : null,
    },
    outcomes,
    checks: {
      terminal: "checked: exactly one process.completed per job",
      history,
      leftovers: onThisMachine
        ? "checked: the jobs' process groups, and processes carrying this run's marker variable"
        : "not checked: the server is on another machine",
      output_size: kinds.some((kind) => kind.expect?.stdoutBytes !== undefined)
        ? "checked: chatty jobs' stdout byte count"
        : "not checked: no chatty jobs",
    },
    failures: failures.counts,
    failure_examples: failures.examples,
    leftovers,
    rss_kib: {
      before: rssBefore,
      after: rssAfter,
      source: serverPid === null
        ? "unknown: the server is on another machine"
        : local
        ? `/proc/${serverPid}/status (in-process server: includes this client)`
        : `/proc/${serverPid}/status`,
    },
  };
}

function checkOutcome(job: JobRecord, end: ProcessCompletedParams, failures: Failures): void {
  const expect = job.kind.expect;
  if (!expect) return;
  if (end.status !== expect.status || end.exit_code !== expect.exitCode) {
    failures.add(
      "unexpected exit code",
      job,
      `expected ${expect.status} (exit ${expect.exitCode}), got ${end.status} (exit ${end.exit_code}` +
        `${end.signal ? `, ${end.signal}` : ""})${end.reason ? `: ${end.reason}` : ""}`,
    );
  } else if (expect.stdoutBytes !== undefined && end.bytes.stdout !== expect.stdoutBytes) {
    failures.add(
      "wrong output size",
      job,
      `expected ${expect.stdoutBytes} bytes of stdout, the server counted ${end.bytes.stdout}`,
    );
  }
}

/** Every finished job must have a record, ended, with its exit code; writes may lag a little. */
async function checkHistory(
  client: ExecutorClient,
  info: ServerInfoResult,
  jobs: JobRecord[],
  failures: Failures,
): Promise<string> {
  if (info.store.backend === "none") return "not checked: the server keeps no history";
  if (!info.token.history) return "not checked: this token may not read history";
  const deadline = performance.now() + 10_000;
  const pending = jobs.filter((job) => job.terminal !== null);
  const check = async (job: JobRecord) => {
    while (true) {
      try {
        const record = await client.request("history.get", { job_id: job.id });
        if (record.ended_at !== null || performance.now() > deadline) {
          if (record.exit_code !== job.terminal!.exit_code) {
            failures.add(
              "history mismatch",
              job,
              `record: ${record.status} (exit ${record.exit_code}); process.completed: ${
                job.terminal!.status
              } (exit ${job.terminal!.exit_code})`,
            );
          }
          return;
        }
      } catch (error) {
        if (!(error instanceof ExecutorRpcError)) throw error;
        if (performance.now() > deadline) {
          failures.add("missing history record", job, error.message);
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  // A few at a time: enough to be quick, few enough not to be a load test of their own.
  for (let i = 0; i < pending.length; i += 20) {
    await Promise.all(pending.slice(i, i + 20).map(check));
  }
  return `checked: history.get for ${pending.length} finished jobs`;
}

/**
 * Processes still alive that belong to a job: members of a job's process group, or (for those
 * that left it, with setsid) carrying this run's variable. Those that end within the kill grace
 * period plus a second are given the benefit of the doubt.
 */
async function findLeftovers(
  jobs: JobRecord[],
  runId: string,
  info: ServerInfoResult,
): Promise<StressReport["leftovers"]> {
  const byPgid = new Map(jobs.flatMap((job) => job.pgid === null ? [] : [[job.pgid, job.id]]));
  const scan = () => scanProcesses(byPgid, runId);
  const until = performance.now() + info.limits.kill_grace_ms + 1000;
  let found = scan();
  while (found.length > 0 && performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    found = scan();
  }
  return found;
}

function scanProcesses(byPgid: Map<number, string>, runId: string): StressReport["leftovers"] {
  const found: StressReport["leftovers"] = [];
  const marker = `${RUN_VARIABLE}=${runId}`;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync("/proc")];
  } catch {
    return found; // no /proc (not Linux): nothing can be said
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    if (pid === Deno.pid) continue;
    const fields = procStat(pid); // "state ppid pgrp ..."
    if (!fields || fields[0] === "Z" || fields[0] === "X") continue; // gone, or a zombie
    const pgid = Number(fields[2]);
    let jobId = byPgid.get(pgid) ?? null;
    if (jobId === null) {
      try {
        const environ = Deno.readTextFileSync(`/proc/${pid}/environ`).split("\0");
        if (!environ.includes(marker)) continue;
        const named = environ.find((line) => line.startsWith(`${JOB_VARIABLE}=`));
        jobId = named ? named.slice(JOB_VARIABLE.length + 1) : null;
      } catch {
        continue; // not ours to read, or gone
      }
    }
    found.push({ job_id: jobId, pid, pgid, command: cmdline(pid) });
  }
  return found;
}

function cmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter(Boolean).join(" ");
  } catch {
    return "?";
  }
}

/** VmRSS of `pid` in KiB, from /proc; null when it cannot be read. */
function readRssKib(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** The nearest-rank percentile the benchmark report uses, rounded; null without samples. */
function latency(sorted: number[], p: number): number | null {
  return sorted.length === 0 ? null : round(percentile(sorted, p));
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function printReport(report: StressReport, output: Output): void {
  const paint = output.paint("stdout");
  const lat = report.latency_ms;
  const ms = (value: number | null) => value === null ? "-" : `${value} ms`;
  const rss = (value: number | null) => value === null ? "unknown" : `${value} KiB`;
  output.out(
    `${report.target.url}${report.target.in_process ? " (temporary in-process server)" : ""}, ` +
      `cc-executor ${report.server.version}, history: ${report.server.store}`,
  );
  output.out(
    `jobs:        ${report.jobs.finished}/${report.jobs.started} finished over ` +
      `${report.jobs.parallel} connections in ${(report.duration_ms / 1000).toFixed(1)} s ` +
      `(${Object.entries(report.jobs.kinds).map(([k, n]) => `${n} ${k}`).join(", ")})`,
  );
  output.out(`throughput:  ${report.throughput_jobs_per_s} jobs/s`);
  output.out(
    `latency:     p50 ${ms(lat.p50)}, p95 ${ms(lat.p95)}, p99 ${ms(lat.p99)}, max ${ms(lat.max)}` +
      " (execute sent to process.completed)",
  );
  output.out(
    `outcomes:    ${Object.entries(report.outcomes).map(([k, n]) => `${n} ${k}`).join(", ")}`,
  );
  output.out(
    `server RSS:  ${rss(report.rss_kib.before)} before, ${rss(report.rss_kib.after)} after ` +
      `(${report.rss_kib.source})`,
  );
  for (const [name, how] of Object.entries(report.checks)) {
    output.out(`check:       ${name}: ${how}`);
  }
  if (report.ok) {
    output.out(paint.green("no failures"));
    return;
  }
  output.out(paint.red("failures:"));
  for (const [kind, count] of Object.entries(report.failures)) output.out(`  ${kind}: ${count}`);
  output.out("examples:");
  for (const example of report.failure_examples) {
    output.out(`  ${example.kind}: ${example.job_id} (${example.command}): ${example.detail}`);
  }
}
