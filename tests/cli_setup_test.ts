/**
 * The setup side of the CLI, run as real subprocesses: init, config, version, completions, help,
 * colour and usage errors.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Command } from "@commander-js/extra-typings";
import type { Output, Paint } from "../cli/output.ts";
import { buildProgram } from "../cli/program.ts";
import { CONFIG_VARIABLES } from "../server/config.ts";
import { VERSION } from "../server/version.ts";
import { type CliResult, runCli } from "./cli_util.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const STACK_FRAME = "\n    at ";

/** True when `name` is an executable file somewhere on PATH. */
function onPath(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      const info = Deno.statSync(join(dir, name));
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return true;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return false;
}

const HAS_ZSH = onPath("zsh");
const HAS_FISH = onPath("fish");
const HAS_SCRIPT = onPath("script");

/**
 * `env` plus an empty value for every setting the developer's (or CI's) environment would pass
 * down: an empty value means "not set", so the CLI sees defaults unless a test says otherwise.
 * `fromFile` names settings a test puts in an env file, which an empty variable would hide.
 */
function isolated(
  env: Record<string, string> = {},
  fromFile: string[] = [],
): Record<string, string> {
  // cli_util sets CC_EXECUTOR_DB for servers the CLI starts; these tests want every default.
  const blanks: Record<string, string> = { REDIS_URL: "", CC_EXECUTOR_DB: "" };
  for (const { name } of CONFIG_VARIABLES) {
    if (Deno.env.get(name) !== undefined && !fromFile.includes(name)) blanks[name] = "";
  }
  return { ...blanks, ...env };
}

/** A port nothing listens on (bound, then released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Everything a failed assertion needs to explain itself. */
function show(result: CliResult): string {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-setup-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** `text` matched literally inside a RegExp. */
function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The rows of `config show`'s table, by variable name: [value, source]. */
function tableRows(stdout: string): Map<string, [string, string]> {
  const rows = new Map<string, [string, string]>();
  for (const line of stdout.split("\n").slice(2)) {
    const [name, value, source] = line.split(/ {2,}/);
    if (name && value !== undefined && source !== undefined) rows.set(name, [value, source]);
  }
  return rows;
}

// --- init -----------------------------------------------------------------------------------------

Deno.test("cli setup: init creates .env, hooks/ and templates/, keeps them, and --force replaces them", async () => {
  await withTempDir(async (tmp) => {
    // A directory that does not exist yet: init creates it.
    const dir = join(tmp, "executor", "here");
    const env = isolated({ CC_EXECUTOR_PORT: "0" });
    const envPath = join(dir, ".env");
    const hookPath = join(dir, "hooks", "block_rm_root.ts");

    const first = await runCli(["init", "--dir", dir], { env });
    assert.equal(first.code, 0, show(first));
    assert.equal(first.stderr, "");
    assert.match(first.stdout, new RegExp(`^created +${literal(envPath)}$`, "m"));
    assert.match(first.stdout, new RegExp(`^created +${literal(hookPath)}$`, "m"));
    assert.match(first.stdout, new RegExp(`^created +${literal(join(dir, "templates"))}/$`, "m"));
    assert.match(first.stdout, /^Checks:$/m);
    assert.match(first.stdout, /^ {2}ok {4}configuration is valid$/m);
    assert.match(first.stdout, /^ {2}ok {4}port 0: any free port will be used$/m);
    assert.doesNotMatch(first.stdout, /FAIL/);
    assert.match(first.stdout, /^Next:$/m);
    assert.ok(first.stdout.includes(`edit ${envPath}`), first.stdout);

    const template = await Deno.readTextFile(envPath);
    const lines = template.split("\n");
    for (const variable of CONFIG_VARIABLES) {
      assert.ok(
        lines.includes(`# ${variable.name}=${variable.default ?? ""}`),
        `${variable.name} missing from .env:\n${template}`,
      );
    }
    // Everything is commented out: no line sets anything.
    assert.deepEqual(lines.filter((line) => line.trim() !== "" && !line.startsWith("#")), []);
    assert.ok((await Deno.stat(join(dir, "templates"))).isDirectory);

    // The example hook is valid TypeScript and does what it says (tests/cli_hooks_test.ts loads
    // the examples into a server).
    const hook = await Deno.readTextFile(hookPath);
    const { HOOKS } = await import(`file://${hookPath}`) as {
      HOOKS: {
        pre_execution: { run: (c: { request: { command: string } }) => { proceed: boolean } }[];
      };
    };
    const check = (command: string) => HOOKS.pre_execution[0]!.run({ request: { command } });
    assert.equal(check("rm -rf /").proceed, false);
    assert.equal(check("rm -rf --no-preserve-root /").proceed, false);
    assert.equal(check("sudo rm -fr /*").proceed, false);
    assert.equal(check("rm -rf ./build").proceed, true);
    assert.equal(check("rm -rf /tmp/build").proceed, true);
    for (const file of ["audit_log.sh", "hooks.json"]) {
      assert.match(
        first.stdout,
        new RegExp(`^created +${literal(join(dir, "hooks", file))}$`, "m"),
      );
    }

    // A second run keeps what is there, including the user's edits.
    const edited = template + "CC_EXECUTOR_MAX_JOBS=5\n";
    await Deno.writeTextFile(envPath, edited);
    await Deno.writeTextFile(hookPath, "// mine\n");
    const second = await runCli(["init", "--dir", dir], { env });
    assert.equal(second.code, 0, show(second));
    assert.match(
      second.stdout,
      new RegExp(`^kept +${literal(envPath)} \\(exists; --force overwrites it\\)$`, "m"),
    );
    assert.match(second.stdout, new RegExp(`^kept +${literal(hookPath)} `, "m"));
    assert.doesNotMatch(second.stdout, /created|replaced/);
    assert.equal(await Deno.readTextFile(envPath), edited);
    assert.equal(await Deno.readTextFile(hookPath), "// mine\n");

    // --force writes them again.
    const forced = await runCli(["init", "--dir", dir, "--force"], { env });
    assert.equal(forced.code, 0, show(forced));
    assert.match(forced.stdout, new RegExp(`^replaced ${literal(envPath)}$`, "m"));
    assert.match(forced.stdout, new RegExp(`^replaced ${literal(hookPath)}$`, "m"));
    assert.doesNotMatch(forced.stdout, /kept/);
    assert.equal(await Deno.readTextFile(envPath), template);
    assert.equal(await Deno.readTextFile(hookPath), hook);

    // The template is a valid configuration that changes nothing.
    const shown = await runCli(["config", "show", "--json"], {
      env: isolated({ CC_EXECUTOR_ENV_FILE: envPath }),
    });
    assert.equal(shown.code, 0, show(shown));
    const report = JSON.parse(shown.stdout);
    assert.equal(report.valid, true);
    assert.deepEqual(
      new Set(report.variables.map((v: { source: string }) => v.source)),
      new Set(["default"]),
    );
  });
});

Deno.test("cli setup: init fails its configuration check on a bad value, naming the variable", async () => {
  await withTempDir(async (dir) => {
    const result = await runCli(["init", "--dir", dir], {
      env: isolated({ CC_EXECUTOR_PORT: "0", CC_EXECUTOR_MAX_JOBS: "lots" }),
    });
    assert.equal(result.code, 1, show(result));
    assert.match(result.stdout, /^ {2}FAIL {2}configuration\n {6}.*CC_EXECUTOR_MAX_JOBS="lots"/m);
    assert.doesNotMatch(result.stdout, /ok {4}configuration is valid/);
    // The files are still written and the next steps still shown.
    assert.ok((await Deno.stat(join(dir, ".env"))).isFile);
    assert.match(result.stdout, /^Next:$/m);
    assert.ok(!result.stderr.includes(STACK_FRAME), result.stderr);
  });
});

Deno.test("cli setup: init reports a Redis that does not answer and exits 1", async () => {
  await withTempDir(async (dir) => {
    const port = closedPort();
    const result = await runCli(["init", "--dir", dir], {
      env: isolated({ CC_EXECUTOR_PORT: "0", REDIS_URL: `redis://127.0.0.1:${port}` }),
    });
    assert.equal(result.code, 1, show(result));
    assert.match(
      result.stdout,
      new RegExp(`^ {2}FAIL {2}Redis at 127\\.0\\.0\\.1:${port} is not reachable$`, "m"),
    );
    // Only Redis failed.
    assert.equal(result.stdout.match(/FAIL/g)?.length, 1, result.stdout);
    assert.match(result.stdout, /ok {4}configuration is valid/);
  });
});

// --- config ---------------------------------------------------------------------------------------

Deno.test("cli setup: config show masks the token and says where each value comes from", async () => {
  await withTempDir(async (dir) => {
    const secret = "s3cret-token-abcdefghijklmnop";
    const fileSecret = "file-token-0123456789abcdefgh";
    const envFile = join(dir, "settings.env");
    await Deno.writeTextFile(
      envFile,
      "CC_EXECUTOR_COALESCE_MS=7\nCC_EXECUTOR_KEEP_FINISHED_JOBS=11\n" +
        `CC_EXECUTOR_TOKEN=${fileSecret}\n`,
    );
    const fromFile = ["CC_EXECUTOR_COALESCE_MS", "CC_EXECUTOR_KEEP_FINISHED_JOBS"];
    // The environment wins over the file, for the token as for everything else.
    const env = isolated({
      CC_EXECUTOR_ENV_FILE: envFile,
      CC_EXECUTOR_TOKEN: secret,
      CC_EXECUTOR_KEEP_FINISHED_JOBS: "9",
    }, fromFile);
    const fileTokenEnv = isolated({ CC_EXECUTOR_ENV_FILE: envFile }, [
      ...fromFile,
      "CC_EXECUTOR_TOKEN",
    ]);
    const [text, json, fileToken] = await Promise.all([
      runCli(["config", "show"], { env }),
      runCli(["config", "show", "--json"], { env }),
      runCli(["config", "show", "--json"], { env: fileTokenEnv }),
    ]);

    for (const result of [text, json, fileToken]) {
      assert.equal(result.code, 0, show(result));
      assert.equal(result.stderr, "");
      assert.ok(!result.stdout.includes(secret), result.stdout);
      assert.ok(!result.stdout.includes(fileSecret), result.stdout);
    }

    assert.match(text.stdout, new RegExp(`^env file: ${literal(envFile)}$`, "m"));
    const rows = tableRows(text.stdout);
    assert.deepEqual(rows.get("CC_EXECUTOR_TOKEN"), [
      `******** (set, ${secret.length} characters)`,
      "environment",
    ]);
    assert.deepEqual(rows.get("CC_EXECUTOR_KEEP_FINISHED_JOBS"), ["9", "environment"]);
    assert.deepEqual(rows.get("CC_EXECUTOR_COALESCE_MS"), ["7", "env file"]);
    assert.deepEqual(rows.get("CC_EXECUTOR_PORT"), ["8003", "default"]);
    assert.deepEqual(rows.get("CC_EXECUTOR_SHELL"), ["(unset)", "default"]);
    assert.equal(rows.size, CONFIG_VARIABLES.length, text.stdout);

    const report = JSON.parse(json.stdout);
    assert.equal(report.valid, true);
    assert.equal(report.env_file, envFile);
    assert.deepEqual(report.problems, []);
    assert.deepEqual(
      report.variables.map((v: { name: string }) => v.name),
      CONFIG_VARIABLES.map((v) => v.name),
    );
    const byName = new Map<string, Record<string, unknown>>(
      report.variables.map((v: { name: string }) => [v.name, v]),
    );
    for (const variable of byName.values()) {
      assert.deepEqual(Object.keys(variable).sort(), ["description", "name", "source", "value"]);
      assert.equal(typeof variable.description, "string");
      assert.notEqual(variable.description, "");
    }
    assert.deepEqual(byName.get("CC_EXECUTOR_TOKEN"), {
      name: "CC_EXECUTOR_TOKEN",
      value: `******** (set, ${secret.length} characters)`,
      source: "environment",
      description: CONFIG_VARIABLES.find((v) => v.name === "CC_EXECUTOR_TOKEN")!.description,
    });
    assert.equal(byName.get("CC_EXECUTOR_COALESCE_MS")?.source, "env file");
    assert.equal(byName.get("CC_EXECUTOR_KEEP_FINISHED_JOBS")?.value, "9");
    assert.equal(byName.get("CC_EXECUTOR_HOST")?.source, "default");
    assert.equal(byName.get("CC_EXECUTOR_SHELL")?.value, null);

    const fromFileToken = JSON.parse(fileToken.stdout).variables.find((v: { name: string }) =>
      v.name === "CC_EXECUTOR_TOKEN"
    );
    assert.equal(fromFileToken.source, "env file");
    assert.equal(fromFileToken.value, `******** (set, ${fileSecret.length} characters)`);
  });
});

Deno.test("cli setup: config validate accepts a good configuration and names every bad value", async () => {
  await withTempDir(async (dir) => {
    const envFile = join(dir, "good.env");
    await Deno.writeTextFile(envFile, "CC_EXECUTOR_COALESCE_MS=10\n");
    const [good, goodFile, bad] = await Promise.all([
      runCli(["config", "validate"], { env: isolated() }),
      runCli(["config", "validate"], {
        env: isolated({ CC_EXECUTOR_ENV_FILE: envFile }, ["CC_EXECUTOR_COALESCE_MS"]),
      }),
      runCli(["config", "validate"], {
        env: isolated({ CC_EXECUTOR_PORT: "abc", LOG_LEVEL: "loud" }),
      }),
    ]);
    assert.equal(good.code, 0, show(good));
    assert.equal(good.stdout, "configuration is valid\n");
    assert.equal(good.stderr, "");
    assert.equal(goodFile.code, 0, show(goodFile));
    assert.equal(goodFile.stdout, `configuration is valid (env file: ${envFile})\n`);

    assert.equal(bad.code, 1, show(bad));
    assert.equal(bad.stdout, "");
    const lines = bad.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, bad.stderr);
    assert.match(lines[0]!, /^cc-executor: .*CC_EXECUTOR_PORT="abc"/);
    assert.match(lines[1]!, /^cc-executor: .*LOG_LEVEL="loud"/);
    assert.ok(!bad.stderr.includes(STACK_FRAME), bad.stderr);
  });
});

Deno.test("cli setup: a bad token is reported without repeating it", async () => {
  const short = await runCli(["config", "validate"], {
    env: isolated({ CC_EXECUTOR_TOKEN: "hunter2" }),
  });
  assert.equal(short.code, 1);
  assert.equal(
    short.stderr,
    "cc-executor: Invalid configuration: CC_EXECUTOR_TOKEN=(hidden): expected at least 16 characters\n",
  );
});

// --- version --------------------------------------------------------------------------------------

Deno.test("cli setup: version, --version and version --json report this build", async () => {
  const [text, flag, short, json] = await Promise.all([
    runCli(["version"]),
    runCli(["--version"]),
    runCli(["-V"]),
    runCli(["version", "--json"]),
  ]);
  for (const result of [text, flag, short, json]) assert.equal(result.code, 0, show(result));
  const [first, second] = text.stdout.split("\n");
  assert.equal(first, `cc-executor ${VERSION}`);
  assert.ok(second?.startsWith(`deno ${Deno.version.deno} `), text.stdout);
  assert.equal(flag.stdout, `${VERSION}\n`);
  assert.equal(short.stdout, `${VERSION}\n`);
  const info = JSON.parse(json.stdout);
  assert.equal(info.version, VERSION);
  assert.equal(info.deno, Deno.version.deno);
  // server/version.ts says to keep it in step with deno.json.
  const manifest = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  );
  assert.equal(manifest.version, VERSION);
});

// --- completions ----------------------------------------------------------------------------------

Deno.test("cli setup: completions bash completes commands and options in a real bash", async () => {
  await withTempDir(async (dir) => {
    const generated = await runCli(["completions", "bash"]);
    assert.equal(generated.code, 0, show(generated));
    const script = join(dir, "cc-executor.bash");
    await Deno.writeTextFile(script, generated.stdout);
    // Each case sets the words as bash would, calls the function `complete` registered, and
    // prints the candidates on one line.
    const driver = `
source "$1" || exit 99
spec=$(complete -p cc-executor) || exit 98
echo "$spec"
fn=\${spec##*-F }; fn=\${fn%% *}
try() {
  COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
  "$fn"
  echo "\${COMPREPLY[*]}"
}
try cc-executor ser
try cc-executor server st
try cc-executor jobs attach --u
try cc-executor jobs attach a1b2 --q
try cc-executor ""
try cc-executor run --timeout ""
`;
    const { code, stdout, stderr } = await new Deno.Command("bash", {
      args: ["--norc", "--noprofile", "-c", driver, "bash", script],
      stdin: "null",
    }).output();
    const out = new TextDecoder().decode(stdout);
    assert.equal(new TextDecoder().decode(stderr), "");
    assert.equal(code, 0, out);
    const [spec, ser, serverSt, attachU, attachQ, top, timeoutValue] = out.split("\n");
    assert.match(spec!, /-F _cc_executor_complete cc-executor$/);
    assert.deepEqual(ser!.split(" "), ["server"]);
    assert.deepEqual(serverSt!.split(" ").sort(), ["start", "status", "stop"]);
    assert.deepEqual(attachU!.split(" "), ["--url"]);
    assert.deepEqual(attachQ!.split(" "), ["--quiet"]);
    const topWords = top!.split(" ");
    for (const command of ["server", "run", "jobs", "init", "config", "version", "completions"]) {
      assert.ok(topWords.includes(command), `${command} not offered: ${top}`);
    }
    // After an option that takes a value, bash completes file names instead.
    assert.equal(timeoutValue, "");
  });
});

Deno.test("cli setup: completions zsh and fish scripts name the commands and options", async () => {
  const [zsh, fish] = await Promise.all([
    runCli(["completions", "zsh"]),
    runCli(["completions", "fish"]),
  ]);
  assert.equal(zsh.code, 0, show(zsh));
  assert.ok(zsh.stdout.startsWith("#compdef cc-executor\n"), zsh.stdout);
  assert.ok(zsh.stdout.includes("complete -o default -F _cc_executor_complete cc-executor"));
  assert.equal(fish.code, 0, show(fish));
  const lines = fish.stdout.split("\n");
  assert.ok(
    lines.some((l) =>
      l.startsWith("complete -c cc-executor -n '__fish_use_subcommand' -a server -d ")
    ),
    fish.stdout,
  );
  assert.ok(
    lines.some((l) =>
      l.startsWith(
        "complete -c cc-executor -n '__fish_seen_subcommand_from run' -l stdin-file -r -F",
      )
    ),
    fish.stdout,
  );
});

async function syntaxCheck(shell: string, subcommand: string): Promise<void> {
  await withTempDir(async (dir) => {
    const generated = await runCli(["completions", subcommand]);
    assert.equal(generated.code, 0, show(generated));
    const script = join(dir, `completion.${subcommand}`);
    await Deno.writeTextFile(script, generated.stdout);
    const { code, stderr } = await new Deno.Command(shell, { args: ["-n", script] }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
  });
}

Deno.test({
  name: "cli setup: completions zsh is valid zsh (zsh -n)",
  ignore: !HAS_ZSH,
  fn: () => syntaxCheck("zsh", "zsh"),
});

Deno.test({
  name: "cli setup: completions fish is valid fish (fish -n)",
  ignore: !HAS_FISH,
  fn: () => syntaxCheck("fish", "fish"),
});

Deno.test({
  name: "cli setup: completions fish completes commands and options in a real fish",
  ignore: !HAS_FISH,
  fn: async () => {
    const generated = await runCli(["completions", "fish"]);
    const script = Deno.makeTempFileSync({ suffix: ".fish" });
    try {
      Deno.writeTextFileSync(script, generated.stdout);
      const complete = async (line: string) => {
        const { stdout } = await new Deno.Command("fish", {
          args: ["--no-config", "-c", `source ${script}; complete -C '${line}'`],
        }).output();
        return new TextDecoder().decode(stdout).split("\n").map((l) => l.split("\t")[0]);
      };
      assert.deepEqual((await complete("cc-executor ser")).filter(Boolean), ["server"]);
      const server = await complete("cc-executor server st");
      for (const word of ["start", "status", "stop"]) assert.ok(server.includes(word), word);
      assert.ok((await complete("cc-executor run --std")).includes("--stdin-file"));
    } finally {
      Deno.removeSync(script);
    }
  },
});

Deno.test("cli setup: completions for an unknown shell is a usage error listing the shells", async () => {
  const result = await runCli(["completions", "powershell"]);
  assert.equal(result.code, 2, show(result));
  assert.equal(result.stdout, "");
  assert.match(result.stderr, /powershell/);
  assert.match(result.stderr, /bash, zsh, fish/);
  assert.ok(!result.stderr.includes(STACK_FRAME), result.stderr);
});

// --- help -----------------------------------------------------------------------------------------

/** An Output that keeps what is printed, uncoloured. */
function collectingOutput(): Output & { text: () => string; clear: () => void } {
  let text = "";
  const plain: Paint = {
    red: (t) => t,
    green: (t) => t,
    yellow: (t) => t,
    dim: (t) => t,
    bold: (t) => t,
  };
  return {
    out: (line) => void (text += line + "\n"),
    err: (line) => void (text += line + "\n"),
    write: (_stream, chunk) => void (text += chunk),
    json: (value) => void (text += JSON.stringify(value) + "\n"),
    table: (_header, rows) => void (text += rows.map((r) => r.join(" ")).join("\n") + "\n"),
    paint: () => plain,
    spinner: () => ({ update: () => {}, stop: () => {} }),
    text: () => text,
    clear: () => void (text = ""),
  };
}

/** Every command of the tree with its path from the root ([] for the root). */
function walk(command: Command, path: string[] = []): [string[], Command][] {
  return [
    [path, command],
    ...(command.commands as Command[]).flatMap((sub) => walk(sub, [...path, sub.name()])),
  ];
}

const EXAMPLES = /\nExamples:\n {2}\$ .*cc-executor/;

Deno.test("cli setup: every command's help ends with examples", async () => {
  const output = collectingOutput();
  const program = buildProgram({ output, setExitCode: () => {} });
  const commands = walk(program);
  // Guards against a walk that finds too little (and so checks too little).
  const names = commands.map(([path]) => path.join(" "));
  for (const expected of ["", "server start", "run", "jobs attach", "config validate", "init"]) {
    assert.ok(names.includes(expected), `"${expected}" not among ${names.join(", ")}`);
  }
  const withoutExamples = new Set<string>();
  for (const [path, command] of commands) {
    output.clear();
    command.outputHelp();
    const help = output.text();
    assert.ok(help.includes(`Usage: ${["cc-executor", ...path].join(" ")}`), help);
    if (!EXAMPLES.test(help)) withoutExamples.add(path.join(" "));
  }
  assert.deepEqual([...withoutExamples], [], "every command shows examples");

  // The same through the real binary, which must treat help as a success.
  const paths = [...commands.map(([path]) => [...path, "--help"]), ["help", "server"]];
  const results = await Promise.all(paths.map((args) => runCli(args)));
  results.forEach((result, i) => {
    const args = paths[i]!;
    const words = args[0] === "help" ? args.slice(1) : args.slice(0, -1);
    const where = `cc-executor ${args.join(" ")}\n${show(result)}`;
    assert.equal(result.code, 0, where);
    assert.equal(result.stderr, "", where);
    assert.ok(result.stdout.includes(`Usage: ${["cc-executor", ...words].join(" ")}`), where);
    assert.ok(EXAMPLES.test(result.stdout), where);
  });
});

// --- colour ---------------------------------------------------------------------------------------

/** A single-quoted word for sh. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** `server status` against a closed port, under a TTY (via script) or a pipe. */
async function statusDown(options: { tty: boolean; noColor?: string }): Promise<CliResult> {
  const env = Deno.env.toObject();
  // Not inherited: the test decides.
  delete env.NO_COLOR;
  Object.assign(
    env,
    isolated({
      CC_EXECUTOR_ENV_FILE: "/nonexistent/.env",
      CC_EXECUTOR_STATE_DIR: "/nonexistent/state",
      SHELL: "/bin/sh",
    }),
  );
  if (options.noColor !== undefined) env.NO_COLOR = options.noColor;
  const args = [
    "run",
    "-A",
    MAIN,
    "server",
    "status",
    "--url",
    `ws://127.0.0.1:${closedPort()}/ws`,
  ];
  const command = options.tty
    ? new Deno.Command("script", {
      args: ["-qec", [Deno.execPath(), ...args].map(shellQuote).join(" "), "/dev/null"],
      env,
      clearEnv: true,
      stdin: "null",
    })
    : new Deno.Command(Deno.execPath(), { args, env, clearEnv: true, stdin: "null" });
  const { code, stdout, stderr } = await command.output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

Deno.test({
  name: "cli setup: colour on a terminal, none with NO_COLOR, none into a pipe",
  ignore: !HAS_SCRIPT,
  fn: async () => {
    const [coloured, noColor, piped] = await Promise.all([
      statusDown({ tty: true }),
      statusDown({ tty: true, noColor: "1" }),
      statusDown({ tty: false }),
    ]);
    for (const result of [coloured, noColor, piped]) {
      assert.equal(result.code, 1, show(result));
      assert.match(
        result.stdout,
        /cc-executor: .*down.* \(nothing answers at ws:\/\/127\.0\.0\.1:/,
      );
    }
    assert.ok(coloured.stdout.includes("\x1b[31mdown\x1b[39m"), JSON.stringify(coloured.stdout));
    assert.ok(!noColor.stdout.includes("\x1b["), JSON.stringify(noColor.stdout));
    assert.ok(!piped.stdout.includes("\x1b["), JSON.stringify(piped.stdout));
    assert.ok(!piped.stderr.includes("\x1b["), JSON.stringify(piped.stderr));
  },
});

// --- usage errors ---------------------------------------------------------------------------------

Deno.test("cli setup: bad flags and unknown commands are usage errors (exit 2) without a stack", async () => {
  const cases: [string[], RegExp][] = [
    [["run", "--timeout", "abc", "x"], /--timeout .*'abc' is invalid/],
    [
      ["jobs", "list", "--status", "bogus"],
      /--status .*'bogus' is invalid.*expected one of queued, running/,
    ],
    [["server", "start", "--bogus"], /unknown option '--bogus'/],
    [["frobnicate"], /unknown command 'frobnicate'/],
  ];
  const results = await Promise.all(
    cases.map(([args]) => runCli(args, { env: isolated({ CC_EXECUTOR_PORT: "0" }) })),
  );
  results.forEach((result, i) => {
    const [args, problem] = cases[i]!;
    const where = `cc-executor ${args.join(" ")}\n${show(result)}`;
    assert.equal(result.code, 2, where);
    assert.equal(result.stdout, "", where);
    assert.match(result.stderr, /^cc-executor: /, where);
    assert.match(result.stderr, problem, where);
    assert.match(result.stderr, /\(add --help for usage\)/, where);
    assert.ok(!result.stderr.includes(STACK_FRAME), where);
  });
});

Deno.test("cli setup: init into a path that is a file says so, without a stack", async () => {
  const file = Deno.makeTempFileSync();
  try {
    const result = await runCli(["init", "--dir", file]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`^cc-executor: Cannot create the directory ${file}: `));
    assert.ok(!result.stderr.includes(STACK_FRAME), result.stderr);
  } finally {
    Deno.removeSync(file);
  }
});
