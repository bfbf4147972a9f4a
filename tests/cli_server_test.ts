import assert from "node:assert/strict";
import { ExecutorClient } from "../server/client.ts";
import { processAlive } from "../server/process.ts";
import { cliCommand, hasScript, runCli, startCliServer, tempStateDir } from "./cli_util.ts";
import { groupAlive, waitUntil } from "./test_util.ts";

/** `cc-executor <args>` as a real subprocess, with `env` added. */
function cli(args: string[], env: Record<string, string> = {}) {
  return cliCommand(args, { env });
}

Deno.test("cli server: server start stops every job on SIGTERM, reports them, and exits 0", async () => {
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

Deno.test("cli server: Ctrl-C (SIGINT) stops the server cleanly too", async () => {
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

Deno.test("cli server: a second Ctrl-C kills every group at once and exits", async () => {
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

Deno.test("cli server: a port already in use is reported and exits non-zero", async () => {
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

Deno.test("cli server: a bad configuration value names the variable and exits non-zero", async () => {
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

Deno.test("cli server: unknown commands and --help behave like a CLI should", async () => {
  const unknown = await cli(["frobnicate"]).output();
  assert.equal(unknown.code, 2);
  assert.match(new TextDecoder().decode(unknown.stderr), /unknown command 'frobnicate'/);
  const help = await cli(["server", "start", "--help"]).output();
  assert.equal(help.code, 0);
  assert.match(new TextDecoder().decode(help.stdout), /--port <port>/);
});

Deno.test("cli server: start --detach, status, run through it, stop; the pid file tracks it", async () => {
  const state = tempStateDir();
  const env = { CC_EXECUTOR_STATE_DIR: state, CC_EXECUTOR_KILL_GRACE_MS: "300" };
  try {
    const started = await runCli(["server", "start", "--detach", "--port", "0"], { env });
    assert.equal(started.code, 0, started.stderr);
    const url = /listening on (ws:\/\/\S+)/.exec(started.stdout)?.[1];
    assert.ok(url, started.stdout);
    assert.doesNotMatch(started.stderr, /⠋|\r/, "no spinner when stderr is not a terminal");
    const pidFile = JSON.parse(Deno.readTextFileSync(`${state}/server.pid`));
    assert.equal(pidFile.url, url);
    assert.match(Deno.readTextFileSync(`${state}/server.log`), /listening on/);

    // The detached server outlives the command that started it, and is found without --url.
    const status = await runCli(["server", "status", "--json"], { env });
    assert.equal(status.code, 0, status.stderr);
    const report = JSON.parse(status.stdout);
    assert.equal(report.status, "up");
    assert.equal(report.url, url);
    assert.equal(report.pid, pidFile.pid);
    assert.equal(report.store.backend, "sqlite");
    assert.equal(report.store.status, "ok");
    assert.equal(report.running_jobs, 0);

    const again = await runCli(["server", "start", "--detach", "--port", "0"], { env });
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`already running \\(pid ${pidFile.pid}`));

    // A job left running is stopped and reported when the server stops.
    const detachedJob = await runCli(["run", "--detach", "sleep 60"], { env });
    assert.equal(detachedJob.code, 0, detachedJob.stderr);
    const jobId = detachedJob.stdout.trim();
    const client = await ExecutorClient.connect(url);
    const { pgid } = await client.request("jobs.get", { job_id: jobId });
    const outcome = client.subscribe(jobId, { collect: false });
    assert.equal(groupAlive(pgid), true);

    const stopped = await runCli(["server", "stop"], { env });
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stdout, new RegExp(`cc-executor stopped \\(pid ${pidFile.pid}\\)`));
    const result = await outcome;
    assert.equal(result.status, "canceled");
    assert.equal(result.error, "server shutting down");
    assert.equal(groupAlive(pgid), false, "no process is left behind");
    await client.closed;
    assert.throws(() => Deno.statSync(`${state}/server.pid`), Deno.errors.NotFound);

    const down = await runCli(["server", "status"], { env });
    assert.equal(down.code, 1);
    assert.match(down.stdout, /down/);
    assert.match(down.stderr, /server start --detach/);
    const stopAgain = await runCli(["server", "stop"], { env });
    assert.equal(stopAgain.code, 0);
    assert.match(stopAgain.stdout, /no background server is running/);
  } finally {
    await stopLeftover(state);
  }
});

Deno.test("cli server: restart keeps the address; a taken port fails a detached start with the reason", async () => {
  const state = tempStateDir();
  const env = { CC_EXECUTOR_STATE_DIR: state };
  try {
    const started = await runCli(["server", "start", "--detach", "--port", "0"], { env });
    assert.equal(started.code, 0, started.stderr);
    const before = JSON.parse(Deno.readTextFileSync(`${state}/server.pid`));
    const restarted = await runCli(["server", "restart"], { env });
    assert.equal(restarted.code, 0, restarted.stderr);
    const after = JSON.parse(Deno.readTextFileSync(`${state}/server.pid`));
    assert.notEqual(after.pid, before.pid);
    assert.equal(after.url, before.url, "same host and port as before");
    await waitUntil(() => !processAlive(before.pid), "the old server to be gone");
    assert.equal((await runCli(["server", "stop"], { env })).code, 0);

    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const port = String((taken.addr as Deno.NetAddr).port);
      const failed = await runCli(["server", "start", "--detach", "--port", port], { env });
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /exited during start/);
      assert.match(failed.stderr, new RegExp(`127.0.0.1:${port}: the port is already in use`));
      assert.throws(() => Deno.statSync(`${state}/server.pid`), Deno.errors.NotFound);
    } finally {
      taken.close();
    }
  } finally {
    await stopLeftover(state);
  }
});

Deno.test("cli server: a detached server bound to every address is recorded at the loopback address; restart keeps the bind", async () => {
  const state = tempStateDir();
  const env = { CC_EXECUTOR_STATE_DIR: state, CC_EXECUTOR_TOKEN: "a-token-of-sixteen-plus" };
  try {
    const started = await runCli([
      "server",
      "start",
      "--detach",
      "--host",
      "0.0.0.0",
      "--port",
      "0",
    ], {
      env,
    });
    assert.equal(started.code, 0, started.stderr);
    assert.match(
      started.stdout,
      /listening on ws:\/\/127\.0\.0\.1:\d+\/ws \(bound to 0\.0\.0\.0\)/,
    );
    const before = JSON.parse(Deno.readTextFileSync(`${state}/server.pid`));
    assert.match(before.url, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
    assert.equal(before.host, "0.0.0.0");
    const run = await runCli(["run", "echo through the record"], { env });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "through the record\n");

    const restarted = await runCli(["server", "restart"], { env });
    assert.equal(restarted.code, 0, restarted.stderr);
    const after = JSON.parse(Deno.readTextFileSync(`${state}/server.pid`));
    assert.notEqual(after.pid, before.pid);
    assert.equal(after.host, "0.0.0.0", "still bound to every address");
    assert.equal(after.url, before.url);
  } finally {
    await stopLeftover(state);
  }
});

Deno.test("cli server: outside a terminal, SIGHUP reloads the hooks and the server keeps running", async () => {
  const hooksDir = Deno.makeTempDirSync({ prefix: "cc-hooks-" });
  const { child, url, log } = await startCliServer({ CC_EXECUTOR_HOOKS_DIR: hooksDir });
  const client = await ExecutorClient.connect(url);
  try {
    const { pgid } = await client.request("execute", { command: "sleep 30", detach: true });
    assert.deepEqual((await client.request("hooks.status", {})).hooks, []);
    Deno.writeTextFileSync(`${hooksDir}/noop.sh`, "#!/bin/sh\ncat >/dev/null\n");
    Deno.chmodSync(`${hooksDir}/noop.sh`, 0o755);
    Deno.writeTextFileSync(
      `${hooksDir}/hooks.json`,
      JSON.stringify({ hooks: [{ name: "noop", point: "pre_execution", command: ["./noop.sh"] }] }),
    );
    child.kill("SIGHUP");
    await waitUntil(async () => {
      const status = await client.request("hooks.status", {});
      return status.hooks.some((hook) => hook.name === "noop");
    }, "the hooks to be reloaded");
    assert.equal(groupAlive(pgid), true, "the job keeps running");
    assert.equal((await client.execute({ command: "echo still here" })).stdout, "still here\n");
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    assert.equal(groupAlive(pgid), false);
    assert.match(await log(), /hooks reloaded: 1 loaded/);
  } finally {
    await client[Symbol.asyncDispose]();
    await child.stdout.cancel();
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
  }
});

Deno.test("cli server: in a terminal, a hangup (terminal closed) stops the server and its jobs", async () => {
  // `script` gives the server a pseudo-terminal as stdin, as a shell in a terminal window would.
  const state = tempStateDir();
  const main = new URL("../main.ts", import.meta.url).pathname;
  const command = [Deno.execPath(), "run", "-A", main, "server", "start", "--port", "0"]
    .map((arg) => `'${arg}'`).join(" ");
  const child = new Deno.Command("script", {
    args: ["-qfec", command, "/dev/null"],
    env: {
      CC_EXECUTOR_ENV_FILE: "/nonexistent/.env",
      CC_EXECUTOR_STATE_DIR: state,
      CC_EXECUTOR_DB: ":memory:",
      CC_EXECUTOR_KILL_GRACE_MS: "300",
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let url: string | undefined;
  while (!url) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited before listening:\n${text}`);
    text += value;
    url = /listening on (ws:\/\/\S+)/.exec(text)?.[1];
  }
  const client = await ExecutorClient.connect(url);
  const { pid } = await client.request("server.info", {});
  try {
    const { pgid } = await client.request("execute", { command: "sleep 30", detach: true });
    Deno.kill(pid, "SIGHUP");
    await waitUntil(() => !processAlive(pid), "the server to exit");
    assert.equal(groupAlive(pgid), false, "no job outlives the terminal");
  } finally {
    if (processAlive(pid)) Deno.kill(pid, "SIGKILL");
    await client.closed;
    await reader.cancel();
    await child.stderr.cancel();
    await child.status;
  }
});

Deno.test("cli server: two detached starts at once give one server; the other says it is running", async () => {
  const state = tempStateDir();
  const env = { CC_EXECUTOR_STATE_DIR: state };
  try {
    const [first, second] = await Promise.all([
      runCli(["server", "start", "--detach", "--port", "0"], { env }),
      runCli(["server", "start", "--detach", "--port", "0"], { env }),
    ]);
    assert.deepEqual([first.code, second.code].sort(), [0, 1], first.stderr + second.stderr);
    assert.match(first.stderr + second.stderr, /already running/);
    const { pid } = JSON.parse(Deno.readTextFileSync(`${state}/server.pid`));
    assert.equal((await runCli(["server", "stop"], { env })).code, 0);
    assert.equal(processAlive(pid), false);
    assert.deepEqual(serversOf(state), [], "no second server left running");
  } finally {
    await stopLeftover(state);
  }
});

Deno.test("cli server: bad --port is a usage error; a restart that could not start stops nothing", async () => {
  const state = tempStateDir();
  const env = { CC_EXECUTOR_STATE_DIR: state };
  try {
    const badPort = await runCli(["server", "start", "--port", "70000"], { env });
    assert.equal(badPort.code, 2);
    assert.match(badPort.stderr, /--port <port>.*expected a port number between 0 and 65535/);

    assert.equal((await runCli(["server", "start", "--detach", "--port", "0"], { env })).code, 0);
    const { pid } = JSON.parse(Deno.readTextFileSync(`${state}/server.pid`));
    const badRestart = await runCli(["server", "restart", "--port", "abc"], { env });
    assert.equal(badRestart.code, 2);
    const unsafe = await runCli(["server", "restart", "--host", "0.0.0.0"], { env });
    assert.equal(unsafe.code, 1);
    assert.match(unsafe.stderr, /Not restarting: Refusing to listen on 0\.0\.0\.0 without a token/);
    assert.equal(processAlive(pid), true, "the running server was left alone");
    assert.equal((await runCli(["server", "status"], { env })).code, 0);
  } finally {
    await stopLeftover(state);
  }
});

Deno.test("cli server: status tells a stale pid file and a foreign HTTP server from a live server", async () => {
  const state = tempStateDir();
  const foreign = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("nope", { status: 404 }),
  );
  try {
    // A record left by a server that died, naming an address where something else now listens.
    Deno.writeTextFileSync(
      `${state}/server.pid`,
      JSON.stringify({
        pid: 999_999_9,
        url: `ws://127.0.0.1:${foreign.addr.port}/ws`,
        log: `${state}/server.log`,
        started_at: new Date().toISOString(),
        version: "0.0.0",
      }),
    );
    const env = { CC_EXECUTOR_STATE_DIR: state };
    const viaDefault = await runCli(["server", "status", "--json"], {
      env: { ...env, CC_EXECUTOR_PORT: String(foreign.addr.port + 0) },
    });
    const report = JSON.parse(viaDefault.stdout);
    assert.equal(viaDefault.code, 1);
    assert.equal(report.status, "down");
    assert.match(report.note, /HTTP 404 for \/health\) but it is not a cc-executor server/);
    assert.equal(
      (await runCli(["server", "stop"], { env })).stdout,
      "no background server is running\n",
    );
    assert.throws(() => Deno.statSync(`${state}/server.pid`), Deno.errors.NotFound);
  } finally {
    await foreign.shutdown();
    await stopLeftover(state);
  }
});

Deno.test({
  name: "cli server: on a terminal, a detached start shows a spinner while it waits",
  ignore: !hasScript,
  fn: async () => {
    const state = tempStateDir();
    try {
      // util-linux `script` gives the CLI a real pseudo-terminal.
      const main = new URL("../main.ts", import.meta.url).pathname;
      const line = `'${Deno.execPath()}' run -A '${main}' server start --detach --port 0`;
      const { stdout } = await new Deno.Command("script", {
        args: ["-qec", line, "/dev/null"],
        env: { CC_EXECUTOR_STATE_DIR: state, CC_EXECUTOR_ENV_FILE: "/nonexistent/.env" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const screen = new TextDecoder().decode(stdout);
      assert.match(screen, /⠋ starting cc-executor in the background/);
      assert.ok(screen.includes("\r\x1b[2K"), "the spinner erases itself");
      assert.match(screen, /started in the background/);
    } finally {
      await stopLeftover(state);
    }
  },
});

/** Live processes started with `--pid-file <state>/...` (servers of that state directory). */
function serversOf(state: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      const at = argv.indexOf("--pid-file");
      if (at >= 0 && argv[at + 1]?.startsWith(`${state}/`) && processAlive(Number(entry.name))) {
        pids.push(Number(entry.name));
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** A failed test must not leave a background server running. */
async function stopLeftover(state: string): Promise<void> {
  try {
    const { pid } = JSON.parse(Deno.readTextFileSync(`${state}/server.pid`));
    if (processAlive(pid)) {
      Deno.kill(pid, "SIGTERM");
      await waitUntil(() => !processAlive(pid), "the leftover server to stop");
    }
  } catch {
    // No pid file: nothing left.
  }
  Deno.removeSync(state, { recursive: true });
}
