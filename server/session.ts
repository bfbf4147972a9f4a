/**
 * One WebSocket connection: feeds its frames to the JSON-RPC dispatcher,
 * sends responses before the notifications they cause, and tells jobs when
 * the peer is slow (backpressure) or gone (cleanup).
 *
 * @module
 */
import { settlesWithin } from "./deadline.ts";
import type { Subscriber } from "./jobs.ts";
import type { Logger } from "./log.ts";
import type { Principal } from "./principal.ts";
import { ErrorCode } from "./protocol.ts";
import type { RpcHandler } from "./rpc.ts";

/** What every method handler receives besides its params. */
export interface MethodContext {
  session: Session;
  /** Runs `fn` right after this message's response has been sent (e.g. to start a replay). */
  afterResponse(fn: () => void): void;
}

export interface SessionOptions {
  handle: RpcHandler<MethodContext>;
  logger: Logger;
  /** Called once when the socket has closed, for whatever reason. */
  onClose: (session: Session) => void;
  /** Sent as the `connected` notification once the socket is open. */
  connected: (session: Session) => unknown;
  /** Largest message accepted, in UTF-8 bytes (CC_EXECUTOR_MAX_MESSAGE_BYTES). @default Infinity */
  maxMessageBytes?: number;
  /** Who the connection authenticated as. */
  principal: Principal;
}

/** Above this many unsent bytes the peer counts as slow and jobs stop reading their pipes. */
const HIGH_WATER_BYTES = 8 * 1024 * 1024;
/** ...until it is back under this. */
const LOW_WATER_BYTES = 2 * 1024 * 1024;
/** Longest pause between two looks at a slow peer's send buffer. */
const MAX_DRAIN_POLL_MS = 32;

export class Session implements Subscriber {
  readonly id: string = crypto.randomUUID();
  /** The job `control` acts on when it names none. */
  lastJobId: string | null = null;
  /** Who the connection speaks for: its policy and limits apply to every job it starts. */
  readonly principal: Principal;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  readonly #socket: WebSocket;
  readonly #options: SessionOptions;
  #drained: Promise<void> | null = null;
  #resolveClosed!: () => void;

  constructor(socket: WebSocket, options: SessionOptions) {
    this.#socket = socket;
    this.#options = options;
    this.principal = options.principal;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    socket.onopen = () => {
      this.send(
        JSON.stringify({ jsonrpc: "2.0", method: "connected", params: options.connected(this) }),
      );
    };
    socket.onmessage = (event) => {
      this.#onMessage(event.data).catch((error) => {
        // The dispatcher answers every failure itself; reaching here is a bug, never a crash.
        options.logger.error("message handling failed", { session: this.id, error: String(error) });
      });
    };
    socket.onclose = () => {
      this.#resolveClosed();
      options.onClose(this);
    };
    socket.onerror = (event) => {
      options.logger.debug("websocket error", {
        session: this.id,
        error: (event as ErrorEvent).message ?? String(event),
      });
    };
  }

  get isOpen(): boolean {
    return this.#socket.readyState === WebSocket.OPEN;
  }

  send(frame: string): void {
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(frame);
  }

  ready(): Promise<void> | undefined {
    if (this.#socket.readyState !== WebSocket.OPEN) return undefined;
    if (this.#socket.bufferedAmount < HIGH_WATER_BYTES) return undefined;
    // Deno's WebSocket has no drain event, so poll while the peer is behind: quickly at first (a
    // busy but healthy reader catches up in milliseconds), backing off for one that has stalled.
    return this.#drained ??= new Promise((resolve) => {
      let pause = 1;
      const check = () => {
        if (
          this.#socket.readyState !== WebSocket.OPEN ||
          this.#socket.bufferedAmount <= LOW_WATER_BYTES
        ) {
          this.#drained = null;
          resolve();
        } else {
          pause = Math.min(pause * 2, MAX_DRAIN_POLL_MS);
          setTimeout(check, pause);
        }
      };
      setTimeout(check, pause);
    });
  }

  /**
   * Closes the connection after what is queued has gone out (bounded by `waitMs`), then waits
   * for the peer's close handshake, also at most `waitMs`: a peer that stopped reading never
   * answers, and must not hold up server shutdown.
   */
  async close(code = 1000, reason = "", waitMs = 1000): Promise<void> {
    const deadline = performance.now() + waitMs;
    while (this.isOpen && this.#socket.bufferedAmount > 0 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    if (
      this.#socket.readyState === WebSocket.OPEN || this.#socket.readyState === WebSocket.CONNECTING
    ) {
      this.#socket.close(code, reason);
    }
    await settlesWithin(this.closed, waitMs);
  }

  /** When the message is over the limit: its size in UTF-8 bytes (at least), else null. */
  #tooLarge(data: string): number | null {
    const limit = this.#options.maxMessageBytes ?? Infinity;
    // A UTF-16 unit is 1 to 3 UTF-8 bytes: only a message near the limit needs counting.
    if (data.length * 3 <= limit) return null;
    const bytes = data.length > limit ? data.length : new TextEncoder().encode(data).length;
    return bytes > limit ? bytes : null;
  }

  async #onMessage(data: unknown): Promise<void> {
    if (typeof data !== "string") {
      this.send(JSON.stringify({
        jsonrpc: "2.0",
        id: null,
        error: {
          code: ErrorCode.PARSE_ERROR,
          message:
            "Parse error: binary frames are not accepted; send JSON-RPC messages as text frames",
        },
      }));
      return;
    }
    const tooLarge = this.#tooLarge(data);
    if (tooLarge !== null) {
      const limit = this.#options.maxMessageBytes!;
      this.send(JSON.stringify({
        jsonrpc: "2.0",
        id: null,
        error: {
          code: ErrorCode.INVALID_REQUEST,
          message: `Invalid Request: the message (${tooLarge}+ bytes) is over the limit of ` +
            `${limit} bytes (CC_EXECUTOR_MAX_MESSAGE_BYTES); it was not read`,
          data: { limit },
        },
      }));
      return;
    }
    const after: (() => void)[] = [];
    const response = await this.#options.handle(data, {
      session: this,
      afterResponse: (fn) => after.push(fn),
    });
    if (response !== undefined) this.send(response);
    for (const fn of after) fn();
  }
}
