import assert from "node:assert/strict";
import { join } from "node:path";
import {
  BUILTIN_DIR,
  formatProblem,
  loadTemplates,
  MAX_TEMPLATE_BYTES,
  parseTemplate,
  PLACEHOLDERS,
  type Template,
  type TemplateProblem,
} from "./loader.ts";

const KNOWN = "(known: prompt, max_output_tokens, word_budget, attempt)";

/** The problems of a text that must be refused. */
function refused(text: string, name = "foo"): TemplateProblem[] {
  const result = parseTemplate(text, { name, file: `/t/${name}.md` });
  assert.equal(result.template, null, "the template was accepted");
  return result.problems;
}

function accepted(text: string, name = "foo"): Template {
  const result = parseTemplate(text, { name, file: `/t/${name}.md` });
  assert.deepStrictEqual(result.problems, []);
  return result.template!;
}

/** A temporary folder holding `files`; removed on dispose. */
async function folder(files: Record<string, string>) {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-templates-" });
  for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(join(dir, name), text);
  return {
    dir,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("templates loader: the built-ins load without problems, ranked by conciseness", async () => {
  const set = await loadTemplates({ dir: "/nonexistent/templates" });
  assert.deepStrictEqual(set.problems, []);
  assert.deepStrictEqual(
    set.templates.map((t) => [t.name, t.order, t.source]),
    [
      ["concise", 1, "builtin"],
      ["summary_first", 2, "builtin"],
      ["very_concise", 3, "builtin"],
      ["outline_only", 4, "builtin"],
    ],
  );
  for (const template of set.templates) {
    assert.equal(template.file, join(BUILTIN_DIR, `${template.name}.md`));
    assert.ok(template.description.length > 10, `${template.name} has a description`);
    assert.ok(template.placeholders.includes("prompt"));
    // A retry prompt that says nothing about the budget would not ask for a shorter answer.
    assert.ok(template.placeholders.includes("word_budget"), `${template.name} uses the budget`);
  }
});

Deno.test("templates loader: front matter gives description and order; the body is split at placeholders", () => {
  const template = accepted(
    "---\r\ndescription: Short  and\r\n  sweet\r\norder: 3\r\n---\r\n\r\nIn {{ word_budget }} words:\r\n{{prompt}}\r\n(attempt {{attempt}}, {{prompt}})\r\n\r\n",
  );
  assert.equal(template.description, "Short and sweet");
  assert.equal(template.order, 3);
  assert.equal(template.source, "user");
  assert.equal(template.overrides, null);
  assert.deepStrictEqual(template.parts, [
    { text: "In " },
    { placeholder: "word_budget" },
    { text: " words:\n" },
    { placeholder: "prompt" },
    { text: "\n(attempt " },
    { placeholder: "attempt" },
    { text: ", " },
    { placeholder: "prompt" },
    { text: ")" },
  ]);
  assert.deepStrictEqual(template.placeholders, ["word_budget", "prompt", "attempt"]);

  // No front matter: order 1, no description. An empty front matter is the same.
  for (const text of ["{{prompt}}", "---\n---\n{{prompt}}"]) {
    const plain = accepted(text);
    assert.equal(plain.order, 1);
    assert.equal(plain.description, "");
    assert.deepStrictEqual(plain.parts, [{ placeholder: "prompt" }]);
  }
  // A --- further down is text, not front matter.
  assert.deepStrictEqual(accepted("{{prompt}}\n---\nx: y").parts, [
    { placeholder: "prompt" },
    { text: "\n---\nx: y" },
  ]);
});

Deno.test("templates loader: an unknown placeholder is refused with its line and the known names", () => {
  const text = [
    "---",
    "description: typo",
    "order: 2",
    "---",
    "",
    "Answer briefly.",
    "Task: {{promt}}",
  ].join("\n");
  const problems = refused(text);
  assert.deepStrictEqual(problems[1], {
    file: "/t/foo.md",
    line: 7,
    message: `unknown placeholder {{promt}} ${KNOWN}`,
  });
  assert.equal(
    formatProblem(problems[1]!, "/"),
    `t/foo.md:7: unknown placeholder {{promt}} ${KNOWN}`,
  );
  assert.equal(formatProblem(problems[1]!), `/t/foo.md:7: unknown placeholder {{promt}} ${KNOWN}`);
  // The typo also leaves the template without the prompt: said too, at the body's first line,
  // and first, as problems come in line order.
  assert.deepStrictEqual(problems[0], {
    file: "/t/foo.md",
    line: 5,
    message: "missing {{prompt}}: every template must include the original prompt",
  });
  assert.equal(problems.length, 2);
  assert.deepStrictEqual(PLACEHOLDERS, ["prompt", "max_output_tokens", "word_budget", "attempt"]);
});

Deno.test("templates loader: unclosed and malformed placeholders are refused, each on its line", () => {
  assert.deepStrictEqual(refused("{{prompt}}\nIn {{word_budget words\n{{ attempt }}"), [
    { file: "/t/foo.md", line: 2, message: "unclosed {{: expected }} on the same line" },
  ]);
  // Closed only on the next line: still unclosed, so no placeholder spans lines.
  assert.deepStrictEqual(refused("{{prompt}} {{word_budget\n}}").map((p) => p.line), [1]);
  assert.deepStrictEqual(refused("{{prompt}}\n\n{{ two words }} and {{}}"), [
    {
      file: "/t/foo.md",
      line: 3,
      message: `invalid placeholder {{ two words }}: expected a name ${KNOWN}`,
    },
    { file: "/t/foo.md", line: 3, message: `invalid placeholder {{}}: expected a name ${KNOWN}` },
  ]);
});

Deno.test("templates loader: a template without {{prompt}} is refused", () => {
  for (const text of ["", "Be brief in {{word_budget}} words.", "---\norder: 2\n---\nNo prompt"]) {
    const problems = refused(text);
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.match(problems[0]!.message, /^missing \{\{prompt\}\}/);
  }
  assert.equal(refused("---\norder: 2\n---\nNo prompt")[0]!.line, 4);
});

Deno.test("templates loader: bad front matter is refused with the line of the bad key", () => {
  const cases: [string, number, RegExp][] = [
    [
      "---\ndescription: ok\nordr: 2\n---\n{{prompt}}",
      3,
      /^bad front matter: unknown key "ordr" \(known: description, order\)$/,
    ],
    [
      "---\norder: two\n---\n{{prompt}}",
      2,
      /^bad front matter: order must be a whole number from 1 to 1000 .*got "two"$/,
    ],
    ["---\n\norder: 0\n---\n{{prompt}}", 3, /order must be a whole number.*got 0$/],
    ["---\norder: 1.5\n---\n{{prompt}}", 2, /order must be a whole number.*got 1\.5$/],
    [
      "---\ndescription: [a, b]\n---\n{{prompt}}",
      2,
      /^bad front matter: description must be a line of text$/,
    ],
    ["---\norder: 1\norder: 2\n---\n{{prompt}}", 3, /^bad front matter: .*unique/i],
    ["---\ndescription: a: b\n---\n{{prompt}}", 2, /^bad front matter: /],
    ["---\n- a list\n---\n{{prompt}}", 2, /^bad front matter: expected key: value lines/],
    ["---\ndescription: never closed\n{{prompt}}", 1, /^front matter is not closed/],
  ];
  for (const [text, line, message] of cases) {
    const problems = refused(text);
    assert.equal(problems.length, 1, `${JSON.stringify(text)}: ${JSON.stringify(problems)}`);
    assert.equal(problems[0]!.line, line, `${JSON.stringify(text)}: ${problems[0]!.message}`);
    assert.match(problems[0]!.message, message, JSON.stringify(text));
  }
});

Deno.test("templates loader: a file name that is not a plain name is refused", () => {
  const problems = refused("{{prompt}}", "my template");
  assert.deepStrictEqual(problems.map((p) => p.line), [null]);
  assert.match(problems[0]!.message, /^invalid template name "my template": /);
  assert.equal(
    formatProblem(problems[0]!),
    `/t/my template.md: ${problems[0]!.message}`,
    "a problem without a line has none in its text",
  );
});

Deno.test("templates loader: the user's folder adds and overrides by name; a bad file is refused, the rest load", async () => {
  await using user = await folder({
    "concise.md": "---\ndescription: my concise\norder: 2\n---\nMine: {{prompt}}",
    "haiku.md": "---\norder: 9\n---\nAs a haiku: {{prompt}}",
    // A bad override: the built-in stays.
    "outline_only.md": "{{prompt}} {{word_budgt}}",
    "broken.md": "---\norder: 2\n---\n\n\n\nTask: {{promt}}\n",
    "notes.txt": "not a template {{",
  });
  await Deno.mkdir(join(user.dir, "folder.md"));
  const set = await loadTemplates({ dir: user.dir });
  assert.deepStrictEqual(set.templates.map((t) => [t.name, t.order, t.source]), [
    ["concise", 2, "user"],
    ["summary_first", 2, "builtin"],
    ["very_concise", 3, "builtin"],
    ["outline_only", 4, "builtin"],
    ["haiku", 9, "user"],
  ]);
  assert.equal(set.get("concise")!.description, "my concise");
  assert.equal(set.get("concise")!.file, join(user.dir, "concise.md"));
  assert.equal(set.get("concise")!.overrides, join(BUILTIN_DIR, "concise.md"));
  assert.equal(set.get("haiku")!.overrides, null);
  assert.equal(set.get("broken"), undefined);
  assert.deepStrictEqual(set.problems.map((p) => formatProblem(p, user.dir)), [
    "broken.md:4: missing {{prompt}}: every template must include the original prompt",
    `broken.md:7: unknown placeholder {{promt}} ${KNOWN}`,
    `outline_only.md:1: unknown placeholder {{word_budgt}} ${KNOWN}`,
  ]);
  assert.equal(set.dir, user.dir);
  assert.equal(set.dirNote, null);
});

Deno.test("templates loader: the built-ins' own folder is not read twice; a missing folder is no problem", async () => {
  // Relative to a cwd where "templates" is the built-ins' folder: the checkout itself.
  const own = await loadTemplates({ cwd: join(BUILTIN_DIR, ".."), dir: "templates" });
  assert.deepStrictEqual(own.problems, []);
  assert.equal(own.templates.length, 4);
  assert.ok(own.templates.every((t) => t.source === "builtin" && t.overrides === null));
  assert.match(
    own.dirNote ?? "",
    /is the built-in templates' folder, so it is not read a second time/,
  );

  const missing = await loadTemplates({ cwd: "/nonexistent", dir: "templates" });
  assert.deepStrictEqual(missing.problems, []);
  assert.equal(missing.dir, "/nonexistent/templates");
  assert.equal(missing.dirNote, null);
  assert.equal(missing.templates.length, 4);
});

Deno.test("templates loader: unreadable and oversized files are refused without a line", async () => {
  await using user = await folder({
    "big.md": "{{prompt}}" + "x".repeat(MAX_TEMPLATE_BYTES),
    "ok.md": "{{prompt}}",
  });
  const file = join(user.dir, "not_a_folder");
  await Deno.writeTextFile(file, "");
  const set = await loadTemplates({ dir: user.dir });
  assert.deepStrictEqual(set.problems.map((p) => [p.file, p.line]), [[
    join(user.dir, "big.md"),
    null,
  ]]);
  assert.match(
    set.problems[0]!.message,
    /^too large: \d+ bytes \(a template may have at most 65536\)$/,
  );
  assert.ok(set.get("ok"));

  const notDir = await loadTemplates({ dir: file });
  assert.deepStrictEqual(notDir.problems.map((p) => [p.file, p.line]), [[file, null]]);
  assert.match(notDir.problems[0]!.message, /^cannot read the templates folder: /);
});

Deno.test("templates loader: no built-in templates at all is reported (a binary compiled without them)", async () => {
  await using empty = await folder({});
  const set = await loadTemplates({ builtinDir: empty.dir, dir: "/nonexistent" });
  assert.deepStrictEqual(set.templates, []);
  assert.deepStrictEqual(set.problems, [{
    file: empty.dir,
    line: null,
    message: "no built-in templates found here (a compiled binary needs `--include templates`)",
  }]);
});
