// The locked-down server (`deno task start:locked`): what it is granted, that it works with only
// that (a scoped --allow-run included), that what Deno's permissions refuse ends as a clear error
// rather than a crash, and that widening the flags is all it takes to allow more.
import assert from "node:assert/strict";
import { ExecutorClient, type ExecutorRpcError } from "../server/client.ts";
import { ErrorCode } from "../server/protocol.ts";
import { SqliteStore } from "../server/store/sqlite.ts";
import { groupAlive } from "./test_util.ts";

const root = new URL("../", import.meta.url);
const lockedTask: string =
  JSON.parse(await Deno.readTextFile(new URL("deno.json", root))).tasks["start:locked"];

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A home of its own, so the locked server's history file lands in a temporary directory. */
const home = Deno.makeTempDirSync({ prefix: "cc-executor-home-" });

/**
 * Deno's own cache, which the home above would otherwise move: the locked server must find its
 * npm packages where this test run has them, not download them all again (which outlasts the
 * wait for it to come up).
 */
const denoDir: string = Deno.env.get("DENO_DIR") ??
  JSON.parse(
    new TextDecoder().decode(
      new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).outputSync().stdout,
    ),
  ).denoDir;

/** The fake `claude` (tests/fake_claude), by its path. */
const fakeClaude = new URL("tests/fake_claude/claude", root).pathname;

/**
 * The `deno run` flags of `deno task start:locked`, listening on `port` instead of 8003, with
 * `$HOME` expanded as deno task's shell does, and `widen` added to its --allow-run list.
 */
function lockedFlags(port: number, widen: string[] = []): string[] {
  const words = lockedTask.split(/\s+/);
  assert.deepEqual(words.slice(0, 2), ["deno", "run"]);
  assert.deepEqual(words.slice(-3), ["main.ts", "server", "start"]);
  return words.slice(2, -3)
    .map((flag) => flag.replace("127.0.0.1:8003", `127.0.0.1:${port}`).replaceAll("$HOME", home))
    .map((flag) => flag.startsWith("--allow-run=") ? [flag, ...widen].join(",") : flag);
}

function server(flags: string[], port: number, env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, "main.ts", "server", "start"],
    cwd: root.pathname,
    env: {
      CC_EXECUTOR_PORT: String(port),
      CC_EXECUTOR_KILL_GRACE_MS: "300",
      NO_COLOR: "1",
      HOME: home,
      DENO_DIR: denoDir,
      XDG_DATA_HOME: "",
      CC_EXECUTOR_DB: "",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Connects to a server that is still starting. */
async function connect(port: number): Promise<ExecutorClient> {
  for (let i = 0; i < 400; i++) {
    const client = await ExecutorClient.connect(`ws://127.0.0.1:${port}/ws`).catch(() => undefined);
    if (client) return client;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the locked server on port ${port} did not come up`);
}

/** A folder under tmp/, in the working directory, which the locked server may read. */
function readableTempDir(prefix: string): string {
  Deno.mkdirSync(new URL("tmp/", root), { recursive: true });
  return Deno.makeTempDirSync({ dir: new URL("tmp/", root).pathname, prefix });
}

Deno.test("permissions: the locked-down task runs, streams, cancels and stops groups with a scoped --allow-run", async () => {
  const flags = lockedFlags(freePort());
  assert.ok(!flags.some((f) => f === "-A" || f.startsWith("--allow-all")));
  assert.ok(flags.includes("--no-prompt"), "a refusal is an error, not a question on a terminal");
  const run = flags.filter((f) => f.startsWith("--allow-run"));
  assert.equal(run.length, 1);
  assert.ok(run[0]!.startsWith("--allow-run="), "--allow-run is a list, not unscoped");
  assert.deepEqual(
    run[0]!.slice("--allow-run=".length).split(",").sort(),
    ["bash", "kill", "setsid", "sh"],
    "the shells, setsid for process groups and kill for signals: nothing else",
  );
  assert.deepEqual(
    flags.filter((f) => f.startsWith("--allow-write")),
    [`--allow-write=${home}/.local/share/cc-executor`],
    "writes only the history database's directory (its spool/ folder included)",
  );
  assert.ok(!flags.some((f) => f.startsWith("--allow-ffi")));
  // System access only to the user id (hook files are checked against the server's user) and the
  // host name (the node id: servers sharing a store tell their jobs apart by it).
  assert.deepEqual(flags.filter((f) => f.startsWith("--allow-sys")), ["--allow-sys=uid,hostname"]);
  assert.deepEqual(
    flags.filter((f) => f.startsWith("--allow-read")),
    [`--allow-read=.,${home}/.local/share/cc-executor`],
    "reads the working directory and the history's folder only",
  );
  assert.ok(
    flags.some((f) => f.startsWith("--allow-net=")),
    "network access names the listen address",
  );
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(flags.join(" "))![1]);
  const child = server(flags, port, { CC_EXECUTOR_CLAUDE_BIN: fakeClaude }).spawn();
  const stderr = new Response(child.stderr).text();
  let leftRunning = 0;
  try {
    await using client = await connect(port);
    const echo = await client.execute({ command: "echo locked; echo err >&2" });
    assert.equal(echo.stdout, "locked\n");
    assert.equal(echo.stderr, "err\n");

    // A timeout, then a cancel: each must reach the whole group, through the kill program.
    let pgid = 0;
    const timedOut = await client.execute({
      command: "sleep 30 & sleep 30 & wait",
      timeout: 0.3,
      onEvent: (e) => void (e.method === "process.started" && (pgid = e.params.pgid)),
    });
    assert.equal(timedOut.status, "timed_out");
    assert.equal(groupAlive(pgid), false, "a timeout stops the whole group");
    const cancel = new AbortController();
    const cancelled = await client.execute({
      command: "sleep 30 & sleep 30 & wait",
      signal: cancel.signal,
      onEvent: (e) => {
        if (e.method !== "process.started") return;
        pgid = e.params.pgid;
        cancel.abort();
      },
    });
    assert.equal(cancelled.status, "canceled");
    assert.equal(groupAlive(pgid), false, "a cancel stops the whole group");

    // A prompt runs claude itself, with no shell: off the list, it ends as an error saying so.
    await assert.rejects(
      client.execute({ prompt: "hello", job_id: "locked-claude" }),
      (error: ExecutorRpcError) => {
        assert.equal(error.code, ErrorCode.SPAWN_FAILED);
        assert.match(
          error.message,
          new RegExp(
            `^Cannot execute: Cannot start ${fakeClaude}: Deno's permissions refuse to run ` +
              `${fakeClaude}: it is not on the server's --allow-run list .*add it there`,
          ),
        );
        return true;
      },
    );
    const refused = await client.request("history.get", { job_id: "locked-claude" });
    assert.equal(refused.status, "error");
    assert.match(refused.reason ?? "", /Deno's permissions refuse to run .*--allow-run/);
    assert.equal((await client.execute({ command: "echo still" })).stdout, "still\n");

    const info = await client.request("server.info", {});
    assert.equal(info.process_groups, "setsid");
    assert.equal(info.store.location, `${home}/.local/share/cc-executor/history.db`);
    assert.equal(info.store.status, "ok");
    const record = await client.request("history.get", { job_id: echo.jobId });
    assert.equal(record.status, "completed", "history is written under the locked permissions");

    // Left running, for the shutdown to stop.
    const running = await client.request("execute", {
      command: "sleep 30 & sleep 30 & wait",
      detach: true,
    });
    leftRunning = running.pgid;
  } finally {
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0, await stderr);
    await child.stdout.cancel();
  }
  assert.ok(leftRunning > 0);
  assert.equal(groupAlive(leftRunning), false, "stopping the server stops a running group");
});

Deno.test("permissions: a locked server marks what a killed locked server left interrupted and signals no group it cannot check, a reused pgid included", async () => {
  const port = freePort();
  const flags = lockedFlags(port);
  const first = server(flags, port).spawn();
  const firstErr = new Response(first.stderr).text();
  let pgid = 0;
  let jobId = "";
  try {
    await using client = await connect(port);
    const started = await client.request("execute", {
      command: "sleep 30 & sleep 30 & wait",
      detach: true,
    });
    pgid = started.pgid;
    jobId = started.job_id;
  } finally {
    first.kill("SIGKILL");
    await first.status;
    await first.stdout.cancel();
    await firstErr;
  }
  assert.equal(groupAlive(pgid), true, "the group outlived its server");
  // A record an older dead server left, whose pgid now leads an unrelated group of this user (a
  // reused pgid): without /proc nothing tells the two apart, so neither may be signalled.
  const unrelated = new Deno.Command("setsid", {
    args: ["sleep", "300"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadServer = new Deno.Command("true").spawn();
  await deadServer.status;
  {
    await using store = new SqliteStore(`${home}/.local/share/cc-executor/history.db`);
    await store.jobStarted({
      job_id: "stale-job",
      command: "sleep 999",
      shape: "sleep",
      cwd: null,
      session_id: null,
      node_id: Deno.hostname(),
      server_pid: deadServer.pid,
      started_at: Date.now() - 10 * 60_000,
      timeout_s: null,
      timeout_source: "none",
    });
    await store.jobSpawned("stale-job", { pid: unrelated.pid, pgid: unrelated.pid });
  }
  const second = server(flags, port).spawn();
  const secondErr = new Response(second.stderr).text();
  let stderr = "";
  try {
    await using client = await connect(port);
    const record = await client.request("history.get", { job_id: jobId });
    assert.equal(record.status, "interrupted");
    assert.equal(record.node_id, Deno.hostname(), "the node id is the host name, not localhost");
    assert.match(
      record.reason ?? "",
      new RegExp(
        `its process group ${pgid} was left alone: without /proc the server cannot tell whether ` +
          `it is still the job's`,
      ),
    );
    const stale = await client.request("history.get", { job_id: "stale-job" });
    assert.equal(stale.status, "interrupted");
    assert.match(stale.reason ?? "", /was left alone/);
    assert.equal(groupAlive(pgid), true, "a group the sweep cannot check is not signalled");
    assert.equal(groupAlive(unrelated.pid), true, "the unrelated group with a reused pgid lives");
  } finally {
    second.kill("SIGTERM");
    const { code } = await second.status;
    stderr = await secondErr;
    assert.equal(code, 0, stderr);
    await second.stdout.cancel();
    for (const group of [pgid, unrelated.pid]) {
      try {
        Deno.kill(-group, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await unrelated.status;
  }
  // The operator learns which groups were left, by pgid.
  for (const group of [pgid, unrelated.pid]) {
    assert.match(stderr, new RegExp(`could not be checked.*"pgid":${group}`));
  }
});

Deno.test("permissions: a hook program off --allow-run fails clearly; a widened list runs claude and the TypeScript hooks", async () => {
  const hooks = readableTempDir("locked-hooks-");
  Deno.writeTextFileSync(
    `${hooks}/guard.ts`,
    `export const HOOKS = { pre_execution: [(ctx) => ctx.request.command.includes("forbidden") ? { proceed: false, message: "not here" } : undefined] };`,
  );
  Deno.chmodSync(`${hooks}/guard.ts`, 0o644);
  Deno.writeTextFileSync(`${hooks}/audit.sh`, "#!/bin/sh\ncat >/dev/null\n");
  Deno.chmodSync(`${hooks}/audit.sh`, 0o755);
  Deno.writeTextFileSync(
    `${hooks}/hooks.json`,
    JSON.stringify({
      hooks: [{ name: "audit", point: "post_execution", command: ["./audit.sh"] }],
    }),
  );
  // Widened as the README says: the TypeScript hook host is a Deno process, and a prompt runs
  // claude. The command hook's program is left off.
  const port = freePort();
  const child = server(lockedFlags(port, [Deno.execPath(), fakeClaude]), port, {
    CC_EXECUTOR_HOOKS_DIR: hooks,
    CC_EXECUTOR_CLAUDE_BIN: fakeClaude,
  }).spawn();
  const stderr = new Response(child.stderr).text();
  try {
    await using client = await connect(port);
    const status = await client.request("hooks.status", {});
    assert.deepEqual(status.problems, [], "the hooks load under the locked permissions");
    await assert.rejects(
      client.execute({ command: "echo forbidden" }),
      /Blocked by hook.*not here/,
      "the TypeScript hook runs with deno on the list",
    );
    const errors: string[] = [];
    const echo = await client.execute({
      command: "echo fine",
      onEvent: (e) => void (e.method === "hook.error" && errors.push(e.params.error)),
    });
    assert.equal(echo.stdout, "fine\n");
    assert.equal(echo.status, "completed", "a failed post_execution hook leaves the job be");
    assert.equal(errors.length, 1, `one hook.error: ${errors}`);
    assert.match(
      errors[0]!,
      new RegExp(
        `cannot start ${hooks}/audit\\.sh: Deno's permissions refuse to run ${hooks}/audit\\.sh: ` +
          `it is not on the server's --allow-run list`,
      ),
    );
    const answered = await client.execute({ prompt: "hello" });
    assert.equal(answered.status, "completed", "claude runs once it is on the list");
  } finally {
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0, await stderr);
    await child.stdout.cancel();
    Deno.removeSync(hooks, { recursive: true });
  }
});

Deno.test("permissions: a scoped --allow-run without what the server runs itself is refused at start, naming it", async () => {
  const port = freePort();
  const base = [`--allow-net=127.0.0.1:${port}`, "--allow-env", "--allow-read", "--allow-sys=uid"];
  const missing = await server(["--allow-run=bash,sh", ...base], port).output();
  const message = new TextDecoder().decode(missing.stderr);
  assert.equal(missing.code, 1);
  assert.match(
    message,
    /Cannot start: --allow-run does not list setsid, kill, which the server runs itself .*--allow-run=<list>,setsid,kill/,
  );
  assert.doesNotMatch(message, /\n\s+at /, "no stack trace");

  const shell = await server(["--allow-run=sh,setsid,kill", ...base], port, {
    CC_EXECUTOR_SHELL: "bash",
  }).output();
  assert.equal(shell.code, 1);
  assert.match(
    new TextDecoder().decode(shell.stderr),
    /CC_EXECUTOR_SHELL=bash cannot be run: Deno's permissions refuse to run bash: it is not on the server's --allow-run list/,
  );
});

Deno.test("permissions: a listen address outside --allow-net is a clear error", async () => {
  const port = freePort();
  const { code, stderr } = await server(
    [
      "--allow-run",
      "--allow-net=127.0.0.1:1",
      "--allow-env",
      "--allow-read",
    ],
    port,
    { CC_EXECUTOR_DB: ":memory:" },
  ).output();
  assert.equal(code, 1);
  assert.match(
    new TextDecoder().decode(stderr),
    new RegExp(`Cannot listen on 127.0.0.1:${port}: .*net access`),
  );
});
