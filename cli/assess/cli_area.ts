/**
 * `test assess cli`: the CLI's own commands, run as subprocesses the way
 * users and scripts run them, against the target server: exit codes, the
 * two streams, stdin, timeouts, JSON output, history, detached jobs, usage
 * errors, and a detached server's start, status and stop.
 *
 * @module
 */
import type { CliRun, Scenario, ScenarioContext } from "./scenario.ts";

/** A marker unique to this run, so a command is easy to find again in history and job lists. */
function marker(what: string): string {
  return `assess-${what}-${crypto.randomUUID().slice(0, 8)}`;
}

/** Checks the run's exit code, quoting the run. */
function exitCode(ctx: ScenarioContext, run: CliRun, expected: number, what: string): boolean {
  return ctx.equal(`${what} exits ${expected}`, run.code, expected, ctx.cliEvidence(run));
}

/** A stack trace in user-facing output is a crash, whatever the exit code says. */
function noStackTrace(ctx: ScenarioContext, run: CliRun, what: string): boolean {
  const trace = /^\s+at .+:\d+:\d+\)?$/m.exec(run.stderr + run.stdout);
  return ctx.check(`${what}: no stack trace`, trace === null, {
    expected: "a message, no `at file:line:col` lines",
    actual: trace ? trace[0].trim() : "none",
    evidence: ctx.cliEvidence(run),
  });
}

const version: Scenario = {
  area: "cli",
  name: "version",
  title: "`version` names this cc-executor and its Deno",
  async run(ctx) {
    const run = await ctx.cli(["version"]);
    exitCode(ctx, run, 0, "`version`");
    ctx.check(
      "it prints `cc-executor <version>` and `deno <version>`",
      /^cc-executor \d+\.\d+\.\d+/m.test(run.stdout) && /^deno \d+\.\d+\.\d+/m.test(run.stdout),
      {
        expected: "cc-executor X.Y.Z / deno X.Y.Z",
        actual: run.stdout,
        evidence: ctx.cliEvidence(run),
      },
    );
  },
};

const runStreams: Scenario = {
  area: "cli",
  name: "run-streams",
  title: "`run` passes the command's stdout, stderr and exit code through",
  async run(ctx) {
    const run = await ctx.cli(["run", "printf 'out line\\n'; printf 'err line\\n' >&2; exit 3"]);
    exitCode(ctx, run, 3, "a command that exits 3");
    ctx.equal("stdout is the command's stdout", run.stdout, "out line\n", ctx.cliEvidence(run));
    ctx.check("stderr carries the command's stderr", run.stderr.includes("err line\n"), {
      expected: "contains `err line`",
      actual: run.stderr,
      evidence: ctx.cliEvidence(run, ["stderr"]),
    });
    ctx.check("stdout holds nothing of stderr's", !run.stdout.includes("err line"), {
      expected: "no `err line` on stdout",
      actual: run.stdout,
      evidence: ctx.cliEvidence(run, ["stdout"]),
    });
  },
};

const runStdin: Scenario = {
  area: "cli",
  name: "run-stdin",
  title: "`run --stdin-file -` feeds this process's stdin to the command",
  async run(ctx) {
    const run = await ctx.cli(["run", "--stdin-file", "-", "tr a-z A-Z"], {
      stdin: "hello from stdin\nsecond line\n",
    });
    exitCode(ctx, run, 0, "`tr a-z A-Z` fed two lines");
    ctx.equal(
      "the command read all of stdin",
      run.stdout,
      "HELLO FROM STDIN\nSECOND LINE\n",
      ctx.cliEvidence(run),
    );
  },
};

const runTimeout: Scenario = {
  area: "cli",
  name: "run-timeout",
  title: "`run --timeout` stops the command and exits 124, saying why",
  async run(ctx) {
    const started = performance.now();
    const run = await ctx.cli(["run", "--timeout", "1", "sleep 60"]);
    const seconds = (performance.now() - started) / 1000;
    exitCode(ctx, run, 124, "`sleep 60` with --timeout 1");
    ctx.check("stderr says it timed out", /timed out/.test(run.stderr), {
      expected: "`timed out` on stderr",
      actual: run.stderr,
      evidence: ctx.cliEvidence(run, ["stderr"]),
    });
    ctx.check("it returned long before the command would have ended", seconds < 45, {
      expected: "well under 60 s",
      actual: `${seconds.toFixed(1)} s`,
      evidence: ctx.cliEvidence(run, []),
    });
  },
};

const runJson: Scenario = {
  area: "cli",
  name: "run-json",
  title: "`run --json` prints one JSON object with the outcome and the output",
  async run(ctx) {
    const run = await ctx.cli(["run", "--json", "echo hi; echo there >&2; exit 5"]);
    exitCode(ctx, run, 5, "`run --json` of a command that exits 5");
    let parsed: Record<string, unknown> | null = null;
    try {
      parsed = JSON.parse(run.stdout);
    } catch { /* judged below */ }
    const evidence = ctx.cliEvidence(run, ["stdout"]);
    if (
      !ctx.check("stdout is one JSON object", parsed !== null, {
        expected: "JSON",
        actual: run.stdout,
        evidence,
      })
    ) return;
    ctx.equal(
      "it holds status, exit code and both streams",
      {
        status: parsed!.status,
        exit_code: parsed!.exit_code,
        stdout: parsed!.stdout,
        stderr: parsed!.stderr,
      },
      { status: "failed", exit_code: 5, stdout: "hi\n", stderr: "there\n" },
      evidence,
    );
  },
};

const history: Scenario = {
  area: "cli",
  name: "history",
  title: "A job run with `run` is in `history list` and `history show`",
  async run(ctx) {
    const mark = marker("history");
    const run = await ctx.cli(["run", "--json", `echo ${mark}`]);
    if (!exitCode(ctx, run, 0, "the job to look for")) return;
    const jobId = JSON.parse(run.stdout).job_id as string;
    // Searched for: on a busy server more than a page of jobs can end between the two commands.
    const list = await ctx.cli(["history", "list", "--json", "--search", mark]);
    exitCode(ctx, list, 0, "`history list --json --search <marker>`");
    const listed = list.code === 0
      ? (JSON.parse(list.stdout).jobs as { job_id: string; command: string }[])
        .find((j) => j.job_id === jobId)
      : undefined;
    ctx.equal(
      "the job is listed with its command",
      listed?.command ?? null,
      `echo ${mark}`,
      ctx.cliEvidence(list, ["stdout"]),
    );
    const show = await ctx.cli(["history", "show", "--json", jobId]);
    exitCode(ctx, show, 0, "`history show --json <id>`");
    const record = show.code === 0 ? JSON.parse(show.stdout) : null;
    ctx.equal(
      "its record has the outcome and the output",
      record && { status: record.status, exit_code: record.exit_code, head: record.output?.head },
      { status: "completed", exit_code: 0, head: `${mark}\n` },
      ctx.cliEvidence(show, ["stdout"]),
    );
  },
};

const detachedJob: Scenario = {
  area: "cli",
  name: "detached-job",
  title: "`run --detach` returns at once; `jobs list` shows the job and `jobs cancel` ends it",
  async run(ctx) {
    const mark = marker("detached");
    const start = await ctx.cli(["run", "--detach", `sleep 60; echo ${mark}`]);
    if (!exitCode(ctx, start, 0, "`run --detach`")) return;
    const jobId = start.stdout.trim();
    ctx.check("it prints the job id", /^[\w.:-]+$/.test(jobId), {
      expected: "one job id",
      actual: start.stdout,
      evidence: ctx.cliEvidence(start),
    });
    const list = await ctx.cli(["jobs", "list"]);
    const row = list.stdout.split("\n").find((line) => line.startsWith(jobId));
    ctx.check("`jobs list` shows it running", row !== undefined && /\brunning\b/.test(row), {
      expected: `a row for ${jobId}, running`,
      actual: row ?? "no such row",
      evidence: ctx.cliEvidence(list, ["stdout"]),
    });
    const cancel = await ctx.cli(["jobs", "cancel", jobId]);
    exitCode(ctx, cancel, 0, "`jobs cancel <id>`");
    const after = await ctx.cli(["jobs", "list"]);
    const ended = after.stdout.split("\n").find((line) => line.startsWith(jobId));
    ctx.check("afterwards it is canceled", ended !== undefined && /\bcanceled\b/.test(ended), {
      expected: `a row for ${jobId}, canceled`,
      actual: ended ?? "no such row",
      evidence: ctx.cliEvidence(after, ["stdout"]),
    });
  },
};

const usageErrors: Scenario = {
  area: "cli",
  name: "usage-errors",
  title: "Bad usage gets a clear message and exit code 2, never a stack trace",
  async run(ctx) {
    const cases: { args: string[]; says: RegExp }[] = [
      { args: ["run"], says: /command is empty/ },
      { args: ["run", "--timeout", "soon", "true"], says: /timeout/ },
      { args: ["no-such-command"], says: /unknown command/ },
    ];
    for (const { args, says } of cases) {
      const run = await ctx.cli(args);
      const what = `\`cc-executor ${args.join(" ")}\``;
      exitCode(ctx, run, 2, what);
      ctx.check(`${what} says what is wrong`, says.test(run.stderr), {
        expected: `stderr matching ${says}`,
        actual: run.stderr,
        evidence: ctx.cliEvidence(run, ["stderr"]),
      });
      noStackTrace(ctx, run, what);
    }
  },
};

const serverLifecycle: Scenario = {
  area: "cli",
  name: "server-lifecycle",
  title: "`server start --detach`, `server status` and `server stop` manage a server of their own",
  async run(ctx) {
    // This scenario's own server, on a free port, found through a state folder of its own.
    const env = {
      CC_EXECUTOR_URL: "",
      CC_EXECUTOR_PORT: "0",
      CC_EXECUTOR_HOST: "127.0.0.1",
      CC_EXECUTOR_DB: ":memory:",
      REDIS_URL: "",
      CC_EXECUTOR_STATE_DIR: `${ctx.dir}/state`,
    };
    const start = await ctx.cli(["server", "start", "--detach"], { env });
    if (!exitCode(ctx, start, 0, "`server start --detach`")) return;
    try {
      const status = await ctx.cli(["server", "status", "--json"], { env });
      exitCode(ctx, status, 0, "`server status` of the running server");
      const info = status.code === 0 ? JSON.parse(status.stdout) : null;
      ctx.check("status reports it up with its pid", typeof info?.pid === "number", {
        expected: "a JSON status with the server's pid",
        actual: status.stdout,
        evidence: ctx.cliEvidence(status, ["stdout"]),
      });
      const mark = marker("lifecycle");
      const run = await ctx.cli(["run", `echo ${mark}`], { env });
      exitCode(ctx, run, 0, "`run` against it, found through the state folder");
      ctx.equal("the job ran there", run.stdout, `${mark}\n`, ctx.cliEvidence(run));
    } finally {
      const stop = await ctx.cli(["server", "stop"], { env });
      exitCode(ctx, stop, 0, "`server stop`");
    }
    const down = await ctx.cli(["server", "status"], { env });
    exitCode(ctx, down, 1, "`server status` once it is stopped");
    ctx.check("status says it is down", /\bdown\b/.test(down.stdout + down.stderr), {
      expected: "`down`",
      actual: down.stdout + down.stderr,
      evidence: ctx.cliEvidence(down),
    });
  },
};

/** Every CLI scenario, in the order they run. */
export const CLI_SCENARIOS: readonly Scenario[] = [
  version,
  runStreams,
  runStdin,
  runTimeout,
  runJson,
  history,
  detachedJob,
  usageErrors,
  serverLifecycle,
];
