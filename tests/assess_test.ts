/**
 * `cc-executor test assess`: every scenario the command runs is run here too,
 * against a real server, and must pass; then the command itself, as a
 * subprocess, must report a deliberately broken configuration as a failure,
 * with the evidence.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cliInvocation, SCENARIOS } from "../cli/assess/assess.ts";
import { writeHooksFolder } from "../cli/assess/hooks_area.ts";
import { runScenario, type ScenarioResult, type ScenarioTarget } from "../cli/assess/scenario.ts";
import { shellQuoteArgv } from "../server/claude/invocation.ts";
import { defaultConfig, type ServerConfig } from "../server/config.ts";
import { runCli, tempStateDir } from "./cli_util.ts";
import { startTestServer } from "./test_util.ts";

/** What CLI subprocesses of a scenario get: nothing of the developer's own setup. */
function isolatedEnv(): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    CC_EXECUTOR_ENV_FILE: "/nonexistent/.env",
    CC_EXECUTOR_STATE_DIR: tempStateDir(),
    CC_EXECUTOR_DB: ":memory:",
    CC_EXECUTOR_KILL_GRACE_MS: "300",
    NO_COLOR: "1",
  };
}

/** Fails with every failed check and its evidence, so a red test says what the report would. */
function assertPassed(result: ScenarioResult): void {
  const failed = result.checks.filter((c) => !c.ok).map((c) =>
    `- ${c.what}\n  expected: ${c.expected}\n  actual: ${c.actual}\n  ${c.evidence.file}:\n${c.evidence.quote}`
  );
  assert.ok(
    result.ok && result.skipped === null,
    `${result.area}/${result.name} did not pass` +
      (result.error ? `: ${result.error}` : "") +
      (result.skipped ? `: skipped: ${result.skipped}` : "") +
      (failed.length ? `\n${failed.join("\n")}` : ""),
  );
  for (const check of result.checks) {
    assert.ok(check.evidence.quote.trim() !== "", `${check.what}: its evidence quotes nothing`);
  }
}

async function runAgainst(
  area: keyof typeof SCENARIOS,
  name: string,
  overrides: Partial<ServerConfig>,
  target: Partial<ScenarioTarget> = {},
): Promise<void> {
  await using server = await startTestServer(overrides);
  const result = await runOne(area, name, {
    url: server.url,
    cli: cliInvocation(),
    env: isolatedEnv(),
    ...target,
  });
  assertPassed(result);
}

/** Runs one scenario against `target`; every evidence file it names must exist. */
async function runOne(
  area: keyof typeof SCENARIOS,
  name: string,
  target: ScenarioTarget,
): Promise<ScenarioResult> {
  const scenario = SCENARIOS[area].find((s) => s.name === name)!;
  const runDir = Deno.makeTempDirSync({ prefix: "cc-assess-" });
  const result = await runScenario(scenario, target, runDir);
  for (const check of result.checks) {
    assert.ok(
      Deno.statSync(join(runDir, check.evidence.file)).isFile,
      `${check.what}: its evidence file ${check.evidence.file} exists`,
    );
  }
  // Kept when it failed, to be read; large-output alone leaves 7 MB of frames.
  if (result.ok) Deno.removeSync(runDir, { recursive: true });
  return result;
}

for (const scenario of SCENARIOS.core) {
  Deno.test(`assess core/${scenario.name}: ${scenario.title}`, async () => {
    await runAgainst("core", scenario.name, {});
  });
}

for (const scenario of SCENARIOS.cli) {
  Deno.test(`assess cli/${scenario.name}: ${scenario.title}`, async () => {
    await runAgainst("cli", scenario.name, {});
  });
}

for (const scenario of SCENARIOS.hooks) {
  Deno.test(`assess hooks/${scenario.name}: ${scenario.title}`, async () => {
    const dir = await writeHooksFolder(Deno.makeTempDirSync({ prefix: "cc-assess-hooks-" }));
    await runAgainst("hooks", scenario.name, { hooks: { ...defaultConfig().hooks, dir } });
  });
}

/** The newest run folder under `out`. */
function onlyRun(out: string): string {
  const runs = [...Deno.readDirSync(out)].map((e) => e.name);
  assert.equal(runs.length, 1, `one run in ${out}: ${runs.join(", ")}`);
  return join(out, runs[0]!);
}

Deno.test("test assess hooks: a hook that blocks everything fails the run, and the report shows the blocked request", async () => {
  const yours = Deno.makeTempDirSync({ prefix: "cc-your-hooks-" });
  Deno.writeTextFileSync(
    join(yours, "block_all.ts"),
    `export const HOOKS = { pre_execution: [{ name: "block-everything", run: () => ` +
      `({ proceed: false, message: "nothing runs here" }) }] };\n`,
  );
  const out = Deno.makeTempDirSync({ prefix: "cc-assess-out-" });
  const { code, stdout, stderr } = await runCli([
    "test",
    "assess",
    "hooks",
    "--hooks-dir",
    yours,
    "--out",
    out,
  ], { env: { CC_EXECUTOR_STATE_DIR: tempStateDir() } });
  assert.equal(code, 1, `exit 1 on a failed scenario\n${stdout}\n${stderr}`);
  assert.match(stdout, /FAIL hooks\/ordinary-command: it is not blocked/);
  assert.match(stdout, /Blocked by hook block-everything: nothing runs here/);

  const run = onlyRun(out);
  const report = Deno.readTextFileSync(join(run, "report.md"));
  assert.match(report, /^# cc-executor self-assessment: FAIL/);
  const section = report.slice(report.indexOf("## hooks/ordinary-command: FAIL"));
  assert.ok(section.length > 0 && report.includes("## hooks/ordinary-command: FAIL"));
  // The verdict quotes the frames it was judged on: the request and the refusal.
  assert.match(section, /"method":"execute","params":\{"command":"echo plain output"/);
  assert.match(section, /"code":-32010,"message":"Blocked by hook block-everything/);
  // ... and the whole transcript is kept next to it.
  const transcript = Deno.readTextFileSync(
    join(run, "hooks", "ordinary-command", "connection-1.jsonl"),
  );
  assert.match(transcript, /"method":"hook\.blocked".*"hook":"block-everything"/);
  // The user's hook was loaded through the assessment's folder, not copied or changed.
  assert.ok(Deno.statSync(join(run, "hooks", "hooks-folder", "yours_block_all.ts")).isFile);
});

Deno.test("test assess core --url: a server that cuts output short fails large-output, with the cut frames quoted", async () => {
  await using server = await startTestServer({ maxOutputBytes: 100_000 });
  const out = Deno.makeTempDirSync({ prefix: "cc-assess-out-" });
  const { code, stdout, stderr } = await runCli([
    "test",
    "assess",
    "core",
    "--url",
    server.url,
    "--only",
    "exit-codes,large-output",
    "--out",
    out,
    "--json",
  ]);
  assert.equal(code, 1, `exit 1\n${stdout}\n${stderr}`);
  const summary = JSON.parse(stdout);
  assert.equal(summary.ok, false);
  const byName = Object.fromEntries(
    (summary.results as ScenarioResult[]).map((r) => [r.name, r]),
  );
  assert.equal(byName["exit-codes"]!.ok, true, "what the cap does not touch still passes");
  const large = byName["large-output"]!;
  assert.equal(large.ok, false);
  const cut = large.checks.find((c) => c.what === "nothing was cut")!;
  assert.equal(cut.ok, false);
  assert.equal(cut.actual, "true");
  assert.match(cut.evidence.quote, /"truncated":true/);
  const report = Deno.readTextFileSync(join(onlyRun(out), "report.md"));
  assert.match(report, /- core: ws:\/\/127\.0\.0\.1:\d+\/ws \(--url\), cc-executor /);
  assert.match(report, /## core\/large-output: FAIL/);
});

Deno.test("test assess: usage errors exit 2 and name what is wrong", async () => {
  const area = await runCli(["test", "assess", "everything"]);
  assert.equal(area.code, 2);
  assert.match(area.stderr, /unknown area "everything"; expected core, cli, hooks or all/);
  const only = await runCli(["test", "assess", "core", "--only", "exit-codes,nope"]);
  assert.equal(only.code, 2);
  assert.match(only.stderr, /no scenario named nope in core; there are: exit-codes, /);
  const dir = await runCli(["test", "assess", "hooks", "--hooks-dir", "/nonexistent/hooks"]);
  assert.equal(dir.code, 2, dir.stderr);
  assert.match(dir.stderr, /--hooks-dir \/nonexistent\/hooks does not exist/);
  // A hooks.json that cannot be merged with the assessment's is said so before anything runs.
  const yours = Deno.makeTempDirSync({ prefix: "cc-your-hooks-" });
  const out = Deno.makeTempDirSync({ prefix: "cc-assess-out-" });
  for (
    const [text, says] of [
      ['{ "hooks": [', /hooks\.json is not valid JSON/],
      [
        '{ "hooks": { "a": 1 } }',
        /hooks\.json: expected an object such as \{ "hooks": \[ \.\.\. \] \}/,
      ],
    ] as const
  ) {
    Deno.writeTextFileSync(join(yours, "hooks.json"), text);
    const bad = await runCli(["test", "assess", "all", "--hooks-dir", yours, "--out", out]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, says);
    assert.doesNotMatch(bad.stderr, /unexpected error/);
  }
  assert.deepEqual([...Deno.readDirSync(out)], [], "nothing ran");
});

Deno.test("assess cli/history: finds its job when more than a page of other jobs ended after it", async () => {
  // A busy server, as the scenario sees it: before `history list`, 25 other jobs run and end.
  const wrapper = join(Deno.makeTempDirSync({ prefix: "cc-assess-busy-" }), "busy_cli.sh");
  const cli = shellQuoteArgv(cliInvocation());
  Deno.writeTextFileSync(
    wrapper,
    `case " $* " in *" history list "*)\n` +
      `  ${cli} test stress --tasks 25 --parallel 5 --command true >/dev/null 2>&1 || exit 99 ;;\n` +
      `esac\nexec ${cli} "$@"\n`,
  );
  await runAgainst("cli", "history", {}, { cli: ["/bin/sh", wrapper] });
});

Deno.test("assess cli/server-lifecycle: a CC_EXECUTOR_TOKEN_FILE of the user's does not stop the scenario's server", async () => {
  const token = "assess-token-file-test";
  const file = join(Deno.makeTempDirSync({ prefix: "cc-assess-token-" }), "token");
  Deno.writeTextFileSync(file, `${token}\n`, { mode: 0o600 });
  Deno.chmodSync(file, 0o600);
  await runAgainst("cli", "server-lifecycle", { token }, {
    token,
    env: { ...isolatedEnv(), CC_EXECUTOR_TOKEN_FILE: file },
  });
});

Deno.test("assess hooks/loaded: a hook file of yours that cc-executor refuses (writable by others) fails it, unloaded", async () => {
  const yours = Deno.makeTempDirSync({ prefix: "cc-your-hooks-" });
  const marker = join(yours, "imported");
  Deno.writeTextFileSync(
    join(yours, "open.ts"),
    `Deno.writeTextFileSync(${JSON.stringify(marker)}, "yes");\n` +
      `export const HOOKS = { pre_execution: [{ name: "open-hook", run: () => ({}) }] };\n`,
  );
  Deno.chmodSync(join(yours, "open.ts"), 0o666);
  const dir = await writeHooksFolder(
    Deno.makeTempDirSync({ prefix: "cc-assess-hooks-" }),
    yours,
  );
  await using server = await startTestServer({ hooks: { ...defaultConfig().hooks, dir } });
  const result = await runOne("hooks", "loaded", {
    url: server.url,
    cli: cliInvocation(),
    env: isolatedEnv(),
  });
  assert.equal(result.ok, false, "a refused file is a failure, as on a server of yours");
  const refused = result.checks.find((c) => c.what === "no hook file or entry was refused")!;
  assert.equal(refused.ok, false);
  assert.match(
    refused.actual,
    /yours_open\.ts: cannot be imported: refused .*writable by everyone/,
  );
  assert.throws(() => Deno.statSync(marker), Deno.errors.NotFound, "its code never ran");
});

Deno.test("test assess: two runs started in the same second get folders of their own", async () => {
  const out = Deno.makeTempDirSync({ prefix: "cc-assess-out-" });
  // Every folder this run could be given in the next two minutes is taken by an earlier run.
  const taken: string[] = [];
  for (let s = -1; s < 120; s++) {
    const name = new Date(Date.now() + s * 1000).toISOString().replace(/[-:]/g, "")
      .replace("T", "-").slice(0, 15) + "-core";
    Deno.mkdirSync(join(out, name, "core", "bad-requests"), { recursive: true });
    Deno.writeTextFileSync(join(out, name, "report.md"), "an earlier run's report\n");
    taken.push(name);
  }
  const { code, stdout, stderr } = await runCli([
    "test",
    "assess",
    "core",
    "--only",
    "bad-requests",
    "--out",
    out,
  ]);
  assert.equal(code, 0, `${stdout}\n${stderr}`);
  for (const name of taken) {
    assert.equal(Deno.readTextFileSync(join(out, name, "report.md")), "an earlier run's report\n");
    assert.deepEqual([...Deno.readDirSync(join(out, name, "core", "bad-requests"))], []);
  }
  const mine = [...Deno.readDirSync(out)].map((e) => e.name).filter((n) => !taken.includes(n));
  assert.equal(mine.length, 1, mine.join(", "));
  assert.match(mine[0]!, /^\d{8}-\d{6}-core-2$/);
  assert.match(stdout, new RegExp(`Report: .*${mine[0]}/report\\.md`));
  assert.match(
    Deno.readTextFileSync(join(out, mine[0]!, "report.md")),
    /^# cc-executor self-assessment: PASS/,
  );
});

Deno.test("test assess: an area whose server cannot start fails, and the areas already run keep their report", async () => {
  await using server = await startTestServer();
  const out = Deno.makeTempDirSync({ prefix: "cc-assess-out-" });
  const { code, stdout, stderr } = await runCli([
    "test",
    "assess",
    "all",
    "--only",
    "exit-codes,loaded",
    "--url",
    server.url,
    "--out",
    out,
  ], { env: { CC_EXECUTOR_MAX_JOBS: "many" } }); // what the hooks area's own server cannot take
  assert.equal(code, 1, `${stdout}\n${stderr}`);
  assert.match(
    stdout,
    /FAIL hooks\/loaded: the hooks area has no server to run against: .*MAX_JOBS/,
  );
  const report = Deno.readTextFileSync(join(onlyRun(out), "report.md"));
  assert.match(report, /^# cc-executor self-assessment: FAIL/);
  assert.match(report, /## core\/exit-codes: PASS/);
  assert.match(report, /## hooks\/loaded: FAIL[^]*Stopped before it was done:\*\* the hooks area/);
});
