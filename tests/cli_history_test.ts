import assert from "node:assert/strict";
import { VERSION } from "../server/version.ts";
import { formatMs, parseAge, parseSince } from "../cli/history.ts";
import { ExecutorClient, ExecutorRpcError } from "../server/client.ts";
import { defaultConfig } from "../server/config.ts";
import { silentLogger } from "../server/log.ts";
import { ErrorCode, type HistoryRecord } from "../server/protocol.ts";
import { startServer } from "../server/server.ts";
import { SqliteStore } from "../server/store/sqlite.ts";
import { type CliResult, runCli } from "./cli_util.ts";
import { startTestServer, waitUntil } from "./test_util.ts";

/** A word no other test's commands contain, so filters see only this test's jobs. */
function marker(): string {
  return `m${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
}

function show(result: CliResult): string {
  return `exit ${result.code}\n--- stdout\n${result.stdout}--- stderr\n${result.stderr}`;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Resolves once the store holds `jobId`'s final record (writing it may trail the outcome). */
async function recorded(client: ExecutorClient, jobId: string): Promise<HistoryRecord> {
  const record = await waitUntil(async () => {
    const record = await client.request("history.get", { job_id: jobId });
    return record.status !== "running" && record.ended_at !== null ? record : null;
  }, `the store's final record of ${jobId}`);
  // waitUntil resolves only to a truthy value.
  return record!;
}

/** Runs each command to its end, one after another (so their start order is theirs), and waits
 * until the store has recorded each. */
async function runJobs(
  client: ExecutorClient,
  jobs: [jobId: string, command: string][],
): Promise<HistoryRecord[]> {
  const records: HistoryRecord[] = [];
  for (const [jobId, command] of jobs) {
    await client.execute({ command, job_id: jobId, collect: false });
    records.push(await recorded(client, jobId));
  }
  return records;
}

// --- against a real server ------------------------------------------------------------------------

Deno.test("cli history: list shows recorded jobs newest first, as a table or JSON, filtered", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const mark = marker();
  await runJobs(client, [
    [`${mark}-a`, `echo ${mark} one`],
    [`${mark}-b`, `echo ${mark} two; exit 3`],
    [`${mark}-c`, `echo ${mark} THREE`],
  ]);
  const history = (...args: string[]) => runCli(["history", ...args, "--url", server.url]);

  const table = await history("list", "--search", mark);
  assert.equal(table.code, 0, show(table));
  assert.equal(table.stderr, "", "one page: no 'more:' line");
  const [header, ...rows] = table.stdout.trimEnd().split("\n");
  assert.match(header!, /^JOB\s+STATUS\s+EXIT\s+DURATION\s+STARTED\s+COMMAND$/);
  assert.equal(rows.length, 3, show(table));
  const started = String.raw`\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ`;
  assert.match(
    rows[0]!,
    new RegExp(`^${mark}-c\\s+completed\\s+0\\s+\\d+m?s\\s+${started}\\s+echo ${mark} THREE$`),
  );
  assert.match(rows[1]!, new RegExp(`^${mark}-b\\s+failed\\s+3\\s+\\S+\\s+${started}\\s+echo `));
  assert.match(rows[2]!, new RegExp(`^${mark}-a\\s+completed\\s+0\\s+`));

  const json = await history("list", "--search", mark, "--json");
  assert.equal(json.code, 0, show(json));
  const page = JSON.parse(json.stdout);
  assert.equal(page.next_cursor, null);
  assert.deepEqual(page.jobs.map((job: HistoryRecord) => job.job_id), [
    `${mark}-c`,
    `${mark}-b`,
    `${mark}-a`,
  ]);
  assert.equal(page.jobs[1].command, `echo ${mark} two; exit 3`);
  assert.equal(page.jobs[1].exit_code, 3);

  const failed = JSON.parse(
    (await history("list", "--search", mark, "--status", "failed", "--json"))
      .stdout,
  );
  assert.deepEqual(failed.jobs.map((job: HistoryRecord) => job.job_id), [`${mark}-b`]);
  // The search is case-insensitive.
  const three = JSON.parse((await history("list", "--search", `${mark} three`, "--json")).stdout);
  assert.deepEqual(three.jobs.map((job: HistoryRecord) => job.job_id), [`${mark}-c`]);

  const recent = JSON.parse(
    (await history("list", "--search", mark, "--since", "1h", "--json"))
      .stdout,
  );
  assert.equal(recent.jobs.length, 3);
  const future = await history("list", "--search", mark, "--since", "2999-01-01T00:00:00Z");
  assert.equal(future.code, 0, show(future));
  assert.equal(future.stdout, "");
  assert.equal(future.stderr, "no jobs match\n");
});

Deno.test("cli history: list pages with --limit; the 'more:' line fetches the next page", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const mark = marker();
  const ids = [1, 2, 3, 4, 5].map((n) => `${mark}-${n}`);
  await runJobs(client, ids.map((id) => [id, `echo ${mark} ${id}`]));

  const seen: string[][] = [];
  let args = ["history", "list", "--limit", "2", "--search", mark, "--url", server.url];
  while (true) {
    assert.ok(seen.length < 5, `pages do not end: ${JSON.stringify(seen)}`);
    const result = await runCli(args);
    assert.equal(result.code, 0, show(result));
    const rows = result.stdout.trimEnd().split("\n").slice(1);
    seen.push(rows.map((row) => row.split(/\s+/)[0]!));
    if (result.stderr === "") break;
    const more = /^more: (cc-executor history list --cursor (\S+) .*)\n$/.exec(result.stderr);
    assert.ok(more, show(result));
    assert.match(more[1]!, new RegExp(`--limit 2 --search ${mark} --url ${escape(server.url)}$`));
    // The line is meant to be pasted: run it as written.
    args = more[1]!.split(" ").slice(1);
  }
  assert.deepEqual(seen, [[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]);

  const json = JSON.parse(
    (await runCli([
      "history",
      "list",
      "--limit",
      "2",
      "--search",
      mark,
      "--json",
      "--url",
      server.url,
    ]))
      .stdout,
  );
  assert.equal(json.jobs.length, 2);
  assert.equal(typeof json.next_cursor, "string");
  const bad = await runCli(["history", "list", "--cursor", "not-a-cursor", "--url", server.url]);
  assert.equal(bad.code, 1, show(bad));
  assert.match(bad.stderr, /^cc-executor: .*cursor/i);
});

Deno.test("cli history: show prints every field and the ends of the output; an unknown id exits 1", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const mark = marker();
  const [small] = await runJobs(client, [[`${mark}-small`, "echo hello; echo oops >&2; exit 4"]]);
  // Far more output than a record keeps, so it keeps a head and a tail. Detached: nothing needs
  // to stream it to this test.
  await client.request("execute", {
    command: "seq 1 300000",
    job_id: `${mark}-big`,
    detach: true,
  });
  await recorded(client, `${mark}-big`);
  const history = (...args: string[]) => runCli(["history", ...args, "--url", server.url]);

  const result = await history("show", `${mark}-small`);
  assert.equal(result.code, 0, show(result));
  const lines = result.stdout.split("\n");
  const field = (name: string) => {
    const line = lines.find((l) => l.startsWith(`${name}:`));
    assert.ok(line, `no "${name}:" line in\n${result.stdout}`);
    return line.slice(name.length + 1).trim();
  };
  assert.equal(field("job"), `${mark}-small`);
  assert.equal(field("status"), "failed");
  assert.equal(field("exit code"), "4");
  assert.equal(field("signal"), "-");
  assert.equal(field("command"), "echo hello; echo oops >&2; exit 4");
  assert.equal(field("shape"), small!.shape);
  assert.equal(field("node"), small!.node_id);
  assert.equal(field("bytes"), "stdout 6, stderr 5");
  assert.equal(field("truncated"), "no");
  assert.match(field("started"), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
  assert.match(field("ended"), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
  assert.match(field("duration"), /^\d/);
  assert.match(field("timeout"), /\((request|history|default|none)\)$/);
  for (const name of ["reason", "cwd", "session", "pid", "hooks"]) field(name);
  // Values line up after the names.
  const fieldLines = lines.slice(0, lines.findIndex((l) => l.startsWith("---")));
  const columns = new Set(fieldLines.map((l) => /^[a-z ]+:\s+/.exec(l)![0].length));
  assert.equal(columns.size, 1, result.stdout);
  const outputAt = result.stdout.indexOf("--- output (first 11 bytes) ---\n");
  assert.ok(outputAt > 0, result.stdout);
  const output = result.stdout.slice(outputAt).split("\n").slice(1).join("\n");
  assert.deepEqual(output.split("\n").filter(Boolean).sort(), ["hello", "oops"]);
  assert.ok(!result.stdout.includes("(last "), "no tail heading when the head holds it all");

  const json = JSON.parse((await history("show", `${mark}-big`, "--json")).stdout);
  assert.equal(json.job_id, `${mark}-big`);
  assert.equal(json.status, "completed");
  assert.ok(json.output.head.startsWith("1\n2\n3\n"), json.output.head.slice(0, 20));
  assert.ok(json.output.tail.endsWith("299999\n300000\n"), json.output.tail.slice(-20));
  const bigText = await history("show", `${mark}-big`);
  assert.equal(bigText.code, 0, show(bigText));
  const headBytes = new TextEncoder().encode(json.output.head).length;
  const tailBytes = new TextEncoder().encode(json.output.tail).length;
  assert.ok(
    bigText.stdout.includes(`--- output (first ${headBytes} bytes) ---\n1\n2\n3\n`),
    bigText.stdout.slice(0, 2000),
  );
  assert.ok(
    bigText.stdout.endsWith(`--- output (last ${tailBytes} bytes) ---\n${json.output.tail}`),
    bigText.stdout.slice(-200),
  );

  // The server's own message, exit 1.
  const unknownId = `${mark}-nope`;
  const refusal = await client.request("history.get", { job_id: unknownId }).then(
    () => assert.fail("history.get found a job that never ran"),
    (error) => error,
  );
  assert.ok(refusal instanceof ExecutorRpcError);
  assert.equal(refusal.code, -32001);
  const unknown = await history("show", unknownId);
  assert.equal(unknown.code, 1, show(unknown));
  assert.equal(unknown.stdout, "");
  assert.equal(unknown.stderr, `cc-executor: ${refusal.message}\n`);
});

Deno.test("cli history: stats counts jobs per status and times each command shape", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const mark = marker();
  const [first] = await runJobs(client, [
    [`${mark}-1`, `echo ${mark}`],
    [`${mark}-2`, `echo ${mark}`],
    [`${mark}-3`, `echo ${mark}`],
    [`${mark}-4`, "exit 7"],
  ]);
  const history = (...args: string[]) => runCli(["history", ...args, "--url", server.url]);

  const json = await history("stats", "--shapes", "1000", "--json");
  assert.equal(json.code, 0, show(json));
  const stats = JSON.parse(json.stdout);
  assert.ok(stats.by_status.completed >= 3, json.stdout);
  assert.ok(stats.by_status.failed >= 1, json.stdout);

  const table = await history("stats", "--shapes", "1000");
  assert.equal(table.code, 0, show(table));
  const [counts, shapes] = table.stdout.split("\n\n");
  const countLines = counts!.trimEnd().split("\n");
  assert.match(countLines[0]!, /^STATUS\s+JOBS$/);
  for (const [status, count] of Object.entries(stats.by_status)) {
    assert.ok(
      countLines.some((line) => new RegExp(`^${status}\\s+${count}$`).test(line)),
      `${status} ${count} in\n${counts}`,
    );
  }
  const total = Object.values(stats.by_status as Record<string, number>).reduce((a, b) => a + b);
  assert.match(countLines.at(-1)!, new RegExp(`^total\\s+${total}$`));

  const shapeLines = shapes!.trimEnd().split("\n");
  assert.match(shapeLines[0]!, /^SHAPE\s+RUNS\s+P50\s+P95$/);
  const mine = stats.by_shape.find((row: { shape: string }) => row.shape === first!.shape);
  assert.ok(mine, `shape ${first!.shape} in ${json.stdout}`);
  assert.equal(mine.count, 3);
  const row = new RegExp(
    `^${escape(first!.shape)}\\s+3\\s+${escape(formatMs(mine.p50_ms))}\\s+${
      escape(formatMs(mine.p95_ms))
    }$`,
  );
  assert.ok(shapeLines.some((line) => row.test(line)), table.stdout);

  const one = JSON.parse((await history("stats", "--shapes", "1", "--json")).stdout);
  assert.ok(one.by_shape.length <= 1, JSON.stringify(one));
});

Deno.test("cli history: with record_metrics on, stats shows all-time counts per shape, and prune keeps them", async () => {
  await using server = await startTestServer({
    hooks: { ...defaultConfig().hooks, dir: "/nonexistent-hooks", recordMetrics: true },
  });
  await using client = await ExecutorClient.connect(server.url);
  const mark = marker();
  await runJobs(client, [
    [`${mark}-1`, `${mark}() { return $1; }; ${mark} 0`],
    [`${mark}-2`, `${mark}() { return $1; }; ${mark} 0`],
    [`${mark}-3`, `${mark}() { return $1; }; ${mark} 4`],
  ]);
  const history = (...args: string[]) => runCli(["history", ...args, "--url", server.url]);
  const shape = (await client.request("history.get", { job_id: `${mark}-1` })).shape;
  // The metric is written by a post_execution hook, before the job's end is recorded.
  const stats = JSON.parse((await history("stats", "--shapes", "1000", "--json")).stdout);
  const metric = stats.metrics.find((row: { shape: string }) => row.shape === shape);
  assert.ok(metric, `metrics for ${shape} in ${JSON.stringify(stats.metrics)}`);
  assert.equal(metric.runs, 3);
  assert.deepEqual(metric.by_status, { completed: 2, failed: 1 });
  const table = await history("stats", "--shapes", "1000");
  assert.equal(table.code, 0, show(table));
  assert.match(table.stdout, /SHAPE\s+ALL RUNS\s+MEAN\s+MAX\s+LAST RUN\s+OUTCOMES/);
  assert.match(table.stdout, new RegExp(`${escape(shape)}\\s+3\\s+.*completed 2, failed 1`));

  assert.equal((await history("prune", "--older-than", "0.001s")).code, 0);
  const after = JSON.parse((await history("stats", "--shapes", "1000", "--json")).stdout);
  assert.equal(after.metrics.find((row: { shape: string }) => row.shape === shape)?.runs, 3);
});

Deno.test("cli history: prune deletes the records of jobs that ended before the cut-off, not running ones", async () => {
  await using server = await startTestServer();
  await using client = await ExecutorClient.connect(server.url);
  const mark = marker();
  await runJobs(client, [
    [`${mark}-1`, `echo ${mark} 1`],
    [`${mark}-2`, `echo ${mark} 2; exit 1`],
    [`${mark}-3`, `echo ${mark} 3`],
  ]);
  const history = (...args: string[]) => runCli(["history", ...args, "--url", server.url]);
  const before = Date.now();

  const pruned = await history("prune", "--older-than", "0.001s");
  assert.equal(pruned.code, 0, show(pruned));
  const said = /^deleted (\d+) job records? that ended before (\S+)\n$/.exec(pruned.stdout);
  assert.ok(said, show(pruned));
  assert.ok(Number(said[1]) >= 3, pruned.stdout);
  assert.ok(Date.parse(said[2]!) >= before - 1000, `cut-off ${said[2]} is about now`);
  const empty = await history("list", "--search", mark);
  assert.equal(empty.code, 0, show(empty));
  assert.equal(empty.stdout, "");
  assert.equal(empty.stderr, "no jobs match\n");
  const gone = await history("show", `${mark}-1`);
  assert.equal(gone.code, 1, show(gone));

  // A running job has not ended: it stays, however old the cut-off says.
  await client.request("execute", {
    command: `sleep 30 # ${mark}`,
    job_id: `${mark}-running`,
    detach: true,
  });
  await waitUntil(
    () => client.request("history.get", { job_id: `${mark}-running` }).catch(() => null),
    "the running job's record",
  );
  try {
    const json = await history("prune", "--older-than", "0.001", "--json");
    assert.equal(json.code, 0, show(json));
    const result = JSON.parse(json.stdout);
    assert.equal(typeof result.deleted, "number");
    assert.ok(!Number.isNaN(Date.parse(result.before)), json.stdout);
    const left = JSON.parse((await history("list", "--search", mark, "--json")).stdout);
    assert.deepEqual(
      left.jobs.map((job: HistoryRecord) => [job.job_id, job.status]),
      [[`${mark}-running`, "running"]],
    );
  } finally {
    await client.cancel(`${mark}-running`);
  }
});

// --- no server needed -----------------------------------------------------------------------------

Deno.test("cli history: a job's retry attempts are listed under it and shown with their parent", async () => {
  // Attempt records as the job manager writes them for a retried job, in the server's own store.
  await using store = new SqliteStore(":memory:");
  // Recent: the server prunes what is older than its retention at start.
  const t0 = Date.now() - 60_000;
  const job = (
    job_id: string,
    at: number,
    links: { parent_job_id?: string; attempt?: number },
  ) => ({
    job_id,
    command: `claude -p -- 'try ${job_id}'`,
    shape: "claude",
    cwd: null,
    session_id: null,
    node_id: "elsewhere",
    server_pid: 1,
    started_at: t0 + at,
    timeout_s: null,
    timeout_source: "none" as const,
    ...links,
  });
  const ended = (at: number, status: "completed" | "failed") => ({
    status,
    ended_at: t0 + at + 1000,
    duration_ms: 1000,
    exit_code: status === "completed" ? 0 : 1,
    signal: null,
    reason: null,
    bytes_stdout: 0,
    bytes_stderr: 0,
    truncated: false,
    output_head: "",
    output_tail: "",
    hooks: null,
  });
  for (
    const [id, at, links, status] of [
      ["r1", 0, {}, "failed"],
      ["r1.attempt-2", 2000, { parent_job_id: "r1", attempt: 2 }, "failed"],
      ["r1.attempt-3", 4000, { parent_job_id: "r1", attempt: 3 }, "completed"],
    ] as const
  ) {
    await store.jobStarted(job(id, at, links));
    await store.jobEnded(id, ended(at, status));
  }
  await using server = await startServer(defaultConfig({ port: 0, killGraceMs: 300 }), {
    logger: silentLogger,
    store,
  });
  const history = (...args: string[]) => runCli(["history", ...args, "--url", server.url]);

  const list = await history("list");
  assert.equal(list.code, 0, show(list));
  assert.deepEqual(
    list.stdout.split("\n").slice(1, -1).map((line) => line.split(" ")[0]),
    ["r1.attempt-3", "r1.attempt-2", "r1"],
  );
  assert.match(
    list.stdout,
    /^r1\.attempt-3 .* {2}↳ attempt 3 of r1: claude -p -- 'try r1\.attempt-3'$/m,
  );
  assert.match(list.stdout, /^r1 .* {2}claude -p -- 'try r1'$/m);

  const attempts = await history("list", "--parent", "r1", "--json");
  assert.equal(attempts.code, 0, show(attempts));
  assert.deepEqual(
    JSON.parse(attempts.stdout).jobs.map((
      j: HistoryRecord,
    ) => [j.job_id, j.parent_job_id, j.attempt]),
    [["r1.attempt-2", "r1", 2], ["r1.attempt-3", "r1", 3]],
  );

  const parent = await history("show", "r1");
  assert.equal(parent.code, 0, show(parent));
  assert.match(
    parent.stdout,
    /^--- retry attempts \(2\) ---\nJOB +ATTEMPT +STATUS .*\nr1\.attempt-2 +2 +failed +1 .*\nr1\.attempt-3 +3 +completed +0 /m,
  );
  const child = await history("show", "r1.attempt-2");
  assert.equal(child.code, 0, show(child));
  assert.match(child.stdout, /^job: {7}r1\.attempt-2\nparent: {4}r1\nattempt: {3}2\n/);
  assert.doesNotMatch(child.stdout, /retry attempts/);

  // An empty parent is not a filter: refused, like any bad parameter.
  await using client = await ExecutorClient.connect(server.url);
  await assert.rejects(client.request("history.list", { parent_job_id: "" }), (error) => {
    assert.ok(error instanceof ExecutorRpcError);
    assert.equal(error.code, ErrorCode.INVALID_PARAMS);
    return true;
  });
});

Deno.test("cli history: bad values and missing arguments are usage errors (exit 2)", async () => {
  // Nothing listens there: a usage error must come before any connection.
  const url = ["--url", "ws://127.0.0.1:9/ws"];
  const cases: [string[], RegExp][] = [
    [["list", "--limit", "0"], /--limit .*'0' is invalid/],
    [["list", "--limit", "1001"], /--limit .*'1001' is invalid.*at most 1000/],
    [["list", "--status", "bogus"], /--status .*'bogus' is invalid.*interrupted/],
    [["list", "--since", "yesterday"], /--since .*'yesterday' is invalid.*30m/],
    [["list", "--since", "2025-13-45"], /--since .*'2025-13-45' is invalid/],
    [["list", "--search", ""], /--search .* is invalid/],
    [["list", "--cursor", ""], /--cursor .* is invalid/],
    [["stats", "--shapes", "abc"], /--shapes .*'abc' is invalid/],
    [["prune", "--older-than", "soon"], /--older-than .*'soon' is invalid.*7d/],
    [["prune", "--older-than", "0"], /--older-than .*'0' is invalid/],
    [["prune", "--older-than", "5x"], /--older-than .*'5x' is invalid/],
    [["prune"], /required option '--older-than <age>' not specified/],
    [["show"], /missing required argument 'job_id'/],
    [["frobnicate"], /unknown command 'frobnicate'/],
  ];
  const results = await Promise.all(cases.map(([args]) => runCli(["history", ...args, ...url])));
  results.forEach((result, i) => {
    const [args, problem] = cases[i]!;
    const where = `cc-executor history ${args.join(" ")}\n${show(result)}`;
    assert.equal(result.code, 2, where);
    assert.equal(result.stdout, "", where);
    assert.match(result.stderr, /^cc-executor: /, where);
    assert.match(result.stderr, problem, where);
    assert.match(result.stderr, /\(add --help for usage\)/, where);
  });
});

Deno.test("cli history: every subcommand's help shows examples", async () => {
  const results = await Promise.all(
    [[], ["list"], ["show"], ["stats"], ["prune"]].map((sub) =>
      runCli(["history", ...sub, "--help"])
    ),
  );
  for (const result of results) {
    assert.equal(result.code, 0, show(result));
    assert.match(result.stdout, /\nExamples:\n {2}\$ cc-executor history/);
  }
});

Deno.test("cli history: parseAge reads 90s, 30m, 12h, 7d, 2w, 250ms, fractions and plain seconds", () => {
  const cases: [string, number][] = [
    ["90s", 90],
    ["30m", 1800],
    ["12h", 43200],
    ["7d", 604800],
    ["2w", 1209600],
    ["250ms", 0.25],
    ["1.5h", 5400],
    ["0.001s", 0.001],
    ["3600", 3600],
    [" 10M ", 600],
  ];
  for (const [text, seconds] of cases) assert.equal(parseAge(text), seconds, text);
  for (const text of ["", "0", "0s", "-5", "soon", "5x", "1h30m", "Infinity", "1e3"]) {
    assert.throws(() => parseAge(text), /expected an age above 0/, JSON.stringify(text));
  }
});

Deno.test("cli history: parseSince turns an age into the instant it names and keeps ISO dates", () => {
  const now = Date.parse("2025-05-01T12:00:00.000Z");
  assert.equal(parseSince("30m", { now }), "2025-05-01T11:30:00.000Z");
  assert.equal(parseSince("7d", { now }), "2025-04-24T12:00:00.000Z");
  assert.equal(parseSince("2025-04-01"), "2025-04-01T00:00:00.000Z");
  assert.equal(parseSince("2025-04-01T10:15:00Z"), "2025-04-01T10:15:00.000Z");
  assert.equal(parseSince("2025-04-01 10:15:00+02:00"), "2025-04-01T08:15:00.000Z");
  assert.equal(
    parseSince("2025-04-01T10:15"),
    new Date(2025, 3, 1, 10, 15).toISOString(),
    "no offset: local time",
  );
  for (const text of ["yesterday", "2025-13-45", "2025-04-01T25:00Z", "04/01/2025", "0m"]) {
    assert.throws(() => parseSince(text), /expected/, text);
  }
});

Deno.test("cli history: formatMs keeps sub-minute precision", () => {
  assert.equal(formatMs(0), "0ms");
  assert.equal(formatMs(123.4), "123ms");
  assert.equal(formatMs(4500), "4.5s");
  assert.equal(formatMs(59_990), "59.9s");
  assert.equal(formatMs(90_000), "1m 30s");
  assert.equal(formatMs(Number.NaN), "-");
});

// --- formatting, against a fake server with canned answers ----------------------------------------

type Answer = { result: unknown } | { error: { code: number; message: string } };

interface FakeServer extends AsyncDisposable {
  url: string;
  /** Every request received, in order. */
  requests: { method: string; params: Record<string, unknown> }[];
}

/** A WebSocket JSON-RPC server that answers each method from `answers`, -32601 for the rest. */
function startFakeServer(
  answers: Record<string, (params: Record<string, unknown>) => Answer>,
): FakeServer {
  const requests: FakeServer["requests"] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onopen = () =>
      socket.send(JSON.stringify({
        jsonrpc: "2.0",
        method: "connected",
        params: { session_id: "fake", version: "0.0.0", capabilities: { methods: [] } },
      }));
    socket.onmessage = (event) => {
      const { id, method, params } = JSON.parse(event.data);
      requests.push({ method, params });
      const answer = answers[method]?.(params) ??
        { error: { code: -32601, message: `Method not found: ${method}` } };
      socket.send(JSON.stringify({ jsonrpc: "2.0", id, ...answer }));
    };
    return response;
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}/ws`,
    requests,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

function record(overrides: Partial<HistoryRecord> = {}): HistoryRecord {
  return {
    job_id: "job-1",
    command: "npm test",
    shape: "npm test",
    cwd: "/src/app",
    session_id: "session-1",
    node_id: "box",
    status: "completed",
    pid: 4242,
    pgid: 4242,
    started_at: "2025-05-01T14:30:00.123Z",
    ended_at: "2025-05-01T14:30:04.623Z",
    duration_ms: 4500,
    exit_code: 0,
    signal: null,
    reason: null,
    bytes: { stdout: 12, stderr: 3 },
    truncated: false,
    timeout: { seconds: 60, source: "history" },
    parent_job_id: null,
    attempt: 1,
    hooks: null,
    ...overrides,
  };
}

Deno.test("cli history (fake server): list's table, colours off, and the 'more:' line", async () => {
  const startedRunning = new Date(Date.now() - 90_000).toISOString();
  await using fake = startFakeServer({
    "history.list": () => ({
      result: {
        jobs: [
          record({
            job_id: "run-1",
            command: "sleep 600",
            status: "running",
            started_at: startedRunning,
            ended_at: null,
            duration_ms: null,
            exit_code: null,
          }),
          record({
            job_id: "int-1",
            status: "interrupted",
            exit_code: null,
            duration_ms: 61_000,
            reason: "server died",
          }),
          record({
            job_id: "sig-1",
            command: `bash -c '${"x".repeat(80)}'\n  --flag`,
            status: "canceled",
            exit_code: null,
            signal: "SIGTERM",
            duration_ms: 250,
          }),
        ],
        next_cursor: "MTc0NjEw+/abc",
      },
    }),
  });
  const result = await runCli([
    "history",
    "list",
    "--limit",
    "3",
    "--status",
    "failed",
    "--search",
    "it's npm",
    "--since",
    "2h",
    "--url",
    fake.url,
  ]);
  assert.equal(result.code, 0, show(result));
  const lines = result.stdout.split("\n");
  assert.equal(lines[0], "JOB    STATUS       EXIT     DURATION  STARTED               COMMAND");
  // Still running: its duration so far (1m 30s, or a little more on a slow machine).
  const start = startedRunning.replace("T", " ").replace(/\.\d+Z$/, "Z");
  assert.match(lines[1]!, new RegExp(`^run-1  running {15}1m 3\\ds {4}${start}  sleep 600$`));
  assert.equal(lines[2], "int-1  interrupted           1m 1s     2025-05-01 14:30:00Z  npm test");
  assert.equal(
    lines[3],
    `sig-1  canceled     SIGTERM  250ms     2025-05-01 14:30:00Z  bash -c '${"x".repeat(50)}…`,
  );
  assert.equal(lines.length, 5);
  const sent = fake.requests[0]!;
  assert.equal(sent.method, "history.list");
  assert.equal(sent.params.limit, 3);
  assert.equal(sent.params.status, "failed");
  assert.equal(sent.params.search, "it's npm");
  const since = Date.parse(sent.params.since as string);
  assert.ok(Math.abs(Date.now() - 2 * 3600_000 - since) < 60_000, String(sent.params.since));
  assert.equal(
    result.stderr,
    `more: cc-executor history list --cursor MTc0NjEw+/abc --limit 3 --status failed ` +
      `--search 'it'\\''s npm' --since ${sent.params.since} --url ${fake.url}\n`,
  );

  // The default page size, and no 'more:' line with --json (next_cursor is in it).
  const json = await runCli(["history", "list", "--json", "--url", fake.url]);
  assert.equal(json.code, 0, show(json));
  assert.equal(json.stderr, "");
  assert.equal(JSON.parse(json.stdout).next_cursor, "MTc0NjEw+/abc");
  assert.deepEqual(fake.requests[1]!.params, { limit: 20 });
});

Deno.test("cli history (fake server): show's fields and output headings", async () => {
  await using fake = startFakeServer({
    "history.get": (params) => {
      if (params.job_id === "job-1") {
        return {
          result: record({
            output: { head: "héllo\nworld", tail: "the end\n" },
            hooks: { block_rm_root: "allowed" },
          }),
        };
      }
      if (params.job_id === "quiet") {
        return {
          result: record({
            job_id: "quiet",
            status: "running",
            ended_at: null,
            duration_ms: null,
            exit_code: null,
            cwd: null,
            session_id: null,
            timeout: { seconds: null, source: "none" },
            started_at: new Date(Date.now() - 5000).toISOString(),
            output: { head: "", tail: "" },
          }),
        };
      }
      return { error: { code: -32001, message: `Job "${params.job_id}" is not in the history` } };
    },
  });
  const result = await runCli(["history", "show", "job-1", "--url", fake.url]);
  assert.equal(result.code, 0, show(result));
  assert.equal(
    result.stdout,
    [
      "job:       job-1",
      "status:    completed",
      "exit code: 0",
      "signal:    -",
      "reason:    -",
      "command:   npm test",
      "cwd:       /src/app",
      "shape:     npm test",
      "node:      box",
      "session:   session-1",
      "pid:       4242 (group 4242)",
      "started:   2025-05-01 14:30:00Z",
      "ended:     2025-05-01 14:30:04Z",
      "duration:  4.5s",
      "bytes:     stdout 12, stderr 3",
      "truncated: no",
      "timeout:   60s (history)",
      'hooks:     {"block_rm_root":"allowed"}',
      "--- output (first 12 bytes) ---",
      "héllo",
      "world",
      "--- output (last 8 bytes) ---",
      "the end",
      "",
    ].join("\n"),
  );
  assert.deepEqual(fake.requests[0]!.params, { job_id: "job-1", include_output: true });

  const quiet = await runCli(["history", "show", "quiet", "--url", fake.url]);
  assert.equal(quiet.code, 0, show(quiet));
  assert.match(quiet.stdout, /^ended: {5}- \(not ended\)$/m);
  assert.match(quiet.stdout, /^duration: {2}\d\.\ds so far$/m);
  assert.match(quiet.stdout, /^cwd: {7}-$/m);
  assert.match(quiet.stdout, /^timeout: {3}none \(none\)$/m);
  assert.ok(quiet.stdout.endsWith("\n--- no output ---\n"), quiet.stdout);

  const unknown = await runCli(["history", "show", "nope", "--url", fake.url]);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.stderr, 'cc-executor: Job "nope" is not in the history\n');
});

Deno.test("cli history (fake server): list marks retry attempts and filters by --parent", async () => {
  const attempt = (n: number, overrides: Partial<HistoryRecord> = {}) =>
    record({
      job_id: `job-1.attempt-${n}`,
      parent_job_id: "job-1",
      attempt: n,
      command: `claude -p -- 'shorter ${n}'`,
      ...overrides,
    });
  await using fake = startFakeServer({
    "history.list": (params) => ({
      result: params.parent_job_id === undefined
        ? {
          jobs: [attempt(2, { status: "failed", exit_code: 1 }), record({ status: "failed" })],
          next_cursor: null,
        }
        : { jobs: [attempt(2), attempt(3)], next_cursor: "Mjpqb2ItMS5hdHRlbXB0LTM" },
    }),
  });
  const all = await runCli(["history", "list", "--url", fake.url]);
  assert.equal(all.code, 0, show(all));
  assert.equal(
    all.stdout,
    [
      "JOB              STATUS  EXIT  DURATION  STARTED               COMMAND",
      "job-1.attempt-2  failed  1     4s        2025-05-01 14:30:00Z  ↳ attempt 2 of job-1: claude -p -- 'shorter 2'",
      "job-1            failed  0     4s        2025-05-01 14:30:00Z  npm test",
      "",
    ].join("\n"),
  );

  const children = await runCli(["history", "list", "--parent", "job-1", "--url", fake.url]);
  assert.equal(children.code, 0, show(children));
  assert.match(
    children.stdout,
    /^job-1\.attempt-3 .* ↳ attempt 3 of job-1: claude -p -- 'shorter 3'$/m,
  );
  assert.deepEqual(fake.requests[1]!.params, { limit: 20, parent_job_id: "job-1" });
  assert.equal(
    children.stderr,
    `more: cc-executor history list --cursor Mjpqb2ItMS5hdHRlbXB0LTM --parent job-1 --url ${fake.url}\n`,
  );
  const empty = await runCli(["history", "list", "--parent", "", "--url", fake.url]);
  assert.equal(empty.code, 2, show(empty));
});

Deno.test("cli history (fake server): show prints a retry's parent and attempt, and a job's attempts", async () => {
  await using fake = startFakeServer({
    "history.get": (params) => ({
      result: params.job_id === "job-1"
        ? record({ status: "failed", exit_code: 1, output: { head: "", tail: "" } })
        : record({
          job_id: "job-1.attempt-2",
          parent_job_id: "job-1",
          attempt: 2,
          output: { head: "", tail: "" },
        }),
    }),
    "history.list": (params) => ({
      result: {
        jobs: params.parent_job_id === "job-1"
          ? [
            record({
              job_id: "job-1.attempt-2",
              parent_job_id: "job-1",
              attempt: 2,
              status: "failed",
              exit_code: 1,
            }),
            record({
              job_id: "job-1.attempt-3",
              parent_job_id: "job-1",
              attempt: 3,
              duration_ms: 1200,
            }),
          ]
          : [],
        next_cursor: null,
      },
    }),
  });
  const parent = await runCli(["history", "show", "job-1", "--url", fake.url]);
  assert.equal(parent.code, 0, show(parent));
  assert.doesNotMatch(parent.stdout, /^(parent|attempt):/m);
  assert.ok(
    parent.stdout.endsWith(
      [
        "timeout:   60s (history)",
        "hooks:     -",
        "--- retry attempts (2) ---",
        "JOB              ATTEMPT  STATUS     EXIT  DURATION  STARTED",
        "job-1.attempt-2  2        failed     1     4s        2025-05-01 14:30:00Z",
        "job-1.attempt-3  3        completed  0     1s        2025-05-01 14:30:00Z",
        "--- no output ---",
        "",
      ].join("\n"),
    ),
    parent.stdout,
  );
  assert.deepEqual(fake.requests[1]!.params, { parent_job_id: "job-1", limit: 1000 });

  const child = await runCli(["history", "show", "job-1.attempt-2", "--url", fake.url]);
  assert.equal(child.code, 0, show(child));
  assert.ok(
    child.stdout.startsWith(
      ["job:       job-1.attempt-2", "parent:    job-1", "attempt:   2", "status:    completed", ""]
        .join("\n"),
    ),
    child.stdout,
  );
  assert.doesNotMatch(child.stdout, /retry attempts/);
  // --json is the record alone.
  const json = await runCli(["history", "show", "job-1.attempt-2", "--json", "--url", fake.url]);
  assert.deepEqual(
    [JSON.parse(json.stdout).parent_job_id, JSON.parse(json.stdout).attempt],
    ["job-1", 2],
  );
});

Deno.test("cli history (fake server): stats tables and prune's sentence", async () => {
  await using fake = startFakeServer({
    "history.stats": () => ({
      result: {
        by_status: { failed: 2, completed: 10, interrupted: 1 },
        by_shape: [
          { shape: "npm test", count: 8, p50_ms: 4500, p95_ms: 93_000 },
          { shape: "ls", count: 2, p50_ms: 3.2, p95_ms: 12 },
        ],
      },
    }),
    "history.prune": (params) => ({
      result: {
        deleted: params.older_than_seconds === 604800 ? 3 : 1,
        before: "2025-04-24T12:00:00.000Z",
      },
    }),
  });
  const stats = await runCli(["history", "stats", "--shapes", "5", "--url", fake.url]);
  assert.equal(stats.code, 0, show(stats));
  assert.equal(
    stats.stdout,
    [
      "STATUS       JOBS",
      "completed    10",
      "failed       2",
      "interrupted  1",
      "total        13",
      "",
      "SHAPE     RUNS  P50   P95",
      "npm test  8     4.5s  1m 33s",
      "ls        2     3ms   12ms",
      "",
    ].join("\n"),
  );
  assert.deepEqual(fake.requests[0]!.params, { shapes: 5 });

  const pruned = await runCli(["history", "prune", "--older-than", "7d", "--url", fake.url]);
  assert.equal(pruned.code, 0, show(pruned));
  assert.equal(pruned.stdout, "deleted 3 job records that ended before 2025-04-24T12:00:00.000Z\n");
  const one = await runCli(["history", "prune", "--older-than", "90", "--url", fake.url]);
  assert.equal(one.stdout, "deleted 1 job record that ended before 2025-04-24T12:00:00.000Z\n");
  const json = await runCli([
    "history",
    "prune",
    "--older-than",
    "12h",
    "--json",
    "--url",
    fake.url,
  ]);
  assert.deepEqual(JSON.parse(json.stdout), { deleted: 1, before: "2025-04-24T12:00:00.000Z" });
  assert.deepEqual(fake.requests.slice(1).map((r) => r.params), [
    { older_than_seconds: 604800 },
    { older_than_seconds: 90 },
    { older_than_seconds: 43200 },
  ]);
});

Deno.test("cli history (fake server): a server without history says so (exit 1)", async () => {
  await using fake = startFakeServer({});
  const result = await runCli(["history", "list", "--url", fake.url]);
  assert.equal(result.code, 1, show(result));
  assert.equal(
    result.stderr,
    `cc-executor: Method not found: history.list (the server is older than this cc-executor ${VERSION})\n`,
  );
});
