/**
 * Throws 10,000 random and mutated frames at a live server (invalid UTF-8, binary frames, huge
 * numbers, deep nesting, huge strings, wrong types, junk methods, batches), then checks that it
 * still answers, that every job it started has ended, and that no connection is left behind.
 * The shell is `true`, so whatever an `execute` asks for, nothing runs.
 */
import assert from "node:assert/strict";
import { ExecutorClient } from "../server/client.ts";
import { Methods } from "../server/protocol.ts";
import { RawWebSocket } from "./raw_websocket.ts";
import { startTestServer, waitUntil } from "./test_util.ts";

const FRAMES = 10_000;
const CONNECTIONS = 4;

/** mulberry32: a small seeded generator, so a failure can be replayed with its seed. */
function generator(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  return { next, int, pick };
}

type Random = ReturnType<typeof generator>;

const METHODS = [...Object.keys(Methods), "", "nope", "execute ", "__proto__", "constructor"];
const ODD_NUMBERS = [0, -0, -1, 1e308, -1e308, 2 ** 53 + 1, 1.5, 4294967296, -2147483649];

function randomValue(r: Random, depth = 0): unknown {
  switch (r.int(depth > 3 ? 5 : 8)) {
    case 0:
      return null;
    case 1:
      return r.next() < 0.5;
    case 2:
      return r.pick(ODD_NUMBERS);
    case 3:
      return randomString(r);
    case 4:
      return r.int(1000);
    case 5:
      return Array.from({ length: r.int(4) }, () => randomValue(r, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = r.int(5); i > 0; i--) {
        object[r.pick(KEYS)] = randomValue(r, depth + 1);
      }
      return object;
    }
  }
}

const KEYS = [
  "command",
  "prompt",
  "job_id",
  "timeout",
  "idle_timeout",
  "cwd",
  "env",
  "stdin",
  "detach",
  "type",
  "from_seq",
  "data",
  "eof",
  "limit",
  "cursor",
  "pattern",
  "grep",
  "offset",
  "max_bytes",
  "__proto__",
  "constructor",
];

function randomString(r: Random): string {
  const kinds = ["", "x", "\u0000", "\ud800", "😀", "$(id)", "../../etc/passwd", "a\nb", "%s%n"];
  let text = r.pick(kinds);
  for (let i = r.int(4); i > 0; i--) text += r.pick(kinds);
  return text;
}

/** One frame: what to send and how. */
function randomFrame(r: Random): { opcode: number; payload: Uint8Array } {
  const text = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const request = () => ({
    jsonrpc: r.next() < 0.9 ? "2.0" : r.pick(["1.0", 2, null]),
    id: r.pick([1, "a", null, 1.5, [], {}, undefined]),
    method: r.pick(METHODS),
    params: r.next() < 0.8 ? randomValue(r) : r.pick([[], "params", 7]),
  });
  switch (r.int(12)) {
    case 0: { // not UTF-8 at all
      const bytes = crypto.getRandomValues(new Uint8Array(1 + r.int(64)));
      bytes[0] = 0xff;
      return { opcode: 0x1, payload: bytes };
    }
    case 1: // a binary frame
      return { opcode: 0x2, payload: text(request()) };
    case 2: { // deep nesting, unterminated or balanced inside params
      const depth = r.pick([100, 10_000, 100_000]);
      const nested = "[".repeat(depth) + (r.next() < 0.5 ? "]".repeat(depth) : "");
      const method = r.pick(["execute", "jobs.list", "hooks.run", "templates.render"]);
      return {
        opcode: 0x1,
        payload: new TextEncoder().encode(
          r.next() < 0.3
            ? nested
            : `{"jsonrpc":"2.0","id":1,"method":"${method}","params":{"command":"x","env":${nested}}}`,
        ),
      };
    }
    case 3: // a huge string in a valid request
      return {
        opcode: 0x1,
        payload: text({
          jsonrpc: "2.0",
          id: 1,
          method: r.pick(["execute", "jobs.get", "history.list"]),
          params: { command: "x".repeat(r.pick([70_000, 1_000_000])) },
        }),
      };
    case 4: // truncated JSON
      return { opcode: 0x1, payload: text(request()).slice(0, 1 + r.int(20)) };
    case 5: // a batch
      return {
        opcode: 0x1,
        payload: text(Array.from({ length: r.int(6) }, () => (r.next() < 0.7 ? request() : 1))),
      };
    case 6: // any JSON value
      return { opcode: 0x1, payload: text(randomValue(r)) };
    case 7: // a valid execute with odd text (the shell is `true`: nothing runs)
      return {
        opcode: 0x1,
        payload: text({
          jsonrpc: "2.0",
          id: r.int(1e9),
          method: "execute",
          params: {
            command: `x${randomString(r)}`,
            ...(r.next() < 0.3 ? { keep_stdin_open: true } : {}),
            ...(r.next() < 0.3 ? { detach: true } : {}),
            ...(r.next() < 0.3 ? { env: { K: randomString(r) } } : {}),
          },
        }),
      };
    default:
      return { opcode: 0x1, payload: text(request()) };
  }
}

Deno.test("fuzz: 10,000 random and mutated frames leave the server answering, with nothing left behind", async () => {
  const seed = Number(Deno.env.get("FUZZ_SEED") ?? Date.now() % 2 ** 31);
  const r = generator(seed);
  await using server = await startTestServer({
    shell: "true",
    claudeBin: "true",
    maxMessageBytes: 512 * 1024,
  });
  const wsUrl = server.url;
  let sent = 0;
  let reconnects = 0;
  const worker = async () => {
    let socket: RawWebSocket | null = null;
    let draining: Promise<void> | null = null;
    const open = async () => {
      socket = await RawWebSocket.connect(wsUrl);
      const own = socket;
      // Read and drop what the server says, so its answers never back up.
      draining = (async () => {
        while ((await own.read(64 * 1024).catch(() => null)) !== null);
      })();
    };
    await open();
    try {
      while (sent < FRAMES) {
        sent++;
        const frame = randomFrame(r);
        try {
          await socket!.sendFrame(frame.opcode, frame.payload);
        } catch {
          // The server closed this connection (it may, for a frame that is not UTF-8): reopen.
          socket!.close();
          await draining;
          reconnects++;
          await open();
        }
      }
    } finally {
      socket!.close();
      await draining;
    }
  };
  try {
    await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  } catch (error) {
    throw new Error(`fuzz failed with FUZZ_SEED=${seed}: ${(error as Error).message}`);
  }

  const started = server.jobs.list({ limit: 10_000 }).length;
  if (Deno.env.get("FUZZ_VERBOSE")) console.log({ seed, reconnects, started });
  assert.ok(started >= 10, `the frames started jobs (${started}; FUZZ_SEED=${seed})`);
  // Still answering, and whatever the frames started has ended (the shell is `true`).
  await using client = await ExecutorClient.connect(wsUrl);
  const pong = await client.request("ping", {});
  assert.equal(pong.pong, true, `FUZZ_SEED=${seed}`);
  const outcome = await client.execute({ command: "echo still here" });
  assert.equal(outcome.status, "completed", `FUZZ_SEED=${seed}`);
  await waitUntil(() => server.jobs.runningCount === 0, `every job to end (FUZZ_SEED=${seed})`);
  // Every fuzzing connection is gone: only this client's session is left.
  await waitUntil(async () => {
    const info = await client.request("server.info", {});
    return info.sessions === 1;
  }, `the fuzzing sessions to close (FUZZ_SEED=${seed}, ${reconnects} reconnects)`);
});
