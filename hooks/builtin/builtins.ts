/**
 * The built-in hooks, each off unless configured on: `python_venv`
 * (CC_EXECUTOR_PYTHON_VENV), `redact_secrets` (CC_EXECUTOR_REDACT_SECRETS) and
 * `record_metrics` (CC_EXECUTOR_RECORD_METRICS). They run in-process, before
 * the hooks loaded from files at the same point.
 *
 * @module
 */
import type { HooksConfig } from "../../server/config.ts";
import type { Logger } from "../../server/log.ts";
import type { Store } from "../../server/store/store.ts";
import type { Hook } from "../hook.ts";
import { pythonVenvHook } from "./python_venv.ts";
import { recordMetricsHook } from "./record_metrics.ts";
import { redactSecretsHook } from "./redact_secrets.ts";

export { PYTHON_VENV } from "./python_venv.ts";
export { RECORD_METRICS } from "./record_metrics.ts";
export { REDACT_SECRETS } from "./redact_secrets.ts";

/** What the built-ins need from the server. */
export interface BuiltinDeps {
  /** Where record_metrics writes. */
  store: Store;
  /** A snapshot of the server's environment: secrets and PATH come from here, never Deno.env. */
  env: Record<string, string>;
  logger: Logger;
}

/**
 * The enabled built-ins, in the order they run: python_venv (pre_execution), redact_secrets
 * (output), record_metrics (post_execution). Each times out after `config.timeoutMs`.
 *
 * @example
 * ```ts
 * const hooks = builtinHooks(config.hooks, { store, env: Deno.env.toObject(), logger });
 * ```
 */
export function builtinHooks(config: HooksConfig, deps: BuiltinDeps): Hook[] {
  const hooks: Hook[] = [];
  const timeoutMs = config.timeoutMs;
  if (config.pythonVenv) {
    hooks.push(pythonVenvHook({ env: deps.env, timeoutMs }));
    // An environment merge cannot unset a variable, and PYTHONHOME overrides any venv.
    if (deps.env.PYTHONHOME !== undefined) {
      deps.logger.warn(
        "python_venv: PYTHONHOME is set in the server's environment; jobs inherit it, and it " +
          "overrides the virtualenv's interpreter settings (unset it where the server starts)",
      );
    }
  }
  if (config.redactSecrets) {
    hooks.push(
      redactSecretsHook({ secretEnvVars: config.secretEnvVars, env: deps.env, timeoutMs }),
    );
  }
  if (config.recordMetrics) hooks.push(recordMetricsHook({ store: deps.store, timeoutMs }));
  return hooks;
}
