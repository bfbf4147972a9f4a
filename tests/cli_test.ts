import assert from "node:assert/strict";
import { ExecutorClient } from "../server/client.ts";
import { groupAlive } from "./test_util.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** `deno run -A main.ts <args>` as a real subprocess. */
function cli(args: string[], env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { CC_EXECUTOR_ENV_FILE: "/nonexistent/.env", NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Starts `server start` on a free port and resolves once it is listening. */
async function startCliServer(env: Record<string, string> = {}) {
  const child = cli(["server", "start"], {
    CC_EXECUTOR_PORT: "0",
    CC_EXECUTOR_KILL_GRACE_MS: "300",
    ...env,
  })
    .spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  while (true) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`server exited before listening:\n${log}`);
    log += value;
    const match = /listening on (ws:\/\/\S+)/.exec(log);
    if (match) {
      // Keep draining stderr so the server never blocks on a full pipe.
      const rest = (async () => {
        while (true) {
          const { value, done } = await lines.read();
          if (done) return log;
          log += value;
        }
      })();
      return { child, url: match[1]!, log: () => rest };
    }
  }
}

Deno.test("cli: server start stops every job on SIGTERM, reports them, and exits 0", async () => {
  const { child, url, log } = await startCliServer();
  const client = await ExecutorClient.connect(url);
  let pgid = 0;
  const outcome = client.execute({
    command: "sleep 30 & sleep 30 & echo ready; wait",
    onEvent: (e) => {
      if (e.method === "process.started") pgid = e.params.pgid;
    },
    onStdout: () => child.kill("SIGTERM"),
  });
  const result = await outcome;
  assert.equal(result.status, "canceled");
  assert.equal(result.error, "server shutting down");
  const status = await child.status;
  assert.equal(status.code, 0);
  assert.equal(groupAlive(pgid), false, "the server waited for the group before exiting");
  await client.closed;
  await child.stdout.cancel();
  assert.match(await log(), /stopping: waiting for running jobs/);
});

Deno.test("cli: Ctrl-C (SIGINT) stops the server cleanly too", async () => {
  const { child, url, log } = await startCliServer();
  const health = await fetch(url.replace("ws://", "http://").replace(/\/ws$/, "/health")).then((
    r,
  ) => r.json());
  assert.equal(health.status, "ok");
  child.kill("SIGINT");
  assert.equal((await child.status).code, 0);
  await child.stdout.cancel();
  await log();
});

Deno.test("cli: a second Ctrl-C kills every group at once and exits", async () => {
  // A grace period far longer than the test: only the second signal can end the job in time.
  const { child, url, log } = await startCliServer({ CC_EXECUTOR_KILL_GRACE_MS: "60000" });
  const client = await ExecutorClient.connect(url);
  let pgid = 0;
  let interrupted = false;
  const result = await client.execute({
    command: "trap '' TERM; sleep 30 & echo ready; wait",
    onEvent: (e) => {
      if (e.method === "process.started") pgid = e.params.pgid;
    },
    onStdout: () => {
      if (interrupted) return;
      interrupted = true;
      child.kill("SIGINT");
      // The second one once the first has been taken in (the job is being stopped by then).
      setTimeout(() => child.kill("SIGINT"), 300);
    },
  });
  assert.equal(result.status, "canceled");
  assert.equal(result.error, "server shutting down");
  assert.equal(result.signal, "SIGKILL");
  const status = await child.status;
  assert.ok(status.code === 0 || status.code === 1, `exit code ${status.code}`);
  assert.equal(groupAlive(pgid), false);
  await client.closed;
  await child.stdout.cancel();
  assert.match(await log(), /killing every job now/);
});

Deno.test("cli: a port already in use is reported and exits non-zero", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = String((taken.addr as Deno.NetAddr).port);
    const { code, stderr } = await cli(["server", "start", "--port", port]).output();
    assert.equal(code, 1);
    const message = new TextDecoder().decode(stderr);
    assert.match(
      message,
      new RegExp(`Cannot listen on 127.0.0.1:${port}: the port is already in use`),
    );
    assert.doesNotMatch(message, /\n\s+at /, "no stack trace");
  } finally {
    taken.close();
  }
});

Deno.test("cli: a bad configuration value names the variable and exits non-zero", async () => {
  const { code, stderr } = await cli(["server", "start"], { CC_EXECUTOR_MAX_JOBS: "lots" })
    .output();
  assert.equal(code, 1);
  assert.equal(
    new TextDecoder().decode(stderr).trim(),
    'cc-executor: Invalid configuration: CC_EXECUTOR_MAX_JOBS="lots": expected a whole number between 1 and 100000',
  );
  const shell = await cli(["server", "start"], { CC_EXECUTOR_SHELL: "/no/such/shell" }).output();
  assert.equal(shell.code, 1);
  assert.match(
    new TextDecoder().decode(shell.stderr),
    /CC_EXECUTOR_SHELL=\/no\/such\/shell cannot be run/,
  );
});

Deno.test("cli: unknown commands and --help behave like a CLI should", async () => {
  const unknown = await cli(["frobnicate"]).output();
  assert.notEqual(unknown.code, 0);
  assert.match(new TextDecoder().decode(unknown.stderr), /unknown command 'frobnicate'/);
  const help = await cli(["server", "start", "--help"]).output();
  assert.equal(help.code, 0);
  assert.match(new TextDecoder().decode(help.stdout), /--port <port>/);
});
