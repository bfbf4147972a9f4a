/**
 * `cc-executor server ...`: for now `server start`, in the foreground.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { ConfigError, loadConfig } from "../server/config.ts";
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
  // Second signal: SIGKILL every group now and leave.
  let signals = 0;
  const onSignal = () => {
    signals++;
    if (signals === 1) {
      output.err("stopping: waiting for running jobs to stop (Ctrl-C again to kill them now)");
      server.shutdown();
    } else {
      server.jobs.killAll();
    }
  };
  const stopSignals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const signal of stopSignals) Deno.addSignalListener(signal, onSignal);
  try {
    await server.finished;
    await server.shutdown();
  } finally {
    for (const signal of stopSignals) Deno.removeSignalListener(signal, onSignal);
  }
  return 0;
}
