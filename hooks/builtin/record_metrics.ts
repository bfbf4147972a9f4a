/**
 * The `record_metrics` built-in (CC_EXECUTOR_RECORD_METRICS=on): after every
 * run, adds its status and duration to its command shape's all-time counts in
 * the store (`history.stats` reports them as `metrics`). Unlike the job
 * records, these counts survive pruning.
 *
 * @module
 */
import type { Store } from "../../server/store/store.ts";
import { commandShape } from "../../server/store/shape.ts";
import type { Hook } from "../hook.ts";
import type { HookContext } from "../types.ts";

/** The built-in's name, as `hooks list` and records show it. */
export const RECORD_METRICS = "record_metrics";

export interface RecordMetricsOptions {
  store: Store;
  /** Milliseconds the store write may take. */
  timeoutMs: number;
  /** When a run counts as ended. @default Date.now */
  now?: () => number;
}

/**
 * A post_execution hook that calls `store.recordMetrics` once per job, with the outcome it ended
 * with (post_execution runs after a job's last attempt). It attaches nothing. A store that cannot
 * be written to rejects: the runner records the failure and the job is unaffected (on_failure
 * `proceed`). A dry run (`hooks run`) writes nothing.
 */
export function recordMetricsHook(options: RecordMetricsOptions): Hook {
  const now = options.now ?? Date.now;
  return {
    name: RECORD_METRICS,
    point: "post_execution",
    source: { kind: "builtin", location: RECORD_METRICS },
    timeoutMs: options.timeoutMs,
    onFailure: "proceed",
    required: false,
    async invoke(ctx: HookContext): Promise<undefined> {
      if (ctx.point !== "post_execution") {
        throw new Error(`${RECORD_METRICS} runs at post_execution, not ${ctx.point}`);
      }
      if (ctx.dry_run) return;
      await options.store.recordMetrics({
        shape: commandShape(ctx.request.command),
        status: ctx.outcome.status,
        duration_ms: ctx.outcome.duration_ms,
        ended_at: now(),
      });
    },
  };
}
