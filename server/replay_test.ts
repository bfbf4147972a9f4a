import assert from "node:assert/strict";
import { ReplayBuffer } from "./replay.ts";

Deno.test("replay: keeps everything within budget and replays from a sequence number", () => {
  const buffer = new ReplayBuffer(100);
  for (let seq = 1; seq <= 5; seq++) buffer.add(seq, `frame-${seq}`);
  assert.deepEqual(buffer.from(0), {
    frames: ["frame-1", "frame-2", "frame-3", "frame-4", "frame-5"],
    firstSeq: 1,
    missed: 0,
  });
  assert.deepEqual(buffer.from(4), { frames: ["frame-4", "frame-5"], firstSeq: 4, missed: 0 });
  assert.deepEqual(buffer.from(6), { frames: [], firstSeq: null, missed: 0 });
});

Deno.test("replay: drops the oldest frames past the budget and counts what was missed", () => {
  const buffer = new ReplayBuffer(25);
  for (let seq = 1; seq <= 10; seq++) buffer.add(seq, "x".repeat(10));
  assert.ok(buffer.size <= 25);
  const all = buffer.from(0);
  assert.deepEqual(all.firstSeq, 9);
  assert.equal(all.frames.length, 2);
  assert.equal(all.missed, 8);
  assert.equal(buffer.from(5).missed, 4);
  assert.equal(buffer.from(9).missed, 0);
});

Deno.test("replay: always keeps the newest frame, even one larger than the budget", () => {
  const buffer = new ReplayBuffer(5);
  buffer.add(1, "small");
  buffer.add(2, "a much larger frame");
  assert.deepEqual(buffer.from(0).frames, ["a much larger frame"]);
});

Deno.test("replay: stays correct across compaction of dropped entries", () => {
  const buffer = new ReplayBuffer(30);
  for (let seq = 1; seq <= 5000; seq++) buffer.add(seq, `f${seq}`.padEnd(10, "."));
  const slice = buffer.from(0);
  assert.deepEqual(slice.frames, ["f4998.....", "f4999.....", "f5000....."]);
  assert.equal(slice.firstSeq, 4998);
  assert.equal(slice.missed, 4997);
});

Deno.test("replay: dropped frames are released, so memory stays near the budget", () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.ok(gc, "needs --v8-flags=--expose-gc, which `deno task test` passes");
  gc();
  const before = Deno.memoryUsage().heapUsed;
  const buffer = new ReplayBuffer(1_000_000);
  // 100 MB of frames through a 1 MB budget. Decoded text is a flat string; "x".repeat(n) would be
  // a small tree of shared pieces and prove nothing.
  const bytes = new Uint8Array(100_000).fill(0x78);
  for (let seq = 1; seq <= 1000; seq++) buffer.add(seq, new TextDecoder().decode(bytes));
  gc();
  const grown = Deno.memoryUsage().heapUsed - before;
  assert.ok(buffer.size <= 1_000_000 && buffer.length === 10, `holds ${buffer.length} frames`);
  assert.ok(grown < 20_000_000, `heap grew by ${grown} bytes for a 1 MB budget`);
});

Deno.test("replay: shrink lowers the budget and drops the oldest frames, keeping the newest", () => {
  const buffer = new ReplayBuffer(1000);
  for (let seq = 1; seq <= 10; seq++) buffer.add(seq, "x".repeat(100));
  buffer.shrink(250);
  assert.deepEqual(buffer.from(0).firstSeq, 9);
  assert.equal(buffer.from(0).missed, 8);
  buffer.shrink(1);
  assert.deepEqual(buffer.from(0).firstSeq, 10, "the newest frame (the terminal one) stays");
  buffer.shrink(5000);
  buffer.add(11, "x".repeat(100));
  assert.equal(buffer.length, 1, "shrink is one-way: a larger budget is ignored");
});
