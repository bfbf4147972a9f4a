import assert from "node:assert/strict";
import { join, relative } from "node:path";
import type { Hook, LoadedHooks } from "./hook.ts";
import { EXPECTED_SHAPE } from "./ts_host.ts";
import {
  COMPILED_BINARY_MESSAGE,
  hostPermissionFlags,
  loadTypeScriptHooks,
  MIRRORED_PERMISSIONS,
} from "./typescript.ts";
import type { HookContext, JobOutcome, OutputContext, PreExecutionContext } from "./types.ts";
import type { Logger } from "../server/log.ts";

const TYPES_URL = new URL("./types.ts", import.meta.url).href;

interface Captured {
  logger: Logger;
  lines: { level: string; message: string }[];
}

function captureLogger(): Captured {
  const lines: Captured["lines"] = [];
  const at = (level: string) => (message: string) => void lines.push({ level, message });
  return {
    lines,
    logger: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") },
  };
}

/** Pids of hook hosts this test process started and that still exist (zombies included). */
function hostChildren(): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== Deno.pid) continue;
      if (Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).includes("ts_host.ts")) {
        pids.push(Number(entry.name));
      }
    } catch {
      // It exited while we looked.
    }
  }
  return pids;
}

/** Whether `pid` is a live process (a zombie nobody has reaped yet counts as gone). */
function exists(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

const request = { command: "ls -la", cwd: null, env: {}, timeout: null };
const base = { job_id: "j1", session_id: null, attempt: 1, dry_run: false, request };
const pre = (): PreExecutionContext => ({ ...base, point: "pre_execution" });
const output = (data: string, state: Record<string, unknown> = {}): OutputContext => ({
  ...base,
  point: "output",
  stream: "stdout",
  data,
  offset: 0,
  final: false,
  state,
});
const outcome: JobOutcome = {
  status: "failed",
  exit_code: 1,
  signal: null,
  duration_ms: 1,
  reason: null,
  bytes: { stdout: 0, stderr: 0 },
  truncated: false,
  output: { head: "", tail: "" },
};
const post = (): HookContext => ({ ...base, point: "post_execution", outcome, attached: {} });
const error = (): HookContext => ({ ...base, point: "error", outcome, max_attempts: 1 });

function named(loaded: LoadedHooks, name: string): Hook {
  const hook = loaded.hooks.find((h) => h.name === name);
  assert.ok(hook, `hook ${name} is loaded`);
  return hook;
}

/** Invokes with a guard, so a broken host fails the test instead of hanging it. */
async function call(hook: Hook, ctx: HookContext, signal = new AbortController().signal) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hook ${hook.name} did not answer in 10 s`)), 10_000);
  });
  try {
    return await Promise.race([hook.invoke(ctx, signal), guard]);
  } finally {
    clearTimeout(timer);
  }
}

/** The host's pid, as the `pid` hook (which runs in it) reports it. */
async function hostPid(loaded: LoadedHooks): Promise<number> {
  const value = await call(named(loaded, "pid"), pre()) as { message: string };
  return Number(value.message);
}

async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(join(dir, name), text);
}

const MAIN = `
import { defineHook, defineHooks } from ${JSON.stringify(TYPES_URL)};
export const HOOKS = defineHooks({
  pre_execution: [
    (ctx) => ({ proceed: true, message: "saw " + ctx.request.command }),
    defineHook({ name: "pid", required: true, timeout_ms: 1234, run: () => ({ message: String(Deno.pid) }) }),
    defineHook({
      name: "meddle",
      run: () => {
        Deno.env.set("CC_TS_HOOK_MEDDLED", "yes");
        Deno.chdir("/");
        return { proceed: true };
      },
    }),
  ],
  output: [
    defineHook({
      name: "count",
      on_failure: "block",
      run: (ctx) => {
        ctx.state.n = ((ctx.state.n as number | undefined) ?? 0) + 1;
        delete ctx.state.drop;
        return { data: ctx.data.toUpperCase() };
      },
    }),
    defineHook({
      name: "chatty",
      run: (ctx) => {
        console.log("chatty says hi");
        console.table([{ a: 1 }]);
        Deno.stdout.writeSync(new TextEncoder().encode("raw text without a newline "));
        return { data: ctx.data };
      },
    }),
  ],
  post_execution: [
    defineHook({ name: "nothing", run: () => {} }),
    defineHook({
      name: "stray",
      run: () => {
        setTimeout(() => { throw new Error("stray timer error"); }, 1);
        Promise.reject(new Error("stray rejection"));
      },
    }),
    defineHook({ name: "throws", run: () => { throw new Error("hook says no"); } }),
    defineHook({ name: "returns_function", run: () => (() => 1) as never }),
    defineHook({ name: "returns_bigint", run: () => ({ attach: { n: 1n } }) as never }),
    defineHook({ name: "async_hang", run: () => new Promise(() => {}) }),
    defineHook({ name: "sync_hang", run: () => { while (true) { /* spin */ } } }),
    defineHook({
      name: "slow",
      run: async () => {
        await new Promise((resolve) => setTimeout(resolve, 50));
        return { message: "slow done" };
      },
    }),
  ],
  error: [defineHook({ name: "crash", run: () => Deno.exit(7) })],
});
`;

const one = (label: string) =>
  `export const HOOKS = { pre_execution: [() => ({ message: "${label}" })] };`;

/** Bad files and what their problem must say. */
const BAD: Record<string, { text: string; says: string }> = {
  "bad_no_hooks.ts": { text: "export const hooks = {};", says: "does not export HOOKS" },
  "bad_not_object.ts": {
    text: "export const HOOKS = [() => {}];",
    says: "HOOKS is an array; expected an object keyed by hook point",
  },
  "bad_unknown_point.ts": {
    text: "export const HOOKS = { pre_exec: [() => {}] };",
    says: 'HOOKS has an unknown key "pre_exec"; hook points are pre_execution, output',
  },
  "bad_entry.ts": {
    text: 'export const HOOKS = { pre_execution: [() => {}, "nope"] };',
    says: "HOOKS.pre_execution[1] is a string; expected a function or defineHook({...})",
  },
  "bad_list.ts": {
    text: "export const HOOKS = { output: () => {} };",
    says: "HOOKS.output is a function; expected an array of hooks",
  },
  "bad_point_mismatch.ts": {
    text: 'export const HOOKS = { output: [{ point: "pre_execution", run: () => {} }] };',
    says: 'HOOKS.output[0].point is "pre_execution" but the hook is listed under output',
  },
  "bad_option_key.ts": {
    text: "export const HOOKS = { pre_execution: [{ run: () => {}, timeout: 5 }] };",
    says: 'HOOKS.pre_execution[0] has an unknown key "timeout"',
  },
  "bad_timeout.ts": {
    text: "export const HOOKS = { pre_execution: [{ run: () => {}, timeout_ms: 1.5 }] };",
    says: "HOOKS.pre_execution[0].timeout_ms is 1.5; expected a positive whole number",
  },
  "bad_required.ts": {
    text: "export const HOOKS = { output: [{ run: () => {}, required: true }] };",
    says: "HOOKS.output[0].required is only allowed on pre_execution hooks",
  },
  "bad_run.ts": {
    text: 'export const HOOKS = { error: [{ name: "x" }] };',
    says: "HOOKS.error[0].run is undefined; expected the hook function",
  },
  "bad_name.ts": {
    text: 'export const HOOKS = { error: [{ name: "", run: () => {} }] };',
    says: 'HOOKS.error[0].name is ""; expected a non-empty string',
  },
  "dup_in_file.ts": {
    text: 'export const HOOKS = { pre_execution: [{ name: "twin", run: () => {} }], ' +
      'error: [{ name: "twin", run: () => {} }] };',
    says: 'HOOKS.pre_execution[0] and HOOKS.error[0] are both named "twin"',
  },
};

/** Files whose import fails: the problem carries the import's error. */
const BROKEN: Record<string, { text: string; says: string }> = {
  "bad_syntax.ts": { text: "export const HOOKS = { pre_execution: [ ;", says: "SyntaxError" },
  "bad_top_throw.ts": {
    text: 'throw new Error("top-level kaboom");\nexport const HOOKS = {};',
    says: "top-level kaboom",
  },
  "bad_missing_import.ts": {
    text: 'import "./nowhere.ts";\nexport const HOOKS = {};',
    says: "nowhere.ts",
  },
};

Deno.test("typescript hooks: one host loads, validates and runs the folder's hooks", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "ts_hooks_" });
  await writeFiles(dir, {
    "10_main.ts": MAIN,
    "9_order.ts": one("9"),
    "Z_order.ts": one("Z"),
    // Code-point order puts U+FFEE before U+1F600; UTF-16 order (a plain sort) would not.
    "\uFFEE_order.ts": one("ffee"),
    "\u{1F600}_order.ts": one("smile"),
    "dup_name.ts": 'export const HOOKS = { post_execution: [{ name: "pid", run: () => {} }] };',
    "world.ts": one("world"),
    ".hidden.ts": one("hidden"),
    "types.d.ts": "export type X = number;",
    "notes.md": "not a hook",
    ...Object.fromEntries(Object.entries({ ...BAD, ...BROKEN }).map(([k, v]) => [k, v.text])),
  });
  await Deno.mkdir(join(dir, "sub"));
  await Deno.writeTextFile(join(dir, "sub", "inner.ts"), one("inner"));
  await Deno.mkdir(join(dir, "folder.ts"));
  await Deno.chmod(join(dir, "world.ts"), 0o666);
  const absolute = Deno.realPathSync(dir);
  const { logger, lines } = captureLogger();
  const cwd = Deno.cwd();
  const started = performance.now();
  // Relative on purpose: the loader must resolve it.
  let loaded: LoadedHooks | null = await loadTypeScriptHooks(relative(cwd, dir), {
    defaultTimeoutMs: 4321,
    logger,
  });
  const loadMs = performance.now() - started;
  try {
    await t.step(
      "files load in code-point order; hidden, .d.ts and nested files are skipped",
      () => {
        const files = [...new Set(loaded!.hooks.map((hook) => hook.source.location))];
        assert.deepEqual(
          files,
          ["10_main.ts", "9_order.ts", "Z_order.ts", "\uFFEE_order.ts", "\u{1F600}_order.ts"]
            .map((name) => join(absolute, name)),
        );
        assert.deepEqual(
          loaded!.hooks.filter((h) => h.point === "pre_execution").map((h) => h.name),
          [
            "10_main.ts:pre_execution[0]",
            "pid",
            "meddle",
            "9_order.ts:pre_execution[0]",
            "Z_order.ts:pre_execution[0]",
            "\uFFEE_order.ts:pre_execution[0]",
            "\u{1F600}_order.ts:pre_execution[0]",
          ],
        );
      },
    );

    await t.step(
      "each bad file is a problem naming it, saying what is wrong, showing the shape",
      () => {
        const problems = new Map(loaded!.problems.map((p) => [p.source, p.message]));
        const expected = [...Object.keys(BAD), ...Object.keys(BROKEN), "dup_name.ts", "world.ts"];
        assert.deepEqual(
          [...problems.keys()].sort(),
          expected.map((name) => join(absolute, name)).sort(),
        );
        for (const [name, { says }] of Object.entries(BAD)) {
          const message = problems.get(join(absolute, name))!;
          assert.ok(message.startsWith(`${join(absolute, name)}: `), message);
          assert.ok(message.includes(says), `${name}: ${message}`);
          assert.ok(message.includes(EXPECTED_SHAPE), `${name} shows the expected shape`);
          assert.ok(EXPECTED_SHAPE.includes("export const HOOKS = { pre_execution: [(ctx) =>"));
        }
        for (const [name, { says }] of Object.entries(BROKEN)) {
          const message = problems.get(join(absolute, name))!;
          assert.ok(message.includes(join(absolute, name)), message);
          assert.ok(message.includes("cannot be imported"), message);
          assert.ok(message.includes(says), `${name}: ${message}`);
        }
        const dup = problems.get(join(absolute, "dup_name.ts"))!;
        assert.ok(dup.includes(join(absolute, "dup_name.ts")), dup);
        assert.ok(dup.includes(`"pid" is already used by ${join(absolute, "10_main.ts")}`), dup);
      },
    );

    await t.step("a world-writable file is refused with a warning and never imported", () => {
      const problem = loaded!.problems.find((p) => p.source === join(absolute, "world.ts"));
      assert.match(problem!.message, /^refused: .*world\.ts is writable by everyone \(mode 666\)/);
      assert.ok(
        lines.some((l) => l.level === "warn" && l.message.includes("world.ts")),
        "warned about world.ts",
      );
      assert.ok(!loaded!.hooks.some((h) => h.source.location.endsWith("world.ts")));
    });

    await t.step("hooks carry their options, and defaults where they set none", () => {
      const first = named(loaded!, "10_main.ts:pre_execution[0]");
      assert.deepEqual(
        { ...first, invoke: undefined },
        {
          name: "10_main.ts:pre_execution[0]",
          point: "pre_execution",
          source: { kind: "typescript", location: join(absolute, "10_main.ts") },
          timeoutMs: 4321,
          required: false,
          onFailure: "proceed",
          invoke: undefined,
        },
      );
      const pid = named(loaded!, "pid");
      assert.deepEqual([pid.timeoutMs, pid.required, pid.onFailure], [1234, true, "block"]);
      const count = named(loaded!, "count");
      assert.deepEqual([count.point, count.required, count.onFailure], ["output", false, "block"]);
    });

    await t.step("calls resolve with what the hook returned", async () => {
      assert.deepEqual(await call(loaded!.hooks[0]!, pre()), {
        proceed: true,
        message: "saw ls -la",
      });
      assert.equal(await call(named(loaded!, "nothing"), post()), undefined);
      assert.deepEqual(await call(named(loaded!, "Z_order.ts:pre_execution[0]"), pre()), {
        message: "Z",
      });
    });

    await t.step("a hook that throws rejects with its message", async () => {
      await assert.rejects(call(named(loaded!, "throws"), post()), { message: "hook says no" });
    });

    await t.step("a result that is not JSON rejects instead of being mangled", async () => {
      await assert.rejects(
        call(named(loaded!, "returns_function"), post()),
        /the value the hook returned is not JSON-serialisable: it is a function/,
      );
      await assert.rejects(
        call(named(loaded!, "returns_bigint"), post()),
        /not JSON-serialisable: the value at key "n" is a bigint/,
      );
    });

    await t.step("an output hook's state persists between calls", async () => {
      const state: Record<string, unknown> = { drop: true };
      const first = output("abc", state);
      assert.deepEqual(await call(named(loaded!, "count"), first), { data: "ABC" });
      assert.deepEqual(state, { n: 1 });
      const second = output("def", state);
      assert.deepEqual(await call(named(loaded!, "count"), second), { data: "DEF" });
      assert.equal(second.state, state, "the same object, changed in place");
      assert.deepEqual(state, { n: 2 });
    });

    await t.step("what a hook prints does not break the protocol and is logged", async () => {
      assert.deepEqual(await call(named(loaded!, "chatty"), output("x")), { data: "x" });
      assert.deepEqual(await call(named(loaded!, "chatty"), output("y")), { data: "y" });
      const debug = lines.filter((l) => l.level === "debug").map((l) => l.message);
      assert.ok(debug.includes("hook host: chatty says hi"), debug.join("\n"));
      assert.ok(debug.some((m) => m.includes("(index)")), "console.table goes to stderr");
      assert.ok(debug.some((m) => m.includes("raw text without a newline")));
    });

    await t.step("a hook cannot change the server's environment or working directory", async () => {
      await call(named(loaded!, "meddle"), pre());
      assert.equal(Deno.env.get("CC_TS_HOOK_MEDDLED"), undefined);
      assert.equal(Deno.cwd(), cwd);
    });

    await t.step("a hook's stray errors and rejections do not take the host down", async () => {
      const before = await hostPid(loaded!);
      assert.equal(await call(named(loaded!, "stray"), post()), undefined);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(await hostPid(loaded!), before);
      const debug = lines.filter((l) => l.level === "debug").map((l) => l.message).join("\n");
      assert.match(debug, /unhandled rejection in a hook: Error: stray rejection/);
      assert.match(debug, /uncaught error in a hook: Error: stray timer error/);
    });

    await t.step(
      "an async hang is abandoned; other calls still run, in the same host",
      async () => {
        const before = await hostPid(loaded!);
        const abort = new AbortController();
        const hanging = call(named(loaded!, "async_hang"), post(), abort.signal);
        // Concurrent: this one finishes while the other is still pending.
        assert.deepEqual(await call(named(loaded!, "slow"), post()), { message: "slow done" });
        abort.abort(new Error("timed out"));
        await assert.rejects(hanging, { message: "timed out" });
        assert.equal(await hostPid(loaded!), before);
        assert.ok(!lines.some((l) => l.message.includes("restarting")), "not restarted");
      },
    );

    await t.step("a synchronous loop gets the host killed and restarted", async () => {
      const before = await hostPid(loaded!);
      const abort = new AbortController();
      const spinning = call(named(loaded!, "sync_hang"), post(), abort.signal);
      // Still in flight when the host is killed; handled now, as it rejects before it is awaited.
      const bystander = assert.rejects(call(named(loaded!, "async_hang"), post()), {
        message: "the hook host was restarted because hook sync_hang did not return",
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const aborted = performance.now();
      abort.abort(new Error("timed out"));
      await assert.rejects(spinning, { message: "timed out" });
      const after = await hostPid(loaded!);
      assert.ok(performance.now() - aborted < 5000, "restarted within a few seconds");
      assert.notEqual(after, before);
      assert.ok(!exists(before), "the stuck host is gone");
      await bystander;
      assert.ok(
        lines.some((l) =>
          l.level === "warn" && l.message.includes("hook sync_hang did not return")
        ),
      );
      // The restarted host loaded the same files.
      assert.deepEqual(await call(named(loaded!, "\u{1F600}_order.ts:pre_execution[0]"), pre()), {
        message: "smile",
      });
    });

    await t.step("a host that exits is restarted; one that keeps failing is given up", async () => {
      const pids = new Set([await hostPid(loaded!)]);
      // One restart so far (the sync loop); the budget is 5 per minute.
      for (let crash = 1; crash <= 10; crash++) {
        await assert.rejects(
          call(named(loaded!, "crash"), error()),
          /the TypeScript hook host exited unexpectedly \(exit code 7\)/,
        );
        try {
          pids.add(await hostPid(loaded!));
        } catch (error) {
          assert.equal(
            (error as Error).message,
            "the TypeScript hook host keeps failing; see the server log",
          );
          assert.equal(crash, 5, "gave up instead of a sixth restart");
          break;
        }
      }
      assert.equal(pids.size, 5, "restarted hosts have new pids");
      const at = performance.now();
      await assert.rejects(call(named(loaded!, "pid"), pre()), /keeps failing/);
      assert.ok(performance.now() - at < 100, "rejects at once");
      assert.ok(lines.some((l) => l.level === "error" && l.message.includes("failed 5 times")));
    });

    await t.step("dispose leaves no host process", async () => {
      await loaded![Symbol.asyncDispose]();
      loaded = null;
      assert.deepEqual(hostChildren(), []);
    });
  } finally {
    await loaded?.[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(loadMs < 10_000, `loading took ${loadMs} ms`);
});

Deno.test("typescript hooks: dispose stops a healthy host; calls then reject", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ts_hooks_" });
  try {
    await writeFiles(dir, {
      "a.ts": 'export const HOOKS = { pre_execution: [{ name: "pid", run: () => ({ message: ' +
        "String(Deno.pid) }) }] };",
    });
    const loaded = await loadTypeScriptHooks(dir, {
      defaultTimeoutMs: 1000,
      logger: captureLogger().logger,
    });
    const pid = await hostPid(loaded);
    assert.deepEqual(hostChildren(), [pid]);
    const at = performance.now();
    await loaded[Symbol.asyncDispose]();
    // It exits on its own when stdin closes, well within the 1 s grace.
    assert.ok(performance.now() - at < 900, "exited without needing SIGKILL");
    assert.ok(!exists(pid), "the host process is gone");
    assert.deepEqual(hostChildren(), []);
    await assert.rejects(hostPid(loaded), /unloaded/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("typescript hooks: a server that dies without disposing leaves no host behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ts_hooks_" });
  let pid = 0;
  try {
    await writeFiles(dir, {
      "a.ts": 'export const HOOKS = { pre_execution: [{ name: "pid", run: () => ({ message: ' +
        'String(Deno.pid) }) }, { name: "spin", run: () => { while (true) {} } }] };',
      "server.ts": `
        import { loadTypeScriptHooks } from ${
        JSON.stringify(new URL("./typescript.ts", import.meta.url).href)
      };
        import { silentLogger } from ${
        JSON.stringify(new URL("../server/log.ts", import.meta.url).href)
      };
        const loaded = await loadTypeScriptHooks(Deno.args[0], { defaultTimeoutMs: 1000, logger: silentLogger });
        const ctx = { job_id: "j", session_id: null, attempt: 1, dry_run: false, point: "pre_execution",
          request: { command: "x", cwd: null, env: {}, timeout: null } };
        console.log((await loaded.hooks[0].invoke(ctx, new AbortController().signal)).message);
        // Stuck in a synchronous loop, the host's main thread cannot see its stdin close.
        loaded.hooks[1].invoke(ctx, new AbortController().signal);
        setTimeout(() => console.log("spinning"), 100);
        await new Promise(() => {});
      `,
    });
    const hooks = join(dir, "hooks");
    await Deno.mkdir(hooks);
    await Deno.rename(join(dir, "a.ts"), join(hooks, "a.ts"));
    const server = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(dir, "server.ts"), hooks],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("spinning")) out += (await reader.read()).value ?? "";
    pid = Number(out.split("\n")[0]);
    assert.ok(pid > 0 && exists(pid), "the server's host runs");
    server.kill("SIGKILL");
    await server.status;
    await reader.cancel();
    const deadline = Date.now() + 5000;
    while (exists(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(!exists(pid), "the orphaned host ended itself");
  } finally {
    if (pid > 0 && exists(pid)) Deno.kill(pid, "SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("typescript hooks: files that hang or end the host while loading are left out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ts_hooks_" });
  try {
    await writeFiles(dir, {
      "a_ok.ts": one("a"),
      "b_await.ts": "await new Promise(() => {});\nexport const HOOKS = {};",
      "c_spin.ts": "while (true) { /* spin */ }\nexport const HOOKS = {};",
      "d_exit.ts": "Deno.exit(0);\nexport const HOOKS = {};",
      "e_ok.ts": one("e"),
    });
    const { logger } = captureLogger();
    await using loaded = await loadTypeScriptHooks(dir, {
      defaultTimeoutMs: 1000,
      logger,
      importTimeoutMs: 300,
    });
    assert.deepEqual(loaded.hooks.map((h) => h.name), [
      "a_ok.ts:pre_execution[0]",
      "e_ok.ts:pre_execution[0]",
    ]);
    assert.deepEqual(await call(loaded.hooks[1]!, pre()), { message: "e" });
    const problems = Object.fromEntries(
      loaded.problems.map((p) => [p.source.slice(p.source.lastIndexOf("/") + 1), p.message]),
    );
    assert.deepEqual(Object.keys(problems).sort(), ["b_await.ts", "c_spin.ts", "d_exit.ts"]);
    assert.match(problems["b_await.ts"]!, /its import did not finish within 300 ms/);
    assert.match(problems["c_spin.ts"]!, /did not finish loading within \d+ ms/);
    assert.match(problems["d_exit.ts"]!, /ended the hook host while loading \(exit code 0/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("typescript hooks: the compiled binary refuses TypeScript files and starts no host", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ts_hooks_" });
  try {
    await writeFiles(dir, { "a.ts": one("a"), "b.ts": one("b") });
    await using loaded = await loadTypeScriptHooks(dir, {
      defaultTimeoutMs: 1000,
      logger: captureLogger().logger,
      standalone: true,
    });
    assert.deepEqual(loaded.hooks, []);
    assert.deepEqual(loaded.problems, [
      { source: join(Deno.realPathSync(dir), "a.ts"), message: COMPILED_BINARY_MESSAGE },
      { source: join(Deno.realPathSync(dir), "b.ts"), message: COMPILED_BINARY_MESSAGE },
    ]);
    assert.match(
      COMPILED_BINARY_MESSAGE,
      /use command hooks in hooks\.json instead, see docs\/hooks\.md#command-hooks$/,
    );
    assert.deepEqual(hostChildren(), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("typescript hooks: a missing folder or one without hook files gives an empty set", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ts_hooks_" });
  try {
    const options = { defaultTimeoutMs: 1000, logger: captureLogger().logger };
    await using missing = await loadTypeScriptHooks(join(dir, "nope"), options);
    assert.deepEqual([missing.hooks, missing.problems], [[], []]);
    await writeFiles(dir, { "readme.md": "x", "types.d.ts": "export type X = 1;" });
    await using empty = await loadTypeScriptHooks(dir, options);
    assert.deepEqual([empty.hooks, empty.problems], [[], []]);
    assert.deepEqual(hostChildren(), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("typescript hooks: the host mirrors the server's full permissions, else reads just what it needs", () => {
  assert.deepEqual(
    hostPermissionFlags(() => true, ["/hooks", "/src"]),
    MIRRORED_PERMISSIONS.map((name) => `--allow-${name}`),
  );
  assert.deepEqual(
    hostPermissionFlags((name) => name === "env" || name === "run", ["/hooks", "/src"]),
    ["--allow-read=/hooks,/src", "--allow-env", "--allow-run"],
  );
});
