import assert from "node:assert/strict";
import { join } from "node:path";
import type { JobRequest, PreExecutionContext } from "../types.ts";
import {
  findVirtualenv,
  firstProgram,
  PYTHON_VENV,
  pythonVenvHook,
  venvChanges,
} from "./python_venv.ts";

/** A project folder with a fake virtualenv: pyvenv.cfg, bin/python3 and bin/ruff (executables). */
async function project(
  venvName = ".venv",
): Promise<{ dir: string; venv: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-venv-" });
  const venv = join(dir, venvName);
  await Deno.mkdir(join(venv, "bin"), { recursive: true });
  await Deno.writeTextFile(join(venv, "pyvenv.cfg"), "home = /usr/bin\nversion = 3.12.3\n");
  for (const name of ["python3", "ruff"]) {
    await Deno.writeTextFile(join(venv, "bin", name), "#!/bin/sh\n", { mode: 0o755 });
  }
  await Deno.writeTextFile(join(venv, "bin", "activate"), "# sourced, not run\n", { mode: 0o644 });
  return { dir, venv, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

function request(
  command: string,
  cwd: string | null,
  env: Record<string, string> = {},
): JobRequest {
  return { command, cwd, env, timeout: null };
}

const SERVER_ENV = { PATH: "/usr/local/bin:/usr/bin", HOME: "/home/me" };

Deno.test("python_venv: firstProgram skips assignments and unquotes", () => {
  assert.equal(firstProgram("python3 -m pytest"), "python3");
  assert.equal(firstProgram("  PYTHONPATH=src FOO='a b' pytest -x"), "pytest");
  assert.equal(firstProgram(`"python3.12" script.py`), "python3.12");
  assert.equal(firstProgram("FOO=1"), undefined);
  assert.equal(firstProgram("   "), undefined);
});

Deno.test("python_venv: Python commands in a folder with .venv run inside it", async () => {
  await using p = await project();
  const bin = join(p.venv, "bin");
  const changes = (command: string, env?: Record<string, string>) =>
    venvChanges(request(command, p.dir, env), { serverEnv: SERVER_ENV, serverCwd: "/" });
  for (
    const command of [
      "python script.py",
      "python3 -c 'print(1)'",
      "python3.12 -V",
      "pip install x",
      "pip3 list",
      "pytest -q",
      "DEBUG=1 pytest",
      "ruff check .",
    ]
  ) {
    assert.deepEqual(await changes(command), {
      env: { VIRTUAL_ENV: p.venv, PATH: `${bin}:/usr/local/bin:/usr/bin` },
      message: `using virtualenv ${p.venv}`,
    }, command);
  }
  // The request's own PATH is the one extended.
  assert.deepEqual((await changes("python3", { PATH: "/opt/bin" }))?.env, {
    VIRTUAL_ENV: p.venv,
    PATH: `${bin}:/opt/bin`,
  });
  // Already first (a retry): not added twice.
  assert.equal(
    (await changes("python3", { PATH: `${bin}:/opt/bin` }))?.env?.PATH,
    `${bin}:/opt/bin`,
  );
  // No PATH anywhere: no trailing ":" (an empty entry would be the current directory).
  assert.equal(
    (await venvChanges(request("python3", p.dir), { serverEnv: {}, serverCwd: "/" }))?.env?.PATH,
    bin,
  );
});

Deno.test("python_venv: other commands, paths, and folders without a venv are left alone", async () => {
  await using p = await project();
  const changes = (command: string, cwd: string | null = p.dir) =>
    venvChanges(request(command, cwd), { serverEnv: SERVER_ENV, serverCwd: "/" });
  for (
    const command of [
      "ls -la",
      "node x.js",
      "activate",
      "./python3",
      "/usr/bin/python3 -V",
      "",
      "cd sub && python3 x.py",
      "pythonista",
    ]
  ) {
    assert.equal(await changes(command), undefined, command);
  }
  assert.equal(await changes("python3", "/"), undefined, "no venv in /");
  // A folder named .venv without pyvenv.cfg is not a virtualenv.
  await Deno.remove(join(p.venv, "pyvenv.cfg"));
  assert.equal(await changes("python3"), undefined);
  assert.equal(await findVirtualenv(p.dir), null);
});

Deno.test("python_venv: venv/ is found too, .venv first; a relative or missing cwd resolves against the server's", async () => {
  await using p = await project("venv");
  assert.equal(await findVirtualenv(p.dir), p.venv);
  const viaServerCwd = await venvChanges(request("python3", null), {
    serverEnv: SERVER_ENV,
    serverCwd: p.dir,
  });
  assert.equal(viaServerCwd?.env?.VIRTUAL_ENV, p.venv);
  const relative = await venvChanges(request("python3", "."), {
    serverEnv: SERVER_ENV,
    serverCwd: p.dir,
  });
  assert.equal(relative?.env?.VIRTUAL_ENV, p.venv);
  await Deno.mkdir(join(p.dir, ".venv"));
  await Deno.writeTextFile(join(p.dir, ".venv", "pyvenv.cfg"), "");
  assert.equal(await findVirtualenv(p.dir), join(p.dir, ".venv"));
});

Deno.test("python_venv hook: a pre_execution built-in that changes only the job's env", async () => {
  await using p = await project();
  const serverEnv = { ...SERVER_ENV };
  const hook = pythonVenvHook({ env: serverEnv, timeoutMs: 5000, cwd: () => p.dir });
  assert.equal(hook.name, PYTHON_VENV);
  assert.equal(hook.point, "pre_execution");
  assert.deepEqual(hook.source, { kind: "builtin", location: PYTHON_VENV });
  assert.equal(hook.onFailure, "proceed");
  const ctx: PreExecutionContext = {
    point: "pre_execution",
    job_id: "j",
    session_id: null,
    attempt: 1,
    dry_run: true,
    request: request("pytest -q", null),
  };
  const before = Deno.env.toObject();
  const result = await hook.invoke(ctx, new AbortController().signal);
  assert.deepEqual(result, {
    env: { VIRTUAL_ENV: p.venv, PATH: `${p.venv}/bin:/usr/local/bin:/usr/bin` },
    message: `using virtualenv ${p.venv}`,
  });
  assert.deepEqual(serverEnv, SERVER_ENV, "the snapshot is not changed");
  assert.deepEqual(Deno.env.toObject(), before, "nor the server's environment");
  assert.deepEqual(ctx.request.env, {}, "nor the request in place");
  assert.equal(
    await hook.invoke({ ...ctx, request: request("make", null) }, new AbortController().signal),
    undefined,
  );
});
