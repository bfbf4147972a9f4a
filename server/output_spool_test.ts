import assert from "node:assert/strict";
import { OutputSpool, type SpoolLine, type SpoolStream } from "./output_spool.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "output_spool_test_" });
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) out.push(entry.name);
  return out.sort();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function allLines(
  spool: OutputSpool,
  stream: SpoolStream,
  options?: Parameters<OutputSpool["scanLines"]>[1],
): Promise<SpoolLine[]> {
  const out: SpoolLine[] = [];
  for await (const line of spool.scanLines(stream, options)) out.push(line);
  return out;
}

async function readAll(spool: OutputSpool, stream: SpoolStream): Promise<string> {
  return dec.decode(await spool.read(stream, 0, spool.bytes(stream)));
}

/** Text whose lines have every length around a block and characters of 1 to 4 bytes. */
function mixedText(bytesWanted: number): string {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < bytesWanted; i++) {
    const line = `${i} ${"é€😀x".repeat(i % 7)}${"a".repeat((i * 37) % 300)}${
      i % 5 === 0 ? "\r" : ""
    }\n`;
    parts.push(line);
    size += enc.encode(line).length;
  }
  return parts.join("");
}

Deno.test("output_spool: small output stays in memory and touches no file", async () => {
  const root = await tempDir();
  try {
    const dir = `${root}/spool`;
    await using spool = new OutputSpool("job-1", { dir });
    spool.append("stdout", "hello\nwörld\n");
    spool.append("stderr", "oops");
    spool.append("stdout", "");
    assert.equal(spool.bytes("stdout"), 13);
    assert.equal(await spool.countLines("stdout"), 2);
    assert.equal(spool.bytes("stderr"), 4);
    assert.equal(await spool.countLines("stderr"), 1, "a final partial line counts");
    assert.equal(await readAll(spool, "stdout"), "hello\nwörld\n");
    assert.equal(dec.decode(await spool.read("stdout", 6, 3)), "wö");
    assert.equal((await spool.read("stdout", 100, 10)).length, 0, "past the end is empty");
    assert.deepEqual(await allLines(spool, "stdout"), [
      { line: 1, offset: 0, bytes: 6, eol: 1, text: "hello", cut: false },
      { line: 2, offset: 6, bytes: 7, eol: 1, text: "wörld", cut: false },
    ]);
    assert.deepEqual(await allLines(spool, "stderr"), [
      { line: 1, offset: 0, bytes: 4, eol: 0, text: "oops", cut: false },
    ]);
    assert.equal(spool.lost, null);
    await spool.seal();
    assert.equal(await exists(dir), false, "no folder or file was created");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("output_spool: a trailing carriage return is not part of a line's text", async () => {
  await using spool = new OutputSpool("cr", { dir: null });
  spool.append("stdout", "a\r\nb\r\r\n\r\nprogress 50%\r");
  const lines = await allLines(spool, "stdout");
  assert.deepEqual(lines.map((l) => [l.text, l.eol, l.bytes]), [
    ["a", 2, 3],
    ["b\r", 2, 4],
    ["", 2, 2],
    ["progress 50%", 0, 13],
  ]);
});

Deno.test("output_spool: countLines counts newlines plus a final partial line", async () => {
  const spool = new OutputSpool("j", { dir: null });
  assert.equal(await spool.countLines("stdout"), 0);
  spool.append("stdout", "\n\n");
  assert.equal(await spool.countLines("stdout"), 2);
  spool.append("stdout", "a");
  assert.equal(await spool.countLines("stdout"), 3);
  spool.append("stdout", "b\nc\n");
  assert.equal(await spool.countLines("stdout"), 4);
});

Deno.test("output_spool: past memoryBytes both streams spill to files and keep every byte in order", async () => {
  const dir = await tempDir();
  try {
    await using spool = new OutputSpool("job-2", { dir, memoryBytes: 100 });
    const expected: Record<SpoolStream, string> = { stdout: "", stderr: "" };
    // Multi-byte characters on every side of the spill and of each append.
    const pieces = [
      "é",
      "€uro\n",
      "😀",
      "x".repeat(40),
      "ß\n",
      "中文",
      "\n",
      "z".repeat(333),
      "😀😀\n",
    ];
    for (let i = 0; i < 60; i++) {
      const stream: SpoolStream = i % 3 === 0 ? "stderr" : "stdout";
      const piece = pieces[i % pieces.length]!;
      spool.append(stream, piece);
      expected[stream] += piece;
    }
    // No await between the appends and these reads: they must wait for the pending writes.
    const [out, err] = await Promise.all([readAll(spool, "stdout"), readAll(spool, "stderr")]);
    assert.equal(out, expected.stdout);
    assert.equal(err, expected.stderr);
    assert.equal(spool.bytes("stdout"), enc.encode(expected.stdout).length);
    assert.equal(await spool.countLines("stderr"), expected.stderr.split("\n").length - 1 + 1);
    // Files hold exactly the streams, and a range read cuts where asked.
    assert.equal(await Deno.readTextFile(`${dir}/${hexOf("job-2")}.stdout`), expected.stdout);
    const all = enc.encode(expected.stdout);
    assert.deepEqual(await spool.read("stdout", 7, 50), all.subarray(7, 57));
    assert.equal(spool.lost, null);

    // Appends after a seal reopen the file and go on where it ended.
    await spool.seal();
    await spool.seal();
    spool.append("stdout", "after seal ✓\n");
    expected.stdout += "after seal ✓\n";
    assert.equal(await readAll(spool, "stdout"), expected.stdout);
    await spool.seal();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function hexOf(id: string): string {
  return [...enc.encode(id)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("output_spool: scanLines over a spilled file handles lines and characters across 64 KiB blocks", async () => {
  const dir = await tempDir();
  try {
    // Line 1 spans the first block boundary with "€" on it (bytes 65534..65536); then ASCII up to
    // 2 bytes before the second boundary puts "😀" across it; then lines of every shape.
    let content = "a".repeat(65534) + "€ first\n";
    const filler = 131072 - 2 - enc.encode(content).length;
    content += "c".repeat(filler - 1) + "\n" + "😀 second\n";
    content += mixedText(300_000) + "b".repeat(150_000) + "\n" + "tail without newline €";
    const bytes = enc.encode(content);
    for (const at of [65536, 131072]) {
      assert.equal(bytes[at]! & 0xc0, 0x80, `a character spans ${at}`);
    }

    await using spilled = new OutputSpool("scan", { dir, memoryBytes: 1000 });
    // Appended in odd sizes, so append boundaries fall anywhere (never inside a character).
    const chars = [...content];
    for (let i = 0; i < chars.length; i += 997) {
      spilled.append("stdout", chars.slice(i, i + 997).join(""));
    }
    await using memory = new OutputSpool("scan", { dir: null, memoryBytes: 10_000_000 });
    for (let i = 0; i < chars.length; i += 3001) {
      memory.append("stdout", chars.slice(i, i + 3001).join(""));
    }

    const expectedLines = content.split("\n");
    const lines = await allLines(spilled, "stdout", { maxLineChars: 200_000 });
    assert.equal(lines.length, expectedLines.length);
    assert.equal(lines.length, await spilled.countLines("stdout"));
    let offset = 0;
    for (const [i, line] of lines.entries()) {
      const want = expectedLines[i]!;
      assert.equal(line.line, i + 1);
      assert.equal(line.offset, offset, `offset of line ${i + 1}`);
      assert.equal(line.text, want.replace(/\r$/, ""), `text of line ${i + 1}`);
      assert.equal(line.cut, false);
      const last = i === lines.length - 1;
      assert.equal(line.eol, last ? 0 : want.endsWith("\r") ? 2 : 1);
      const raw = dec.decode(await spilled.read("stdout", line.offset, line.bytes));
      assert.equal(raw, last ? want : want + "\n", `read back line ${i + 1}`);
      offset += line.bytes;
    }
    assert.equal(offset, spilled.bytes("stdout"));
    const spanning = lines.find((l) => l.offset < 65536 && l.offset + l.bytes > 65536);
    assert.ok(spanning, "a line spans the first block boundary");

    // The memory path splits blocks elsewhere and must agree line for line.
    assert.deepEqual(await allLines(memory, "stdout", { maxLineChars: 200_000 }), lines);

    // Starting mid-stream keeps line numbers and offsets of the whole stream.
    const from = lines[500]!;
    const tail = await allLines(spilled, "stdout", {
      fromOffset: from.offset,
      maxLineChars: 200_000,
    });
    assert.deepEqual(tail, lines.slice(500));
    const upTo = await allLines(spilled, "stdout", {
      toOffset: from.offset,
      maxLineChars: 200_000,
    });
    assert.deepEqual(upTo, lines.slice(0, 500));

    // The default cut keeps 4096 characters of the long line and counts all its bytes.
    const cutLines = await allLines(spilled, "stdout");
    const long = cutLines[cutLines.length - 2]!;
    assert.equal(long.cut, true);
    assert.equal(long.text, "b".repeat(4096));
    assert.equal(long.bytes, 150_001);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("output_spool: ASCII blocks (decoded a block at a time) scan the same as any other", async () => {
  const dir = await tempDir();
  try {
    // ASCII only: lines of every length around the 64 KiB blocks, "\r\n" ends, a long line across
    // two blocks and a last line without "\n"; then the same with one "é" in every block.
    const parts: string[] = [];
    for (let i = 0; i < 6_000; i++) {
      parts.push(`${i}:${"abc".repeat(i % 40)}${i % 3 === 0 ? "\r" : ""}\n`);
    }
    parts.push("L".repeat(100_000) + "\n", "end\r");
    const ascii = parts.join("");
    const mixed = ascii.replace(/7:/g, "é:");
    for (const content of [ascii, mixed]) {
      await using spool = new OutputSpool("ascii", { dir, memoryBytes: 1000 });
      for (let i = 0; i < content.length; i += 4093) {
        spool.append("stdout", content.slice(i, i + 4093));
      }
      const lines = await allLines(spool, "stdout", { maxLineChars: 200_000 });
      const expected = content.split("\n");
      assert.deepEqual(lines.map((l) => l.text), expected.map((t) => t.replace(/\r$/, "")));
      let offset = 0;
      for (const [i, line] of lines.entries()) {
        assert.equal(line.offset, offset);
        assert.equal(line.line, i + 1);
        offset += line.bytes;
      }
      assert.equal(offset, spool.bytes("stdout"));
      const cut = await allLines(spool, "stdout", { maxLineChars: 5 });
      assert.deepEqual(cut.map((l) => l.text), lines.map((l) => l.text.slice(0, 5)));
      // (A "\r" cut off with the rest counts as cut.)
      assert.deepEqual(cut.map((l) => l.cut), expected.map((t) => t.length > 5));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("output_spool: a 5 MB line without newline is one cut line with all its bytes counted", async () => {
  const dir = await tempDir();
  try {
    await using spool = new OutputSpool("big", { dir });
    const piece = "€".repeat(1000) + "y".repeat(2000); // 5000 bytes, 3000 characters
    for (let i = 0; i < 1000; i++) spool.append("stdout", piece);
    assert.equal(spool.bytes("stdout"), 5_000_000);
    assert.equal(await spool.countLines("stdout"), 1);
    const lines = await allLines(spool, "stdout", { maxLineChars: 1500 });
    assert.equal(lines.length, 1);
    const [line] = lines;
    assert.equal(line!.cut, true);
    assert.equal(line!.bytes, 5_000_000);
    assert.equal(line!.eol, 0);
    assert.equal(line!.text, "€".repeat(1000) + "y".repeat(500));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("output_spool: a cut never splits a surrogate pair", async () => {
  await using spool = new OutputSpool("emoji", { dir: null });
  spool.append("stdout", "ab😀cd\n");
  const [line] = await allLines(spool, "stdout", { maxLineChars: 3 });
  assert.equal(line!.text, "ab");
  assert.equal(line!.cut, true);
});

Deno.test("output_spool: without a folder, output past memoryBytes is lost; bytes still count, lines are of what is kept", async () => {
  await using spool = new OutputSpool("mem", { dir: null, memoryBytes: 10 });
  spool.append("stdout", "hello");
  spool.append("stderr", "wor€ld!\n"); // 5 bytes fit, which would split the €: 3 are kept
  spool.append("stderr", "more\n");
  spool.append("stdout", "12345");
  spool.append("stdout", "6\n");
  assert.deepEqual(spool.lost, {
    stream: "stderr",
    offset: 3,
    reason: "Output past 10 bytes is not kept: the spool has no folder to spill to",
  });
  assert.equal(await readAll(spool, "stderr"), "wor");
  assert.equal(spool.bytes("stderr"), 15);
  assert.equal(await spool.countLines("stderr"), 1, "lines are counted in what was kept");
  assert.equal(await readAll(spool, "stdout"), "hello12", "stdout kept what fitted");
  assert.equal(spool.bytes("stdout"), 12);
  assert.equal(await spool.countLines("stdout"), 1);
  assert.deepEqual((await allLines(spool, "stderr")).map((l) => l.text), ["wor"]);
});

Deno.test("output_spool: an unwritable folder sets lost with the reason and never throws", async () => {
  const root = await tempDir();
  try {
    await Deno.writeTextFile(`${root}/file`, "x");
    await using spool = new OutputSpool("job", { dir: `${root}/file/sub`, memoryBytes: 4 });
    spool.append("stdout", "abc");
    spool.append("stdout", "defgh\n");
    spool.append("stderr", "err\n");
    await spool.seal();
    const lost = spool.lost;
    assert.ok(lost);
    assert.equal(lost.offset, 0);
    assert.match(lost.reason, /^Cannot spill (stdout|stderr) of job "job" to ".*\/file\/sub": /);
    assert.equal(spool.bytes("stdout"), 9);
    assert.equal(await spool.countLines("stdout"), 0, "nothing was kept");
    assert.equal((await spool.read("stdout", 0, 100)).length, 0);
    assert.deepEqual(await allLines(spool, "stdout"), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("output_spool: dispose deletes the files and later reads throw", async () => {
  const dir = await tempDir();
  try {
    const spool = new OutputSpool("gone", { dir, memoryBytes: 8 });
    spool.append("stdout", "0123456789\n");
    spool.append("stderr", "e\n");
    await spool.seal();
    assert.deepEqual(await names(dir), [`${hexOf("gone")}.stderr`, `${hexOf("gone")}.stdout`]);
    await spool[Symbol.asyncDispose]();
    await spool[Symbol.asyncDispose]();
    assert.deepEqual(await names(dir), []);
    await assert.rejects(
      () => spool.read("stdout", 0, 1),
      new Error('Cannot read the output of job "gone": spool is disposed'),
    );
    await assert.rejects(
      () => allLines(spool, "stdout"),
      new Error('Cannot scan the output of job "gone": spool is disposed'),
    );
    spool.append("stdout", "late\n"); // dropped, not thrown
    assert.deepEqual(await names(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("output_spool: a job id with separators or dots stays inside the folder", async () => {
  const root = await tempDir();
  try {
    const dir = `${root}/spool`;
    const long = "../😀/".repeat(40); // too long to spell out: hashed
    for (const id of ["../x/y", "..", long]) {
      await using spool = new OutputSpool(id, { dir, memoryBytes: 1 });
      spool.append("stdout", "data\n");
      assert.equal(await readAll(spool, "stdout"), "data\n");
      const [name] = await names(dir);
      assert.ok(name !== undefined && !name.includes("/") && name.endsWith(".stdout"), name);
      assert.ok(name.length < 200, "a file name any file system takes");
      await spool[Symbol.asyncDispose]();
    }
    assert.deepEqual(await names(root), ["spool"], "nothing was written beside the folder");
    assert.deepEqual(await names(`${root}/spool`), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("output_spool: offsets and sizes must be non-negative integers", async () => {
  await using spool = new OutputSpool("j", { dir: null });
  await assert.rejects(() => spool.read("stdout", -1, 1), RangeError);
  await assert.rejects(() => allLines(spool, "stdout", { fromOffset: 1.5 }), RangeError);
});

Deno.test("output_spool: past maxBytes a stream keeps what came before, counts the rest, and says so", async () => {
  const dir = await tempDir();
  try {
    await using spool = new OutputSpool("cap", { dir, memoryBytes: 8, maxBytes: 20 });
    spool.appendBytes("stdout", new TextEncoder().encode("0123456789\n"));
    spool.append("stdout", "abcdefgh€\n"); // crosses 20 inside "€": cut before it
    spool.append("stdout", "never kept\n");
    spool.append("stderr", "stderr is under its own cap\n");
    assert.equal(spool.bytes("stdout"), 11 + 12 + 11);
    assert.equal(await readAll(spool, "stdout"), "0123456789\nabcdefgh");
    assert.deepEqual(spool.lost, {
      stream: "stdout",
      offset: 19,
      reason: "output past 20 bytes of stdout is not kept (CC_EXECUTOR_SPOOL_MAX_BYTES)",
    });
    assert.equal(await readAll(spool, "stderr"), "stderr is under its own cap\n".slice(0, 20));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const MiB = 1024 * 1024;

Deno.test("output_spool: a read under steady output waits for what came before it, not for the writer to go idle", async () => {
  const dir = await tempDir();
  try {
    await using spool = new OutputSpool("steady", { dir, memoryBytes: 1024 });
    spool.append("stdout", "first line\n");
    const chunk = new Uint8Array(MiB).fill(97);
    let stop = false;
    let appended = 0;
    // Appends as fast as ready() lets it: 2 to 8 MiB always wait, so the writer is never idle.
    const appender = (async () => {
      const started = performance.now();
      while (!stop && performance.now() - started < 10_000 && appended < 512 * MiB) {
        spool.appendBytes("stdout", chunk);
        appended += chunk.length;
        await (spool.ready() ?? Promise.resolve());
      }
      return performance.now() - started;
    })();
    let appenderDone = false;
    appender.finally(() => appenderDone = true);
    while (appended < 32 * MiB) await new Promise((r) => setTimeout(r, 1));

    const started = performance.now();
    const before = spool.bytes("stdout");
    const head = await spool.read("stdout", 0, 200);
    // Bounded reads (the appends go on): each waits for its own bytes, written or queued.
    const lines = await spool.countLines("stdout", 4 * MiB);
    const scanned: SpoolLine[] = [];
    for await (const line of spool.scanLines("stdout", { toOffset: before, maxLineChars: 10 })) {
      scanned.push(line);
    }
    const ms = performance.now() - started;
    const stillAppending = !appenderDone;
    stop = true;
    const appendMs = await appender;
    assert.ok(
      stillAppending,
      `the reads finished only after the appends stopped (${ms.toFixed(0)} ms, ` +
        `${appended} bytes appended in ${appendMs.toFixed(0)} ms)`,
    );
    assert.equal(dec.decode(head), "first line\n" + "a".repeat(189));
    assert.equal(lines, 2);
    assert.equal(scanned.length, 2);
    assert.equal(scanned[1]!.offset + scanned[1]!.bytes, before, "scanned to toOffset");
    assert.ok(ms < 5_000, `reads took ${ms} ms`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("output_spool: ready() holds the job back while 8 MiB wait for the writer, until under 2 MiB", async () => {
  const dir = await tempDir();
  try {
    await using spool = new OutputSpool("ready", { dir, memoryBytes: 1024 });
    assert.equal(spool.ready(), undefined, "nothing waits");
    const chunk = new Uint8Array(MiB).fill(98);
    for (let i = 0; i < 7; i++) spool.appendBytes("stdout", chunk);
    spool.append("stderr", "x".repeat(MiB - 1));
    assert.equal(spool.ready(), undefined, "under 8 MiB (both streams) waits");
    spool.append("stderr", "x");
    const wait = spool.ready();
    assert.ok(wait instanceof Promise, "8 MiB wait: the job should wait");
    await wait;
    const written = (await Deno.stat(`${dir}/${hexOf("ready")}.stdout`)).size +
      (await Deno.stat(`${dir}/${hexOf("ready")}.stderr`)).size;
    assert.ok(written > 6 * MiB, `under 2 MiB left to write: ${written} of ${8 * MiB} written`);
    assert.equal(spool.ready(), undefined);
    assert.equal(await readAll(spool, "stderr"), "x".repeat(MiB));

    // Memory only: nothing is ever written, so nothing holds the job back.
    await using memory = new OutputSpool("mem", { dir: null, memoryBytes: 1024 });
    for (let i = 0; i < 10; i++) memory.appendBytes("stdout", chunk);
    assert.equal(memory.ready(), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("output_spool: ready() lets the job go when the spool is disposed or cannot write", async () => {
  const root = await tempDir();
  try {
    const chunk = new Uint8Array(MiB).fill(99);
    const disposed = new OutputSpool("d", { dir: root, memoryBytes: 1024 });
    for (let i = 0; i < 20; i++) disposed.appendBytes("stdout", chunk);
    const wait = disposed.ready();
    assert.ok(wait instanceof Promise);
    await disposed[Symbol.asyncDispose]();
    await wait;
    assert.equal(disposed.ready(), undefined);

    await Deno.writeTextFile(`${root}/file`, "x");
    await using broken = new OutputSpool("b", { dir: `${root}/file/sub`, memoryBytes: 1024 });
    for (let i = 0; i < 20; i++) broken.appendBytes("stdout", chunk);
    const brokenWait = broken.ready();
    assert.ok(brokenWait instanceof Promise);
    await brokenWait;
    assert.ok(broken.lost, "the failed write was recorded");
    assert.equal(broken.ready(), undefined);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("output_spool: a scan whose bytes a spill moves mid-scan waits for them to be written", async () => {
  const dir = await tempDir();
  try {
    const content = Array.from({ length: 1000 }, (_, i) => `line ${i}\n`).join("");
    // Offset 10 is inside line 2, "line 1\n" (bytes 7..13).
    const expected = content.slice(10).split("\n").slice(0, -1);
    const failures: string[] = [];
    for (let trial = 0; trial < 200; trial++) {
      const spool = new OutputSpool(`race-${trial}`, { dir, memoryBytes: 65536 });
      try {
        spool.append("stdout", content);
        const lines = allLines(spool, "stdout", { fromOffset: 10 });
        const read = spool.read("stdout", 0, content.length);
        const counted = spool.countLines("stdout");
        for (let k = 0; k < trial % 20; k++) await Promise.resolve();
        spool.append("stdout", "x".repeat(70_000) + "\n"); // past 64 KiB: spills
        const got = await lines;
        const texts = got.map((l) => l.text);
        if (JSON.stringify(texts) !== JSON.stringify(expected) || got[0]?.line !== 2) {
          failures.push(`trial ${trial}: ${got.length} lines from line ${got[0]?.line}`);
        }
        if (dec.decode(await read) !== content) failures.push(`trial ${trial}: read differs`);
        if (await counted !== 1000) failures.push(`trial ${trial}: counted ${await counted}`);
      } catch (e) {
        failures.push(`trial ${trial}: ${e instanceof Error ? e.message : e}`);
      } finally {
        await spool[Symbol.asyncDispose]();
      }
    }
    assert.deepEqual(failures, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("output_spool: scanLines with firstLine numbers from it without counting the lines before", async () => {
  const dir = await tempDir();
  try {
    await using spool = new OutputSpool("first", { dir, memoryBytes: 1000 });
    spool.append("stdout", mixedText(200_000));
    const all = await allLines(spool, "stdout");
    const from = all[700]!;
    const counted = await allLines(spool, "stdout", { fromOffset: from.offset });
    assert.deepEqual(counted, all.slice(700));
    const given = await allLines(spool, "stdout", { fromOffset: from.offset, firstLine: 701 });
    assert.deepEqual(given, counted);
    // The numbers follow what the caller says: nothing before fromOffset was counted.
    const told = await allLines(spool, "stdout", { fromOffset: from.offset, firstLine: 5 });
    assert.deepEqual(told.map((l) => l.line), counted.map((l) => l.line - 696));
    assert.deepEqual(told.map((l) => l.text), counted.map((l) => l.text));
    await assert.rejects(() => allLines(spool, "stdout", { firstLine: 0 }), RangeError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("output_spool: dispose drops what waits to be written instead of writing it first", async () => {
  const root = await tempDir();
  try {
    const dir = `${root}/spool`;
    const spool = new OutputSpool("drop", { dir, memoryBytes: 1024 });
    assert.equal(spool.disposed, false);
    spool.append("stdout", "x".repeat(2000));
    assert.equal((await spool.read("stdout", 0, 10)).length, 10); // the file now exists
    // A second name for the file shows what was written after dispose removed the first.
    await Deno.link(`${dir}/${hexOf("drop")}.stdout`, `${root}/link`);
    const chunk = new Uint8Array(MiB).fill(100);
    for (let i = 0; i < 32; i++) spool.appendBytes("stdout", chunk);
    await spool[Symbol.asyncDispose]();
    assert.equal(spool.disposed, true);
    assert.deepEqual(await names(dir), []);
    const written = (await Deno.stat(`${root}/link`)).size;
    assert.ok(written < 2 * MiB, `${written} bytes written on the way out`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
