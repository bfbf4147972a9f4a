/**
 * The TypeScript hook host: a separate Deno process that imports the hook files and runs their
 * functions for the server (hooks/typescript.ts spawns it and speaks to it). A subprocess rather
 * than a Worker because a Worker stuck in synchronous code cannot be terminated, and because hook
 * code then cannot change the server's own environment or working directory.
 *
 * Run as `deno run ... ts_host.ts <nonce> <import timeout ms> <file>...`. The protocol is
 * newline-delimited JSON: requests on stdin, replies on stdout, each reply line starting with
 * `\u0001<nonce> ` so that whatever hook code writes to stdout itself is never mistaken for one.
 *
 * - host → server, while loading: `{type:"loading", file}` before each import (so the server
 *   knows which file hung or killed the process), then once `{type:"loaded", files}`.
 * - `{type:"call", id, hook, ctx}` → `{type:"result", id, ok:true, value?, state?}` or
 *   `{type:"result", id, ok:false, error, stack?}`; calls run concurrently.
 * - `{type:"ping", id}` → `{type:"pong", id}`.
 *
 * The host exits when its stdin closes, so it never outlives the server; a watchdog thread covers
 * the case of a hook stuck in synchronous code at that moment.
 *
 * @module
 */
import { Console } from "node:console";
import { basename } from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { HOOK_POINTS, type HookPoint, type OnFailure } from "./types.ts";

/** One hook as the host reports it after loading; `index` is what a call names. */
export interface HostHookInfo {
  index: number;
  point: HookPoint;
  name: string;
  timeout_ms?: number;
  required?: boolean;
  on_failure?: OnFailure;
}

/** The load result of one file: its hooks, or why none of them were loaded. */
export type HostFileResult = { file: string; hooks: HostHookInfo[] } | {
  file: string;
  error: string;
};

/** Messages the host writes to stdout (after the nonce). */
export type HostMessage =
  | { type: "loading"; file: string }
  | { type: "loaded"; files: HostFileResult[] }
  | { type: "result"; id: number; ok: true; value?: unknown; state?: Record<string, unknown> }
  | { type: "result"; id: number; ok: false; error: string; stack?: string }
  | { type: "pong"; id: number };

/** Messages the server writes to the host's stdin. */
export type ServerMessage =
  | { type: "call"; id: number; hook: number; ctx: Record<string, unknown> }
  | { type: "ping"; id: number };

/** A hook that passed validation, with the function to run. */
export interface ValidHook {
  point: HookPoint;
  name: string;
  run: (ctx: unknown) => unknown;
  timeout_ms?: number;
  required?: boolean;
  on_failure?: OnFailure;
}

/** Shown with every shape error, so the fix is on the same line as the problem. */
export const EXPECTED_SHAPE =
  "expected shape: export const HOOKS = { pre_execution: [(ctx) => ({ proceed: true }), " +
  'defineHook({ name: "my-hook", timeout_ms: 2000, run: (ctx) => ({ proceed: true }) })], ' +
  "output: [...], post_execution: [...], error: [...] } (see docs/hooks.md)";

const DEFINITION_KEYS = ["run", "point", "name", "timeout_ms", "required", "on_failure"];

/** "a string", "an array", "null": how a wrong value is named in messages. */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (Array.isArray(value)) return "an array";
  const type = typeof value;
  if (type === "object") {
    const proto = Object.getPrototypeOf(value);
    const ctor = proto?.constructor?.name;
    return proto === null || proto === Object.prototype || !ctor ? "an object" : `a ${ctor}`;
  }
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === null || proto === Object.prototype;
}

function show(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

/**
 * Checks what a module exports as `HOOKS` and returns its hooks, or the first thing wrong (the
 * file is then rejected whole: half a file's hooks would run a policy its author did not write).
 * Default names are `<file name>:<point>[<index>]`.
 */
export function readHooksExport(
  file: string,
  mod: Record<string, unknown>,
): { hooks: ValidHook[] } | { error: string } {
  const fail = (what: string) => ({ error: `${file}: ${what}; ${EXPECTED_SHAPE}` });
  if (!("HOOKS" in mod)) {
    const others = Object.keys(mod);
    const has = others.length > 0 ? `it exports ${others.join(", ")}` : "it exports nothing";
    return fail(`does not export HOOKS (${has})`);
  }
  const exported = mod.HOOKS;
  if (!isPlainObject(exported)) {
    return fail(`HOOKS is ${describe(exported)}; expected an object keyed by hook point`);
  }
  const hooks: ValidHook[] = [];
  const where = new Map<string, string>();
  for (const key of Object.keys(exported)) {
    if (!(HOOK_POINTS as readonly string[]).includes(key)) {
      return fail(
        `HOOKS has an unknown key ${show(key)}; hook points are ${HOOK_POINTS.join(", ")}`,
      );
    }
  }
  for (const point of HOOK_POINTS) {
    if (!(point in exported) || exported[point] === undefined) continue;
    const list = exported[point];
    if (!Array.isArray(list)) {
      return fail(`HOOKS.${point} is ${describe(list)}; expected an array of hooks`);
    }
    for (const [index, entry] of list.entries()) {
      const at = `HOOKS.${point}[${index}]`;
      let hook: ValidHook;
      if (typeof entry === "function") {
        hook = {
          point,
          name: `${basename(file)}:${point}[${index}]`,
          run: entry as ValidHook["run"],
        };
      } else if (isPlainObject(entry)) {
        for (const key of Object.keys(entry)) {
          if (!DEFINITION_KEYS.includes(key)) {
            return fail(
              `${at} has an unknown key ${show(key)}; allowed: ${DEFINITION_KEYS.join(", ")}`,
            );
          }
        }
        const { run, name, timeout_ms, required, on_failure } = entry;
        if (typeof run !== "function") {
          return fail(`${at}.run is ${describe(run)}; expected the hook function`);
        }
        if (entry.point !== undefined && entry.point !== point) {
          return fail(`${at}.point is ${show(entry.point)} but the hook is listed under ${point}`);
        }
        if (name !== undefined && (typeof name !== "string" || name.trim() === "")) {
          return fail(`${at}.name is ${show(name)}; expected a non-empty string`);
        }
        if (
          timeout_ms !== undefined &&
          !(typeof timeout_ms === "number" && Number.isSafeInteger(timeout_ms) && timeout_ms > 0)
        ) {
          return fail(`${at}.timeout_ms is ${show(timeout_ms)}; expected a positive whole number`);
        }
        if (required !== undefined && typeof required !== "boolean") {
          return fail(`${at}.required is ${show(required)}; expected true or false`);
        }
        if (required !== undefined && point !== "pre_execution") {
          return fail(`${at}.required is only allowed on pre_execution hooks`);
        }
        if (on_failure !== undefined && on_failure !== "proceed" && on_failure !== "block") {
          return fail(`${at}.on_failure is ${show(on_failure)}; expected "proceed" or "block"`);
        }
        hook = {
          point,
          name: (name as string | undefined) ?? `${basename(file)}:${point}[${index}]`,
          run: run as ValidHook["run"],
        };
        if (timeout_ms !== undefined) hook.timeout_ms = timeout_ms as number;
        if (required !== undefined) hook.required = required;
        if (on_failure !== undefined) hook.on_failure = on_failure;
      } else {
        return fail(`${at} is ${describe(entry)}; expected a function or defineHook({...})`);
      }
      const earlier = where.get(hook.name);
      if (earlier !== undefined) {
        return fail(`${earlier} and ${at} are both named ${show(hook.name)}; names must be unique`);
      }
      where.set(hook.name, at);
      hooks.push(hook);
    }
  }
  return { hooks };
}

/** Which message a thrown value carries. */
function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message || `${error.name} with no message`;
  return typeof error === "string" ? error : Deno.inspect(error);
}

/** JSON text for `value`, or a throw saying why it is not JSON (functions are not dropped quietly). */
function toJson(value: unknown, what: string): string | undefined {
  try {
    return JSON.stringify(value, function (key, v) {
      const type = typeof v;
      if (type === "function" || type === "bigint" || type === "symbol") {
        throw new Error(`${key === "" ? "it" : `the value at key ${show(key)}`} is ${describe(v)}`);
      }
      return v;
    });
  } catch (error) {
    const reason = messageOf(error).split("\n")[0];
    throw new Error(`${what} is not JSON-serialisable: ${reason}`);
  }
}

/** Writes the host's protocol lines; synchronous so hook code can never interleave inside one. */
function createSender(nonce: string): (json: string) => void {
  const encoder = new TextEncoder();
  const prefix = `\u0001${nonce} `;
  return (json) => {
    const bytes = encoder.encode(prefix + json + "\n");
    try {
      let written = 0;
      while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
    } catch {
      // The server is gone (broken pipe): nobody is left to serve.
      Deno.exit(0);
    }
  };
}

async function importWithin(file: string, ms: number): Promise<Record<string, unknown>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`its import did not finish within ${ms} ms (top-level await?)`)),
      ms,
    );
  });
  try {
    return await Promise.race([import(pathToFileURL(file).href), hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** Imports and validates every file in order; names must be unique across files. */
async function loadFiles(
  files: string[],
  importTimeoutMs: number,
  send: (json: string) => void,
): Promise<{ hooks: ValidHook[]; results: HostFileResult[] }> {
  const hooks: ValidHook[] = [];
  const results: HostFileResult[] = [];
  const owners = new Map<string, string>();
  for (const file of files) {
    send(JSON.stringify({ type: "loading", file }));
    let mod: Record<string, unknown>;
    try {
      mod = await importWithin(file, importTimeoutMs);
    } catch (error) {
      results.push({ file, error: `${file}: cannot be imported: ${messageOf(error)}` });
      continue;
    }
    let read: ReturnType<typeof readHooksExport>;
    try {
      read = readHooksExport(file, mod);
    } catch (error) {
      // A getter or Proxy in HOOKS can throw while it is inspected.
      read = { error: `${file}: HOOKS cannot be read: ${messageOf(error)}` };
    }
    if ("error" in read) {
      results.push({ file, error: read.error });
      continue;
    }
    const clash = read.hooks.find((hook) => owners.has(hook.name));
    if (clash) {
      results.push({
        file,
        error: `${file}: hook name ${show(clash.name)} is already used by ${
          owners.get(clash.name)
        }; hook names must be unique`,
      });
      continue;
    }
    const infos: HostHookInfo[] = [];
    for (const hook of read.hooks) {
      owners.set(hook.name, file);
      const { run: _run, ...info } = hook;
      infos.push({ index: hooks.length, ...info });
      hooks.push(hook);
    }
    results.push({ file, hooks: infos });
  }
  return { hooks, results };
}

async function runCall(
  hooks: ValidHook[],
  message: Extract<ServerMessage, { type: "call" }>,
  send: (json: string) => void,
): Promise<void> {
  const { id, ctx } = message;
  const fail = (error: unknown, withStack = true) => {
    const reply: HostMessage = { type: "result", id, ok: false, error: messageOf(error) };
    if (withStack && error instanceof Error && error.stack) reply.stack = error.stack;
    send(JSON.stringify(reply));
  };
  const hook = hooks[message.hook];
  if (!hook) return fail(`no hook with index ${message.hook} in the hook host`);
  let value: unknown;
  try {
    value = await hook.run(ctx);
  } catch (error) {
    return fail(error);
  }
  let text = `{"type":"result","id":${id},"ok":true`;
  try {
    const valueJson = toJson(value, "the value the hook returned");
    if (valueJson !== undefined) text += `,"value":${valueJson}`;
    if (ctx.point === "output") {
      const stateJson = toJson(ctx.state, "ctx.state");
      if (stateJson !== undefined) text += `,"state":${stateJson}`;
    }
  } catch (error) {
    return fail(error, false);
  }
  send(text + "}");
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffer = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffer += text;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      yield buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
    }
  }
  if (buffer) yield buffer;
}

/**
 * Ends the process when the server is gone even if a hook is stuck in synchronous code, which
 * keeps the main thread from ever seeing stdin close: a worker thread notices the parent change
 * (the orphan is handed to init or a subreaper) and SIGKILLs its own process.
 */
function watchForOrphaning(): void {
  const code = `const parent = ${Deno.ppid};
    setInterval(() => { if (Deno.ppid !== parent) Deno.kill(Deno.pid, "SIGKILL"); }, 500);`;
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  new Worker(url, { type: "module" });
}

async function main(): Promise<void> {
  const [nonce, timeoutArg, ...files] = Deno.args;
  if (!nonce || !timeoutArg) {
    console.error("usage: ts_host.ts <nonce> <import timeout ms> <file>...");
    Deno.exit(2);
  }
  // stdout is the protocol channel: every console method, including table and count, goes to
  // stderr, which the server logs at debug level.
  globalThis.console = new Console({ stdout: process.stderr, stderr: process.stderr }) as
    & Console
    & typeof globalThis.console;
  // A hook's stray rejection or timer error must not take down every other hook with it.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    console.error("unhandled rejection in a hook:", event.reason);
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    console.error("uncaught error in a hook:", event.error);
  });

  watchForOrphaning();
  const send = createSender(nonce);
  let loaded: (hooks: ValidHook[]) => void = () => {};
  const ready = new Promise<ValidHook[]>((resolve) => loaded = resolve);

  // Read from the start, so a server that goes away during a slow load still ends the host.
  const reading = (async () => {
    for await (const line of lines(Deno.stdin.readable)) {
      let message: ServerMessage;
      try {
        message = JSON.parse(line);
      } catch {
        console.error(`hook host: ignoring a line that is not JSON: ${line.slice(0, 200)}`);
        continue;
      }
      if (message.type === "ping") {
        send(JSON.stringify({ type: "pong", id: message.id }));
      } else if (message.type === "call") {
        void ready.then((hooks) => runCall(hooks, message, send));
      }
    }
  })();

  const { hooks, results } = await loadFiles(files, Number(timeoutArg), send);
  send(JSON.stringify({ type: "loaded", files: results }));
  loaded(hooks);
  await reading.catch(() => {});
  // Hook code may hold timers or pending promises; the server is gone, so stop regardless.
  Deno.exit(0);
}

if (import.meta.main) await main();
