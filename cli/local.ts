/**
 * An in-process server for `run --local`: loopback, a free port, a random
 * token, gone when the command is.
 *
 * @module
 */
import { ConfigError, loadConfig, type ServerConfig } from "../server/config.ts";
import { createLogger } from "../server/log.ts";
import { type ExecutorServer, ServerStartError, startServer } from "../server/server.ts";
import { CliError } from "./output.ts";
import type { Target } from "./target.ts";

/** A server inside this process; disposing of it stops it and every job it runs. */
export type LocalServer = { server: ExecutorServer; target: Target } & AsyncDisposable;

/**
 * Starts it; `await using` stops it (and any job still running). `options.adjust` changes the
 * settings read from the environment before the server starts.
 */
export async function startLocalServer(
  exitCode: number,
  options: { adjust?: (config: ServerConfig) => ServerConfig } = {},
): Promise<LocalServer> {
  const token = crypto.randomUUID();
  let server: ExecutorServer;
  try {
    // The user's settings (shell, limits, ...) apply; the address is private to this process, so
    // the configured one is neither used nor checked.
    const config = loadConfig({
      env: { ...Deno.env.toObject(), CC_EXECUTOR_HOST: "127.0.0.1", CC_EXECUTOR_PORT: "0" },
    });
    server = await startServer(
      { ...(options.adjust?.(config) ?? config), host: "127.0.0.1", port: 0, token },
      { logger: createLogger(config.logLevel === "debug" ? "debug" : "warn") },
    );
  } catch (error) {
    if (error instanceof ConfigError || error instanceof ServerStartError) {
      throw new CliError(error.message, exitCode);
    }
    throw error;
  }
  return {
    server,
    target: { url: server.url, token, source: "--url" },
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}
