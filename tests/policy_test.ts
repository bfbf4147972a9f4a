/**
 * The command policy and per-token rules on a live server: a main token with a deny-list, a
 * read-only token with an allow-list, tokens with rate and job limits, over WebSocket and /mcp.
 *
 * @module
 */
import assert from "node:assert/strict";
import { timingSafeEqual } from "node:crypto";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ExecutorClient, ExecutorRpcError } from "../server/client.ts";
import { ConfigError, loadConfig, type ServerConfig } from "../server/config.ts";
import { silentLogger } from "../server/log.ts";
import { Principals } from "../server/principal.ts";
import { ErrorCode } from "../server/protocol.ts";
import { ServerStartError, startServer } from "../server/server.ts";
import { startTestServer, waitUntil } from "./test_util.ts";

const MAIN = "main-token-0123456789abcdef";
const READER = "reader-token-0123456789abcdef";
const LIMITED = "limited-token-0123456789abcdef";

const hex = (bytes: ArrayBuffer) =>
  Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
const sha256Hex = async (text: string) =>
  hex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));

/** A policy file in a temporary folder, with the reader's token in a file of its own. */
async function policyFiles(): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "policy-test-" });
  const readerFile = join(dir, "reader.token");
  await Deno.writeTextFile(readerFile, READER + "\n", { mode: 0o600 });
  const path = join(dir, "policy.json");
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      policies: {
        default: { deny: [{ executable: "rm", reason: "nothing is deleted here" }] },
        "read-only": {
          allow: [{ executable: ["ls", "cat", "echo", "true", "sleep"] }, {
            executable: "git",
            args: "^(status|log|diff)( |$)",
          }],
          write_redirects: false,
        },
      },
      tokens: [
        { name: "reader", token_file: readerFile, policy: "read-only" },
        {
          name: "limited",
          token_sha256: await sha256Hex(LIMITED),
          executes_per_minute: 3,
          max_jobs: 1,
        },
      ],
    }),
  );
  return { dir, path };
}

/** A server configured as a user would: from the environment, with the policy file. */
async function policyServer(overrides: Partial<ServerConfig> = {}) {
  const { dir, path } = await policyFiles();
  const config = loadConfig({
    env: { CC_EXECUTOR_POLICY: path, CC_EXECUTOR_TOKEN: MAIN },
    envFile: null,
  });
  const server = await startTestServer({
    policy: config.policy,
    token: config.token,
    ...overrides,
  });
  return {
    server,
    policyPath: path,
    connect: (token: string) => ExecutorClient.connect(server.url, { token }),
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function rpcError(promise: Promise<unknown>): Promise<ExecutorRpcError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ExecutorRpcError) return error;
    throw error;
  }
  assert.fail("expected a JSON-RPC error");
}

Deno.test("policy server: the read-only token runs its allow-list and nothing else, with the rule and part named", async () => {
  await using env = await policyServer();
  await using reader = await env.connect(READER);
  const ok = await reader.execute({ command: "echo allowed && ls / > /dev/null" });
  assert.equal(ok.stdout, "allowed\n");
  assert.equal(ok.exitCode, 0);

  const denied = await rpcError(reader.execute({ command: "ls; $(echo rm) -rf /tmp/x" }));
  assert.equal(denied.code, ErrorCode.POLICY_DENIED);
  const data = denied.data as Record<string, unknown>;
  assert.equal(data.policy, "read-only");
  assert.equal(data.rule, "unclassified");
  assert.match(String(data.reason), /command name is dynamic: command substitution \$\(echo rm\)/);
  assert.match(denied.message, /^Denied by policy "read-only" \(rule unclassified\)/);

  const nested = await rpcError(reader.execute({ command: "bash -c 'echo hi; touch /tmp/x'" }));
  assert.deepEqual(
    {
      rule: (nested.data as Record<string, unknown>).rule,
      part: (nested.data as Record<string, unknown>).part,
    },
    { rule: "allow-list", part: "bash -c 'echo hi; touch /tmp/x'" },
  );
  const write = await rpcError(reader.execute({ command: "echo x > /tmp/policy-test-write" }));
  assert.equal((write.data as Record<string, unknown>).rule, "write-redirects");
  const push = await rpcError(reader.execute({ command: "git push" }));
  assert.equal((push.data as Record<string, unknown>).rule, "allow-list");
  const path = await rpcError(reader.execute({ command: "ls", env: { PATH: "/tmp" } }));
  assert.equal((path.data as Record<string, unknown>).rule, "env");
  // A prompt runs claude with no shell: it is judged too.
  const prompt = await rpcError(reader.execute({ prompt: "hello" }));
  assert.match(String((prompt.data as Record<string, unknown>).part), /^claude /);

  // The refusal is in history, for the main token to see who tried what.
  await using main = await env.connect(MAIN);
  const record = await main.request("history.get", {
    job_id: String((denied.data as Record<string, unknown>).job_id),
  });
  assert.equal(record.status, "blocked");
  assert.match(String(record.reason), /Denied by policy "read-only"/);
  // The server still serves the token after all that.
  assert.equal((await reader.execute({ command: "true" })).exitCode, 0);
});

Deno.test("policy server: the main token gets the default policy; a wrong token gets 401", async () => {
  await using env = await policyServer();
  await using main = await env.connect(MAIN);
  assert.equal((await main.execute({ command: "echo fine | cat" })).stdout, "fine\n");
  const denied = await rpcError(main.execute({ command: "echo ok && /bin/rm -f /tmp/nothing" }));
  assert.equal((denied.data as Record<string, unknown>).rule, "deny[0]");
  assert.equal(
    denied.message,
    'Denied by policy "default" (rule deny[0]): nothing is deleted here: /bin/rm -f /tmp/nothing',
  );
  const info = await main.request("server.info", {});
  assert.deepEqual(info.token, { name: "default", policy: "default", admin: true, history: true });
  // The file is read once, at start: changing it, and reloading hooks, changes nothing.
  await Deno.writeTextFile(env.policyPath, JSON.stringify({ policies: { default: {} } }));
  await main.request("hooks.reload", {});
  assert.equal(
    (await rpcError(main.execute({ command: "rm -f /tmp/nothing" }))).code,
    ErrorCode.POLICY_DENIED,
  );

  const url = env.server.url.replace(/^ws/, "http");
  for (const authorization of ["Bearer wrong-token-0123456789abc", `Bearer ${READER}x`, ""]) {
    const response = await fetch(url, { headers: authorization ? { authorization } : {} });
    assert.equal(response.status, 401, authorization);
    await response.body?.cancel();
  }
});

Deno.test("policy server: a token sees only its own jobs, and not history or hook administration", async () => {
  await using env = await policyServer();
  await using main = await env.connect(MAIN);
  await using reader = await env.connect(READER);
  const { job_id } = await main.request("execute", {
    command: "sleep 30",
    keep_stdin_open: true,
    subscribe: false,
  });
  const notFound = async (promise: Promise<unknown>) =>
    assert.equal((await rpcError(promise)).code, ErrorCode.JOB_NOT_FOUND);
  await notFound(reader.request("jobs.get", { job_id }));
  await notFound(reader.request("jobs.input", { job_id, data: "x" }));
  await notFound(reader.request("control", { job_id, type: "CANCEL" }));
  await notFound(reader.request("jobs.output", { job_id }));
  await notFound(reader.request("jobs.subscribe", { job_id }));
  assert.deepEqual((await reader.request("jobs.list", {})).jobs, []);
  const mine = await reader.execute({ command: "echo mine" });
  assert.deepEqual((await reader.request("jobs.list", {})).jobs.map((job) => job.job_id), [
    mine.jobId,
  ]);
  // A newer job of another token does not take the place of the token's own under a limit.
  await main.execute({ command: "true" });
  const limited = await reader.request("jobs.list", { limit: 1 });
  assert.deepEqual(limited.jobs.map((job) => job.job_id), [mine.jobId]);
  // A job id of another token cannot be claimed either.
  const conflict = await rpcError(reader.request("execute", { command: "sleep 30", job_id }));
  assert.equal(conflict.code, ErrorCode.JOB_ID_CONFLICT);
  assert.equal((conflict.data as Record<string, unknown>).command, undefined, "no peeking");
  for (
    const method of ["history.list", "history.stats", "history.prune", "hooks.reload"] as const
  ) {
    const params = method === "history.prune" ? { older_than_seconds: 1 } : {};
    const forbidden = await rpcError(reader.request(method, params as never));
    assert.equal(forbidden.code, ErrorCode.FORBIDDEN, method);
  }
  const info = await reader.request("server.info", {});
  assert.deepEqual(info.token, {
    name: "reader",
    policy: "read-only",
    admin: false,
    history: false,
  });
  // The main token sees everything, and stops its job.
  assert.equal((await main.request("jobs.list", {})).jobs.length, 3);
  await main.cancel(job_id);
});

Deno.test("policy server: a token's executes per minute and its running jobs are limited", async () => {
  await using env = await policyServer();
  await using limited = await env.connect(LIMITED);
  await using again = await env.connect(LIMITED);
  const first = await limited.request("execute", { command: "sleep 30", subscribe: false });
  // Its second connection counts against the same token.
  const busy = await rpcError(again.request("execute", { command: "true" }));
  assert.equal(busy.code, ErrorCode.TOO_MANY_JOBS);
  assert.deepEqual(busy.data, { running: 1, limit: 1, scope: "token", token: "limited" });
  await limited.cancel(first.job_id);
  await limited.request("jobs.wait", { job_id: first.job_id });
  // Three executes a minute: two were spent above, one is left, then the fourth waits.
  assert.equal((await again.execute({ command: "true" })).exitCode, 0);
  const limitedOut = await rpcError(again.execute({ command: "true" }));
  assert.equal(limitedOut.code, ErrorCode.RATE_LIMITED);
  const data = limitedOut.data as Record<string, number | string>;
  assert.equal(data.limit, 3);
  assert.ok(
    Number(data.retry_after_ms) > 0 && Number(data.retry_after_ms) <= 20_000,
    String(data.retry_after_ms),
  );
  const info = await again.request("server.info", {});
  assert.equal(info.limits.executes_per_minute, 3);
  assert.equal(info.limits.max_jobs_per_token, 1);
  // Other tokens are not affected.
  await using main = await env.connect(MAIN);
  assert.equal((await main.execute({ command: "true" })).exitCode, 0);
});

Deno.test("policy server: /mcp applies the token's policy too", async () => {
  await using env = await policyServer();
  const url = new URL(env.server.url.replace(/^ws/, "http").replace(/\/ws$/, "/mcp"));
  const client = new Client({ name: "policy-test", version: "1.0.0" });
  await client.connect(
    new StreamableHTTPClientTransport(url, {
      requestInit: { headers: { authorization: `Bearer ${READER}` } },
    }),
  );
  try {
    const text = async (command: string) => {
      const result = await client.callTool({ name: "execute", arguments: { command } }) as {
        isError?: boolean;
        content: { text?: string }[];
      };
      return { isError: result.isError === true, text: result.content.map((c) => c.text).join("") };
    };
    const ok = await text("echo over-mcp");
    assert.equal(ok.isError, false);
    assert.match(ok.text, /over-mcp/);
    const denied = await text("echo x | xargs rm");
    assert.equal(denied.isError, true);
    assert.match(denied.text, /Denied by policy "read-only" \(rule allow-list\)/);
  } finally {
    await client.close();
  }
});

Deno.test("policy server: a bad policy file, or a shell it cannot read, stops the start with the reason", async () => {
  const dir = await Deno.makeTempDir({ prefix: "policy-bad-" });
  try {
    const path = join(dir, "policy.json");
    await Deno.writeTextFile(
      path,
      JSON.stringify({ policies: { default: { deny: [{ executable: "rm", args: "[" }] } } }),
    );
    assert.throws(
      () => loadConfig({ env: { CC_EXECUTOR_POLICY: path }, envFile: null }),
      (error: unknown) =>
        error instanceof ConfigError && error.variable === "CC_EXECUTOR_POLICY" &&
        /CC_EXECUTOR_POLICY=".*policy\.json": policies\.default\.deny\[0\]\.args: not a valid regular expression/
          .test(error.message),
    );
    await Deno.writeTextFile(path, "{ not json");
    assert.throws(
      () => loadConfig({ env: { CC_EXECUTOR_POLICY: path }, envFile: null }),
      /cannot read it as JSON/,
    );
    // Another address than loopback needs a token: a policy file's tokens are tokens.
    await Deno.writeTextFile(
      path,
      JSON.stringify({ tokens: [{ name: "ci", token_sha256: "a".repeat(64) }] }),
    );
    assert.equal(
      loadConfig({ env: { CC_EXECUTOR_POLICY: path, CC_EXECUTOR_HOST: "0.0.0.0" }, envFile: null })
        .host,
      "0.0.0.0",
    );
    await Deno.writeTextFile(path, JSON.stringify({ policies: { default: { deny: [] } } }));
    const config = loadConfig({
      env: { CC_EXECUTOR_POLICY: path, CC_EXECUTOR_PORT: "0" },
      envFile: null,
    });
    await assert.rejects(
      startServer({ ...config, db: ":memory:" }, { logger: silentLogger, shell: "/usr/bin/zsh" }),
      (error: unknown) =>
        error instanceof ServerStartError &&
        /reads bash and sh syntax, and the shell is \/usr\/bin\/zsh/.test(error.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth: every token is compared in constant time over equal-length digests", () => {
  const calls: [number, number][] = [];
  const spy = (a: Uint8Array, b: Uint8Array) => {
    calls.push([a.length, b.length]);
    return timingSafeEqual(a, b);
  };
  const config = loadConfig({ env: { CC_EXECUTOR_TOKEN: MAIN }, envFile: null });
  const principals = new Principals({
    ...config,
    policy: {
      defaultPolicy: null,
      tokens: [{
        name: "t",
        digest: new Uint8Array(32),
        policy: null,
        maxJobs: null,
        executesPerMinute: null,
        history: false,
      }],
    },
  }, spy);
  const request = (token: string) =>
    new Request("http://x/ws", { headers: { authorization: `Bearer ${token}` } });
  assert.equal(principals.authenticate(request("short")), null);
  assert.equal(principals.authenticate(request(MAIN))?.name, "default");
  // Both candidates compared every time, whatever matched, always 32 bytes against 32 bytes.
  assert.deepEqual(calls, [[32, 32], [32, 32], [32, 32], [32, 32]]);
  assert.equal(Principals.compare, timingSafeEqual, "the default comparison is node:crypto's");
});

Deno.test("policy server: a job id used by another token's job, gone from memory, is refused without its command", async () => {
  await using env = await policyServer({ keepFinishedJobs: 0 });
  await using main = await env.connect(MAIN);
  await using reader = await env.connect(READER);
  await main.execute({ command: "echo TOP-SECRET", job_id: "deploy-42" });
  await waitUntil(
    () => main.request("jobs.get", { job_id: "deploy-42" }).then(() => false, () => true),
    "the finished job to leave memory",
  );
  for (const command of ["true", "rm -rf /tmp/nothing"]) {
    const conflict = await rpcError(reader.request("execute", { command, job_id: "deploy-42" }));
    assert.equal(conflict.code, ErrorCode.JOB_ID_CONFLICT, command);
    assert.deepEqual(conflict.data, { job_id: "deploy-42" }, "neither the command nor its status");
    assert.doesNotMatch(conflict.message, /SECRET|completed/);
  }
  // The main token is told, as before.
  const own = await rpcError(main.request("execute", { command: "true", job_id: "deploy-42" }));
  assert.equal((own.data as Record<string, unknown>).command, "echo TOP-SECRET");
});
