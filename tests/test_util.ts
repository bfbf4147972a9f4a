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

// deno-lint-ignore no-explicit-any
export type Frame = any;

/**
 * A WebSocket client at the frame level: sends whatever text it is given and
 * records every frame it receives, so tests can assert on the wire itself.
 */
export class RawClient implements AsyncDisposable {
  readonly frames: Frame[] = [];
  readonly socket: WebSocket;
  readonly closed: Promise<CloseEvent>;
  #nextId = 1;
  #waiters = new Set<() => void>();

  private constructor(socket: WebSocket) {
    this.socket = socket;
    this.closed = new Promise((resolve) =>
      socket.addEventListener("close", resolve, { once: true })
    );
    socket.onmessage = (event) => {
      this.frames.push(typeof event.data === "string" ? JSON.parse(event.data) : event.data);
      for (const wake of [...this.#waiters]) wake();
    };
    socket.addEventListener("close", () => {
      for (const wake of [...this.#waiters]) wake();
    });
  }

  /** Connects and waits for the `connected` notification. */
  static async connect(
    url: string,
    init?: { headers?: Record<string, string> },
  ): Promise<RawClient> {
    const socket = init ? new WebSocket(url, init) : new WebSocket(url);
    const client = new RawClient(socket);
    await client.waitFor((f) => f.method === "connected", "the connected notification");
    return client;
  }

  sendText(text: string | Uint8Array): void {
    this.socket.send(text);
  }

  /** Sends a request and resolves to its whole response frame (result or error). */
  async call(method: string, params?: unknown): Promise<Frame> {
    const id = this.#nextId++;
    this.socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    return await this.waitFor(
      (f) => f.id === id && !("method" in f),
      `the response to ${method} #${id}`,
    );
  }

  /** Sends a request and resolves to its result; throws on an error response. */
  async result(method: string, params?: unknown): Promise<Frame> {
    const response = await this.call(method, params);
    if (response.error) throw new Error(`${method} failed: ${JSON.stringify(response.error)}`);
    return response.result;
  }

  /** Resolves to the first received frame matching `match` (already received or still to come). */
  waitFor(match: (frame: Frame) => boolean, what: string, timeoutMs = 15_000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.frames.find(match);
        if (found !== undefined) {
          done();
          resolve(found);
        } else if (this.socket.readyState === WebSocket.CLOSED) {
          done();
          reject(new Error(`Connection closed while waiting for ${what}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** The terminal notification of `jobId`, once it arrives. */
  completion(jobId: string, timeoutMs?: number): Promise<Frame> {
    return this.waitFor(
      (f) => f.method === "process.completed" && f.params.job_id === jobId,
      `process.completed for ${jobId}`,
      timeoutMs,
    ).then((f) => f.params);
  }

  /** Every notification received for `jobId`, in arrival order. */
  events(jobId: string): Frame[] {
    return this.frames.filter((f) => f.method?.startsWith("process.") && f.params.job_id === jobId);
  }

  /** The concatenated output of one stream of `jobId`. */
  output(jobId: string, stream: "stdout" | "stderr" = "stdout"): string {
    return this.events(jobId)
      .filter((f) => f.method === "process.output" && f.params.stream === stream)
      .map((f) => f.params.data)
      .join("");
  }

  async close(): Promise<void> {
    if (this.socket.readyState !== WebSocket.CLOSED) this.socket.close();
    await this.closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
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
