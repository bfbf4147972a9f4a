/**
 * `cc-executor hooks list|run|reload` and the hooks `init` scaffolds, run as real subprocesses
 * against a real server (`server start`) whose hooks folder is a temporary one.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { problemText } from "../cli/hooks.ts";
import { exampleHooksJson, initFiles } from "../cli/init.ts";
import { ExecutorClient } from "../server/client.ts";
import type { HooksRunResult, HookStatusResult } from "../server/protocol.ts";
import { type CliResult, runCli, startCliServer } from "./cli_util.ts";
import { waitUntil } from "./test_util.ts";

const TYPES_MODULE = new URL("../hooks/types.ts", import.meta.url).href;

/** A hook at every point, in one TypeScript file; names say what each does. */
const GUARD_TS = `import { defineHook, defineHooks } from ${JSON.stringify(TYPES_MODULE)};

export const HOOKS = defineHooks({
  pre_execution: [
    defineHook({
      point: "pre_execution",
      name: "block-rm-root",
      required: true,
      run: (ctx) =>
        /\\brm\\s+-rf\\s+\\/(\\s|$)/.test(ctx.request.command)
          ? { proceed: false, message: "refusing to remove /" }
          : { proceed: true },
    }),
    defineHook({
      point: "pre_execution",
      name: "ci-env",
      run: (ctx) => ctx.request.command.startsWith("npm ") ? { env: { CI: "1" }, timeout: 600 } : {},
    }),
  ],
  output: [
    defineHook({
      point: "output",
      name: "mask-hunter2",
      run: (ctx) => ({ data: ctx.data.replaceAll("hunter2", "*******") }),
    }),
  ],
  post_execution: [
    defineHook({
      point: "post_execution",
      name: "note-exit",
      run: (ctx) => ({ attach: { exit_code: ctx.outcome.exit_code } }),
    }),
  ],
  error: [
    defineHook({
      point: "error",
      name: "retry-flaky",
      run: (ctx) =>
        ctx.request.command.includes("flaky")
          ? { retry: { command: ctx.request.command + " --retry" }, message: "flaky test" }
          : {},
    }),
  ],
});
`;

/** A command hook: exit 2 blocks, with stderr as the message. */
const NO_SUDO_SH = `#!/bin/sh
if grep -q '"command":"sudo '; then
  echo "sudo is not allowed here" >&2
  exit 2
fi
`;

/** A temporary hooks folder with guard.ts and the no-sudo command hook in hooks.json. */
async function hooksFolder(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-hooks-" });
  await Deno.writeTextFile(join(dir, "guard.ts"), GUARD_TS);
  await Deno.writeTextFile(join(dir, "no_sudo.sh"), NO_SUDO_SH, { mode: 0o755 });
  await Deno.chmod(join(dir, "no_sudo.sh"), 0o755);
  await Deno.writeTextFile(
    join(dir, "hooks.json"),
    JSON.stringify({
      hooks: [{
        name: "no-sudo",
        point: "pre_execution",
        command: ["./no_sudo.sh"],
        timeout_ms: 3000,
      }],
    }),
  );
  return dir;
}

/** `server start` with `CC_EXECUTOR_HOOKS_DIR=dir`, stopped (and the folder removed) on dispose. */
async function hooksServer(dir: string, env: Record<string, string> = {}) {
  const server = await startCliServer({ CC_EXECUTOR_HOOKS_DIR: dir, ...env });
  return {
    url: server.url,
    child: server.child,
    /** `cc-executor hooks <args> --url <this server>`. */
    hooks: (...args: string[]) => runCli(["hooks", ...args, "--url", server.url]),
    async [Symbol.asyncDispose]() {
      try {
        server.child.kill("SIGTERM");
      } catch {
        // It has exited already.
      }
      await server.child.status;
      await server.child.stdout.cancel();
      await server.log();
      await Deno.remove(dir, { recursive: true }).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
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

// --- hooks list -----------------------------------------------------------------------------------

Deno.test("cli hooks: list shows TypeScript and command hooks, --json parses, --recent shows runs", async () => {
  const dir = await hooksFolder();
  await using server = await hooksServer(dir);

  const list = await server.hooks("list");
  assert.equal(list.code, 0, show(list));
  assert.equal(list.stderr, "", "nothing refused");
  assert.match(list.stdout, new RegExp(`^hooks folder: +${escape(dir)} `, "m"));
  assert.match(
    list.stdout,
    new RegExp(`^command hooks: +${escape(join(dir, "hooks.json"))}$`, "m"),
  );
  assert.match(
    list.stdout,
    /^NAME +POINT +KIND +LOCATION +TIMEOUT +ON FAILURE +RUNS +FAILED +MEAN$/m,
  );
  assert.match(
    row(list.stdout, "block-rm-root") ?? "",
    /^block-rm-root +pre_execution +typescript +guard\.ts +5\.0s +block \(required\) +0 +0 +-$/,
  );
  assert.match(
    row(list.stdout, "no-sudo") ?? "",
    /^no-sudo +pre_execution +command +hooks\.json: \.\/no_sudo\.sh +3\.0s +proceed +0 +0 +-$/,
  );
  for (const name of ["ci-env", "mask-hunter2", "note-exit", "retry-flaky"]) {
    assert.ok(row(list.stdout, name), `${name} listed:\n${list.stdout}`);
  }

  const json = await server.hooks("list", "--json");
  assert.equal(json.code, 0, show(json));
  const status: HookStatusResult = JSON.parse(json.stdout);
  assert.equal(status.dir, dir);
  assert.deepEqual(status.problems, []);
  assert.deepEqual(
    status.hooks.filter((hook) => hook.kind !== "builtin").map((hook) => [hook.name, hook.kind]),
    [
      ["block-rm-root", "typescript"],
      ["ci-env", "typescript"],
      ["mask-hunter2", "typescript"],
      ["note-exit", "typescript"],
      ["retry-flaky", "typescript"],
      ["no-sudo", "command"],
    ],
  );

  const strict = await server.hooks("list", "--strict");
  assert.equal(strict.code, 0, show(strict));

  // A real job runs through the hooks; --recent shows what each did for it.
  {
    await using client = await ExecutorClient.connect(server.url);
    const outcome = await client.execute({ command: "echo hi", job_id: "recent-1" });
    assert.equal(outcome.status, "completed");
  }
  const recent = await server.hooks("list", "--recent");
  assert.equal(recent.code, 0, show(recent));
  assert.match(recent.stdout, /^Recent executions, oldest first:$/m);
  assert.match(recent.stdout, /^AT +HOOK +POINT +JOB +OUTCOME +TIME +DETAIL$/m);
  assert.match(recent.stdout, /\dZ +block-rm-root +pre_execution +recent-1 +proceeded +\d/);
  assert.match(
    recent.stdout,
    /\dZ +note-exit +post_execution +recent-1 +changed +\S+ +changed exit_code$/m,
  );
  assert.match(row(recent.stdout, "block-rm-root") ?? "", / 1 +0 +\d+(\.\d+)?m?s$/);
});

// --- hooks run ------------------------------------------------------------------------------------

Deno.test("cli hooks: run pre_execution says whether the chain would block or run the command", async () => {
  const dir = await hooksFolder();
  await using server = await hooksServer(dir);

  const blocked = await server.hooks("run", "pre_execution", "--command", "rm -rf /");
  assert.equal(blocked.code, 1, show(blocked));
  assert.match(
    blocked.stdout,
    /^Dry run of the pre_execution hooks: the hooks ran for real, with dry_run: true in their context; the command did not run\.$/m,
  );
  assert.match(blocked.stdout, /^HOOK +KIND +OUTCOME +TIME +DETAIL$/m);
  assert.match(
    row(blocked.stdout, "block-rm-root") ?? "",
    /^block-rm-root +typescript +blocked +\S+ +refusing to remove \/$/,
  );
  assert.ok(!row(blocked.stdout, "no-sudo"), "the chain stops at the block");
  assert.match(blocked.stdout, /\nwould block: block-rm-root: refusing to remove \/\n$/);

  const sudo = await server.hooks("run", "pre_execution", "--command", "sudo ls");
  assert.equal(sudo.code, 1, show(sudo));
  assert.match(row(sudo.stdout, "no-sudo") ?? "", /^no-sudo +command +blocked /);
  assert.match(sudo.stdout, /\nwould block: no-sudo: sudo is not allowed here\n$/);

  // The real thing: `run` of a blocked command exits 126 and runs nothing.
  const refused = await runCli(["run", "--url", server.url, "rm -rf /"]);
  assert.equal(refused.code, 126, show(refused));
  assert.equal(refused.stdout, "");
  assert.equal(
    refused.stderr,
    "cc-executor: Blocked by hook block-rm-root: refusing to remove /\n",
  );

  const fine = await server.hooks("run", "pre_execution", "--command", "echo hi");
  assert.equal(fine.code, 0, show(fine));
  for (const name of ["block-rm-root", "ci-env", "no-sudo"]) {
    assert.match(row(fine.stdout, name) ?? "", / proceeded /, fine.stdout);
  }
  assert.match(fine.stdout, /\nwould run: echo hi {2}\(unchanged by the hooks\)\n$/);

  const changed = await server.hooks("run", "pre_execution", "--command", "npm test", "-e", "A=1");
  assert.equal(changed.code, 0, show(changed));
  assert.match(row(changed.stdout, "ci-env") ?? "", / changed +\S+ +changed env\.CI, timeout$/);
  assert.match(
    changed.stdout,
    /\nwould run: npm test\n {2}env: CI=1\n {2}timeout: 600s \(was none: the server would pick one\)\n$/,
  );

  const json = await server.hooks("run", "pre_execution", "--command", "rm -rf /", "--json");
  assert.equal(json.code, 1, show(json));
  const result: HooksRunResult = JSON.parse(json.stdout);
  assert.deepEqual(result.blocked, { hook: "block-rm-root", message: "refusing to remove /" });
  assert.equal(result.executions[0]?.outcome, "blocked");

  // The hooks ran for real (five dry runs and the refused `run`), the commands did not (no job).
  {
    await using client = await ExecutorClient.connect(server.url);
    const status = await client.request("hooks.status", {});
    assert.equal(status.hooks.find((hook) => hook.name === "block-rm-root")?.counts.runs, 6);
    assert.deepEqual((await client.request("jobs.list", {})).jobs, []);
  }

  const badPoint = await server.hooks("run", "pre-exec", "--command", "ls");
  assert.equal(badPoint.code, 2, show(badPoint));
  assert.match(
    badPoint.stderr,
    /value 'pre-exec' is invalid for argument 'point'\. expected one of pre_execution, post_execution, error, output\./,
  );
  const noCommand = await server.hooks("run", "pre_execution");
  assert.equal(noCommand.code, 2, show(noCommand));
  assert.match(noCommand.stderr, /required option '--command <command>' not specified/);
});

Deno.test("cli hooks: run output, post_execution and error show the text, attachments and retry", async () => {
  const dir = await hooksFolder();
  await using server = await hooksServer(dir);

  const output = await server.hooks(
    "run",
    "output",
    "--command",
    "cat .env",
    "--output",
    "password: hunter2",
  );
  assert.equal(output.code, 0, show(output));
  assert.match(output.stdout, /^No output hook failed\.$/m);
  assert.match(
    output.stdout,
    /\n--- output as it would be sent and stored ---\npassword: \*{7}\n$/,
  );

  const post = await server.hooks(
    "run",
    "post_execution",
    "--command",
    "make",
    "--exit-code",
    "3",
  );
  assert.equal(post.code, 0, show(post));
  // Exit code 3 means failed; after a failure the error chain runs first, as for a real job.
  assert.match(
    row(post.stdout, "retry-flaky") ?? "",
    /^retry-flaky +error +typescript +proceeded /,
  );
  assert.match(
    row(post.stdout, "note-exit") ?? "",
    /^note-exit +post_execution +typescript +changed /,
  );
  assert.match(post.stdout, /\nwould attach under note-exit: \{"exit_code":3\}\n$/);

  const retry = await server.hooks("run", "error", "--command", "npm test flaky");
  assert.equal(retry.code, 0, show(retry));
  assert.match(
    row(retry.stdout, "retry-flaky") ?? "",
    /^retry-flaky +typescript +retry +\S+ +flaky test$/,
  );
  assert.match(
    retry.stdout,
    /\nwould attach: nothing\nwould retry \(attempt 2\): npm test flaky --retry {2}\(asked by retry-flaky: flaky test\)\n$/,
  );

  // No retry: the error chain, then the post_execution chain (so both points are shown).
  const noRetry = await server.hooks("run", "error", "--command", "make", "--status", "timed_out");
  assert.equal(noRetry.code, 0, show(noRetry));
  assert.match(noRetry.stdout, /^HOOK +POINT +KIND +OUTCOME +TIME +DETAIL$/m);
  assert.match(
    row(noRetry.stdout, "retry-flaky") ?? "",
    /^retry-flaky +error +typescript +proceeded /,
  );
  assert.match(row(noRetry.stdout, "note-exit") ?? "", /^note-exit +post_execution +typescript /);
  assert.match(
    noRetry.stdout,
    /\nwould attach under note-exit: \{"exit_code":null\}\nwould retry: no\n$/,
  );

  // Options that do not fit the point are usage errors, found before anything is sent.
  const usage: [string[], RegExp][] = [
    [
      ["pre_execution", "--status", "failed"],
      /hooks run pre_execution: --status applies to post_execution and error hooks only/,
    ],
    [["pre_execution", "--output", "x"], /hooks run pre_execution: --output applies to output, /],
    [
      ["output"],
      /hooks run output: give the text to pass through the output hooks with --output or --output-file/,
    ],
    [["output", "--output", "a", "--output-file", "b"], /give --output or --output-file, not both/],
    [
      ["error", "--status", "completed"],
      /error hooks run only after failed, timed_out, killed, error/,
    ],
    [["post_execution", "--exit-code", "x"], /option '--exit-code <n>' argument 'x' is invalid/],
    [
      ["output", "--output-file", "/nonexistent/out.txt"],
      /Cannot read --output-file \/nonexistent/,
    ],
  ];
  const results = await Promise.all(
    usage.map(([args]) => server.hooks("run", ...args, "--command", "ls")),
  );
  results.forEach((result, i) => {
    const [args, message] = usage[i]!;
    assert.equal(result.code, 2, `${args.join(" ")}\n${show(result)}`);
    assert.match(result.stderr, message, args.join(" "));
  });
});

// --- hooks reload ---------------------------------------------------------------------------------

Deno.test("cli hooks: reload reports a refused file by name, --strict exits 1, SIGHUP reloads too", async () => {
  const dir = await hooksFolder();
  await using server = await hooksServer(dir);
  const broken = join(dir, "broken.ts");
  await Deno.writeTextFile(broken, "export const hooks = { pre_execution: [] };\n");
  // Anyone could change this one: it is refused whatever it holds.
  const loose = join(dir, "loose.ts");
  await Deno.writeTextFile(loose, "export const HOOKS = {};\n");
  await Deno.chmod(loose, 0o666);

  const reload = await server.hooks("reload");
  assert.equal(reload.code, 0, show(reload));
  assert.match(
    reload.stdout,
    new RegExp(
      `^reloaded: \\d+ hooks loaded, 2 refused \\(folder ${escape(dir)}, command hooks ${
        escape(join(dir, "hooks.json"))
      }\\)\n$`,
    ),
  );
  assert.match(
    reload.stderr,
    new RegExp(
      `^refused: ${escape(broken)}: does not export HOOKS \\(it exports hooks\\); expected shape: `,
      "m",
    ),
  );
  assert.match(
    reload.stderr,
    new RegExp(
      `^refused: ${escape(loose)} is writable by everyone \\(mode 666\\); run chmod o-w on it$`,
      "m",
    ),
  );

  const strict = await server.hooks("reload", "--strict");
  assert.equal(strict.code, 1, show(strict));
  assert.match(strict.stderr, new RegExp(`^refused: ${escape(broken)}: `, "m"));

  const list = await server.hooks("list");
  assert.equal(list.code, 0, show(list));
  assert.match(
    list.stderr,
    /^2 hook files or entries were refused \(--strict makes this exit 1\):\n/,
  );
  assert.match(list.stderr, new RegExp(`^ {2}${escape(broken)}: does not export HOOKS`, "m"));
  assert.match(list.stderr, new RegExp(`^ {2}${escape(loose)} is writable by everyone`, "m"));
  assert.ok(row(list.stdout, "block-rm-root"), "the other files still load");
  assert.equal((await server.hooks("list", "--strict")).code, 1);
  const json = await server.hooks("list", "--json", "--strict");
  assert.equal(json.code, 1, show(json));
  assert.deepEqual(
    (JSON.parse(json.stdout) as HookStatusResult).problems.map((problem) => problem.source).sort(),
    [broken, loose],
  );

  // Outside a terminal (this server's stdin is not one), SIGHUP reloads the hooks.
  await Deno.remove(broken);
  await Deno.remove(loose);
  await Deno.writeTextFile(
    join(dir, "later.ts"),
    "export const HOOKS = { post_execution: [() => ({ message: 'added later' })] };\n",
  );
  server.child.kill("SIGHUP");
  await using client = await ExecutorClient.connect(server.url);
  const status = await waitUntil(async () => {
    const status = await client.request("hooks.status", {});
    return status.hooks.some((hook) => hook.name === "later.ts:post_execution[0]") ? status : null;
  }, "the hooks reloaded by SIGHUP");
  assert.deepEqual(status!.problems, []);
  assert.equal((await server.hooks("list", "--strict")).code, 0);
});

// --- init -----------------------------------------------------------------------------------------

Deno.test("cli hooks: init writes example hooks that a server loads without problems", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "cc-executor-init-" });
  const state = join(tmp, "state");
  const hooksDir = join(tmp, "here", "hooks");
  try {
    await initThenServe(tmp, state, hooksDir);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/** The body of the test above: init into `tmp`/here, then a server on its hooks folder. */
async function initThenServe(tmp: string, state: string, hooksDir: string): Promise<void> {
  const init = await runCli(["init", "--dir", join(tmp, "here")], {
    env: { CC_EXECUTOR_PORT: "0", CC_EXECUTOR_STATE_DIR: state },
  });
  assert.equal(init.code, 0, show(init));
  for (const file of ["block_rm_root.ts", "audit_log.sh", "hooks.json"]) {
    assert.match(init.stdout, new RegExp(`^created +${escape(join(hooksDir, file))}$`, "m"));
  }
  assert.match(
    init.stdout,
    new RegExp(
      `^ {2}ok {4}${escape(hooksDir)}/ and its example hooks are not writable by others$`,
      "m",
    ),
  );
  assert.match(init.stdout, /^ {2}cc-executor hooks list /m);
  // Nobody else may change them (the server would refuse them); the script runs.
  assert.equal((await Deno.stat(hooksDir)).mode! & 0o022, 0);
  assert.equal((await Deno.stat(join(hooksDir, "block_rm_root.ts"))).mode! & 0o777, 0o644);
  assert.equal((await Deno.stat(join(hooksDir, "audit_log.sh"))).mode! & 0o777, 0o755);
  assert.equal((await Deno.stat(join(hooksDir, "hooks.json"))).mode! & 0o777, 0o644);
  const auditLog = join(state, "audit.log");
  assert.deepEqual(JSON.parse(await Deno.readTextFile(join(hooksDir, "hooks.json"))), {
    hooks: [{
      name: "audit-log",
      point: "post_execution",
      command: ["./audit_log.sh"],
      timeout_ms: 2000,
      on_failure: "proceed",
      env: { AUDIT_LOG: auditLog },
    }],
  });

  await using server = await hooksServer(hooksDir);
  const list = await server.hooks("list", "--strict");
  assert.equal(list.code, 0, show(list));
  assert.equal(list.stderr, "");
  assert.match(
    row(list.stdout, "block-rm-root") ?? "",
    /^block-rm-root +pre_execution +typescript +block_rm_root\.ts +\S+ +block \(required\) /,
  );
  assert.match(
    row(list.stdout, "audit-log") ?? "",
    /^audit-log +post_execution +command +hooks\.json: \.\/audit_log\.sh /,
  );

  const blocked = await server.hooks(
    "run",
    "pre_execution",
    "--command",
    "sudo rm -rf --no-preserve-root /",
  );
  assert.equal(blocked.code, 1, show(blocked));
  assert.match(
    blocked.stdout,
    /\nwould block: block-rm-root: refusing to remove \/ \(hooks\/block_rm_root\.ts\)\n$/,
  );
  const allowed = await server.hooks("run", "pre_execution", "--command", "rm -rf ./build");
  assert.equal(allowed.code, 0, show(allowed));

  // A dry run calls the audit hook too, which leaves no line for it.
  const dry = await server.hooks("run", "post_execution", "--command", "echo dry");
  assert.equal(dry.code, 0, show(dry));
  assert.match(row(dry.stdout, "audit-log") ?? "", /^audit-log +command +proceeded /);

  // A real job: the command hook appends its line to the audit log, without the output.
  {
    await using client = await ExecutorClient.connect(server.url);
    const outcome = await client.execute({ command: "echo secret-output", job_id: "audited-1" });
    assert.equal(outcome.status, "completed");
  }
  const line = await waitUntil(async () => {
    try {
      return (await Deno.readTextFile(auditLog)).split("\n").find((l) => l.includes("audited-1"));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
  }, "the audit log line of job audited-1");
  const entry = JSON.parse(line!);
  assert.match(entry.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(entry.context.job_id, "audited-1");
  assert.equal(entry.context.request.command, "echo secret-output");
  assert.equal(entry.context.outcome.status, "completed");
  assert.equal(entry.context.outcome.output, undefined, "the output text is left out");
  const lines = (await Deno.readTextFile(auditLog)).trimEnd().split("\n");
  assert.equal(lines.length, 1, `only the real job is logged:\n${lines.join("\n")}`);
}

Deno.test("cli hooks: init in the compiled binary writes only the command hook", () => {
  const compiled = initFiles({ standalone: true, auditLog: "/var/log/cc/audit.log" });
  assert.deepEqual(compiled.map((file) => file.path), [
    ".env",
    join("hooks", "audit_log.sh"),
    join("hooks", "hooks.json"),
  ]);
  const json = JSON.parse(exampleHooksJson("/var/log/cc/audit.log"));
  assert.equal(json.hooks[0].env.AUDIT_LOG, "/var/log/cc/audit.log");
  assert.equal(JSON.parse(exampleHooksJson()).hooks[0].env, undefined);
  const full = initFiles({ standalone: false });
  assert.deepEqual(full.map((file) => file.path), [
    ".env",
    join("hooks", "block_rm_root.ts"),
    join("hooks", "audit_log.sh"),
    join("hooks", "hooks.json"),
  ]);
  assert.ok(full[1]!.content.includes(`from ${JSON.stringify(TYPES_MODULE)};`));
});

Deno.test("cli hooks: a refusal is shown with its file once", () => {
  assert.equal(
    problemText({ source: "/h/a.ts", message: "/h/a.ts: does not export HOOKS" }),
    "/h/a.ts: does not export HOOKS",
  );
  assert.equal(
    problemText({ source: "/h/a.ts", message: "refused: /h/a.ts is writable by everyone" }),
    "/h/a.ts is writable by everyone",
  );
  assert.equal(
    problemText({ source: "/h/a.ts", message: "refused: its folder /h is writable by everyone" }),
    "/h/a.ts: its folder /h is writable by everyone",
  );
  assert.equal(
    problemText({
      source: "/h/hooks.json",
      message: "/h/hooks.json: refused because /h/hooks.json is owned by another user",
    }),
    "/h/hooks.json: /h/hooks.json is owned by another user",
  );
  assert.equal(
    problemText({ source: "/h/hooks.json hooks[2]", message: "/h/hooks.json: hooks[2].name: ..." }),
    "/h/hooks.json: hooks[2].name: ...",
  );
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
