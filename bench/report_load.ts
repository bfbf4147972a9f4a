/**
 * The report's part for scenarios (i) to (k): many idle connections, many running jobs, and
 * websocketd side by side. They have no targets (the issue asks for the figures), so their
 * summary rows say "recorded". Pure, like report.ts: the same results give the same text.
 *
 * @module
 */
import type { BenchResults, Verdict } from "./report.ts";
import type { CapSetting } from "./server_caps.ts";
import type { FdLimit } from "./fd_limit.ts";
import type { OutputRuns } from "./websocketd.ts";
import { fixed, MB, MiB, ratio, type Summary } from "./stats.ts";

const count = (n: number) => n.toLocaleString("en-US");

const recorded = (scenario: string, measured: string, baseline = "", ratio = ""): Verdict => ({
  scenario,
  measured,
  baseline,
  ratio,
  target: "recorded",
  pass: null,
});

/** Summary rows of (i), (j) and (k). */
export function loadVerdicts(r: BenchResults): Verdict[] {
  const s = r.settings;
  const out: Verdict[] = [];
  const idle = r.idle;
  const iRss = `(i) server RSS, ${count(s.idle.connections)} idle connections`;
  const iOpen = `(i) time to open ${count(s.idle.connections)} connections`;
  if (idle && !("skipped" in idle)) {
    const added = idle.openRss - idle.idleRss;
    out.push(
      recorded(
        iRss,
        `${fixed(idle.openRss / MB, 1)} MB`,
        `${fixed(idle.idleRss / MB, 1)} MB idle`,
        `+${fixed(added / 1000 / idle.connections, 1)} kB each`,
      ),
      recorded(iOpen, `${fixed(idle.openMs / 1000, 2)} s`, `${idle.concurrency} at a time`),
    );
  } else {
    const why = idle ? "skipped (see (i))" : "not run";
    out.push(recorded(iRss, why), recorded(iOpen, why));
  }
  const sleep = r.sleep;
  const jRss = `(j) server RSS, ${count(s.sleepJobs.jobs)} \`sleep\` jobs running`;
  const jStart = `(j) time to start ${count(s.sleepJobs.jobs)} \`sleep\` jobs`;
  if (sleep && !("skipped" in sleep)) {
    const added = sleep.runningRss - sleep.idleRss;
    out.push(
      recorded(
        jRss,
        `${fixed(sleep.runningRss / MB, 1)} MB`,
        `${fixed(sleep.idleRss / MB, 1)} MB idle`,
        `+${fixed(added / 1000 / sleep.jobs, 0)} kB each`,
      ),
      recorded(
        jStart,
        `${fixed(sleep.allStartedMs / 1000, 2)} s`,
        `${sleep.connections} connections`,
        `${fixed(sleep.allStartedMs / sleep.jobs, 1)} ms/job`,
      ),
    );
  } else {
    const why = sleep ? "skipped (see (j))" : "not run";
    out.push(recorded(jRss, why), recorded(jStart, why));
  }
  const k = r.websocketd;
  const kEcho = "(k) `echo hi` p50, new connection each, vs websocketd";
  const kBinary = `(k) output, ${
    fixed(s.websocketd.binaryBytes / MiB, 0)
  } MiB, vs websocketd --binary`;
  // Not the same framing: websocketd sends a message per 64-byte line, cc-executor its chunks.
  const kLine = `(k) output, ${
    fixed(s.websocketd.lineBytes / MiB, 0)
  } MiB, vs websocketd's message per line`;
  if (k?.installed) {
    const { latency: l, output: o } = k;
    out.push(
      recorded(
        kEcho,
        `${fixed(l.serverConnect.ms.p50, 2)} ms`,
        `${fixed(l.websocketd.ms.p50, 2)} ms`,
        ratio(l.serverConnect.ms.p50, l.websocketd.ms.p50),
      ),
      recorded(
        kBinary,
        `${fixed(o.server.bytesPerSecond / MiB, 0)} MiB/s`,
        `${fixed(o.binary.bytesPerSecond / MiB, 0)} MiB/s`,
        ratio(o.server.bytesPerSecond, o.binary.bytesPerSecond),
      ),
      recorded(
        kLine,
        `${fixed(o.serverSmall.bytesPerSecond / MiB, 1)} MiB/s`,
        `${fixed(o.line.bytesPerSecond / MiB, 1)} MiB/s`,
        ratio(o.serverSmall.bytesPerSecond, o.line.bytesPerSecond),
      ),
    );
  } else {
    const why = k ? k.skipped : "not run";
    out.push(recorded(kEcho, why), recorded(kBinary, why), recorded(kLine, why));
  }
  return out;
}

/** The sections of (i), (j) and (k). */
export function renderLoadSections(r: BenchResults): string[] {
  return [...idleSection(r), ...sleepSection(r), ...websocketdSection(r)];
}

function idleSection(r: BenchResults): string[] {
  const s = r.settings.idle;
  const lines = [
    `## (i) ${count(s.connections)} idle connections`,
    "",
    `A fresh server of its own (history off: no job runs) gets ${
      count(s.connections)
    } WebSocket connections from the`,
    `bench process, opened ${s.concurrency} at a time (ExecutorClient.connect; a connection counts once its`,
    "`connected` notification has arrived), then held open doing nothing. RSS is the server's VmRSS,",
    `the median of five readings 100 ms apart: idle before the first connection, ${s.settleSeconds} s after the`,
    "last one opened, and 1 s after all had closed.",
    "",
  ];
  const i = r.idle;
  if (!i) return [...lines, "Not run.", ""];
  if ("skipped" in i) return [...lines, `Skipped: ${i.skipped}.`, ""];
  const added = i.openRss - i.idleRss;
  return [
    ...lines,
    "| Measure | Value |",
    "| --- | ---: |",
    `| Server RSS idle, no connection | ${fixed(i.idleRss / MB, 1)} MB |`,
    `| Server RSS with ${count(i.connections)} connections open | ${fixed(i.openRss / MB, 1)} MB |`,
    `| Added per connection | ${fixed(added / 1000 / i.connections, 1)} kB |`,
    `| Peak RSS while opening and holding them, sampled every 50 ms | ${
      fixed(i.peakRss / MB, 1)
    } MB |`,
    `| Server RSS after all closed | ${fixed(i.closedRss / MB, 1)} MB |`,
    `| Time to open all ${count(i.connections)} | ${fixed(i.openMs / 1000, 2)} s (${
      fixed(i.connections / (i.openMs / 1000), 0)
    } connections/s) |`,
    `| One connection, connect -> \`connected\` | ${msSummary(i.connectMs)} |`,
    `| Server CPU opening them all | ${fixed(i.openCpu, 2)} s (${
      fixed((i.openCpu / i.connections) * 1000, 2)
    } ms each) |`,
    `| Sessions the server counted (server.info) | ${count(i.serverSessions)} |`,
    `| Server file descriptors, idle / all open | ${i.serverFds.idle} / ${
      count(i.serverFds.open)
    } |`,
    "",
    `Limits: ${capsText(i.caps)}${atCap(i.caps, i.connections)}. Open files: ${
      fdText("bench", i.fdLimits.bench)
    }; ${fdText("server", i.fdLimits.server)} (each side needs one per connection).`,
    "",
  ];
}

function sleepSection(r: BenchResults): string[] {
  const s = r.settings.sleepJobs;
  const lines = [
    `## (j) ${count(s.jobs)} concurrent \`sleep\` jobs`,
    "",
    `A fresh server of its own (history in SQLite, as by default) gets ${
      count(s.jobs)
    } executes of \`sleep ${s.sleepSeconds}\`,`,
    `sent all at once, round robin over ${s.connections} connections. A job has started once its execute`,
    "was answered and its `process.started` has arrived; start times run from the first execute sent.",
    "With all running, the server's RSS is read (median of five readings), and the jobs' processes",
    "are found in /proc by their process groups. Then every job is canceled; the bench waits for one",
    "`process.completed` per job and checks that no process of any job's group is left.",
    "",
  ];
  const j = r.sleep;
  if (!j) return [...lines, "Not run.", ""];
  if ("skipped" in j) return [...lines, `Skipped: ${j.skipped}.`, ""];
  const added = j.runningRss - j.idleRss;
  const statuses = Object.entries(j.statuses).map(([status, n]) => `${n} ${status}`).join(", ");
  return [
    ...lines,
    "| Measure | Value |",
    "| --- | ---: |",
    `| Server RSS, ${j.connections} connections, no job | ${fixed(j.idleRss / MB, 1)} MB |`,
    `| Server RSS with ${count(j.jobs)} jobs running | ${fixed(j.runningRss / MB, 1)} MB |`,
    `| Added per job | ${fixed(added / 1000 / j.jobs, 0)} kB |`,
    `| Peak RSS, first execute -> last job's end, sampled every 50 ms | ${
      fixed(j.peakRss / MB, 1)
    } MB |`,
    `| Server RSS once all had ended | ${fixed(j.endedRss / MB, 1)} MB |`,
    `| First execute -> last execute answered | ${fixed(j.allAnsweredMs / 1000, 2)} s |`,
    `| First execute -> last \`process.started\` | ${fixed(j.allStartedMs / 1000, 2)} s (${
      fixed(j.jobs / (j.allStartedMs / 1000), 0)
    } jobs/s) |`,
    `| One job, execute -> answer | ${msSummary(j.executeMs)} |`,
    `| Server CPU starting them all | ${fixed(j.startCpu, 2)} s (${
      fixed((j.startCpu / j.jobs) * 1000, 2)
    } ms each) |`,
    `| The jobs' processes, all running | ${count(j.jobProcesses)} (RSS ${
      fixed(j.jobProcessesRss / MB, 0)
    } MB summed, shared pages counted in each) |`,
    `| Server file descriptors, all running | ${count(j.serverFds)} |`,
    `| All canceled: first cancel -> last \`process.completed\` | ${
      fixed(j.endMs / 1000, 2)
    } s; ${statuses} |`,
    `| Processes left after the last \`process.completed\` | ${j.leftProcesses} |`,
    "",
    `Limits: ${capsText(j.caps)} (the last two follow CC_EXECUTOR_MAX_JOBS unless set).`,
    `Open files: ${fdText("server", j.fdLimit)}.`,
    "",
    "The answers arrive in a bunch (compare the execute -> answer p50 with its max): the server",
    "spawns each job synchronously, so with hundreds of executes queued it starts one job after",
    "another and its replies leave together. Server CPU is the server process's own; the rest of the",
    "time goes to the jobs' own start (`setsid`, `bash`, `sleep`: three execs each) on the same CPUs.",
    "",
  ];
}

function websocketdSection(r: BenchResults): string[] {
  const s = r.settings.websocketd;
  const lines = [
    "## (k) Side by side with websocketd",
    "",
    "websocketd (Debian package `websocketd`) turns any program into a",
    "WebSocket server: each connection runs the program once, each line it prints becomes a message",
    "(with `--binary`, each chunk it reads), and the connection ends when the program exits. The same",
    "two runs go through both, against the same cc-executor server as (a) to (c):",
    "",
    "- `echo hi`: websocketd runs `bash -c 'echo hi'` per connection; the time is from opening the",
    "  WebSocket to the connection's end (the only sign that the program has exited). cc-executor is",
    "  timed on an open connection (execute -> `process.completed`, as (a)) and with a new connection",
    "  per job (connect -> `connected` -> execute -> `process.completed`), which is what websocketd",
    `  always does. ${s.latencySamples} samples of each after ${s.latencyWarmup} warm-up rounds, in a rotating order, in ms.`,
    `- Output: the (c) command, ${
      fixed(s.binaryBytes / MiB, 0)
    } MiB through \`websocketd --binary\` and through`,
    `  cc-executor, and ${
      fixed(s.lineBytes / MiB, 0)
    } MiB through websocketd's line mode (a message per 64-byte line; more`,
    "  would take minutes) and through cc-executor. The websocketd client is Deno's WebSocket counting",
    "  bytes; cc-executor's is ExecutorClient (`collect: false`), which parses each notification's",
    `  JSON. Median of ${s.runs} runs per path after a warm-up round, in a rotating order.`,
    "",
    "What differs, so the figures are read for what they are: websocketd speaks no protocol (no",
    "JSON-RPC, no job id, no stdout/stderr split: stderr goes to its log), puts no process group",
    "around the program (cc-executor's `setsid` costs an exec per job, see (a)), reports no exit",
    "status, and has no cancel, timeout, replay, history, hooks or limits; the connection's end is",
    "all a client learns when the program ends. cc-executor does all of that per job.",
    "",
  ];
  const k = r.websocketd;
  if (!k) return [...lines, "Not run.", ""];
  if (!k.installed) return [...lines, `${k.skipped}.`, ""];
  const l = k.latency, o = k.output;
  const latencyRow = (name: string, x: Summary, cpuMs: number | null) =>
    `| ${name} | ${x.n} | ${fixed(x.min, 2)} | ${fixed(x.p50, 2)} | ${fixed(x.p90, 2)} | ${
      fixed(x.p99, 2)
    } | ${fixed(x.max, 2)} | ${ratio(x.p50, l.websocketd.ms.p50)} | ${
      cpuMs === null ? "" : fixed(cpuMs, 2)
    } |`;
  const outputRow = (name: string, x: OutputRuns, versus: OutputRuns) =>
    `| ${name} | ${fixed(x.bytes / MiB, 0)} | ${
      x.ms.map((ms) => fixed(ms / 1000, 2)).join(" / ")
    } | ${fixed(x.bytesPerSecond / MiB, 1)} | ${ratio(x.bytesPerSecond, versus.bytesPerSecond)} | ${
      count(x.messages)
    } | ${fixed(x.serverCpu, 2)} |`;
  const closes = k.closes.clean + k.closes.unclean;
  return [
    ...lines,
    `websocketd ${k.version}.`,
    "",
    "| `echo hi` | n | min | p50 | p90 | p99 | max | p50 vs websocketd | serving process CPU ms/job |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    latencyRow("cc-executor, open connection", l.server.ms, l.server.serverCpuMs),
    latencyRow("cc-executor, new connection each", l.serverConnect.ms, l.serverConnect.serverCpuMs),
    latencyRow("websocketd, new connection each", l.websocketd.ms, l.websocketd.serverCpuMs),
    latencyRow("bare: `bash -c` (no server)", l.bare, null),
    "",
    "| Output | MiB | runs, s | MiB/s | vs websocketd | messages | serving process CPU s per run |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    outputRow("cc-executor", o.server, o.binary),
    outputRow("websocketd `--binary`", o.binary, o.binary),
    outputRow("cc-executor", o.serverSmall, o.line),
    outputRow("websocketd, lines", o.line, o.line),
    "",
    `websocketd's RSS after the runs: ${
      fixed(k.websocketdRss / MB, 1)
    } MB, the largest of its three instances (one per command; a Go program,`,
    "while cc-executor's server is a Deno runtime: see the RSS table below). websocketd's CPU excludes the programs it runs, as the server's excludes",
    `the jobs. Of ${closes} websocketd connections, ${k.closes.unclean} ended without a WebSocket close frame:`,
    "websocketd drops the TCP connection when the program exits, so its client cannot tell an",
    "ordinary end from a crash.",
    "",
  ];
}

/** p50, p90 and max, in seconds once the max passes one. */
function msSummary(x: Summary): string {
  const [unit, scale, decimals] = x.max >= 1000 ? ["s", 1000, 2] : ["ms", 1, 1] as const;
  const f = (ms: number) => `${fixed(ms / scale, decimals)} ${unit}`;
  return `p50 ${f(x.p50)}, p90 ${f(x.p90)}, max ${f(x.max)}`;
}

function capsText(caps: readonly CapSetting[]): string {
  return caps.map((c) =>
    c.set === null
      ? `\`${c.variable}\` left at ${count(c.inherited)}`
      : `\`${c.variable}=${c.set}\` set for this server (it would have had ${count(c.inherited)})`
  ).join(", ");
}

/** Says so when an unraised cap is exactly what the scenario needed: one more would be refused. */
function atCap(caps: readonly CapSetting[], n: number): string {
  return caps.some((c) => c.set === null && c.inherited === n) ? ", exactly the number opened" : "";
}

function fdText(who: string, limit: FdLimit): string {
  const soft = Number.isFinite(limit.soft) ? count(limit.soft) : "unlimited";
  const hard = Number.isFinite(limit.hard) ? count(limit.hard) : "unlimited";
  return `${who} ${soft} (hard ${hard})`;
}
