/**
 * Scenario (e): `cc-executor run "true"` end to end, as a user or a script
 * pays for it: a new CLI process (runtime start, module load), a WebSocket
 * connection, the job, the exit. Baselines: the CLI starting and exiting with
 * no work (`--version`), and bare `bash -c true`.
 *
 * @module
 */
import { rotateRounds, summarize, type Summary } from "./stats.ts";

export interface CliRunOptions {
  samples: number;
  warmup: number;
  /** main.ts of the checkout whose CLI is measured. */
  main: string;
  url: string;
}

export interface CliRunResult {
  /** `cc-executor run --url <server> true`, process start to exit, ms. */
  run: Summary;
  /** `cc-executor --version`: what starting the CLI costs before it does anything, ms. */
  startup: Summary;
  /** `bash -c true`, ms. */
  bare: Summary;
}

/** One sample of each kind per round, in rotating order, as in (a). */
export async function measureCliRun(options: CliRunOptions): Promise<CliRunResult> {
  const cli = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", options.main, ...args],
      env: { CC_EXECUTOR_ENV_FILE: "", NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    });
  const samples = { run: [] as number[], startup: [] as number[], bare: [] as number[] };
  const timed = async (command: Deno.Command, into: number[], keep: boolean) => {
    const t0 = performance.now();
    const { code, stderr } = await command.output();
    if (code !== 0) {
      throw new Error(`exit code ${code}: ${new TextDecoder().decode(stderr).trim()}`);
    }
    if (keep) into.push(performance.now() - t0);
  };
  const kinds = [
    (keep: boolean) => timed(cli(["run", "--url", options.url, "true"]), samples.run, keep),
    (keep: boolean) => timed(cli(["--version"]), samples.startup, keep),
    (keep: boolean) =>
      timed(
        new Deno.Command("bash", { args: ["-c", "true"], stdout: "null", stderr: "piped" }),
        samples.bare,
        keep,
      ),
  ];
  await rotateRounds(kinds, options);
  return {
    run: summarize(samples.run),
    startup: summarize(samples.startup),
    bare: summarize(samples.bare),
  };
}
