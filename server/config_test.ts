import assert from "node:assert/strict";
import { ConfigError, defaultConfig, isLoopbackHost, loadConfig } from "./config.ts";

Deno.test("config: defaults are loopback, port 8003, info logging", () => {
  const config = loadConfig({ env: {}, envFile: null });
  assert.equal(config.host, "127.0.0.1");
  assert.equal(config.port, 8003);
  assert.equal(config.logLevel, "info");
  assert.equal(config.shell, undefined);
  assert.equal(config.maxJobs, 100);
});

Deno.test("config: values come from the environment, and empty means unset", () => {
  const config = loadConfig({
    env: {
      CC_EXECUTOR_PORT: "9000",
      LOG_LEVEL: "DEBUG",
      CC_EXECUTOR_MAX_JOBS: " 7 ",
      CC_EXECUTOR_SHELL: "",
    },
    envFile: null,
  });
  assert.equal(config.port, 9000);
  assert.equal(config.logLevel, "debug");
  assert.equal(config.maxJobs, 7);
  assert.equal(config.shell, undefined);
});

Deno.test("config: a bad value stops the start with a message naming the variable", () => {
  const cases: [Record<string, string>, string, RegExp][] = [
    [
      { CC_EXECUTOR_PORT: "abc" },
      "CC_EXECUTOR_PORT",
      /CC_EXECUTOR_PORT="abc": expected a whole number/,
    ],
    [{ CC_EXECUTOR_PORT: "70000" }, "CC_EXECUTOR_PORT", /expected at most 65535/],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL", /LOG_LEVEL="loud"/],
    [{ CC_EXECUTOR_MAX_JOBS: "0" }, "CC_EXECUTOR_MAX_JOBS", /expected at least 1/],
    [{ CC_EXECUTOR_TOKEN: "short" }, "CC_EXECUTOR_TOKEN", /at least 16 characters/],
    [
      { CC_EXECUTOR_CHUNK_BYTES: "2097152", CC_EXECUTOR_REPLAY_BUFFER_BYTES: "1048576" },
      "CC_EXECUTOR_CHUNK_BYTES",
      /must not exceed CC_EXECUTOR_REPLAY_BUFFER_BYTES/,
    ],
  ];
  for (const [env, variable, message] of cases) {
    assert.throws(() => loadConfig({ env, envFile: null }), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.variable, variable);
      assert.match(error.message, message);
      return true;
    });
  }
});

Deno.test("config: a .env file fills in what the environment does not set", () => {
  const path = Deno.makeTempFileSync({ suffix: ".env" });
  try {
    Deno.writeTextFileSync(path, "# comment\nCC_EXECUTOR_PORT=9100\nCC_EXECUTOR_MAX_JOBS=3\n");
    const config = loadConfig({ env: { CC_EXECUTOR_MAX_JOBS: "5" }, envFile: path });
    assert.equal(config.port, 9100);
    assert.equal(config.maxJobs, 5, "the real environment wins");
    assert.equal(
      loadConfig({ env: { CC_EXECUTOR_ENV_FILE: path }, envFile: undefined }).port,
      9100,
    );
  } finally {
    Deno.removeSync(path);
  }
  assert.equal(
    loadConfig({ env: {}, envFile: "/nonexistent/.env" }).port,
    8003,
    "a missing file is fine",
  );
});

Deno.test("config: listening beyond loopback requires a token", () => {
  assert.throws(
    () => loadConfig({ env: { CC_EXECUTOR_HOST: "0.0.0.0" }, envFile: null }),
    /Refusing to listen on 0\.0\.0\.0 without a token/,
  );
  const config = loadConfig({
    env: { CC_EXECUTOR_HOST: "0.0.0.0", CC_EXECUTOR_TOKEN: "a-long-enough-token" },
    envFile: null,
  });
  assert.equal(config.host, "0.0.0.0");
  assert.throws(() => defaultConfig({ host: "192.168.1.5" }), ConfigError);
  assert.ok(isLoopbackHost("127.0.0.1") && isLoopbackHost("::1") && isLoopbackHost("localhost"));
  assert.ok(!isLoopbackHost("0.0.0.0") && !isLoopbackHost("10.0.0.1"));
});

Deno.test("config: CC_EXECUTOR_TOKEN_FILE gives the token; unreadable, shared or short files are refused", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const file = `${dir}/token`;
    Deno.writeTextFileSync(file, "token-from-a-file-0123456789\nsecond line ignored\n", {
      mode: 0o600,
    });
    Deno.chmodSync(file, 0o600);
    const env = { CC_EXECUTOR_TOKEN_FILE: file, CC_EXECUTOR_HOST: "0.0.0.0" };
    assert.equal(loadConfig({ env, envFile: null }).token, "token-from-a-file-0123456789");

    const refused = (overrides: Record<string, string>, message: RegExp) => {
      assert.throws(
        () => loadConfig({ env: { ...env, ...overrides }, envFile: null }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.variable, "CC_EXECUTOR_TOKEN_FILE");
          assert.match(error.message, message);
          assert.ok(!error.message.includes("token-from-a-file"), "the token is never repeated");
          return true;
        },
      );
    };
    refused({ CC_EXECUTOR_TOKEN: "another-token-0123456789" }, /not both/);
    refused({ CC_EXECUTOR_TOKEN_FILE: `${dir}/missing` }, /cannot read it/);
    Deno.chmodSync(file, 0o644);
    refused({}, /other users may read it \(mode 644\); run chmod 600 on it/);
    Deno.writeTextFileSync(`${dir}/short`, "short\n", { mode: 0o600 });
    Deno.chmodSync(`${dir}/short`, 0o600);
    refused({ CC_EXECUTOR_TOKEN_FILE: `${dir}/short` }, /16\+ characters/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("config: node ids valid before the cluster still are; a node URL carries no password", () => {
  for (const id of ["build 1", "ci@runner-3", "café", "a".repeat(101)]) {
    assert.equal(
      loadConfig({ env: { CC_EXECUTOR_NODE_ID: id }, envFile: null }).nodeId,
      id,
    );
  }
  assert.throws(
    () =>
      loadConfig({
        env: { CC_EXECUTOR_NODE_URL: "wss://ops:hunter2@n1.internal/ws" },
        envFile: null,
      }),
    /CC_EXECUTOR_NODE_URL.*a user or password has no place in it/,
  );
  assert.equal(
    loadConfig({
      env: { REDIS_URL: "redis://127.0.0.1:1", CC_EXECUTOR_NODE_URL: "wss://n1.internal/ws?a=b@c" },
      envFile: null,
    }).cluster?.url,
    "wss://n1.internal/ws?a=b@c",
  );
});
