import assert from "node:assert/strict";
import { ExecutorClient } from "../server/client.ts";
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

/**
 * The `deno run` flags of `deno task start:locked`, listening on `port` instead of 8003, with
 * `$HOME` expanded as deno task's shell does.
 */
function lockedFlags(port: number): string[] {
  const words = lockedTask.split(/\s+/);
  assert.deepEqual(words.slice(0, 2), ["deno", "run"]);
  assert.deepEqual(words.slice(-3), ["main.ts", "server", "start"]);
  return words.slice(2, -3).map((flag) =>
    flag.replace("127.0.0.1:8003", `127.0.0.1:${port}`).replaceAll("$HOME", home)
  );
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

Deno.test("permissions: the locked-down task runs, streams, cancels and stops groups with nothing more", async () => {
  const flags = lockedFlags(freePort());
  assert.ok(!flags.some((f) => f === "-A" || f.startsWith("--allow-all")));
  assert.deepEqual(
    flags.filter((f) => f.startsWith("--allow-write")),
    [`--allow-write=${home}/.local/share/cc-executor`],
    "writes only the history database's directory",
  );
  assert.ok(!flags.some((f) => f.startsWith("--allow-ffi")));
  // System access only to the user id: hook files are checked against the server's user.
  assert.deepEqual(flags.filter((f) => f.startsWith("--allow-sys")), ["--allow-sys=uid"]);
  assert.ok(
    flags.some((f) => f.startsWith("--allow-net=")),
    "network access names the listen address",
  );
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(flags.join(" "))![1]);
  // A hooks folder the locked server may read (the working directory is readable), so the
  // TypeScript hook host is checked under the same permissions.
  Deno.mkdirSync(new URL("tmp/", root), { recursive: true });
  const hooks = Deno.makeTempDirSync({
    dir: new URL("tmp/", root).pathname,
    prefix: "locked-hooks-",
  });
  Deno.writeTextFileSync(
    `${hooks}/guard.ts`,
    `export const HOOKS = { pre_execution: [(ctx) => ctx.request.command.includes("forbidden") ? { proceed: false, message: "not here" } : undefined] };`,
  );
  Deno.chmodSync(`${hooks}/guard.ts`, 0o644);
  const child = server(flags, port, { CC_EXECUTOR_HOOKS_DIR: hooks }).spawn();
  const stderr = new Response(child.stderr).text();
  try {
    const url = `ws://127.0.0.1:${port}/ws`;
    let client: ExecutorClient | undefined;
    for (let i = 0; i < 200 && !client; i++) {
      client = await ExecutorClient.connect(url).catch(() => undefined);
      if (!client) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(client, "the locked server came up");
    await using connected = client;
    const echo = await connected.execute({ command: "echo locked; echo err >&2" });
    assert.equal(echo.stdout, "locked\n");
    assert.equal(echo.stderr, "err\n");
    let pgid = 0;
    const timedOut = await connected.execute({
      command: "sleep 30 & sleep 30 & wait",
      timeout: 0.3,
      onEvent: (e) => void (e.method === "process.started" && (pgid = e.params.pgid)),
    });
    assert.equal(timedOut.status, "timed_out");
    assert.equal(groupAlive(pgid), false, "signals reach the group under the locked permissions");
    const info = await connected.request("server.info", {});
    assert.equal(info.process_groups, "setsid");
    assert.equal(info.store.location, `${home}/.local/share/cc-executor/history.db`);
    assert.equal(info.store.status, "ok");
    const record = await connected.request("history.get", { job_id: echo.jobId });
    assert.equal(record.status, "completed", "history is written under the locked permissions");
    const status = await connected.request("hooks.status", {});
    assert.deepEqual(status.problems, [], "the hook file loads under the locked permissions");
    await assert.rejects(
      connected.execute({ command: "echo forbidden" }),
      /Blocked by hook.*not here/,
    );
  } finally {
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0, await stderr);
    await child.stdout.cancel();
    Deno.removeSync(hooks, { recursive: true });
  }
});

Deno.test("permissions: a scoped --allow-run is refused at start with the reason, not at the first cancel", async () => {
  const port = freePort();
  const { code, stderr } = await server([
    "--allow-run=setsid,bash,sh",
    `--allow-net=127.0.0.1:${port}`,
    "--allow-env",
    "--allow-read",
  ], port).output();
  const message = new TextDecoder().decode(stderr);
  assert.equal(code, 1);
  assert.match(message, /cc-executor needs --allow-run without a list\. Deno\.kill/);
  assert.doesNotMatch(message, /\n\s+at /, "no stack trace");
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
