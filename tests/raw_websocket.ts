/**
 * A WebSocket client over a bare TCP connection that reads only when told
 * to. A browser-style WebSocket always drains the socket, so it cannot play
 * a slow or stalled peer; this one can, which is what backpressure tests and
 * the benchmark's slow and header-only readers (bench/raw_reader.ts) need.
 * The handshake and the client-to-server frame are written by hand;
 * server-to-client frames are left to the caller.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class RawWebSocket implements AsyncDisposable, Disposable {
  readonly #conn: Deno.TcpConn;
  /** Bytes that came with the handshake response, not yet handed out. */
  #leftover: Uint8Array;

  private constructor(conn: Deno.TcpConn, leftover: Uint8Array) {
    this.#conn = conn;
    this.#leftover = leftover;
  }

  /** Opens the TCP connection and completes the HTTP upgrade handshake. */
  static async connect(url: string, headers: Record<string, string> = {}): Promise<RawWebSocket> {
    const { hostname, port, pathname } = new URL(url);
    const conn = await Deno.connect({ hostname, port: Number(port) });
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
    await writeAll(
      conn,
      encoder.encode(
        `GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
      ),
    );
    // Read until the blank line that ends the response head.
    let received = new Uint8Array(0);
    const buffer = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) {
        conn.close();
        throw new Error("connection closed during the WebSocket handshake");
      }
      received = concat(received, buffer.subarray(0, n));
      const end = indexOfHeaderEnd(received);
      if (end < 0) continue;
      const head = decoder.decode(received.subarray(0, end));
      if (!head.startsWith("HTTP/1.1 101")) {
        conn.close();
        throw new Error(`WebSocket upgrade refused: ${head.split("\r\n")[0]}`);
      }
      return new RawWebSocket(conn, received.slice(end + 4));
    }
  }

  /** Sends one text frame, masked as RFC 6455 requires of clients. */
  sendText(text: string): Promise<void> {
    return this.sendFrame(0x1, encoder.encode(text));
  }

  /**
   * Sends one final frame with `opcode` (0x1 text, 0x2 binary, ...) and `payload` as it is, even
   * when that is not valid (a text frame that is not UTF-8): for tests of what the server does
   * with frames a WebSocket API would never send.
   */
  async sendFrame(opcode: number, payload: Uint8Array): Promise<void> {
    const length = payload.length;
    const first = 0x80 | opcode;
    const header = length < 126
      ? [first, 0x80 | length]
      : length < 65536
      ? [first, 0x80 | 126, length >> 8, length & 0xff]
      : [
        first,
        0x80 | 127,
        0,
        0,
        0,
        0,
        length >>> 24,
        (length >> 16) & 0xff,
        (length >> 8) & 0xff,
        length & 0xff,
      ];
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const frame = new Uint8Array(header.length + 4 + length);
    frame.set(header, 0);
    frame.set(mask, header.length);
    const start = header.length + 4;
    for (let i = 0; i < length; i++) frame[start + i] = payload[i]! ^ mask[i & 3]!;
    await writeAll(this.#conn, frame);
  }

  /** Reads up to `buffer.length` raw bytes (frames are not parsed) into `buffer`; null at EOF. */
  async readInto(buffer: Uint8Array): Promise<number | null> {
    if (this.#leftover.length > 0) {
      const n = Math.min(buffer.length, this.#leftover.length);
      buffer.set(this.#leftover.subarray(0, n));
      this.#leftover = this.#leftover.subarray(n);
      return n;
    }
    return await this.#conn.read(buffer);
  }

  /** Reads up to `max` raw bytes (frames are not parsed); null at EOF. */
  async read(max: number): Promise<Uint8Array | null> {
    const buffer = new Uint8Array(max);
    const n = await this.readInto(buffer);
    return n === null ? null : buffer.subarray(0, n);
  }

  close(): void {
    try {
      this.#conn.close();
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error; // already closed
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function indexOfHeaderEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}
