/**
 * `cc-executor hooks list|run|reload`: what hooks the server loaded (and
 * refused), what a hook chain would do to a command without running it, and
 * loading them again. docs/hooks.md describes the hooks themselves.
 *
 * @module
 */
import { isAbsolute, relative, resolve } from "node:path";
import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { isLoopbackHost } from "../server/config.ts";
import {
  type HookExecution,
  HookPoint,
  HooksRunParams,
  type HooksRunResult,
  type HookStatusResult,
} from "../server/protocol.ts";
import { keyValue, oneOf, seconds } from "./args.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import { formatMs } from "./history.ts";
import { type Output, type Paint, UsageError } from "./output.ts";
import { connectTo, resolveTarget, rpc, withTarget } from "./target.ts";

type Point = HookStatusResult["hooks"][number]["point"];

/** The outcomes `hooks run` can pretend for post_execution and error (the protocol's list). */
const STATUSES = HooksRunParams.shape.status.unwrap().options;
type PretendStatus = (typeof STATUSES)[number];

/** Statuses after which error hooks run; after the others only post_execution hooks do. */
const FAILURE_STATUSES: readonly PretendStatus[] = ["failed", "timed_out", "killed", "error"];

/** Said with every dry run, so nobody mistakes it for a run of the command. */
const DRY_RUN_NOTE =
  "the hooks ran for real, with dry_run: true in their context; the command did not run";

/** `hooks` and its subcommands. */
export function hooksCommand(ctx: CliContext) {
  const hooks = new Command("hooks")
    .description(
      "the server's hooks: what is loaded, what a chain would do to a command, reload (docs/hooks.md)",
    )
    .addHelpText(
      "after",
      examples([
        ["cc-executor hooks list", "loaded hooks, their counts, and refused files"],
        ['cc-executor hooks run pre_execution --command "rm -rf /"', "would the hooks block it?"],
        ["cc-executor hooks reload --strict", "load the hooks again; exit 1 if any is refused"],
      ]),
    );

  withTarget(
    hooks.command("list").alias("ls").description(
      "list the loaded hooks (built-ins, TypeScript files, hooks.json) and what was refused",
    ),
  )
    .option("--recent", "also show the latest hook executions (output hooks: failures only)")
    .option("--strict", "exit 1 when any hook file or entry was refused (for CI)")
    .option("--json", "print the hooks.status result as JSON")
    .addHelpText(
      "after",
      examples([
        ["cc-executor hooks list --recent", ""],
        ["cc-executor hooks list --strict >/dev/null", "in CI: fail if a hook does not load"],
        ["cc-executor hooks list --json | jq '.hooks[].name'", ""],
      ]),
    )
    .action(async (options) => {
      await using client = await connectTo(resolveTarget(options));
      const status = await rpc(() => client.request("hooks.status", {}));
      if (options.json) ctx.output.json(status);
      else printStatus(status, Boolean(options.recent), ctx.output);
      if (status.problems.length > 0) {
        if (!options.json) printProblems(status, Boolean(options.strict), ctx.output);
        if (options.strict) ctx.setExitCode(1);
      }
    });

  withTarget(
    hooks.command("run").description(
      "dry-run one point's hook chain against a command: the hooks run, the command does not",
    ),
  )
    .argument(
      "<point>",
      `the chain to run: ${HookPoint.options.join(", ")}`,
      oneOf(HookPoint.options),
    )
    .requiredOption("--command <command>", "the command the hooks see (it is not run)")
    .option(
      "--cwd <dir>",
      "the working directory the hooks see (default: this directory, on a local server, as run sends)",
    )
    .option("-e, --env <KEY=value>", "a variable of the request (repeatable)", keyValue)
    .option("--timeout <seconds>", "the request's timeout", seconds)
    .option(
      "--status <status>",
      `post_execution, error: the outcome to pretend (${
        STATUSES.join(", ")
      }; default completed, or failed with a non-zero --exit-code; for error, failed)`,
      oneOf(STATUSES),
    )
    .option("--exit-code <n>", "post_execution, error: the exit code to pretend", exitCode)
    .option(
      "--output <text>",
      "output: the text to pass through the output hooks; post_execution, error: the job's output",
    )
    .option("--output-file <path>", "like --output, read from a file ('-': this stdin)")
    .option("--json", "print the hooks.run result as JSON")
    .addHelpText(
      "after",
      `
Exit codes: 1 when pre_execution hooks would block the command, else 0.
${
        examples([
          ['cc-executor hooks run pre_execution --command "rm -rf /"', "would block, or run?"],
          ['cc-executor hooks run pre_execution --command "pytest" --cwd ~/project', ""],
          [
            'cc-executor hooks run output --command "env" --output "GITHUB_TOKEN=ghp_abc123"',
            "what the output hooks would send",
          ],
          [
            'cc-executor hooks run error --command "npm test" --status timed_out',
            "would an error hook retry it?",
          ],
          ['cc-executor hooks run post_execution --command "make" --exit-code 2 --json', ""],
        ])
      }`,
    )
    .action(async (point, options) => {
      const pretend = await checkRunOptions(point, options);
      const target = resolveTarget(options);
      const params: HooksRunParams = {
        point,
        command: options.command,
        cwd: requestCwd(options.cwd, target.url),
        env: options.env,
        timeout: options.timeout,
        ...pretend,
      };
      await using client = await connectTo(target);
      const result = await rpc(() => client.request("hooks.run", params));
      if (options.json) ctx.output.json(result);
      else printRun(params, result, ctx.output);
      if (result.blocked) ctx.setExitCode(1);
    });

  withTarget(
    hooks.command("reload").description(
      "load the hooks again (as SIGHUP does); running jobs keep the hooks they started with",
    ),
  )
    .option("--strict", "exit 1 when any hook file or entry was refused (for CI)")
    .option("--json", "print the hooks.status result after the reload as JSON")
    .addHelpText(
      "after",
      examples([
        ["cc-executor hooks reload", ""],
        ["cc-executor hooks reload --strict", "after a deploy: fail if a hook does not load"],
      ]),
    )
    .action(async (options) => {
      await using client = await connectTo(resolveTarget(options));
      const status = await rpc(() => client.request("hooks.reload", {}));
      if (options.json) {
        ctx.output.json(status);
      } else {
        const refused = status.problems.length;
        ctx.output.out(
          `reloaded: ${count(status.hooks.length, "hook")} loaded` +
            (refused > 0 ? `, ${refused} refused` : "") +
            ` (folder ${status.dir}, command hooks ${status.config_file})`,
        );
        if (status.dir_note) ctx.output.err(`note: ${status.dir_note}`);
        for (const problem of status.problems) ctx.output.err(`refused: ${problemText(problem)}`);
      }
      if (status.problems.length > 0 && options.strict) ctx.setExitCode(1);
    });

  return hooks;
}

// -- list -----------------------------------------------------------------------------------------

function printStatus(status: HookStatusResult, recent: boolean, output: Output): void {
  const paint = output.paint("stdout");
  output.out(`hooks folder:  ${status.dir}  (TypeScript hooks: *.ts)`);
  output.out(`command hooks: ${status.config_file}`);
  output.out(`loaded at:     ${formatTime(status.loaded_at)}  (hooks reload loads them again)`);
  if (status.dir_note) output.out(`note:          ${status.dir_note}`);
  if (!status.typescript_supported) {
    output.out(
      "note:          this server is the compiled binary, which cannot load TypeScript hooks; " +
        "use command hooks (docs/hooks.md#command-hooks)",
    );
  }
  output.out("");
  if (status.hooks.length === 0) {
    output.out(
      `no hooks loaded: put *.ts hook files in ${status.dir} or list command hooks in ` +
        `${status.config_file} (docs/hooks.md)`,
    );
  } else {
    const failed = painted(
      "FAILED",
      status.hooks.map((hook) => String(hook.counts.failed)),
      (text) => text.trim() === "0" ? text : paint.red(text),
    );
    output.table(
      ["NAME", "POINT", "KIND", "LOCATION", "TIMEOUT", "ON FAILURE", "RUNS", "FAILED", "MEAN"],
      status.hooks.map((hook, i) => [
        hook.name,
        hook.point,
        hook.kind,
        location(hook, status.dir),
        formatMs(hook.timeout_ms),
        hook.on_failure + (hook.required ? " (required)" : ""),
        String(hook.counts.runs),
        failed[i]!,
        hook.counts.runs > 0 ? hookMs(hook.counts.mean_ms) : "-",
      ]),
    );
  }
  if (!recent) return;
  output.out("");
  if (status.recent.length === 0) return output.out("no hook has run since the hooks were loaded");
  output.out("Recent executions, oldest first:");
  const outcomes = paintedOutcomes(status.recent, paint);
  output.table(
    ["AT", "HOOK", "POINT", "JOB", "OUTCOME", "TIME", "DETAIL"],
    status.recent.map((execution, i) => [
      formatTime(execution.at),
      execution.hook,
      execution.point,
      execution.job_id,
      outcomes[i]!,
      hookMs(execution.duration_ms),
      detail(execution),
    ]),
  );
}

/** Refused files and entries, on stderr: they are what a user has to act on. */
function printProblems(status: HookStatusResult, strict: boolean, output: Output): void {
  const n = status.problems.length;
  output.err(
    `${n === 1 ? "1 hook file or entry was" : `${n} hook files or entries were`} refused` +
      (strict ? ":" : " (--strict makes this exit 1):"),
  );
  for (const problem of status.problems) output.err(`  ${problemText(problem)}`);
}

/** Where a hook comes from, short: the built-in, the file in the hooks folder, or the command. */
function location(hook: HookStatusResult["hooks"][number], dir: string): string {
  if (hook.kind === "builtin") return "built-in";
  const file = shortPath(hook.location, dir);
  if (hook.kind === "typescript" || !hook.command) return file;
  const command = hook.command.join(" ");
  return `${file}: ${command.length > 40 ? command.slice(0, 39) + "…" : command}`;
}

/** `path` relative to the hooks folder when it is inside it, else as it is. */
function shortPath(path: string, dir: string): string {
  const inside = relative(dir, path);
  return inside !== "" && !inside.startsWith("..") && !isAbsolute(inside) ? inside : path;
}

/**
 * One refusal as a line, naming its file once. Loaders usually put the file in the message already;
 * the source is added only when the message does not start with it (`<file> hooks[2]` names a
 * hooks.json entry).
 */
export function problemText(problem: { source: string; message: string }): string {
  const file = problem.source.replace(/ hooks\[\d+\]$/, "");
  // Every line is printed as a refusal already: the loaders' own "refused" would say it twice.
  const message = problem.message.replace(/^refused:\s*/, "");
  const text = message.startsWith(file) ? message : `${problem.source}: ${message}`;
  return text.replace(": refused because ", ": ");
}

// -- run ------------------------------------------------------------------------------------------

interface RunOptions {
  status?: PretendStatus;
  exitCode?: number;
  output?: string;
  outputFile?: string;
}

/** Options that do not fit the point are usage errors; returns what the dry run pretends. */
async function checkRunOptions(
  point: Point,
  options: RunOptions,
): Promise<Pick<HooksRunParams, "status" | "exit_code" | "output">> {
  const where = `hooks run ${point}`;
  if (options.output !== undefined && options.outputFile !== undefined) {
    throw new UsageError(`${where}: give --output or --output-file, not both`);
  }
  const outcomeOnly = (option: string) =>
    new UsageError(`${where}: ${option} applies to post_execution and error hooks only`);
  if (point === "pre_execution" || point === "output") {
    if (options.status !== undefined) throw outcomeOnly("--status");
    if (options.exitCode !== undefined) throw outcomeOnly("--exit-code");
  }
  if (point === "pre_execution" && (options.output ?? options.outputFile) !== undefined) {
    throw new UsageError(
      `${where}: --output applies to output, post_execution and error hooks (pre_execution hooks run before there is any)`,
    );
  }
  if (point === "error" && options.status !== undefined) {
    if (!FAILURE_STATUSES.includes(options.status)) {
      throw new UsageError(
        `${where}: error hooks run only after ${FAILURE_STATUSES.join(", ")}; ` +
          `after ${options.status} only post_execution hooks run (use hooks run post_execution)`,
      );
    }
  }
  const output = options.outputFile !== undefined
    ? await readOutputFile(options.outputFile)
    : options.output;
  if (point === "output" && output === undefined) {
    throw new UsageError(
      `${where}: give the text to pass through the output hooks with --output or --output-file`,
    );
  }
  // A non-zero exit code with no status given means the job failed, as it would have.
  const status = options.status ??
    (point === "post_execution" && options.exitCode !== undefined && options.exitCode !== 0
      ? "failed"
      : undefined);
  return { status, exit_code: options.exitCode, output };
}

async function readOutputFile(path: string): Promise<string> {
  try {
    if (path === "-") return await new Response(Deno.stdin.readable).text();
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new UsageError(`Cannot read --output-file ${path}: ${(error as Error).message}`);
  }
}

/**
 * The cwd the hooks see: as `run` would send it. A local server shares this filesystem, so it gets
 * this directory (or a relative --cwd made absolute); a remote one gets --cwd as given.
 */
function requestCwd(cwd: string | undefined, url: string): string | undefined {
  const local = isLoopbackHost(new URL(url).hostname.replace(/^\[(.*)\]$/, "$1"));
  if (!local) return cwd;
  return cwd === undefined ? Deno.cwd() : resolve(cwd);
}

function exitCode(text: string): number {
  if (!/^-?\d+$/.test(text.trim())) throw new InvalidArgumentError("expected a whole number.");
  return Number(text);
}

function printRun(params: HooksRunParams, result: HooksRunResult, output: Output): void {
  const paint = output.paint("stdout");
  output.out(`Dry run of the ${result.point} hooks: ${DRY_RUN_NOTE}.`);
  const executions = result.executions;
  if (executions.length === 0) {
    output.out(
      result.point === "output"
        ? "No output hook failed."
        : `No ${result.point} hook ran (none is loaded${
          result.point === "error" ? ", or the pretended outcome is not a failure" : ""
        }).`,
    );
  } else {
    // After a failure the error chain runs, then (without a retry) the post_execution chain.
    const points = executions.some((execution) => execution.point !== result.point);
    if (result.point === "error" && !executions.some((execution) => execution.point === "error")) {
      output.out(
        "No error hook ran (none is loaded); the post_execution hooks that follow it did:",
      );
    }
    const outcomes = paintedOutcomes(executions, paint);
    output.table(
      ["HOOK", ...(points ? ["POINT"] : []), "KIND", "OUTCOME", "TIME", "DETAIL"],
      executions.map((execution, i) => [
        execution.hook,
        ...(points ? [execution.point] : []),
        execution.kind,
        outcomes[i]!,
        hookMs(execution.duration_ms),
        detail(execution),
      ]),
    );
  }
  output.out("");
  switch (result.point) {
    case "pre_execution":
      return printPreVerdict(params, result, output);
    case "output": {
      const text = result.output ?? "";
      output.out(paint.dim("--- output as it would be sent and stored ---"));
      if (text === "") return output.out(paint.dim("(nothing: the hooks dropped it all)"));
      output.write("stdout", text.endsWith("\n") ? text : text + "\n");
      return;
    }
    case "post_execution":
    case "error": {
      const attached = Object.entries(result.attached ?? {});
      if (attached.length === 0) output.out("would attach: nothing");
      for (const [hook, data] of attached) {
        output.out(`would attach under ${hook}: ${JSON.stringify(data)}`);
      }
      if (result.retry) {
        output.out(
          `would retry (attempt 2): ${result.retry.command}  (asked by ${result.retry.hook}${
            result.retry.message ? `: ${result.retry.message}` : ""
          })`,
        );
      } else if (result.point === "error") {
        output.out("would retry: no");
      }
    }
  }
}

function printPreVerdict(params: HooksRunParams, result: HooksRunResult, output: Output): void {
  if (result.blocked) {
    output.out(`would block: ${result.blocked.hook}: ${result.blocked.message}`);
    return;
  }
  const request = result.request;
  if (!request) return output.out(`would run: ${params.command}`);
  const changes: string[] = [];
  if (request.command !== params.command) changes.push(`  command changed from: ${params.command}`);
  if (request.cwd !== (params.cwd ?? null)) {
    changes.push(`  cwd: ${request.cwd} (was ${params.cwd ?? "the server's working directory"})`);
  }
  for (const [key, value] of Object.entries(request.env)) {
    if (params.env?.[key] !== value) changes.push(`  env: ${key}=${value}`);
  }
  if (request.timeout !== (params.timeout ?? null)) {
    changes.push(
      `  timeout: ${request.timeout}s (was ${
        params.timeout !== undefined ? `${params.timeout}s` : "none: the server would pick one"
      })`,
    );
  }
  output.out(
    `would run: ${request.command}${changes.length === 0 ? "  (unchanged by the hooks)" : ""}`,
  );
  for (const line of changes) output.out(line);
}

// -- shared ---------------------------------------------------------------------------------------

/** What an execution said: its error (and what that led to), its message, or what it changed. */
function detail(execution: HookExecution): string {
  const parts: string[] = [];
  if (execution.error !== undefined) {
    parts.push(
      `${execution.error}${execution.on_failure ? ` (on_failure: ${execution.on_failure})` : ""}`,
    );
  }
  if (execution.message !== undefined) parts.push(execution.message);
  if (execution.changes) parts.push(`changed ${execution.changes.join(", ")}`);
  return parts.join("; ").replace(/\s+/g, " ");
}

/** Each execution's outcome, coloured, padded to the column first (padding counts characters). */
function paintedOutcomes(executions: readonly HookExecution[], paint: Paint): string[] {
  return painted("OUTCOME", executions.map((execution) => execution.outcome), (outcome) => {
    if (outcome.startsWith("failed") || outcome.startsWith("blocked")) return paint.red(outcome);
    if (outcome.startsWith("retry") || outcome.startsWith("changed")) return paint.yellow(outcome);
    return outcome;
  });
}

/** A column's cells padded to its width (`header` included), then styled. */
function painted(header: string, cells: string[], style: (padded: string) => string): string[] {
  const width = Math.max(header.length, ...cells.map((cell) => cell.length));
  return cells.map((cell) => style(cell.padEnd(width)));
}

/** Hooks often take well under a millisecond: 0.42ms, 3.1ms, 250ms, 1.5s. */
function hookMs(ms: number): string {
  if (ms < 1) return `${ms.toFixed(2)}ms`;
  if (ms < 10) return `${ms.toFixed(1)}ms`;
  return formatMs(ms);
}

/** An ISO 8601 instant as "2025-05-01 14:30:00Z" (UTC, to the second). */
function formatTime(iso: string): string {
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return iso;
  return new Date(time).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
