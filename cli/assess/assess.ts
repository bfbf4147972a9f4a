/**
 * `cc-executor test assess core|cli|hooks|all`: behavioural scenarios against
 * a live server, each keeping its raw evidence under
 * `tmp/responses/<run>/`, and a report (`report.md`) that quotes the evidence
 * for every verdict. Exit code 1 when any scenario fails.
 *
 * Without --url (or CC_EXECUTOR_URL) it starts a temporary server inside this
 * process, on a free loopback port, with the user's settings. The hooks area
 * always runs against a temporary server of its own, because hooks are the
 * server's configuration: it writes its hooks into a temporary folder.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { Command } from "@commander-js/extra-typings";
import { connectTo, resolveTarget, rpc, type Target } from "../target.ts";
import type { CliContext } from "../context.ts";
import { examples } from "../help.ts";
import { startLocalServer } from "../local.ts";
import type { ServerConfig } from "../../server/config.ts";
import { CliError, type Output, UsageError } from "../output.ts";
import { CLI_SCENARIOS } from "./cli_area.ts";
import { CORE_SCENARIOS } from "./core.ts";
import { HOOK_SCENARIOS, readUserHooksJson, writeHooksFolder } from "./hooks_area.ts";
import { type AssessRun, renderReport, verdict } from "./report.ts";
import {
  type Area,
  AREAS,
  runScenario,
  type Scenario,
  type ScenarioResult,
  type ScenarioTarget,
} from "./scenario.ts";

/** Every scenario of each area. */
export const SCENARIOS: Record<Area, readonly Scenario[]> = {
  core: CORE_SCENARIOS,
  cli: CLI_SCENARIOS,
  hooks: HOOK_SCENARIOS,
};

const DEFAULT_OUT = "tmp/responses";

/** `test assess`. */
export function assessCommand(ctx: CliContext) {
  return (
    new Command("assess")
      .description(
        "run behavioural scenarios against a live server, keep every frame and CLI output as " +
          "evidence, and write a report quoting it",
      )
      .argument("[area]", `${AREAS.join(", ")} or all`, "all")
      .option("--out <dir>", "where runs go: <dir>/<run>/report.md", DEFAULT_OUT)
      .option(
        "--hooks-dir <dir>",
        "hooks area: also load the hooks of this folder (yours), to see they leave the " +
          "documented behaviour intact",
      )
      .option("--only <names>", "comma-separated scenario names (see the report's table)")
      .option("--json", "print the results as JSON instead of the summary")
      // Not withTarget's wording: without a URL this starts a temporary server, never the default.
      .option("--url <url>", "server to assess (CC_EXECUTOR_URL; default: a temporary one)")
      .option("--token <token>", "bearer token for it (CC_EXECUTOR_TOKEN)")
  )
    .addHelpText(
      "after",
      `
Without --url (or CC_EXECUTOR_URL) the scenarios run against a temporary server started
inside this process with your settings. The hooks area always starts its own, with a
temporary hooks folder holding blocking, rewriting and failing hooks (plus --hooks-dir's).
Exit code 0 when every scenario passed, 1 when any failed, 2 for a usage error.
${
        examples([
          ["cc-executor test assess", "every area, against a temporary server"],
          ["cc-executor test assess core --url ws://build-1:8003/ws", "a running server"],
          ["cc-executor test assess hooks --hooks-dir ./hooks", "your hooks next to ours"],
        ])
      }`,
    )
    .action(async (area, options) => {
      const areas = parseArea(area);
      if (options.hooksDir !== undefined) {
        await checkFolder(options.hooksDir);
        // Before any area runs: a hooks.json that cannot be merged would stop the run midway.
        if (areas.includes("hooks")) await readUserHooksJson(options.hooksDir);
      }
      const only = options.only?.split(",").map((s) => s.trim()).filter((s) => s !== "");
      const results = await assess(areas, { ...options, only }, ctx.output);
      ctx.setExitCode(results.ok ? 0 : 1);
    });
}

export interface AssessOptions {
  url?: string;
  token?: string;
  out: string;
  hooksDir?: string;
  only?: string[];
  json?: true;
}

function parseArea(text: string): Area[] {
  if (text === "all") return [...AREAS];
  if ((AREAS as readonly string[]).includes(text)) return [text as Area];
  throw new UsageError(`test assess: unknown area "${text}"; expected ${AREAS.join(", ")} or all`);
}

async function assess(
  areas: Area[],
  options: AssessOptions,
  output: Output,
): Promise<{ ok: boolean; report: string }> {
  const scenarios = pick(areas, options.only);
  const started = new Date();
  const { id, dir: runDir } = await claimRunDir(
    resolve(options.out),
    started.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15) +
      `-${areas.length === AREAS.length ? "all" : areas.join("-")}`,
  );
  const run: AssessRun = { id, started, areas, targets: {}, results: [] };
  const progress = output.spinner("test assess: starting");
  try {
    for (const area of areas) {
      const mine = scenarios.filter((s) => s.area === area);
      if (mine.length === 0) continue;
      let server: AreaServer;
      try {
        server = await areaServer(area, runDir, options);
      } catch (error) {
        if (!(error instanceof CliError) || error instanceof UsageError) throw error;
        // The areas already run keep their verdicts and the report; this one failed as a whole.
        for (const scenario of mine) run.results.push(await notRun(scenario, error, runDir));
        continue;
      }
      await using _owned = server;
      run.targets[area] = server.describe;
      for (const scenario of mine) {
        progress.update(`test assess: ${area}/${scenario.name}`);
        run.results.push(await runScenario(scenario, server.target, runDir));
      }
    }
  } finally {
    progress.stop();
  }
  const reportPath = join(runDir, "report.md");
  await Deno.writeTextFile(reportPath, renderReport(run));
  const ok = run.results.every((r) => r.ok);
  if (options.json) output.json({ ok, run: id, report: reportPath, results: run.results });
  else printSummary(run.results, reportPath, output);
  return { ok, report: reportPath };
}

/**
 * A run folder of this run's own, `<out>/<name>`, or `<name>-2`, ... when another run (started in
 * the same second) has it: runs never share evidence or a report.
 */
async function claimRunDir(out: string, name: string): Promise<{ id: string; dir: string }> {
  await Deno.mkdir(out, { recursive: true });
  for (let n = 1;; n++) {
    const id = n === 1 ? name : `${name}-${n}`;
    const dir = join(out, id);
    try {
      await Deno.mkdir(dir);
      return { id, dir };
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
  }
}

async function checkFolder(dir: string): Promise<void> {
  try {
    if ((await Deno.stat(dir)).isDirectory) return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new UsageError(`test assess: --hooks-dir ${dir} does not exist`);
  }
  throw new UsageError(`test assess: --hooks-dir ${dir} is not a folder`);
}

function pick(areas: Area[], only: string[] | undefined): Scenario[] {
  const scenarios = areas.flatMap((area) => SCENARIOS[area]);
  if (only === undefined) return scenarios;
  const unknown = only.filter((name) => !scenarios.some((s) => s.name === name));
  if (unknown.length > 0) {
    throw new UsageError(
      `test assess: no scenario named ${unknown.join(", ")} in ${areas.join(", ")}; ` +
        `there are: ${scenarios.map((s) => s.name).join(", ")}`,
    );
  }
  return scenarios.filter((s) => only.includes(s.name));
}

/** A scenario that could not run because its area has no server: a failure, saying why. */
async function notRun(
  scenario: Scenario,
  error: CliError,
  runDir: string,
): Promise<ScenarioResult> {
  const dir = join(scenario.area, scenario.name);
  await Deno.mkdir(join(runDir, dir), { recursive: true });
  return {
    area: scenario.area,
    name: scenario.name,
    title: scenario.title,
    ok: false,
    checks: [],
    error: `the ${scenario.area} area has no server to run against: ${error.message}`,
    skipped: null,
    duration_ms: 0,
    dir,
  };
}

/** The server an area runs against, and how to describe it in the report. */
interface AreaServer extends AsyncDisposable {
  target: ScenarioTarget;
  describe: { url: string; source: string; version: string };
}

async function areaServer(area: Area, runDir: string, options: AssessOptions): Promise<AreaServer> {
  const env = cliEnvironment(join(runDir, "cli-state"));
  if (area === "hooks") {
    const dir = await writeHooksFolder(join(runDir, "hooks", "hooks-folder"), options.hooksDir);
    const local = await startLocalServer(1, {
      adjust: (config) => ({
        ...temporary(config),
        hooks: { ...config.hooks, dir, configFile: null },
      }),
    });
    return described(
      local.target,
      "temporary server in this process, with the assessment's hooks folder, history in memory",
      env,
      local,
    );
  }
  const given = options.url !== undefined || Deno.env.get("CC_EXECUTOR_URL");
  if (given) return described(resolveTarget(options), undefined, env);
  const local = await startLocalServer(1, { adjust: temporary });
  return described(local.target, "temporary server in this process, history in memory", env, local);
}

/** Your settings, but history in memory: an assessment leaves no records in your store. */
function temporary(config: ServerConfig): ServerConfig {
  return { ...config, history: true, db: ":memory:", redisUrl: undefined };
}

async function described(
  target: Target,
  source: string | undefined,
  env: Record<string, string>,
  owned?: AsyncDisposable,
): Promise<AreaServer> {
  let version: string;
  try {
    const client = await connectTo(target);
    try {
      const info = await rpc(() => client.request("server.info", {}));
      version = `cc-executor ${info.version} (pid ${info.pid})`;
    } finally {
      await client.close();
    }
  } catch (error) {
    await owned?.[Symbol.asyncDispose]();
    throw error;
  }
  return {
    target: { url: target.url, token: target.token, cli: cliInvocation(), env },
    describe: { url: target.url, source: source ?? target.source, version },
    [Symbol.asyncDispose]: async () => await owned?.[Symbol.asyncDispose](),
  };
}

/**
 * How to start this cc-executor's CLI again: the compiled binary is the program itself; under
 * `deno run` it is Deno with this checkout's main.ts.
 */
export function cliInvocation(): string[] {
  if (Deno.build.standalone) return [Deno.execPath()];
  return [Deno.execPath(), "run", "-A", new URL("../../main.ts", import.meta.url).pathname];
}

/** The user's environment, with a state folder of the run's own so no real server is touched. */
function cliEnvironment(stateDir: string): Record<string, string> {
  return { ...Deno.env.toObject(), CC_EXECUTOR_STATE_DIR: stateDir, NO_COLOR: "1" };
}

function printSummary(results: ScenarioResult[], reportPath: string, output: Output): void {
  const paint = output.paint("stdout");
  output.table(
    ["area", "scenario", "result", "checks"],
    results.map((r) => [
      r.area,
      r.name,
      verdict(r).toLowerCase(),
      `${r.checks.filter((c) => c.ok).length}/${r.checks.length}`,
    ]),
  );
  // Scenarios that failed for one reason (an area without a server) share one line.
  const failures = new Map<string, string[]>();
  for (const r of results.filter((r) => !r.ok)) {
    const first = r.checks.find((c) => !c.ok);
    const why = r.error ??
      (first
        ? `${first.what}: expected ${oneLine(first.expected)}, got ${oneLine(first.actual)}`
        : "");
    failures.set(why, [...(failures.get(why) ?? []), `${r.area}/${r.name}`]);
  }
  for (const [why, names] of failures) {
    output.out(`${paint.red("FAIL")} ${names.join(", ")}: ${why}`);
  }
  for (const r of results.filter((r) => verdict(r) === "SKIPPED")) {
    output.out(`${paint.yellow("skipped")} ${r.area}/${r.name}: ${r.skipped}`);
  }
  const failed = results.filter((r) => !r.ok).length;
  const skipped = results.filter((r) => verdict(r) === "SKIPPED").length;
  output.out(
    `${results.length - failed - skipped} of ${results.length} scenarios passed` +
      `${failed ? `, ${failed} failed` : ""}${skipped ? `, ${skipped} skipped` : ""}. ` +
      `Report: ${reportPath}`,
  );
}

function oneLine(text: string): string {
  const flat = text.replaceAll("\n", "\\n");
  return flat.length > 200 ? `${flat.slice(0, 200)}...` : flat;
}
