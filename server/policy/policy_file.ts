/**
 * The CC_EXECUTOR_POLICY file: named command policies, and extra tokens, each bound to a policy
 * and limits of its own (docs/security.md#command-policy). Read once at start; a bad file stops
 * the start with a message naming the field.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import type { CommandPolicy, PolicyRule } from "./policy.ts";

const Regex = z.string().min(1).superRefine((source, ctx) => {
  try {
    new RegExp(source, "u");
  } catch (error) {
    ctx.addIssue({
      code: "custom",
      message: `not a valid regular expression: ${(error as Error).message}`,
    });
  }
});

const RuleSchema = z.object({
  name: z.string().min(1).optional(),
  executable: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  args: Regex.optional(),
  pattern: Regex.optional(),
  dynamic_args: z.enum(["match", "no_match", "as_written"]).optional(),
  reason: z.string().min(1).optional(),
}).strict().refine((rule) => rule.executable !== undefined || rule.pattern !== undefined, {
  message: "a rule needs an executable or a pattern",
});

const PolicySchema = z.object({
  allow: z.array(RuleSchema).optional(),
  deny: z.array(RuleSchema).default([]),
  unclassified: z.enum(["deny", "allow"]).optional(),
  write_redirects: z.boolean().default(true),
  variables: z.array(
    z.string().regex(
      /^[A-Za-z_][A-Za-z0-9_]*(\*|=.*)?$/s,
      "a variable name, a prefix ending in *, or NAME=value",
    ),
  )
    .default([]),
}).strict();

const TokenSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . - only")
    .refine((name) => name !== "default", { message: '"default" is the name of the main token' }),
  token_sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, "64 hex digits (sha256sum of the token)")
    .optional(),
  token_file: z.string().min(1).optional(),
  policy: z.string().min(1).optional(),
  max_jobs: z.number().int().min(1).optional(),
  executes_per_minute: z.number().int().min(1).optional(),
  history: z.boolean().default(false),
}).strict().refine(
  (token) => (token.token_sha256 === undefined) !== (token.token_file === undefined),
  {
    message: "give token_sha256 or token_file (one of them)",
  },
);

const PolicyFileSchema = z.object({
  policies: z.record(z.string().min(1), PolicySchema).default({}),
  tokens: z.array(TokenSchema).default([]),
}).strict();

/** A token of the policy file, ready to compare. */
export interface PolicyToken {
  name: string;
  /** SHA-256 of the token. */
  digest: Uint8Array;
  /** null: no command policy. */
  policy: CommandPolicy | null;
  maxJobs: number | null;
  executesPerMinute: number | null;
  /** May read history (which holds every client's commands and output). */
  history: boolean;
}

export interface PolicyFile {
  /** Applies to the main token (CC_EXECUTOR_TOKEN) and, without one, to loopback clients. */
  defaultPolicy: CommandPolicy | null;
  tokens: PolicyToken[];
}

/**
 * Reads and checks a policy file. `readToken` reads a `token_file` (with the same checks as
 * CC_EXECUTOR_TOKEN_FILE).
 *
 * @throws {Error} a one-line message naming the field that is wrong.
 */
export function readPolicyFile(path: string, readToken: (path: string) => string): PolicyFile {
  let raw: unknown;
  try {
    raw = JSON.parse(Deno.readTextFileSync(path));
  } catch (error) {
    throw new Error(`cannot read it as JSON (${(error as Error).message})`);
  }
  return compilePolicyFile(raw, readToken);
}

/** Checks a policy file's parsed JSON; see readPolicyFile. */
export function compilePolicyFile(raw: unknown, readToken: (path: string) => string): PolicyFile {
  const parsed = PolicyFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.map((key) => typeof key === "number" ? `[${key}]` : `.${String(key)}`)
      .join("").replace(/^\./, "");
    throw new Error(`${where || "the file"}: ${issue.message}`);
  }
  const file = parsed.data;
  const policies = new Map(
    Object.entries(file.policies).map(([name, policy]) => [name, compilePolicy(name, policy)]),
  );
  const names = new Set<string>();
  const digests = new Set<string>();
  const tokens = file.tokens.map((token, i): PolicyToken => {
    if (names.has(token.name)) throw new Error(`tokens[${i}].name: "${token.name}" is used twice`);
    names.add(token.name);
    const policyName = token.policy ?? (policies.has("default") ? "default" : null);
    const policy = policyName === null ? null : policies.get(policyName);
    if (policy === undefined) {
      throw new Error(`tokens[${i}].policy: there is no policy "${policyName}" under policies`);
    }
    const digest = token.token_sha256 !== undefined
      ? Uint8Array.from(
        token.token_sha256.toLowerCase().match(/../g)!.map((hex) => parseInt(hex, 16)),
      )
      : sha256(readTokenOf(token.token_file!, i, readToken));
    const key = Array.from(digest).join(",");
    if (digests.has(key)) throw new Error(`tokens[${i}]: the same token as another entry`);
    digests.add(key);
    return {
      name: token.name,
      digest,
      policy,
      maxJobs: token.max_jobs ?? null,
      executesPerMinute: token.executes_per_minute ?? null,
      history: token.history,
    };
  });
  return { defaultPolicy: policies.get("default") ?? null, tokens };
}

function readTokenOf(path: string, i: number, readToken: (path: string) => string): string {
  try {
    return readToken(path);
  } catch (error) {
    throw new Error(`tokens[${i}].token_file ${JSON.stringify(path)}: ${(error as Error).message}`);
  }
}

/** SHA-256 of a token, as the policy file's token_sha256 holds it. */
export function sha256(text: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(text).digest());
}

function compilePolicy(name: string, policy: z.output<typeof PolicySchema>): CommandPolicy {
  const allow = policy.allow?.map((rule, i) => compileRule(rule, `allow[${i}]`, "allow")) ?? null;
  return {
    name,
    allow,
    deny: policy.deny.map((rule, i) => compileRule(rule, `deny[${i}]`, "deny")),
    unclassified: policy.unclassified ?? (allow ? "deny" : "allow"),
    writeRedirects: policy.write_redirects,
    variables: policy.variables,
  };
}

function compileRule(
  rule: z.output<typeof RuleSchema>,
  label: string,
  kind: "allow" | "deny",
): PolicyRule {
  const executable = rule.executable;
  return {
    label: rule.name ?? label,
    executables: executable === undefined
      ? null
      : typeof executable === "string"
      ? [executable]
      : executable,
    args: rule.args === undefined ? null : new RegExp(rule.args, "u"),
    pattern: rule.pattern === undefined ? null : new RegExp(rule.pattern, "u"),
    dynamicArgs: rule.dynamic_args ?? (kind === "deny" ? "match" : "no_match"),
    reason: rule.reason ?? null,
  };
}
