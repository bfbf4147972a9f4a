/**
 * `cc-executor server ...`: for now `server start`, in the foreground.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { ConfigError, loadConfig } from "../server/config.ts";
import { settlesWithin } from "../server/deadline.ts";
import { ServerStartError, startServer } from "../server/server.ts";
import { type Output, UsageError } from "./output.ts";

/** `server` and its subcommands; each action resolves to the process exit code. */
export function serverCommand(output: Output, setExitCode: (code: number) => void) {
  const server = new Command("server").description("run the cc-executor server");
  server
    .command("start")
    .description("start the server in the foreground (Ctrl-C stops it and every job it runs)")
    .option("--host <host>", "address to listen on (CC_EXECUTOR_HOST, default 127.0.0.1)")
    .option("--port <port>", "port to listen on (CC_EXECUTOR_PORT, default 8003)")
    .action(async (options) => {
      setExitCode(await startForeground(options, output));
    });
  return server;
}

async function startForeground(
  options: { host?: string; port?: string },
  output: Output,
): Promise<number> {
  const env = Deno.env.toObject();
  if (options.host !== undefined) env.CC_EXECUTOR_HOST = options.host;
  if (options.port !== undefined) env.CC_EXECUTOR_PORT = options.port;
  let server;
  try {
    server = await startServer(loadConfig({ env }));
  } catch (error) {
    if (error instanceof ConfigError || error instanceof ServerStartError) {
      throw new UsageError(error.message, 1);
    }
    throw error;
  }
  output.err(`cc-executor listening on ${server.url} (Ctrl-C to stop)`);

  // First signal: graceful (every job gets SIGTERM, a grace period, SIGKILL, and is reported).
  // Second signal: SIGKILL every group now, give the jobs a moment to report, and leave.
  let signals = 0;
  const forced = Promise.withResolvers<void>();
  const onSignal = () => {
    signals++;
    if (signals === 1) {
      output.err("stopping: waiting for running jobs to stop (Ctrl-C again to kill them now)");
      server.shutdown();
    } else if (signals === 2) {
      output.err("killing every job now");
      server.jobs.killAll();
      forced.resolve();
    }
  };
  const stopSignals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const signal of stopSignals) Deno.addSignalListener(signal, onSignal);
  const stopped = server.finished.then(() => server.shutdown());
  // Killed groups end within moments; whatever still holds up shutdown after that (a peer that
  // never completes its close handshake) does not keep the process alive.
  const forcedExit = forced.promise.then(async () =>
    (await settlesWithin(stopped, FORCED_EXIT_MS)) ? 0 : 1
  );
  try {
    return await Promise.race([stopped.then(() => 0), forcedExit]);
  } finally {
    for (const signal of stopSignals) Deno.removeSignalListener(signal, onSignal);
  }
}

/** After a second Ctrl-C: how long the killed jobs get to send their last notifications. */
const FORCED_EXIT_MS = 2000;
