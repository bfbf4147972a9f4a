/**
 * `cc-executor history list|show|stats|prune`: every job's record from the
 * server's store, which outlives the jobs it holds in memory (`jobs`).
 *
 * @module
 */
import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { type ExecutorClient, ExecutorRpcError } from "../server/client.ts";
import {
  ErrorCode,
  type HistoryRecord,
  type HistoryStatsResult,
  HistoryStatus,
  type ShapeMetrics,
} from "../server/protocol.ts";
import { oneOf, positiveInt } from "./args.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import { formatDuration, type Paint } from "./output.ts";
import { connectTo, resolveTarget, rpc, withTarget } from "./target.ts";

/** What `history list` asks for when `--limit` is not given. */
export const DEFAULT_LIST_LIMIT = 20;

/** The most the protocol lets `history.list` return, and `history.stats` report, at once. */
const MAX_PAGE = 1000;

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
const AGE = /^(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w)?$/i;

/**
 * An age as a number of seconds above 0: `90s`, `30m`, `12h`, `7d`, `2w`, `250ms`, fractions
 * allowed (`1.5h`), or plain seconds (`3600`).
 * @throws {InvalidArgumentError} for anything else, so commander reports a usage error (exit 2).
 */
export function parseAge(text: string): number {
  const match = AGE.exec(text.trim());
  const seconds = match ? Number(match[1]) * UNITS[(match[2] ?? "s").toLowerCase()]! : NaN;
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new InvalidArgumentError(
      "expected an age above 0 like 90s, 30m, 12h, 7d (or a number of seconds).",
    );
  }
  return seconds;
}

const ISO_DATE =
  /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i;

export interface ParseSinceOptions {
  /** Epoch milliseconds that a relative age counts back from. @default Date.now() */
  now?: number;
}

/**
 * `--since` as the ISO 8601 instant the protocol takes: an age (`30m`, `2h`, `7d`, see
 * {@linkcode parseAge}) counts back from now; a date (`2025-05-01`, midnight UTC) or date and time
 * (`2025-05-01T14:30`, `2025-05-01 14:30:00Z`, `...+02:00`; local time when it has no offset) is
 * taken as written.
 * @throws {InvalidArgumentError} for anything else.
 */
export function parseSince(text: string, options: ParseSinceOptions = {}): string {
  const trimmed = text.trim();
  if (AGE.test(trimmed)) {
    return new Date((options.now ?? Date.now()) - parseAge(trimmed) * 1000).toISOString();
  }
  const time = ISO_DATE.test(trimmed) ? Date.parse(trimmed.replace(" ", "T")) : NaN;
  if (Number.isNaN(time)) {
    throw new InvalidArgumentError(
      "expected an age like 30m, 2h, 7d or an ISO 8601 date/time like 2025-05-01T14:30:00Z.",
    );
  }
  return new Date(time).toISOString();
}

/** A whole number from 1 to `max`. */
function upTo(max: number) {
  return (text: string): number => {
    const value = positiveInt(text);
    if (value > max) throw new InvalidArgumentError(`expected at most ${max}.`);
    return value;
  };
}

/** `history` and its subcommands. */
export function historyCommand(ctx: CliContext) {
  const history = new Command("history")
    .description("the server's record of every job, kept in its store after the jobs are gone")
    .addHelpText(
      "after",
      examples([
        ["cc-executor history list --status failed --since 1d", "what failed in the last day"],
        ["cc-executor history show 3c8e…", "one job's record and the ends of its output"],
        ["cc-executor history stats", "jobs per status; run times per command shape"],
        ["cc-executor history prune --older-than 30d", "forget jobs that ended 30 days ago"],
      ]),
    );

  withTarget(
    history.command("list").alias("ls").description(
      "list recorded jobs, newest first, a page at a time",
    ),
  )
    .option(
      "--limit <n>",
      `at most this many (up to ${MAX_PAGE}; default ${DEFAULT_LIST_LIMIT})`,
      upTo(MAX_PAGE),
    )
    .option(
      "--status <status>",
      `only jobs with this status (${HistoryStatus.options.join(", ")})`,
      oneOf(HistoryStatus.options),
    )
    .option("--search <text>", "only jobs whose command contains this (any case)", (value) => {
      if (value === "") throw new InvalidArgumentError("expected some text.");
      return value;
    })
    .option(
      "--since <when>",
      "only jobs started since then: an age (30m, 2h, 7d) or an ISO 8601 date/time",
      (value) => parseSince(value),
    )
    .option(
      "--parent <job_id>",
      "only the retry attempts of this job, oldest attempt first",
      (value) => {
        if (value === "") throw new InvalidArgumentError("expected a job id.");
        return value;
      },
    )
    .option("--cursor <cursor>", "the next page: the cursor a previous list printed", (value) => {
      if (value === "") throw new InvalidArgumentError("expected the cursor a list printed.");
      return value;
    })
    .option("--json", "print {jobs, next_cursor} as JSON")
    .addHelpText(
      "after",
      examples([
        ['cc-executor history list --search "npm test" --since 2h', ""],
        ["cc-executor history list --status interrupted", "jobs whose server died under them"],
        ["cc-executor history list --parent 3c8e…", "the retry attempts of one job"],
        ["cc-executor history list --json | jq -r '.jobs[].job_id'", ""],
      ]),
    )
    .action(async (options) => {
      await using client = await connectTo(resolveTarget(options));
      const limit = options.limit ?? DEFAULT_LIST_LIMIT;
      const page = await rpc(() =>
        client.request("history.list", {
          limit,
          cursor: options.cursor,
          status: options.status,
          search: options.search,
          since: options.since,
          parent_job_id: options.parent,
        })
      );
      if (options.json) return ctx.output.json(page);
      const filtered = options.status !== undefined || options.search !== undefined ||
        options.since !== undefined || options.parent !== undefined;
      if (page.jobs.length === 0) {
        return ctx.output.err(filtered ? "no jobs match" : "no jobs in the history");
      }
      ctx.output.table(
        ["JOB", "STATUS", "EXIT", "DURATION", "STARTED", "COMMAND"],
        historyRows(page.jobs, ctx.output.paint("stdout")),
      );
      if (page.next_cursor !== null) {
        // The next page with the same filters; --since as the instant it resolved to, so a
        // relative age does not slide between pages.
        const next = ["cc-executor", "history", "list", "--cursor", page.next_cursor];
        if (options.limit !== undefined) next.push("--limit", String(limit));
        if (options.status !== undefined) next.push("--status", options.status);
        if (options.search !== undefined) next.push("--search", options.search);
        if (options.since !== undefined) next.push("--since", options.since);
        if (options.parent !== undefined) next.push("--parent", options.parent);
        if (options.url !== undefined) next.push("--url", options.url);
        ctx.output.err(`more: ${next.map(shellQuote).join(" ")}`);
      }
    });

  withTarget(history.command("show").description("one job's whole record and its output's ends"))
    .argument("<job_id>")
    .option("--json", "print the record (with output.head and output.tail) as JSON")
    .addHelpText(
      "after",
      examples([
        ["cc-executor history show 3c8e…", ""],
        ["cc-executor history show 3c8e… --json | jq -r .output.tail", "the end of its output"],
      ]),
    )
    .action(async (jobId, options) => {
      await using client = await connectTo(resolveTarget(options));
      const record = await rpc(() =>
        client.request("history.get", { job_id: jobId, include_output: true })
      );
      if (options.json) return ctx.output.json(record);
      const paint = ctx.output.paint("stdout");
      const fields = recordFields(record, paint);
      const width = Math.max(...fields.map(([name]) => name.length)) + 2;
      for (const [name, value] of fields) ctx.output.out(`${(name + ":").padEnd(width)}${value}`);
      const attempts = await rpc(() => attemptsOf(client, record.job_id));
      if (attempts && attempts.jobs.length > 0) {
        const more = attempts.next_cursor !== null ? ", the first shown" : "";
        ctx.output.out(paint.dim(`--- retry attempts (${attempts.jobs.length}${more}) ---`));
        ctx.output.table(
          ["JOB", "ATTEMPT", "STATUS", "EXIT", "DURATION", "STARTED"],
          attemptRows(attempts.jobs, paint),
        );
      }
      const head = record.output?.head ?? "";
      const tail = record.output?.tail ?? "";
      if (head === "" && tail === "") return ctx.output.out(paint.dim("--- no output ---"));
      for (const [text, which] of [[head, "first"], [tail, "last"]] as const) {
        if (text === "") continue;
        ctx.output.out(paint.dim(`--- output (${which} ${byteLength(text)} bytes) ---`));
        ctx.output.write("stdout", text.endsWith("\n") ? text : text + "\n");
      }
    });

  withTarget(
    history.command("stats").description(
      "jobs per status, run times (p50, p95) of the most frequent command shapes, and " +
        "all-time counts per shape (record_metrics)",
    ),
  )
    .option(
      "--shapes <n>",
      `report this many command shapes, most frequent first (up to ${MAX_PAGE}; default 20)`,
      upTo(MAX_PAGE),
    )
    .option("--json", "print {by_status, by_shape, metrics} as JSON")
    .addHelpText(
      "after",
      examples([
        ["cc-executor history stats --shapes 5", ""],
        ["cc-executor history stats --json | jq .by_status", ""],
        ["cc-executor history stats --json | jq '.metrics[0].mean_ms'", ""],
      ]),
    )
    .action(async (options) => {
      await using client = await connectTo(resolveTarget(options));
      const stats = await rpc(() => client.request("history.stats", { shapes: options.shapes }));
      if (options.json) return ctx.output.json(stats);
      printStats(stats, ctx);
    });

  withTarget(
    history.command("prune").description(
      "delete the records of finished jobs that ended longer ago than --older-than",
    ),
  )
    .requiredOption(
      "--older-than <age>",
      "an age: 90s, 30m, 12h, 7d, 2w, or a number of seconds",
      parseAge,
    )
    .option("--json", "print {deleted, before} as JSON")
    .addHelpText(
      "after",
      examples([
        ["cc-executor history prune --older-than 30d", ""],
        ["cc-executor history prune --older-than 3600 --json", ""],
      ]),
    )
    .action(async (options) => {
      await using client = await connectTo(resolveTarget(options));
      const result = await rpc(() =>
        client.request("history.prune", { older_than_seconds: options.olderThan })
      );
      if (options.json) return ctx.output.json(result);
      ctx.output.out(
        `deleted ${result.deleted} job ${
          result.deleted === 1 ? "record that" : "records that"
        } ended before ${result.before}`,
      );
    });

  return history;
}

/**
 * The first page of `jobId`'s retry attempts (`history.list` filtered by parent), or undefined
 * from a server older than retry attempts (it knows no such filter).
 */
async function attemptsOf(client: ExecutorClient, jobId: string) {
  try {
    return await client.request("history.list", { parent_job_id: jobId, limit: MAX_PAGE });
  } catch (error) {
    if (
      error instanceof ExecutorRpcError &&
      (error.code === ErrorCode.INVALID_PARAMS || error.code === ErrorCode.METHOD_NOT_FOUND)
    ) return undefined;
    throw error;
  }
}

/**
 * Table rows for `history list`, statuses coloured (padding counts characters, so pad first). A
 * retry attempt's command is marked `↳ attempt N of <parent>:`.
 */
function historyRows(jobs: HistoryRecord[], paint: Paint): string[][] {
  const pad = statusPadder(jobs, paint);
  return jobs.map((job) => {
    const command = job.command.replace(/\s+/g, " ");
    const parent = job.parent_job_id ?? null; // absent from a server older than retry attempts
    return [
      job.job_id,
      pad(job),
      exitText(job) ?? "",
      durationText(job),
      formatTime(job.started_at),
      (parent === null ? "" : `↳ attempt ${job.attempt ?? 1} of ${parent}: `) +
      (command.length > 60 ? command.slice(0, 59) + "…" : command),
    ];
  });
}

/** Table rows for the retry attempts `history show` lists under a job. */
function attemptRows(jobs: HistoryRecord[], paint: Paint): string[][] {
  const pad = statusPadder(jobs, paint);
  return jobs.map((job) => [
    job.job_id,
    String(job.attempt),
    pad(job),
    exitText(job) ?? "",
    durationText(job),
    formatTime(job.started_at),
  ]);
}

/** A job's status coloured and padded to the widest of `jobs`. */
function statusPadder(jobs: HistoryRecord[], paint: Paint): (job: HistoryRecord) => string {
  const width = Math.max(...jobs.map((job) => job.status.length));
  return (job) => paintStatus(job.status, paint) + " ".repeat(width - job.status.length);
}

/** Its duration, or for a job still running the time so far. */
function durationText(job: HistoryRecord): string {
  return job.duration_ms !== null
    ? formatDuration(job.duration_ms)
    : formatDuration(Math.max(0, Date.now() - Date.parse(job.started_at)));
}

function paintStatus(status: HistoryStatus, paint: Paint): string {
  if (status === "completed") return paint.green(status);
  if (status === "running" || status === "paused") return paint.yellow(status);
  return paint.red(status);
}

/** The exit code, else the signal; undefined for neither. */
function exitText(job: HistoryRecord): string | undefined {
  return job.exit_code !== null ? String(job.exit_code) : job.signal ?? undefined;
}

/** `history show`'s "name: value" lines, every field, "-" where there is nothing. */
function recordFields(record: HistoryRecord, paint: Paint): [string, string][] {
  const none = "-";
  const running = record.ended_at === null;
  const duration = record.duration_ms ??
    (running ? Math.max(0, Date.now() - Date.parse(record.started_at)) : null);
  const timeout = record.timeout.seconds === null
    ? `none (${record.timeout.source})`
    : `${record.timeout.seconds}s (${record.timeout.source})`;
  // Absent from a server older than retry attempts: a job's own first run.
  const parent = record.parent_job_id ?? null;
  const attempt = record.attempt ?? 1;
  return [
    ["job", record.job_id],
    ...(parent !== null || attempt !== 1
      ? [
        ["parent", parent ?? none] as [string, string],
        ["attempt", String(attempt)] as [string, string],
      ]
      : []),
    ["status", paintStatus(record.status, paint)],
    ["exit code", record.exit_code !== null ? String(record.exit_code) : none],
    ["signal", record.signal ?? none],
    ["reason", record.reason ?? none],
    ["command", record.command],
    ["cwd", record.cwd ?? none],
    ["shape", record.shape || none],
    ["node", record.node_id],
    ["session", record.session_id ?? none],
    ["pid", record.pid !== null ? `${record.pid} (group ${record.pgid ?? none})` : none],
    ["started", formatTime(record.started_at)],
    ["ended", running ? `${none} (not ended)` : formatTime(record.ended_at!)],
    ["duration", duration === null ? none : `${formatMs(duration)}${running ? " so far" : ""}`],
    ["bytes", `stdout ${record.bytes.stdout}, stderr ${record.bytes.stderr}`],
    ["truncated", record.truncated ? "yes (output past --max-output was not delivered)" : "no"],
    ["timeout", timeout],
    [
      "hooks",
      record.hooks === null || record.hooks === undefined ? none : JSON.stringify(record.hooks),
    ],
  ];
}

/** Counts per status, then the shapes' run times, then the all-time metrics when there are any. */
function printStats(stats: HistoryStatsResult, ctx: CliContext): void {
  printRecordStats(stats, ctx);
  // Absent from a server older than record_metrics; empty while it is off. The metrics outlive
  // pruning, so they may be all there is.
  const metrics = stats.metrics ?? [];
  if (metrics.length === 0) return;
  if (Object.keys(stats.by_status).length > 0) ctx.output.out("");
  ctx.output.table(
    ["SHAPE", "ALL RUNS", "MEAN", "MAX", "LAST RUN", "OUTCOMES"],
    metrics.map((row) => [
      row.shape || "(empty)",
      String(row.runs),
      formatMs(row.mean_ms),
      formatMs(row.max_ms),
      formatTime(row.last_at),
      outcomes(row),
    ]),
  );
}

/** What the job records say: counts per status and the shapes' run times. */
function printRecordStats(stats: HistoryStatsResult, ctx: CliContext): void {
  const known = HistoryStatus.options as readonly string[];
  const statuses = [
    ...known.filter((status) => status in stats.by_status),
    ...Object.keys(stats.by_status).filter((status) => !known.includes(status)).sort(),
  ];
  if (statuses.length === 0) return ctx.output.err("no jobs in the history");
  const total = statuses.reduce((sum, status) => sum + (stats.by_status[status] ?? 0), 0);
  ctx.output.table(["STATUS", "JOBS"], [
    ...statuses.map((status) => [status, String(stats.by_status[status])]),
    ["total", String(total)],
  ]);
  if (stats.by_shape.length === 0) {
    return ctx.output.err("no completed jobs yet, so no run times by command shape");
  }
  ctx.output.out("");
  ctx.output.table(
    ["SHAPE", "RUNS", "P50", "P95"],
    stats.by_shape.map((row) => [
      row.shape || "(empty)",
      String(row.count),
      formatMs(row.p50_ms),
      formatMs(row.p95_ms),
    ]),
  );
}

/** "completed 40, failed 2": most frequent first. */
function outcomes(row: ShapeMetrics): string {
  return Object.entries(row.by_status)
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0))
    .map(([status, count]) => `${status} ${count}`)
    .join(", ");
}

/** 123 -> "123ms", 4500 -> "4.5s", 59940 -> "59.9s", 90000 -> "1m 30s". */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)}s`;
  return formatDuration(ms);
}

/** An ISO 8601 instant as "2025-05-01 14:30:00Z" (UTC, to the second). */
function formatTime(iso: string): string {
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return iso;
  return new Date(time).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function byteLength(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** A word as a POSIX shell would read it back, so the `more:` line can be pasted. */
function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=+@%,-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
