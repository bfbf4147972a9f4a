/**
 * `cc-executor init`: sets up a directory to run a server from (a commented
 * .env, hooks/ with an example, templates/), never overwriting a file
 * without --force, then checks what it can and says what to do next.
 *
 * @module
 */
import { join } from "node:path";
import { Command } from "@commander-js/extra-typings";
import { CONFIG_VARIABLES, inspectConfig } from "../server/config.ts";
import type { CliContext } from "./context.ts";
import { answersHealth } from "./daemon.ts";
import { examples } from "./help.ts";
import { CliError, type Output } from "./output.ts";

export function initCommand(ctx: CliContext) {
  return new Command("init")
    .description(
      "create a commented .env, hooks/ with an example hook, and templates/ here; then check the setup",
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
          makeDir(path);
          ctx.output.out(`created  ${path}/`);
        }
      }
      for (const file of initFiles()) {
        ctx.output.out(writeFile(join(dir, file.path), file.content, Boolean(force)));
      }
      const failed = await runChecks(dir, ctx.output);
      ctx.output.out("");
      ctx.output.out("Next:");
      ctx.output.out(`  edit ${join(dir, ".env")} (every setting is described there)`);
      ctx.output.out(
        `  cc-executor server start --detach${
          dir === "." ? "" : `   (from ${dir}, where .env is)`
        }`,
      );
      ctx.output.out('  cc-executor run "echo hello"');
      if (failed > 0) ctx.setExitCode(1);
    });
}

interface InitFile {
  path: string;
  content: string;
}

/** The files init writes, relative to the directory. */
export function initFiles(): InitFile[] {
  return [
    { path: ".env", content: envTemplate() },
    { path: join("hooks", "block_rm_root.ts"), content: EXAMPLE_HOOK },
  ];
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

const EXAMPLE_HOOK = `/**
 * An example cc-executor hook: refuses commands that would remove the root directory.
 *
 * Hooks are TypeScript files in this folder exporting HOOKS. This version of cc-executor does not
 * load them yet: the hook system (pre_execution, post_execution, error and output hooks) arrives
 * in a later release; this file already has the shape it will load.
 */
export const HOOKS = {
  pre_execution: [
    (context: { command: string }) =>
      /\\brm\\s+(-[A-Za-z]*\\s+)*(--no-preserve-root\\s+)?\\/(\\s|$|\\*)/.test(context.command)
        ? { proceed: false, message: "refusing to remove /" }
        : { proceed: true },
  ],
};
`;

function writeFile(path: string, content: string, force: boolean): string {
  const existed = exists(path);
  if (existed && !force) return `kept     ${path} (exists; --force overwrites it)`;
  try {
    Deno.writeTextFileSync(path, content);
  } catch (error) {
    throw new CliError(`Cannot write ${path}: ${(error as Error).message}`);
  }
  return `${existed ? "replaced" : "created "} ${path}`;
}

function makeDir(path: string): void {
  try {
    Deno.mkdirSync(path, { recursive: true });
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
async function runChecks(dir: string, output: Output): Promise<number> {
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
  if (report.config) checks.push(await portCheck(report.config.host, report.config.port));
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

function permissionCheck(): Check {
  const names = ["run", "net", "env", "read"] as const;
  const missing = names.filter((name) => Deno.permissions.querySync({ name }).state !== "granted");
  if (missing.length === 0) return { ok: true, what: "Deno permissions: run, net, env, read" };
  return {
    ok: false,
    what: `Deno permissions missing here: ${missing.join(", ")}`,
    fix: "the server needs --allow-run (unscoped), --allow-net, --allow-env and --allow-read " +
      "(see `deno task start:locked`)",
  };
}

async function portCheck(host: string, port: number): Promise<Check> {
  if (port === 0) return { ok: true, what: "port 0: any free port will be used" };
  try {
    Deno.listen({ hostname: host, port }).close();
    return { ok: true, what: `${host}:${port} is free` };
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) {
      return { ok: false, what: `cannot listen on ${host}:${port}`, fix: (error as Error).message };
    }
    const wsHost = host.includes(":") ? `[${host}]` : host;
    if (await answersHealth(`ws://${wsHost}:${port}/ws`)) {
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
