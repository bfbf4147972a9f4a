/**
 * An in-process server for `run --local`: loopback, a free port, a random
 * token, gone when the command is.
 *
 * @module
 */
import { ConfigError, loadConfig } from "../server/config.ts";
import { createLogger } from "../server/log.ts";
import { type ExecutorServer, ServerStartError, startServer } from "../server/server.ts";
import { CliError } from "./output.ts";
import type { Target } from "./target.ts";

/** Starts it; `await using` stops it (and any job still running). */
export async function startLocalServer(
  exitCode: number,
): Promise<{ server: ExecutorServer; target: Target } & AsyncDisposable> {
  const token = crypto.randomUUID();
  let server: ExecutorServer;
  try {
    // The user's settings (shell, limits, ...) apply; the address is private to this process.
    const config = loadConfig();
    server = await startServer(
      { ...config, host: "127.0.0.1", port: 0, token },
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
