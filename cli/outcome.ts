/**
 * How a job's outcome becomes the CLI's exit code and its one-line summary,
 * shared by `run` and `jobs attach`.
 *
 * Exit codes follow the shell's and the familiar tools' conventions: the
 * command's own code; 128+N when signal N ended it; 124 for a timeout (as
 * `timeout(1)`); 130 when this CLI was interrupted with Ctrl-C; 125 when
 * cc-executor itself failed (as `docker run`); 126 when a hook or the command
 * policy refused the command (as a shell reports a command it may not execute).
 *
 * @module
 */
import { constants } from "node:os";
import type { ExecuteOutcome } from "../server/client.ts";

export const EXIT = {
  /** The job ran past its timeout or idle timeout. */
  TIMEOUT: 124,
  /** cc-executor could not run it: no server, refused, connection lost, spawn failed. */
  EXECUTOR_ERROR: 125,
  /** A pre_execution hook or the command policy refused the command; it never ran. */
  BLOCKED: 126,
  /** This CLI was interrupted (Ctrl-C): 128 + SIGINT. */
  INTERRUPTED: 130,
  /** stdout's reader went away (`run ... | head`): 128 + SIGPIPE, as a shell reports it. */
  BROKEN_PIPE: 141,
} as const;

/** 128 + the signal's number; SIGTERM's when the name is unknown. */
export function signalExitCode(signal: string | null): number {
  const signals = constants.signals as Record<string, number>;
  return 128 + (signal !== null && signals[signal] !== undefined ? signals[signal] : 15);
}

/** The exit code `run` and `jobs attach` end with for `outcome`. */
export function exitCodeFor(outcome: ExecuteOutcome): number {
  switch (outcome.status) {
    case "completed":
      return 0;
    case "timed_out":
      return EXIT.TIMEOUT;
    case "error":
    // Its node of a cluster died under it: cc-executor lost it, as a lost server is 125.
    case "lost":
      return EXIT.EXECUTOR_ERROR;
    case "failed":
      return outcome.exitCode ?? 1;
    case "canceled":
    case "killed":
      // A canceled command that exited on its own during the grace period still ended because
      // it was told to (SIGTERM).
      return signalExitCode(outcome.signal);
    default:
      return 1;
  }
}

/**
 * What to say on stderr after the output, or null when the exit code says it all (the command
 * succeeded or failed on its own, as ssh stays quiet then).
 */
export function summarize(outcome: ExecuteOutcome): string | null {
  const id = outcome.jobId;
  const cut = outcome.truncated ? " (output was cut at max_output_bytes)" : "";
  switch (outcome.status) {
    case "completed":
    case "failed":
      return outcome.truncated ? `job ${id}: output was cut at max_output_bytes` : null;
    case "timed_out":
      return `job ${id} timed out: ${outcome.error}${cut}`;
    case "canceled":
      return `job ${id} canceled: ${outcome.error}${cut}`;
    case "killed":
      return `job ${id} was killed by ${outcome.signal}${cut}`;
    case "error":
      return `job ${id} could not run: ${outcome.error}${cut}`;
    case "lost":
      return `job ${id} was lost: ${outcome.error}${cut}`;
    default:
      return `job ${id} ended with status ${outcome.status}${cut}`;
  }
}

/** The `--json` form of an outcome. */
export function outcomeJson(outcome: ExecuteOutcome, collected: boolean) {
  return {
    job_id: outcome.jobId,
    status: outcome.status,
    exit_code: outcome.exitCode,
    signal: outcome.signal,
    duration_ms: outcome.durationMs,
    reason: outcome.error,
    bytes: outcome.bytes,
    truncated: outcome.truncated,
    ...(collected ? { stdout: outcome.stdout, stderr: outcome.stderr } : {}),
  };
}
