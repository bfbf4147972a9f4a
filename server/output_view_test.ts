import assert from "node:assert/strict";
import { OutputSpool, type SpoolStream } from "./output_spool.ts";
import {
  ERROR_LINE,
  type OutputView,
  SECTION_OVERHEAD_BYTES,
  utf8Length,
  viewOutput,
} from "./output_view.ts";

const enc = new TextEncoder();

/** A spool holding `streams`, appended in pieces; spilled to `dir` when given. */
function spoolOf(
  streams: Partial<Record<SpoolStream, string>>,
  dir: string | null = null,
): OutputSpool {
  const spool = new OutputSpool(
    "view-test",
    dir === null ? { dir, memoryBytes: 1 << 30 } : {
      dir,
      memoryBytes: 1024,
    },
  );
  for (const [stream, text] of Object.entries(streams) as [SpoolStream, string][]) {
    for (let i = 0; i < text.length;) {
      let end = Math.min(text.length, i + 65_000);
      if (end < text.length && (text.charCodeAt(end - 1) & 0xfc00) === 0xd800) end++;
      spool.append(stream, text.slice(i, end));
      i = end;
    }
  }
  return spool;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "output_view_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function textBytes(view: OutputView): number {
  return view.sections.reduce((n, s) => n + enc.encode(s.text).length, 0);
}

/** What the view costs of its budget: its text plus the overhead of each section. */
function charged(view: OutputView): number {
  return textBytes(view) + SECTION_OVERHEAD_BYTES * view.sections.length;
}

/** Shorter to read in budgets: a budget of `O + n` has room for one section of n bytes. */
const O = SECTION_OVERHEAD_BYTES;

/**
 * Checks what holds for every view: within budget (text and section overhead), in order, no
 * overlap, exact omitted counts.
 */
function checkView(
  view: OutputView,
  budget: number,
  totals: Partial<Record<SpoolStream, { bytes: number; lines: number }>>,
  options: { cutLines?: boolean } = {},
): void {
  assert.ok(
    charged(view) <= budget,
    `${textBytes(view)} bytes of text in ${view.sections.length} sections within ${budget}`,
  );
  let shownBytes = 0;
  let shownLines = 0;
  let last: { stream: SpoolStream; line: number; offset: number } | null = null;
  for (const s of view.sections) {
    assert.ok(s.first_line <= s.last_line && s.offset <= s.end_offset, JSON.stringify(s));
    if (last !== null && last.stream === s.stream) {
      assert.ok(s.first_line > last.line, `sections of ${s.stream} in order, apart`);
      assert.ok(s.offset >= last.offset);
    }
    last = { stream: s.stream, line: s.last_line, offset: s.end_offset };
    shownBytes += s.end_offset - s.offset;
    shownLines += s.last_line - s.first_line + 1;
  }
  const total = Object.values(totals);
  assert.equal(view.omitted_lines, total.reduce((n, t) => n + t.lines, 0) - shownLines);
  // With cut lines a section shows less than its offsets span: only the lines are exact then.
  if (!options.cutLines) {
    assert.equal(view.omitted_bytes, total.reduce((n, t) => n + t.bytes, 0) - shownBytes);
  }
}

function totalsOf(streams: Partial<Record<SpoolStream, string>>) {
  const out: Partial<Record<SpoolStream, { bytes: number; lines: number }>> = {};
  for (const [stream, text] of Object.entries(streams) as [SpoolStream, string][]) {
    const parts = text.split("\n");
    out[stream] = {
      bytes: enc.encode(text).length,
      lines: parts.length - (parts.at(-1) === "" ? 1 : 0),
    };
  }
  return out;
}

/** Lines first..last (1-based) of `text`, joined as a section shows them. */
function linesOf(text: string, first: number, last: number): string {
  return text.split("\n").slice(first - 1, last).join("\n");
}

function numbered(count: number, errors: Record<number, string> = {}): string {
  const lines: string[] = [];
  for (let i = 1; i <= count; i++) {
    lines.push(errors[i] ?? `line ${String(i).padStart(6, "0")} ${"-".repeat(38)}`);
  }
  return lines.join("\n") + "\n";
}

Deno.test("output_view: small output is shown whole with nothing omitted", async () => {
  for (const dir of [null, "spill"]) {
    await withDir(async (tmp) => {
      const streams = { stdout: "a\nwörld\r\n", stderr: "oops" };
      await using spool = spoolOf(streams, dir && tmp);
      const view = await viewOutput(spool, {
        streams: ["stdout", "stderr"],
        mode: { kind: "summary" },
        budgetBytes: 1000,
      });
      assert.deepEqual(view, {
        sections: [
          {
            stream: "stdout",
            why: "all",
            first_line: 1,
            last_line: 2,
            offset: 0,
            end_offset: 10,
            text: "a\nwörld",
          },
          {
            stream: "stderr",
            why: "all",
            first_line: 1,
            last_line: 1,
            offset: 0,
            end_offset: 4,
            text: "oops",
          },
        ],
        omitted_bytes: 0,
        omitted_lines: 0,
        truncated: false,
        totals: { stdout: { bytes: 10, lines: 2 }, stderr: { bytes: 4, lines: 1 } },
      });
    });
  }
  await using empty = spoolOf({});
  const view = await viewOutput(empty, {
    streams: ["stdout", "stderr"],
    mode: { kind: "summary" },
    budgetBytes: 100,
  });
  assert.deepEqual(view, {
    sections: [],
    omitted_bytes: 0,
    omitted_lines: 0,
    truncated: false,
    totals: { stdout: { bytes: 0, lines: 0 }, stderr: { bytes: 0, lines: 0 } },
  });
});

Deno.test("output_view: summary shows a stream whole exactly up to the budget", async () => {
  const stdout = "abc\ndef\nghi\n"; // text "abc\ndef\nghi": 11 bytes
  await using spool = spoolOf({ stdout });
  const summary = (budgetBytes: number) =>
    viewOutput(spool, { streams: ["stdout"], mode: { kind: "summary" }, budgetBytes });
  const fits = await summary(O + 11);
  assert.deepEqual(fits.sections.map((s) => [s.why, s.text]), [["all", "abc\ndef\nghi"]]);
  assert.equal(fits.truncated, false);
  for (const budget of [O + 10, O + 8, O + 4, O, 50, 0]) {
    const view = await summary(budget);
    checkView(view, budget, totalsOf({ stdout }));
    assert.equal(view.truncated, true);
  }
  // Room for one section that cannot hold it all: the end is what is shown.
  assert.deepEqual((await summary(O + 8)).sections.map((s) => [s.why, s.text]), [
    ["tail", "def\nghi"],
  ]);
  assert.deepEqual((await summary(O)).sections, []);

  // Room for two sections: head and tail.
  const longer = Array.from({ length: 60 }, (_, i) => `l${String(i + 1).padStart(2, "0")}\n`);
  await using long = spoolOf({ stdout: longer.join("") });
  const split = await viewOutput(long, {
    streams: ["stdout"],
    mode: { kind: "summary" },
    budgetBytes: 2 * O + 16,
  });
  checkView(split, 2 * O + 16, totalsOf({ stdout: longer.join("") }));
  assert.deepEqual(split.sections.map((s) => [s.why, s.text]), [
    ["head", "l01\nl02"],
    ["tail", "l59\nl60"],
  ]);
});

Deno.test("output_view: summary of a 5 MB stream keeps head, error windows and tail within the budget", async () => {
  await withDir(async (dir) => {
    const stdout = numbered(100_000, {
      40_000: "error: first failure",
      40_001: "src/a.ts:3 error TS2322",
      50_000: "build finished with 0 errors",
      50_001: "no errors found",
      60_000: "thread 'main' panicked at src/main.rs:1",
      60_010: "FAIL tests/x.test.ts",
      99_999: "fatal: in the tail already",
    });
    assert.ok(stdout.length > 5_000_000);
    await using spool = spoolOf({ stdout }, dir);
    const started = performance.now();
    const view = await viewOutput(spool, {
      streams: ["stdout"],
      mode: { kind: "summary" },
      budgetBytes: 30_000,
    });
    const ms = performance.now() - started;
    console.log(`summary of ${stdout.length} bytes / 100000 lines: ${ms.toFixed(0)} ms`);
    assert.ok(ms < 5000, `took ${ms} ms`);

    checkView(view, 30_000, totalsOf({ stdout }));
    assert.equal(view.truncated, true);
    assert.ok(textBytes(view) > 29_000, "the unused error share went to head and tail");
    const whys = view.sections.map((s) => s.why);
    assert.deepEqual(whys, ["head", "error", "error", "error", "tail"]);
    const [head, ...rest] = view.sections;
    const tail = rest.pop()!;
    assert.equal(head!.first_line, 1);
    assert.equal(tail.last_line, 100_000);
    assert.equal(tail.end_offset, enc.encode(stdout).length);
    assert.ok(tail.text.includes("fatal: in the tail already"));
    // Each error line with 2 lines of context each side; adjacent errors share one window.
    assert.deepEqual(rest.map((s) => [s.first_line, s.last_line]), [
      [39_998, 40_003],
      [59_998, 60_002],
      [60_008, 60_012],
    ]);
    for (const s of view.sections) {
      assert.equal(s.text, linesOf(stdout, s.first_line, s.last_line), `${s.why} text`);
    }
    // The head gets about 25% + its part of the unused error share, the tail the rest.
    assert.ok(head!.text.length > 7_500 && tail.text.length > 13_500, "shares");
  });
});

Deno.test("output_view: summary in memory and spilled agree", async () => {
  const stdout = numbered(3_000, { 1_500: "Traceback (most recent call last):" });
  await withDir(async (dir) => {
    await using spilled = spoolOf({ stdout }, dir);
    await using memory = spoolOf({ stdout });
    const request = {
      streams: ["stdout"] as SpoolStream[],
      mode: { kind: "summary" } as const,
      budgetBytes: 4_000,
    };
    const view = await viewOutput(spilled, request);
    assert.deepEqual(await viewOutput(memory, request), view);
    checkView(view, 4_000, totalsOf({ stdout }));
    assert.deepEqual(view.sections.map((s) => s.why), ["head", "error", "tail"]);
  });
});

Deno.test("output_view: two streams share the budget and a small stderr is kept whole", async () => {
  const stdout = numbered(20_000);
  const stderr = "warning: something\nerror: it broke\n";
  await using spool = spoolOf({ stdout, stderr });
  const view = await viewOutput(spool, {
    streams: ["stdout", "stderr"],
    mode: { kind: "summary" },
    budgetBytes: 10_000,
  });
  checkView(view, 10_000, totalsOf({ stdout, stderr }));
  const err = view.sections.filter((s) => s.stream === "stderr");
  assert.deepEqual(err.map((s) => [s.why, s.text]), [[
    "all",
    "warning: something\nerror: it broke",
  ]]);
  const out = view.sections.filter((s) => s.stream === "stdout");
  assert.deepEqual(out.map((s) => s.why), ["head", "tail"]);
  assert.ok(charged(view) > 9_900, "stdout got what stderr did not need");
});

Deno.test("output_view: head and tail show the first and last lines; the budget cuts from the far end", async () => {
  const stdout = numbered(1_000);
  const stderr = "e1\ne2\ne3";
  await using spool = spoolOf({ stdout, stderr });
  const totals = totalsOf({ stdout, stderr });
  const head = await viewOutput(spool, {
    streams: ["stdout", "stderr"],
    mode: { kind: "head", lines: 2 },
    budgetBytes: 10_000,
  });
  checkView(head, 10_000, totals);
  assert.deepEqual(head.sections.map((s) => [s.stream, s.why, s.first_line, s.last_line, s.text]), [
    ["stdout", "head", 1, 2, linesOf(stdout, 1, 2)],
    ["stderr", "head", 1, 2, "e1\ne2"],
  ]);
  assert.equal(head.truncated, false);

  const tail = await viewOutput(spool, {
    streams: ["stdout", "stderr"],
    mode: { kind: "tail", lines: 2 },
    budgetBytes: 10_000,
  });
  checkView(tail, 10_000, totals);
  assert.deepEqual(tail.sections.map((s) => [s.stream, s.first_line, s.last_line, s.text]), [
    ["stdout", 999, 1_000, linesOf(stdout, 999, 1_000)],
    ["stderr", 2, 3, "e2\ne3"],
  ]);

  // 100 lines asked, room for a few: tail keeps the last ones, head the first ones.
  for (const kind of ["head", "tail"] as const) {
    const view = await viewOutput(spool, {
      streams: ["stdout"],
      mode: { kind, lines: 100 },
      budgetBytes: O + 500,
    });
    checkView(view, O + 500, { stdout: totals.stdout });
    assert.equal(view.truncated, true);
    const [s] = view.sections;
    assert.equal(s!.last_line - s!.first_line + 1, 9, "500 bytes hold 9 lines of 50 + joins");
    if (kind === "head") assert.equal(s!.first_line, 1);
    else assert.equal(s!.last_line, 1_000);
  }
});

Deno.test("output_view: grep merges context windows, caps shown matches and counts them all", async () => {
  const marks: Record<number, string> = {};
  for (const n of [10, 12, 20, 50, 51, 90]) marks[n] = `hit ${n}`;
  const stdout = numbered(100, marks);
  await using spool = spoolOf({ stdout });
  const request = (maxMatches: number, budgetBytes = 10_000) => ({
    streams: ["stdout"] as SpoolStream[],
    mode: { kind: "grep" as const, pattern: /HIT/gi, context: 1, maxMatches },
    budgetBytes,
  });
  const all = await viewOutput(spool, request(100));
  checkView(all, 10_000, totalsOf({ stdout }));
  assert.deepEqual(all.sections.map((s) => [s.why, s.first_line, s.last_line]), [
    ["match", 9, 13],
    ["match", 19, 21],
    ["match", 49, 52],
    ["match", 89, 91],
  ]);
  assert.equal(all.sections[0]!.text, linesOf(stdout, 9, 13));
  assert.equal(all.matches, 6);
  assert.equal(all.truncated, false);

  // A global regex must not skip lines through lastIndex; the cap stops at 4 shown matches
  // (51 is not shown, not even as context of 50).
  const capped = await viewOutput(spool, request(4));
  checkView(capped, 10_000, totalsOf({ stdout }));
  const cappedLines = capped.sections.map((s) => `${s.first_line}-${s.last_line}`);
  assert.deepEqual(cappedLines, ["9-13", "19-21", "49-50"]);
  assert.equal(capped.matches, 6);
  assert.equal(capped.truncated, true);

  // A budget for two windows shows them, then the next from its match on, as far as it fits.
  // (Its before-context counted while collecting: 51 was past the budget then.)
  const small = await viewOutput(spool, request(100, 3 * O + 300));
  checkView(small, 3 * O + 300, totalsOf({ stdout }));
  const smallLines = small.sections.map((s) => `${s.first_line}-${s.last_line}`);
  assert.deepEqual(smallLines, ["9-13", "19-21", "50-50"]);
  assert.equal(small.truncated, true);
  assert.equal(small.matches, 6);
});

Deno.test("output_view: range pages through a stream and moves past a split character", async () => {
  const stdout = "ab€cd\nef😀gh\nij\n".repeat(50);
  await withDir(async (dir) => {
    await using spool = spoolOf({ stdout }, dir);
    const bytes = enc.encode(stdout);
    // Offset 3 is inside "€" (bytes 2..4): the view starts at 5, on line 1.
    const first = await viewOutput(spool, {
      streams: ["stdout"],
      mode: { kind: "range", offset: 3 },
      budgetBytes: O + 8,
    });
    assert.deepEqual(first.sections, [{
      stream: "stdout",
      why: "range",
      first_line: 1,
      last_line: 2,
      offset: 5,
      end_offset: 10, // "cd\nef" and no part of 😀 (bytes 10..13)
      text: "cd\nef",
    }]);
    assert.equal(first.next_offset, 10);
    assert.equal(first.truncated, true);
    assert.equal(first.omitted_bytes, bytes.length - 5);
    assert.equal(first.omitted_lines, 150 - 2);

    // Following next_offset reads every byte once, each page within the budget.
    let text = "";
    let offset: number | null = 0;
    let pages = 0;
    while (offset !== null) {
      const page: OutputView = await viewOutput(spool, {
        streams: ["stdout"],
        mode: { kind: "range", offset },
        budgetBytes: O + 37,
      });
      assert.ok(textBytes(page) <= 37 && charged(page) <= O + 37);
      const s = page.sections[0]!;
      assert.equal(s.offset, offset);
      assert.equal(s.first_line, stdout.slice(0, text.length).split("\n").length);
      text += s.text;
      offset = page.next_offset!;
      pages++;
    }
    assert.equal(text, stdout);
    assert.ok(pages > 20, `${pages} pages`);

    const end = await viewOutput(spool, {
      streams: ["stdout"],
      mode: { kind: "range", offset: bytes.length + 10 },
      budgetBytes: 100,
    });
    assert.deepEqual(end, {
      sections: [],
      omitted_bytes: bytes.length,
      omitted_lines: 150,
      truncated: false,
      totals: { stdout: { bytes: bytes.length, lines: 150 } },
      next_offset: null,
    });
    await assert.rejects(
      () =>
        viewOutput(spool, {
          streams: ["stdout", "stderr"],
          mode: { kind: "range", offset: 0 },
          budgetBytes: 100,
        }),
      new RangeError("Range mode reads one stream, got 2"),
    );
  });
});

Deno.test("output_view: a 5 MB single line is shown cut with its marker", async () => {
  await withDir(async (dir) => {
    const stdout = "x".repeat(5_000_000);
    await using spool = spoolOf({ stdout }, dir);
    const totals = totalsOf({ stdout });
    const view = await viewOutput(spool, {
      streams: ["stdout"],
      mode: { kind: "summary" },
      budgetBytes: 30_000,
    });
    checkView(view, 30_000, totals, { cutLines: true });
    assert.equal(view.sections.length, 1);
    const [s] = view.sections;
    assert.equal(s!.why, "all");
    assert.equal(s!.text, "x".repeat(2000) + " … [+4998000 bytes]");
    assert.equal(s!.end_offset, 2000);
    assert.equal(view.omitted_bytes, 4_998_000);
    assert.equal(view.omitted_lines, 0);
    assert.equal(view.truncated, true);

    // A budget smaller than maxLineChars cuts the line shorter still, marker included.
    for (const kind of ["summary", "tail"] as const) {
      const small = await viewOutput(spool, {
        streams: ["stdout"],
        mode: kind === "tail" ? { kind, lines: 5 } : { kind },
        budgetBytes: O + 300,
      });
      checkView(small, O + 300, totals, { cutLines: true });
      assert.equal(small.sections.length, 1);
      const text = small.sections[0]!.text;
      const kept = text.indexOf(" … ");
      assert.ok(kept > 250, text);
      assert.equal(text, "x".repeat(kept) + ` … [+${5_000_000 - kept} bytes]`);
      assert.equal(small.omitted_bytes, 5_000_000 - kept);
    }
  });
});

Deno.test("output_view: thousands of error lines give way to the head and the tail, and every section is charged", async () => {
  // 3,000 error lines, each in its own window: once they made 249 sections whose headers
  // overflowed the budget and lost the tail.
  let stdout = "";
  for (let i = 0; i < 3_000; i++) stdout += "x\nx\nx\nx\nx\nerror\n";
  stdout += "FINAL: 3 tests failed\n";
  const lines = 3_000 * 6 + 1;
  await withDir(async (dir) => {
    await using spool = spoolOf({ stdout }, dir);
    const totals = totalsOf({ stdout });
    for (const budget of [32_000, 8_000, 1_000]) {
      const view = await viewOutput(spool, {
        streams: ["stdout"],
        mode: { kind: "summary" },
        budgetBytes: budget,
      });
      checkView(view, budget, totals);
      // Lines are costed with the "\n" after them, one more than a section's text holds.
      const used = charged(view) + view.sections.length;
      assert.ok(used > budget - 10, `${used} of ${budget} used`);
      const head = view.sections[0]!;
      const tail = view.sections.at(-1)!;
      assert.equal(head.why, "head");
      assert.equal(head.first_line, 1);
      assert.equal(tail.why, "tail");
      assert.equal(tail.last_line, lines);
      assert.ok(tail.text.endsWith("error\nFINAL: 3 tests failed"), tail.text.slice(-50));
      // Head and tail keep their shares of what the two sections leave (less a line that did not
      // fit); errors get the rest.
      const room = budget - 2 * O;
      assert.ok(enc.encode(head.text).length >= room * 0.25 - 8, `head of ${budget}`);
      assert.ok(enc.encode(tail.text).length >= room * 0.45 - 8, `tail of ${budget}`);
      const errors = view.sections.filter((s) => s.why === "error");
      assert.ok(errors.length > 0, "error windows shown");
      const errorCost = errors.reduce((n, s) => n + enc.encode(s.text).length + O, 0);
      assert.ok(errorCost <= room * 0.3 + 1, `error windows cost ${errorCost}`);
    }
  });

  // Grep and head/tail over two streams are charged the same way.
  await using two = spoolOf({ stdout, stderr: stdout });
  const both = ["stdout", "stderr"] as SpoolStream[];
  const totals = totalsOf({ stdout, stderr: stdout });
  const grep = await viewOutput(two, {
    streams: both,
    mode: { kind: "grep", pattern: /error/, context: 0, maxMatches: 10_000 },
    budgetBytes: 5_000,
  });
  checkView(grep, 5_000, totals);
  assert.equal(grep.matches, 6_000);
  assert.ok(grep.sections.length > 10 && charged(grep) > 4_700, `${charged(grep)} bytes`);
  for (const kind of ["head", "tail"] as const) {
    const view = await viewOutput(two, {
      streams: both,
      mode: { kind, lines: 50 },
      budgetBytes: 250,
    });
    checkView(view, 250, totals);
    assert.equal(view.sections.length, 2);
  }
});

Deno.test("output_view: bytes the spool could not keep count as omitted", async () => {
  await using spool = new OutputSpool("lost", { dir: null, memoryBytes: 19 });
  spool.append("stdout", "one\ntwo\nthree\n"); // 14 bytes
  spool.append("stdout", "four\nfive\n"); // 10 more: only "four\n" is kept
  assert.equal(spool.lost?.offset, 19);
  const view = await viewOutput(spool, {
    streams: ["stdout"],
    mode: { kind: "summary" },
    budgetBytes: 1000,
  });
  assert.deepEqual(view.sections.map((s) => s.text), ["one\ntwo\nthree\nfour"]);
  assert.equal(view.omitted_bytes, 5);
  // Lines are counted in what was kept; the loss itself is reported by the spool (jobs.output's
  // `incomplete`).
  assert.equal(view.omitted_lines, 0);
  assert.deepEqual(view.totals, { stdout: { bytes: 24, lines: 4 } });
});

Deno.test("output_view: multi-byte text is budgeted in UTF-8 bytes", async () => {
  const stdout = "€😀 wide line\n".repeat(2_000);
  await using spool = spoolOf({ stdout });
  for (const mode of [{ kind: "summary" }, { kind: "tail", lines: 500 }] as const) {
    const view = await viewOutput(spool, { streams: ["stdout"], mode, budgetBytes: 1_001 });
    checkView(view, 1_001, totalsOf({ stdout }));
    assert.ok(charged(view) > 900);
  }
});

Deno.test("output_view: ERROR_LINE finds errors but not counts of zero", () => {
  for (
    const line of [
      "error: cannot find module",
      "src/a.ts(3,1): error TS2322",
      "Error: ENOENT",
      "npm ERR! code 1",
      "FAIL src/x.test.ts",
      "2 tests failed",
      "Traceback (most recent call last):",
      "thread 'main' panicked at",
      "Segmentation fault (core dumped)",
      "AssertionError [ERR_ASSERTION]",
      "Permission denied",
      "bash: foo: command not found",
      "  ✗ renders the page",
      "Errors: 3",
    ]
  ) assert.ok(ERROR_LINE.test(line), line);
  for (
    const line of [
      "Compiled with 0 errors",
      "no errors found",
      "Tests: 12 passed, 0 failed",
      "errors: 0",
      "terrorist",
      "error_count=3",
      "info: all good",
    ]
  ) assert.ok(!ERROR_LINE.test(line), line);
});

Deno.test("output_view: utf8Length agrees with TextEncoder", () => {
  for (const s of ["", "abc", "é", "€", "😀", "a\ud800b", "\udc00", "x😀y€zé"]) {
    assert.equal(utf8Length(s), enc.encode(s).length, JSON.stringify(s));
  }
});
