/**
 * `cc-executor test ...`: checks a user can run against their own install.
 * `test assess` runs behavioural scenarios and keeps the evidence
 * (cli/assess/); `test stress` puts load on a server and checks that nothing
 * is lost or left behind (cli/stress.ts).
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import { assessCommand } from "./assess/assess.ts";
import { stressCommand } from "./stress.ts";

/** `test` and its subcommands. */
export function testCommand(ctx: CliContext) {
  return new Command("test")
    .description(
      "check this install against a live server: behaviour, with the evidence kept, and load " +
        "that must lose nothing",
    )
    .addHelpText(
      "after",
      examples([
        ["cc-executor test assess", "core, cli and hooks scenarios; report in tmp/responses/"],
        ["cc-executor test assess core --url ws://build-1:8003/ws", "a running server"],
        ["cc-executor test stress", "100 mixed jobs over 8 connections, checked"],
        ["cc-executor test stress --tasks 1000 --parallel 50 --json", ""],
      ]),
    )
    .addCommand(assessCommand(ctx))
    .addCommand(stressCommand(ctx));
}
