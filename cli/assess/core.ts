/**
 * `test assess core`: what every job must get, checked over the wire against
 * a live server: outcomes and exit codes, separate streams, output streamed
 * while the job runs, timeouts and cancels that reach the whole group, large
 * output intact, and a job followed from another connection with replay.
 *
 * Each job gets a client-chosen id (`assess-<what>-<random>`), so its frames
 * are easy to pick out of the transcripts.
 *
 * @module
 */
import type { Frame, RawClient, TranscriptEntry } from "./raw_client.ts";
import { jobId, ofJob } from "./job_frames.ts";
import type { Scenario, ScenarioContext } from "./scenario.ts";

/** Entries of `id` that are its request, its response, and notifications named in `methods`. */
function framesOf(id: string, methods: string[]): (entry: TranscriptEntry) => boolean {
  const mine = ofJob(id);
  return (entry) =>
    mine(entry) &&
    (!entry.frame.method?.startsWith("process.") || methods.includes(entry.frame.method));
}

/** Starts a job and waits for its terminal notification. */
async function runJob(
  client: RawClient,
  params: Record<string, unknown>,
  timeoutMs = 30_000,
): Promise<{ id: string; done: Frame }> {
  const result = await client.result("execute", params);
  return { id: result.job_id, done: await client.completion(result.job_id, timeoutMs) };
}

/**
 * Runs a job on the same server that reports whether process `pid` is gone, allowing it 5 s
 * to be reaped: a check that holds for a server on another machine as well as this one.
 */
async function processGone(
  ctx: ScenarioContext,
  client: RawClient,
  pid: number,
  what: string,
): Promise<void> {
  const id = jobId("probe");
  const command = `for i in $(seq 50); do kill -0 ${pid} 2>/dev/null || { echo gone; exit 0; }; ` +
    `sleep 0.1; done; echo alive`;
  await runJob(client, { command, job_id: id });
  ctx.equal(
    `${what}: the process the job started in the background (pid ${pid}) is gone`,
    client.output(id).trim(),
    "gone",
    ctx.frames(client, framesOf(id, ["process.output", "process.completed"])),
  );
}

const exitCodes: Scenario = {
  area: "core",
  name: "exit-codes",
  title: "Exit codes and signals map to completed, failed and killed",
  async run(ctx) {
    const client = await ctx.connect();
    const cases = [
      { command: "exit 0", status: "completed", exit_code: 0, signal: null },
      { command: "exit 3", status: "failed", exit_code: 3, signal: null },
      { command: "kill -KILL $$", status: "killed", exit_code: null, signal: "SIGKILL" },
    ];
    for (const expected of cases) {
      const { id, done } = await runJob(client, {
        command: expected.command,
        job_id: jobId("exit"),
      });
      ctx.equal(
        `\`${expected.command}\` ends as ${expected.status}`,
        { status: done.status, exit_code: done.exit_code, signal: done.signal },
        { status: expected.status, exit_code: expected.exit_code, signal: expected.signal },
        ctx.frames(client, framesOf(id, ["process.completed"])),
      );
    }
  },
};

const streams: Scenario = {
  area: "core",
  name: "stderr",
  title: "stdout and stderr arrive as separate streams, counted to the byte",
  async run(ctx) {
    const client = await ctx.connect();
    const { id, done } = await runJob(client, {
      command: "printf 'to stdout\\n'; printf 'to stderr\\n' >&2; printf 'more stdout\\n'",
      job_id: jobId("streams"),
    });
    const evidence = ctx.frames(client, framesOf(id, ["process.output", "process.completed"]));
    ctx.equal(
      "stdout holds only what went to stdout",
      client.output(id),
      "to stdout\nmore stdout\n",
      evidence,
    );
    ctx.equal(
      "stderr holds only what went to stderr",
      client.output(id, "stderr"),
      "to stderr\n",
      evidence,
    );
    ctx.equal(
      "the byte counts in process.completed match",
      done.bytes,
      { stdout: 22, stderr: 10 },
      evidence,
    );
  },
};

const streaming: Scenario = {
  area: "core",
  name: "streaming",
  title: "Output is sent while the job runs, in order, with contiguous offsets",
  async run(ctx) {
    const client = await ctx.connect();
    // The job cannot finish before the client has seen its first line and answered it, so the
    // line must have been sent while the job was running.
    const id = jobId("streaming");
    await client.result("execute", {
      command: 'echo ready; read reply; for i in 1 2 3 4 5; do echo "line $i $reply"; done',
      keep_stdin_open: true,
      job_id: id,
    });
    await client.waitFor(
      (f) =>
        f.method === "process.output" && f.params.job_id === id && f.params.data.includes("ready"),
      "the job's first line while it waits for input (output is not being streamed)",
    );
    await client.result("jobs.input", { job_id: id, data: "pong\n", eof: true });
    const done = await client.completion(id);
    const evidence = ctx.frames(client, framesOf(id, ["process.output", "process.completed"]));
    // From the transcript: the line came in, then our answer went out, then the job ended.
    const at = (match: (entry: TranscriptEntry) => boolean) => client.transcript.findIndex(match);
    const readyAt = at(({ dir, frame }) =>
      dir === "in" && frame.method === "process.output" && frame.params.job_id === id &&
      frame.params.data.includes("ready")
    );
    const answerAt = at(({ dir, frame }) => dir === "out" && frame.method === "jobs.input");
    const endAt = at(({ frame }) =>
      frame.method === "process.completed" && frame.params.job_id === id
    );
    ctx.check(
      "the first line arrived before the job ended (it waited for our answer to it)",
      readyAt !== -1 && readyAt < answerAt && answerAt < endAt,
      {
        expected: "ready received, then jobs.input sent, then process.completed received",
        actual:
          `transcript positions: ready ${readyAt}, jobs.input ${answerAt}, completed ${endAt}`,
        evidence: ctx.frames(
          client,
          (entry) =>
            ofJob(id)(entry) && entry.frame.method !== undefined &&
            entry.frame.method !== "execute",
        ),
      },
    );
    const expected = "ready\n" + [1, 2, 3, 4, 5].map((i) => `line ${i} pong\n`).join("");
    ctx.equal("stdout is every line, in order", client.output(id), expected, evidence);
    const events = client.events(id);
    const seqs = events.map((e) => e.params.seq);
    ctx.check("sequence numbers rise by one with no gap", seqs.every((s, i) => s === i + 1), {
      expected: "1, 2, 3, ...",
      actual: seqs.join(", "),
      evidence,
    });
    let offset = 0;
    const contiguous = events.filter((e) => e.method === "process.output").every((e) => {
      const ok = e.params.offset === offset;
      offset += new TextEncoder().encode(e.params.data).length;
      return ok;
    });
    ctx.check("each chunk's offset is where the last one ended", contiguous, {
      expected: "offsets 0, then the running byte count",
      actual: contiguous ? "contiguous" : "a gap or overlap",
      evidence,
    });
    ctx.equal(
      "the job completed with exit code 0",
      [done.status, done.exit_code],
      ["completed", 0],
      evidence,
    );
  },
};

const timeout: Scenario = {
  area: "core",
  name: "timeout",
  title: "A timeout ends the job as timed_out and stops what it started in the background",
  async run(ctx) {
    const client = await ctx.connect();
    const id = jobId("timeout");
    const { done } = await runJob(client, {
      command: "sleep 60 & echo $!; wait",
      timeout: 1,
      job_id: id,
    });
    const evidence = ctx.frames(client, framesOf(id, ["process.output", "process.completed"]));
    ctx.equal("the job ends as timed_out", done.status, "timed_out", evidence);
    const ranFor = done.duration_ms >= 900 && done.duration_ms < 30_000;
    ctx.check("it ran for about the timeout, not the 60 s of its command", ranFor, {
      expected: "duration_ms about 1000 (at least 900) and under 30000",
      actual: done.duration_ms,
      evidence,
    });
    const pid = Number(client.output(id).trim());
    if (
      !ctx.check("the job printed its background pid", Number.isInteger(pid) && pid > 0, {
        expected: "a pid on stdout",
        actual: client.output(id),
        evidence,
      })
    ) return;
    await processGone(ctx, client, pid, "after the timeout");
  },
};

const cancel: Scenario = {
  area: "core",
  name: "cancel",
  title: "A cancel ends the job as canceled and stops what it started in the background",
  async run(ctx) {
    const client = await ctx.connect();
    const id = jobId("cancel");
    await client.result("execute", { command: "sleep 60 & echo $!; wait", job_id: id });
    const first = await client.waitFor(
      (f) => f.method === "process.output" && f.params.job_id === id,
      "the background pid on stdout",
    );
    await client.result("control", { type: "CANCEL", job_id: id });
    const done = await client.completion(id);
    const evidence = ctx.frames(client, ofJob(id));
    ctx.equal("the job ends as canceled", done.status, "canceled", evidence);
    const pid = Number(String(first.params.data).trim());
    if (
      !ctx.check("the job printed its background pid", Number.isInteger(pid) && pid > 0, {
        expected: "a pid on stdout",
        actual: first.params.data,
        evidence,
      })
    ) return;
    await processGone(ctx, client, pid, "after the cancel");
  },
};

const LARGE_LINES = 1_000_000;

/** Where `a` and `b` first differ (the shorter one's length when one starts the other). */
function firstDifference(a: string, b: string): number {
  const end = Math.min(a.length, b.length);
  let i = 0;
  while (i < end && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

const largeOutput: Scenario = {
  area: "core",
  name: "large-output",
  title: `Large output (seq 1 ${LARGE_LINES}, 6.9 MB) arrives whole and in order`,
  async run(ctx) {
    const client = await ctx.connect();
    const id = jobId("large");
    const { done } = await runJob(client, { command: `seq 1 ${LARGE_LINES}`, job_id: id }, 120_000);
    const expected = Array.from({ length: LARGE_LINES }, (_, i) => `${i + 1}\n`).join("");
    const received = client.output(id);
    const outputs = client.events(id).filter((e) => e.method === "process.output");
    // Quote the first and last chunks and the end, not all of them.
    const evidence = ctx.frames(
      client,
      (entry) =>
        ofJob(id)(entry) &&
        (entry.frame.method !== "process.output" ||
          entry.frame === outputs[0] || entry.frame === outputs.at(-1)),
    );
    ctx.check("the output is exactly seq's, every byte in order", received === expected, {
      expected: `${expected.length} bytes, "1\\n2\\n..." to "${LARGE_LINES}\\n"`,
      actual: received === expected
        ? `${received.length} bytes, identical`
        : `${received.length} bytes; first difference at byte ${
          firstDifference(expected, received)
        }`,
      evidence,
    });
    ctx.equal(
      "process.completed counts the same bytes",
      done.bytes.stdout,
      expected.length,
      evidence,
    );
    ctx.equal("nothing was cut", done.truncated, false, evidence);
  },
};

const replay: Scenario = {
  area: "core",
  name: "reconnect-replay",
  title:
    "A detached job outlives its connection; another connection replays it and follows it live",
  async run(ctx) {
    const first = await ctx.connect();
    const id = jobId("replay");
    await first.result("execute", {
      command: "echo before; read go; echo after $go",
      keep_stdin_open: true,
      detach: true,
      job_id: id,
    });
    await first.waitFor(
      (f) => f.method === "process.output" && f.params.job_id === id,
      "the job's first line on the first connection",
    );
    await first.close();

    const second = await ctx.connect();
    const subscribed = await second.result("jobs.subscribe", { job_id: id });
    const firstEvidence = ctx.frames(second, ofJob(id));
    ctx.equal(
      "the job is still running after its connection closed",
      subscribed.status,
      "running",
      firstEvidence,
    );
    await second.waitFor(
      (f) =>
        f.method === "process.output" && f.params.job_id === id && f.params.data.includes("before"),
      "the replay of the first line on the second connection",
    );
    await second.result("jobs.input", { job_id: id, data: "now\n", eof: true });
    const done = await second.completion(id);
    const evidence = ctx.frames(second, ofJob(id));
    ctx.equal(
      "the second connection got the replay, then the live output",
      second.output(id),
      "before\nafter now\n",
      evidence,
    );
    const seqs = second.events(id).map((e) => e.params.seq);
    ctx.check(
      "no notification is missing or repeated between replay and live",
      seqs.every((s, i) => s === i + 1),
      {
        expected: "1, 2, 3, ... with no gap",
        actual: seqs.join(", "),
        evidence,
      },
    );
    ctx.equal("it completed", [done.status, done.exit_code], ["completed", 0], evidence);

    // A third connection asks only for what came after the first line.
    const after = second.events(id).find((e) =>
      e.method === "process.output" && e.params.data.includes("after")
    );
    const third = await ctx.connect();
    const late = await third.result("jobs.subscribe", {
      job_id: id,
      from_seq: after?.params.seq ?? 1,
    });
    await third.completion(id);
    const lateEvidence = ctx.frames(third, ofJob(id));
    ctx.equal(
      "from_seq replays from that notification on, after the job ended",
      third.output(id),
      "after now\n",
      lateEvidence,
    );
    ctx.equal(
      "the replay starts where it was asked to",
      late.replay_from_seq,
      after?.params.seq ?? null,
      lateEvidence,
    );
  },
};

const badRequests: Scenario = {
  area: "core",
  name: "bad-requests",
  title: "Bad requests get specific JSON-RPC errors and the server keeps serving",
  async run(ctx) {
    const client = await ctx.connect();
    const empty = await client.call("execute", { command: "   " });
    ctx.check(
      "an empty command is -32602 naming the field",
      empty.error?.code === -32602 && /command/.test(JSON.stringify(empty.error)),
      {
        expected: "error -32602 mentioning command",
        actual: empty.error ?? empty.result,
        evidence: ctx.frames(client, ({ frame }) => frame.id === empty.id),
      },
    );
    const unknown = await client.call("no.such.method", {});
    ctx.equal(
      "an unknown method is -32601",
      unknown.error?.code,
      -32601,
      ctx.frames(client, ({ frame }) => frame.id === unknown.id),
    );
    client.sendText("{not json");
    const parse = await client.waitFor((f) => f.error?.code === -32700, "the parse error");
    ctx.equal("text that is not JSON is -32700 with a null id", [parse.error.code, parse.id], [
      -32700,
      null,
    ], ctx.frames(client, ({ frame }) => frame === parse || frame === "{not json"));
    const ping = await client.call("ping");
    ctx.check("the connection still answers afterwards", ping.result !== undefined, {
      expected: "a ping result",
      actual: ping.result ?? ping.error,
      evidence: ctx.frames(client, ({ frame }) => frame.id === ping.id),
    });
  },
};

/** Every core scenario, in the order they run. */
export const CORE_SCENARIOS: readonly Scenario[] = [
  exitCodes,
  streams,
  streaming,
  timeout,
  cancel,
  largeOutput,
  replay,
  badRequests,
];
