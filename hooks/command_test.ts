import assert from "node:assert/strict";
import { type GroupMode, liveMembers, processAlive } from "../server/process.ts";
import {
  commandHook,
  type CommandHookOptions,
  type CommandHookSpec,
  MAX_HOOK_OUTPUT_BYTES,
  RunningCommandHooks,
} from "./command.ts";
import type { HookPoint } from "./types.ts";
import type { HookContext, OutputContext, PreExecutionContext } from "./types.ts";

const never = new AbortController().signal;

function preContext(overrides: Partial<PreExecutionContext> = {}): PreExecutionContext {
  return {
    point: "pre_execution",
    job_id: "job-42",
    session_id: "s-1",
    attempt: 1,
    dry_run: false,
    request: { command: "echo hi", cwd: null, env: { A: "1" }, timeout: null },
    ...overrides,
  };
}

/** A folder with executable #!/bin/sh scripts, removed when the test ends. */
class Scripts implements AsyncDisposable {
  private constructor(readonly dir: string) {}

  static async create(): Promise<Scripts> {
    return new Scripts(await Deno.makeTempDir({ prefix: "cc-executor-command-hook-" }));
  }

  /** Writes `body` as an executable sh script and returns its absolute path. */
  async write(name: string, body: string): Promise<string> {
    const path = `${this.dir}/${name}`;
    await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`);
    await Deno.chmod(path, 0o755);
    return path;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
}

function spec(program: string, overrides: Partial<CommandHookSpec> = {}): CommandHookSpec {
  return {
    name: "test-hook",
    point: "pre_execution",
    program,
    args: [],
    cwd: Deno.cwd(),
    env: {},
    timeoutMs: 10_000,
    onFailure: "proceed",
    required: false,
    source: { kind: "command", location: "test/hooks.json", command: [program] },
    ...overrides,
  };
}

async function invoke(
  hookSpec: CommandHookSpec,
  ctx: HookContext = preContext(),
  options: CommandHookOptions = {},
  signal: AbortSignal = never,
): Promise<unknown> {
  return await commandHook(hookSpec, options).invoke(ctx, signal);
}

/** Polls until `path` holds a pid (a script writes it once its background child started). */
async function readPid(path: string): Promise<number> {
  const deadline = performance.now() + 5000;
  while (performance.now() < deadline) {
    try {
      const text = (await Deno.readTextFile(path)).trim();
      if (/^\d+$/.test(text)) return Number(text);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no pid in ${path} after 5 s`);
}

Deno.test("command hook: exit 0 with no output proceeds with no changes", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write("ok.sh", "cat >/dev/null\nprintf '  \\n\\t\\n'");
  assert.equal(await invoke(spec(program)), undefined);
});

Deno.test("command hook: exit 0 with a JSON object resolves to it", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write(
    "change.sh",
    `echo '{"command": "echo changed", "env": {"X": "1"}, "timeout": 5}'`,
  );
  assert.deepEqual(await invoke(spec(program)), {
    command: "echo changed",
    env: { X: "1" },
    timeout: 5,
  });
});

Deno.test("command hook: the context arrives as JSON on stdin, then stdin closes", async () => {
  await using scripts = await Scripts.create();
  // cat ends only at EOF, so this also proves stdin is closed after the context.
  const program = await scripts.write(
    "echo_field.sh",
    `cat > "${scripts.dir}/stdin.json"
job=$(sed -n 's/.*"job_id":"\\([^"]*\\)".*/\\1/p' "${scripts.dir}/stdin.json")
printf '{"message": "saw %s"}' "$job"`,
  );
  const ctx = preContext({ job_id: "job-from-stdin" });
  assert.deepEqual(await invoke(spec(program), ctx), { message: "saw job-from-stdin" });
  assert.deepEqual(JSON.parse(await Deno.readTextFile(`${scripts.dir}/stdin.json`)), ctx);
});

Deno.test("command hook: an output context travels with its state and the state comes back", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write(
    "state.sh",
    `input=$(cat)
case "$input" in
  *'"state":{"held":"abc"}'*) echo '{"data": "", "state": {"held": "abcdef"}}' ;;
  *) echo "state missing: $input" >&2; exit 1 ;;
esac`,
  );
  const ctx: OutputContext = {
    ...preContext(),
    point: "output",
    stream: "stdout",
    data: "def",
    offset: 3,
    final: false,
    state: { held: "abc" },
  };
  assert.deepEqual(await invoke(spec(program, { point: "output" }), ctx), {
    data: "",
    state: { held: "abcdef" },
  });
});

Deno.test("command hook: exit 2 blocks a pre_execution hook with stderr as the message", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write(
    "block.sh",
    `echo '{"proceed": true}'\necho '  no force pushes here  ' >&2\nexit 2`,
  );
  assert.deepEqual(await invoke(spec(program)), {
    proceed: false,
    message: "no force pushes here",
  });

  const silent = await scripts.write("block_silently.sh", "exit 2");
  assert.deepEqual(await invoke(spec(silent, { name: "guard" })), {
    proceed: false,
    message: "blocked by guard",
  });
});

Deno.test("command hook: exit 2 after execution is a failure, not a block", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write("late_block.sh", "echo too late >&2\nexit 2");
  for (const point of ["post_execution", "error", "output"] as HookPoint[]) {
    await assert.rejects(
      invoke(spec(program, { point })),
      {
        message: new RegExp(
          `^exited with code 2, which blocks only before execution .* at ${point} it is a failure: too late$`,
        ),
      },
    );
  }
});

Deno.test("command hook: another exit code fails with the end of stderr", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write(
    "fail.sh",
    `echo '{"proceed": true}'\ni=0; while [ $i -lt 200 ]; do echo "noise line $i" >&2; i=$((i+1)); done
echo 'database is down' >&2\nexit 1`,
  );
  const error = await invoke(spec(program)).then(() => null, (e: Error) => e);
  assert.ok(error instanceof Error);
  assert.match(error.message, /^exited with code 1: \.\.\..*database is down$/s);
  assert.ok(error.message.length < 600, "only the tail of a long stderr is kept");

  const quiet = await scripts.write("quiet.sh", "exit 3");
  await assert.rejects(invoke(spec(quiet)), { message: "exited with code 3" });
});

Deno.test("command hook: a hook killed by a signal fails naming it", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write("suicide.sh", "echo dying >&2\nkill -TERM $$");
  await assert.rejects(invoke(spec(program)), { message: "was killed by SIGTERM: dying" });
});

Deno.test("command hook: stdout that is not a JSON object is a failure", async () => {
  await using scripts = await Scripts.create();
  const garbage = await scripts.write(
    "garbage.sh",
    `echo "proceed: yes"\nprintf 'x%.0s' $(seq 300)`,
  );
  const error = await invoke(spec(garbage)).then(() => null, (e: Error) => e);
  assert.ok(error instanceof Error);
  assert.match(error.message, /^printed invalid JSON on stdout: proceed: yes\nx+$/);
  assert.equal(error.message.length, "printed invalid JSON on stdout: ".length + 200);

  const array = await scripts.write("array.sh", `echo '[{"proceed": false}]'`);
  await assert.rejects(invoke(spec(array)), {
    message: 'printed JSON that is not an object on stdout: [{"proceed": false}]',
  });
  const nil = await scripts.write("null.sh", "echo null");
  await assert.rejects(invoke(spec(nil)), {
    message: "printed JSON that is not an object on stdout: null",
  });
});

Deno.test("command hook: env is merged over the server's environment and cwd is used", async () => {
  await using scripts = await Scripts.create();
  await Deno.mkdir(`${scripts.dir}/work`);
  const program = await scripts.write(
    "env.sh",
    `printf '{"message": "%s|%s|%s"}' "$GREETING" "$(pwd -P)" "\${PATH:+has-path}"`,
  );
  const result = await invoke(
    spec(program, { env: { GREETING: "hello" }, cwd: `${scripts.dir}/work` }),
  );
  assert.deepEqual(result, {
    message: `hello|${await Deno.realPath(`${scripts.dir}/work`)}|has-path`,
  });
  assert.equal(Deno.env.get("GREETING"), undefined, "the server's own environment is untouched");
});

Deno.test("command hook: arguments are passed without a shell", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write("args.sh", `printf '{"message": "%s/%s"}' "$1" "$#"`);
  assert.deepEqual(await invoke(spec(program, { args: ["$HOME; rm -rf x"] })), {
    message: "$HOME; rm -rf x/1",
  });
});

for (const mode of ["setsid", "detached"] as GroupMode[]) {
  Deno.test(`command hook (${mode}): an abort kills the hook and the child it started`, async () => {
    await using scripts = await Scripts.create();
    const pidFile = `${scripts.dir}/child.pid`;
    const program = await scripts.write(
      "hang.sh",
      `sleep 30 &\necho $! > "${pidFile}"\necho $$ > "${pidFile}.leader"\nsleep 30`,
    );
    const controller = new AbortController();
    const started = performance.now();
    const call = invoke(spec(program), preContext(), { groupMode: mode }, controller.signal);
    const child = await readPid(pidFile);
    const leader = await readPid(`${pidFile}.leader`);
    assert.ok(processAlive(child) && processAlive(leader));
    controller.abort(new Error("hook timed out after 50 ms"));
    await assert.rejects(call, { message: "killed: hook timed out after 50 ms" });
    // Under the 1 s the call would give pipes held open by a survivor: the group kill did it.
    assert.ok(performance.now() - started < 900, "did not wait for the child");
    assert.equal(processAlive(child), false, "the background child was killed");
    assert.equal(processAlive(leader), false, "the hook itself was killed");
    assert.equal(liveMembers(leader), 0, "nothing is left in the hook's group");
  });

  Deno.test(`command hook (${mode}): proceeds and reports a missing program`, async () => {
    await using scripts = await Scripts.create();
    const program = await scripts.write("ok.sh", `echo '{"message": "ran"}'`);
    assert.deepEqual(await invoke(spec(program), preContext(), { groupMode: mode }), {
      message: "ran",
    });
    await assert.rejects(
      invoke(spec(`${scripts.dir}/missing.sh`), preContext(), { groupMode: mode }),
      {
        message: new RegExp(`^cannot start ${scripts.dir}/missing.sh: .*No such file or directory`),
      },
    );
  });
}

Deno.test("command hook: its own timeout kills it when the caller's signal never aborts", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write("slow.sh", "sleep 30");
  const started = performance.now();
  await assert.rejects(invoke(spec(program, { timeoutMs: 200 })), {
    message: "timed out after 200 ms",
  });
  assert.ok(performance.now() - started < 3000);
});

Deno.test("command hook: a child left running after a normal exit is killed, not waited for", async () => {
  await using scripts = await Scripts.create();
  const pidFile = `${scripts.dir}/child.pid`;
  // The child keeps the stdout pipe open: without the sweep, reading to EOF would wait 30 s.
  const program = await scripts.write(
    "leave.sh",
    `sleep 30 &\necho $! > "${pidFile}"\necho '{"message": "done"}'`,
  );
  const started = performance.now();
  assert.deepEqual(await invoke(spec(program)), { message: "done" });
  assert.ok(performance.now() - started < 900, "output was not held up by the child");
  assert.equal(processAlive(await readPid(pidFile)), false);
});

Deno.test("command hook: more than 1 MiB on stdout is a failure; exactly 1 MiB is not", async () => {
  await using scripts = await Scripts.create();
  // Whitespace only, so that the accepted case parses as "no changes".
  const exact = await scripts.write(
    "exact.sh",
    `head -c ${MAX_HOOK_OUTPUT_BYTES} /dev/zero | tr '\\0' ' '`,
  );
  assert.equal(await invoke(spec(exact)), undefined);

  const flood = await scripts.write(
    "flood.sh",
    `head -c ${MAX_HOOK_OUTPUT_BYTES + 1} /dev/zero | tr '\\0' ' '`,
  );
  await assert.rejects(invoke(spec(flood)), { message: "wrote more than 1 MiB on stdout" });

  // A hook that would write forever is stopped, not waited for.
  const endless = await scripts.write("endless.sh", "yes");
  await assert.rejects(invoke(spec(endless)), { message: "wrote more than 1 MiB on stdout" });
});

Deno.test("command hook: stderr is bounded too", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write("noisy.sh", "head -c 5000 /dev/zero >&2");
  await assert.rejects(invoke(spec(program), preContext(), { maxOutputBytes: 4096 }), {
    message: "wrote more than 4096 bytes on stderr",
  });
});

Deno.test("command hook: a hook that ignores a large context on stdin still works", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write("ignore.sh", `echo '{"data": "x"}'`);
  const ctx: OutputContext = {
    ...preContext(),
    point: "output",
    stream: "stdout",
    data: "y".repeat(4 * 1024 * 1024),
    offset: 0,
    final: false,
    state: {},
  };
  assert.deepEqual(await invoke(spec(program, { point: "output" }), ctx), { data: "x" });
});

Deno.test("command hook: a program that cannot be run rejects, never throws", async () => {
  await using scripts = await Scripts.create();
  const plain = `${scripts.dir}/plain.sh`;
  await Deno.writeTextFile(plain, "#!/bin/sh\necho hi\n");
  await Deno.chmod(plain, 0o644);
  const hook = commandHook(spec(plain));
  let call: Promise<unknown> | undefined;
  assert.doesNotThrow(() => {
    call = hook.invoke(preContext(), never);
  });
  await assert.rejects(call!, {
    message: new RegExp(`^cannot start ${plain}: .*permission denied`, "i"),
  });
});

Deno.test("command hook: an already aborted signal starts nothing", async () => {
  await using scripts = await Scripts.create();
  const marker = `${scripts.dir}/ran`;
  const program = await scripts.write("mark.sh", `touch "${marker}"`);
  await assert.rejects(
    invoke(spec(program), preContext(), {}, AbortSignal.abort(new Error("job canceled"))),
    { message: "not started: job canceled" },
  );
  await assert.rejects(Deno.stat(marker), Deno.errors.NotFound);
});

Deno.test("command hook: stopping the running set kills calls in flight and refuses new ones", async () => {
  await using scripts = await Scripts.create();
  const pidFile = `${scripts.dir}/leader.pid`;
  const program = await scripts.write("hang.sh", `echo $$ > "${pidFile}"\nsleep 30`);
  const running = new RunningCommandHooks();
  const hook = commandHook(spec(program), { running });
  const call = hook.invoke(preContext(), never);
  const leader = await readPid(pidFile);
  assert.equal(running.size, 1);
  await running.stopAll();
  await assert.rejects(call, { message: "killed: the hooks were unloaded" });
  assert.equal(processAlive(leader), false);
  assert.equal(running.size, 0);
  await assert.rejects(hook.invoke(preContext(), never), {
    message: "not started: the hooks were unloaded",
  });
});

Deno.test("command hook: a run permission that does not cover the program is a clear rejection", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write("ok.sh", "exit 0");
  const probe = `${scripts.dir}/probe.ts`;
  await Deno.writeTextFile(
    probe,
    `import { commandHook } from ${JSON.stringify(new URL("./command.ts", import.meta.url).href)};
const hook = commandHook(${JSON.stringify(spec(program))});
try {
  await hook.invoke({ point: "pre_execution" } as never, new AbortController().signal);
  console.log("resolved");
} catch (error) {
  console.log("rejected: " + (error as Error).message);
}`,
  );
  // Read access only: Deno refuses to run anything, setsid included.
  const { stdout, stderr, success } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", "--no-lock", "--no-prompt", "--allow-read", "--allow-env", probe],
    cwd: scripts.dir,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const out = new TextDecoder().decode(stdout);
  assert.ok(success, new TextDecoder().decode(stderr));
  assert.match(
    out,
    /^rejected: cannot start .*ok\.sh: Deno's permissions refuse to run .*ok\.sh: it is not on the server's --allow-run list/,
  );
});

Deno.test("command hook: under a scoped --allow-run, signalling through the kill program leaves the event loop running", async () => {
  await using scripts = await Scripts.create();
  const program = await scripts.write("ok.sh", "cat >/dev/null");
  const realKill = ["/usr/bin/kill", "/bin/kill"].find((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
  assert.ok(realKill, "a kill program");
  // A `kill` first on PATH that asks the hook's process to answer before it signals: an event loop
  // held up while it runs (a synchronous wait for it) cannot answer, and it gives up after 3 s.
  const bin = `${scripts.dir}/bin`;
  await Deno.mkdir(bin);
  const ask = `${scripts.dir}/ask`;
  await Deno.mkdir(ask);
  await scripts.write(
    "bin/kill",
    `: > "${ask}/asking.$$"
i=0
while [ ! -e "${ask}/answer.$$" ] && [ $i -lt 30 ]; do /bin/sleep 0.1; i=$((i + 1)); done
if [ -e "${ask}/answer.$$" ]; then echo answered; else echo unanswered; fi >> "${scripts.dir}/kills.log"
exec ${realKill} "$@"`,
  );
  const probe = `${scripts.dir}/probe.ts`;
  await Deno.writeTextFile(
    probe,
    `import { commandHook } from ${JSON.stringify(new URL("./command.ts", import.meta.url).href)};
const ask = ${JSON.stringify(ask)};
const answer = setInterval(() => {
  for (const entry of Deno.readDirSync(ask)) {
    if (entry.name.startsWith("asking.")) {
      Deno.writeTextFileSync(ask + "/answer." + entry.name.slice(7), "");
      Deno.removeSync(ask + "/" + entry.name);
    }
  }
}, 10);
const hook = commandHook(${JSON.stringify(spec(program, { point: "post_execution" }))}, {
  groupMode: "setsid",
});
try {
  await hook.invoke({ point: "post_execution" } as never, new AbortController().signal);
  console.log("resolved");
} catch (error) {
  console.log("rejected: " + (error as Error).message);
} finally {
  clearInterval(answer);
}`,
  );
  const { stdout, stderr, success } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-config",
      "--no-lock",
      "--no-prompt",
      "--allow-read",
      `--allow-write=${ask}`,
      "--allow-env",
      `--allow-run=setsid,kill,${program}`,
      probe,
    ],
    cwd: scripts.dir,
    env: { NO_COLOR: "1", PATH: `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}` },
    stdin: "null",
  }).output();
  assert.ok(success, new TextDecoder().decode(stderr));
  assert.equal(new TextDecoder().decode(stdout).trim(), "resolved");
  const kills = (await Deno.readTextFile(`${scripts.dir}/kills.log`)).trim().split("\n");
  assert.ok(kills.length >= 1, "the hook's end is signalled through the kill program");
  assert.deepEqual(kills.filter((line) => line !== "answered"), [], `kill runs: ${kills}`);
});
