/**
 * Who a connection speaks for: the main token (or, without one, anyone on loopback), or one of
 * the policy file's tokens, each with its command policy and limits (docs/security.md).
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { presentedToken } from "./auth.ts";
import type { ServerConfig } from "./config.ts";
import type { CommandPolicy } from "./policy/policy.ts";
import { sha256 } from "./policy/policy_file.ts";

export interface Principal {
  /** "default" for the main token, else the policy file's name for the token. */
  name: string;
  /** null: every command may run. */
  policy: CommandPolicy | null;
  /** Jobs its clients may have running at once. */
  maxJobs: number;
  /** Executes its clients may send per minute; 0: no limit. */
  executesPerMinute: number;
  /** Sees and controls every job, reads history, reloads hooks (the main token). */
  admin: boolean;
  /** May read history (which holds every client's commands and output). */
  history: boolean;
}

/** The principal of the main token. */
function defaultPrincipal(config: ServerConfig): Principal {
  return {
    name: "default",
    policy: config.policy?.defaultPolicy ?? null,
    maxJobs: config.maxJobsPerToken,
    executesPerMinute: config.executesPerMinute,
    admin: true,
    history: true,
  };
}

/** Finds the principal a request authenticates as. */
export class Principals {
  /** How digests are compared: node:crypto's constant-time comparison. */
  static readonly compare: (a: Uint8Array, b: Uint8Array) => boolean = timingSafeEqual;
  readonly default: Principal;
  readonly #compare: (a: Uint8Array, b: Uint8Array) => boolean;
  readonly #mainDigest: Uint8Array | null;
  readonly #tokens: { digest: Uint8Array; principal: Principal }[];

  /** `compare` is for tests that watch the comparisons; it must be constant-time. */
  constructor(config: ServerConfig, compare = Principals.compare) {
    this.#compare = compare;
    this.default = defaultPrincipal(config);
    this.#mainDigest = config.token ? sha256(config.token) : null;
    this.#tokens = (config.policy?.tokens ?? []).map((token) => ({
      digest: token.digest,
      principal: {
        name: token.name,
        policy: token.policy,
        maxJobs: token.maxJobs ?? config.maxJobsPerToken,
        executesPerMinute: token.executesPerMinute ?? config.executesPerMinute,
        admin: false,
        history: token.history,
      },
    }));
  }

  /** Whether a request must carry a token: one is configured. */
  get required(): boolean {
    return this.#mainDigest !== null || this.#tokens.length > 0;
  }

  /** Every principal, the default first (for server.info and limits). */
  get all(): Principal[] {
    return [this.default, ...this.#tokens.map((token) => token.principal)];
  }

  /**
   * The principal whose token the request carries; the default one when no token is required;
   * null when the token is missing or wrong. Every candidate is compared, in constant time over
   * SHA-256 digests, so timing tells nothing about which one came close.
   */
  authenticate(request: Request): Principal | null {
    if (!this.required) return this.default;
    const given = presentedToken(request);
    if (given === null) return null;
    const digest = sha256(given);
    let found: Principal | null = null;
    if (this.#mainDigest && this.#compare(digest, this.#mainDigest)) found = this.default;
    for (const token of this.#tokens) {
      if (this.#compare(digest, token.digest) && found === null) found = token.principal;
    }
    return found;
  }
}
