/**
 * `cc-executor templates list|render`, run as real subprocesses against a real server
 * (`server start`) whose templates folder (CC_EXECUTOR_TEMPLATES_DIR) is a temporary one.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { TemplatesListResult, TemplatesRenderResult } from "../server/protocol.ts";
import { SqliteStore } from "../server/store/sqlite.ts";
import { BUILTIN_DIR } from "../templates/loader.ts";
import { type CliResult, runCli, startCliServer } from "./cli_util.ts";

const KNOWN = "(known: prompt, max_output_tokens, word_budget, attempt)";

/** A user folder: one new template, one that replaces a built-in, one with a typo on line 7. */
const USER_TEMPLATES: Record<string, string> = {
  "haiku.md":
    "---\ndescription: As a haiku\norder: 9\n---\nAs a haiku, {{word_budget}} words at most:\n{{prompt}}\n",
  "concise.md": "---\ndescription: Our house style\norder: 1\n---\nBriefly: {{prompt}}\n",
  "foo.md": "---\ndescription: typo\norder: 2\n---\n\nAnswer briefly.\nTask: {{promt}}\n",
};

/** A temporary folder holding `files`. */
async function folder(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-templates-" });
  for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(join(dir, name), text);
  return dir;
}

/** `server start` with `env`; stopped, and `cleanup` removed, on dispose. */
async function templatesServer(env: Record<string, string>, cleanup: string[] = []) {
  const server = await startCliServer(env);
  let log: string | undefined;
  const stop = async () => {
    if (log !== undefined) return log;
    try {
      server.child.kill("SIGTERM");
    } catch {
      // It has exited already.
    }
    await server.child.status;
    await server.child.stdout.cancel();
    return log = await server.log();
  };
  return {
    url: server.url,
    /** `cc-executor templates <args> --url <this server>`. */
    templates: (args: string[], stdin?: string) =>
      runCli(["templates", ...args, "--url", server.url], { stdin }),
    /** Stops the server; resolves to everything it logged. */
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
      for (const path of cleanup) {
        await Deno.remove(path, { recursive: true }).catch((error) => {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        });
      }
    },
  };
}

function show(result: CliResult): string {
  return `exit ${result.code}\n--- stdout\n${result.stdout}--- stderr\n${result.stderr}`;
}

/** The table row (a stdout line) that starts with `name` and a space. */
function row(stdout: string, name: string): string | undefined {
  return stdout.split("\n").find((line) => line.startsWith(name + " "));
}

// --- templates list -------------------------------------------------------------------------------

Deno.test("cli templates: list shows built-in and user templates; a bad file is refused with file:line", async () => {
  const dir = await folder(USER_TEMPLATES);
  await using server = await templatesServer({ CC_EXECUTOR_TEMPLATES_DIR: dir }, [dir]);
  const bad = `${join(dir, "foo.md")}:7: unknown placeholder {{promt}} ${KNOWN}`;

  const list = await server.templates(["list"]);
  assert.equal(list.code, 0, show(list));
  assert.match(list.stdout, /^NAME +ORDER +SOURCE +USES +SUCCESS +DESCRIPTION$/m);
  assert.match(
    row(list.stdout, "concise") ?? "",
    /^concise +1 +user \(replaces built-in\) +0 +- +Our house style$/,
  );
  assert.match(row(list.stdout, "summary_first") ?? "", /^summary_first +2 +built-in +0 +- +\S/);
  assert.match(row(list.stdout, "very_concise") ?? "", /^very_concise +3 +built-in +0 +- +\S/);
  assert.match(row(list.stdout, "outline_only") ?? "", /^outline_only +4 +built-in +0 +- +\S/);
  assert.match(row(list.stdout, "haiku") ?? "", /^haiku +9 +user +0 +- +As a haiku$/);
  assert.equal(row(list.stdout, "foo"), undefined, "the bad template is not loaded");
  // Mildest first.
  const names = list.stdout.trim().split("\n").slice(1).map((line) => line.split(" ")[0]);
  assert.deepStrictEqual(names, [
    "concise",
    "summary_first",
    "very_concise",
    "outline_only",
    "haiku",
  ]);
  // Refused files go to stderr, compiler style, so editors can jump to the line.
  // The typo also leaves foo.md without {{prompt}}: both are said, in line order.
  assert.equal(
    list.stderr,
    "2 problems in template files (those files were refused):\n" +
      `  ${join(dir, "foo.md")}:5: missing {{prompt}}: every template must include the ` +
      "original prompt\n" +
      `  ${bad}\n`,
  );

  const strict = await server.templates(["list", "--strict"]);
  assert.equal(strict.code, 1, show(strict));

  const json = await server.templates(["list", "--json"]);
  assert.equal(json.code, 0, show(json));
  const result: TemplatesListResult = JSON.parse(json.stdout);
  assert.equal(result.dir, dir);
  assert.equal(result.dir_note, null);
  assert.equal(result.stats_note, null);
  assert.deepStrictEqual(result.problems, [
    {
      file: join(dir, "foo.md"),
      line: 5,
      message: "missing {{prompt}}: every template must include the original prompt",
    },
    { file: join(dir, "foo.md"), line: 7, message: `unknown placeholder {{promt}} ${KNOWN}` },
  ]);
  const concise = result.templates.find((t) => t.name === "concise")!;
  assert.equal(concise.file, join(dir, "concise.md"));
  assert.equal(concise.overrides, join(BUILTIN_DIR, "concise.md"));

  // The server logged the refusal too, and started anyway (it answered all of the above).
  const log = await server.stop();
  assert.ok(log.includes(`WARN  template refused: ${bad}`), log);
});

Deno.test("cli templates: list shows each template's uses and success rate from the store", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-templates-" });
  const db = join(dir, "history.db");
  {
    // Outcomes recorded earlier (by retries of this or another server sharing the file).
    await using store = new SqliteStore(db);
    for (const success of [true, true, false]) {
      await store.recordTemplateOutcome({ template: "very_concise", success, at: Date.now() });
    }
    await store.recordTemplateOutcome({ template: "concise", success: false, at: Date.now() });
  }
  await using server = await templatesServer({
    CC_EXECUTOR_DB: db,
    CC_EXECUTOR_TEMPLATES_DIR: join(dir, "none"),
  }, [dir]);

  const list = await server.templates(["list"]);
  assert.equal(list.code, 0, show(list));
  assert.equal(list.stderr, "", "nothing refused, statistics available");
  assert.match(
    row(list.stdout, "very_concise") ?? "",
    /^very_concise +3 +built-in +3 +67% \(2\/3\) +/,
  );
  assert.match(row(list.stdout, "concise") ?? "", /^concise +1 +built-in +1 +0% \(0\/1\) +/);
  assert.match(row(list.stdout, "outline_only") ?? "", /^outline_only +4 +built-in +0 +- +/);

  const json = await server.templates(["list", "--json"]);
  const result: TemplatesListResult = JSON.parse(json.stdout);
  const stats = Object.fromEntries(
    result.templates.map((t) => [t.name, [t.uses, t.successes, t.success_rate]]),
  );
  assert.deepStrictEqual(stats, {
    concise: [1, 0, 0],
    summary_first: [0, 0, null],
    very_concise: [3, 2, 2 / 3],
    outline_only: [0, 0, null],
  });
});

Deno.test("cli templates: with history off the templates are listed and the missing statistics noted", async () => {
  await using server = await templatesServer({
    CC_EXECUTOR_HISTORY: "off",
    CC_EXECUTOR_TEMPLATES_DIR: "/nonexistent/templates",
  });
  const list = await server.templates(["list"]);
  assert.equal(list.code, 0, show(list));
  assert.match(row(list.stdout, "concise") ?? "", /^concise +1 +built-in +0 +- +/);
  assert.equal(
    list.stderr,
    "note: no template statistics: history is off on this server (CC_EXECUTOR_HISTORY=off)\n",
  );
});

// --- templates render -----------------------------------------------------------------------------

Deno.test("cli templates: render prints what the prompt becomes, the prompt kept verbatim", async () => {
  const dir = await folder(USER_TEMPLATES);
  await using server = await templatesServer({ CC_EXECUTOR_TEMPLATES_DIR: dir }, [dir]);
  // Placeholder-like text and replacement patterns in the prompt stay as they are.
  const prompt = "Explain {{word_budget}} and $& in 'quotes' \"here\"";

  const haiku = await server.templates([
    "render",
    "haiku",
    "--prompt",
    prompt,
    "--max-output-tokens",
    "1000",
  ]);
  assert.equal(haiku.code, 0, show(haiku));
  assert.equal(haiku.stdout, `As a haiku, 600 words at most:\n${prompt}\n`);
  assert.equal(
    haiku.stderr,
    "(haiku: a budget of 600 words for a limit of 1000 output tokens, attempt 2)\n",
  );

  // A built-in, with every figure; --json gives them as data.
  const json = await server.templates([
    "render",
    "very_concise",
    "--prompt",
    prompt,
    "--max-output-tokens",
    "8000",
    "--attempt",
    "3",
    "--json",
  ]);
  assert.equal(json.code, 0, show(json));
  const rendered: TemplatesRenderResult = JSON.parse(json.stdout);
  assert.equal(rendered.name, "very_concise");
  assert.equal(rendered.word_budget, 4800);
  assert.equal(rendered.max_output_tokens, 8000);
  assert.equal(rendered.attempt, 3);
  assert.ok(rendered.text.includes(`<task>\n${prompt}\n</task>`), rendered.text);
  assert.match(rendered.text, /8000-token/);
  assert.match(rendered.text, /attempt 3/);
  assert.match(rendered.text, /4800/);

  // A long prompt from stdin.
  const long = "Line one\nLine two {{prompt}}\n";
  const piped = await server.templates(["render", "concise", "--prompt", "-"], long);
  assert.equal(piped.code, 0, show(piped));
  assert.equal(piped.stdout, `Briefly: ${long}`);
});

Deno.test("cli templates: render of an unknown or refused template exits 1 naming the known ones", async () => {
  const dir = await folder(USER_TEMPLATES);
  await using server = await templatesServer({ CC_EXECUTOR_TEMPLATES_DIR: dir }, [dir]);
  const known = "Known: concise, summary_first, very_concise, outline_only, haiku";

  const unknown = await server.templates(["render", "terse", "--prompt", "x"]);
  assert.equal(unknown.code, 1, show(unknown));
  assert.equal(unknown.stdout, "");
  assert.equal(
    unknown.stderr,
    `cc-executor: Template "terse" is not loaded: no template has that name. ${known}\n`,
  );

  const refused = await server.templates(["render", "foo", "--prompt", "x"]);
  assert.equal(refused.code, 1, show(refused));
  assert.match(
    refused.stderr,
    new RegExp(
      `^cc-executor: Template "foo" is not loaded: its file was refused \\(.*foo\\.md:7: unknown placeholder \\{\\{promt\\}\\}.*\\)\\. ${known}\n$`,
    ),
  );

  // Bad figures are usage errors (exit 2), caught before anything is sent.
  for (
    const args of [
      ["--max-output-tokens", "0"],
      ["--max-output-tokens", "lots"],
      ["--attempt", "1.5"],
    ]
  ) {
    const bad = await server.templates(["render", "concise", "--prompt", "x", ...args]);
    assert.equal(bad.code, 2, show(bad));
    assert.match(
      bad.stderr,
      new RegExp(`option '${args[0]} <n>' argument '${args[1]}' is invalid`),
    );
  }
  const empty = await server.templates(["render", "concise", "--prompt", "  "]);
  assert.equal(empty.code, 2, show(empty));
  assert.match(empty.stderr, /--prompt <text>' is empty/);
});
