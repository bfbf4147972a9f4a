/**
 * `cc-executor mcp`: the MCP face over stdio, for `claude mcp add cc-executor -- cc-executor mcp`.
 * By default jobs run in this process (an engine of its own, gone when the MCP client closes
 * stdin); with --url (or CC_EXECUTOR_URL) they run on that server, where they show up in
 * `jobs list` and outlive this process. Nothing but MCP messages goes to stdout; logs go to stderr.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { ExecutorClient } from "../server/client.ts";
import { ConfigError, loadConfig, type McpConfig } from "../server/config.ts";
import { readEnv } from "../server/env.ts";
import { engineConnection } from "../server/mcp/connection.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import { CliError } from "./output.ts";
import { connectTo, resolveTarget, withTarget } from "./target.ts";

export function mcpCommand(_ctx: CliContext) {
  return withTarget(
    new Command("mcp").description(
      "serve MCP over stdio for Claude Code and other MCP clients; jobs run in this process, " +
        "or on the server given by --url (docs/mcp.md)",
    ),
  )
    .addHelpText(
      "after",
      examples([
        ["claude mcp add cc-executor -- cc-executor mcp", "add it to Claude Code (stdio)"],
        [
          "claude mcp add cc-executor -- cc-executor mcp --url ws://127.0.0.1:8003/ws",
          "run jobs on a running server instead",
        ],
        [
          "claude mcp add --transport http cc-executor http://127.0.0.1:8003/mcp",
          "or talk to a running server's /mcp directly",
        ],
      ]),
    )
    .action(async (options) => {
      const config = mcpConfig();
      const remote = options.url !== undefined || readEnv("CC_EXECUTOR_URL");
      // The server (and the SDK, below) load only for this command, so no other pays for them.
      await using local = remote ? null : await (await import("./local.ts")).startLocalServer(1);
      // A remote server may restart: the next call connects again rather than failing forever.
      const engine = engineConnection(() =>
        local
          ? ExecutorClient.attach(local.server.openInProcessSocket(), "in-process")
          : connectTo(resolveTarget(options))
      );
      // A wrong --url or token fails now, not on the first call.
      if (remote) await engine.client();

      const { serveStdio } = await import("../server/mcp/stdio.ts");
      try {
        await serveStdio({ client: engine.client, config });
      } finally {
        await engine.close();
      }
    });
}

/** The MCP settings from the environment (CC_EXECUTOR_MCP_*). */
function mcpConfig(): McpConfig {
  try {
    return loadConfig().mcp;
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(error.message);
    throw error;
  }
}
