/**
 * The server-wide limits on one job (CC_EXECUTOR_MAX_OUTPUT_BYTES, CC_EXECUTOR_MAX_TIMEOUT) and
 * the environment command hooks get, through real servers, real clients and real processes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { defaultConfig, loadConfig, type ServerConfig } from "../server/config.ts";
import { createLogger, silentLogger } from "../server/log.ts";
import { ErrorCode } from "../server/protocol.ts";
import { type ExecutorServer, startServer } from "../server/server.ts";
import { type Frame, RawClient, startTestServer } from "./test_util.ts";

/** Runs `params` to the end: the execute result and the process.completed params. */
async function run(
  client: RawClient,
  params: Record<string, unknown>,
): Promise<{ result: Frame; done: Frame }> {
  const result = await client.result("execute", params);
  return { result, done: await client.completion(result.job_id) };
}

/** A folder of hook files (names ending in .sh are made executable), removed at the end. */
function hooksFolder(files: Record<string, string>): { path: string } & Disposable {
  const path = Deno.makeTempDirSync({ prefix: "cc-limits-" });
  for (const [name, text] of Object.entries(files)) {
    Deno.writeTextFileSync(join(path, name), text);
    Deno.chmodSync(join(path, name), name.endsWith(".sh") ? 0o755 : 0o644);
  }
  return { path, [Symbol.dispose]: () => Deno.removeSync(path, { recursive: true }) };
}

function startHookServer(
  dir: string,
  overrides: Partial<ServerConfig>,
  log?: string[],
): Promise<ExecutorServer> {
  return startServer(
    defaultConfig({
      port: 0,
      killGraceMs: 300,
      hooks: { ...defaultConfig().hooks, dir },
      ...overrides,
    }),
    { logger: log ? createLogger("warn", { write: (line) => log.push(line) }) : silentLogger },
  );
}

Deno.test("limits: a request over CC_EXECUTOR_MAX_TIMEOUT or CC_EXECUTOR_MAX_OUTPUT_BYTES gets -32602 naming the limit", async () => {
  await using server = await startTestServer({ maxTimeoutSeconds: 60, maxOutputBytes: 1000 });
  await using client = await RawClient.connect(server.url);

  const longer = await client.call("execute", { command: "echo never", timeout: 61 });
  assert.equal(longer.error.code, ErrorCode.INVALID_PARAMS);
  assert.match(longer.error.message, /timeout 61 .*limit of 60 \(CC_EXECUTOR_MAX_TIMEOUT\)/);
  assert.deepEqual(longer.error.data, {
    limit: 60,
    variable: "CC_EXECUTOR_MAX_TIMEOUT",
    requested: 61,
  });

  const more = await client.call("execute", { command: "echo never", max_output_bytes: 1001 });
  assert.equal(more.error.code, ErrorCode.INVALID_PARAMS);
  assert.match(
    more.error.message,
    /max_output_bytes 1001 .*limit of 1000 \(CC_EXECUTOR_MAX_OUTPUT_BYTES\)/,
  );
  assert.deepEqual(more.error.data, {
    limit: 1000,
    variable: "CC_EXECUTOR_MAX_OUTPUT_BYTES",
    requested: 1001,
  });
  assert.equal(server.jobs.list().length, 0, "no job was started for a refused request");

  // At the limits is within them.
  const { result, done } = await run(client, {
    command: "echo fine",
    timeout: 60,
    max_output_bytes: 1000,
  });
  assert.deepEqual(result.timeout, { seconds: 60, source: "request", samples: 0 });
  assert.equal(done.status, "completed");
  assert.equal(client.output(result.job_id), "fine\n");
});

Deno.test("limits: CC_EXECUTOR_MAX_OUTPUT_BYTES cuts a chatty command that named no max_output_bytes", async () => {
  await using server = await startTestServer({ maxOutputBytes: 1000 });
  await using client = await RawClient.connect(server.url);
  const { result, done } = await run(client, { command: "head -c 100000 /dev/zero | tr '\\0' x" });
  assert.equal(done.status, "completed", "the command itself ran to the end");
  assert.equal(done.truncated, true);
  assert.deepEqual(done.bytes, { stdout: 100_000, stderr: 0 }, "what it wrote is counted");
  assert.equal(client.output(result.job_id), "x".repeat(1000));
  const outputs = client.events(result.job_id).filter((e) => e.method === "process.output");
  assert.equal(outputs.at(-1).params.truncated, true, "the last delivered chunk is marked");

  // A request may ask for less than the cap.
  const less = await run(client, { command: "printf 0123456789", max_output_bytes: 4 });
  assert.equal(less.done.truncated, true);
  assert.equal(client.output(less.result.job_id), "0123");
});

Deno.test("limits: CC_EXECUTOR_MAX_TIMEOUT caps the default timeout, no timeout at all, and a prompt's run", async () => {
  using dir = hooksFolder({ "claude.sh": "#!/bin/sh\nexec sleep 30\n" });
  const limit = { seconds: 1, source: "limit", samples: 0 };
  {
    // The default timeout (600 s) is over the cap.
    await using server = await startTestServer({
      maxTimeoutSeconds: 1,
      claudeBin: join(dir.path, "claude.sh"),
    });
    await using client = await RawClient.connect(server.url);
    const { result, done } = await run(client, { command: "sleep 30" });
    assert.deepEqual(result.timeout, limit);
    assert.equal(done.status, "timed_out");
    assert.match(done.reason, /timed out after 1s .*CC_EXECUTOR_MAX_TIMEOUT/);

    const prompt = await run(client, { prompt: "hi", claude: { output_format: "text" } });
    assert.deepEqual(prompt.result.timeout, limit);
    assert.equal(prompt.done.status, "timed_out");

    // A timeout under the cap is the request's.
    const own = await client.result("execute", { command: "true", timeout: 0.5 });
    assert.deepEqual(own.timeout, { seconds: 0.5, source: "request", samples: 0 });
    await client.completion(own.job_id);
  }
  {
    // Adaptive timeouts off: a job would have no timeout at all; the cap is its timeout.
    await using server = await startTestServer({
      maxTimeoutSeconds: 1,
      timeouts: { ...defaultConfig().timeouts, adaptive: false },
    });
    await using client = await RawClient.connect(server.url);
    const { result, done } = await run(client, { command: "sleep 30" });
    assert.deepEqual(result.timeout, limit);
    assert.equal(done.status, "timed_out");
  }
  {
    // 0: no cap, as before.
    await using server = await startTestServer({
      maxTimeoutSeconds: null,
      timeouts: { ...defaultConfig().timeouts, adaptive: false },
    });
    await using client = await RawClient.connect(server.url);
    const { result } = await run(client, { command: "true" });
    assert.deepEqual(result.timeout, { seconds: null, source: "none", samples: 0 });
  }
});

Deno.test("limits: CC_EXECUTOR_MAX_TIMEOUT bounds a job with error-hook retries as a whole, not each run", async () => {
  using dir = hooksFolder({
    "again.sh": "#!/bin/sh\ncat >/dev/null\necho '{\"retry\": true}'\n",
    "hooks.json": JSON.stringify({
      hooks: [{ name: "again", point: "error", command: ["./again.sh"] }],
    }),
  });
  await using server = await startHookServer(dir.path, {
    maxTimeoutSeconds: 2,
    hooks: { ...defaultConfig().hooks, dir: dir.path, maxAttempts: 10 },
  });
  await using client = await RawClient.connect(server.url);
  // Each run may take 1.5 s (the request's timeout, per run): the second gets what is left of the
  // job's 2 s, and no third starts. Before, each of the 10 attempts got its full 1.5 s.
  const result = await client.result("execute", { command: "sleep 30", timeout: 1.5 });
  assert.deepEqual(result.timeout, { seconds: 1.5, source: "request", samples: 0 });
  const done = await client.completion(result.job_id, 60_000);
  const runs = client.events(result.job_id).filter((f) => f.method === "process.started");
  assert.equal(done.status, "timed_out");
  assert.ok(runs.length <= 2, `${runs.length} runs of the 10 the hook asked for`);
  assert.match(
    done.reason,
    /the job used up the server's limit of 2s on a job's wall time, every run included \(CC_EXECUTOR_MAX_TIMEOUT\)/,
  );
});

Deno.test("limits: CC_EXECUTOR_MAX_TIMEOUT bounds a job with Claude retries: no wait for a limit past it", async () => {
  await using server = await startTestServer({
    maxTimeoutSeconds: 3,
    claudeBin: new URL("./fake_claude/claude", import.meta.url).pathname,
  });
  await using client = await RawClient.connect(server.url);
  // Every run hits a rate limit that asks for a 1 s wait: up to 10 attempts, about 10 s, before.
  const result = await client.result("execute", {
    prompt: "hello [[rate-limit:1]]",
    retry: { max_attempts: 10, strategy: "wait" },
  });
  const done = await client.completion(result.job_id, 60_000);
  const runs = client.events(result.job_id).filter((f) => f.method === "process.started");
  assert.equal(done.status, "timed_out");
  assert.ok(runs.length < 10, `${runs.length} runs of the 10 asked for`);
  assert.match(done.reason, /CC_EXECUTOR_MAX_TIMEOUT/);
});

Deno.test("limits: a pre_execution hook's longer timeout is capped to CC_EXECUTOR_MAX_TIMEOUT and logged", async () => {
  using dir = hooksFolder({
    "longer.sh": `#!/bin/sh
cat >/dev/null
echo '{"timeout": 3600}'
`,
    "hooks.json": JSON.stringify({
      hooks: [{ name: "longer", point: "pre_execution", command: ["./longer.sh"] }],
    }),
  });
  const log: string[] = [];
  await using server = await startHookServer(dir.path, { maxTimeoutSeconds: 1 }, log);
  await using client = await RawClient.connect(server.url);
  const { result, done } = await run(client, { command: "sleep 30", job_id: "hooked" });
  assert.deepEqual(result.timeout, { seconds: 1, source: "limit", samples: 0 });
  assert.equal(done.status, "timed_out");
  const warning = log.find((line) => line.includes("CC_EXECUTOR_MAX_TIMEOUT"));
  assert.ok(warning, `a warning says the hook's timeout was capped: ${log.join("")}`);
  assert.match(warning, /"job_id":"hooked","timeout":3600,"limit":1/);
});

Deno.test("limits: server.info reports max_output_bytes and max_timeout_seconds", async () => {
  {
    await using server = await startTestServer();
    await using client = await RawClient.connect(server.url);
    const { limits } = await client.result("server.info", {});
    assert.equal(limits.max_output_bytes, null, "no output cap by default");
    assert.equal(limits.max_timeout_seconds, 86_400, "a day by default");
  }
  {
    const config = loadConfig({
      env: { CC_EXECUTOR_MAX_OUTPUT_BYTES: "1048576", CC_EXECUTOR_MAX_TIMEOUT: "3600" },
      envFile: null,
    });
    await using server = await startTestServer({
      maxOutputBytes: config.maxOutputBytes,
      maxTimeoutSeconds: config.maxTimeoutSeconds,
    });
    await using client = await RawClient.connect(server.url);
    const { limits } = await client.result("server.info", {});
    assert.equal(limits.max_output_bytes, 1_048_576);
    assert.equal(limits.max_timeout_seconds, 3600);
  }
  // CC_EXECUTOR_MAX_TIMEOUT=0 is no cap.
  const off = loadConfig({ env: { CC_EXECUTOR_MAX_TIMEOUT: "0" }, envFile: null });
  assert.equal(off.maxTimeoutSeconds, null);
  assert.throws(
    () => loadConfig({ env: { CC_EXECUTOR_MAX_OUTPUT_BYTES: "0" }, envFile: null }),
    /CC_EXECUTOR_MAX_OUTPUT_BYTES="0": expected at least 1/,
  );
});

Deno.test("limits: command hooks get the environment commands get, their own env over it", async () => {
  using dir = hooksFolder({
    "show_env.sh": `#!/bin/sh
cat >/dev/null
env > "$(dirname "$0")/seen"
`,
    "hooks.json": JSON.stringify({
      hooks: [{
        name: "show-env",
        point: "pre_execution",
        command: ["./show_env.sh"],
        env: { HOOK_OWN: "mine" },
      }],
    }),
  });
  // The server's own environment (the default the server reads) holds the secrets.
  const planted = {
    CC_EXECUTOR_TOKEN: "server-token-0123456789",
    REDIS_URL: "redis://:password@db:6379",
    ANTHROPIC_API_KEY: "sk-ant-server",
    HARMLESS: "passes",
  };
  const before = Object.keys(planted).map((name) => [name, Deno.env.get(name)] as const);
  for (const [name, value] of Object.entries(planted)) Deno.env.set(name, value);
  using _restore = {
    [Symbol.dispose]: () => {
      for (const [name, value] of before) {
        if (value === undefined) Deno.env.delete(name);
        else Deno.env.set(name, value);
      }
    },
  };
  await using server = await startHookServer(dir.path, {});
  await using client = await RawClient.connect(server.url);
  const { done } = await run(client, { command: "true" });
  assert.equal(done.status, "completed");
  const seen = Deno.readTextFileSync(join(dir.path, "seen")).split("\n");
  assert.ok(seen.includes("HARMLESS=passes"), "an ordinary variable passes");
  assert.ok(seen.includes("HOOK_OWN=mine"), "the hook's own env applies");
  for (const secret of ["CC_EXECUTOR_TOKEN", "REDIS_URL", "ANTHROPIC_API_KEY"]) {
    assert.ok(!seen.some((line) => line.startsWith(`${secret}=`)), `${secret} is withheld`);
  }
});
