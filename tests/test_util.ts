/**
 * Shared helpers for tests that start real servers, real WebSocket clients
 * and real process groups.
 *
 * @module
 */
import { defaultConfig, type ServerConfig } from "../server/config.ts";
import { silentLogger } from "../server/log.ts";
import { liveMembers } from "../server/process.ts";
import { type ExecutorServer, startServer } from "../server/server.ts";
import { type Frame, RawClient } from "../cli/assess/raw_client.ts";

// The frame-level client is the one `cc-executor test assess` records its evidence with.
export { type Frame, RawClient };

/** A real server on a free loopback port, quiet, with a short kill grace so tests stay quick. */
export function startTestServer(overrides: Partial<ServerConfig> = {}): Promise<ExecutorServer> {
  return startServer(defaultConfig({ port: 0, killGraceMs: 300, ...overrides }), {
    logger: silentLogger,
  });
}

/** True while any non-zombie process of group `pgid` exists (Linux /proc). */
export function groupAlive(pgid: number): boolean {
  const live = liveMembers(pgid);
  if (live === undefined) throw new Error("these tests need /proc to inspect process groups");
  return live > 0;
}

/** Polls `check` until it returns a truthy value; fails with `what` after `timeoutMs`. */
export async function waitUntil<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value) return value;
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Runs `command` over a fresh RawClient and returns its completion and the client. */
export async function runJob(
  client: RawClient,
  params: Record<string, unknown>,
): Promise<{ jobId: string; done: Frame; pgid: number }> {
  const result = await client.result("execute", params);
  const done = await client.completion(result.job_id);
  return { jobId: result.job_id, done, pgid: result.pgid };
}
