/**
 * `cc-executor templates list|render`: the prompt templates the server
 * loaded (and refused), how often each one's retries succeeded, and what a
 * prompt becomes through one of them. docs/claude.md#templates describes the
 * templates themselves.
 *
 * @module
 */
import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import type { TemplateInfo, TemplatesListResult } from "../server/protocol.ts";
import { formatProblem } from "../templates/loader.ts";
import { positiveInt } from "./args.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import { UsageError } from "./output.ts";
import { connectTo, resolveTarget, rpc, withTarget } from "./target.ts";

/** `templates` and its subcommands. */
export function templatesCommand(ctx: CliContext) {
  const templates = new Command("templates")
    .description(
      "the server's prompt templates for Claude retries: what is loaded, how well each works, " +
        "what a prompt becomes (docs/claude.md#templates)",
    )
    .addHelpText(
      "after",
      examples([
        ["cc-executor templates list", "templates, their uses and success rates, refused files"],
        [
          'cc-executor templates render concise --prompt "Explain the build"',
          "the prompt a retry would send",
        ],
      ]),
    );

  withTarget(
    templates.command("list").alias("ls").description(
      "list the loaded templates, mildest first, with how often their retries succeeded",
    ),
  )
    .option("--strict", "exit 1 when any template file was refused (for CI)")
    .option("--json", "print the templates.list result as JSON")
    .addHelpText(
      "after",
      examples([
        ["cc-executor templates list", ""],
        ["cc-executor templates list --strict", "check a templates folder: exit 1 on a bad file"],
        ["cc-executor templates list --json | jq '.templates[] | {name, success_rate}'", ""],
      ]),
    )
    .action(async (options) => {
      await using client = await connectTo(resolveTarget(options));
      const result = await rpc(() => client.request("templates.list", {}));
      if (options.json) ctx.output.json(result);
      else printList(result, ctx);
      if (result.problems.length > 0 && options.strict) ctx.setExitCode(1);
    });

  withTarget(
    templates.command("render").description(
      "print what a prompt becomes through a template (nothing runs)",
    ),
  )
    .argument("<name>", "the template, as `templates list` names it")
    .requiredOption("--prompt <text>", "the original prompt ('-': read it from stdin)")
    .option(
      "--max-output-tokens <n>",
      "the output-token limit Claude hit (default 32000, Claude Code's own)",
      positiveInt,
    )
    .option(
      "--attempt <n>",
      "the attempt the prompt is for (default 2, the first retry)",
      (text) => {
        const value = positiveInt(text);
        if (value > 1000) throw new InvalidArgumentError("expected at most 1000.");
        return value;
      },
    )
    .option("--json", "print {name, text, max_output_tokens, word_budget, attempt} as JSON")
    .addHelpText(
      "after",
      examples([
        ['cc-executor templates render very_concise --prompt "Review src/" --attempt 3', ""],
        ["cc-executor templates render concise --prompt - < prompt.md", "a long prompt"],
      ]),
    )
    .action(async (name, options) => {
      const prompt = options.prompt === "-"
        ? await new Response(Deno.stdin.readable).text()
        : options.prompt;
      if (prompt.trim() === "") {
        throw new UsageError("option '--prompt <text>' is empty: give the prompt to rewrite");
      }
      await using client = await connectTo(resolveTarget(options));
      const result = await rpc(() =>
        client.request("templates.render", {
          name,
          prompt,
          max_output_tokens: options.maxOutputTokens,
          attempt: options.attempt,
        })
      );
      if (options.json) return ctx.output.json(result);
      ctx.output.write("stdout", result.text.endsWith("\n") ? result.text : result.text + "\n");
      ctx.output.err(
        ctx.output.paint("stderr").dim(
          `(${result.name}: a budget of ${result.word_budget} words for a limit of ` +
            `${result.max_output_tokens} output tokens, attempt ${result.attempt})`,
        ),
      );
    });

  return templates;
}

/** The table on stdout; refused files, and why the statistics are missing, on stderr. */
function printList(result: TemplatesListResult, ctx: CliContext): void {
  if (result.templates.length === 0) ctx.output.err("no templates are loaded");
  else {
    ctx.output.table(
      ["NAME", "ORDER", "SOURCE", "USES", "SUCCESS", "DESCRIPTION"],
      result.templates.map((template) => [
        template.name,
        String(template.order),
        sourceText(template),
        String(template.uses),
        rateText(template),
        template.description,
      ]),
    );
  }
  if (result.stats_note) ctx.output.err(`note: ${result.stats_note}`);
  if (result.dir_note) ctx.output.err(`note: ${result.dir_note}`);
  if (result.problems.length > 0) {
    ctx.output.err(
      `${result.problems.length} ${
        result.problems.length === 1 ? "problem" : "problems"
      } in template files (those files were refused):`,
    );
    const cwd = Deno.cwd();
    for (const problem of result.problems) ctx.output.err(`  ${formatProblem(problem, cwd)}`);
  }
}

/** "built-in", "user", or "user (replaces the built-in)". */
function sourceText(template: TemplateInfo): string {
  if (template.source === "builtin") return "built-in";
  return template.overrides ? "user (replaces built-in)" : "user";
}

/** "75% (3/4)", or "-" for a template never used. */
function rateText(template: TemplateInfo): string {
  if (template.success_rate === null) return "-";
  return `${Math.round(template.success_rate * 100)}% (${template.successes}/${template.uses})`;
}
