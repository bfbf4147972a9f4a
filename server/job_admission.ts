/**
 * What a token's request must pass before a job is started for it: its executes per minute and
 * its command policy (docs/security.md). The job manager asks, and records a refusal in history.
 *
 * @module
 */
import type { Principal } from "./principal.ts";
import { checkRequest } from "./policy/policy.ts";
import type { ShellDialect } from "./policy/shell_commands.ts";
import { ErrorCode, RpcError } from "./protocol.ts";
import { ExecuteRate } from "./rate_limit.ts";

/** The principal of an embedded job manager that nobody configured: no policy, no limits. */
export const UNRESTRICTED: Principal = {
  name: "default",
  policy: null,
  maxJobs: Infinity,
  executesPerMinute: 0,
  admin: true,
  history: true,
};

/** What the policy reads of a request. */
export interface AdmissionRequest {
  command: string;
  argv?: readonly string[];
  env?: Record<string, string>;
}

/**
 * The shell syntax commands are read in, from the shell that runs them; null when a policy could
 * not read it (zsh, fish, ...). sh is taken to be dash, the stricter reading.
 */
export function dialectOf(shell: string): ShellDialect | null {
  const name = shell.slice(shell.lastIndexOf("/") + 1);
  if (name === "bash") return "bash";
  if (name === "sh" || name === "dash") return "dash";
  return null;
}

export class Admission {
  readonly #rate = new ExecuteRate();
  readonly #dialect: ShellDialect | null;
  readonly #shell: string;

  constructor(shell: string) {
    this.#shell = shell;
    this.#dialect = dialectOf(shell);
  }

  /**
   * Takes one execute from the principal's allowance.
   *
   * @throws {RpcError} RATE_LIMITED, with data.retry_after_ms.
   */
  takeExecute(principal: Principal, now: number): void {
    const waitMs = this.#rate.take(principal.name, principal.executesPerMinute, now);
    if (waitMs === 0) return;
    throw new RpcError(
      ErrorCode.RATE_LIMITED,
      `Cannot execute: this token may send ${principal.executesPerMinute} executes a minute; ` +
        `try again in ${Math.ceil(waitMs / 1000)} s`,
      {
        token: principal.name,
        limit: principal.executesPerMinute,
        retry_after_ms: waitMs,
        scope: "token",
      },
    );
  }

  /** The policy's refusal of the request, or null when it may run. */
  refusal(principal: Principal, request: AdmissionRequest): RpcError | null {
    const policy = principal.policy;
    if (!policy) return null;
    if (this.#dialect === null) {
      // startServer refuses such a configuration; an embedder that skipped it gets no job.
      return new RpcError(
        ErrorCode.POLICY_DENIED,
        `Denied: the command policy cannot read ${this.#shell} syntax`,
        {
          policy: policy.name,
          rule: "shell",
          part: this.#shell,
          reason: "not bash or sh",
          via: [],
        },
      );
    }
    const verdict = checkRequest(policy, {
      command: request.argv ? undefined : request.command,
      argv: request.argv,
      env: request.env,
    }, this.#dialect);
    if (verdict.allowed) return null;
    return new RpcError(
      ErrorCode.POLICY_DENIED,
      `Denied by policy "${policy.name}" (rule ${verdict.rule}): ${verdict.reason}: ${verdict.part}`,
      {
        policy: policy.name,
        rule: verdict.rule,
        part: verdict.part,
        reason: verdict.reason,
        via: verdict.via,
      },
    );
  }
}
