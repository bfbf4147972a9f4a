/**
 * The MCP face: cc-executor's jobs as MCP tools and resources. Every tool is a thin layer over
 * the JSON-RPC methods (execute, jobs.wait, jobs.output, ...), so an MCP client and a WebSocket
 * client drive the same engine, see the same jobs and leave the same history. What is added here
 * is what agents need: results shaped to a token budget, progress while a call waits, and jobs
 * that outlive a call that ran out of patience.
 *
 * @module
 */
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { ConnectionClosedError, type ExecutorClient, ExecutorRpcError } from "../client.ts";
import type { McpConfig } from "../config.ts";
import {
  ErrorCode,
  type HistoryRecord,
  HistoryStatus,
  JobId,
  type JobsOutputParams,
  type JobsOutputResult,
  type JobsWaitResult,
  MAX_WAIT_SECONDS,
  type MethodParams,
  OutputStreams,
} from "../protocol.ts";
import { VERSION } from "../version.ts";
import {
  charBudget,
  describeJob,
  describeOutcome,
  describeRecord,
  describeWait,
  fitToBudget,
  formatOutput,
  humanBytes,
  outputBytesFor,
} from "./format.ts";

/** The hard cap Claude Code puts on a tool result (MAX_MCP_OUTPUT_TOKENS' default). */
export const MAX_TOKENS = 25_000;

/** What a resource read returns at most. */
const RESOURCE_BYTES = 1024 * 1024;

export interface McpFaceOptions {
  /** The engine: a client over an in-process connection or a WebSocket. */
  client: () => Promise<ExecutorClient>;
  config: McpConfig;
}

type Extra = {
  signal: AbortSignal;
  _meta?: { progressToken?: string | number };
  sendNotification: (notification: {
    method: "notifications/progress";
    params: { progressToken: string | number; progress: number; total?: number; message?: string };
  }) => Promise<void>;
};

const maxTokens = z.number().int().min(500).max(MAX_TOKENS).optional().describe(
  "Most tokens (estimated at 3 characters each) the result may take; default 8000, at most 25000.",
);

/** A new MCP server with every tool and resource, bound to one engine. */
export function createMcpServer(options: McpFaceOptions): McpServer {
  const { config } = options;
  const server = new McpServer(
    { name: "cc-executor", version: VERSION },
    {
      instructions:
        "Runs shell commands in their own process group and keeps their output. Use execute to " +
        "run a command and get its outcome and output shaped to fit; long runs continue in the " +
        "background (execute with background, or after wait_seconds), followed with job_wait, " +
        "job_output, job_status, job_input and job_cancel. history_search finds earlier jobs.",
    },
  );

  const budget = (tokens: number | undefined) => charBudget(tokens ?? config.maxTokens);

  const ExecuteInput = z.object({
    command: z.string().min(1).describe("Shell text, run as `bash -c <command>`."),
    cwd: z.string().min(1).optional().describe("Working directory (must exist)."),
    env: z.record(z.string(), z.string()).optional()
      .describe("Environment variables merged over the executor's."),
    timeout: z.number().positive().max(2_147_483).optional()
      .describe("Kill the command after this many seconds (default: estimated from history)."),
    stdin: z.string().optional().describe("Text written to the command's stdin."),
    keep_stdin_open: z.boolean().optional()
      .describe("Keep stdin open for job_input (for interactive commands)."),
    background: z.boolean().optional()
      .describe("Return the job_id at once instead of waiting."),
    wait_seconds: z.number().positive().max(MAX_WAIT_SECONDS).optional()
      .describe(
        `Longest wait before answering that the job runs on (default ${config.waitSeconds}).`,
      ),
    job_id: JobId.optional().describe("Your own id for the job (letters, digits, . _ : -)."),
    max_tokens: maxTokens,
  });
  server.registerTool("execute", {
    title: "Run a shell command",
    description: "Runs a shell command (bash -c) on the executor's machine in its own process " +
      "group, waits for it (up to wait_seconds, sending progress notifications) and returns the " +
      "exit code, signal or timeout and its output. Output larger than the token budget is " +
      "shaped: the first lines, the lines around errors and the last lines, with counts of what " +
      "was left out and how to read the rest with job_output. A command still running after " +
      "wait_seconds keeps running: the result gives its job_id for job_wait and job_output. With " +
      "background: true it returns the job_id at once.",
    inputSchema: ExecuteInput.shape,
    annotations: { destructiveHint: true, openWorldHint: true },
  }, (args: z.infer<typeof ExecuteInput>, extra: Extra) =>
    guard(async () => {
      const client = await options.client();
      const started = await client.request("execute", {
        command: args.command,
        cwd: args.cwd,
        env: args.env,
        timeout: args.timeout,
        stdin: args.stdin,
        keep_stdin_open: args.keep_stdin_open,
        job_id: args.job_id,
        // The job belongs to no call: it runs on when a call gives up waiting, and is followed
        // through jobs.wait and jobs.output rather than streamed to this connection.
        detach: true,
        subscribe: false,
      });
      const id = started.job_id;
      const head = `job ${id} (pid ${started.pid})`;
      if (args.background) {
        return result(
          `Started ${head} in the background: ${args.command}\n` +
            `Follow it with job_wait {"job_id":"${id}"}, read it with job_output, ` +
            `stop it with job_cancel.`,
          { job_id: id, status: started.status, pid: started.pid },
        );
      }
      const waited = await waitWithProgress(client, extra, config, {
        job_id: id,
        timeout_seconds: args.wait_seconds ?? config.waitSeconds,
      });
      const chars = budget(args.max_tokens);
      if (waited === null || waited.reason === "timeout") {
        const tail = await client.request("jobs.output", {
          job_id: id,
          tail_lines: 20,
          max_bytes: Math.min(outputBytesFor(chars), 8192),
        });
        return result(
          fitToBudget(
            `${head} is still running after ${args.wait_seconds ?? config.waitSeconds} s; it ` +
              `continues in the background.\nWait for it with job_wait {"job_id":"${id}"}, ` +
              `read its output with job_output, stop it with job_cancel.\nOutput so far:\n` +
              formatOutput(tail),
            chars,
          ),
          { job_id: id, status: "running" },
        );
      }
      const info = await client.request("jobs.get", { job_id: id });
      const output = await client.request("jobs.output", {
        job_id: id,
        max_bytes: outputBytesFor(chars),
      });
      return result(
        fitToBudget(`${head}: ${describeOutcome(info)}\n${formatOutput(output)}`, chars),
        {
          job_id: id,
          status: info.status,
          exit_code: info.exit_code,
          signal: info.signal,
          duration_ms: info.duration_ms,
          bytes: info.bytes,
        },
        info.status !== "completed",
      );
    }));

  const JobStatusInput = z.object({ job_id: z.string().min(1) });
  server.registerTool("job_status", {
    title: "A job's status",
    description: "Status of a job: running or how it ended (exit code, signal, timeout, " +
      "cancel), its command, times and output size. Works for jobs that have left memory too " +
      "(from history).",
    inputSchema: JobStatusInput.shape,
    annotations: { readOnlyHint: true },
  }, (args: z.infer<typeof JobStatusInput>) =>
    guard(async () => {
      const client = await options.client();
      try {
        const info = await client.request("jobs.get", { job_id: args.job_id });
        return result(describeJob(info), outcomeFacts(info));
      } catch (error) {
        if (!isNotFound(error)) throw error;
        const record = await client.request("history.get", { job_id: args.job_id });
        return result(describeRecord(record), outcomeFacts(record));
      }
    }));

  const JobOutputInput = z.object({
    job_id: z.string().min(1),
    stream: OutputStreams.optional().describe('"stdout", "stderr" or "both" (default).'),
    offset: z.number().int().nonnegative().optional()
      .describe("Byte offset to read one stream from (set stream)."),
    head_lines: z.number().int().positive().optional().describe("The first N lines."),
    tail_lines: z.number().int().positive().optional().describe("The last N lines."),
    grep: z.string().min(1).optional().describe("Lines matching this regular expression."),
    ignore_case: z.boolean().optional(),
    context_lines: z.number().int().nonnegative().max(100).optional()
      .describe("With grep: lines shown around each match."),
    max_tokens: maxTokens,
  });
  server.registerTool("job_output", {
    title: "Read a job's output",
    description: "Reads a job's output (running or finished). Without options: everything if " +
      "it fits the token budget, else the first lines, the lines around errors and the last " +
      "lines. Or exactly one of: offset (raw text of one stream from a byte offset; page with " +
      "the next_offset it gives), head_lines, tail_lines, grep (a JavaScript regular " +
      "expression, with context_lines). The result always says how much was left out.",
    inputSchema: JobOutputInput.shape,
    annotations: { readOnlyHint: true },
  }, (args: z.infer<typeof JobOutputInput>) =>
    guard(async () => {
      const { max_tokens, ...params } = args;
      const chars = budget(max_tokens);
      const client = await options.client();
      const read = await readOutput(client, { ...params, max_bytes: outputBytesFor(chars) });
      return result(fitToBudget(read.text, chars), read.structured);
    }));

  const JobWaitInput = z.object({
    job_id: z.string().min(1),
    pattern: z.string().min(1).optional()
      .describe("Return when an output line matches this regular expression."),
    ignore_case: z.boolean().optional(),
    new_output_only: z.boolean().optional(),
    idle_seconds: z.number().positive().max(MAX_WAIT_SECONDS).optional(),
    timeout_seconds: z.number().positive().max(MAX_WAIT_SECONDS).optional()
      .describe(`Longest wait (default ${config.waitSeconds}).`),
    max_tokens: maxTokens,
  });
  server.registerTool("job_wait", {
    title: "Wait for a job",
    description: "Waits until a job ends, a line of its output matches `pattern`, it has " +
      "written nothing for `idle_seconds`, or `timeout_seconds` pass, whichever comes first, " +
      "sending progress notifications meanwhile. Returns why it returned, the matching line, " +
      "and the last lines of output. Output written before the call counts for pattern unless " +
      "new_output_only.",
    inputSchema: JobWaitInput.shape,
    annotations: { readOnlyHint: true },
  }, (args: z.infer<typeof JobWaitInput>, extra: Extra) =>
    guard(async () => {
      const { max_tokens, ...params } = args;
      const client = await options.client();
      const waited = await waitWithProgress(client, extra, config, {
        ...params,
        timeout_seconds: params.timeout_seconds ?? config.waitSeconds,
      });
      if (waited === null) return result("The wait was canceled; the job runs on.", {});
      const chars = budget(max_tokens);
      const tail = await client.request("jobs.output", {
        job_id: args.job_id,
        tail_lines: 30,
        // Room for the line above it, whose matching text is cut to 300 characters.
        max_bytes: Math.max(256, Math.min(outputBytesFor(chars) - 400, 16384)),
      });
      return result(
        fitToBudget(
          `job ${args.job_id}: ${describeWait(waited)}\nLast lines:\n${formatOutput(tail)}`,
          chars,
        ),
        waitFacts(waited),
      );
    }));

  const JobCancelInput = z.object({ job_id: z.string().min(1) });
  server.registerTool("job_cancel", {
    title: "Cancel a job",
    description: "Stops a running job: SIGTERM to its whole process group, then SIGKILL after " +
      "the grace period. Returns once the job has ended, with its final status.",
    inputSchema: JobCancelInput.shape,
    annotations: { destructiveHint: true },
  }, (args: z.infer<typeof JobCancelInput>) =>
    guard(async () => {
      const client = await options.client();
      await client.request("control", { type: "CANCEL", job_id: args.job_id });
      const waited = await client.request("jobs.wait", {
        job_id: args.job_id,
        timeout_seconds: 30,
      });
      return result(`job ${args.job_id}: ${describeWait(waited)}`, waitFacts(waited));
    }));

  const JobPauseInput = z.object({ job_id: z.string().min(1) });
  server.registerTool("job_pause", {
    title: "Pause a job",
    description: "Pauses a running job: SIGSTOP to its whole process group. Its timeout keeps " +
      "counting. job_resume continues it; job_cancel still ends it.",
    inputSchema: JobPauseInput.shape,
  }, (args: z.infer<typeof JobPauseInput>) =>
    guard(async () => {
      const client = await options.client();
      const paused = await client.request("control", { type: "PAUSE", job_id: args.job_id });
      return result(`job ${args.job_id}: ${paused.status}`, paused);
    }));

  server.registerTool("job_resume", {
    title: "Resume a paused job",
    description: "Resumes a job paused with job_pause (SIGCONT to its process group).",
    inputSchema: JobPauseInput.shape,
  }, (args: z.infer<typeof JobPauseInput>) =>
    guard(async () => {
      const client = await options.client();
      const resumed = await client.request("control", { type: "RESUME", job_id: args.job_id });
      return result(`job ${args.job_id}: ${resumed.status}`, resumed);
    }));

  const JobInputInput = z.object({
    job_id: z.string().min(1),
    data: z.string().optional(),
    eof: z.boolean().optional().describe("Close stdin after writing."),
  });
  server.registerTool("job_input", {
    title: "Write to a job's stdin",
    description: "Writes text to the stdin of a job started with keep_stdin_open; eof closes " +
      "stdin afterwards. Include a trailing newline where the program reads lines.",
    inputSchema: JobInputInput.shape,
  }, (args: z.infer<typeof JobInputInput>) =>
    guard(async () => {
      const client = await options.client();
      const written = await client.request("jobs.input", args);
      return result(
        `wrote ${written.bytes_written} bytes to job ${args.job_id}; stdin is ` +
          (written.stdin_open ? "open" : "closed"),
        written,
      );
    }));

  const HistorySearchInput = z.object({
    query: z.string().min(1).optional().describe("Substring of the command."),
    status: HistoryStatus.optional(),
    since: z.iso.datetime({ offset: true }).optional().describe("ISO 8601 time."),
    limit: z.number().int().positive().max(200).optional().describe("Default 20."),
    cursor: z.string().min(1).optional().describe("next_cursor of the previous page."),
    max_tokens: maxTokens,
  });
  server.registerTool("history_search", {
    title: "Search earlier jobs",
    description: "Lists recorded jobs, newest first: by a case-insensitive substring of the " +
      "command, by status, and since a time. Each line gives the job_id (for job_status and " +
      "job_output), status, exit code, duration, start time and command.",
    inputSchema: HistorySearchInput.shape,
    annotations: { readOnlyHint: true },
  }, (args: z.infer<typeof HistorySearchInput>) =>
    guard(async () => {
      const client = await options.client();
      const page = await client.request("history.list", {
        search: args.query,
        status: args.status,
        since: args.since,
        limit: args.limit ?? 20,
        cursor: args.cursor,
      });
      const lines = page.jobs.map((job) =>
        `${job.job_id}  ${describeOutcome(job)}  ${job.started_at}  ${job.command}`
      );
      if (lines.length === 0) lines.push("(no matching jobs)");
      if (page.next_cursor) lines.push(`[more: history_search with cursor "${page.next_cursor}"]`);
      return result(fitToBudget(lines.join("\n"), budget(args.max_tokens)), {
        count: page.jobs.length,
        next_cursor: page.next_cursor,
      });
    }));

  server.registerResource(
    "job-output",
    new ResourceTemplate("job://{job_id}/output", {
      list: async () => {
        const client = await options.client();
        const { jobs } = await client.request("jobs.list", { limit: 100 });
        return {
          resources: jobs.map((job) => ({
            uri: `job://${encodeURIComponent(job.job_id)}/output`,
            name: `${job.job_id}: ${job.command.slice(0, 80)}`,
            description: `${describeOutcome(job)}; ${
              humanBytes(job.bytes.stdout + job.bytes.stderr)
            }`,
            mimeType: "text/plain",
          })),
        };
      },
    }),
    {
      title: "Job output",
      description: "A job's output (stdout, then stderr), up to 1 MB; beyond that the first, " +
        "error and last lines, with how to read the rest through job_output.",
      mimeType: "text/plain",
    },
    async (uri: URL, variables: Record<string, string | string[]>) => {
      const jobId = decodeURIComponent(String(variables.job_id));
      const client = await options.client();
      const read = await readOutput(client, { job_id: jobId, max_bytes: RESOURCE_BYTES });
      return { contents: [{ uri: uri.href, mimeType: "text/plain", text: read.text }] };
    },
  );

  return server;
}

/**
 * jobs.output, or what history kept of a job no longer held in memory (the first and last
 * characters of its output).
 */
async function readOutput(
  client: ExecutorClient,
  params: JobsOutputParams,
): Promise<{ text: string; structured: Record<string, unknown> }> {
  try {
    const output: JobsOutputResult = await client.request("jobs.output", params);
    // The facts only: the text is what the budget is for, and some clients show the model nothing
    // but structuredContent when it is there.
    const { sections: _sections, last_output: _last, ...facts } = output;
    return { text: formatOutput(output), structured: facts };
  } catch (error) {
    if (!isNotFound(error)) throw error;
    const record = await client.request("history.get", {
      job_id: params.job_id,
      include_output: true,
    });
    const { head, tail } = record.output ?? { head: "", tail: "" };
    const total = record.bytes.stdout + record.bytes.stderr;
    const text = `${describeRecord(record)}\nThe job is no longer held in memory; history kept ` +
      `the first and last characters of its output (stdout and stderr interleaved, ` +
      `${humanBytes(total)} in all):\n--- start ---\n${head}` +
      (tail ? `\n--- end ---\n${tail}` : "") +
      `\n[offset, head_lines, tail_lines and grep need the job in memory]`;
    return {
      text: fitToBudget(text, params.max_bytes ?? RESOURCE_BYTES),
      structured: { job_id: record.job_id, status: record.status, source: "history" },
    };
  }
}

/**
 * jobs.wait taken in slices of progressMs, with a progress notification after each slice (when
 * the caller asked for progress). Each slice goes on from the last one's cursor, so the output is
 * read once. Null when the MCP request was canceled: the job runs on, and the engine's wait ends
 * with the slice it is in.
 */
async function waitWithProgress(
  client: ExecutorClient,
  extra: Extra,
  config: McpConfig,
  params: MethodParams<"jobs.wait"> & { timeout_seconds: number },
): Promise<JobsWaitResult | null> {
  const token = extra._meta?.progressToken;
  const started = performance.now();
  const deadline = started + params.timeout_seconds * 1000;
  const canceled = new Promise<null>((resolve) => {
    if (extra.signal.aborted) resolve(null);
    extra.signal.addEventListener("abort", () => resolve(null), { once: true });
  });
  let request: MethodParams<"jobs.wait"> = params;
  while (true) {
    const left = (deadline - performance.now()) / 1000;
    const slice = Math.max(0.05, Math.min(left, config.progressMs / 1000));
    const waited = await Promise.race([
      client.request("jobs.wait", { ...request, timeout_seconds: slice }),
      canceled,
    ]);
    if (waited === null) return null;
    const elapsed = performance.now() - started;
    if (waited.reason !== "timeout" || performance.now() >= deadline) {
      return { ...waited, waited_ms: Math.round(elapsed) };
    }
    // The next slice goes on where this one stopped reading.
    if (waited.cursor) {
      const { new_output_only: _once, ...rest } = request;
      request = { ...rest, cursor: waited.cursor };
    }
    if (token !== undefined) {
      await extra.sendNotification({
        method: "notifications/progress",
        params: {
          progressToken: token,
          progress: Math.round(elapsed / 100) / 10,
          message: `job ${waited.job_id} ${waited.status} for ${(elapsed / 1000).toFixed(0)} s; ` +
            `stdout ${humanBytes(waited.bytes.stdout)}, stderr ${humanBytes(waited.bytes.stderr)}`,
        },
      }).catch(() => {}); // progress is best effort: the answer reports any real failure
    }
  }
}

/** How a job stands, in a few fields (never its command or output, which can be long). */
function outcomeFacts(
  job: Pick<HistoryRecord, "job_id" | "status" | "exit_code" | "signal" | "duration_ms" | "bytes">,
): Record<string, unknown> {
  const { job_id, status, exit_code, signal, duration_ms, bytes } = job;
  return { job_id, status, exit_code, signal, duration_ms, bytes };
}

/** A wait's result with the matching line cut short: the text above shows it. */
function waitFacts(waited: JobsWaitResult): Record<string, unknown> {
  const { cursor: _cursor, match, ...facts } = waited;
  return {
    ...facts,
    match: match && { ...match, text: match.text.slice(0, 200) },
  };
}

/**
 * A tool result: the text, shaped to the budget by the caller, and a few facts as
 * structuredContent. Claude Code may give the model only structuredContent when it is there, so
 * it stays small: ids, statuses, counts.
 */
function result(
  text: string,
  structured: Record<string, unknown>,
  isError = false,
): CallToolResult {
  return {
    content: [{ type: "text", text }],
    structuredContent: structured,
    ...(isError ? { isError: true } : {}),
  };
}

function isNotFound(error: unknown): boolean {
  return error instanceof ExecutorRpcError && error.code === ErrorCode.JOB_NOT_FOUND;
}

/** Engine errors become tool errors the agent can read; anything else is a bug and rethrown. */
async function guard(run: () => Promise<CallToolResult>): Promise<CallToolResult> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof ExecutorRpcError) {
      return {
        content: [{ type: "text", text: `${error.message} (error ${error.code})` }],
        isError: true,
      };
    }
    if (error instanceof ConnectionClosedError) {
      return {
        content: [{ type: "text", text: `cc-executor is not reachable: ${error.message}` }],
        isError: true,
      };
    }
    throw error;
  }
}
