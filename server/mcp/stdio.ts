/**
 * The MCP face over stdio: MCP messages in on stdin, out on stdout, until the client closes
 * stdin or a SIGINT/SIGTERM arrives. Loaded only by `cc-executor mcp` (the SDK is not small).
 *
 * @module
 */
import process from "node:process";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { createMcpServer, type McpFaceOptions } from "./tools.ts";

/** Serves until the client goes away; resolves once the MCP server has closed. */
export async function serveStdio(options: McpFaceOptions): Promise<void> {
  const server = createMcpServer(options);
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => (server.server.onclose = resolve));
  const stop = () => void server.close().catch(() => {});
  // The client closing stdin is how an MCP client says goodbye over stdio.
  process.stdin.on("end", stop);
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  try {
    await server.connect(transport);
    await closed;
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, stop);
    process.stdin.off("end", stop);
    process.stdin.pause();
  }
}
