/**
 * The hook API: what a hook receives (`HookContext`), what it may return
 * (`HookResult`), and `defineHook` / `defineHooks` to write them with types.
 * This module has no dependencies, so a hook file can import it cheaply:
 *
 * @example
 * ```ts
 * // hooks/no_force_push.ts
 * import { defineHook, defineHooks } from "../path/to/cc-executor/hooks/types.ts";
 *
 * export const HOOKS = defineHooks({
 *   pre_execution: [
 *     defineHook({
 *       point: "pre_execution",
 *       name: "no-force-push",
 *       required: true,
 *       run: (ctx) =>
 *         /git\s+push\s+.*--force/.test(ctx.request.command)
 *           ? { proceed: false, message: "force pushes are not allowed here" }
 *           : { proceed: true },
 *     }),
 *   ],
 * });
 * ```
 *
 * docs/hooks.md describes every field; the same shapes travel as JSON to command hooks.
 *
 * @module
 */

/** Where in a job's life a hook runs. */
export type HookPoint = "pre_execution" | "post_execution" | "error" | "output";

/** Every hook point, in the order a job meets them. */
export const HOOK_POINTS: readonly HookPoint[] = [
  "pre_execution",
  "output",
  "post_execution",
  "error",
];

/** What a failing hook leads to: carry on as if it had not run, or stop (see docs/hooks.md). */
export type OnFailure = "proceed" | "block";

/** The job as requested, after the changes of the hooks that ran before this one. */
export interface JobRequest {
  command: string;
  /** null: the server's working directory. */
  cwd: string | null;
  /** The request's own variables (merged over the server's environment when the job runs). */
  env: Record<string, string>;
  /** Wall-clock limit in seconds; null when the request gave none (the server may estimate one). */
  timeout: number | null;
}

/** How a run ended, as `process.completed` reports it. */
export interface JobOutcome {
  status: "completed" | "failed" | "canceled" | "timed_out" | "killed" | "error";
  exit_code: number | null;
  signal: string | null;
  duration_ms: number;
  reason: string | null;
  bytes: { stdout: number; stderr: number };
  truncated: boolean;
  /** The start and the end of the output (both streams, in order), bounded. */
  output: { head: string; tail: string };
}

interface ContextBase {
  job_id: string;
  /** The connection that asked for the job; null for a dry run from `hooks run`. */
  session_id: string | null;
  /** 1 for the first run; a retry asked for by an `error` hook is attempt 2, and so on. */
  attempt: number;
  /** True under `hooks run`: nothing will actually run, so do no lasting harm. */
  dry_run: boolean;
  request: JobRequest;
}

/** Before the command starts: may block it, or change command, cwd, env or timeout. */
export interface PreExecutionContext extends ContextBase {
  point: "pre_execution";
}

/** After the job ended (whatever the outcome): may attach data to its record and final notification. */
export interface PostExecutionContext extends ContextBase {
  point: "post_execution";
  outcome: JobOutcome;
  /** What earlier hooks attached, by hook name. */
  attached: Record<string, unknown>;
}

/** After a run failed, timed out, was killed or errored (not after a cancel): may ask for a retry. */
export interface ErrorContext extends ContextBase {
  point: "error";
  outcome: JobOutcome;
  /** Attempts allowed in all (CC_EXECUTOR_HOOK_MAX_ATTEMPTS); no retry is possible at the last. */
  max_attempts: number;
}

/**
 * One chunk of output before it is sent and stored. Called once more per stream with `final: true`
 * and empty `data` when the stream ends, so a hook that held text back can release it.
 */
export interface OutputContext extends ContextBase {
  point: "output";
  stream: "stdout" | "stderr";
  data: string;
  /** Byte offset of this chunk in its stream, as read from the command. */
  offset: number;
  final: boolean;
  /**
   * This hook's own state for this job and stream, kept between calls (e.g. text held back across
   * chunks). Change it in place; command hooks return it as `state`.
   */
  state: Record<string, unknown>;
}

export type HookContext =
  | PreExecutionContext
  | PostExecutionContext
  | ErrorContext
  | OutputContext;

/** The context a hook at point `P` receives. */
export type ContextFor<P extends HookPoint> = Extract<HookContext, { point: P }>;

/**
 * What a hook may return. Returning nothing means "proceed, no changes". Which fields count
 * depends on the point; a field that does not belong to it, or a value of the wrong type, is a
 * hook failure (so a typo such as `procede: false` is never silently ignored).
 */
export interface HookResult {
  /** pre_execution: false blocks the job. */
  proceed?: boolean;
  /** Why: shown to the client when the job is blocked, kept in the record otherwise. */
  message?: string;
  /** pre_execution: the command to run instead. */
  command?: string;
  /** pre_execution: the working directory to run in instead. */
  cwd?: string;
  /** pre_execution: variables to set for the job (merged over the request's). */
  env?: Record<string, string>;
  /** pre_execution: the wall-clock limit in seconds. */
  timeout?: number;
  /** post_execution and error: JSON data kept under this hook's name in the job's record. */
  attach?: Record<string, unknown>;
  /** error: run again, with the same command (`true`) or another one. */
  retry?: boolean | { command?: string };
  /** output: the text to send and store instead of the chunk ("" drops it). */
  data?: string;
  /** output (command hooks): this hook's state for the next call. */
  state?: Record<string, unknown>;
}

/** The fields each point accepts in a result. */
export const RESULT_FIELDS: Record<HookPoint, readonly (keyof HookResult)[]> = {
  pre_execution: ["proceed", "message", "command", "cwd", "env", "timeout"],
  post_execution: ["message", "attach"],
  error: ["message", "attach", "retry"],
  output: ["data", "state", "message"],
};

/** A hook function at point `P`. */
export type HookFunction<P extends HookPoint = HookPoint> = (
  ctx: ContextFor<P>,
) => HookResult | void | Promise<HookResult | void>;

/** A hook with its options, as `defineHook` makes it. */
export interface HookDefinition<P extends HookPoint = HookPoint> {
  /** Checked against the key it is listed under, and gives `ctx` its type. */
  point?: P;
  /** Shown in `hooks list`, records and notifications; default `<file>:<point>[<index>]`. */
  name?: string;
  /** Milliseconds the hook may take; default CC_EXECUTOR_HOOK_TIMEOUT_MS. */
  timeout_ms?: number;
  /** pre_execution only: a failure blocks the job (on_failure defaults to "block"). */
  required?: boolean;
  /** What a failure (throw, timeout, bad result) leads to; see docs/hooks.md. */
  on_failure?: OnFailure;
  run: HookFunction<P>;
}

/** What a hook file exports as `HOOKS`: for each point, the hooks to run in order. */
export type Hooks = {
  [P in HookPoint]?: (HookFunction<P> | HookDefinition<P>)[];
};

/** Types a hook with its options; returns it unchanged. */
export function defineHook<P extends HookPoint>(hook: HookDefinition<P>): HookDefinition<P> {
  return hook;
}

/** Types a whole `HOOKS` export; returns it unchanged. */
export function defineHooks(hooks: Hooks): Hooks {
  return hooks;
}
