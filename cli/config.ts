/**
 * `cc-executor config show|validate`: the settings a server started here
 * would use, where each comes from, and what is wrong with them.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { type ConfigValue, inspectConfig } from "../server/config.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";

/** `config` and its subcommands. */
export function configCommand(ctx: CliContext) {
  const config = new Command("config").description(
    "show and check the configuration (environment, then the .env file, then defaults)",
  ).addHelpText(
    "after",
    examples([
      ["cc-executor config show", "every setting, its value and its source"],
      ["cc-executor config validate", "exit 1 with one line per bad value"],
    ]),
  );

  config
    .command("show")
    .description("show every setting, its value and where it comes from (secrets masked)")
    .option("--json", "print one JSON object")
    .addHelpText(
      "after",
      examples([
        ["cc-executor config show", ""],
        ["CC_EXECUTOR_ENV_FILE=prod.env cc-executor config show --json", ""],
      ]),
    )
    .action((options) => {
      const report = inspectConfig();
      const values = report.values.map(masked);
      if (options.json) {
        ctx.output.json({
          env_file: report.envFile,
          valid: report.problems.length === 0,
          variables: values.map(({ name, value, source, description }) => ({
            name,
            value: value ?? null,
            source,
            description,
          })),
          problems: report.problems.map(({ variable, message }) => ({ variable, message })),
        });
      } else {
        ctx.output.out(`env file: ${report.envFile ?? "none"}`);
        ctx.output.table(
          ["VARIABLE", "VALUE", "SOURCE"],
          values.map((v) => [v.name, v.value ?? "(unset)", v.source]),
        );
        for (const problem of report.problems) ctx.output.err(`cc-executor: ${problem.message}`);
      }
      if (report.problems.length > 0) ctx.setExitCode(1);
    });

  config
    .command("validate")
    .description("check every setting; exit 1 with one line per bad value")
    .addHelpText(
      "after",
      examples([["cc-executor config validate && cc-executor server start", ""]]),
    )
    .action(() => {
      const report = inspectConfig();
      if (report.problems.length === 0) {
        ctx.output.out(
          `configuration is valid${report.envFile ? ` (env file: ${report.envFile})` : ""}`,
        );
        return;
      }
      for (const problem of report.problems) ctx.output.err(`cc-executor: ${problem.message}`);
      ctx.setExitCode(1);
    });
  return config;
}

/** Secrets show whether they are set and how long, never their text. */
function masked(value: ConfigValue): ConfigValue {
  if (!value.secret || value.value === undefined) return value;
  return { ...value, value: `******** (set, ${value.value.length} characters)` };
}
