/**
 * Server configuration from the environment and an optional `.env` file,
 * validated with zod before anything starts. A bad value stops the start
 * with a message naming the variable.
 *
 * @module
 */
import { join } from "node:path";
import { parseEnv } from "node:util";
import { readPrivateFile } from "./private_file.ts";
import type { TimeoutPolicy } from "./store/shape.ts";
import { readTlsFiles, type TlsConfig, TlsFileError } from "./tls.ts";
import { z } from "zod";
import { type PolicyFile, readPolicyFile } from "./policy/policy_file.ts";

const int = (min: number, max: number) =>
  z.string().trim().regex(/^\d+$/, `expected a whole number between ${min} and ${max}`)
    .transform(Number).pipe(
      z.number().int().min(min, `expected at least ${min}`).max(max, `expected at most ${max}`),
    );

/** A comma-separated list of names, blanks dropped. */
const names = (s: string) => s.split(",").map((name) => name.trim()).filter(Boolean);

const onOff = (fallback: "on" | "off") =>
  z.string().trim().toLowerCase().pipe(z.enum(["on", "off"])).default(fallback);

/**
 * Every variable the server reads, with its default; the descriptions feed `cc-executor init`'s
 * .env template and `config show`. docs/configuration.md lists the same.
 */
const ConfigSchema = z.object({
  CC_EXECUTOR_HOST: z.string().trim().min(1).default("127.0.0.1")
    .describe("Address to listen on; anything but loopback requires CC_EXECUTOR_TOKEN."),
  CC_EXECUTOR_PORT: int(0, 65535).default(8003).describe("Port to listen on (0: any free port)."),
  LOG_LEVEL: z.string().trim().toLowerCase().pipe(z.enum(["debug", "info", "warn", "error"]))
    .default("info").describe("debug, info, warn or error; logs go to stderr."),
  CC_EXECUTOR_SHELL: z.string().trim().min(1).optional()
    .describe("Shell that runs commands as <shell> -c <command>; default bash, else sh."),
  CC_EXECUTOR_TOKEN: z.string().min(16, "expected at least 16 characters").optional()
    .describe("Bearer token every client must send (16+ characters)."),
  CC_EXECUTOR_TOKEN_FILE: z.string().trim().min(1).optional()
    .describe(
      "A file holding the token (its first line), instead of CC_EXECUTOR_TOKEN; must not be readable by others.",
    ),
  CC_EXECUTOR_TLS_CERT: z.string().trim().min(1).optional()
    .describe(
      "PEM certificate (chain) file: with CC_EXECUTOR_TLS_KEY, the server speaks HTTPS and WSS only.",
    ),
  CC_EXECUTOR_TLS_KEY: z.string().trim().min(1).optional()
    .describe(
      "PEM private key file of CC_EXECUTOR_TLS_CERT; must not be readable by group or others.",
    ),
  CC_EXECUTOR_MAX_JOBS: int(1, 100_000).default(100)
    .describe("Jobs that may run at once; past it execute gets error -32003."),
  CC_EXECUTOR_MAX_JOBS_PER_SESSION: int(1, 100_000).optional()
    .describe("Jobs one connection may have running at once (default: CC_EXECUTOR_MAX_JOBS)."),
  CC_EXECUTOR_MAX_JOBS_PER_TOKEN: int(1, 100_000).optional()
    .describe(
      "Jobs the clients of one token may have running at once (default: CC_EXECUTOR_MAX_JOBS); a policy file may set it per token.",
    ),
  CC_EXECUTOR_EXECUTES_PER_MINUTE: int(0, 1_000_000).default(0)
    .describe(
      "Executes the clients of one token may send per minute (0: no limit); a policy file may set it per token.",
    ),
  CC_EXECUTOR_POLICY: z.string().trim().min(1).optional()
    .describe(
      "A JSON file of command policies and extra tokens (docs/security.md#command-policy); read at start, never changed through the protocol.",
    ),
  CC_EXECUTOR_MAX_SESSIONS: int(1, 100_000).default(1000)
    .describe("WebSocket connections open at once; past it an upgrade gets 503."),
  CC_EXECUTOR_MAX_MESSAGE_BYTES: int(1024, 1024 ** 3).default(16 * 1024 * 1024)
    .describe("Largest JSON-RPC message a client may send; a larger one gets error -32600."),
  CC_EXECUTOR_MAX_OUTPUT_BYTES: int(1, 2 ** 40).optional()
    .describe(
      "Most output one job may deliver (the default and the most of execute's max_output_bytes); unset: no cap.",
    ),
  CC_EXECUTOR_MAX_TIMEOUT: int(0, 2_147_483).default(86_400)
    .describe(
      "Longest wall time, in seconds, of a job from its start, every retry and the waits between runs included; caps every timeout (0: no cap).",
    ),
  CC_EXECUTOR_REPLAY_BUFFER_BYTES: int(64 * 1024, 1024 ** 3).default(4 * 1024 * 1024)
    .describe("Bytes of notifications each job keeps for late or reconnecting subscribers."),
  // Bounds memory: max_jobs x replay buffer + keep_finished_jobs x this.
  CC_EXECUTOR_FINISHED_REPLAY_BYTES: int(0, 1024 ** 3).default(256 * 1024)
    .describe("What a finished job keeps of its replay buffer (its newest frames)."),
  CC_EXECUTOR_KEEP_FINISHED_JOBS: int(0, 1_000_000).default(200)
    .describe("Finished jobs kept in memory for jobs.get and jobs.subscribe."),
  CC_EXECUTOR_KILL_GRACE_MS: int(0, 600_000).default(2000)
    .describe("Milliseconds between SIGTERM and SIGKILL when stopping a process group."),
  CC_EXECUTOR_COALESCE_MS: int(0, 1000).default(4)
    .describe("Output is coalesced for at most this many milliseconds before it is sent."),
  // 32 KiB keeps each frame's strings (even two-byte ones) under V8's 128 KiB large-object
  // threshold: 256 KiB frames, each allocated and freed as its own large object, cut throughput by
  // half and inflated RSS (docs/performance.md).
  CC_EXECUTOR_CHUNK_BYTES: int(1024, 16 * 1024 * 1024).default(32 * 1024)
    .describe("Largest output chunk sent in one notification."),
  CC_EXECUTOR_WS_IDLE_TIMEOUT: int(0, 3600).default(30)
    .describe("Seconds between WebSocket pings; a peer that does not answer is dropped (0: off)."),
  CC_EXECUTOR_HISTORY: z.string().trim().toLowerCase().pipe(z.enum(["on", "off"])).default("on")
    .describe("off: record no history (jobs still run; history methods say it is off)."),
  CC_EXECUTOR_DB: z.string().trim().min(1).optional()
    .describe("The SQLite history file; default ~/.local/share/cc-executor/history.db (XDG)."),
  REDIS_URL: z.string().trim().regex(/^rediss?:\/\//, "expected redis://host:port or rediss://...")
    .optional()
    .describe("Keep history, timing and sessions in this Redis instead of SQLite."),
  CC_EXECUTOR_REDIS_PREFIX: z.string().min(1).default("cc-executor:")
    .describe("Prefix of every Redis key, so several deployments can share one Redis."),
  // Any id that was valid before the cluster is still valid: it names this server in job records,
  // SQLite-only servers included, and Redis keys take any bytes.
  CC_EXECUTOR_NODE_ID: z.string().trim().min(1).optional()
    .describe("This server's name in job records and in the cluster; default the host name."),
  CC_EXECUTOR_CLUSTER: onOff("on")
    .describe(
      "With REDIS_URL: on registers this server as a node of the cluster (docs/cluster.md).",
    ),
  CC_EXECUTOR_NODE_LABELS: z.string().transform(names).pipe(
    z.array(
      z.string().regex(
        /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$/,
        "each label: letters, digits and . _ : / - (such as gpu, linux, repo:foo)",
      ),
    ),
  ).optional()
    .describe("Comma-separated labels of this node, such as gpu,linux,repo:foo."),
  CC_EXECUTOR_NODE_CAPACITY: int(1, 100_000).optional()
    .describe("Jobs this node takes at once from the cluster; default CC_EXECUTOR_MAX_JOBS."),
  CC_EXECUTOR_NODE_DOWN_AFTER: int(1, 3600).default(10)
    .describe("Seconds without a heartbeat after which a node counts as down."),
  CC_EXECUTOR_NODE_LOST_AFTER: int(0, 86_400).default(0)
    .describe(
      "Seconds a node stays down before the cluster marks its jobs lost and moves its taken jobs.",
    ),
  CC_EXECUTOR_NODE_URL: z.string().trim().regex(/^wss?:\/\//, "expected ws://... or wss://...")
    // Every client of every node reads it in cluster.status, restricted tokens included.
    .refine((url) => !/^wss?:\/\/[^/?#]*@/.test(url), "a user or password has no place in it")
    .optional()
    .describe("The URL other machines reach this node at, shown by cluster status."),
  CC_EXECUTOR_ADAPTIVE_TIMEOUT: z.string().trim().toLowerCase().pipe(z.enum(["on", "off"]))
    .default("on")
    .describe("on: a request without a timeout gets one estimated from history; off: none."),
  CC_EXECUTOR_DEFAULT_TIMEOUT: int(1, 2_147_483).default(600)
    .describe("Seconds, for a command with fewer than 3 successful runs in history."),
  CC_EXECUTOR_TIMEOUT_FLOOR: int(1, 2_147_483).default(30)
    .describe("Least timeout, in seconds, that history can estimate."),
  CC_EXECUTOR_TIMEOUT_CEILING: int(1, 2_147_483).default(3600)
    .describe("Largest timeout, in seconds, that history can estimate."),
  CC_EXECUTOR_HISTORY_OUTPUT_BYTES: int(0, 1024 * 1024).default(8192)
    .describe("Characters of each job's output kept in history, at the start and at the end."),
  CC_EXECUTOR_HISTORY_RETENTION_DAYS: int(0, 36_500).default(30)
    .describe("Finished jobs older than this are pruned from history (0: kept forever)."),
  CC_EXECUTOR_HOOKS_DIR: z.string().trim().min(1).default("hooks")
    .describe("Folder of TypeScript hook files (*.ts), relative to the working directory."),
  CC_EXECUTOR_HOOKS_CONFIG: z.string().trim().min(1).optional()
    .describe("JSON file listing command hooks; default hooks.json in the hooks folder."),
  CC_EXECUTOR_HOOK_TIMEOUT_MS: int(1, 600_000).default(5000)
    .describe("Milliseconds a hook may take when it names no timeout of its own."),
  CC_EXECUTOR_HOOK_MAX_ATTEMPTS: int(1, 10).default(3)
    .describe("Runs a job may get in all when error hooks ask for retries."),
  CC_EXECUTOR_REDACT_SECRETS: onOff("off")
    .describe(
      "on: the redact_secrets hook scrubs secrets from output before it is sent or stored.",
    ),
  CC_EXECUTOR_SECRET_ENV_VARS: z.string().default(
    "CC_EXECUTOR_TOKEN,ANTHROPIC_API_KEY,OPENAI_API_KEY,GITHUB_TOKEN,GH_TOKEN,NPM_TOKEN,AWS_SECRET_ACCESS_KEY",
  ).transform((s) => s.split(",").map((name) => name.trim()).filter(Boolean))
    .describe("Variables whose values redact_secrets scrubs (comma-separated)."),
  CC_EXECUTOR_PYTHON_VENV: onOff("off")
    .describe(
      "on: Python commands run inside the virtualenv found in the job's cwd (python_venv).",
    ),
  CC_EXECUTOR_RECORD_METRICS: onOff("off")
    .describe("on: record_metrics keeps per-command-shape counts and durations in the store."),
  CC_EXECUTOR_CLAUDE_BIN: z.string().trim().min(1).default("claude")
    .describe("The claude program an execute with a prompt runs (a name on PATH, or a path)."),
  CC_EXECUTOR_ENV_WITHHOLD: z.string().default("CC_EXECUTOR_TOKEN,REDIS_URL,ANTHROPIC_API_KEY")
    .transform(names)
    .describe(
      "Variables of the server's environment that commands do not get (comma-separated; NAME or PREFIX*).",
    ),
  CC_EXECUTOR_ENV_ALLOW: z.string().optional().transform((s) => s === undefined ? s : names(s))
    .describe(
      "When set, the only variables of the server's environment commands get (comma-separated; NAME or PREFIX*).",
    ),
  CC_EXECUTOR_SPOOL_DIR: z.string().trim().min(1).optional()
    .describe(
      "Folder where jobs' output spills past 64 KiB, for jobs.output; default spool/ beside the history file.",
    ),
  CC_EXECUTOR_SPOOL_MAX_BYTES: int(0, 2 ** 40).default(256 * 1024 ** 2)
    .describe(
      "Bytes of each job's stdout and of its stderr kept for jobs.output (0: only the first 64 KiB, in memory).",
    ),
  CC_EXECUTOR_ALLOWED_ORIGINS: z.string().optional()
    .transform((s) => s?.split(",").map((origin) => origin.trim()).filter(Boolean))
    .describe(
      "Browser origins allowed to open /ws and /mcp (comma-separated); requests from any other are refused with 403.",
    ),
  CC_EXECUTOR_MCP_MAX_TOKENS: int(500, 25_000).default(8000)
    .describe("Tokens an MCP tool result may take (estimated), unless the call asks otherwise."),
  CC_EXECUTOR_MCP_WAIT_SECONDS: int(1, 3600).default(50)
    .describe(
      "Seconds an MCP execute waits for its job before answering that it runs on in the background.",
    ),
  CC_EXECUTOR_MCP_PROGRESS_MS: int(100, 60_000).default(5000)
    .describe("Milliseconds between MCP progress notifications while a tool call waits."),
  CC_EXECUTOR_TEMPLATES_DIR: z.string().trim().min(1).default("templates")
    .describe(
      "Folder of prompt templates (*.md), relative to the working directory; adds to the built-ins.",
    ),
});

/** A variable the server reads, for templates and `config show`. */
export interface ConfigVariable {
  name: string;
  description: string;
  /** The default as it would be written in the environment; undefined when there is none. */
  default: string | undefined;
  /** Shown masked. */
  secret: boolean;
}

const SECRET_VARIABLES = new Set(["CC_EXECUTOR_TOKEN", "REDIS_URL"]);

/** Every variable the server reads, in a stable order. */
export const CONFIG_VARIABLES: readonly ConfigVariable[] = Object.entries(ConfigSchema.shape).map(
  ([name, schema]) => {
    const fallback = (schema as z.ZodType).safeParse(undefined);
    return {
      name,
      description: (schema as z.ZodType).description ?? "",
      default: fallback.success && fallback.data !== undefined ? String(fallback.data) : undefined,
      secret: SECRET_VARIABLES.has(name),
    };
  },
);

export interface ServerConfig {
  host: string;
  port: number;
  logLevel: "debug" | "info" | "warn" | "error";
  /** Undefined: pick bash when present, else sh. */
  shell: string | undefined;
  token: string | undefined;
  maxJobs: number;
  /** Jobs one connection may have running at once. */
  maxJobsPerSession: number;
  /** Jobs the clients of one token may have running at once, unless the policy file says. */
  maxJobsPerToken: number;
  /** Executes per minute for the clients of one token (0: no limit), unless the policy file says. */
  executesPerMinute: number;
  /** The CC_EXECUTOR_POLICY file, read and checked; null when there is none. */
  policy: PolicyFile | null;
  /** WebSocket connections open at once (in-process ones are not counted). */
  maxSessions: number;
  /** Largest message a client may send, in UTF-8 bytes. */
  maxMessageBytes: number;
  /** Most output one job may deliver (max_output_bytes' default and ceiling); null: no cap. */
  maxOutputBytes: number | null;
  /** Longest wall time, in seconds, of a job's run (every timeout's ceiling); null: no cap. */
  maxTimeoutSeconds: number | null;
  replayBufferBytes: number;
  finishedReplayBytes: number;
  keepFinishedJobs: number;
  killGraceMs: number;
  coalesceMs: number;
  chunkBytes: number;
  wsIdleTimeoutSeconds: number;
  /** False: no store at all (CC_EXECUTOR_HISTORY=off). */
  history: boolean;
  /** The SQLite file; ":memory:" keeps history in memory (tests). */
  db: string;
  /** When set, the store is Redis. */
  redisUrl: string | undefined;
  redisPrefix: string;
  nodeId: string;
  /** Null: not a node of a cluster (no REDIS_URL, or CC_EXECUTOR_CLUSTER=off). */
  cluster: ClusterConfig | null;
  timeouts: TimeoutPolicy;
  historyOutputChars: number;
  /** 0: never prune. */
  historyRetentionDays: number;
  hooks: HooksConfig;
  /**
   * The folder of the user's prompt templates, relative to the working directory or absolute;
   * its files add to or replace the built-in ones by name (templates/loader.ts).
   */
  templatesDir: string;
  /** The program `execute` with `prompt` runs. */
  claudeBin: string;
  /** Which of the server's variables commands get (docs/security.md). */
  env: EnvPolicy;
  /** Where output spills; null: spool/ beside `db`, or a temporary folder for ":memory:". */
  spoolDir: string | null;
  /** Bytes of each stream of a job kept for jobs.output; 0: memory only (64 KiB a job). */
  spoolMaxBytes: number;
  /** Origins a browser may open /ws and /mcp from; requests with any other Origin get 403. */
  allowedOrigins: string[];
  /** Null: plain HTTP and WS. Set: HTTPS and WSS with this certificate and key (server/tls.ts). */
  tls: TlsConfig | null;
  mcp: McpConfig;
}

/** This server as a node of a cluster sharing one Redis (docs/cluster.md). */
export interface ClusterConfig {
  labels: string[];
  /** Jobs it runs at once for the cluster. */
  capacity: number;
  /** A node whose heartbeat is this late is down. */
  downAfterMs: number;
  /** How long a node is down before its jobs are marked lost (and its taken jobs move). */
  lostAfterMs: number;
  /** Where others reach it; null: its listen URL. */
  url: string | null;
  /** The node id is the host name, by default (CC_EXECUTOR_NODE_ID unset). */
  idIsHostName: boolean;
}

/** Which variables of the server's environment reach commands. */
export interface EnvPolicy {
  /** Never passed (NAME, or PREFIX* for every name starting with PREFIX). */
  withhold: string[];
  /** When set, nothing else is passed. */
  allow: string[] | null;
}

/** How the MCP face shapes and paces tool results (docs/mcp.md). */
export interface McpConfig {
  /** Estimated tokens a tool result may take unless the call says otherwise. */
  maxTokens: number;
  /** Seconds `execute` waits before it answers that the job runs on in the background. */
  waitSeconds: number;
  /** Milliseconds between progress notifications while a tool call waits. */
  progressMs: number;
}

/** Where hooks come from and which built-ins run (docs/hooks.md). */
export interface HooksConfig {
  /** Folder of TypeScript hook files, relative to the working directory or absolute. */
  dir: string;
  /** The command hooks' JSON file; null: hooks.json in `dir`, if it exists. */
  configFile: string | null;
  timeoutMs: number;
  /** Runs a job may get in all, retries asked for by error hooks included. */
  maxAttempts: number;
  redactSecrets: boolean;
  /** Variables whose values redact_secrets scrubs. */
  secretEnvVars: string[];
  pythonVenv: boolean;
  recordMetrics: boolean;
}

/** A configuration problem, with the variable it concerns. */
export class ConfigError extends Error {
  constructor(message: string, readonly variable?: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export interface LoadConfigOptions {
  /** The variables to read. @default Deno.env.toObject() */
  env?: Record<string, string>;
  /** A .env file whose values apply where the environment has none; a missing file is fine. @default ".env" */
  envFile?: string | null;
}

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "::1", "localhost"]);

/** True for addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTS.has(host) || host.startsWith("127.");
}

/** Where a variable's value came from. */
export type ConfigSource = "environment" | "env file" | "default";

/** One variable as the server would see it. */
export interface ConfigValue extends ConfigVariable {
  /** The raw value; undefined when unset and without a default. */
  value: string | undefined;
  source: ConfigSource;
}

/** One bad value: which variable, what it was, what is wrong. */
export interface ConfigProblem {
  variable: string;
  value: string | undefined;
  /** A whole line for the user, naming the variable and its value. */
  message: string;
}

/** Everything `config show` and `config validate` report. */
export interface ConfigReport {
  /** The env file that was read, or null when none was (unset, empty or missing). */
  envFile: string | null;
  values: ConfigValue[];
  /** Empty when the configuration is valid. */
  problems: ConfigProblem[];
  /** Set when there are no problems. */
  config: ServerConfig | null;
}

/**
 * Reads the configuration and reports every problem, not only the first: for `config validate`
 * and `config show`. A .env file that cannot be read is a problem of CC_EXECUTOR_ENV_FILE.
 */
export function inspectConfig(options: LoadConfigOptions = {}): ConfigReport {
  const env = options.env ?? Deno.env.toObject();
  const envFile = options.envFile === undefined
    ? (env.CC_EXECUTOR_ENV_FILE ?? ".env")
    : options.envFile;
  const problems: ConfigProblem[] = [];
  let fromFile: Record<string, string> | null = null;
  if (envFile) {
    try {
      fromFile = readEnvFile(envFile);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push({ variable: "CC_EXECUTOR_ENV_FILE", value: envFile, message: error.message });
    }
  }
  const merged: Record<string, string | undefined> = {};
  const values: ConfigValue[] = [];
  for (const variable of CONFIG_VARIABLES) {
    const { name } = variable;
    // An empty variable means "not set", as in most shells' `VAR= cmd` habit; an empty variable in
    // the environment also hides the file's value.
    const raw = name in env ? env[name] : fromFile?.[name];
    const value = raw === "" ? undefined : raw;
    merged[name] = value;
    values.push({
      ...variable,
      value: value ?? variable.default,
      source: value === undefined ? "default" : name in env ? "environment" : "env file",
    });
  }
  const parsed = ConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const seen = new Set<string>();
    for (const issue of parsed.error.issues) {
      const variable = String(issue.path[0]);
      if (seen.has(variable)) continue;
      seen.add(variable);
      // A secret's text is never repeated, not even a wrong one: it may be a real secret mistyped.
      const shown = SECRET_VARIABLES.has(variable)
        ? "(hidden)"
        : JSON.stringify(merged[variable] ?? "");
      problems.push({
        variable,
        value: merged[variable],
        message: `Invalid configuration: ${variable}=${shown}: ${issue.message}`,
      });
    }
  }
  let config: ServerConfig | null = null;
  if (parsed.success) {
    const c = parsed.data;
    const candidate: ServerConfig = {
      host: c.CC_EXECUTOR_HOST,
      port: c.CC_EXECUTOR_PORT,
      logLevel: c.LOG_LEVEL,
      shell: c.CC_EXECUTOR_SHELL,
      token: c.CC_EXECUTOR_TOKEN,
      maxJobs: c.CC_EXECUTOR_MAX_JOBS,
      maxJobsPerSession: c.CC_EXECUTOR_MAX_JOBS_PER_SESSION ?? c.CC_EXECUTOR_MAX_JOBS,
      maxJobsPerToken: c.CC_EXECUTOR_MAX_JOBS_PER_TOKEN ?? c.CC_EXECUTOR_MAX_JOBS,
      executesPerMinute: c.CC_EXECUTOR_EXECUTES_PER_MINUTE,
      policy: null,
      maxSessions: c.CC_EXECUTOR_MAX_SESSIONS,
      maxMessageBytes: c.CC_EXECUTOR_MAX_MESSAGE_BYTES,
      maxOutputBytes: c.CC_EXECUTOR_MAX_OUTPUT_BYTES ?? null,
      maxTimeoutSeconds: c.CC_EXECUTOR_MAX_TIMEOUT || null,
      replayBufferBytes: c.CC_EXECUTOR_REPLAY_BUFFER_BYTES,
      finishedReplayBytes: c.CC_EXECUTOR_FINISHED_REPLAY_BYTES,
      keepFinishedJobs: c.CC_EXECUTOR_KEEP_FINISHED_JOBS,
      killGraceMs: c.CC_EXECUTOR_KILL_GRACE_MS,
      coalesceMs: c.CC_EXECUTOR_COALESCE_MS,
      chunkBytes: c.CC_EXECUTOR_CHUNK_BYTES,
      wsIdleTimeoutSeconds: c.CC_EXECUTOR_WS_IDLE_TIMEOUT,
      history: c.CC_EXECUTOR_HISTORY === "on",
      db: c.CC_EXECUTOR_DB ?? defaultDbPath(env),
      redisUrl: c.REDIS_URL,
      redisPrefix: c.CC_EXECUTOR_REDIS_PREFIX,
      nodeId: c.CC_EXECUTOR_NODE_ID ?? hostname(),
      cluster: c.REDIS_URL !== undefined && c.CC_EXECUTOR_CLUSTER === "on"
        ? {
          labels: [...new Set(c.CC_EXECUTOR_NODE_LABELS ?? [])],
          capacity: c.CC_EXECUTOR_NODE_CAPACITY ?? c.CC_EXECUTOR_MAX_JOBS,
          downAfterMs: c.CC_EXECUTOR_NODE_DOWN_AFTER * 1000,
          lostAfterMs: c.CC_EXECUTOR_NODE_LOST_AFTER * 1000,
          url: c.CC_EXECUTOR_NODE_URL ?? null,
          idIsHostName: c.CC_EXECUTOR_NODE_ID === undefined,
        }
        : null,
      timeouts: {
        adaptive: c.CC_EXECUTOR_ADAPTIVE_TIMEOUT === "on",
        defaultSeconds: c.CC_EXECUTOR_DEFAULT_TIMEOUT,
        floorSeconds: c.CC_EXECUTOR_TIMEOUT_FLOOR,
        ceilingSeconds: c.CC_EXECUTOR_TIMEOUT_CEILING,
        multiplier: 3,
        minSamples: 3,
      },
      historyOutputChars: c.CC_EXECUTOR_HISTORY_OUTPUT_BYTES,
      historyRetentionDays: c.CC_EXECUTOR_HISTORY_RETENTION_DAYS,
      hooks: {
        dir: c.CC_EXECUTOR_HOOKS_DIR,
        configFile: c.CC_EXECUTOR_HOOKS_CONFIG ?? null,
        timeoutMs: c.CC_EXECUTOR_HOOK_TIMEOUT_MS,
        maxAttempts: c.CC_EXECUTOR_HOOK_MAX_ATTEMPTS,
        redactSecrets: c.CC_EXECUTOR_REDACT_SECRETS === "on",
        secretEnvVars: c.CC_EXECUTOR_SECRET_ENV_VARS,
        pythonVenv: c.CC_EXECUTOR_PYTHON_VENV === "on",
        recordMetrics: c.CC_EXECUTOR_RECORD_METRICS === "on",
      },
      templatesDir: c.CC_EXECUTOR_TEMPLATES_DIR,
      claudeBin: c.CC_EXECUTOR_CLAUDE_BIN,
      env: { withhold: c.CC_EXECUTOR_ENV_WITHHOLD, allow: c.CC_EXECUTOR_ENV_ALLOW ?? null },
      spoolDir: c.CC_EXECUTOR_SPOOL_DIR ?? null,
      spoolMaxBytes: c.CC_EXECUTOR_SPOOL_MAX_BYTES,
      allowedOrigins: c.CC_EXECUTOR_ALLOWED_ORIGINS ?? [],
      tls: null,
      mcp: {
        maxTokens: c.CC_EXECUTOR_MCP_MAX_TOKENS,
        waitSeconds: c.CC_EXECUTOR_MCP_WAIT_SECONDS,
        progressMs: c.CC_EXECUTOR_MCP_PROGRESS_MS,
      },
    };
    try {
      if (c.CC_EXECUTOR_TOKEN_FILE !== undefined) {
        if (c.CC_EXECUTOR_TOKEN !== undefined) {
          throw new ConfigError(
            "Invalid configuration: set CC_EXECUTOR_TOKEN or CC_EXECUTOR_TOKEN_FILE, not both",
            "CC_EXECUTOR_TOKEN_FILE",
          );
        }
        candidate.token = readTokenFile(c.CC_EXECUTOR_TOKEN_FILE);
      }
      try {
        candidate.tls = readTlsFiles(c.CC_EXECUTOR_TLS_CERT, c.CC_EXECUTOR_TLS_KEY);
      } catch (error) {
        if (error instanceof TlsFileError) throw new ConfigError(error.message, error.variable);
        throw error;
      }
      if (c.CC_EXECUTOR_POLICY !== undefined) {
        candidate.policy = loadPolicyFile(c.CC_EXECUTOR_POLICY);
      }
      validateConfig(candidate);
      if (problems.length === 0) config = candidate;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      const variable = error.variable ?? "";
      problems.push({ variable, value: merged[variable], message: error.message });
    }
  }
  return { envFile: fromFile ? envFile || null : null, values, problems, config };
}

/**
 * Reads and validates the configuration.
 *
 * @throws {ConfigError} naming the first bad variable.
 */
export function loadConfig(options: LoadConfigOptions = {}): ServerConfig {
  const report = inspectConfig(options);
  const problem = report.problems[0];
  if (problem) throw new ConfigError(problem.message, problem.variable);
  return report.config!;
}

/** `$XDG_DATA_HOME/cc-executor/history.db`, else `~/.local/share/cc-executor/history.db`. */
function defaultDbPath(env: Record<string, string>): string {
  const base = env.XDG_DATA_HOME || (env.HOME ? join(env.HOME, ".local", "share") : ".");
  return join(base, "cc-executor", "history.db");
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}

/** Cross-field rules, also applied to configurations built in code. */
export function validateConfig(config: ServerConfig): void {
  if (config.timeouts.floorSeconds > config.timeouts.ceilingSeconds) {
    throw new ConfigError(
      `Invalid configuration: CC_EXECUTOR_TIMEOUT_FLOOR (${config.timeouts.floorSeconds}) must not exceed CC_EXECUTOR_TIMEOUT_CEILING (${config.timeouts.ceilingSeconds})`,
      "CC_EXECUTOR_TIMEOUT_FLOOR",
    );
  }
  if (config.chunkBytes > config.replayBufferBytes) {
    throw new ConfigError(
      `Invalid configuration: CC_EXECUTOR_CHUNK_BYTES (${config.chunkBytes}) must not exceed CC_EXECUTOR_REPLAY_BUFFER_BYTES (${config.replayBufferBytes})`,
      "CC_EXECUTOR_CHUNK_BYTES",
    );
  }
  if (!isLoopbackHost(config.host) && !config.token && !config.policy?.tokens.length) {
    throw new ConfigError(
      `Refusing to listen on ${config.host} without a token: anyone who can reach it could run commands. ` +
        "Set CC_EXECUTOR_TOKEN (16+ characters) or bind to 127.0.0.1.",
      "CC_EXECUTOR_TOKEN",
    );
  }
}

/**
 * The defaults, for tests and embedders, with history in memory (`db: ":memory:"`) unless
 * `overrides` says otherwise; `overrides` win.
 */
export function defaultConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  const config = { ...loadConfig({ env: {}, envFile: null }), db: ":memory:", ...overrides };
  validateConfig(config);
  return config;
}

/**
 * The token in the first line of `path`. Refused when others may read the file (as ssh refuses
 * such keys): the token is what lets anyone run commands here.
 */
export function readTokenFile(path: string): string {
  try {
    return readSecretFile(path);
  } catch (error) {
    throw new ConfigError(
      `Invalid configuration: CC_EXECUTOR_TOKEN_FILE=${JSON.stringify(path)}: ${
        (error as Error).message
      }`,
      "CC_EXECUTOR_TOKEN_FILE",
    );
  }
}

/** readTokenFile's checks, throwing a plain Error that says only what is wrong. */
function readSecretFile(path: string): string {
  const token = readPrivateFile(path).split(/\r?\n/, 1)[0]!.trim();
  if (token.length < 16) throw new Error("its first line must hold a token of 16+ characters");
  return token;
}

/** The policy file, checked; a problem becomes a ConfigError naming CC_EXECUTOR_POLICY. */
function loadPolicyFile(path: string): PolicyFile {
  try {
    return readPolicyFile(path, readSecretFile);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(
      `Invalid configuration: CC_EXECUTOR_POLICY=${JSON.stringify(path)}: ${
        (error as Error).message
      }`,
      "CC_EXECUTOR_POLICY",
    );
  }
}

/** Null when the file does not exist. */
function readEnvFile(path: string): Record<string, string> | null {
  try {
    // Node's parser (built into Deno): KEY=value lines, comments, quotes, `export`, no expansion.
    return { ...parseEnv(Deno.readTextFileSync(path)) } as Record<string, string>;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new ConfigError(`Cannot read env file ${path}: ${(error as Error).message}`);
  }
}
