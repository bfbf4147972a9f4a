/**
 * `hooks.run`: one point's chain run against a pretend job, so a user can see
 * what the hooks would do to a command without running it. The hooks run for
 * real (with `dry_run: true` in their context); the command does not.
 *
 * @module
 */
import type { HooksRunParams, HooksRunResult } from "../server/protocol.ts";
import type { HookSet } from "./runner.ts";
import type { JobOutcome, JobRequest } from "./types.ts";

export async function dryRun(
  set: HookSet,
  params: HooksRunParams,
  maxAttempts: number,
): Promise<HooksRunResult> {
  const jobId = `dry-run-${crypto.randomUUID()}`;
  const request: JobRequest = {
    command: params.command,
    cwd: params.cwd ?? null,
    env: { ...params.env },
    timeout: params.timeout ?? null,
  };
  const base = { job_id: jobId, session_id: null, attempt: 1, dry_run: true, request };
  switch (params.point) {
    case "pre_execution": {
      const pre = await set.runPre(base);
      return {
        point: params.point,
        executions: pre.executions,
        request: pre.request,
        blocked: pre.blocked,
      };
    }
    case "output": {
      const filter = set.outputFilter(base);
      const text = params.output ?? "";
      if (!filter) return { point: params.point, executions: [], output: text };
      const bytes = new TextEncoder().encode(text).length;
      const output = (await filter.push("stdout", text, 0)) + (await filter.end("stdout", bytes));
      return { point: params.point, executions: filter.failures, output };
    }
    case "post_execution":
    case "error": {
      const status = params.status ?? (params.point === "error" ? "failed" : "completed");
      const output = params.output ?? "";
      const outcome: JobOutcome = {
        status,
        exit_code: params.exit_code ??
          (status === "completed" ? 0 : status === "failed" ? 1 : null),
        signal: status === "killed" ? "SIGKILL" : null,
        duration_ms: 0,
        reason: null,
        bytes: { stdout: new TextEncoder().encode(output).length, stderr: 0 },
        truncated: false,
        output: { head: output, tail: "" },
      };
      const error = await set.runError({ ...base, outcome }, {
        maxAttempts,
        retryAllowed: maxAttempts > 1,
      });
      const post = error.retry
        ? { attached: {}, executions: [] }
        : await set.runPost({ ...base, outcome, attached: error.attached });
      const after = {
        retry: error.retry,
        attached: { ...error.attached, ...post.attached },
        executions: [...error.executions, ...post.executions],
      };
      return {
        point: params.point,
        executions: after.executions,
        attached: after.attached,
        retry: after.retry,
      };
    }
  }
}
