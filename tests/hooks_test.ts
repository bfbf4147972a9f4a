/**
 * Hooks through a real server: TypeScript hooks in a real folder (run by the
 * real hook host), command hooks as real executables, the built-ins, and what
 * clients see (notifications, errors, records).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ExecutorClient, ExecutorRpcError, type JobEvent } from "../server/client.ts";
import { defaultConfig, type HooksConfig, type ServerConfig } from "../server/config.ts";
import { ErrorCode } from "../server/protocol.ts";
import type { ExecutorServer } from "../server/server.ts";
import { processAlive } from "../server/process.ts";
import { RawClient, startTestServer, waitUntil } from "./test_util.ts";

const TYPES = new URL("../hooks/types.ts", import.meta.url).href;

/** A hooks folder with `files` (name -> text); names ending in .sh are made executable. */
function hooksFolder(files: Record<string, string>): string {
  const dir = Deno.makeTempDirSync({ prefix: "cc-hooks-" });
  for (const [name, text] of Object.entries(files)) writeHookFile(dir, name, text);
  return dir;
}

function writeHookFile(dir: string, name: string, text: string): void {
  const path = join(dir, name);
  Deno.writeTextFileSync(path, text);
  Deno.chmodSync(path, name.endsWith(".sh") ? 0o755 : 0o644);
}

async function startHookServer(
  dir: string,
  hooks: Partial<HooksConfig> = {},
  overrides: Partial<ServerConfig> = {},
): Promise<ExecutorServer> {
  return await startTestServer({
    hooks: { ...defaultConfig().hooks, dir, ...hooks },
    ...overrides,
  });
}

/** Runs `command` and collects every notification of the job. */
async function run(
  client: ExecutorClient,
  params: Parameters<ExecutorClient["execute"]>[0],
) {
  const events: JobEvent[] = [];
  const outcome = await client.execute({ ...params, onEvent: (event) => events.push(event) });
  return { outcome, events };
}

Deno.test("hooks: a TypeScript pre_execution hook blocks a command; the client hears why, history keeps it", async () => {
  const dir = hooksFolder({
    "guard.ts": `
      import { defineHook, defineHooks } from "${TYPES}";
      export const HOOKS = defineHooks({
        pre_execution: [defineHook({
          point: "pre_execution",
          name: "no-rm-root",
          run: (ctx) => /rm\\s+-rf\\s+\\/(\\s|$)/.test(ctx.request.command)
            ? { proceed: false, message: "refusing to delete /" }
            : { proceed: true },
        })],
      });`,
  });
  await using server = await startHookServer(dir);
  await using raw = await RawClient.connect(server.url);
  const response = await raw.call("execute", { command: "rm -rf /", job_id: "doomed" });
  assert.equal(response.error.code, ErrorCode.HOOK_BLOCKED);
  assert.equal(response.error.message, "Blocked by hook no-rm-root: refusing to delete /");
  assert.deepEqual(response.error.data, {
    job_id: "doomed",
    hook: "no-rm-root",
    point: "pre_execution",
    message: "refusing to delete /",
  });
  const blockedAt = raw.frames.findIndex((f) => f.method === "hook.blocked");
  const errorAt = raw.frames.indexOf(response);
  assert.ok(blockedAt >= 0 && blockedAt < errorAt, "hook.blocked comes before the error");
  assert.equal(raw.frames[blockedAt].params.hook, "no-rm-root");

  await using client = await ExecutorClient.connect(server.url);
  const record = await client.request("history.get", { job_id: "doomed" });
  assert.equal(record.status, "blocked");
  assert.equal(record.reason, "refusing to delete /");
  assert.equal(record.pid, null, "it never ran");
  const hooks = record.hooks as { executions: { hook: string; outcome: string }[] };
  assert.deepEqual(hooks.executions.map((e) => [e.hook, e.outcome]), [["no-rm-root", "blocked"]]);
  // Other commands run.
  assert.equal((await client.execute({ command: "echo fine" })).stdout, "fine\n");
  const status = await client.request("hook_status", {});
  const counts = status.hooks.find((hook) => hook.name === "no-rm-root")!.counts;
  assert.equal(counts.blocked, 1);
  assert.equal(counts.proceeded, 1);
});

Deno.test("hooks: pre_execution hooks rewrite command, cwd, env and timeout, in file-name order", async () => {
  const work = Deno.makeTempDirSync();
  const dir = hooksFolder({
    // b_ runs after a_: it sees a_'s rewrite.
    "a_rewrite.ts": `
      export const HOOKS = {
        pre_execution: [(ctx) => ctx.request.command === "greet"
          ? { command: "echo \\"$GREETING from $(pwd)\\"", env: { GREETING: "hello" } }
          : undefined],
      };`,
    "b_place.ts": `
      export const HOOKS = {
        pre_execution: [(ctx) => ctx.request.command.startsWith("echo \\"$GREETING")
          ? { cwd: ${JSON.stringify(work)}, timeout: 42, message: "moved" }
          : {}],
      };`,
  });
  await using server = await startHookServer(dir);
  await using client = await ExecutorClient.connect(server.url);
  const { outcome, events } = await run(client, { command: "greet", job_id: "greeted" });
  assert.equal(outcome.stdout, `hello from ${Deno.realPathSync(work)}\n`);
  const started = events.find((e) => e.method === "process.started")!;
  assert.equal(
    started.method === "process.started" && started.params.command,
    'echo "$GREETING from $(pwd)"',
  );
  assert.equal((await client.request("jobs.get", { job_id: "greeted" })).cwd, work);
  const record = await client.request("history.get", { job_id: "greeted" });
  assert.equal(record.command, 'echo "$GREETING from $(pwd)"');
  assert.deepEqual(record.timeout, { seconds: 42, source: "request" });
  const hooks = record.hooks as { requested_command: string; executions: { changes?: string[] }[] };
  assert.equal(hooks.requested_command, "greet");
  assert.deepEqual(hooks.executions.map((e) => e.changes), [
    ["command", "env.GREETING"],
    ["cwd", "timeout"],
  ]);
  // A retried execute with the same job_id is matched against what the client asked for.
  const again = await client.request("execute", { command: "greet", job_id: "greeted" });
  assert.equal(again.existing, true);
});

Deno.test("hooks: an error hook retries a failed job with a changed command, up to the attempt limit", async () => {
  const dir = hooksFolder({
    "retry.ts": `
      export const HOOKS = {
        error: [(ctx) => {
          if (ctx.request.command === "exit 3") return { retry: { command: "echo recovered" }, message: "fixing" };
          if (ctx.request.command.startsWith("always-fails")) return { retry: true, attach: { seen: ctx.attempt } };
          if (ctx.request.command === "exit 5") return { retry: { command: "rm -rf /" } };
        }],
        pre_execution: [(ctx) => ctx.request.command === "rm -rf /" ? { proceed: false, message: "no" } : undefined],
        post_execution: [(ctx) => ({ attach: { status: ctx.outcome.status, attempt: ctx.attempt } })],
      };`,
  });
  await using server = await startHookServer(dir, { maxAttempts: 3 });
  await using client = await ExecutorClient.connect(server.url);

  const { outcome, events } = await run(client, { command: "exit 3", job_id: "flaky" });
  assert.equal(outcome.status, "completed");
  assert.equal(outcome.stdout, "recovered\n");
  assert.equal(outcome.attempts, 2);
  assert.deepEqual(outcome.hooks, {
    "retry.ts:post_execution[0]": { status: "completed", attempt: 2 },
  });
  const methods = events.map((e) => e.method);
  assert.deepEqual(methods.filter((m) => m !== "process.output"), [
    "process.started",
    "hook.retry",
    "process.started",
    "process.completed",
  ]);
  const retry = events.find((e) => e.method === "hook.retry")!;
  assert.ok(retry.method === "hook.retry");
  assert.equal(retry.params.attempt, 2);
  assert.equal(retry.params.command, "echo recovered");
  assert.equal(retry.params.message, "fixing");
  assert.deepEqual(retry.params.previous, {
    status: "failed",
    exit_code: 3,
    signal: null,
    reason: null,
  });
  const record = await client.request("history.get", { job_id: "flaky" });
  assert.equal(record.status, "completed");
  const hooks = record.hooks as {
    attempts: number;
    runs: { command: string; exit_code: number }[];
  };
  assert.equal(hooks.attempts, 2);
  assert.deepEqual(hooks.runs.map((r) => [r.command, r.exit_code]), [["exit 3", 3]]);

  // A hook that always asks for a retry gets maxAttempts runs in all, then the failure stands.
  const stubborn = await run(client, { command: "always-fails; exit 1" });
  assert.equal(stubborn.outcome.status, "failed");
  assert.equal(stubborn.outcome.attempts, 3);
  assert.equal(stubborn.events.filter((e) => e.method === "process.started").length, 3);
  assert.deepEqual(stubborn.outcome.hooks["retry.ts:error[0]"], { seen: 3 });

  // A retry's command goes through the pre_execution hooks like any other: no way around them.
  const sneaky = await run(client, { command: "exit 5" });
  assert.equal(sneaky.outcome.status, "failed");
  assert.equal(sneaky.outcome.exitCode, 5);
  assert.equal(sneaky.outcome.attempts, 1);
  assert.equal(sneaky.outcome.error, "retry blocked by hook retry.ts:pre_execution[0]: no");
  assert.equal(sneaky.events.filter((e) => e.method === "process.started").length, 1);
  // The outcome is final without the retry: post_execution hooks see it.
  assert.deepEqual(sneaky.outcome.hooks["retry.ts:post_execution[0]"], {
    status: "failed",
    attempt: 1,
  });
});

Deno.test("hooks: a cancel after the command exited, while hooks still run, means no retry", async () => {
  const dir = hooksFolder({
    "slow.ts": `
      export const HOOKS = {
        // Holds the end of the run for a moment: the window between the exit and the error hooks.
        output: [async (ctx) => { if (ctx.final) await new Promise((r) => setTimeout(r, 800)); }],
        error: [() => ({ retry: { command: "echo retried" } })],
      };`,
  });
  await using server = await startHookServer(dir);
  await using client = await ExecutorClient.connect(server.url);
  const events: JobEvent[] = [];
  const outcome = client.execute({
    command: "exit 1",
    job_id: "no-retry",
    onEvent: (e) => events.push(e),
  });
  outcome.catch(() => {}); // awaited below; a failed assertion first must not leave it unhandled
  await waitUntil(
    () => server.jobs.list().find((job) => job.id === "no-retry")?.group.leaderExited,
    "the command to exit",
  );
  const canceled = await client.request("control", { type: "CANCEL", job_id: "no-retry" });
  assert.equal(canceled.status, "running", "accepted: the job is still finishing");
  const done = await outcome;
  assert.equal(done.status, "failed");
  assert.equal(done.exitCode, 1);
  assert.equal(done.attempts, 1);
  assert.equal(events.filter((e) => e.method === "process.started").length, 1);
});

Deno.test("hooks: a hanging output hook costs one timeout per job, not one per chunk; its failure is reported", async () => {
  const dir = hooksFolder({
    "stuck.ts": `
      export const HOOKS = {
        output: [{ name: "stuck", timeout_ms: 200, run: () => new Promise(() => {}) }],
      };`,
  });
  await using server = await startHookServer(dir, {}, { coalesceMs: 0 });
  await using client = await ExecutorClient.connect(server.url);
  const started = performance.now();
  const { outcome, events } = await run(client, {
    command: "for i in $(seq 1 30); do echo line $i; sleep 0.01; done",
  });
  const elapsed = performance.now() - started;
  assert.equal(outcome.stdout.split("\n").length - 1, 30, "on_failure proceed: the output flows");
  assert.ok(outcome.stdout.startsWith("line 1\n") && outcome.stdout.endsWith("line 30\n"));
  // 30 chunks x 200 ms would be 6 s; one timeout then skipping the hook is well under.
  assert.ok(elapsed < 4000, `took ${Math.round(elapsed)} ms`);
  const failures = events.filter((e) => e.method === "hook.error");
  assert.equal(failures.length, 1);
  assert.ok(failures[0]!.method === "hook.error" && failures[0]!.params.point === "output");
  const status = await client.request("hooks.status", {});
  assert.equal(status.hooks[0]!.counts.failed, 1);
});

Deno.test("hooks: a command hook past its timeout is killed with what it started; the job goes on", async () => {
  const marks = Deno.makeTempDirSync();
  const dir = hooksFolder({
    "slow.sh": `#!/bin/sh
cat >/dev/null
sleep 30 &
echo $! > ${marks}/child
echo $$ > ${marks}/hook
wait
`,
    "hooks.json": JSON.stringify({
      hooks: [{ name: "slow", point: "pre_execution", command: ["./slow.sh"], timeout_ms: 400 }],
    }),
  });
  await using server = await startHookServer(dir);
  await using client = await ExecutorClient.connect(server.url);
  const { outcome, events } = await run(client, { command: "echo went ahead" });
  assert.equal(outcome.stdout, "went ahead\n");
  const failure = events.find((e) => e.method === "hook.error");
  assert.ok(failure && failure.method === "hook.error");
  assert.match(failure.params.error, /400 ms/);
  for (const name of ["hook", "child"]) {
    const pid = Number(Deno.readTextFileSync(join(marks, name)));
    await waitUntil(() => !processAlive(pid), `the hook's ${name} process to be gone`);
  }
});

Deno.test("hooks: shutdown does not wait out a slow post_execution hook", async () => {
  const dir = hooksFolder({
    "slow.ts": `
      export const HOOKS = {
        post_execution: [{ timeout_ms: 600000, run: () => new Promise((r) => setTimeout(r, 60000)) }],
      };`,
  });
  const server = await startHookServer(dir, {}, { killGraceMs: 300 });
  await using client = await ExecutorClient.connect(server.url);
  const { job_id } = await client.request("execute", { command: "echo done" });
  await waitUntil(() => server.jobs.get(job_id).group.leaderExited, "the command to exit");
  const started = performance.now();
  await server.shutdown();
  const took = performance.now() - started;
  // The kill grace (300 ms) and the hooks' shutdown grace (3 s), not the hook's minute.
  assert.ok(took < 6000, `shutdown took ${Math.round(took)} ms`);
  assert.equal(server.jobs.get(job_id).status, "completed");
});

Deno.test("hooks: redact_secrets scrubs a secret split across two output chunks, from the client and the record", async () => {
  const secret = "s3cr3t-VALUE-0123456789";
  await using server = await startHookServer("/nonexistent-hooks-folder", {
    redactSecrets: true,
    secretEnvVars: ["MY_TOKEN"],
  }, { coalesceMs: 0 });
  await using client = await ExecutorClient.connect(server.url);
  const chunks: string[] = [];
  const outcome = await client.execute({
    // The secret arrives in two writes far enough apart to be two chunks.
    command:
      `printf 'token=%s' "\${MY_TOKEN%%-0123*}"; sleep 0.3; printf '%s done\\n' "-\${MY_TOKEN#*-VALUE-}"`,
    env: { MY_TOKEN: secret },
    job_id: "leaky",
    onStdout: (text) => chunks.push(text),
  });
  assert.ok(!outcome.stdout.includes(secret), outcome.stdout);
  // Streamed as it came: the text before the secret went out at once, the secret was held back.
  assert.equal(chunks[0], "token=");
  assert.ok(!chunks.some((c) => c.includes("0123456789") && c.includes("VALUE")));
  assert.equal(outcome.stdout, "token=[REDACTED:MY_TOKEN] done\n");
  const record = await client.request("history.get", { job_id: "leaky", include_output: true });
  assert.ok(!JSON.stringify(record).includes(secret), "the store never sees it");
});

Deno.test("hooks: command hooks from hooks.json block (exit 2), attach (JSON on stdout) and fail cleanly (bad JSON)", async () => {
  const dir = hooksFolder({
    "deny.sh": `#!/bin/sh
ctx=$(cat)
case "$ctx" in *'"command":"curl'*) echo "no network from agents" >&2; exit 2;; esac
exit 0
`,
    "count.sh": `#!/bin/sh
cat >/dev/null
echo '{"attach": {"counted": true}}'
`,
    "garbage.sh": `#!/bin/sh
cat >/dev/null
echo 'this is not json'
`,
    "hooks.json": JSON.stringify({
      hooks: [
        { name: "deny-curl", point: "pre_execution", command: ["./deny.sh"] },
        { name: "count", point: "post_execution", command: ["./count.sh"] },
        { name: "garbage", point: "post_execution", command: ["./garbage.sh"] },
      ],
    }),
  });
  await using server = await startHookServer(dir);
  await using client = await ExecutorClient.connect(server.url);
  await assert.rejects(client.execute({ command: "curl http://example.com" }), (error) => {
    assert.ok(error instanceof ExecutorRpcError);
    assert.equal(error.code, ErrorCode.HOOK_BLOCKED);
    assert.match(error.message, /deny-curl: no network from agents/);
    return true;
  });
  const { outcome, events } = await run(client, { command: "echo ok" });
  assert.equal(outcome.stdout, "ok\n");
  assert.deepEqual(outcome.hooks, { count: { counted: true } });
  const failure = events.find((e) => e.method === "hook.error");
  assert.ok(failure && failure.method === "hook.error");
  assert.equal(failure.params.hook, "garbage");
  assert.match(failure.params.error, /invalid JSON/);
  assert.equal(failure.params.on_failure, "proceed");
});

Deno.test("hooks: a hook that throws, hangs or loops forever never holds a job past its timeout", async () => {
  const dir = hooksFolder({
    "bad.ts": `
      export const HOOKS = {
        pre_execution: [
          { name: "thrower", run: () => { throw new Error("kaboom"); } },
          { name: "sleeper", timeout_ms: 300, run: (ctx) => ctx.request.command.includes("hang") ? new Promise(() => {}) : undefined },
          { name: "spinner", timeout_ms: 300, run: (ctx) => { if (ctx.request.command.includes("spin")) { while (true) {} } } },
          { name: "garbage", run: () => "yes please" },
          { name: "typo", run: () => ({ procede: false }) },
        ],
      };`,
    "required.ts": `
      export const HOOKS = {
        pre_execution: [{ name: "must-pass", required: true, run: (ctx) => {
          if (ctx.request.command.includes("strict")) throw new Error("cannot check");
        } }],
      };`,
  });
  await using server = await startHookServer(dir);
  await using client = await ExecutorClient.connect(server.url);

  const plain = await run(client, { command: "echo survived" });
  assert.equal(plain.outcome.stdout, "survived\n");
  const errors = plain.events.filter((e) => e.method === "hook.error").map((e) =>
    e.method === "hook.error" ? [e.params.hook, e.params.error] : []
  );
  assert.deepEqual(errors.map(([hook]) => hook), ["thrower", "garbage", "typo"]);
  assert.match(errors[0]![1]!, /kaboom/);
  assert.match(errors[1]![1]!, /expected an object/);
  assert.match(errors[2]![1]!, /unknown field procede/);

  const hung = await run(client, { command: "echo hang" });
  assert.equal(hung.outcome.stdout, "hang\n");
  assert.ok(
    hung.events.some((e) =>
      e.method === "hook.error" && e.params.hook === "sleeper" && /300 ms/.test(e.params.error)
    ),
  );

  // A synchronous loop: the host is killed and restarted; the job goes on, and so do later jobs.
  const spun = await run(client, { command: "echo spin" });
  assert.equal(spun.outcome.stdout, "spin\n");
  assert.ok(spun.events.some((e) => e.method === "hook.error" && e.params.hook === "spinner"));
  const after = await waitUntil(
    async () => {
      const next = await run(client, { command: "echo after" });
      // Once the host is back, only the three always-failing hooks fail.
      return next.events.filter((e) => e.method === "hook.error").length === 3 ? next : null;
    },
    "the restarted hook host",
    20_000,
  );
  assert.equal(after!.outcome.stdout, "after\n");

  // A required hook that fails blocks the job.
  await assert.rejects(client.execute({ command: "echo strict" }), (error) => {
    assert.ok(error instanceof ExecutorRpcError);
    assert.equal(error.code, ErrorCode.HOOK_BLOCKED);
    assert.match(error.message, /must-pass failed and is required: cannot check/);
    return true;
  });
});

Deno.test("hooks: files that do not fit are refused with a message; reload picks up changes; hooks.run dry-runs", async () => {
  const dir = hooksFolder({
    "good.ts": `export const HOOKS = { output: [(ctx) => ({ data: ctx.data.toUpperCase() })] };`,
    "wrong.ts": `export const HOOKS = { pre_execution: "not a list" };`,
  });
  await using server = await startHookServer(dir);
  await using client = await ExecutorClient.connect(server.url);
  const status = await client.request("hooks.status", {});
  assert.deepEqual(status.hooks.map((hook) => hook.name), ["good.ts:output[0]"]);
  assert.equal(status.problems.length, 1);
  assert.equal(status.problems[0]!.source, join(dir, "wrong.ts"));
  assert.match(status.problems[0]!.message, /pre_execution/);
  assert.match(status.problems[0]!.message, /export const HOOKS/, "shows the expected shape");
  assert.equal((await client.execute({ command: "echo quiet" })).stdout, "QUIET\n");

  // A running job keeps the hooks it started with; new jobs get the reloaded ones.
  const running = client.execute({ command: "sleep 0.5; echo before" });
  await waitUntil(() => server.jobs.runningCount === 1, "the job to start");
  Deno.removeSync(join(dir, "good.ts"));
  writeHookFile(
    dir,
    "wrong.ts",
    `export const HOOKS = { pre_execution: [(ctx) => ({ command: ctx.request.command + " reloaded" })] };`,
  );
  const reloaded = await client.request("hooks.reload", {});
  assert.deepEqual(reloaded.problems, []);
  assert.deepEqual(reloaded.hooks.map((hook) => hook.name), ["wrong.ts:pre_execution[0]"]);
  assert.equal((await running).stdout, "BEFORE\n");
  assert.equal((await client.execute({ command: "echo now" })).stdout, "now reloaded\n");

  const dry = await client.request("hooks.run", { point: "pre_execution", command: "echo x" });
  assert.equal(dry.request!.command, "echo x reloaded");
  assert.equal(dry.blocked, null);
  assert.equal(dry.executions[0]!.outcome, "changed");
  assert.equal(
    (await client.request("jobs.list", {})).jobs.some((j) => j.command === "echo x reloaded"),
    false,
    "nothing ran",
  );
});

Deno.test("hooks: a hook cannot change the server's environment or working directory", async () => {
  const dir = hooksFolder({
    "meddle.ts": `
      export const HOOKS = {
        pre_execution: [() => {
          try { Deno.env.set("CC_HOOK_MEDDLED", "yes"); } catch { /* fine either way */ }
          try { Deno.chdir("/"); } catch { /* fine either way */ }
        }],
      };`,
  });
  const cwd = Deno.cwd();
  await using server = await startHookServer(dir);
  await using client = await ExecutorClient.connect(server.url);
  assert.equal((await client.execute({ command: "echo $CC_HOOK_MEDDLED" })).stdout, "\n");
  assert.equal(Deno.env.get("CC_HOOK_MEDDLED"), undefined);
  assert.equal(Deno.cwd(), cwd);
});

Deno.test("hooks: started from cc-executor's own checkout, its hooks/ source folder is not loaded as hooks", async () => {
  await using server = await startHookServer(new URL("../hooks", import.meta.url).pathname);
  await using client = await ExecutorClient.connect(server.url);
  const status = await client.request("hooks.status", {});
  assert.deepEqual(status.hooks, []);
  assert.deepEqual(status.problems, []);
  assert.match(status.dir_note!, /cc-executor's own hooks source folder/);
  assert.equal((await client.execute({ command: "echo plain" })).stdout, "plain\n");
});
