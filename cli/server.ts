/**
 * `cc-executor server start|status|stop|restart`.
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { ExecutorRpcError } from "../server/client.ts";
import { ConfigError, inspectConfig, loadConfig } from "../server/config.ts";
import { settlesWithin } from "../server/deadline.ts";
import type { ServerInfoResult } from "../server/protocol.ts";
import { certificateHint } from "../server/tls.ts";
import { host, port, seconds } from "./args.ts";
import type { CliContext } from "./context.ts";
import { pidRecord, startDetached, stopDetached } from "./daemon.ts";
import { examples } from "./help.ts";
import { CliError, formatDuration, type Output } from "./output.ts";
import { readPidFile, removePidFile, writePidFile } from "./state.ts";
import {
  connectTo,
  httpUrl,
  resolveTarget,
  secureUrl,
  speaksTls,
  START_HINT,
  withTarget,
} from "./target.ts";

/** `server` and its subcommands. */
export function serverCommand(ctx: CliContext) {
  const server = new Command("server").description("start, inspect and stop the cc-executor server")
    .addHelpText(
      "after",
      examples([
        ["cc-executor server start", "run in the foreground (Ctrl-C stops it)"],
        ["cc-executor server start --detach", "run in the background"],
        ["cc-executor server status", "is it up?"],
        ["cc-executor server stop", "stop the background server"],
      ]),
    );

  server
    .command("start")
    .description(
      "start the server: in the foreground (Ctrl-C stops it and every job it runs), or in the background with --detach",
    )
    .option("--host <host>", "address to listen on (CC_EXECUTOR_HOST, default 127.0.0.1)", host)
    .option(
      "--port <port>",
      "port to listen on (CC_EXECUTOR_PORT, default 8003; 0: any free port)",
      port,
    )
    .option(
      "--detach",
      "run in the background: pid file and log in the state directory; returns once it answers",
    )
    .addOption(
      new Option("--pid-file <path>", "written once listening (used by --detach)").hideHelp(),
    )
    .addHelpText(
      "after",
      examples([
        ["cc-executor server start --port 9000", "foreground, on port 9000"],
        ["cc-executor server start --detach", "background; log in ~/.local/state/cc-executor"],
        [
          "CC_EXECUTOR_TOKEN=$(openssl rand -hex 16) cc-executor server start --host 0.0.0.0",
          "reachable from other hosts, token required",
        ],
      ]),
    )
    .action(async (options) => {
      if (options.detach) {
        const started = await startDetached(options, ctx.output);
        ctx.output.out(
          `cc-executor ${started.version} started in the background (pid ${started.pid}), listening on ${started.url}${
            started.host ? ` (bound to ${started.host})` : ""
          }`,
        );
        ctx.output.err(`log: ${started.log}; stop it with \`cc-executor server stop\``);
        return;
      }
      ctx.setExitCode(await startForeground(options, ctx.output));
    });

  withTarget(
    server.command("status").description(
      "say whether the server is up, and what it is doing (exit 0 up, 1 down)",
    ),
  )
    .option("--json", "print one JSON object")
    .addHelpText(
      "after",
      examples([
        ["cc-executor server status", ""],
        ["cc-executor server status --json | jq .running_jobs", ""],
        ["cc-executor server status --url ws://build-1:8003 --token $TOKEN", "a remote server"],
      ]),
    )
    .action(async (options) => {
      ctx.setExitCode(await status(options, ctx.output));
    });

  server
    .command("stop")
    .description("stop the background server gracefully: its jobs are stopped and reported first")
    .option("--timeout <seconds>", "wait this long before killing its jobs outright", seconds, 30)
    .addHelpText("after", examples([["cc-executor server stop", ""]]))
    .action(async (options) => {
      const stopped = await stopDetached({ timeoutMs: options.timeout * 1000 }, ctx.output);
      if (stopped) {
        ctx.output.out(`cc-executor stopped (pid ${stopped.pid})`);
        return;
      }
      ctx.output.out("no background server is running");
    });

  server
    .command("restart")
    .description("stop the background server (if running) and start it again, on the same address")
    .option("--host <host>", "address to listen on (default: as before)", host)
    .option("--port <port>", "port to listen on (default: as before)", port)
    .option("--timeout <seconds>", "how long the stop may take before jobs are killed", seconds, 30)
    .addHelpText("after", examples([["cc-executor server restart", ""]]))
    .action(async (options) => {
      const before = readPidFile();
      const previous = before ? new URL(before.url) : undefined;
      const address = {
        host: options.host ?? before?.host ?? previous?.hostname.replace(/^\[(.*)\]$/, "$1"),
        port: options.port ?? previous?.port,
      };
      // Refuse before stopping anything: a restart that cannot start must not leave no server.
      const env = Deno.env.toObject();
      if (address.host !== undefined) env.CC_EXECUTOR_HOST = address.host;
      if (address.port !== undefined) env.CC_EXECUTOR_PORT = address.port;
      const problem = inspectConfig({ env }).problems[0];
      if (problem) throw new CliError(`Not restarting: ${problem.message}`);
      await stopDetached({ timeoutMs: options.timeout * 1000 }, ctx.output);
      const started = await startDetached(address, ctx.output);
      ctx.output.out(
        `cc-executor ${started.version} restarted (pid ${started.pid}), listening on ${started.url}`,
      );
    });
  return server;
}

async function startForeground(
  options: { host?: string; port?: string; pidFile?: string },
  output: Output,
): Promise<number> {
  const env = Deno.env.toObject();
  if (options.host !== undefined) env.CC_EXECUTOR_HOST = options.host;
  if (options.port !== undefined) env.CC_EXECUTOR_PORT = options.port;
  // Loaded only here, so commands that only talk to a server start faster.
  const { ServerStartError, startServer } = await import("../server/server.ts");
  let server;
  try {
    server = await startServer(loadConfig({ env }));
  } catch (error) {
    if (error instanceof ConfigError || error instanceof ServerStartError) {
      throw new CliError(error.message, 1);
    }
    throw error;
  }
  output.err(`cc-executor listening on ${server.url} (Ctrl-C to stop)`);
  const pidFile = options.pidFile;
  if (pidFile) writePidFile(pidFile, pidRecord(server.url, pidFile));

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
  // SIGHUP means two things. In a terminal it is the terminal closing: the jobs must stop, not be
  // orphaned. Anywhere else (--detach, a service manager's `kill -HUP`) it is the daemon
  // convention: reload the hooks.
  const hangupStops = Deno.stdin.isTerminal();
  const stopSignals: Deno.Signal[] = hangupStops
    ? ["SIGINT", "SIGTERM", "SIGHUP"]
    : ["SIGINT", "SIGTERM"];
  for (const signal of stopSignals) Deno.addSignalListener(signal, onSignal);
  const onReload = () => {
    server.hooks.reload().then((set) =>
      output.err(
        `hooks reloaded: ${set.hooks.length} loaded` +
          (set.problems.length > 0 ? `, ${set.problems.length} refused (see the log)` : ""),
      )
    ).catch((error) => output.err(`hooks reload failed: ${(error as Error).message}`));
  };
  if (!hangupStops) Deno.addSignalListener("SIGHUP", onReload);
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
    if (!hangupStops) Deno.removeSignalListener("SIGHUP", onReload);
    if (pidFile) removePidFile(pidFile, Deno.pid);
  }
}

/** After a second Ctrl-C: how long the killed jobs get to send their last notifications. */
const FORCED_EXIT_MS = 2000;

interface StatusReport {
  status: "up" | "down";
  url: string;
  version?: string;
  uptime_ms?: number;
  pid?: number;
  sessions?: number;
  running_jobs?: number;
  store?: { backend: string; status: string; pending_writes: number; location?: string };
  /** Up, but its store is unreachable: jobs run, their records wait. */
  degraded?: boolean;
  /** Set when the server is the detached one recorded in the state directory. */
  log?: string;
  /** Why the details are partial (no token, ...). */
  note?: string;
}

async function status(options: { url?: string; token?: string; json?: true }, output: Output) {
  const target = resolveTarget(options);
  const report: StatusReport = { status: "down", url: target.url };
  let health: Record<string, unknown> | undefined;
  try {
    const response = await fetch(httpUrl(target.url, "/health"), {
      signal: AbortSignal.timeout(3000),
    });
    const body = response.ok ? await response.json().catch(() => null) : null;
    const ours = (body?.status === "ok" || body?.status === "degraded") &&
      typeof body.version === "string";
    if (ours) health = body;
    else {
      if (!response.bodyUsed) await response.body?.cancel();
      report.note = `something answers at ${target.url} (HTTP ${response.status} for /health) ` +
        "but it is not a cc-executor server";
    }
  } catch (error) {
    // Nothing answers: down. Unless a TLS server does, and this process cannot talk to it.
    const refused = certificateHint(error, target.url);
    if (refused) report.note = `a TLS server answers at ${target.url}, but ${refused}`;
    else if (await speaksTls(target.url)) {
      report.note = `a TLS server answers at ${target.url}: use ${secureUrl(target.url)}`;
    }
  }
  if (health) {
    report.status = "up";
    report.version = health.version as string;
    report.uptime_ms = health.uptime_ms as number;
    report.sessions = health.sessions as number;
    report.running_jobs = health.running_jobs as number;
    report.store = health.store as StatusReport["store"];
    report.degraded = health.status === "degraded";
    try {
      await using client = await connectTo(target);
      const info: ServerInfoResult = await client.request("server.info", {});
      report.pid = info.pid;
      report.store = info.store;
      report.running_jobs = info.running_jobs;
      // Our own connection is not one the user cares about.
      report.sessions = info.sessions - 1;
    } catch (error) {
      if (!(error instanceof CliError || error instanceof ExecutorRpcError)) throw error;
      report.note = error.message;
    }
    const detached = readPidFile();
    if (detached && detached.url === target.url) {
      report.pid ??= detached.pid;
      report.log = detached.log;
    }
  }
  if (options.json) {
    output.json(report);
  } else if (report.status === "down") {
    const paint = output.paint("stdout");
    output.out(
      `cc-executor: ${paint.red("down")} (${report.note ?? `nothing answers at ${report.url}`})`,
    );
    output.err(`${START_HINT}.`);
  } else {
    const paint = output.paint("stdout");
    const rows: [string, string | undefined][] = [
      ["url", report.url],
      ["version", report.version],
      ["uptime", report.uptime_ms === undefined ? undefined : formatDuration(report.uptime_ms)],
      ["pid", report.pid?.toString()],
      ["sessions", report.sessions?.toString()],
      ["running jobs", report.running_jobs?.toString()],
      ["store", report.store && describeStore(report.store)],
      ["log", report.log],
    ];
    output.out(
      `cc-executor: ${
        report.degraded
          ? paint.yellow("up, degraded (the store is unreachable)")
          : paint.green("up")
      }`,
    );
    for (const [name, value] of rows) {
      if (value !== undefined) output.out(`  ${(name + ":").padEnd(14)}${value}`);
    }
    if (report.note) output.err(`note: ${report.note}`);
  }
  return report.status === "up" ? 0 : 1;
}

function describeStore(store: NonNullable<StatusReport["store"]>): string {
  const where = store.location ? ` ${store.location}` : "";
  const waiting = store.status === "ok"
    ? ""
    : `, ${store.status}: ${store.pending_writes} writes waiting`;
  return `${store.backend}${where}${waiting}`;
}
