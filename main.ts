/**
 * cc-executor's entry point: parses the command line and is the only place
 * that exits the process.
 *
 * @module
 */
import { Command, CommanderError } from "@commander-js/extra-typings";
import { consoleOutput, UsageError } from "./cli/output.ts";
import { serverCommand } from "./cli/server.ts";
import { VERSION } from "./server/version.ts";

/** Runs the CLI with `args`; resolves to the exit code. */
export async function main(args: string[]): Promise<number> {
  const output = consoleOutput;
  let exitCode = 0;
  const program = new Command("cc-executor")
    .description("Run shell commands for AI agents over WebSocket JSON-RPC 2.0")
    .version(VERSION)
    .exitOverride()
    .configureOutput({
      writeOut: (text) => output.out(text.trimEnd()),
      writeErr: (text) => output.err(text.trimEnd()),
    })
    .addCommand(serverCommand(output, (code) => (exitCode = code)));
  for (const command of program.commands) command.exitOverride();
  try {
    await program.parseAsync(args, { from: "user" });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (error instanceof UsageError) {
      output.err(`cc-executor: ${error.message}`);
      return error.exitCode;
    }
    output.err(`cc-executor: unexpected error: ${(error as Error)?.message ?? error}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
