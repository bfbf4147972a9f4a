/**
 * The templates on the wire: `templates.list` (the loaded templates with
 * their measured success, and the refused files) and `templates.render`.
 *
 * @module
 */
import { basename } from "node:path";
import {
  ErrorCode,
  RpcError,
  type TemplatesListResult,
  type TemplatesRenderResult,
} from "../server/protocol.ts";
import { HistoryOffError } from "../server/store/none.ts";
import type { Store, TemplateStatsRecord } from "../server/store/store.ts";
import { formatProblem, type TemplateSet } from "./loader.ts";
import { renderTemplate } from "./render.ts";
import { successRate } from "./select.ts";

/**
 * `templates.list`: every loaded template with its statistics from the store. A store that cannot
 * answer (history off, Redis down) does not hide the templates: they are listed as never used and
 * `stats_note` says why.
 */
export async function listTemplates(
  set: TemplateSet,
  store: Pick<Store, "templateStats">,
): Promise<TemplatesListResult> {
  let stats: TemplateStatsRecord[] = [];
  let statsNote: string | null = null;
  try {
    stats = await store.templateStats();
  } catch (error) {
    statsNote = error instanceof HistoryOffError
      ? `no template statistics: ${error.message}`
      : `template statistics are unavailable: ${(error as Error)?.message ?? error}`;
  }
  const byName = new Map(stats.map((record) => [record.template, record]));
  return {
    dir: set.dir,
    dir_note: set.dirNote,
    loaded_at: set.loadedAt.toISOString(),
    templates: set.templates.map((template) => {
      const record = byName.get(template.name);
      const uses = record?.uses ?? 0;
      const successes = record?.successes ?? 0;
      return {
        name: template.name,
        file: template.file,
        source: template.source,
        overrides: template.overrides,
        description: template.description,
        order: template.order,
        placeholders: [...template.placeholders],
        uses,
        successes,
        success_rate: successRate(uses, successes),
        last_used_at: record ? new Date(record.last_used_at).toISOString() : null,
      };
    }),
    problems: set.problems.map(({ file, line, message }) => ({ file, line, message })),
    stats_note: statsNote,
  };
}

/**
 * `templates.render`: the prompt as template `name` rewrites it.
 * @throws {RpcError} TEMPLATE_NOT_FOUND naming the loaded templates (and, when a file of that name
 * was refused, why).
 */
export function renderNamed(
  set: TemplateSet,
  params: { name: string; prompt: string; max_output_tokens?: number; attempt?: number },
): TemplatesRenderResult {
  const template = set.get(params.name);
  if (!template) {
    const known = set.names;
    const refused = set.problems.filter((problem) =>
      basename(problem.file) === `${params.name}.md`
    );
    const why = refused.length > 0
      ? `its file was refused (${refused.map((problem) => formatProblem(problem)).join("; ")})`
      : "no template has that name";
    throw new RpcError(
      ErrorCode.TEMPLATE_NOT_FOUND,
      `Template "${params.name}" is not loaded: ${why}. Known: ${known.join(", ") || "none"}`,
      { name: params.name, known },
    );
  }
  const rendered = renderTemplate(template, params);
  return { name: template.name, ...rendered };
}
