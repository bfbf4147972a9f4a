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
