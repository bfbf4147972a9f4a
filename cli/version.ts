/**
 * `cc-executor version`: this build's version, and the runtime under it.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { VERSION } from "../server/version.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";

export function versionCommand(ctx: CliContext) {
  return new Command("version")
    .description("print the version of cc-executor and of the Deno runtime it runs on")
    .option("--json", "print one JSON object")
    .addHelpText(
      "after",
      examples([["cc-executor version", ""], ["cc-executor --version", "the version alone"]]),
    )
    .action((options) => {
      const info = {
        version: VERSION,
        deno: Deno.version.deno,
        v8: Deno.version.v8,
        typescript: Deno.version.typescript,
        target: Deno.build.target,
        compiled: Deno.build.standalone,
      };
      if (options.json) return ctx.output.json(info);
      ctx.output.out(`cc-executor ${VERSION}`);
      ctx.output.out(
        `deno ${info.deno} (v8 ${info.v8}, typescript ${info.typescript}) ${info.target}${
          info.compiled ? ", compiled" : ""
        }`,
      );
    });
}
