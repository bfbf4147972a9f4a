/**
 * The whole command tree, built in one place so main.ts can run it and
 * `completions` (and the tests) can walk it.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { VERSION } from "../server/version.ts";
import { completionsCommand } from "./completions.ts";
import { clusterCommand } from "./cluster.ts";
import { configCommand } from "./config.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import { historyCommand } from "./history.ts";
import { hooksCommand } from "./hooks.ts";
import { initCommand } from "./init.ts";
import { jobsCommand } from "./jobs.ts";
import { mcpCommand } from "./mcp.ts";
import { policyCommand } from "./policy.ts";
import { runCommand } from "./run.ts";
import { serverCommand } from "./server.ts";
import { templatesCommand } from "./templates.ts";
import { testCommand } from "./test_group.ts";
import { versionCommand } from "./version.ts";

/** The `cc-executor` program; errors surface as CommanderError (exitOverride) for main.ts. */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command("cc-executor")
    .description("Run shell commands for AI agents over WebSocket JSON-RPC 2.0")
    .version(VERSION, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help for a command")
    .helpCommand("help [command]", "show help for a command")
    // Options after a subcommand belong to it; `run`'s own arguments after the command line
    // belong to that command line.
    .enablePositionalOptions()
    .showHelpAfterError("(add --help for usage)")
    .configureOutput({
      writeOut: (text) => ctx.output.out(text.trimEnd()),
      writeErr: (text) => ctx.output.err(text.trimEnd()),
      outputError: (text, write) => write(`cc-executor: ${text.replace(/^error: /, "")}`),
    })
    .addHelpText(
      "after",
      examples([
        ["cc-executor server start --detach", "start a server in the background"],
        ['cc-executor run "npm test"', "run a command there, streaming its output"],
        ['cc-executor run --local "echo hi"', "no server needed"],
        ["cc-executor jobs list", "what is running"],
        ["cc-executor init", "set up .env, hooks/ and templates/ here"],
      ]),
    );
  program
    .addCommand(serverCommand(ctx))
    .addCommand(runCommand(ctx))
    .addCommand(jobsCommand(ctx))
    .addCommand(clusterCommand(ctx))
    .addCommand(historyCommand(ctx))
    .addCommand(hooksCommand(ctx))
    .addCommand(templatesCommand(ctx))
    .addCommand(mcpCommand(ctx))
    .addCommand(initCommand(ctx))
    .addCommand(configCommand(ctx))
    .addCommand(policyCommand(ctx))
    .addCommand(testCommand(ctx))
    .addCommand(versionCommand(ctx))
    .addCommand(completionsCommand(ctx, () => program));
  configureTree(program, program);
  return program;
}

/** Every subcommand inherits the root's output, error handling and help settings. */
function configureTree(root: Command, command: Command): void {
  for (const sub of command.commands as Command[]) {
    sub.copyInheritedSettings(root);
    sub.exitOverride();
    configureTree(root, sub);
  }
  command.exitOverride();
}
