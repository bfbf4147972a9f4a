/**
 * What a self-assessment scenario is and how one runs: it drives a live
 * server (over the wire, or through the CLI as a subprocess), states each
 * thing that must hold as a check, and keeps the raw evidence for every
 * check in its own folder, so the report can quote what was actually seen.
 * The test suite runs the same scenarios (tests/assess_test.ts).
 *
 * @module
 */
import { join, relative } from "node:path";
import { shellQuoteArgv } from "../../server/claude/invocation.ts";
import { RawClient, type TranscriptEntry } from "./raw_client.ts";

export const AREAS = ["core", "cli", "hooks"] as const;
export type Area = (typeof AREAS)[number];

/** A behaviour to check against a live server. */
export interface Scenario {
  area: Area;
  /** Short and file-name safe: the evidence folder is `<area>/<name>`. */
  name: string;
  /** What must hold, in a sentence. */
  title: string;
  run(ctx: ScenarioContext): Promise<void>;
}

/** What a scenario runs against. */
export interface ScenarioTarget {
  /** The server's WebSocket URL. */
  url: string;
  token?: string;
  /** How to start this cc-executor's CLI: the program and the arguments before the command's. */
  cli: string[];
  /**
   * The environment CLI subprocesses get (then CC_EXECUTOR_URL and CC_EXECUTOR_TOKEN for the
   * target, and a state folder of the run's own).
   */
  env: Record<string, string>;
}

/** Where a check's evidence is: a file of the run, and the lines of it that show the verdict. */
export interface Evidence {
  file: string;
  quote: string;
}

export interface Check {
  what: string;
  ok: boolean;
  expected: string;
  actual: string;
  evidence: Evidence;
}

export interface ScenarioResult {
  area: Area;
  name: string;
  title: string;
  ok: boolean;
  checks: Check[];
  /** Why the scenario stopped before it was done (a timeout, a refused request, ...). */
  error: string | null;
  /** Why it does not apply to this server (then `ok` is true and nothing was checked). */
  skipped: string | null;
  duration_ms: number;
  /** The scenario's evidence folder, relative to the run's. */
  dir: string;
}

/** One CLI subprocess as it ran. */
export interface CliRun {
  args: string[];
  code: number;
  stdout: string;
  stderr: string;
  /** Its evidence file. */
  file: string;
}

const QUOTE_LINES = 12;
const QUOTE_LINE_CHARS = 400;

/** Thrown by `ScenarioContext.skip`. */
class ScenarioSkipped extends Error {}

/** The scenario's side of a run: connections and CLI runs it makes, the checks it states. */
export class ScenarioContext {
  readonly checks: Check[] = [];
  readonly #clients: { client: RawClient; file: string }[] = [];
  #cliRuns = 0;

  constructor(
    readonly target: ScenarioTarget,
    /** The run's folder; evidence paths are relative to it. */
    readonly runDir: string,
    /** This scenario's folder. */
    readonly dir: string,
  ) {}

  /** A recorded connection to the target; its transcript is saved when the scenario ends. */
  async connect(): Promise<RawClient> {
    const headers: Record<string, string> = this.target.token
      ? { authorization: `Bearer ${this.target.token}` }
      : {};
    const client = await RawClient.connect(this.target.url, { headers });
    this.#clients.push({
      client,
      file: this.#path(`connection-${this.#clients.length + 1}.jsonl`),
    });
    return client;
  }

  /**
   * Runs `cc-executor <args>` against the target and saves its exit code, stdout and stderr.
   * `env` is laid over the target's environment.
   */
  async cli(
    args: string[],
    options: { stdin?: string; env?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<CliRun> {
    const [program, ...before] = this.target.cli;
    const file = this.#path(`cli-${++this.#cliRuns}.txt`);
    const env: Record<string, string> = { ...this.target.env, CC_EXECUTOR_URL: this.target.url };
    if (this.target.token) {
      env.CC_EXECUTOR_TOKEN = this.target.token;
      // The token is the target's; a token file of the user's as well is a configuration error
      // for the servers a scenario starts ("set CC_EXECUTOR_TOKEN or CC_EXECUTOR_TOKEN_FILE").
      delete env.CC_EXECUTOR_TOKEN_FILE;
    }
    const child = new Deno.Command(program!, {
      args: [...before, ...args],
      env: { ...env, ...options.env },
      clearEnv: true,
      stdin: options.stdin !== undefined ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, options.timeoutMs ?? 60_000);
    try {
      if (options.stdin !== undefined) {
        const writer = child.stdin.getWriter();
        await writer.write(new TextEncoder().encode(options.stdin));
        await writer.close();
      }
      const output = await child.output();
      const decoder = new TextDecoder();
      const run: CliRun = {
        args,
        code: output.code,
        stdout: decoder.decode(output.stdout),
        stderr: decoder.decode(output.stderr),
        file: relative(this.runDir, file),
      };
      await Deno.writeTextFile(
        file,
        `$ cc-executor ${shellQuoteArgv(args)}\n` +
          (options.stdin !== undefined ? `--- stdin ---\n${options.stdin}\n` : "") +
          `--- exit code: ${run.code}${output.signal ? ` (signal ${output.signal})` : ""} ---\n` +
          `--- stdout ---\n${run.stdout}\n--- stderr ---\n${run.stderr}`,
      );
      return run;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Saves `text` as `name` in the scenario's folder and returns its path in the run. */
  async save(name: string, text: string): Promise<string> {
    const path = this.#path(name);
    await Deno.writeTextFile(path, text);
    return relative(this.runDir, path);
  }

  /** States that `what` holds (`ok`), with what was expected, what was seen and where. */
  check(
    what: string,
    ok: boolean,
    detail: { expected: unknown; actual: unknown; evidence: Evidence },
  ): boolean {
    this.checks.push({
      what,
      ok,
      expected: describe(detail.expected),
      actual: describe(detail.actual),
      evidence: detail.evidence,
    });
    return ok;
  }

  /** `check` for two values that must be equal (compared as JSON). */
  equal(what: string, actual: unknown, expected: unknown, evidence: Evidence): boolean {
    return this.check(what, JSON.stringify(actual) === JSON.stringify(expected), {
      expected,
      actual,
      evidence,
    });
  }

  /** Ends the scenario as not applicable to this server, saying why; never a pass. */
  skip(reason: string): never {
    throw new ScenarioSkipped(reason);
  }

  /** Evidence from a connection: the frames `match` picks, as they are in its transcript file. */
  frames(client: RawClient, match: (entry: TranscriptEntry) => boolean): Evidence {
    const entry = this.#clients.find((c) => c.client === client);
    if (!entry) throw new Error("frames(): this connection was not opened by ctx.connect()");
    return {
      file: relative(this.runDir, entry.file),
      quote: quoteLines(client.transcript.filter(match).map(transcriptLine)),
    };
  }

  /** Evidence from a CLI run: its exit code and the named streams. */
  cliEvidence(run: CliRun, streams: ("stdout" | "stderr")[] = ["stdout", "stderr"]): Evidence {
    const lines = [`$ cc-executor ${shellQuoteArgv(run.args)}`, `exit code: ${run.code}`];
    for (const stream of streams) {
      const text = run[stream].replace(/\n$/, "");
      lines.push(`${stream}:${text === "" ? " (empty)" : ""}`);
      if (text !== "") lines.push(...text.split("\n").map((l) => `  ${l}`));
    }
    return { file: run.file, quote: quoteLines(lines) };
  }

  /** Writes every connection's transcript, one JSON line a frame; called once at the end. */
  async saveTranscripts(): Promise<void> {
    for (const { client, file } of this.#clients) {
      await Deno.writeTextFile(file, client.transcript.map(transcriptLine).join("\n") + "\n");
    }
  }

  /** Closes every connection still open. */
  async closeAll(): Promise<void> {
    await Promise.all(this.#clients.map(({ client }) => client.close()));
  }

  #path(name: string): string {
    return join(this.dir, name);
  }
}

/** Runs one scenario, saving its evidence under `<runDir>/<area>/<name>/`. */
export async function runScenario(
  scenario: Scenario,
  target: ScenarioTarget,
  runDir: string,
): Promise<ScenarioResult> {
  const dir = join(runDir, scenario.area, scenario.name);
  await Deno.mkdir(dir, { recursive: true });
  const ctx = new ScenarioContext(target, runDir, dir);
  const started = performance.now();
  let error: string | null = null;
  let skipped: string | null = null;
  try {
    await scenario.run(ctx);
  } catch (e) {
    if (e instanceof ScenarioSkipped) skipped = e.message;
    else error = e instanceof Error ? e.message : String(e);
  } finally {
    await ctx.closeAll();
    await ctx.saveTranscripts();
  }
  return {
    area: scenario.area,
    name: scenario.name,
    title: scenario.title,
    ok: error === null && (skipped !== null || ctx.checks.length > 0) &&
      ctx.checks.every((c) => c.ok),
    checks: ctx.checks,
    error,
    skipped,
    duration_ms: Math.round(performance.now() - started),
    dir: relative(runDir, dir),
  };
}

/** One transcript entry as a line: `{"dir":"in","ms":12,"frame":{...}}`. */
function transcriptLine(entry: TranscriptEntry): string {
  return JSON.stringify(entry);
}

function quoteLines(lines: string[]): string {
  const shown = lines.slice(0, QUOTE_LINES).map((line) =>
    line.length > QUOTE_LINE_CHARS
      ? `${line.slice(0, QUOTE_LINE_CHARS)}... (${line.length} characters)`
      : line
  );
  if (lines.length > QUOTE_LINES) shown.push(`... and ${lines.length - QUOTE_LINES} more line(s)`);
  return shown.join("\n");
}

function describe(value: unknown): string {
  if (value === undefined) return "(nothing)";
  return typeof value === "string" ? value : JSON.stringify(value);
}
