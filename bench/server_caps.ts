/**
 * The server's own caps (CC_EXECUTOR_MAX_SESSIONS, CC_EXECUTOR_MAX_JOBS, ...) that a load scenario
 * needs above some count: raised for that scenario's server only when the value it would start
 * with (its default, or what this environment sets) is lower, so the report can say which caps
 * the figures needed and which defaults already allowed them.
 *
 * @module
 */
import { inspectConfig, type ServerConfig } from "../server/config.ts";

/** The numeric caps a scenario may need raised. */
type CapField = "maxSessions" | "maxJobs" | "maxJobsPerSession" | "maxJobsPerToken";

export interface CapNeed {
  variable: string;
  field: CapField;
  /** The least value the scenario needs; set when the server's value is below it. */
  need: number;
}

export interface CapSetting {
  variable: string;
  /** What the server would have started with: its default or this environment's value. */
  inherited: number;
  /** What the bench set for the scenario's server; null when `inherited` was enough. */
  set: number | null;
}

/**
 * The environment to add for a server that must allow `needs`, on top of `env` (what the
 * scenario already sets), in the order given. The server reads the same variables through the same
 * schema, so the values it starts with are known here without asking it.
 */
export function raiseCaps(
  needs: readonly CapNeed[],
  env: Record<string, string> = {},
): { env: Record<string, string>; settings: CapSetting[] } {
  const added: Record<string, string> = {};
  const settings = needs.map(({ variable, field, need }): CapSetting => {
    // Again for each: some caps default to another (the per-session cap to CC_EXECUTOR_MAX_JOBS),
    // so raising one may already raise the next.
    const inherited = effectiveConfig({ ...env, ...added })[field];
    if (inherited >= need) return { variable, inherited, set: null };
    added[variable] = String(need);
    return { variable, inherited, set: need };
  });
  return { env: added, settings };
}

/** The configuration a bench server would load (ServerProcess clears CC_EXECUTOR_ENV_FILE). */
function effectiveConfig(env: Record<string, string>): ServerConfig {
  const report = inspectConfig({
    env: { ...Deno.env.toObject(), CC_EXECUTOR_ENV_FILE: "", ...env },
    envFile: null,
  });
  if (!report.config) {
    throw new Error(
      `the server's configuration is invalid: ${report.problems.map((p) => p.message).join("; ")}`,
    );
  }
  return report.config;
}
