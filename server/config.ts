/**
 * Server configuration from the environment and an optional `.env` file,
 * validated with zod before anything starts. A bad value stops the start
 * with a message naming the variable.
 *
 * @module
 */
import { parse as parseDotenv } from "dotenv";
import { z } from "zod";

const int = (min: number, max: number) =>
  z.string().trim().regex(/^\d+$/, `expected a whole number between ${min} and ${max}`)
    .transform(Number).pipe(
      z.number().int().min(min, `expected at least ${min}`).max(max, `expected at most ${max}`),
    );

/** Every variable the server reads, with its default. docs/configuration.md lists the same. */
const ConfigSchema = z.object({
  CC_EXECUTOR_HOST: z.string().trim().min(1).default("127.0.0.1"),
  CC_EXECUTOR_PORT: int(0, 65535).default(8003),
  LOG_LEVEL: z.string().trim().toLowerCase().pipe(z.enum(["debug", "info", "warn", "error"]))
    .default("info"),
  /** The shell that runs commands as `<shell> -c <command>`; default bash where present, else sh. */
  CC_EXECUTOR_SHELL: z.string().trim().min(1).optional(),
  /** Bearer token every WebSocket client must present; required when binding beyond loopback. */
  CC_EXECUTOR_TOKEN: z.string().min(16, "expected at least 16 characters").optional(),
  CC_EXECUTOR_MAX_JOBS: int(1, 100_000).default(100),
  /** Bytes of notifications each job keeps for replay to late or reconnecting subscribers. */
  CC_EXECUTOR_REPLAY_BUFFER_BYTES: int(64 * 1024, 1024 ** 3).default(4 * 1024 * 1024),
  /**
   * What a finished job keeps of its replay buffer (its newest frames; the terminal one always).
   * Bounds memory: max_jobs x replay buffer + keep_finished_jobs x this.
   */
  CC_EXECUTOR_FINISHED_REPLAY_BYTES: int(0, 1024 ** 3).default(256 * 1024),
  /** Finished jobs kept in memory for jobs.get / jobs.subscribe. */
  CC_EXECUTOR_KEEP_FINISHED_JOBS: int(0, 1_000_000).default(200),
  /** Between SIGTERM and SIGKILL when stopping a process group. */
  CC_EXECUTOR_KILL_GRACE_MS: int(0, 600_000).default(2000),
  /** Output is coalesced for at most this long before it is sent. */
  CC_EXECUTOR_COALESCE_MS: int(0, 1000).default(4),
  /**
   * Largest output chunk sent in one notification. 32 KiB keeps each frame's strings (even
   * two-byte ones) under V8's 128 KiB large-object threshold: 256 KiB frames, each allocated and
   * freed as its own large object, cut throughput by half and inflated RSS (docs/performance.md).
   */
  CC_EXECUTOR_CHUNK_BYTES: int(1024, 16 * 1024 * 1024).default(32 * 1024),
  /** Seconds between WebSocket pings; a peer that does not answer is dropped. 0 disables. */
  CC_EXECUTOR_WS_IDLE_TIMEOUT: int(0, 3600).default(30),
});

export interface ServerConfig {
  host: string;
  port: number;
  logLevel: "debug" | "info" | "warn" | "error";
  /** Undefined: pick bash when present, else sh. */
  shell: string | undefined;
  token: string | undefined;
  maxJobs: number;
  replayBufferBytes: number;
  finishedReplayBytes: number;
  keepFinishedJobs: number;
  killGraceMs: number;
  coalesceMs: number;
  chunkBytes: number;
  wsIdleTimeoutSeconds: number;
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

/**
 * Reads and validates the configuration.
 *
 * @throws {ConfigError} naming the first bad variable.
 */
export function loadConfig(options: LoadConfigOptions = {}): ServerConfig {
  const env = options.env ?? Deno.env.toObject();
  const envFile = options.envFile === undefined
    ? (env.CC_EXECUTOR_ENV_FILE ?? ".env")
    : options.envFile;
  const fromFile = envFile ? readEnvFile(envFile) : {};
  const merged: Record<string, string | undefined> = {};
  for (const key of Object.keys(ConfigSchema.shape)) {
    const value = env[key] ?? fromFile[key];
    // An empty variable means "not set", as in most shells' `VAR= cmd` habit.
    merged[key] = value === "" ? undefined : value;
  }
  const parsed = ConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const variable = String(issue.path[0]);
    throw new ConfigError(
      `Invalid configuration: ${variable}=${
        JSON.stringify(merged[variable] ?? "")
      }: ${issue.message}`,
      variable,
    );
  }
  const c = parsed.data;
  const config: ServerConfig = {
    host: c.CC_EXECUTOR_HOST,
    port: c.CC_EXECUTOR_PORT,
    logLevel: c.LOG_LEVEL,
    shell: c.CC_EXECUTOR_SHELL,
    token: c.CC_EXECUTOR_TOKEN,
    maxJobs: c.CC_EXECUTOR_MAX_JOBS,
    replayBufferBytes: c.CC_EXECUTOR_REPLAY_BUFFER_BYTES,
    finishedReplayBytes: c.CC_EXECUTOR_FINISHED_REPLAY_BYTES,
    keepFinishedJobs: c.CC_EXECUTOR_KEEP_FINISHED_JOBS,
    killGraceMs: c.CC_EXECUTOR_KILL_GRACE_MS,
    coalesceMs: c.CC_EXECUTOR_COALESCE_MS,
    chunkBytes: c.CC_EXECUTOR_CHUNK_BYTES,
    wsIdleTimeoutSeconds: c.CC_EXECUTOR_WS_IDLE_TIMEOUT,
  };
  validateConfig(config);
  return config;
}

/** Cross-field rules, also applied to configurations built in code. */
export function validateConfig(config: ServerConfig): void {
  if (config.chunkBytes > config.replayBufferBytes) {
    throw new ConfigError(
      `Invalid configuration: CC_EXECUTOR_CHUNK_BYTES (${config.chunkBytes}) must not exceed CC_EXECUTOR_REPLAY_BUFFER_BYTES (${config.replayBufferBytes})`,
      "CC_EXECUTOR_CHUNK_BYTES",
    );
  }
  if (!isLoopbackHost(config.host) && !config.token) {
    throw new ConfigError(
      `Refusing to listen on ${config.host} without a token: anyone who can reach it could run commands. ` +
        "Set CC_EXECUTOR_TOKEN (16+ characters) or bind to 127.0.0.1.",
      "CC_EXECUTOR_TOKEN",
    );
  }
}

/** The defaults, for tests and embedders; `overrides` win. */
export function defaultConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  const config = { ...loadConfig({ env: {}, envFile: null }), ...overrides };
  validateConfig(config);
  return config;
}

function readEnvFile(path: string): Record<string, string> {
  try {
    return parseDotenv(Deno.readTextFileSync(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw new ConfigError(`Cannot read env file ${path}: ${(error as Error).message}`);
  }
}
