/**
 * `jobs.wait`: waits until a job ends, a line of its output matches a pattern, it has been quiet
 * for a while, or a deadline passes, whichever comes first. Output is read from the job's spool,
 * the one record of what it delivered, so nothing written between two looks can slip past.
 *
 * @module
 */
import type { Job } from "./jobs.ts";
import type { JobsWaitParams, JobsWaitResult, StreamName } from "./protocol.ts";

/** How long a wait lasts when the request names no timeout_seconds. */
export const DEFAULT_WAIT_SECONDS = 30;

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
  const started = performance.now();
  const deadline = started + (params.timeout_seconds ?? DEFAULT_WAIT_SECONDS) * 1000;
  const idleMs = params.idle_seconds === undefined ? null : params.idle_seconds * 1000;
  const pattern = params.pattern === undefined
    ? null
    : new RegExp(params.pattern, params.ignore_case ? "i" : "");
  // Where each stream's scan resumes: the start of its first line not yet seen whole.
  const scanned: Record<StreamName, number> = params.new_output_only
    ? { stdout: job.spool.bytes("stdout"), stderr: job.spool.bytes("stderr") }
    : { stdout: 0, stderr: 0 };

  const result = (reason: JobsWaitResult["reason"], match: Match | null = null) => ({
    job_id: job.id,
    status: job.status,
    reason,
    waited_ms: Math.round(performance.now() - started),
    match,
    bytes: { ...job.bytes },
    exit_code: job.exitCode,
  });

  const scan = async (): Promise<Match | null> => {
    for (const stream of ["stdout", "stderr"] as const) {
      for await (const line of job.spool.scanLines(stream, { fromOffset: scanned[stream] })) {
        if (pattern!.test(line.text)) {
          return { stream, line: line.line, offset: line.offset, text: line.text };
        }
        // A line still being written is looked at again once more of it has arrived.
        if (line.eol > 0) scanned[stream] = line.offset + line.bytes;
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
