import assert from "node:assert/strict";
import { type ByteChunk, Coalescer, type Timer, utf8SafeLength } from "./chunker.ts";

const enc = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true });

/** Timers under the test's control: nothing fires until `fire()`. */
function fakeTimers() {
  const pending = new Map<number, () => void>();
  let next = 1;
  return {
    setTimer: (fn: () => void) => {
      pending.set(next, fn);
      return next++ as unknown as Timer;
    },
    clearTimer: (id: Timer) => void pending.delete(id as unknown as number),
    fire: () => {
      const fns = [...pending.values()];
      pending.clear();
      for (const fn of fns) fn();
    },
    get count() {
      return pending.size;
    },
  };
}

function collector() {
  const chunks: ByteChunk[] = [];
  return {
    chunks,
    emit: (c: ByteChunk) => void chunks.push({ offset: c.offset, bytes: c.bytes.slice() }),
  };
}

Deno.test("utf8SafeLength: keeps complete text and holds back only an incomplete last character", () => {
  assert.equal(utf8SafeLength(enc.encode("abc")), 3);
  for (const ch of ["é", "€", "😀"]) {
    const bytes = enc.encode("a" + ch);
    assert.equal(utf8SafeLength(bytes), bytes.length, `${ch} complete`);
    for (let cut = 2; cut < bytes.length; cut++) {
      assert.equal(utf8SafeLength(bytes, cut), 1, `${ch} cut after ${cut} bytes`);
    }
  }
});

Deno.test("utf8SafeLength: invalid bytes are never held back", () => {
  assert.equal(utf8SafeLength(new Uint8Array([0x61, 0x80, 0x80, 0x80, 0x80])), 5); // stray continuations
  assert.equal(utf8SafeLength(new Uint8Array([0x61, 0xff])), 2); // not a lead byte
  assert.equal(utf8SafeLength(new Uint8Array([0x80])), 1);
  assert.equal(utf8SafeLength(new Uint8Array([])), 0);
});

Deno.test("chunker: small writes are coalesced into one chunk when the delay passes", () => {
  const timers = fakeTimers();
  const { chunks, emit } = collector();
  const c = new Coalescer(emit, { maxBytes: 1024, delayMs: 4, ...timers });
  for (const part of ["a", "b", "c", "\n"]) c.push(enc.encode(part));
  assert.equal(chunks.length, 0, "nothing is sent before the delay");
  assert.equal(timers.count, 1, "one timer for the whole burst");
  timers.fire();
  assert.deepEqual(chunks.map((ch) => [ch.offset, new TextDecoder().decode(ch.bytes)]), [[
    0,
    "abc\n",
  ]]);
  c.push(enc.encode("d"));
  timers.fire();
  assert.deepEqual(chunks.map((ch) => ch.offset), [0, 4]);
});

Deno.test("chunker: reaching the size threshold sends at once, in pieces of at most maxBytes", () => {
  const timers = fakeTimers();
  const { chunks, emit } = collector();
  const c = new Coalescer(emit, { maxBytes: 10, delayMs: 4, ...timers });
  c.push(enc.encode("0123456789012345678901234"));
  assert.deepEqual(chunks.map((ch) => [ch.offset, ch.bytes.length]), [[0, 10], [10, 10]]);
  assert.equal(c.pendingBytes, 5);
  c.end();
  assert.deepEqual(chunks.map((ch) => [ch.offset, ch.bytes.length]), [[0, 10], [10, 10], [20, 5]]);
  assert.equal(timers.count, 0, "end cancels the pending timer");
});

Deno.test("chunker: a character split across reads is never split across chunks", () => {
  const text = "aé€😀".repeat(500);
  const bytes = enc.encode(text);
  for (const maxBytes of [4, 7, 64]) {
    const timers = fakeTimers();
    const { chunks, emit } = collector();
    const c = new Coalescer(emit, { maxBytes, delayMs: 4, ...timers });
    // Feed one byte at a time, flushing by timer often, the worst case for boundaries.
    for (let i = 0; i < bytes.length; i++) {
      c.push(bytes.subarray(i, i + 1));
      if (i % 3 === 0) timers.fire();
    }
    c.end();
    let offset = 0;
    let joined = "";
    for (const chunk of chunks) {
      assert.equal(chunk.offset, offset, "offsets are contiguous");
      assert.ok(chunk.bytes.length <= maxBytes || maxBytes < 4);
      joined += strict.decode(chunk.bytes); // throws if a character was split
      offset += chunk.bytes.length;
    }
    assert.equal(joined, text, `maxBytes ${maxBytes}`);
  }
});

Deno.test("chunker: end() sends an incomplete trailing character rather than dropping it", () => {
  const { chunks, emit } = collector();
  const c = new Coalescer(emit, { maxBytes: 1024, delayMs: 4, ...fakeTimers() });
  const euro = enc.encode("€");
  c.push(euro.subarray(0, 2));
  c.flush();
  assert.equal(chunks.length, 0, "flush holds the incomplete character");
  c.end();
  assert.deepEqual([...chunks[0]!.bytes], [...euro.subarray(0, 2)]);
  assert.throws(() => c.push(enc.encode("x")), /after end/);
});

Deno.test("chunker: with no delay every push is sent at once", () => {
  const { chunks, emit } = collector();
  const c = new Coalescer(emit, { maxBytes: 1024, delayMs: 0 });
  c.push(enc.encode("a"));
  c.push(enc.encode("b"));
  assert.equal(chunks.length, 2);
});

Deno.test("chunker: a 50 MB line arrives whole, as chunks of the threshold size", () => {
  const { chunks, emit } = collector();
  const maxBytes = 256 * 1024;
  const c = new Coalescer(emit, { maxBytes, delayMs: 4, ...fakeTimers() });
  const read = new Uint8Array(64 * 1024).fill(0x61);
  const total = 50 * 1024 * 1024;
  for (let sent = 0; sent < total; sent += read.length) c.push(read);
  c.end();
  assert.equal(chunks.reduce((n, ch) => n + ch.bytes.length, 0), total);
  assert.ok(chunks.every((ch) => ch.bytes.length === maxBytes));
});
