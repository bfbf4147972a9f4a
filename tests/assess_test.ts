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
): Promise<void> {
  const scenario = SCENARIOS[area].find((s) => s.name === name)!;
  await using server = await startTestServer(overrides);
  const runDir = Deno.makeTempDirSync({ prefix: "cc-assess-" });
  const target: ScenarioTarget = { url: server.url, cli: cliInvocation(), env: isolatedEnv() };
  const result = await runScenario(scenario, target, runDir);
  assertPassed(result);
  for (const check of result.checks) {
    assert.ok(
      Deno.statSync(join(runDir, check.evidence.file)).isFile,
      `${check.what}: its evidence file ${check.evidence.file} exists`,
    );
  }
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
});
