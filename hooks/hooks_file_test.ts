import assert from "node:assert/strict";
import { processAlive } from "../server/process.ts";
import { createLogger, silentLogger } from "../server/log.ts";
import type { LoadedHooks } from "./hook.ts";
import { commandHooksFile, type CommandHooksFileOptions, loadCommandHooks } from "./hooks_file.ts";
import type { PreExecutionContext } from "./types.ts";

const never = new AbortController().signal;

const ctx: PreExecutionContext = {
  point: "pre_execution",
  job_id: "job-7",
  session_id: null,
  attempt: 1,
  dry_run: true,
  request: { command: "make test", cwd: null, env: {}, timeout: null },
};

/** A hooks folder in a temporary directory, removed when the test ends. */
class HooksDir implements AsyncDisposable {
  readonly file: string;
  private constructor(readonly dir: string) {
    this.file = `${dir}/hooks.json`;
  }

  static async create(): Promise<HooksDir> {
    const dir = await Deno.makeTempDir({ prefix: "cc-executor-hooks-file-" });
    // Temporary directories are private already; say it, so a umask cannot make the test lie.
    await Deno.chmod(dir, 0o700);
    return new HooksDir(dir);
  }

  /** Writes an executable sh script at `name` (relative to the folder), creating folders. */
  async script(name: string, body: string, mode = 0o755): Promise<string> {
    const path = `${this.dir}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`);
    await Deno.chmod(path, mode);
    return path;
  }

  async json(value: unknown): Promise<void> {
    await this.text(JSON.stringify(value, null, 2));
  }

  async text(text: string): Promise<void> {
    await Deno.writeTextFile(this.file, text);
    await Deno.chmod(this.file, 0o644);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.chmod(this.dir, 0o700);
    await Deno.remove(this.dir, { recursive: true });
  }
}

function options(overrides: Partial<CommandHooksFileOptions> = {}): CommandHooksFileOptions {
  return { explicit: false, defaultTimeoutMs: 4321, logger: silentLogger, ...overrides };
}

/** A logger that keeps its warnings. */
function capturingLogger(): { logger: CommandHooksFileOptions["logger"]; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger("warn", { write: (line) => lines.push(line) }), lines };
}

function messages(loaded: LoadedHooks): string[] {
  return loaded.problems.map((problem) => problem.message);
}

Deno.test("hooks file: a valid file loads every entry with its options and defaults", async () => {
  await using dir = await HooksDir.create();
  await dir.script("audit.sh", "exit 0");
  await dir.json({
    hooks: [
      {
        name: "audit-log",
        point: "post_execution",
        command: ["./audit.sh", "--json"],
        timeout_ms: 2000,
        on_failure: "block",
        required: false,
        env: { AUDIT_DIR: "/var/log/audit" },
        shell: false,
      },
      { name: "guard", point: "pre_execution", command: ["./audit.sh"], required: true },
      { name: "plain-pre", point: "pre_execution", command: "exit 0", shell: true },
      { name: "errors", point: "error", command: ["true"] },
    ],
  });
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.deepEqual(loaded.problems, []);
  assert.deepEqual(
    loaded.hooks.map((h) => [h.name, h.point, h.timeoutMs, h.onFailure, h.required]),
    [
      ["audit-log", "post_execution", 2000, "block", false],
      ["guard", "pre_execution", 4321, "block", true],
      ["plain-pre", "pre_execution", 4321, "proceed", false],
      ["errors", "error", 4321, "proceed", false],
    ],
  );
  assert.deepEqual(loaded.hooks.map((h) => h.source), [
    { kind: "command", location: dir.file, command: ["./audit.sh", "--json"] },
    { kind: "command", location: dir.file, command: ["./audit.sh"] },
    { kind: "command", location: dir.file, command: ["exit 0"] },
    { kind: "command", location: dir.file, command: ["true"] },
  ]);
});

Deno.test("hooks file: a relative program and the default cwd resolve against the file's folder", async () => {
  await using dir = await HooksDir.create();
  await dir.script("bin/where.sh", `printf '{"message": "%s %s"}' "$(pwd -P)" "$1"`);
  await dir.json({
    hooks: [{ name: "where", point: "pre_execution", command: ["./bin/where.sh", "arg one"] }],
  });
  // The server's working directory is not the hooks folder: only the file's folder can make
  // ./bin/where.sh resolve and become the hook's cwd.
  assert.notEqual(Deno.cwd(), dir.dir);
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.deepEqual(messages(loaded), []);
  assert.deepEqual(await loaded.hooks[0]!.invoke(ctx, never), {
    message: `${await Deno.realPath(dir.dir)} arg one`,
  });
});

Deno.test("hooks file: a bare program name is found on PATH", async () => {
  await using dir = await HooksDir.create();
  await dir.json({
    hooks: [{
      name: "from-path",
      point: "pre_execution",
      command: ["sh", "-c", `echo '{"message": "from PATH"}'`],
    }],
  });
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.deepEqual(await loaded.hooks[0]!.invoke(ctx, never), { message: "from PATH" });
});

Deno.test("hooks file: shell: true runs the string with sh -c", async () => {
  await using dir = await HooksDir.create();
  await dir.json({
    hooks: [{
      name: "shell",
      point: "pre_execution",
      shell: true,
      // A pipe, a substitution and reading stdin: only a shell does all three.
      command: `job=$(cat | sed -n 's/.*"job_id":"\\([^"]*\\)".*/\\1/p'); ` +
        `echo "a b" | tr ' ' - | xargs printf '{"message": "%s '"$job"'"}'`,
    }],
  });
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.deepEqual(messages(loaded), []);
  assert.deepEqual(await loaded.hooks[0]!.invoke(ctx, never), { message: "a-b job-7" });
});

Deno.test("hooks file: env is set for the hook and a relative cwd resolves against the folder", async () => {
  await using dir = await HooksDir.create();
  await Deno.mkdir(`${dir.dir}/work`);
  await dir.script("env.sh", `printf '{"message": "%s in %s"}' "$AUDIT_DIR" "$(pwd -P)"`);
  await dir.json({
    hooks: [{
      name: "env",
      point: "pre_execution",
      // Against the file's folder, not against cwd (where there is no env.sh).
      command: ["./env.sh"],
      cwd: "work",
      env: { AUDIT_DIR: "/var/log/audit" },
    }],
  });
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.deepEqual(messages(loaded), []);
  assert.deepEqual(await loaded.hooks[0]!.invoke(ctx, never), {
    message: `/var/log/audit in ${await Deno.realPath(`${dir.dir}/work`)}`,
  });
});

Deno.test("hooks file: invalid JSON is one problem with the parse error's position", async () => {
  await using dir = await HooksDir.create();
  await dir.text('{\n  "hooks": [\n    { "name": "a", }\n  ]\n}\n');
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.equal(loaded.hooks.length, 0);
  assert.equal(loaded.problems.length, 1);
  assert.equal(loaded.problems[0]!.source, dir.file);
  assert.match(loaded.problems[0]!.message, /^.*hooks\.json: invalid JSON: .*line 3 column \d+/);
});

Deno.test("hooks file: schema errors name the file and the entry's JSON path; valid entries load", async () => {
  await using dir = await HooksDir.create();
  await dir.json({
    hooks: [
      { name: "good", point: "pre_execution", command: ["true"] },
      { name: "bad-timeout", point: "pre_execution", command: ["true"], timeout_ms: -5 },
      { name: "bad-point", point: "before", command: ["true"] },
      { point: "output", command: ["true"] },
      { name: "bad-env", point: "output", command: ["true"], env: { N: 1 } },
      "not an entry",
      { name: "also-good", point: "output", command: ["true"] },
    ],
  });
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.deepEqual(loaded.hooks.map((h) => h.name), ["good", "also-good"]);
  const f = dir.file;
  assert.deepEqual(messages(loaded), [
    `${f}: hooks[1].timeout_ms: expected a positive integer`,
    `${f}: hooks[2].point: expected one of "pre_execution", "output", "post_execution", "error"`,
    `${f}: hooks[3].name: is required`,
    `${f}: hooks[4].env.N: expected a string (JSON numbers and booleans are not converted)`,
    `${f}: hooks[5]: expected an object such as { "name": ..., "point": ..., "command": [...] }`,
  ]);
  assert.deepEqual(
    loaded.problems.map((p) => p.source),
    [1, 2, 3, 4, 5].map((i) => `${f} hooks[${i}]`),
  );
});

Deno.test("hooks file: options that do not fit together are problems", async () => {
  await using dir = await HooksDir.create();
  await dir.json({
    hooks: [
      { name: "req-post", point: "post_execution", command: ["true"], required: true },
      { name: "string-no-shell", point: "pre_execution", command: "true" },
      { name: "array-shell", point: "pre_execution", command: ["true"], shell: true },
      { name: "empty", point: "pre_execution", command: [] },
      { name: "long", point: "pre_execution", command: ["true"], timeout_ms: 600_001 },
      { name: "cwd", point: "pre_execution", command: ["true"], cwd: "nowhere" },
    ],
  });
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.equal(loaded.hooks.length, 0);
  const m = messages(loaded);
  assert.equal(m.length, 6);
  assert.match(m[0]!, /hooks\[0\]\.required: only pre_execution hooks can be required/);
  assert.match(m[1]!, /hooks\[1\]\.command: expected an array of strings .*"shell": true/);
  assert.match(m[2]!, /hooks\[2\]\.command: with "shell": true, expected one string/);
  assert.match(m[3]!, /hooks\[3\]\.command\[0\]: expected the program to run/);
  assert.match(m[4]!, /hooks\[4\]\.timeout_ms: expected at most 600000/);
  assert.match(m[5]!, new RegExp(`hooks\\[5\\]\\.cwd: ${dir.dir}/nowhere does not exist`));
});

Deno.test("hooks file: duplicate names are refused after the first", async () => {
  await using dir = await HooksDir.create();
  await dir.json({
    hooks: [
      { name: "same", point: "pre_execution", command: ["true"] },
      { name: "other", point: "output", command: ["true"] },
      { name: "same", point: "post_execution", command: ["true"] },
    ],
  });
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.deepEqual(loaded.hooks.map((h) => [h.name, h.point]), [
    ["same", "pre_execution"],
    ["other", "output"],
  ]);
  assert.deepEqual(messages(loaded), [
    `${dir.file}: hooks[2].name: "same" is already the name of hooks[0]`,
  ]);
});

Deno.test("hooks file: unknown keys are refused, with a hint for a near miss", async () => {
  await using dir = await HooksDir.create();
  await dir.json({
    hooks: [
      { name: "typo", point: "pre_execution", command: ["true"], timeout: 10 },
      { name: "odd", point: "pre_execution", command: ["true"], color: "red" },
      { name: "fine", point: "pre_execution", command: ["true"] },
    ],
  });
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.deepEqual(loaded.hooks.map((h) => h.name), ["fine"]);
  assert.equal(
    messages(loaded)[0],
    `${dir.file}: hooks[0].timeout: unknown key (did you mean "timeout_ms"?)`,
  );
  assert.match(
    messages(loaded)[1]!,
    /hooks\[1\]\.color: unknown key \(expected one of name, point, command,/,
  );

  await dir.json({ hooks: [], version: 2 });
  await using top = await loadCommandHooks(dir.file, options());
  assert.deepEqual(messages(top), [`${dir.file}: version: unknown key (expected one of hooks)`]);

  await dir.json([{ name: "x" }]);
  await using notObject = await loadCommandHooks(dir.file, options());
  assert.deepEqual(messages(notObject), [
    `${dir.file}: the file: expected an object such as { "hooks": [ ... ] }`,
  ]);
});

Deno.test("hooks file: a missing file is a problem only when it was named explicitly", async () => {
  await using dir = await HooksDir.create();
  await using quiet = await loadCommandHooks(dir.file, options({ explicit: false }));
  assert.deepEqual([quiet.hooks, quiet.problems], [[], []]);

  await using named = await loadCommandHooks(dir.file, options({ explicit: true }));
  assert.equal(named.hooks.length, 0);
  assert.deepEqual(named.problems.map((p) => p.source), [dir.file]);
  assert.match(
    named.problems[0]!.message,
    /hooks\.json: not found \(CC_EXECUTOR_HOOKS_CONFIG names it/,
  );
});

Deno.test("hooks file: a world-writable hooks.json is refused with a warning", async () => {
  await using dir = await HooksDir.create();
  await dir.json({ hooks: [{ name: "a", point: "pre_execution", command: ["true"] }] });
  await Deno.chmod(dir.file, 0o666);
  const { logger, lines } = capturingLogger();
  await using loaded = await loadCommandHooks(dir.file, options({ logger }));
  assert.equal(loaded.hooks.length, 0);
  assert.equal(loaded.problems.length, 1);
  assert.match(
    loaded.problems[0]!.message,
    /hooks\.json: refused because .*hooks\.json is writable by everyone/,
  );
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /WARN {2}Refusing command hooks file .*writable by everyone/);

  // The same file loads once it is fixed: the refusal was about the mode, nothing else.
  await Deno.chmod(dir.file, 0o644);
  await using fixed = await loadCommandHooks(dir.file, options());
  assert.deepEqual([fixed.hooks.length, fixed.problems], [1, []]);
});

Deno.test("hooks file: a hooks.json in a world-writable folder is refused", async () => {
  await using dir = await HooksDir.create();
  await dir.json({ hooks: [{ name: "a", point: "pre_execution", command: ["true"] }] });
  await Deno.chmod(dir.dir, 0o777);
  const { logger, lines } = capturingLogger();
  await using loaded = await loadCommandHooks(dir.file, options({ logger }));
  assert.equal(loaded.hooks.length, 0);
  assert.match(messages(loaded)[0]!, /refused because its folder .* is writable by everyone/);
  assert.equal(lines.length, 1);
});

Deno.test("hooks file: a world-writable executable (or its folder) is refused for that entry only", async () => {
  await using dir = await HooksDir.create();
  await dir.script("open.sh", "exit 0", 0o777);
  await dir.script("shared/inner.sh", "exit 0");
  await Deno.chmod(`${dir.dir}/shared`, 0o777);
  await dir.script("mine.sh", "exit 0");
  await dir.json({
    hooks: [
      { name: "open", point: "pre_execution", command: ["./open.sh"] },
      { name: "shared", point: "pre_execution", command: ["./shared/inner.sh"] },
      { name: "mine", point: "pre_execution", command: ["./mine.sh"] },
    ],
  });
  const { logger, lines } = capturingLogger();
  await using loaded = await loadCommandHooks(dir.file, options({ logger }));
  assert.deepEqual(loaded.hooks.map((h) => h.name), ["mine"]);
  assert.match(
    messages(loaded)[0]!,
    /hooks\[0\]\.command\[0\]: refused because .*open\.sh is writable by everyone/,
  );
  assert.match(
    messages(loaded)[1]!,
    /hooks\[1\]\.command\[0\]: refused because its folder .*shared is writable/,
  );
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /Refusing command hook open in /);
});

Deno.test("hooks file: a missing or non-executable program is a load problem for that entry", async () => {
  await using dir = await HooksDir.create();
  await dir.script("plain.sh", "exit 0", 0o644);
  await dir.json({
    hooks: [
      { name: "missing", point: "pre_execution", command: ["./missing.sh"] },
      { name: "plain", point: "pre_execution", command: ["./plain.sh"] },
      { name: "nowhere", point: "pre_execution", command: ["cc-executor-no-such-program"] },
      { name: "folder", point: "pre_execution", command: ["./"] },
      { name: "ok", point: "pre_execution", command: ["true"] },
    ],
  });
  await using loaded = await loadCommandHooks(dir.file, options());
  assert.deepEqual(loaded.hooks.map((h) => h.name), ["ok"]);
  const f = dir.file;
  assert.deepEqual(messages(loaded), [
    `${f}: hooks[0].command[0]: ./missing.sh does not exist (looked for ${dir.dir}/missing.sh)`,
    `${f}: hooks[1].command[0]: ${dir.dir}/plain.sh is not executable; run chmod +x on it`,
    `${f}: hooks[2].command[0]: cc-executor-no-such-program was not found on the server's PATH`,
    `${f}: hooks[3].command[0]: ${dir.dir} is not a file`,
  ]);
});

Deno.test("hooks file: disposing the loaded set kills hook calls still running", async () => {
  await using dir = await HooksDir.create();
  await dir.script("hang.sh", `echo $$ > "${dir.dir}/pid"\nsleep 30`);
  await dir.json({ hooks: [{ name: "hang", point: "pre_execution", command: ["./hang.sh"] }] });
  const loaded = await loadCommandHooks(dir.file, options());
  const call = loaded.hooks[0]!.invoke(ctx, never);
  let pid = NaN;
  while (Number.isNaN(pid)) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    pid = Number((await Deno.readTextFile(`${dir.dir}/pid`).catch(() => "")).trim() || NaN);
  }
  await loaded[Symbol.asyncDispose]();
  await assert.rejects(call, { message: "killed: the hooks were unloaded" });
  assert.equal(processAlive(pid), false);
});

Deno.test("hooks file: commandHooksFile picks the named file, else hooks.json in the folder", () => {
  assert.deepEqual(commandHooksFile({ dir: "hooks", configFile: null }), {
    path: "hooks/hooks.json",
    explicit: false,
  });
  assert.deepEqual(commandHooksFile({ dir: "hooks", configFile: "/etc/cc/hooks.json" }), {
    path: "/etc/cc/hooks.json",
    explicit: true,
  });
});
