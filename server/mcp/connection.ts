/**
 * The MCP face's link to the engine: opened on first use, and opened again on the next call
 * after it closed (a server that restarted) or failed to open, rather than failing for good.
 *
 * @module
 */
import type { ExecutorClient } from "../client.ts";

export interface EngineConnection {
  /** The open client, connecting first when there is none. */
  client(): Promise<ExecutorClient>;
  /** Closes the client, if one is open. */
  close(): Promise<void>;
}

export function engineConnection(open: () => Promise<ExecutorClient>): EngineConnection {
  let current: Promise<ExecutorClient> | null = null;
  return {
    client() {
      current ??= open().then((client) => {
        client.closed.then(() => (current = null));
        return client;
      }, (error) => {
        current = null;
        throw error;
      });
      return current;
    },
    async close() {
      const open = current;
      current = null;
      if (open) await (await open.catch(() => null))?.close();
    },
  };
}
