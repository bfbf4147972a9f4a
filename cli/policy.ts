/**
 * `cc-executor policy check`: what the command policy (CC_EXECUTOR_POLICY) would say about a
 * command, without a server: for writing and testing a policy file (docs/security.md).
 *
 * @module
 */
import { Command, Option } from "@commander-js/extra-typings";
import { inspectConfig } from "../server/config.ts";
import { dialectOf } from "../server/job_admission.ts";
import { checkRequest } from "../server/policy/policy.ts";
import { analyseShell } from "../server/policy/shell_commands.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import { CliError, UsageError } from "./output.ts";

/** `policy` and its subcommand. */
export function policyCommand(ctx: CliContext) {
  const policy = new Command("policy").description(
    "test the command policy (CC_EXECUTOR_POLICY) against commands, without a server",
  ).addHelpText(
    "after",
    examples([
      ["cc-executor policy check 'git status && rm -rf build'", "allowed, or which rule denies it"],
    ]),
  );
  policy
    .command("check")
    .description(
      "say whether the policy allows a command, and which rule denies it (exit 0 allowed, 1 denied)",
    )
    .argument("<command>", 'the shell command, as a client would send it ("-": read stdin)')
    .option(
      "--token <name>",
      "judge it for this token of the policy file (default: the main token)",
    )
    .addOption(
      new Option("--shell <shell>", "the shell the server runs commands with (sh is read as dash)")
        .choices(["bash", "sh"]),
    )
    .option("--explain", "also list every simple command found, and what could not be classified")
    .option("--json", "print the verdict as JSON")
    .addHelpText(
      "after",
      examples([
        ["cc-executor policy check 'git status && rm -rf build'", "which rule denies it"],
        ["cc-executor policy check --token reviewer --explain 'find . -name x | xargs cat'", ""],
        ["CC_EXECUTOR_POLICY=policy.json cc-executor policy check - < commands.txt", ""],
      ]),
    )
    .action(async (text, options) => {
      const command = text === "-" ? await new Response(Deno.stdin.readable).text() : text;
      const report = inspectConfig();
      const problem = report.problems[0];
      if (problem) throw new CliError(problem.message);
      const config = report.config!;
      if (!config.policy) {
        throw new UsageError(
          "CC_EXECUTOR_POLICY is not set: there is no policy, every command may run",
        );
      }
      let judged = config.policy.defaultPolicy;
      if (options.token !== undefined) {
        const token = config.policy.tokens.find((t) => t.name === options.token);
        if (!token) {
          const known = config.policy.tokens.map((t) => t.name).join(", ") || "none";
          throw new UsageError(`No token "${options.token}" in the policy file (tokens: ${known})`);
        }
        judged = token.policy;
      }
      const shell = options.shell ?? config.shell ?? "bash";
      const dialect = dialectOf(shell);
      if (!dialect) throw new UsageError(`The policy reads bash and sh syntax, not ${shell}'s`);
      const verdict = judged
        ? checkRequest(judged, { command }, dialect)
        : { allowed: true as const };
      const analysis = options.explain ? analyseShell(command, dialect) : null;
      if (options.json) {
        ctx.output.json({
          policy: judged?.name ?? null,
          ...verdict,
          ...(analysis
            ? {
              commands: analysis.commands,
              unclassified: analysis.unclassified,
              writes: analysis.writes,
            }
            : {}),
        });
      } else {
        const paint = ctx.output.paint("stdout");
        const name = judged ? `policy "${judged.name}"` : "no policy (every command may run)";
        if (verdict.allowed) ctx.output.out(`${paint.green("allowed")} by ${name}`);
        else {
          ctx.output.out(
            `${paint.red("denied")} by ${name}, rule ${verdict.rule}: ${verdict.reason}`,
          );
          ctx.output.out(`  part: ${verdict.part}`);
          if (verdict.via.length > 0) ctx.output.out(`  via:  ${verdict.via.join(" > ")}`);
        }
        if (analysis) {
          for (const found of analysis.commands) {
            const via = found.via.length > 0 ? ` (via ${found.via.join(" > ")})` : "";
            ctx.output.out(`  command: ${found.text}${via}`);
          }
          for (const unknown of analysis.unclassified) {
            ctx.output.out(`  cannot classify: ${unknown.text}: ${unknown.why}`);
          }
          for (const write of analysis.writes) ctx.output.out(`  writes: ${write.text}`);
        }
      }
      if (!verdict.allowed) ctx.setExitCode(1);
    });
  return policy;
}
