/**
 * Scenario (g): what hooks cost. The (b) load (`echo hi` over N connections)
 * through servers that differ only in their hooks: none (a hooks folder that
 * does not exist), an empty chain (a folder whose hooks.json lists nothing
 * and that holds no .ts file), one no-op TypeScript pre_execution hook plus
 * one no-op output hook (run in the TypeScript host subprocess), one no-op
 * command pre_execution hook (`cat >/dev/null`), and the redact_secrets
 * built-in. History is off in all of them, so the hooks are the only
 * difference. The five servers run side by side and take turns, a few
 * seconds each, in rounds of a rotating order, so drift lands on all alike.
 *
 * @module
 */
import { join } from "node:path";
import { ExecutorClient } from "../server/client.ts";
import type { HookStatusResult } from "../server/protocol.ts";
import { type Rate, rate, serverEcho } from "./scenarios.ts";
import { ServerProcess } from "./server_process.ts";
import { rotateRounds } from "./stats.ts";

export interface HookCostOptions {
  cwd: string;
  parallel: number;
  seconds: number;
  warmupSeconds: number;
  /** Measured rounds; each runs every variant once for `seconds`, in a rotating order. */
  rounds: number;
}

export const HOOK_VARIANTS = ["none", "empty", "typescript", "command", "redact"] as const;
export type HookVariant = (typeof HOOK_VARIANTS)[number];

export interface HookRound extends Rate {
  /**
   * CPU seconds of the server and every process under it during the run: the jobs, the command
   * hooks and the TypeScript host (which the server's own figure leaves out).
   */
  treeCpu: number;
}

export interface HookCostResult {
  /** Per variant, every round's rate, in round order (index r of each is the same round). */
  rates: Record<HookVariant, HookRound[]>;
}

/** What each variant's server must report in hooks.status: the measured hooks and only those. */
const EXPECTED: Record<HookVariant, (hooks: HookStatusResult["hooks"]) => boolean> = {
  none: (hooks) => hooks.length === 0,
  empty: (hooks) => hooks.length === 0,
  typescript: (hooks) =>
    hooks.length === 2 && hooks.every((h) => h.kind === "typescript") &&
    hooks.some((h) => h.point === "pre_execution") && hooks.some((h) => h.point === "output"),
  command: (hooks) =>
    hooks.length === 1 && hooks[0]!.kind === "command" && hooks[0]!.point === "pre_execution",
  redact: (hooks) => hooks.length > 0 && hooks.every((h) => h.kind === "builtin"),
};

const NOOP_TS = `// bench (g): a no-op TypeScript hook at two points.
export const HOOKS = {
  pre_execution: [(_ctx: unknown) => undefined],
  output: [(_ctx: unknown) => undefined],
};
`;

const NOOP_SH = `#!/bin/sh
# bench (g): a no-op command hook; it reads the context and lets the job proceed.
cat >/dev/null
`;

export async function measureHookCost(options: HookCostOptions): Promise<HookCostResult> {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-bench-hooks-" });
  try {
    const envs = await prepareVariants(dir);
    await using stack = new AsyncDisposableStack();
    // All five servers stay up for the whole scenario, idle but for their turn, so a round is a
    // few seconds of each in turn and slow spells of the machine land on every variant alike.
    const runs = [] as { variant: HookVariant; server: ServerProcess; clients: ExecutorClient[] }[];
    for (const variant of HOOK_VARIANTS) {
      const server = stack.use(
        await ServerProcess.start({ cwd: options.cwd, env: envs[variant] }),
      );
      const clients = await Promise.all(
        Array.from({ length: options.parallel }, () => ExecutorClient.connect(server.url)),
      );
      stack.defer(() => Promise.all(clients.map((client) => client.close())).then(() => {}));
      runs.push({ variant, server, clients });
    }
    for (const { variant, clients } of runs) {
      checkLoaded(variant, await clients[0]!.request("hooks.status", {}));
    }
    const rates = Object.fromEntries(HOOK_VARIANTS.map((v) => [v, []])) as unknown as Record<
      HookVariant,
      HookRound[]
    >;
    const jobs = runs.map(({ clients }) => (worker: number) => serverEcho(clients[worker]!));
    for (const [i, { server }] of runs.entries()) {
      await rate(options.parallel, options.warmupSeconds, jobs[i]!, server);
    }
    await rotateRounds(
      runs.map(({ variant, server }, i) => async () => {
        const tree0 = treeCpuSeconds(server.pid);
        const measured = await rate(options.parallel, options.seconds, jobs[i]!, server);
        rates[variant].push({ ...measured, treeCpu: treeCpuSeconds(server.pid) - tree0 });
      }),
      { warmup: 0, samples: options.rounds },
    );
    for (const { variant, clients } of runs) {
      checkRan(variant, await clients[0]!.request("hooks.status", {}));
    }
    return { rates };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The hooks folders and the server environment of each variant. */
async function prepareVariants(dir: string): Promise<Record<HookVariant, Record<string, string>>> {
  const folder = async (name: string, files: Record<string, [string, number]>) => {
    const path = join(dir, name);
    await Deno.mkdir(path);
    // Hook folders and files writable by others are refused: keep the modes exact, whatever the umask.
    await Deno.chmod(path, 0o755);
    for (const [file, [text, mode]] of Object.entries(files)) {
      await Deno.writeTextFile(join(path, file), text);
      await Deno.chmod(join(path, file), mode);
    }
    return path;
  };
  const emptyJson = JSON.stringify({ hooks: [] });
  const commandJson = JSON.stringify({
    hooks: [{ name: "noop", point: "pre_execution", command: ["./noop.sh"] }],
  });
  const dirs: Record<HookVariant, string> = {
    none: join(dir, "does-not-exist"),
    empty: await folder("empty", { "hooks.json": [emptyJson, 0o644] }),
    typescript: await folder("typescript", { "noop.ts": [NOOP_TS, 0o644] }),
    command: await folder("command", {
      "hooks.json": [commandJson, 0o644],
      "noop.sh": [NOOP_SH, 0o755],
    }),
    redact: join(dir, "does-not-exist"),
  };
  const env = (variant: HookVariant): Record<string, string> => ({
    CC_EXECUTOR_HISTORY: "off",
    CC_EXECUTOR_HOOKS_DIR: dirs[variant],
    // Empty is "not set": the hooks.json of the folder, whatever this environment says.
    CC_EXECUTOR_HOOKS_CONFIG: "",
    CC_EXECUTOR_REDACT_SECRETS: variant === "redact" ? "on" : "off",
    CC_EXECUTOR_PYTHON_VENV: "off",
    CC_EXECUTOR_RECORD_METRICS: "off",
  });
  return Object.fromEntries(HOOK_VARIANTS.map((v) => [v, env(v)])) as Record<
    HookVariant,
    Record<string, string>
  >;
}

/** A variant whose hooks did not load as meant would measure something else: stop instead. */
function checkLoaded(variant: HookVariant, status: HookStatusResult): void {
  if (status.problems.length === 0 && EXPECTED[variant](status.hooks)) return;
  throw new Error(
    `(g) ${variant}: the server did not load the hooks the variant needs.\n` +
      `loaded: ${JSON.stringify(status.hooks.map((h) => [h.point, h.kind, h.name]))}\n` +
      `problems: ${JSON.stringify(status.problems)}\ndir_note: ${status.dir_note}`,
  );
}

/** Every hook of the variant ran, and none failed (a failing hook is not a no-op). */
function checkRan(variant: HookVariant, status: HookStatusResult): void {
  const bad = status.hooks.filter((h) => h.counts.runs === 0 || h.counts.failed > 0);
  if (bad.length === 0) return;
  throw new Error(
    `(g) ${variant}: hooks that never ran or failed: ${
      JSON.stringify(bad.map((h) => ({ name: h.name, point: h.point, counts: h.counts })))
    }; recent: ${JSON.stringify(status.recent.slice(-3))}`,
  );
}

/** Clock ticks per second for /proc/<pid>/stat; 100 on every Linux we run on. */
const CLOCK_TICKS = 100;

/**
 * User plus system CPU seconds of `pid` and its descendants: the process's own time, its reaped
 * children's (cutime, cstime), and the live descendants' (the TypeScript host, jobs in flight).
 * A difference of two readings counts a child that was alive at the first and reaped by the second
 * once: its time moves from the live sum to cutime.
 */
function treeCpuSeconds(pid: number): number {
  const children = new Map<number, number[]>();
  const ticks = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
    } catch {
      continue; // gone since the listing
    }
    // "pid (comm) state ppid ..." where comm may hold spaces; utime..cstime are fields 14 to 17.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const self = Number(entry.name), parent = Number(fields[1]);
    ticks.set(self, fields.slice(11, 15).reduce((sum, x) => sum + Number(x), 0));
    children.set(parent, [...(children.get(parent) ?? []), self]);
  }
  let total = 0;
  const pending = [pid];
  while (pending.length > 0) {
    const next = pending.pop()!;
    total += ticks.get(next) ?? 0;
    pending.push(...(children.get(next) ?? []));
  }
  return total / CLOCK_TICKS;
}
