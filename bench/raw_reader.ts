/**
 * The benchmark's raw readers, on the tests' bare-TCP WebSocket client: one
 * that reads slowly (the built-in WebSocket always drains the socket, so it
 * can never play a slow peer, scenario d), and one that reads without
 * decoding JSON (so the fast-reader figure in scenario c can be split into
 * server cost and client cost). Server-to-client frames are only parsed as
 * far as their headers, except the small text frames, where
 * `process.completed` is looked for.
 *
 * @module
 */
import type { RawWebSocket } from "../tests/raw_websocket.ts";

export { RawWebSocket } from "../tests/raw_websocket.ts";

const decoder = new TextDecoder();

/**
 * Text frames at most this big are decoded to look for `process.completed` (a few hundred
 * bytes); the output chunks of a flood are bigger, so the reader stays free of JSON.
 */
const INSPECT_MAX_BYTES = 4 * 1024;

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

/**
 * Reads `chunkBytes` at most every `intervalMs` for `durationMs`: a client
 * that takes ~chunkBytes/intervalMs and lets everything else queue up
 * behind it, in the kernel and in the server.
 */
export async function readSlowly(
  ws: RawWebSocket,
  options: { chunkBytes: number; intervalMs: number; durationMs: number },
): Promise<SlowReadResult> {
  const buffer = new Uint8Array(options.chunkBytes);
  const start = performance.now();
  let bytes = 0, reads = 0;
  while (performance.now() - start < options.durationMs) {
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
    const n = await ws.readInto(buffer);
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
export async function drainUntilCompleted(ws: RawWebSocket): Promise<DrainResult> {
  const buffer = new Uint8Array(1 << 20);
  const header = new Uint8Array(14);
  let headerLength = 0, headerNeed = 2;
  let payloadLeft = 0, opcode = 0;
  let inspect: Uint8Array | null = null, inspectFilled = 0;
  let wireBytes = 0, frames = 0;
  while (true) {
    const n = await ws.readInto(buffer);
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
