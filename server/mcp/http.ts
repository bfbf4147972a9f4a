/**
 * `/mcp`: the MCP face over Streamable HTTP, stateless. Each POST gets its own MCP server and
 * transport (the SDK's stateless pattern), all driving the engine through one in-process
 * connection per token (so each token's policy and limits apply), so nothing is kept per MCP
 * client and nothing leaks when one goes away without a goodbye. Auth and the Origin check happen
 * before this, as for /ws.
 *
 * @module
 */
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { ExecutorClient } from "../client.ts";
import type { McpConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import type { Principal } from "../principal.ts";
import { type EngineConnection, engineConnection } from "./connection.ts";
import { createMcpServer } from "./tools.ts";

export interface McpHttpOptions {
  /**
   * Opens a session on the engine speaking for `principal` and returns the client end
   * (ExecutorServer.openInProcessSocket).
   */
  connect: (principal: Principal) => WebSocket;
  config: McpConfig;
  logger: Logger;
}

export interface McpHttpHandler {
  /** `completed` settles once the response has been sent or the client has gone (Deno.serve's info.completed). */
  handle(request: Request, completed: Promise<void>, principal: Principal): Promise<Response>;
  /** Ends calls in flight and the engine connection (server shutdown). */
  close(): Promise<void>;
}

export function createMcpHttpHandler(options: McpHttpOptions): McpHttpHandler {
  // One per token, opened on its first request.
  const engines = new Map<string, EngineConnection>();
  const engineFor = (principal: Principal): EngineConnection => {
    let engine = engines.get(principal.name);
    if (!engine) {
      engine = engineConnection(() =>
        ExecutorClient.attach(options.connect(principal), "in-process")
      );
      engines.set(principal.name, engine);
    }
    return engine;
  };
  const live = new Set<{ close(): Promise<void> }>();
  let closed = false;

  return {
    async handle(request, completed, principal) {
      if (closed) {
        return Response.json({ error: "The server is shutting down" }, { status: 503 });
      }
      // Stateless: no session to stream server messages on (GET) or to end (DELETE). Said here,
      // because the SDK would hold a GET open for good.
      if (request.method !== "POST") {
        return Response.json({
          error: `Method ${request.method} is not allowed on /mcp: this server is stateless, ` +
            "send each JSON-RPC message in a POST",
        }, { status: 405, headers: { allow: "POST" } });
      }
      const server = createMcpServer({
        client: engineFor(principal).client,
        config: options.config,
      });
      const transport = new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
      });
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        live.delete(server);
        server.close().catch((error: unknown) =>
          options.logger.debug("mcp server close failed", { error: String(error) })
        );
      };
      live.add(server);
      // Sent, or the client went away mid-call (its tool handlers then see their signal abort).
      completed.then(release, release);
      try {
        await server.connect(transport);
        const response = await transport.handleRequest(request);
        if (!response.body) {
          release();
          return response;
        }
        // The per-request server lives until its answer (an SSE stream) has been sent.
        return response;
      } catch (error) {
        release();
        throw error;
      }
    },

    async close() {
      closed = true;
      await Promise.all([...live].map((server) => server.close().catch(() => {})));
      live.clear();
      await Promise.all([...engines.values()].map((engine) => engine.close()));
    },
  };
}
