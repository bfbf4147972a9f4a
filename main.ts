/**
 * cc-executor's entry point: parses the command line and is the only place
 * that exits the process.
 *
 * @module
 */
import { CommanderError } from "@commander-js/extra-typings";
import { EXIT } from "./cli/outcome.ts";
import { CliError, createOutput } from "./cli/output.ts";
import { readEnv } from "./server/env.ts";
import { buildProgram } from "./cli/program.ts";

/** Commander's codes for help and version, which are successes. */
const DISPLAY_CODES = new Set(["commander.helpDisplayed", "commander.version", "commander.help"]);

/** Runs the CLI with `args`; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  const output = createOutput();
  let exitCode = 0;
  const program = buildProgram({ output, setExitCode: (code) => (exitCode = code) });
  try {
    await program.parseAsync(args, { from: "user" });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Bad flags and arguments are usage errors: exit 2, as every Unix tool does.
      return DISPLAY_CODES.has(error.code) ? 0 : error.exitCode === 0 ? 0 : 2;
    }
    if (error instanceof CliError) {
      output.err(`cc-executor: ${error.message}`);
      return error.exitCode;
    }
    // Whoever read our stdout has gone (`... | head`): end quietly, as SIGPIPE would end a C tool.
    if (error instanceof Deno.errors.BrokenPipe) return EXIT.BROKEN_PIPE;
    // A bug: say so in one line; the stack is for whoever debugs it.
    const debug = readEnv("LOG_LEVEL")?.toLowerCase() === "debug";
    output.err(
      `cc-executor: unexpected error: ${
        debug ? (error as Error)?.stack : (error as Error)?.message ?? error
      }${debug ? "" : " (LOG_LEVEL=debug shows where)"}`,
    );
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
