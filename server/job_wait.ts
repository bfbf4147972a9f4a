/**
 * `jobs.wait`: waits until a job ends, a line of its output matches a pattern, it has been quiet
 * for a while, or a deadline passes, whichever comes first. Output is read from the job's spool,
 * the one record of what it delivered, so nothing written between two looks can slip past; each
 * look reads only what is new since the last one, and a `cursor` carries that position from one
 * wait to the next.
 *
 * @module
 */
import type { Job } from "./jobs.ts";
import type { OutputSpool, SpoolStream } from "./output_spool.ts";
import { ErrorCode, type JobsWaitParams, type JobsWaitResult, RpcError } from "./protocol.ts";
import type { WaitCursor } from "./protocol.ts";

/** How long a wait lasts when the request names no timeout_seconds. */
export const DEFAULT_WAIT_SECONDS = 30;

/** Characters of each line a pattern is tested against (as grep in jobs.output). */
const PATTERN_LINE_CHARS = 65_536;
/** Characters of the matching line the answer carries. */
const MATCH_TEXT_CHARS = 1000;

export interface WaitOptions {
  /** Ends the wait early (the connection that asked went away); it then reports "timeout". */
  signal?: AbortSignal;
}

type Match = NonNullable<JobsWaitResult["match"]>;

/** Resolves with why the wait ended; never rejects for a job that ends or fails meanwhile. */
export async function waitForJob(
  job: Job,
  params: Omit<JobsWaitParams, "job_id">,
  options: WaitOptions = {},
): Promise<JobsWaitResult> {
  try {
    return await wait(job, params, options);
  } catch (error) {
    throw leftMemory(job, error);
  }
}

/** A read that failed because the job left memory meanwhile (its spool is gone) says so. */
export function leftMemory(job: Job, error: unknown): unknown {
  if (!job.spool.disposed) return error;
  return new RpcError(
    ErrorCode.JOB_NOT_FOUND,
    `Job "${job.id}" left memory while its output was being read (finished jobs are kept up to ` +
      "CC_EXECUTOR_KEEP_FINISHED_JOBS); history.get still has its record",
  );
}

async function wait(
  job: Job,
  params: Omit<JobsWaitParams, "job_id">,
  options: WaitOptions,
): Promise<JobsWaitResult> {
  const started = performance.now();
  const deadline = started + (params.timeout_seconds ?? DEFAULT_WAIT_SECONDS) * 1000;
  const idleMs = params.idle_seconds === undefined ? null : params.idle_seconds * 1000;
  const pattern = params.pattern === undefined
    ? null
    : new RegExp(params.pattern, params.ignore_case ? "i" : "");
  // Where each stream's scan resumes: the start of its first line not yet seen whole.
  const cursor: WaitCursor | null = pattern === null
    ? null
    : params.cursor
    ? structuredClone(params.cursor)
    : params.new_output_only
    ? { stdout: await endOf(job.spool, "stdout"), stderr: await endOf(job.spool, "stderr") }
    : { stdout: { offset: 0, line: 1 }, stderr: { offset: 0, line: 1 } };

  const result = (reason: JobsWaitResult["reason"], match: Match | null = null) => ({
    job_id: job.id,
    status: job.status,
    reason,
    waited_ms: Math.round(performance.now() - started),
    match,
    cursor,
    bytes: { ...job.bytes },
    exit_code: job.exitCode,
  });

  const scan = async (): Promise<Match | null> => {
    for (const stream of ["stdout", "stderr"] as const) {
      const at = cursor![stream];
      const lines = job.spool.scanLines(stream, {
        fromOffset: at.offset,
        firstLine: at.line,
        maxLineChars: PATTERN_LINE_CHARS,
      });
      for await (const line of lines) {
        if (pattern!.test(line.text)) {
          return {
            stream,
            line: line.line,
            offset: line.offset,
            text: line.text.length > MATCH_TEXT_CHARS
              ? `${line.text.slice(0, MATCH_TEXT_CHARS)} …`
              : line.text,
          };
        }
        // A line still being written is looked at again once more of it has arrived.
        if (line.eol > 0) {
          cursor![stream] = { offset: line.offset + line.bytes, line: line.line + 1 };
        }
      }
    }
    return null;
  };

  let poked = false;
  let wake: (() => void) | null = null;
  const poke = () => {
    poked = true;
    wake?.();
  };
  // Told of each chunk (a pattern may match it) and of the end.
  const unwatch = job.watch(poke);
  const onAbort = () => wake?.();
  options.signal?.addEventListener("abort", onAbort);
  try {
    while (true) {
      poked = false;
      if (pattern) {
        const match = await scan();
        if (match) return result("matched", match);
      }
      if (job.isFinished) return result("finished");
      if (options.signal?.aborted) return result("timeout");
      const now = performance.now();
      if (idleMs !== null && job.quietMs >= idleMs) return result("idle");
      if (now >= deadline) return result("timeout");
      if (poked) continue; // output arrived while scanning
      let pause = deadline - now;
      if (idleMs !== null) pause = Math.min(pause, idleMs - job.quietMs);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
        timer = setTimeout(resolve, Math.max(0, Math.ceil(pause)));
      });
      wake = null;
      clearTimeout(timer);
    }
  } finally {
    unwatch();
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/** The position just past what `stream` holds now: the line there and its offset. */
async function endOf(
  spool: OutputSpool,
  stream: SpoolStream,
): Promise<{ offset: number; line: number }> {
  const offset = spool.bytes(stream);
  if (offset === 0) return { offset, line: 1 };
  // Lines counted include a final partial one, which is the line the position is in.
  const counted = await spool.countLines(stream, offset);
  const before = await spool.read(stream, offset - 1, 1);
  return { offset, line: before[0] === 10 ? counted + 1 : counted };
}
