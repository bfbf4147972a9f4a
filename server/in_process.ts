/**
 * A connection that never leaves the process: two WebSocket-shaped ends joined in memory. The
 * server's MCP face talks to its own engine through one, so an MCP client gets exactly what a
 * WebSocket client gets (the same sessions, methods and notifications) without a network hop.
 *
 * @module
 */

/** The part of the WebSocket interface that Session and ExecutorClient use. */
type SocketLike = Pick<
  WebSocket,
  | "readyState"
  | "bufferedAmount"
  | "send"
  | "close"
  | "onopen"
  | "onmessage"
  | "onclose"
  | "onerror"
>;

class MemorySocket implements SocketLike {
  readyState: number = WebSocket.CONNECTING;
  /** Frames are handed over on the next microtask: nothing is ever buffered. */
  readonly bufferedAmount = 0;
  onopen: WebSocket["onopen"] = null;
  onmessage: WebSocket["onmessage"] = null;
  onclose: WebSocket["onclose"] = null;
  onerror: WebSocket["onerror"] = null;
  peer!: MemorySocket;

  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    if (this.readyState !== WebSocket.OPEN) {
      throw new DOMException("the in-process connection is closed", "InvalidStateError");
    }
    const peer = this.peer;
    // Asynchronous, in order, like a socket: a handler never runs inside the sender's call.
    queueMicrotask(() => {
      if (peer.readyState === WebSocket.OPEN) {
        peer.onmessage?.call(peer as unknown as WebSocket, new MessageEvent("message", { data }));
      }
    });
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState >= WebSocket.CLOSING) return;
    for (const end of [this, this.peer]) end.readyState = WebSocket.CLOSED;
    // Each end hears of the close after frames already on their way (queued before it).
    queueMicrotask(() => {
      for (const end of [this, this.peer]) {
        end.onclose?.call(end as unknown as WebSocket, new CloseEvent("close", { code, reason }));
      }
    });
  }

  open(): void {
    this.readyState = WebSocket.OPEN;
    this.onopen?.call(this as unknown as WebSocket, new Event("open"));
  }
}

/**
 * Two joined ends: give `server` to a Session and `client` to ExecutorClient.attach. Both open on
 * the next microtask, after their handlers are in place.
 */
export function inProcessSocketPair(): { server: WebSocket; client: WebSocket } {
  const server = new MemorySocket();
  const client = new MemorySocket();
  server.peer = client;
  client.peer = server;
  queueMicrotask(() => {
    client.readyState = WebSocket.OPEN;
    server.open(); // the server sends `connected`, which the client is waiting for
    client.open();
  });
  return { server: server as unknown as WebSocket, client: client as unknown as WebSocket };
}
