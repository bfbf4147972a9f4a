/**
 * A WebSocket client on a bare TCP connection, for the two things the
 * built-in WebSocket cannot do: read slowly (it always drains the socket, so
 * it can never play a slow peer, scenario d) and read without decoding JSON
 * (so the fast-reader figure in scenario c can be split into server cost and
 * client cost). The handshake and the client-to-server frame are written by
 * hand; server-to-client frames are only parsed as far as their headers,
 * except the small text frames, where `process.completed` is looked for.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Text frames at most this big are decoded to look for `process.completed`; output chunks are bigger. */
const INSPECT_MAX_BYTES = 64 * 1024;

export interface DrainResult {
  /** Bytes read from the socket after the handshake (frame headers and JSON included). */
  wireBytes: number;
  frames: number;
  /** The params of the job's `process.completed` notification. */
  completed: { status: string; bytes: { stdout: number; stderr: number } };
}

export interface SlowReadResult {
  /** Bytes read from the socket after the handshake. */
  bytes: number;
  reads: number;
  seconds: number;
}

export class RawWebSocket implements Disposable {
  readonly #conn: Deno.TcpConn;
  /** Bytes that came with the handshake response, not yet handed out. */
  #leftover: Uint8Array;

  private constructor(conn: Deno.TcpConn, leftover: Uint8Array) {
    this.#conn = conn;
    this.#leftover = leftover;
  }

  /** Opens the TCP connection and completes the HTTP upgrade. */
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
    // Read byte-chunks until the blank line that ends the response head.
    let received = new Uint8Array(0);
    const buffer = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) {
        conn.close();
        throw new Error("connection closed during the WebSocket handshake");
      }
      received = concat(received, buffer.subarray(0, n));
      const end = decoder.decode(received).indexOf("\r\n\r\n");
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
  async sendText(text: string): Promise<void> {
    const payload = encoder.encode(text);
    const length = payload.length;
    const header = length < 126
      ? [0x81, 0x80 | length]
      : length < 65536
      ? [0x81, 0x80 | 126, length >> 8, length & 0xff]
      : [
        0x81,
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

  /** Reads up to `buffer.length` raw bytes into `buffer`; null at EOF. */
  async read(buffer: Uint8Array): Promise<number | null> {
    if (this.#leftover.length > 0) {
      const n = Math.min(buffer.length, this.#leftover.length);
      buffer.set(this.#leftover.subarray(0, n));
      this.#leftover = this.#leftover.subarray(n);
      return n;
    }
    return await this.#conn.read(buffer);
  }

  /**
   * Reads `chunkBytes` at most every `intervalMs` for `durationMs`: a client
   * that takes ~chunkBytes/intervalMs and lets everything else queue up
   * behind it, in the kernel and in the server.
   */
  async readSlowly(
    options: { chunkBytes: number; intervalMs: number; durationMs: number },
  ): Promise<SlowReadResult> {
    const buffer = new Uint8Array(options.chunkBytes);
    const start = performance.now();
    let bytes = 0, reads = 0;
    while (performance.now() - start < options.durationMs) {
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
      const n = await this.read(buffer);
      if (n === null) break;
      bytes += n;
      reads++;
    }
    return { bytes, reads, seconds: (performance.now() - start) / 1000 };
  }

  /**
   * Reads as fast as the socket delivers until `process.completed` arrives,
   * parsing frame headers only: the cheapest possible client, so what is
   * left of the time is the server's (and the kernel's).
   */
  async drainUntilCompleted(): Promise<DrainResult> {
    const buffer = new Uint8Array(1 << 20);
    const header = new Uint8Array(14);
    let headerLength = 0, headerNeed = 2;
    let payloadLeft = 0, opcode = 0;
    let inspect: Uint8Array | null = null, inspectFilled = 0;
    let wireBytes = 0, frames = 0;
    while (true) {
      const n = await this.read(buffer);
      if (n === null) throw new Error("connection closed before process.completed");
      wireBytes += n;
      let i = 0;
      while (i < n) {
        if (payloadLeft === 0) {
          // In a frame header: 2 bytes, then 0/2/8 bytes of extended length (and a mask key if set).
          header[headerLength++] = buffer[i++]!;
          if (headerLength === 2) {
            const len7 = header[1]! & 0x7f;
            headerNeed = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) +
              (header[1]! & 0x80 ? 4 : 0);
          }
          if (headerLength < headerNeed) continue;
          opcode = header[0]! & 0x0f;
          const len7 = header[1]! & 0x7f;
          payloadLeft = len7 === 126
            ? (header[2]! << 8) | header[3]!
            : len7 === 127
            ? Number(new DataView(header.buffer).getBigUint64(2))
            : len7;
          headerLength = 0;
          headerNeed = 2;
          inspect = opcode === 1 && payloadLeft <= INSPECT_MAX_BYTES
            ? new Uint8Array(payloadLeft)
            : null;
          inspectFilled = 0;
          if (payloadLeft > 0) continue;
        } else {
          const take = Math.min(payloadLeft, n - i);
          if (inspect) inspect.set(buffer.subarray(i, i + take), inspectFilled);
          inspectFilled += take;
          i += take;
          payloadLeft -= take;
          if (payloadLeft > 0) continue;
        }
        // A whole frame has arrived.
        frames++;
        if (opcode === 8) {
          throw new Error("the server closed the connection before process.completed");
        }
        if (inspect) {
          const message = JSON.parse(decoder.decode(inspect));
          if (message.method === "process.completed") {
            return { wireBytes, frames, completed: message.params };
          }
        }
      }
    }
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
