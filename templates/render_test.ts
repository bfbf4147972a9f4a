import assert from "node:assert/strict";
import { BUILTIN_DIR, loadTemplates, parseTemplate, type Template } from "./loader.ts";
import { DEFAULT_MAX_OUTPUT_TOKENS, renderTemplate, wordBudget } from "./render.ts";

function template(text: string): Template {
  const { template, problems } = parseTemplate(text, { name: "t", file: "t.md" });
  assert.deepStrictEqual(problems, []);
  return template!;
}

Deno.test("templates render: every placeholder is filled; the budget comes from the limit", () => {
  const t = template(
    "---\norder: 2\n---\n\nLimit {{max_output_tokens}}, budget {{word_budget}}, attempt {{attempt}}.\n<task>\n{{prompt}}\n</task>\n",
  );
  assert.deepStrictEqual(
    renderTemplate(t, { prompt: "Explain X", max_output_tokens: 8000, attempt: 3 }),
    {
      text: "Limit 8000, budget 4800, attempt 3.\n<task>\nExplain X\n</task>",
      max_output_tokens: 8000,
      word_budget: 4800,
      attempt: 3,
    },
  );
  // Without figures: Claude Code's default limit, and the first retry.
  const rendered = renderTemplate(t, { prompt: "Explain X" });
  assert.equal(rendered.max_output_tokens, DEFAULT_MAX_OUTPUT_TOKENS);
  assert.equal(rendered.word_budget, 19_200);
  assert.equal(rendered.attempt, 2);
  assert.match(rendered.text, /^Limit 32000, budget 19200, attempt 2\./);
});

Deno.test("templates render: the prompt is substituted verbatim, never expanded again", () => {
  const t = template("Budget {{word_budget}}: {{prompt}}");
  const prompt = "Use {{word_budget}} and {{prompt}} literally; $& $1 $$ `x` </task>\n  trailing  ";
  const { text } = renderTemplate(t, { prompt, max_output_tokens: 1000 });
  assert.equal(text, `Budget 600: ${prompt}`);
});

Deno.test("templates render: wordBudget is ~0.6 words per token, rounded down to a round figure", () => {
  assert.equal(wordBudget(32_000), 19_200);
  assert.equal(wordBudget(64_000), 38_400);
  assert.equal(wordBudget(4_096), 2_400); // 2457.6
  assert.equal(wordBudget(1_000), 600);
  assert.equal(wordBudget(1_234), 740); // 740.4
  assert.equal(wordBudget(1), 10);
});

Deno.test("templates render: a limit or attempt that is not a whole number above 0 is refused", () => {
  const t = template("{{prompt}}");
  for (const bad of [0, -5, 1.5, NaN]) {
    assert.throws(
      () => renderTemplate(t, { prompt: "x", max_output_tokens: bad }),
      /^RangeError: Cannot render template "t": max_output_tokens must be a whole number of at least 1/,
    );
    assert.throws(() => renderTemplate(t, { prompt: "x", attempt: bad }), /attempt must be/);
  }
});

Deno.test("templates render: each built-in keeps the prompt whole and states the budget", async () => {
  const set = await loadTemplates({ cwd: BUILTIN_DIR, dir: "." });
  const prompt = "Rewrite the parser.\n\nKeep {{attempt}} as is.";
  for (const t of set.templates) {
    const { text } = renderTemplate(t, { prompt, max_output_tokens: 16_000, attempt: 3 });
    assert.ok(text.includes(`<task>\n${prompt}\n</task>`), `${t.name}:\n${text}`);
    assert.ok(text.includes("9600"), `${t.name} states the word budget`);
    assert.ok(text.includes("16000"), `${t.name} states the limit that was hit`);
    assert.doesNotMatch(text.replace(prompt, ""), /\{\{|\}\}/, `${t.name} left a placeholder`);
  }
});
