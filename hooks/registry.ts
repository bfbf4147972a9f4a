/**
 * The server's hooks: loads built-ins, the TypeScript hooks folder and the
 * command hooks file into one `HookSet`, reloads on request (`hooks.reload`,
 * SIGHUP), and reports what is loaded for `hooks.status`. A job keeps the set
 * it started with, so a reload never changes a running job's hooks.
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { HooksConfig } from "../server/config.ts";
import type { Logger } from "../server/log.ts";
import type { HookStatusResult } from "../server/protocol.ts";
import type { Store } from "../server/store/store.ts";
import { builtinHooks } from "./builtin/builtins.ts";
import type { Hook, LoadedHooks, LoadProblem } from "./hook.ts";
import { loadCommandHooks } from "./hooks_file.ts";
import { HookSet } from "./runner.ts";
import { loadTypeScriptHooks } from "./typescript.ts";

export interface HookRegistryOptions {
  config: HooksConfig;
  store: Store;
  logger: Logger;
  /** The server's environment, for the built-ins. @default Deno.env.toObject() */
  env?: Record<string, string>;
  /**
   * The environment command hooks start from (a hook's own `env` applies over it): the one
   * commands get, without the server's secrets (server/job_env.ts). @default the server's own,
   * inherited whole
   */
  commandEnv?: Record<string, string>;
  /** The working directory the hooks folder is relative to. @default Deno.cwd() */
  cwd?: string;
  /** @default Deno.build.standalone */
  standalone?: boolean;
}

/** This folder: cc-executor's own hook implementation, never a folder of user hooks. */
const OWN_DIR = dirname(fileURLToPath(import.meta.url));

export class HookRegistry implements AsyncDisposable {
  #current: HookSet;
  #reloading: Promise<HookSet> | null = null;
  readonly #options: HookRegistryOptions;

  private constructor(options: HookRegistryOptions, first: HookSet) {
    this.#options = options;
    this.#current = first;
  }

  /** Loads the hooks; files that cannot be loaded are reported in `problems`, not thrown. */
  static async open(options: HookRegistryOptions): Promise<HookRegistry> {
    const registry = new HookRegistry(options, await loadHookSet(options));
    registry.#logLoaded("loaded");
    return registry;
  }

  /** The set new jobs use. */
  get current(): HookSet {
    return this.#current;
  }

  /**
   * Loads everything again and makes it current; the old set is disposed of once the jobs that
   * started with it are done. Concurrent reloads share one load.
   */
  reload(): Promise<HookSet> {
    return this.#reloading ??= (async () => {
      try {
        const next = await loadHookSet(this.#options);
        const previous = this.#current;
        this.#current = next;
        previous.retire();
        this.#logLoaded("reloaded");
        return next;
      } finally {
        this.#reloading = null;
      }
    })();
  }

  status(): HookStatusResult {
    return hookStatus(this.#current);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#reloading?.catch(() => {});
    this.#current.retire();
    await this.#current[Symbol.asyncDispose]();
  }

  #logLoaded(what: string): void {
    const set = this.#current;
    const { logger } = this.#options;
    if (set.origin.dirNote) logger.info(`hooks: ${set.origin.dirNote}`);
    for (const problem of set.problems) {
      logger.warn(`hook refused: ${problem.source}: ${problem.message}`);
    }
    if (!set.isEmpty || set.problems.length > 0) {
      logger.info(`hooks ${what}`, {
        hooks: set.hooks.length,
        refused: set.problems.length,
        dir: set.origin.dir,
      });
    }
  }
}

/** Loads one set: built-ins, then the TypeScript folder's hooks, then hooks.json's. */
export async function loadHookSet(options: HookRegistryOptions): Promise<HookSet> {
  const { config, logger } = options;
  const cwd = options.cwd ?? Deno.cwd();
  const dir = resolve(cwd, config.dir);
  const configFile = resolve(cwd, config.configFile ?? join(dir, "hooks.json"));
  const standalone = options.standalone ?? Deno.build.standalone;
  const loaderOptions = { defaultTimeoutMs: config.timeoutMs, logger };
  const isOwnSource = sameFolder(dir, OWN_DIR);
  // Started from cc-executor's own checkout, the default folder is its source: its files are the
  // hook machinery, not hooks.
  const dirNote = isOwnSource
    ? `${dir} is cc-executor's own hooks source folder, so no hooks are loaded from it; ` +
      "set CC_EXECUTOR_HOOKS_DIR to a folder of your hooks"
    : null;
  const loaded: LoadedHooks[] = [];
  try {
    if (!isOwnSource) {
      loaded.push(await loadTypeScriptHooks(dir, { ...loaderOptions, standalone }));
    }
    if (!isOwnSource || config.configFile !== null) {
      loaded.push(
        await loadCommandHooks(configFile, {
          ...loaderOptions,
          explicit: config.configFile !== null,
          baseEnv: options.commandEnv,
        }),
      );
    }
  } catch (error) {
    await Promise.all(loaded.map((set) => set[Symbol.asyncDispose]()));
    throw error;
  }
  const builtins = builtinHooks(config, {
    store: options.store,
    env: options.env ?? Deno.env.toObject(),
    logger,
  });
  const hooks: Hook[] = [];
  const problems: LoadProblem[] = [];
  const names = new Map<string, Hook>();
  for (const hook of [...builtins, ...loaded.flatMap((set) => set.hooks)]) {
    const earlier = names.get(hook.name);
    if (earlier) {
      problems.push({
        source: hook.source.location,
        message: `hook name "${hook.name}" is already used by ${earlier.source.location}; ` +
          "names must be unique (set a different name)",
      });
      continue;
    }
    names.set(hook.name, hook);
    hooks.push(hook);
  }
  problems.unshift(...loaded.flatMap((set) => set.problems));
  return new HookSet(
    hooks,
    problems,
    { dir, configFile, dirNote, typescriptSupported: !standalone },
    async () => {
      await Promise.all(loaded.map((set) => set[Symbol.asyncDispose]()));
    },
  );
}

/** `hooks.status` for one set. */
export function hookStatus(set: HookSet): HookStatusResult {
  return {
    dir: set.origin.dir,
    config_file: set.origin.configFile,
    dir_note: set.origin.dirNote,
    typescript_supported: set.origin.typescriptSupported,
    loaded_at: set.loadedAt.toISOString(),
    problems: set.problems.map(({ source, message }) => ({ source, message })),
    hooks: set.hooks.map((hook) => {
      const counts = set.counts(hook.name)!;
      return {
        name: hook.name,
        point: hook.point,
        kind: hook.source.kind,
        location: hook.source.location,
        ...(hook.source.command ? { command: hook.source.command } : {}),
        timeout_ms: hook.timeoutMs,
        on_failure: hook.onFailure,
        required: hook.required,
        counts: {
          runs: counts.runs,
          proceeded: counts.proceeded,
          changed: counts.changed,
          blocked: counts.blocked,
          retry: counts.retry,
          failed: counts.failed,
          mean_ms: counts.runs === 0 ? 0 : Math.round(counts.total_ms / counts.runs * 100) / 100,
        },
      };
    }),
    recent: [...set.recent],
  };
}

function sameFolder(a: string, b: string): boolean {
  try {
    return Deno.realPathSync(a) === Deno.realPathSync(b);
  } catch {
    return false; // one of them does not exist
  }
}
