/**
 * `cc-executor init`: sets up a directory to run a server from (a commented
 * .env, hooks/ with an example TypeScript hook and an example command hook,
 * templates/), never overwriting a file without --force, then checks what it
 * can and says what to do next.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { Command } from "@commander-js/extra-typings";
import { untrustedFileReason } from "../hooks/trust.ts";
import { CONFIG_VARIABLES, inspectConfig } from "../server/config.ts";
import type { CliContext } from "./context.ts";
import { answersHealth } from "./daemon.ts";
import { examples } from "./help.ts";
import { CliError, type Output } from "./output.ts";
import { stateDir } from "./state.ts";

export function initCommand(ctx: CliContext) {
  return new Command("init")
    .description(
      "create a commented .env, hooks/ with example hooks, and templates/ here; then check the setup",
    )
    .option("--dir <path>", "set up this directory instead of the current one", ".")
    .option("-f, --force", "overwrite files that already exist")
    .addHelpText(
      "after",
      examples([
        ["cc-executor init", ""],
        ["cc-executor init --dir ~/executor --force", "rewrite the files there"],
      ]),
    )
    .action(async (options) => {
      const { dir, force } = options;
      makeDir(dir);
      for (const folder of ["hooks", "templates"]) {
        const path = join(dir, folder);
        if (!exists(path)) {
          // Not writable by others whatever the umask: the server refuses hooks anyone can change.
          makeDir(path, 0o755);
          ctx.output.out(`created  ${path}/`);
        }
      }
      const standalone = Deno.build.standalone;
      const files = initFiles({ standalone, auditLog: auditLogPath(dir) });
      for (const file of files) {
        ctx.output.out(writeFile(join(dir, file.path), file.content, Boolean(force), file.mode));
      }
      if (standalone) {
        ctx.output.out(
          "note: this compiled binary cannot load TypeScript hooks, so the example is a command " +
            "hook only; TypeScript hooks need `deno run` (docs/hooks.md#command-hooks)",
        );
      }
      const hookFiles = files.filter((file) => file.path.startsWith("hooks"));
      const failed = await runChecks(
        dir,
        ctx.output,
        hookFiles.map((file) => join(dir, file.path)),
      );
      ctx.output.out("");
      ctx.output.out("Next:");
      ctx.output.out(`  edit ${join(dir, ".env")} (every setting is described there)`);
      ctx.output.out(
        `  cc-executor server start --detach${
          dir === "." ? "" : `   (from ${dir}, where .env and hooks/ are)`
        }`,
      );
      ctx.output.out('  cc-executor run "echo hello"');
      ctx.output.out("  cc-executor hooks list   (the example hooks, as the server loaded them)");
      if (failed > 0) ctx.setExitCode(1);
    });
}

interface InitFile {
  /** Relative to the directory set up. */
  path: string;
  content: string;
  /** Permission bits, set even when the umask would leave it writable by others. */
  mode?: number;
}

export interface InitFilesOptions {
  /**
   * The compiled binary, which cannot load TypeScript hooks: only the command hook is written.
   * @default Deno.build.standalone
   */
  standalone?: boolean;
  /** Where the example command hook appends its lines (set in hooks.json). */
  auditLog?: string;
}

/** The files init writes, relative to the directory. */
export function initFiles(options: InitFilesOptions = {}): InitFile[] {
  const standalone = options.standalone ?? Deno.build.standalone;
  return [
    { path: ".env", content: envTemplate() },
    ...(standalone ? [] : [{
      path: join("hooks", "block_rm_root.ts"),
      content: exampleTypeScriptHook(TYPES_MODULE),
      mode: 0o644,
    }]),
    { path: join("hooks", "audit_log.sh"), content: EXAMPLE_COMMAND_HOOK, mode: 0o755 },
    {
      path: join("hooks", "hooks.json"),
      content: exampleHooksJson(options.auditLog),
      mode: 0o644,
    },
  ];
}

/** The hook API module of this cc-executor, which the example TypeScript hook imports. */
const TYPES_MODULE = new URL("../hooks/types.ts", import.meta.url).href;

/** The audit log in the state directory (beside a detached server's log), made absolute. */
function auditLogPath(dir: string): string {
  try {
    return resolve(stateDir(), "audit.log");
  } catch (error) {
    // No HOME and no CC_EXECUTOR_STATE_DIR: keep it beside the hook.
    if (!(error instanceof CliError)) throw error;
    return resolve(dir, "hooks", "audit.log");
  }
}

/** The .env template: every setting, commented out at its default, with what it does. */
export function envTemplate(): string {
  const lines = [
    "# cc-executor settings. The environment wins over this file; an empty value means the default.",
    "# Uncomment a line to change it. `cc-executor config validate` checks this file;",
    "# `cc-executor config show` shows what a server started here would use.",
    "",
  ];
  for (const variable of CONFIG_VARIABLES) {
    lines.push(`# ${variable.description}`);
    lines.push(`# ${variable.name}=${variable.default ?? ""}`);
    lines.push("");
  }
  return lines.join("\n");
}

/** hooks/block_rm_root.ts, importing the hook API from `typesModule`. */
export function exampleTypeScriptHook(typesModule: string): string {
  // String.raw: the regular expression's backslashes are written as they are.
  return String.raw`/**
 * An example cc-executor hook: refuses commands that would remove the root directory, such as
 * "rm -rf /", "rm -fr /*" or "sudo rm -r --no-preserve-root /". See docs/hooks.md.
 *
 * Every *.ts file in this folder that exports HOOKS is loaded, in file-name order. The hooks run in
 * a separate Deno process with the server's permissions: they are code you trust.
 *
 * The import is cc-executor's hook API module, at the address "cc-executor init" found it. Any
 * relative or absolute path to that module works, and the types are optional: a file exporting
 * HOOKS = { pre_execution: [(ctx) => ({ proceed: true })] } with plain functions loads the same.
 */
import { defineHook, defineHooks } from ${JSON.stringify(typesModule)};

/** "rm", any options or other paths, then "/" or "/*" as a word of its own. */
const REMOVES_ROOT = /\brm\s+(?:[^;&|\n]*\s)?["']?\/\*?["']?(?=\s|$|[;&|)])/;

export const HOOKS = defineHooks({
  pre_execution: [
    defineHook({
      point: "pre_execution",
      name: "block-rm-root",
      // If this hook fails (throws, times out), the job is blocked rather than let through.
      required: true,
      run: (ctx) =>
        REMOVES_ROOT.test(ctx.request.command)
          ? { proceed: false, message: "refusing to remove / (hooks/block_rm_root.ts)" }
          : { proceed: true },
    }),
  ],
});
`;
}

// String.raw, and no "${" in the script: what is below is written exactly as it reads.
const EXAMPLE_COMMAND_HOOK = String.raw`#!/bin/sh
# An example cc-executor command hook (docs/hooks.md#command-hooks), listed in hooks.json.
#
# After every job (post_execution) cc-executor runs it with the hook context as one line of JSON on
# stdin. It appends one JSON line per job to the audit log: the time, then the context without the
# job's output text (which can be large, or hold secrets). hooks.json sets the log's path in
# AUDIT_LOG; without it, the log is $XDG_STATE_HOME/cc-executor/audit.log (~/.local/state/...).
#
# Exit 0 with nothing on stdout means "done, no changes" (a JSON object on stdout may attach data
# to the job's record: {"attach": {...}}). Any other exit code is a failure of this hook: it is
# recorded with the job and, as on_failure is "proceed", changes nothing else.
set -e
context=$(cat)
# "hooks run" dry runs call it too: they are not jobs, so they leave no trace. (A quote inside a
# JSON string is escaped, so only the context's own field can match.)
case $context in *',"dry_run":true,"request":'*) exit 0 ;; esac
log=$AUDIT_LOG
if [ -z "$log" ]; then
  state=$XDG_STATE_HOME
  [ -n "$state" ] || state=$HOME/.local/state
  log=$state/cc-executor/audit.log
fi
mkdir -p "$(dirname "$log")"
output='s/,"output":\{"head":"([^"\\]|\\.)*","tail":"([^"\\]|\\.)*"\}//'
printf '{"at":"%s","context":%s}\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "$(printf '%s' "$context" | sed -E "$output")" >>"$log"
`;

/** hooks/hooks.json: the example command hook, with its log's path when there is one. */
export function exampleHooksJson(auditLog?: string): string {
  const entry = {
    name: "audit-log",
    point: "post_execution",
    command: ["./audit_log.sh"],
    timeout_ms: 2000,
    on_failure: "proceed",
    ...(auditLog ? { env: { AUDIT_LOG: auditLog } } : {}),
  };
  return JSON.stringify({ hooks: [entry] }, null, 2) + "\n";
}

function writeFile(path: string, content: string, force: boolean, mode?: number): string {
  const existed = exists(path);
  if (existed && !force) return `kept     ${path} (exists; --force overwrites it)`;
  try {
    Deno.writeTextFileSync(path, content);
    // A mode given on write applies to new files only, and through the umask: set it outright.
    if (mode !== undefined && Deno.build.os !== "windows") Deno.chmodSync(path, mode);
  } catch (error) {
    throw new CliError(`Cannot write ${path}: ${(error as Error).message}`);
  }
  return `${existed ? "replaced" : "created "} ${path}`;
}

function makeDir(path: string, mode?: number): void {
  try {
    Deno.mkdirSync(path, { recursive: true, mode });
  } catch (error) {
    throw new CliError(`Cannot create the directory ${path}: ${(error as Error).message}`);
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

type Check = { ok: true; what: string } | { ok: false; what: string; fix: string };

/** Prints one line per check; resolves to how many failed. */
async function runChecks(dir: string, output: Output, hookFiles: string[]): Promise<number> {
  const { detectGroupMode, resolveShell } = await import("../server/process.ts");
  const paint = output.paint("stdout");
  output.out("");
  output.out("Checks:");
  const checks: Check[] = [];
  const report = inspectConfig({
    env: Deno.env.toObject(),
    envFile: Deno.env.get("CC_EXECUTOR_ENV_FILE") ?? join(dir, ".env"),
  });
  checks.push(
    report.problems.length === 0 ? { ok: true, what: "configuration is valid" } : {
      ok: false,
      what: "configuration",
      fix: report.problems.map((p) => p.message).join("\n      "),
    },
  );
  checks.push(permissionCheck());
  checks.push(hooksTrustCheck(join(dir, "hooks"), hookFiles));
  checks.push(
    (await detectGroupMode()) === "setsid"
      ? { ok: true, what: "setsid found: each job runs in its own process group" }
      : {
        ok: false,
        what: "setsid not found",
        fix: "install util-linux; without it process groups use a slower spawn",
      },
  );
  const shellVariable = report.values.find((v) => v.name === "CC_EXECUTOR_SHELL")?.value;
  try {
    checks.push({ ok: true, what: `shell: ${await resolveShell(shellVariable)}` });
  } catch (error) {
    checks.push({ ok: false, what: "shell", fix: (error as Error).message });
  }
  if (report.config) {
    checks.push(
      await portCheck(report.config.host, report.config.port, report.config.tls !== null),
    );
  }
  const redisUrl = Deno.env.get("REDIS_URL");
  if (redisUrl) checks.push(await redisCheck(redisUrl));
  let failed = 0;
  for (const check of checks) {
    if (check.ok) {
      output.out(`  ${paint.green("ok")}    ${check.what}`);
    } else {
      failed++;
      output.out(`  ${paint.red("FAIL")}  ${check.what}\n      ${check.fix}`);
    }
  }
  return failed;
}

/** The server refuses hooks others can change; say so now rather than at its start. */
function hooksTrustCheck(folder: string, files: string[]): Check {
  const reasons = files.map((file) => untrustedFileReason(file, folder)).filter((r) => r !== null);
  if (reasons.length === 0) {
    return { ok: true, what: `${folder}/ and its example hooks are not writable by others` };
  }
  return {
    ok: false,
    what: `the server would refuse the hooks in ${folder}`,
    fix: [...new Set(reasons)].join("\n      "),
  };
}

function permissionCheck(): Check {
  const names = ["run", "net", "env", "read"] as const;
  const missing = names.filter((name) => Deno.permissions.querySync({ name }).state !== "granted");
  if (missing.length === 0) return { ok: true, what: "Deno permissions: run, net, env, read" };
  return {
    ok: false,
    what: `Deno permissions missing here: ${missing.join(", ")}`,
    fix: "the server needs --allow-run (unscoped, or a list with the shell, setsid and kill), " +
      "--allow-net, --allow-env and --allow-read (see `deno task start:locked`)",
  };
}

async function portCheck(host: string, port: number, tls: boolean): Promise<Check> {
  if (port === 0) return { ok: true, what: "port 0: any free port will be used" };
  try {
    Deno.listen({ hostname: host, port }).close();
    return { ok: true, what: `${host}:${port} is free` };
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) {
      return { ok: false, what: `cannot listen on ${host}:${port}`, fix: (error as Error).message };
    }
    const wsHost = host.includes(":") ? `[${host}]` : host;
    const url = `${tls ? "wss" : "ws"}://${wsHost}:${port}/ws`;
    if (await answersHealth(url, { untrustedOk: true })) {
      return { ok: true, what: `a cc-executor server is already running on ${host}:${port}` };
    }
    return {
      ok: false,
      what: `${host}:${port} is in use by another program`,
      fix: "set CC_EXECUTOR_PORT in .env, or stop that program",
    };
  }
}

/** Connects and sends PING with the Redis client, as the server would with this URL. */
async function redisCheck(text: string): Promise<Check> {
  // Loaded only here: the client is a large module graph that init otherwise does not need.
  const { redactRedisUrl } = await import("../server/store/redis.ts");
  const { createClient } = await import("redis");
  let where: string;
  let client;
  try {
    const url = new URL(text);
    where = `${url.hostname}:${url.port || 6379}`;
    client = createClient({
      url: text,
      socket: { connectTimeout: 2000, reconnectStrategy: false },
    });
  } catch {
    return { ok: false, what: "REDIS_URL", fix: `not a Redis URL: ${redactRedisUrl(text)}` };
  }
  client.on("error", () => {}); // reported below, through the rejected promise
  try {
    await client.connect();
    await client.ping();
    return { ok: true, what: `Redis answers at ${where}` };
  } catch (error) {
    const message = (error as Error).message;
    // It answered: reachable, but a server started with this URL could not use it.
    if (/NOAUTH/.test(message)) {
      return {
        ok: false,
        what: `Redis at ${where} wants a password`,
        fix: "put it in REDIS_URL: redis://:password@host:port",
      };
    }
    if (/WRONGPASS/.test(message)) {
      return {
        ok: false,
        what: `Redis at ${where} refused the password in REDIS_URL`,
        fix: message,
      };
    }
    return { ok: false, what: `Redis at ${where} is not reachable`, fix: message };
  } finally {
    if (client.isOpen) client.destroy();
  }
}
