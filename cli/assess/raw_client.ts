/**
 * A WebSocket client at the frame level: sends whatever text it is given and
 * records every frame in both directions with the time it passed, so a check
 * can assert on the wire itself and a report can quote it. The test suite
 * uses it too (tests/test_util.ts), so `test assess` and the tests read the
 * wire the same way.
 *
 * @module
 */

// deno-lint-ignore no-explicit-any
export type Frame = any;

/** One frame as it passed: `out` was sent, `in` received; `ms` since the connection opened. */
export interface TranscriptEntry {
  dir: "out" | "in";
  ms: number;
  frame: Frame;
}

export class RawClient implements AsyncDisposable {
  /** Every frame received, parsed. */
  readonly frames: Frame[] = [];
  /** Every frame sent and received, in order, with its time. */
  readonly transcript: TranscriptEntry[] = [];
  readonly socket: WebSocket;
  readonly closed: Promise<CloseEvent>;
  #nextId = 1;
  #waiters = new Set<() => void>();
  readonly #opened = performance.now();

  private constructor(socket: WebSocket) {
    this.socket = socket;
    this.closed = new Promise((resolve) =>
      socket.addEventListener("close", resolve, { once: true })
    );
    socket.onmessage = (event) => {
      const frame = typeof event.data === "string" ? JSON.parse(event.data) : event.data;
      this.frames.push(frame);
      this.#record("in", frame);
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
    this.#record("out", typeof text === "string" ? text : `<${text.byteLength} binary bytes>`);
    this.socket.send(text);
  }

  /** Sends a request and resolves to its whole response frame (result or error). */
  async call(method: string, params?: unknown): Promise<Frame> {
    const id = this.#nextId++;
    const request = { jsonrpc: "2.0", id, method, params };
    this.#record("out", request);
    this.socket.send(JSON.stringify(request));
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

  #record(dir: "out" | "in", frame: Frame): void {
    this.transcript.push({ dir, ms: Math.round(performance.now() - this.#opened), frame });
  }
}
