/**
 * The typed client for cc-executor, shared by the CLI and by programs.
 *
 * @example
 * ```ts
 * import { ExecutorClient } from "./server/client.ts";
 *
 * await using client = await ExecutorClient.connect("ws://127.0.0.1:8003/ws");
 * const result = await client.execute({ command: "echo hello" });
 * console.log(result.success, result.exitCode, result.stdout); // true 0 "hello\n"
 * ```
 *
 * @module
 */
import { readEnv } from "./env.ts";
import {
  type ExecuteParams,
  invalidParamsError,
  type JobEvent,
  type JobStatus,
  type MethodName,
  type MethodParams,
  type MethodResult,
  Methods,
  type ProcessCompletedParams,
  type RpcErrorObject,
} from "./protocol.ts";

export type { JobEvent, JobStatus } from "./protocol.ts";

export interface ConnectOptions {
  /** Sent as `Authorization: Bearer <token>`. @default CC_EXECUTOR_TOKEN, when env access is granted */
  token?: string;
  /** Give up when the server has not said `connected` within this time. @default 10000 */
  timeoutMs?: number;
  /**
   * PEM certificates of CAs to trust for a wss:// server, besides the built-in roots (and
   * DENO_CERT, which Deno applies to every connection): for a server whose certificate a private
   * CA signed. @default none
   */
  caCerts?: string[];
}

/** A notification as it arrived, for `onNotification`. */
export interface RawNotification {
  method: string;
  params?: { job_id?: string; [key: string]: unknown };
}

/** The server answered a request with a JSON-RPC error. */
export class ExecutorRpcError extends Error {
  readonly code: number;
  readonly data: unknown;
  constructor(error: RpcErrorObject) {
    super(error.message);
    this.name = "ExecutorRpcError";
    this.code = error.code;
    this.data = error.data;
  }
}

/** The connection closed (or could not be opened) before an answer came. */
export class ConnectionClosedError extends Error {
  /** The job that was being followed, so a caller can `subscribe` to it again after reconnecting. */
  readonly jobId?: string;
  constructor(message: string, jobId?: string) {
    super(message);
    this.name = "ConnectionClosedError";
    this.jobId = jobId;
  }
}

export interface ExecuteOptions extends ExecuteParams {
  /** Each stdout chunk as it arrives. */
  onStdout?: (text: string) => void;
  /** Each stderr chunk as it arrives. */
  onStderr?: (text: string) => void;
  /** Every notification about the job, in order. */
  onEvent?: (event: JobEvent) => void;
  /** Aborting cancels the job on the server; execute() still resolves with its outcome. */
  signal?: AbortSignal;
  /** Keep the output in the result; turn off for output too large to hold. @default true */
  collect?: boolean;
}

/** How a job ended, with its output. */
export interface ExecuteOutcome {
  jobId: string;
  /** True only for status "completed" (exit code 0). */
  success: boolean;
  status: JobStatus;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr interleaved in the order they arrived. */
  output: string;
  durationMs: number;
  /** Why it did not succeed: the server's reason (timeout, cancel, ...) or "exit code N". */
  error: string | null;
  /** Output was cut by max_output_bytes. */
  truncated: boolean;
  bytes: { stdout: number; stderr: number };
  /** What hooks attached to the job, by hook name ({} when none did or none ran). */
  hooks: Record<string, unknown>;
  /** Runs made: more than 1 when error hooks asked for retries. */
  attempts: number;
}

export interface SubscribeOptions {
  /** Replay from this sequence number; 0 replays everything the server still holds. @default 0 */
  fromSeq?: number;
  /**
   * The server's answer, before any replayed notification: where the replay starts and how many
   * notifications asked for it no longer holds (`missed`).
   */
  onSubscribed?: (result: MethodResult<"jobs.subscribe">) => void;
  onEvent?: (event: JobEvent) => void;
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
  collect?: boolean;
}

/** Something following one job's notifications. */
interface Watcher {
  event(event: JobEvent): void;
  fail(error: Error): void;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/** A connection to a cc-executor server. Many jobs can run over one client at once. */
export class ExecutorClient implements AsyncDisposable {
  readonly url: string;
  /** The server's id for this connection. */
  readonly sessionId: string;
  readonly serverVersion: string;
  /** Resolves when the connection has closed. */
  readonly closed: Promise<void>;
  #socket: WebSocket;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  #watchers = new Map<string, Set<Watcher>>();
  #closeReason: string | null = null;
  #notificationListeners = new Set<(notification: RawNotification) => void>();

  private constructor(
    url: string,
    socket: WebSocket,
    hello: { session_id: string; version: string },
    closed: Promise<void>,
  ) {
    this.url = url;
    this.#socket = socket;
    this.sessionId = hello.session_id;
    this.serverVersion = hello.version;
    this.closed = closed;
    socket.onmessage = (event) => this.#onMessage(event.data);
  }

  /** Opens a connection and waits for the server's `connected` notification. */
  static connect(url: string, options: ConnectOptions = {}): Promise<ExecutorClient> {
    const token = options.token ?? readEnv("CC_EXECUTOR_TOKEN");
    // The HTTP client only carries the handshake: once the socket is open (or failed) it can go.
    const http = options.caCerts?.length
      ? Deno.createHttpClient({ caCerts: options.caCerts })
      : undefined;
    const socket = token || http
      ? new WebSocket(url, {
        ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
        ...(http ? { client: http } : {}),
      })
      : new WebSocket(url);
    if (http) {
      let open = true;
      const release = () => {
        if (open) http.close();
        open = false;
      };
      socket.addEventListener("open", release, { once: true });
      socket.addEventListener("close", release, { once: true });
    }
    return ExecutorClient.attach(socket, url, options);
  }

  /**
   * A client over a socket that is already opening: a WebSocket, or one end of
   * `inProcessSocketPair()` (server/in_process.ts). `label` names it in errors (its URL).
   */
  static attach(
    socket: WebSocket,
    label: string,
    options: Pick<ConnectOptions, "timeoutMs"> = {},
  ): Promise<ExecutorClient> {
    const url = label;
    const timeoutMs = options.timeoutMs ?? 10_000;
    let client: ExecutorClient | undefined;
    let markClosed!: () => void;
    const closed = new Promise<void>((resolve) => (markClosed = resolve));
    return new Promise<ExecutorClient>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.close();
        reject(
          new ConnectionClosedError(`Cannot connect to ${url}: no answer within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      let failure = "";
      socket.onerror = (event) => {
        failure = (event as ErrorEvent).message ?? "";
      };
      socket.onclose = (event) => {
        clearTimeout(timer);
        markClosed();
        if (client) return client.#onClose(event.code, event.reason);
        const why = failure || event.reason || `closed with code ${event.code}`;
        reject(new ConnectionClosedError(`Cannot connect to ${url}: ${why}`));
      };
      socket.onmessage = (event) => {
        let message: { method?: string; params?: { session_id: string; version: string } };
        try {
          message = JSON.parse(String(event.data));
        } catch {
          return;
        }
        if (message.method !== "connected" || !message.params) return;
        clearTimeout(timer);
        client = new ExecutorClient(url, socket, message.params, closed);
        resolve(client);
      };
    });
  }

  /**
   * Sends one JSON-RPC request and resolves to its typed result. Params are checked against the
   * protocol's schema first: bad ones reject with the same -32602 ExecutorRpcError the server
   * would send, without a round trip.
   */
  request<M extends MethodName>(method: M, params: MethodParams<M>): Promise<MethodResult<M>> {
    if (this.#closeReason !== null) {
      return Promise.reject(
        new ConnectionClosedError(`Cannot send ${method}: ${this.#closeReason}`),
      );
    }
    const checked = Methods[method].params.safeParse(params);
    if (!checked.success) {
      return Promise.reject(
        new ExecutorRpcError(invalidParamsError(method, checked.error).toJSON()),
      );
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  /**
   * Runs a command and resolves when it has ended, whatever the outcome
   * (check `success`). Rejects with ExecutorRpcError when the server refuses
   * to start it, and with ConnectionClosedError when the connection drops.
   */
  async execute(options: ExecuteOptions): Promise<ExecuteOutcome> {
    const { onStdout, onStderr, onEvent, signal, collect, ...params } = options;
    const jobId = params.job_id ?? crypto.randomUUID();
    // Listen before asking, so not even the first chunk can slip past.
    const watch = this.#watch(jobId, { onStdout, onStderr, onEvent, collect });
    // A job that has to wait (routed, or behind its concurrency key) is answered only when it
    // starts, but the server holds it from its `job.queued` on: an abort cancels it from then,
    // or from the answer, whichever comes first (before either, the server does not know it).
    let known = false;
    let canceled = false;
    const cancelIfAborted = () => {
      if (!known || canceled || !signal?.aborted) return;
      canceled = true;
      this.cancel(jobId).catch(() => {});
    };
    const stopQueued = this.onNotification(({ method, params: p }) => {
      if (method !== "job.queued" || p?.job_id !== jobId) return;
      known = true;
      cancelIfAborted();
    });
    signal?.addEventListener("abort", cancelIfAborted, { once: true });
    try {
      await this.request("execute", { ...params, job_id: jobId });
      known = true;
      cancelIfAborted();
      return await watch.outcome;
    } finally {
      signal?.removeEventListener("abort", cancelIfAborted);
      stopQueued();
      watch.stop();
    }
  }

  /**
   * Runs a command and yields its notifications as they arrive, ending with
   * `process.completed`. Breaking out of the loop cancels the job.
   *
   * @example
   * ```ts
   * for await (const event of client.stream({ command: "make test" })) {
   *   if (event.method === "process.output") console.log(event.params.data);
   * }
   * ```
   */
  async *stream(params: ExecuteParams): AsyncGenerator<JobEvent, void, undefined> {
    const jobId = params.job_id ?? crypto.randomUUID();
    const queue = new EventQueue<JobEvent>();
    const watch = this.#watch(jobId, { onEvent: (event) => queue.push(event), collect: false });
    watch.outcome.then(() => queue.end(), (error) => queue.fail(error));
    let completed = false;
    try {
      await this.request("execute", { ...params, job_id: jobId });
      for await (const event of queue) {
        yield event;
        if (event.method === "process.completed") completed = true;
      }
    } finally {
      watch.stop();
      if (!completed && this.#closeReason === null) await this.cancel(jobId).catch(() => {});
    }
  }

  /**
   * Follows a job started elsewhere (or before a reconnect): replays what the
   * server still holds from `fromSeq`, then follows live until it ends.
   */
  async subscribe(jobId: string, options: SubscribeOptions = {}): Promise<ExecuteOutcome> {
    const watch = this.#watch(jobId, options);
    try {
      const subscribed = await this.request("jobs.subscribe", {
        job_id: jobId,
        from_seq: options.fromSeq ?? 0,
      });
      options.onSubscribed?.(subscribed);
      return await watch.outcome;
    } finally {
      watch.stop();
    }
  }

  /** Cancels a job (SIGTERM to its group, a grace period, SIGKILL). */
  cancel(jobId?: string): Promise<MethodResult<"control">> {
    return this.request("control", { type: "CANCEL", job_id: jobId });
  }

  /** Stops a job's whole process group (SIGSTOP) until `resume`. */
  pause(jobId?: string): Promise<MethodResult<"control">> {
    return this.request("control", { type: "PAUSE", job_id: jobId });
  }

  resume(jobId?: string): Promise<MethodResult<"control">> {
    return this.request("control", { type: "RESUME", job_id: jobId });
  }

  /** Writes to a job's stdin (started with `keep_stdin_open`); `eof` closes it. */
  input(
    jobId: string,
    data: string,
    options: { eof?: boolean } = {},
  ): Promise<MethodResult<"jobs.input">> {
    return this.request("jobs.input", { job_id: jobId, data, eof: options.eof });
  }

  /**
   * Calls `listener` with every notification this connection receives, as sent (no replay
   * de-duplication), before any execute or subscribe sees it: for tools that check the protocol
   * itself (`test stress` counts each job's terminal notifications). Returns a function that stops it.
   */
  onNotification(listener: (notification: RawNotification) => void): () => void {
    this.#notificationListeners.add(listener);
    return () => this.#notificationListeners.delete(listener);
  }

  /** Closes the connection. Jobs it started without `detach` are canceled by the server. */
  async close(): Promise<void> {
    if (
      this.#socket.readyState === WebSocket.OPEN || this.#socket.readyState === WebSocket.CONNECTING
    ) {
      this.#socket.close(1000, "client closed");
    }
    await this.closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // -- internals ------------------------------------------------------------

  #watch(
    jobId: string,
    options: SubscribeOptions,
  ): { outcome: Promise<ExecuteOutcome>; stop: () => void } {
    const collect = options.collect ?? true;
    let stdout = "", stderr = "", output = "";
    let lastSeq = 0;
    let settle!: { resolve: (o: ExecuteOutcome) => void; reject: (e: Error) => void };
    const outcome = new Promise<ExecuteOutcome>((resolve, reject) => {
      settle = { resolve, reject };
    });
    // Whoever awaits `outcome` still sees a rejection; this only stops one that nobody awaits any
    // more (the request itself failed first) from being reported as unhandled.
    outcome.catch(() => {});
    const event = (event: JobEvent) => {
      // A replay after a resubscribe may repeat what this watcher already saw.
      if (event.params.seq <= lastSeq) return;
      lastSeq = event.params.seq;
      options.onEvent?.(event);
      if (event.method === "process.output") {
        const { stream, data } = event.params;
        if (stream === "stdout") options.onStdout?.(data);
        else options.onStderr?.(data);
        if (collect) {
          if (stream === "stdout") stdout += data;
          else stderr += data;
          output += data;
        }
      } else if (event.method === "process.completed") {
        settle.resolve(toOutcome(event.params, stdout, stderr, output));
      }
    };
    const watcher: Watcher = { event, fail: (error) => settle.reject(error) };
    let set = this.#watchers.get(jobId);
    if (!set) this.#watchers.set(jobId, set = new Set());
    set.add(watcher);
    return {
      outcome,
      stop: () => {
        set.delete(watcher);
        if (set.size === 0 && this.#watchers.get(jobId) === set) this.#watchers.delete(jobId);
      },
    };
  }

  #onMessage(data: unknown): void {
    let message: {
      id?: number | string | null;
      method?: string;
      params?: { job_id?: string };
      result?: unknown;
      error?: RpcErrorObject;
    };
    try {
      message = JSON.parse(String(data));
    } catch {
      return;
    }
    if (Array.isArray(message)) {
      for (const item of message) this.#onMessage(JSON.stringify(item));
      return;
    }
    if (message.method !== undefined) {
      // Most clients have no listener: no copy of the set on every output notification then.
      if (this.#notificationListeners.size > 0) {
        for (const listener of [...this.#notificationListeners]) {
          listener({ method: message.method, params: message.params });
        }
      }
      const jobId = message.params?.job_id;
      const watchers = jobId === undefined ? undefined : this.#watchers.get(jobId);
      // hook.blocked is not a job event (the job never started): the execute's error says it all.
      if (watchers && message.method !== "hook.blocked") {
        for (const watcher of [...watchers]) watcher.event(message as JobEvent);
      }
      return;
    }
    if (typeof message.id !== "number") return;
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    if (message.error) pending.reject(new ExecutorRpcError(message.error));
    else pending.resolve(message.result);
  }

  #onClose(code: number, reason: string): void {
    this.#closeReason = `connection to ${this.url} closed (code ${code}${
      reason ? `: ${reason}` : ""
    })`;
    for (const pending of this.#pending.values()) {
      pending.reject(new ConnectionClosedError(this.#closeReason));
    }
    this.#pending.clear();
    for (const [jobId, watchers] of this.#watchers) {
      const error = new ConnectionClosedError(
        `${this.#closeReason} while following job ${jobId}`,
        jobId,
      );
      for (const watcher of watchers) watcher.fail(error);
    }
    this.#watchers.clear();
  }
}

function toOutcome(
  done: ProcessCompletedParams,
  stdout: string,
  stderr: string,
  output: string,
): ExecuteOutcome {
  const success = done.status === "completed";
  const error = success
    ? null
    : done.reason ?? (done.exit_code !== null
      ? `exit code ${done.exit_code}`
      : done.signal
      ? `killed by ${done.signal}`
      : done.status);
  return {
    jobId: done.job_id,
    success,
    status: done.status,
    exitCode: done.exit_code,
    signal: done.signal,
    stdout,
    stderr,
    output,
    durationMs: done.duration_ms,
    error,
    truncated: done.truncated,
    hooks: done.hooks?.attached ?? {},
    attempts: done.hooks?.attempts ?? done.claude?.attempts ?? 1,
    bytes: done.bytes,
  };
}

/** A push-to-pull queue: events pushed by the socket, pulled by `for await`. */
class EventQueue<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #waiting: ((result: IteratorResult<T>) => void) | null = null;
  #failWaiting: ((error: Error) => void) | null = null;
  #ended = false;
  #error: Error | null = null;

  push(item: T): void {
    if (this.#waiting) {
      const wake = this.#waiting;
      this.#waiting = this.#failWaiting = null;
      wake({ value: item, done: false });
    } else {
      this.#items.push(item);
    }
  }

  end(): void {
    this.#ended = true;
    this.#wake();
  }

  fail(error: Error): void {
    this.#error = error;
    if (this.#failWaiting) {
      const fail = this.#failWaiting;
      this.#waiting = this.#failWaiting = null;
      fail(error);
    }
  }

  #wake(): void {
    if (this.#waiting && this.#items.length === 0) {
      const wake = this.#waiting;
      this.#waiting = this.#failWaiting = null;
      wake({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.#items.length > 0) {
          return Promise.resolve({ value: this.#items.shift()!, done: false });
        }
        if (this.#error) return Promise.reject(this.#error);
        if (this.#ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.#waiting = resolve;
          this.#failWaiting = reject;
        });
      },
    };
  }
}
