/**
 * The wire protocol: zod schemas for every method's params and result, every
 * notification, and the error codes. Server and client both import this
 * module, so it is the one source of truth for what crosses the socket.
 * docs/protocol.md describes the same things for people.
 *
 * @module
 */
import { z } from "zod";

/** JSON-RPC 2.0 error codes, the standard ones and ours (-32000..-32099). */
export const ErrorCode = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** No job with that id on this server (never existed, or evicted from memory). */
  JOB_NOT_FOUND: -32001,
  /** The job exists but is not in a state that allows the request (e.g. cancel after it ended). */
  JOB_NOT_RUNNING: -32002,
  /** CC_EXECUTOR_MAX_JOBS jobs are already running. */
  TOO_MANY_JOBS: -32003,
  /** The shell could not be started (not found, not permitted, ...). */
  SPAWN_FAILED: -32004,
  /** The requested `cwd` does not exist or is not a directory. */
  INVALID_CWD: -32005,
  /** A client-chosen `job_id` is already in use by a job with a different command. */
  JOB_ID_CONFLICT: -32006,
  /** `jobs.input` on a job whose stdin is closed. */
  STDIN_CLOSED: -32007,
  /** The server is stopping and accepts no new jobs. */
  SHUTTING_DOWN: -32008,
  /** The history store cannot answer (Redis unreachable); jobs still run and are recorded later. */
  STORE_UNAVAILABLE: -32009,
  /** A pre_execution hook blocked the job (or a required one failed); data names the hook. */
  HOOK_BLOCKED: -32010,
  /** `templates.render` named a template that is not loaded; data lists the known ones. */
  TEMPLATE_NOT_FOUND: -32011,
  /** The command policy denies the request; data names the policy, the rule and the part. */
  POLICY_DENIED: -32012,
  /** This token's executes per minute are used up; data.retry_after_ms says when to try again. */
  RATE_LIMITED: -32013,
  /** This token may not call the method (history, hook administration: the main token's). */
  FORBIDDEN: -32014,
  /** A cluster method on a server that is not a node of a cluster (no REDIS_URL, or it is off). */
  NOT_IN_CLUSTER: -32015,
  /** The node that runs the job did not answer a request sent to it (it is down or unreachable). */
  NODE_UNREACHABLE: -32016,
  /** An execute named a node or labels that no node of the cluster that is up can take. */
  NO_ELIGIBLE_NODE: -32017,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

// ---------------------------------------------------------------------------
// Shared pieces

/** A node label (CC_EXECUTOR_NODE_LABELS), such as gpu, linux or repo:foo. */
export const Label = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$/,
  "each label: letters, digits and . _ : / - (such as gpu, linux, repo:foo)",
);

/** Client-chosen job ids are also used in logs and file names, so keep them plain. */
export const JobId = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/,
  "must be 1-128 characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
);

export const JobStatus = z.enum([
  /** Waiting in the cluster's queue for a node (docs/cluster.md#routing); pid and pgid are 0. */
  "queued",
  "running",
  "paused",
  "completed",
  "failed",
  "canceled",
  "timed_out",
  "killed",
  "error",
  /** Its node died under it (docs/cluster.md#failure-semantics); it may or may not have finished. */
  "lost",
]);
export type JobStatus = z.infer<typeof JobStatus>;

/** Statuses after which a job never changes again. */
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  "completed",
  "failed",
  "canceled",
  "timed_out",
  "killed",
  "error",
  "lost",
]);

export const StreamName = z.enum(["stdout", "stderr"]);
export type StreamName = z.infer<typeof StreamName>;

/** Timers cannot wait longer than 2^31-1 ms (about 24.8 days); longer values would fire at once. */
export const MAX_TIMEOUT_SECONDS = 2_147_483;
const Seconds = z.number().positive().max(
  MAX_TIMEOUT_SECONDS,
  `expected at most ${MAX_TIMEOUT_SECONDS} seconds (about 24.8 days, the longest a timer can wait)`,
);

// ---------------------------------------------------------------------------
// Method params and results

/** How to run Claude for an `execute` with a `prompt` (docs/claude.md). */
export const ClaudeOptions = z.strictObject({
  /** @default "stream-json" (progress is reported as claude.event) */
  output_format: z.enum(["text", "json", "stream-json"]).optional(),
  model: z.string().regex(/^[A-Za-z0-9._:\[\]-]+$/, "expected a model name such as sonnet")
    .optional(),
  /** More arguments for claude, each passed as one argument (no shell reads them). */
  args: z.array(z.string().refine((s) => !s.includes("\0"), "must not contain NUL")).max(200)
    .optional(),
});
export type ClaudeOptions = z.infer<typeof ClaudeOptions>;

/** Adaptive retry of a Claude run (docs/claude.md#adaptive-retry); off unless asked for. */
export const ClaudeRetry = z.strictObject({
  /** Runs in all, the first included. */
  max_attempts: z.number().int().min(1).max(10),
  /**
   * adaptive: both of the others; concise: after an output-token limit, run again with the prompt
   * rewritten through a more concise template; wait: after a usage or rate limit, run again once
   * it lifts. @default "adaptive"
   */
  strategy: z.enum(["adaptive", "concise", "wait"]).optional(),
  /** Longest wait for a limit to lift; a later reset ends the job, saying when. @default 900 */
  max_wait_seconds: z.number().positive().max(7 * 24 * 3600).optional(),
});
export type ClaudeRetry = z.infer<typeof ClaudeRetry>;

export const ExecuteParams = z.strictObject({
  /** Shell text, run as `<shell> -c <command>`. Give either this or `prompt`. */
  command: z.string().refine((s) => s.trim().length > 0, "command is empty").optional(),
  /**
   * A prompt for Claude: the server runs `claude -p <prompt>` itself, passing the prompt as one
   * argument with no shell, so nothing in it can be read as shell syntax.
   */
  prompt: z.string().refine((s) => s.trim().length > 0, "prompt is empty")
    .refine((s) => !s.includes("\0"), "prompt must not contain NUL").optional(),
  /** With `prompt`: how to run Claude. */
  claude: ClaudeOptions.optional(),
  /** With `prompt`: run again after a limit, with a more concise prompt or after a wait. */
  retry: ClaudeRetry.optional(),
  /** Wall-clock limit in seconds. */
  timeout: Seconds.optional(),
  /** Kill the job when it has written nothing for this many seconds. */
  idle_timeout: Seconds.optional(),
  cwd: z.string().min(1).optional(),
  /** Merged over the server's environment. */
  env: z.record(z.string().regex(/^[^=\0]+$/, "must not contain '=' or NUL"), z.string())
    .optional(),
  /** Text written to the command's stdin, which is then closed unless keep_stdin_open. */
  stdin: z.string().optional(),
  /** Keep stdin open so `jobs.input` can write to it. */
  keep_stdin_open: z.boolean().optional(),
  /** Keep running when the connection that started the job goes away. */
  detach: z.boolean().optional(),
  /** Deliver at most this many bytes of output (stdout and stderr together). */
  max_output_bytes: z.number().int().positive().optional(),
  /** Client-chosen id: a retried execute with the same id attaches to the existing job. */
  job_id: JobId.optional(),
  /**
   * false: do not stream this job's notifications to this connection; follow it with
   * `jobs.wait` and `jobs.output` instead (what the MCP face does). @default true
   */
  subscribe: z.boolean().optional(),
  /** Run on this node of the cluster (docs/cluster.md#routing). */
  node: z.string().min(1).max(200).optional(),
  /** Run on a node of the cluster that has every one of these labels. */
  labels: z.array(Label).min(1).max(20).optional(),
  /**
   * With `node` or `labels`: when the node running the job dies, run it again on another
   * eligible node instead of marking it lost. Only for commands that are safe to repeat.
   */
  retry_on_node_loss: z.boolean().optional(),
  /**
   * At most one job with this key runs at a time (across the cluster, with one); the others
   * wait their turn in order. A repo path, say.
   */
  concurrency_key: z.string().min(1).max(1000)
    .refine((s) => !s.includes("\0"), "must not contain NUL").optional(),
}).superRefine((params, ctx) => {
  if (params.node !== undefined && params.labels !== undefined) {
    ctx.addIssue({ code: "custom", path: ["labels"], message: "give node or labels, not both" });
  }
  if (params.retry_on_node_loss && params.node === undefined && params.labels === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["retry_on_node_loss"],
      message: "retry_on_node_loss goes with node or labels (a routed job)",
    });
  }
  if ((params.command === undefined) === (params.prompt === undefined)) {
    ctx.addIssue({
      code: "custom",
      path: [params.command === undefined ? "command" : "prompt"],
      message: params.command === undefined
        ? "give command (shell text) or prompt (for Claude)"
        : "give command or prompt, not both",
    });
  }
  if (params.claude !== undefined && params.prompt === undefined) {
    ctx.addIssue({ code: "custom", path: ["claude"], message: "claude options go with prompt" });
  }
  if (params.retry !== undefined && params.prompt === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["retry"],
      message: "retry goes with prompt (cc-executor rewrites the prompt it runs)",
    });
  }
});
export type ExecuteParams = z.infer<typeof ExecuteParams>;

/**
 * Where a job's timeout came from: the request (or a pre_execution hook), history, the default,
 * none (adaptive timeouts off), or CC_EXECUTOR_MAX_TIMEOUT (limit) when it was capped or applied.
 */
export const TimeoutSource = z.enum(["request", "history", "default", "none", "limit"]);

export const ExecuteResult = z.object({
  job_id: z.string(),
  pid: z.number().int(),
  pgid: z.number().int(),
  status: JobStatus,
  /** True when `job_id` named a job that already existed, which this connection now follows. */
  existing: z.boolean(),
  /** The job's wall-clock limit and where it came from (see docs/protocol.md#adaptive-timeouts). */
  timeout: z.object({
    seconds: z.number().nullable(),
    source: TimeoutSource,
    /** Past runs of the same command shape the estimate rests on (0 unless source is history). */
    samples: z.number().int(),
  }),
});
export type ExecuteResult = z.infer<typeof ExecuteResult>;

export const ControlType = z.enum(["PAUSE", "RESUME", "CANCEL"]);
export type ControlType = z.infer<typeof ControlType>;

export const ControlParams = z.strictObject({
  /** Case-insensitive: earlier clients sent lower case. */
  type: z.string().transform((s) => s.toUpperCase()).pipe(ControlType),
  /** Defaults to the latest job started on this connection. */
  job_id: z.string().optional(),
});
export type ControlParams = z.input<typeof ControlParams>;

export const ControlResult = z.object({ job_id: z.string(), status: JobStatus });
export type ControlResult = z.infer<typeof ControlResult>;

export const ByteCounts = z.object({ stdout: z.number().int(), stderr: z.number().int() });
export type ByteCounts = z.infer<typeof ByteCounts>;

export const JobInfo = z.object({
  job_id: z.string(),
  command: z.string(),
  cwd: z.string().nullable(),
  status: JobStatus,
  pid: z.number().int(),
  pgid: z.number().int(),
  detach: z.boolean(),
  started_at: z.string(),
  ended_at: z.string().nullable(),
  duration_ms: z.number().nullable(),
  exit_code: z.number().int().nullable(),
  signal: z.string().nullable(),
  bytes: ByteCounts,
  truncated: z.boolean(),
  /** The last sequence number used by this job's notifications. */
  last_seq: z.number().int(),
  reason: z.string().nullable(),
  /** 1, or more when error hooks asked for retries. */
  attempt: z.number().int(),
});
export type JobInfo = z.infer<typeof JobInfo>;

export const JobsListParams = z.strictObject({
  status: JobStatus.optional(),
  limit: z.number().int().positive().max(10_000).optional(),
});
export const JobsListResult = z.object({ jobs: z.array(JobInfo) });
export type JobsListResult = z.infer<typeof JobsListResult>;

export const JobsGetParams = z.strictObject({ job_id: z.string() });
export const JobsGetResult = JobInfo;

export const JobsSubscribeParams = z.strictObject({
  job_id: z.string(),
  /** Replay from this sequence number (inclusive); 0 or absent: everything still buffered. */
  from_seq: z.number().int().nonnegative().optional(),
});
export type JobsSubscribeParams = z.infer<typeof JobsSubscribeParams>;

export const JobsSubscribeResult = z.object({
  job_id: z.string(),
  status: JobStatus,
  /** The first sequence number that will be replayed (null when nothing is buffered). */
  replay_from_seq: z.number().int().nullable(),
  /** Notifications asked for that the replay buffer no longer holds. */
  missed: z.number().int().nonnegative(),
});
export type JobsSubscribeResult = z.infer<typeof JobsSubscribeResult>;

export const JobsUnsubscribeParams = z.strictObject({ job_id: z.string() });
export const JobsUnsubscribeResult = z.object({ job_id: z.string(), subscribed: z.boolean() });

export const JobsInputParams = z.strictObject({
  job_id: z.string(),
  data: z.string().optional(),
  /** Close stdin after writing `data`. */
  eof: z.boolean().optional(),
});
export type JobsInputParams = z.infer<typeof JobsInputParams>;
export const JobsInputResult = z.object({
  job_id: z.string(),
  bytes_written: z.number().int(),
  stdin_open: z.boolean(),
});

/** A regular expression in JavaScript syntax, checked when the params are. */
const Pattern = z.string().min(1).max(1000).superRefine((source, ctx) => {
  try {
    new RegExp(source);
  } catch (error) {
    ctx.addIssue({
      code: "custom",
      message: `not a valid regular expression: ${(error as Error).message}`,
    });
  }
});

export const OutputStreams = z.enum(["stdout", "stderr", "both"]);
export type OutputStreams = z.infer<typeof OutputStreams>;

/** The most text one `jobs.output` answer may carry. */
export const MAX_OUTPUT_READ_BYTES = 16 * 1024 * 1024;

export const JobsOutputParams = z.strictObject({
  job_id: z.string(),
  /** @default "both" (stdout, then stderr) */
  stream: OutputStreams.optional(),
  /** Raw text of one stream from this byte offset (as delivered, after output hooks). */
  offset: z.number().int().nonnegative().optional(),
  /** The first N lines of each stream. */
  head_lines: z.number().int().positive().max(1_000_000).optional(),
  /** The last N lines of each stream. */
  tail_lines: z.number().int().positive().max(1_000_000).optional(),
  /** Lines matching this regular expression (JavaScript syntax). */
  grep: Pattern.optional(),
  /** With grep. */
  ignore_case: z.boolean().optional(),
  /** With grep: lines shown before and after each match. @default 0 */
  context_lines: z.number().int().nonnegative().max(100).optional(),
  /** With grep: matching lines shown at most. @default 200 */
  max_matches: z.number().int().positive().max(100_000).optional(),
  /** Most bytes of text in the answer. @default 65536 */
  max_bytes: z.number().int().positive().max(MAX_OUTPUT_READ_BYTES).optional(),
}).superRefine((params, ctx) => {
  const modes = (["offset", "head_lines", "tail_lines", "grep"] as const)
    .filter((mode) => params[mode] !== undefined);
  if (modes.length > 1) {
    ctx.addIssue({
      code: "custom",
      path: [modes[1]!],
      message: `give one of offset, head_lines, tail_lines or grep, not ${modes.join(" and ")}`,
    });
  }
  if (params.offset !== undefined && (params.stream ?? "both") === "both") {
    ctx.addIssue({
      code: "custom",
      path: ["stream"],
      message: 'offset reads one stream: set stream to "stdout" or "stderr"',
    });
  }
  for (const key of ["ignore_case", "context_lines", "max_matches"] as const) {
    if (params[key] !== undefined && params.grep === undefined) {
      ctx.addIssue({ code: "custom", path: [key], message: `${key} goes with grep` });
    }
  }
});
export type JobsOutputParams = z.input<typeof JobsOutputParams>;

export const OutputSection = z.object({
  stream: StreamName,
  /** all: the whole stream; range: bytes from an offset; head, tail; match: grep; error: lines around errors. */
  why: z.enum(["all", "range", "head", "tail", "match", "error"]),
  /** 1-based, inclusive. */
  first_line: z.number().int(),
  last_line: z.number().int(),
  offset: z.number().int(),
  /** Just past the last byte shown. */
  end_offset: z.number().int(),
  text: z.string(),
});
export type OutputSection = z.infer<typeof OutputSection>;

export const JobsOutputResult = z.object({
  job_id: z.string(),
  status: JobStatus,
  /** What the job delivered in all, per stream. */
  totals: z.object({
    stdout: z.object({ bytes: z.number().int(), lines: z.number().int() }),
    stderr: z.object({ bytes: z.number().int(), lines: z.number().int() }),
  }),
  /**
   * Without a mode: everything when it fits max_bytes, else the head, the lines around errors
   * and the tail of each stream.
   */
  sections: z.array(OutputSection),
  /** Bytes and lines of the chosen streams that no section shows. */
  omitted_bytes: z.number().int(),
  omitted_lines: z.number().int(),
  /** True when max_bytes or max_matches cut what was asked for. */
  truncated: z.boolean(),
  /** grep: lines that matched in all. */
  matches: z.number().int().optional(),
  /** offset: where the next read continues; null at the end of the stream. */
  next_offset: z.number().int().nullable().optional(),
  /** Why part of the output is not available (it could not be kept); null when all of it is. */
  incomplete: z.string().nullable(),
  /**
   * With incomplete: the job's last characters (both streams, interleaved, as history keeps
   * them), so the end of the output is known even when the spool could not keep it.
   */
  last_output: z.string().optional(),
});
export type JobsOutputResult = z.infer<typeof JobsOutputResult>;

/** The longest one `jobs.wait` call waits. */
export const MAX_WAIT_SECONDS = 3600;

/** Where a pattern wait stopped reading a stream: the next line to look at. */
const StreamPosition = z.object({
  offset: z.number().int().nonnegative(),
  line: z.number().int().positive(),
});

/** Where a pattern wait stopped reading each stream; pass it to the next wait to go on from there. */
export const WaitCursor = z.object({ stdout: StreamPosition, stderr: StreamPosition });
export type WaitCursor = z.infer<typeof WaitCursor>;

export const JobsWaitParams = z.strictObject({
  job_id: z.string(),
  /** Return once a line of output (either stream) matches this regular expression. */
  pattern: Pattern.optional(),
  /** With pattern. */
  ignore_case: z.boolean().optional(),
  /** With pattern: only output written after this call counts. @default false */
  new_output_only: z.boolean().optional(),
  /**
   * With pattern: go on from the `cursor` of an earlier wait on this job, so a wait taken in
   * slices neither reads the output twice nor misses what came between.
   */
  cursor: WaitCursor.optional(),
  /** Return once the job has written nothing for this many seconds. */
  idle_seconds: z.number().positive().max(MAX_WAIT_SECONDS).optional(),
  /** Return after this many seconds whatever happened. @default 30 */
  timeout_seconds: z.number().positive().max(MAX_WAIT_SECONDS).optional(),
}).superRefine((params, ctx) => {
  for (const key of ["ignore_case", "new_output_only", "cursor"] as const) {
    if (params[key] !== undefined && params.pattern === undefined) {
      ctx.addIssue({ code: "custom", path: [key], message: `${key} goes with pattern` });
    }
  }
  if (params.cursor !== undefined && params.new_output_only !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["new_output_only"],
      message: "give cursor or new_output_only, not both",
    });
  }
});
export type JobsWaitParams = z.input<typeof JobsWaitParams>;

export const JobsWaitResult = z.object({
  job_id: z.string(),
  status: JobStatus,
  /** finished: the job ended; matched: pattern; idle: idle_seconds; timeout: timeout_seconds. */
  reason: z.enum(["finished", "matched", "idle", "timeout"]),
  waited_ms: z.number(),
  /** With reason matched: the line that matched (its text cut to 1,000 characters). */
  match: z.object({
    stream: StreamName,
    line: z.number().int(),
    offset: z.number().int(),
    text: z.string(),
  }).nullable(),
  /** With pattern: where reading stopped, for the next wait's `cursor`; else null. */
  cursor: WaitCursor.nullable(),
  bytes: ByteCounts,
  exit_code: z.number().int().nullable(),
});
export type JobsWaitResult = z.infer<typeof JobsWaitResult>;

// ---------------------------------------------------------------------------
// History: every job's record, from the store (it outlives the jobs held in memory)

/**
 * A record's status: a job's, `interrupted` when the server running it died, or `blocked` when a
 * pre_execution hook refused it (it never ran).
 */
export const HistoryStatus = z.enum([...JobStatus.options, "interrupted", "blocked"]);
export type HistoryStatus = z.infer<typeof HistoryStatus>;

export const HistoryRecord = z.object({
  job_id: z.string(),
  command: z.string(),
  /** The normalised command its timing is kept under, e.g. "npm test". */
  shape: z.string(),
  cwd: z.string().nullable(),
  session_id: z.string().nullable(),
  node_id: z.string(),
  status: HistoryStatus,
  pid: z.number().int().nullable(),
  pgid: z.number().int().nullable(),
  started_at: z.string(),
  ended_at: z.string().nullable(),
  duration_ms: z.number().nullable(),
  exit_code: z.number().int().nullable(),
  signal: z.string().nullable(),
  reason: z.string().nullable(),
  bytes: ByteCounts,
  truncated: z.boolean(),
  timeout: z.object({
    seconds: z.number().nullable(),
    source: TimeoutSource,
  }),
  /**
   * The logical job this record is a retry attempt of (a child record, job id
   * `<parent>.attempt-<N>`), null for a job's own run.
   */
  parent_job_id: z.string().nullable(),
  /** Which run of the logical job this is: 1 for its first (and for a record without a parent). */
  attempt: z.number().int().positive(),
  hooks: z.unknown(),
  /** With include_output: the first and last bytes of the output (interleaved), bounded. */
  output: z.object({ head: z.string(), tail: z.string() }).optional(),
});
export type HistoryRecord = z.infer<typeof HistoryRecord>;

export const HistoryListParams = z.strictObject({
  /** @default 50 */
  limit: z.number().int().positive().max(1000).optional(),
  /** `next_cursor` from the previous page. */
  cursor: z.string().min(1).optional(),
  status: HistoryStatus.optional(),
  /** Case-insensitive substring of the command. */
  search: z.string().min(1).optional(),
  /** Only jobs started at or after this time (ISO 8601). */
  since: z.iso.datetime({ offset: true }).optional(),
  /**
   * Only this job's retry attempts (the records whose parent_job_id it is), oldest attempt first
   * instead of newest first. Without it every record is listed, attempts included.
   */
  parent_job_id: z.string().min(1).optional(),
});
export const HistoryListResult = z.object({
  jobs: z.array(HistoryRecord),
  next_cursor: z.string().nullable(),
});

export const HistoryGetParams = z.strictObject({
  job_id: z.string(),
  include_output: z.boolean().optional(),
});

export const HistoryStatsParams = z.strictObject({
  /** How many command shapes to report, most frequent first. @default 20 */
  shapes: z.number().int().positive().max(1000).optional(),
});
/** All-time counts of one command shape, kept by the record_metrics hook (they survive pruning). */
export const ShapeMetrics = z.object({
  shape: z.string(),
  runs: z.number().int(),
  /** Runs by outcome status, e.g. { "completed": 40, "failed": 2 }. */
  by_status: z.record(z.string(), z.number().int()),
  total_ms: z.number(),
  mean_ms: z.number(),
  max_ms: z.number(),
  /** When the last run ended (ISO 8601). */
  last_at: z.string(),
});
export type ShapeMetrics = z.infer<typeof ShapeMetrics>;

export const HistoryStatsResult = z.object({
  by_status: z.record(z.string(), z.number().int()),
  by_shape: z.array(z.object({
    shape: z.string(),
    count: z.number().int(),
    p50_ms: z.number(),
    p95_ms: z.number(),
  })),
  /** From record_metrics (CC_EXECUTOR_RECORD_METRICS=on), most runs first; empty when it is off. */
  metrics: z.array(ShapeMetrics),
});
export type HistoryStatsResult = z.infer<typeof HistoryStatsResult>;

export const HistoryPruneParams = z.strictObject({
  /** Delete finished jobs that ended more than this many seconds ago. */
  older_than_seconds: z.number().positive(),
});
export const HistoryPruneResult = z.object({
  deleted: z.number().int(),
  /** The cut-off: jobs that ended before it were deleted. */
  before: z.string(),
});

export const StoreInfo = z.object({
  /** "none": history is off (CC_EXECUTOR_HISTORY=off). */
  backend: z.enum(["sqlite", "redis", "none"]),
  /** "degraded": the backend is unreachable; writes wait in a queue and are retried. */
  status: z.enum(["ok", "degraded"]),
  pending_writes: z.number().int(),
  dropped_writes: z.number().int(),
  location: z.string(),
});
export type StoreInfo = z.infer<typeof StoreInfo>;

export const EmptyParams = z.strictObject({});

export const ServerInfoResult = z.object({
  name: z.literal("cc-executor"),
  version: z.string(),
  uptime_ms: z.number(),
  /** The server's process id. */
  pid: z.number().int(),
  sessions: z.number().int(),
  running_jobs: z.number().int(),
  /** Where job records live, and whether it is reachable. */
  store: StoreInfo,
  shell: z.string(),
  process_groups: z.enum(["setsid", "detached"]),
  limits: z.object({
    max_jobs: z.number().int(),
    max_jobs_per_session: z.number().int(),
    max_sessions: z.number().int(),
    max_message_bytes: z.number().int(),
    /** Jobs this connection's token may have running at once (all its connections together). */
    max_jobs_per_token: z.number().int(),
    /** Executes this connection's token may send per minute; 0: no limit. */
    executes_per_minute: z.number().int(),
    /** CC_EXECUTOR_MAX_OUTPUT_BYTES: most output one job may deliver; null: no cap. */
    max_output_bytes: z.number().int().nullable(),
    /**
     * CC_EXECUTOR_MAX_TIMEOUT: longest wall time of a job, in seconds, from its start, every run
     * (retries) and the waits between them included; null: no cap.
     */
    max_timeout_seconds: z.number().int().nullable(),
    replay_buffer_bytes: z.number().int(),
    kill_grace_ms: z.number().int(),
  }),
  /** Who this connection speaks for (docs/security.md). */
  token: z.object({
    /** "default" for the main token (or no token), else its name in the policy file. */
    name: z.string(),
    /** The command policy its commands are checked against; null: none. */
    policy: z.string().nullable(),
    /** Sees every job and history, and may reload hooks. */
    admin: z.boolean(),
    history: z.boolean(),
  }),
});
export type ServerInfoResult = z.infer<typeof ServerInfoResult>;

export const PingResult = z.object({ pong: z.literal(true), time: z.string() });

// ---------------------------------------------------------------------------
// Hooks (docs/hooks.md)

export const HookPoint = z.enum(["pre_execution", "post_execution", "error", "output"]);

/** What one hook did once. */
export const HookExecution = z.object({
  hook: z.string(),
  point: HookPoint,
  kind: z.enum(["builtin", "typescript", "command"]),
  job_id: z.string(),
  at: z.string(),
  duration_ms: z.number(),
  outcome: z.enum(["proceeded", "changed", "blocked", "retry", "failed"]),
  message: z.string().optional(),
  error: z.string().optional(),
  on_failure: z.enum(["proceed", "block"]).optional(),
  changes: z.array(z.string()).optional(),
});
export type HookExecution = z.infer<typeof HookExecution>;

export const HookStatusResult = z.object({
  /** The TypeScript hooks folder. */
  dir: z.string(),
  /** The command hooks file. */
  config_file: z.string(),
  /** Why the folder was not read, when it was not (e.g. it is cc-executor's own source). */
  dir_note: z.string().nullable(),
  /** False in the compiled binary: only command hooks and built-ins work there. */
  typescript_supported: z.boolean(),
  loaded_at: z.string(),
  /** Files and entries that were refused, with why. */
  problems: z.array(z.object({ source: z.string(), message: z.string() })),
  hooks: z.array(z.object({
    name: z.string(),
    point: HookPoint,
    kind: z.enum(["builtin", "typescript", "command"]),
    /** The built-in's name, the TypeScript file, or the hooks.json file. */
    location: z.string(),
    command: z.array(z.string()).optional(),
    timeout_ms: z.number().int(),
    on_failure: z.enum(["proceed", "block"]),
    required: z.boolean(),
    counts: z.object({
      runs: z.number().int(),
      proceeded: z.number().int(),
      changed: z.number().int(),
      blocked: z.number().int(),
      retry: z.number().int(),
      failed: z.number().int(),
      mean_ms: z.number(),
    }),
  })),
  /** The latest executions, oldest first (output hooks: failures only). */
  recent: z.array(HookExecution),
});
export type HookStatusResult = z.infer<typeof HookStatusResult>;

/** A dry run of one point's chain: the hooks run for real, the command does not. */
export const HooksRunParams = z.strictObject({
  point: HookPoint,
  command: z.string().refine((s) => s.trim().length > 0, "command is empty"),
  cwd: z.string().min(1).optional(),
  env: z.record(z.string(), z.string()).optional(),
  timeout: Seconds.optional(),
  /** post_execution and error: the outcome to pretend. @default failed with exit code 1 for error, completed otherwise */
  status: z.enum(["completed", "failed", "canceled", "timed_out", "killed", "error"]).optional(),
  exit_code: z.number().int().optional(),
  /** output: the text to pass through the output hooks (as one stdout chunk), and the outcome's output. */
  output: z.string().optional(),
});
export type HooksRunParams = z.input<typeof HooksRunParams>;

export const HooksRunResult = z.object({
  point: HookPoint,
  executions: z.array(HookExecution),
  /** pre_execution: the request as the job would run it. */
  request: z.object({
    command: z.string(),
    cwd: z.string().nullable(),
    env: z.record(z.string(), z.string()),
    timeout: z.number().nullable(),
  }).optional(),
  /** pre_execution: set when the chain blocks the job. */
  blocked: z.object({ hook: z.string(), message: z.string() }).nullable().optional(),
  /** post_execution and error: what hooks would attach. */
  attached: z.record(z.string(), z.unknown()).optional(),
  /** error: the retry a hook would ask for. */
  retry: z.object({ hook: z.string(), command: z.string(), message: z.string().nullable() })
    .nullable().optional(),
  /** output: the text as it would be sent and stored. */
  output: z.string().optional(),
});
export type HooksRunResult = z.infer<typeof HooksRunResult>;

// ---------------------------------------------------------------------------
// Prompt templates (docs/claude.md#templates)

/** A template file that was refused, and why. */
export const TemplateProblem = z.object({
  /** The file's path. */
  file: z.string(),
  /** 1-based; null when the problem concerns the whole file (unreadable, a bad name). */
  line: z.number().int().nullable(),
  message: z.string(),
});
export type TemplateProblem = z.infer<typeof TemplateProblem>;

export const TemplateInfo = z.object({
  /** The file name without `.md`. */
  name: z.string(),
  /** The template's file. */
  file: z.string(),
  /** "builtin": shipped with cc-executor; "user": from CC_EXECUTOR_TEMPLATES_DIR. */
  source: z.enum(["builtin", "user"]),
  /** The built-in file this user template replaces, if any. */
  overrides: z.string().nullable(),
  description: z.string(),
  /** Conciseness rank: 1 is mildly more concise, higher is terser. */
  order: z.number().int(),
  /** The placeholders it uses, e.g. ["prompt", "word_budget"]. */
  placeholders: z.array(z.string()),
  /** Retries that used it, across every server sharing the store. */
  uses: z.number().int(),
  successes: z.number().int(),
  /** successes / uses; null when it was never used. */
  success_rate: z.number().nullable(),
  /** When a retry last used it (ISO 8601); null when never. */
  last_used_at: z.string().nullable(),
});
export type TemplateInfo = z.infer<typeof TemplateInfo>;

export const TemplatesListResult = z.object({
  /** The user's templates folder (CC_EXECUTOR_TEMPLATES_DIR), absolute. */
  dir: z.string(),
  /** Why that folder was not read, when it was not (it is the built-ins' own folder). */
  dir_note: z.string().nullable(),
  loaded_at: z.string(),
  /** Mildest first (by order, then name). */
  templates: z.array(TemplateInfo),
  /** Files that were refused. */
  problems: z.array(TemplateProblem),
  /** Set when the statistics could not be read (history off, Redis down): uses are then 0. */
  stats_note: z.string().nullable(),
});
export type TemplatesListResult = z.infer<typeof TemplatesListResult>;

export const TemplatesRenderParams = z.strictObject({
  name: z.string().min(1),
  /** The original prompt. */
  prompt: z.string().refine((s) => s.trim().length > 0, "prompt is empty"),
  /** The output-token limit Claude hit. @default 32000 (Claude Code's default limit) */
  max_output_tokens: z.number().int().positive().max(100_000_000).optional(),
  /** The attempt the prompt is for (1 is the original run). @default 2 */
  attempt: z.number().int().positive().max(1000).optional(),
});
export type TemplatesRenderParams = z.input<typeof TemplatesRenderParams>;

export const TemplatesRenderResult = z.object({
  name: z.string(),
  /** The prompt as the template rewrites it. */
  text: z.string(),
  max_output_tokens: z.number().int(),
  /** The word budget the template was given (~0.6 words per token of the limit). */
  word_budget: z.number().int(),
  attempt: z.number().int(),
});
export type TemplatesRenderResult = z.infer<typeof TemplatesRenderResult>;

// Cluster (docs/cluster.md)

/** A node of the cluster, as its last heartbeat described it. */
export const ClusterNode = z.object({
  id: z.string(),
  /** up: its heartbeat is current; down: it lapsed (CC_EXECUTOR_NODE_DOWN_AFTER). */
  status: z.enum(["up", "down"]),
  /** Where clients reach it (CC_EXECUTOR_NODE_URL, else its listen URL). */
  url: z.string().nullable(),
  labels: z.array(z.string()),
  /** Jobs it takes at once (CC_EXECUTOR_NODE_CAPACITY). */
  capacity: z.number().int(),
  /** Its jobs running at its last heartbeat. */
  running: z.number().int(),
  version: z.string(),
  hostname: z.string(),
  pid: z.number().int(),
  started_at: z.string(),
  last_heartbeat_at: z.string(),
});
export type ClusterNode = z.infer<typeof ClusterNode>;

export const ClusterStatusResult = z.object({
  /** The node that answered. */
  node_id: z.string(),
  /** Seconds without a heartbeat after which a node is down. */
  down_after_seconds: z.number(),
  /** Every node that registered and has not left cleanly, by id. */
  nodes: z.array(ClusterNode),
  /** The routing queues that hold or held jobs (docs/cluster.md#routing). */
  queues: z.array(z.object({
    /**
     * `node:<id>` for jobs pinned to a node, `labels:<a,b>` for jobs asking for labels, `key:<k>`
     * for jobs waiting for concurrency key k (taken: the one job that holds it).
     */
    queue: z.string(),
    node: z.string().nullable(),
    labels: z.array(z.string()).nullable(),
    /** Jobs waiting for a node to take them. */
    waiting: z.number().int(),
    /** Jobs a node has taken and not yet let go of (starting, or running with retry_on_node_loss). */
    taken: z.number().int(),
  })),
});
export type ClusterStatusResult = z.infer<typeof ClusterStatusResult>;

export const ClusterJobsParams = z.strictObject({
  /** At most this many, newest first. @default 100 */
  limit: z.number().int().positive().max(10_000).optional(),
});

/** A running job of some node, from the shared records. */
export const ClusterJob = z.object({
  job_id: z.string(),
  node_id: z.string(),
  /**
   * The node's state now: up, down (its heartbeat lapsed: the job may be gone with it), or
   * unknown (not registered: it left, or never joined, as a server with CC_EXECUTOR_CLUSTER=off).
   */
  node_status: z.enum(["up", "down", "unknown"]),
  command: z.string(),
  cwd: z.string().nullable(),
  /** Null until its process was spawned. */
  pid: z.number().int().nullable(),
  started_at: z.string(),
});
export type ClusterJob = z.infer<typeof ClusterJob>;

export const ClusterJobsResult = z.object({
  node_id: z.string(),
  jobs: z.array(ClusterJob),
});
export type ClusterJobsResult = z.infer<typeof ClusterJobsResult>;

/** Every method: its params schema and result schema. */
export const Methods = {
  execute: { params: ExecuteParams, result: ExecuteResult },
  control: { params: ControlParams, result: ControlResult },
  "jobs.list": { params: JobsListParams, result: JobsListResult },
  "jobs.get": { params: JobsGetParams, result: JobsGetResult },
  "jobs.subscribe": { params: JobsSubscribeParams, result: JobsSubscribeResult },
  "jobs.unsubscribe": { params: JobsUnsubscribeParams, result: JobsUnsubscribeResult },
  "jobs.input": { params: JobsInputParams, result: JobsInputResult },
  /** A job's output, whole or shaped: by offset, head, tail, grep, or fitted to max_bytes. */
  "jobs.output": { params: JobsOutputParams, result: JobsOutputResult },
  /** Waits until the job ends, its output matches, it goes idle, or a deadline. */
  "jobs.wait": { params: JobsWaitParams, result: JobsWaitResult },
  "history.list": { params: HistoryListParams, result: HistoryListResult },
  "history.get": { params: HistoryGetParams, result: HistoryRecord },
  "history.stats": { params: HistoryStatsParams, result: HistoryStatsResult },
  "history.prune": { params: HistoryPruneParams, result: HistoryPruneResult },
  "hooks.status": { params: EmptyParams, result: HookStatusResult },
  /** Same as hooks.status, under the name clients of the earlier cc_executor use. */
  hook_status: { params: EmptyParams, result: HookStatusResult },
  /** Loads the hooks again (as SIGHUP does); jobs already running keep the hooks they started with. */
  "hooks.reload": { params: EmptyParams, result: HookStatusResult },
  "hooks.run": { params: HooksRunParams, result: HooksRunResult },
  "templates.list": { params: EmptyParams, result: TemplatesListResult },
  /** What a prompt becomes through one template; nothing runs. */
  "templates.render": { params: TemplatesRenderParams, result: TemplatesRenderResult },
  "server.info": { params: EmptyParams, result: ServerInfoResult },
  /** The nodes of the cluster this server belongs to, up and down. */
  "cluster.status": { params: EmptyParams, result: ClusterStatusResult },
  /** The jobs running on every node, from the shared records. */
  "cluster.jobs": { params: ClusterJobsParams, result: ClusterJobsResult },
  ping: { params: EmptyParams, result: PingResult },
  /** Accepted from clients of the earlier cc_executor, which answered pings with `pong`. */
  pong: { params: z.unknown(), result: z.object({}) },
} as const;
export type MethodName = keyof typeof Methods;
export type MethodParams<M extends MethodName> = z.input<(typeof Methods)[M]["params"]>;
export type MethodResult<M extends MethodName> = z.infer<(typeof Methods)[M]["result"]>;

// ---------------------------------------------------------------------------
// Claude runs (docs/claude.md)

/** A limit a Claude run hit, with what could be read from Claude's message. */
export const ClaudeLimit = z.object({
  kind: z.enum(["token_limit", "usage_limit", "rate_limit", "context_overflow"]),
  /** Whether running again (after a wait, or with a shorter prompt) can succeed. */
  retryable: z.boolean(),
  /** The line (or event field) it was read from. */
  message: z.string(),
  /** token_limit: the output-token maximum the message names. */
  max_output_tokens: z.number().int().nullable().optional(),
  /** usage_limit: which limit ("session limit", "weekly limit"...). */
  limit: z.string().optional(),
  /** usage_limit: when it resets (ISO 8601), null when unknown. */
  resets_at: z.string().nullable().optional(),
  reset_text: z.string().nullable().optional(),
  time_zone: z.string().nullable().optional(),
  /** rate_limit: 429 (rate_limit) or 529 (overloaded). */
  cause: z.enum(["rate_limit", "overloaded"]).optional(),
  status: z.number().int().nullable().optional(),
  retry_after_seconds: z.number().nullable().optional(),
  /** context_overflow: the figures of "A + B > C", when given. */
  input_tokens: z.number().int().nullable().optional(),
  max_tokens: z.number().int().nullable().optional(),
  context_limit: z.number().int().nullable().optional(),
});
export type ClaudeLimit = z.infer<typeof ClaudeLimit>;

/** What `process.completed` says about a Claude run. */
export const ClaudeSummary = z.object({
  /** The result event's answer or error text (stream-json only), else null. */
  result: z.string().nullable(),
  is_error: z.boolean().nullable(),
  subtype: z.string().nullable(),
  cost_usd: z.number().nullable(),
  usage: z.record(z.string(), z.number()).nullable(),
  num_turns: z.number().int().nullable(),
  session_id: z.string().nullable(),
  model: z.string().nullable(),
  tool_use_count: z.number().int(),
  limit: ClaudeLimit.nullable(),
  /** Runs made: more than 1 after retries (adaptive retry, or error hooks). */
  attempts: z.number().int().optional(),
});
export type ClaudeSummary = z.infer<typeof ClaudeSummary>;

/** Progress of a Claude run read from its stream-json output: what changed and the totals. */
export const ClaudeEventParams = z.object({
  job_id: z.string(),
  seq: z.number().int(),
  /** init, turn, text, tool_use, tool_error, api_retry, result. */
  reasons: z.array(z.string()),
  turns: z.number().int(),
  tool_uses: z.record(z.string(), z.number().int()),
  tool_use_count: z.number().int(),
  session_id: z.string().nullable(),
  model: z.string().nullable(),
  /** The tools this event used. */
  tools: z.array(z.string()).optional(),
  /** The latest assistant text (bounded). */
  text: z.string().optional(),
  /** With the result event: answer, cost, usage, turns. */
  result: z.object({
    subtype: z.string(),
    is_error: z.boolean(),
    text: z.string().nullable(),
    total_cost_usd: z.number().nullable(),
    usage: z.object({
      input_tokens: z.number(),
      output_tokens: z.number(),
      cache_creation_input_tokens: z.number(),
      cache_read_input_tokens: z.number(),
    }).nullable(),
    num_turns: z.number().int().nullable(),
    duration_ms: z.number().nullable(),
    duration_api_ms: z.number().nullable(),
    session_id: z.string().nullable(),
    api_error_status: z.number().int().nullable(),
  }).optional(),
});

/** A Claude run will run again after a limit (adaptive retry): which attempt, why, how. */
export const ClaudeRetryParams = z.object({
  job_id: z.string(),
  seq: z.number().int(),
  /** The attempt about to run. */
  attempt: z.number().int(),
  /** The limit that ended the previous run. */
  reason: z.enum(["token_limit", "usage_limit", "rate_limit"]),
  /** The template the prompt was rewritten through (token_limit), else null. */
  template: z.string().nullable(),
  /** How long the job waits before the run (rate and usage limits), 0 for none. */
  wait_seconds: z.number(),
  /** When the run starts. */
  resumes_at: z.string(),
});

/** A Claude run hit a limit: sent the moment it shows in the output. */
export const ClaudeLimitParams = ClaudeLimit.extend({
  job_id: z.string(),
  seq: z.number().int(),
});

// ---------------------------------------------------------------------------
// Notifications (server -> client)

export const ConnectedParams = z.object({
  session_id: z.string(),
  version: z.string(),
  capabilities: z.object({
    methods: z.array(z.string()),
    notifications: z.array(z.string()),
  }),
});
export type ConnectedParams = z.infer<typeof ConnectedParams>;

export const ProcessStartedParams = z.object({
  job_id: z.string(),
  seq: z.number().int(),
  pid: z.number().int(),
  pgid: z.number().int(),
  /** The command as it runs, after pre_execution hooks (and an error hook's retry) changed it. */
  command: z.string(),
  cwd: z.string().nullable(),
  /** 1, then 2, 3... for runs an error hook asked for. */
  attempt: z.number().int(),
});

export const ProcessOutputParams = z.object({
  job_id: z.string(),
  seq: z.number().int(),
  stream: StreamName,
  /** Same as `stream`, for clients of the earlier cc_executor. */
  type: StreamName,
  /** Byte offset of this chunk within its stream. */
  offset: z.number().int(),
  /** The chunk as text; chunks never split a UTF-8 character. */
  data: z.string(),
  /** Present and true on the last chunk delivered before max_output_bytes cut the output. */
  truncated: z.boolean().optional(),
});
export type ProcessOutputParams = z.infer<typeof ProcessOutputParams>;

export const ProcessPausedParams = z.object({ job_id: z.string(), seq: z.number().int() });
export const ProcessResumedParams = ProcessPausedParams;

export const ProcessCompletedParams = z.object({
  job_id: z.string(),
  seq: z.number().int(),
  status: JobStatus,
  exit_code: z.number().int().nullable(),
  signal: z.string().nullable(),
  duration_ms: z.number(),
  bytes: ByteCounts,
  truncated: z.boolean(),
  /** Why the server ended the job (timeout, cancel, disconnect, shutdown), or an error message. */
  reason: z.string().nullable(),
  /** Present when hooks ran after the job: what they attached, by hook name, and the runs made. */
  hooks: z.object({
    attached: z.record(z.string(), z.unknown()),
    attempts: z.number().int(),
  }).optional(),
  /** Present for a Claude run (docs/claude.md): its result, cost, usage and any limit it hit. */
  claude: ClaudeSummary.optional(),
});
export type ProcessCompletedParams = z.infer<typeof ProcessCompletedParams>;

export const ProcessErrorParams = z.object({
  job_id: z.string(),
  seq: z.number().int(),
  message: z.string(),
});

/** A routed job went into the cluster's queue; sent before the execute's response. */
export const JobQueuedParams = z.object({
  job_id: z.string(),
  /**
   * The queue (see cluster.status): `node:<id>` or `labels:<a,b>` for a routed job, `key:<key>`
   * for one waiting for its concurrency key.
   */
  queue: z.string(),
  /** Jobs in that queue, this one included, when it went in. */
  waiting: z.number().int(),
});
export type JobQueuedParams = z.infer<typeof JobQueuedParams>;

/**
 * The node running a job with retry_on_node_loss died; another node runs it again as the next
 * attempt (`process.started` follows, its output offsets from 0).
 */
export const JobNodeLostParams = z.object({
  job_id: z.string(),
  seq: z.number().int(),
  /** The node that died. */
  node_id: z.string(),
  next_attempt: z.number().int(),
});

/** A pre_execution hook refused a job; sent before the execute's -32010 error. */
export const HookBlockedParams = z.object({
  job_id: z.string(),
  hook: z.string(),
  point: HookPoint,
  message: z.string(),
});

/** A hook failed (threw, timed out, bad result); `on_failure` says what that led to. */
export const HookErrorParams = z.object({
  job_id: z.string(),
  seq: z.number().int(),
  hook: z.string(),
  point: HookPoint,
  error: z.string(),
  on_failure: z.enum(["proceed", "block"]),
});

/** An error hook asked for another run; `process.started` with the next attempt follows. */
export const HookRetryParams = z.object({
  job_id: z.string(),
  seq: z.number().int(),
  hook: z.string(),
  /** The attempt about to start. */
  attempt: z.number().int(),
  command: z.string(),
  message: z.string().nullable(),
  /** How the previous attempt ended. */
  previous: z.object({
    status: JobStatus,
    exit_code: z.number().int().nullable(),
    signal: z.string().nullable(),
    reason: z.string().nullable(),
  }),
});

export const Notifications = {
  connected: ConnectedParams,
  "process.started": ProcessStartedParams,
  "process.output": ProcessOutputParams,
  "process.paused": ProcessPausedParams,
  "process.resumed": ProcessResumedParams,
  "process.completed": ProcessCompletedParams,
  "process.error": ProcessErrorParams,
  "hook.blocked": HookBlockedParams,
  "job.queued": JobQueuedParams,
  "job.node_lost": JobNodeLostParams,
  "hook.error": HookErrorParams,
  "hook.retry": HookRetryParams,
  "claude.event": ClaudeEventParams,
  "claude.retry": ClaudeRetryParams,
  /** The output-token limit (or the context window) was hit. */
  "error.token_limit_exceeded": ClaudeLimitParams,
  /** A usage limit or an API rate limit (429, 529) was hit. */
  "error.rate_limit_exceeded": ClaudeLimitParams,
} as const;
export type NotificationName = keyof typeof Notifications;
export type NotificationParams<N extends NotificationName> = z.infer<(typeof Notifications)[N]>;

/** Notifications of a running job: they carry a `seq` and are replayed to late subscribers. */
export type JobNotificationName = Exclude<
  NotificationName,
  "connected" | "hook.blocked" | "job.queued"
>;

/** A notification about one job, as a client receives it. */
export type JobEvent = {
  [N in JobNotificationName]: { method: N; params: NotificationParams<N> };
}[JobNotificationName];

// ---------------------------------------------------------------------------
// JSON-RPC envelopes

export const RequestId = z.union([z.string(), z.number(), z.null()]);
export type RequestId = z.infer<typeof RequestId>;

export const RpcRequest = z.object({
  jsonrpc: z.literal("2.0"),
  method: z.string(),
  params: z.union([z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional(),
  id: RequestId.optional(),
});
export type RpcRequest = z.infer<typeof RpcRequest>;

export interface RpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

export type RpcResponse =
  | { jsonrpc: "2.0"; id: RequestId; result: unknown }
  | { jsonrpc: "2.0"; id: RequestId; error: RpcErrorObject };

/** An error that becomes a JSON-RPC error response with its code and data. */
export class RpcError extends Error {
  constructor(readonly code: number, message: string, readonly data?: unknown) {
    super(message);
    this.name = "RpcError";
  }
  toJSON(): RpcErrorObject {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

/** A zod error's issues as they go on the wire, in `data.issues` of -32600 and -32602. */
export function issuesOf(error: z.ZodError): { path: string; message: string; code: string }[] {
  return error.issues.map((issue) => ({
    path: issue.path.map(String).join("."),
    message: issue.message,
    code: issue.code,
  }));
}

/** The issues in one line, for error messages. */
export function describeIssues(error: z.ZodError): string {
  return issuesOf(error)
    .map((issue) => (issue.path ? `${issue.path}: ${issue.message}` : issue.message))
    .join("; ");
}

/**
 * The -32602 error for params that fail their schema, so the server and the client (which checks
 * before sending) report bad params the same way.
 */
export function invalidParamsError(method: string, error: z.ZodError): RpcError {
  return new RpcError(
    ErrorCode.INVALID_PARAMS,
    `Invalid params for "${method}": ${describeIssues(error)}`,
    { issues: issuesOf(error) },
  );
}
