/**
 * The markdown report of a `test assess` run: a summary table, then every
 * scenario with every check, each quoting the evidence it was judged on and
 * naming the file that holds all of it.
 *
 * @module
 */
import type { Area, ScenarioResult } from "./scenario.ts";

/** PASS, FAIL or SKIPPED: a skipped scenario never counts as passed. */
export function verdict(r: ScenarioResult): "PASS" | "FAIL" | "SKIPPED" {
  if (!r.ok) return "FAIL";
  return r.skipped !== null ? "SKIPPED" : "PASS";
}

/** What the run was and what it ran against. */
export interface AssessRun {
  id: string;
  started: Date;
  areas: Area[];
  /** Per area: the URL, how it was chosen, and the server's version as it reported it. */
  targets: Partial<Record<Area, { url: string; source: string; version: string }>>;
  results: ScenarioResult[];
}

/** `report.md`. */
export function renderReport(run: AssessRun): string {
  const failed = run.results.filter((r) => !r.ok);
  const skipped = run.results.filter((r) => verdict(r) === "SKIPPED");
  const lines: string[] = [
    `# cc-executor self-assessment: ${failed.length === 0 ? "PASS" : "FAIL"}`,
    "",
    `- Run: \`${run.id}\`, started ${run.started.toISOString()}`,
    `- Areas: ${run.areas.join(", ")}`,
    `- Scenarios: ${run.results.length - failed.length - skipped.length} of ` +
    `${run.results.length} passed, ${failed.length} failed, ${skipped.length} skipped`,
  ];
  for (const area of run.areas) {
    const target = run.targets[area];
    if (target) {
      lines.push(`- ${area}: ${target.url} (${target.source}), ${target.version}`);
    }
  }
  lines.push(
    "",
    "Every file named below is in this folder: `connection-N.jsonl` holds every frame of one",
    "WebSocket connection (`out`: sent, `in`: received, `ms` since it opened); `cli-N.txt` holds",
    "a CLI run's command line, exit code, stdout and stderr.",
    "",
    "| Area | Scenario | Result | Checks | Time |",
    "| ---- | -------- | ------ | -----: | ---: |",
  );
  for (const r of run.results) {
    const passed = r.checks.filter((c) => c.ok).length;
    lines.push(
      `| ${r.area} | [${r.name}](#${anchor(r)}) | ${emphasis(verdict(r))} | ` +
        `${passed}/${r.checks.length} | ${(r.duration_ms / 1000).toFixed(1)} s |`,
    );
  }
  for (const r of run.results) {
    lines.push("", `## ${r.area}/${r.name}: ${verdict(r)}`, "", r.title, "");
    lines.push(`Evidence folder: \`${r.dir}/\``, "");
    if (r.error !== null) {
      lines.push(`**Stopped before it was done:** ${r.error}`, "");
    }
    if (r.skipped !== null) {
      lines.push(`**Skipped, not passed:** ${r.skipped}`, "");
    } else if (r.checks.length === 0) {
      lines.push("No check was reached, so nothing was shown to hold.", "");
    }
    for (const check of r.checks) {
      lines.push(
        `- ${check.ok ? "PASS" : "**FAIL**"}: ${check.what}`,
        `  - expected: ${inline(check.expected)}`,
        `  - actual: ${inline(check.actual)}`,
        `  - evidence: \`${check.evidence.file}\``,
        "",
        fence(check.evidence.quote, "  "),
        "",
      );
    }
  }
  return lines.join("\n").replace(/\n{3,}/g, "\n\n").trimEnd() + "\n";
}

/** The heading's anchor as GitHub makes it. */
function anchor(r: ScenarioResult): string {
  return `${r.area}${r.name}-${verdict(r)}`.toLowerCase().replace(/[^a-z0-9-]/g, "");
}

function emphasis(text: string): string {
  return text === "PASS" ? text : `**${text}**`;
}

function inline(text: string): string {
  const short = text.length > 300 ? `${text.slice(0, 300)}... (${text.length} characters)` : text;
  const ticks = short.includes("`") ? "``" : "`";
  return `${ticks}${short.replaceAll("\n", "\\n")}${ticks}`;
}

/** A fenced block long enough not to be closed by backticks in the quote. */
function fence(text: string, indent: string): string {
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const marks = "`".repeat(longest + 1);
  return [marks, ...(text === "" ? ["(nothing)"] : text.split("\n")), marks]
    .map((line) => indent + line).join("\n");
}
