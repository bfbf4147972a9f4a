import assert from "node:assert/strict";
import { ErrorCode, RpcError, TemplatesListResult } from "../server/protocol.ts";
import { NoStore } from "../server/store/none.ts";
import { SqliteStore } from "../server/store/sqlite.ts";
import { parseTemplate, type Template, TemplateSet } from "./loader.ts";
import { listTemplates, renderNamed } from "./status.ts";

function template(name: string, text: string): Template {
  const { template } = parseTemplate(text, { name, file: `/t/${name}.md` });
  assert.ok(template, name);
  return template;
}

const set = new TemplateSet(
  [
    template("terse", "---\norder: 3\ndescription: Terse\n---\nTersely: {{prompt}}"),
    template("mild", "---\norder: 1\n---\nIn {{word_budget}} words: {{prompt}}"),
  ],
  [{ file: "/t/broken.md", line: 2, message: "unknown placeholder {{promt}}" }],
  { dir: "/t", dirNote: null, loadedAt: new Date(0) },
);

Deno.test("templates status: list joins each template with its statistics from the store", async () => {
  await using store = new SqliteStore(":memory:");
  await store.recordTemplateOutcome({ template: "terse", success: true, at: 1000 });
  await store.recordTemplateOutcome({ template: "terse", success: false, at: 2000 });
  await store.recordTemplateOutcome({ template: "gone", success: true, at: 3000 }); // not loaded
  const result = await listTemplates(set, store);
  TemplatesListResult.parse(result);
  assert.deepStrictEqual(result, {
    dir: "/t",
    dir_note: null,
    loaded_at: "1970-01-01T00:00:00.000Z",
    templates: [
      {
        name: "mild",
        file: "/t/mild.md",
        source: "user",
        overrides: null,
        description: "",
        order: 1,
        placeholders: ["word_budget", "prompt"],
        uses: 0,
        successes: 0,
        success_rate: null,
        last_used_at: null,
      },
      {
        name: "terse",
        file: "/t/terse.md",
        source: "user",
        overrides: null,
        description: "Terse",
        order: 3,
        placeholders: ["prompt"],
        uses: 2,
        successes: 1,
        success_rate: 0.5,
        last_used_at: "1970-01-01T00:00:02.000Z",
      },
    ],
    problems: [{ file: "/t/broken.md", line: 2, message: "unknown placeholder {{promt}}" }],
    stats_note: null,
  });
});

Deno.test("templates status: without statistics the templates are still listed, with a note", async () => {
  const off = await listTemplates(set, new NoStore());
  assert.deepStrictEqual(off.templates.map((t) => [t.name, t.uses, t.success_rate]), [
    ["mild", 0, null],
    ["terse", 0, null],
  ]);
  assert.match(off.stats_note ?? "", /^no template statistics: history is off on this server/);
  const down = await listTemplates(set, {
    templateStats: () =>
      Promise.reject(new Error("Redis at redis://x is unreachable: ECONNREFUSED")),
  });
  assert.equal(
    down.stats_note,
    "template statistics are unavailable: Redis at redis://x is unreachable: ECONNREFUSED",
  );
});

Deno.test("templates status: render names the known templates when the name is unknown", () => {
  assert.deepStrictEqual(
    renderNamed(set, { name: "mild", prompt: "Go", max_output_tokens: 1000 }),
    {
      name: "mild",
      text: "In 600 words: Go",
      max_output_tokens: 1000,
      word_budget: 600,
      attempt: 2,
    },
  );
  assert.throws(() => renderNamed(set, { name: "nope", prompt: "Go" }), (error: RpcError) => {
    assert.ok(error instanceof RpcError);
    assert.equal(error.code, ErrorCode.TEMPLATE_NOT_FOUND);
    assert.equal(
      error.message,
      'Template "nope" is not loaded: no template has that name. Known: mild, terse',
    );
    assert.deepStrictEqual(error.data, { name: "nope", known: ["mild", "terse"] });
    return true;
  });
  assert.throws(
    () => renderNamed(set, { name: "broken", prompt: "Go" }),
    /^RpcError: Template "broken" is not loaded: its file was refused \(\/t\/broken\.md:2: unknown placeholder \{\{promt\}\}\)\. Known: mild, terse$/,
  );
});
