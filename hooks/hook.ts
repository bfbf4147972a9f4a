/**
 * A loaded hook as the runner sees it, whatever it was written as: a built-in,
 * a function in a TypeScript file, or an executable named in hooks.json. The
 * loaders turn each kind into this shape; runner.ts runs chains of them.
 *
 * @module
 */
import type { HookContext, HookPoint, OnFailure } from "./types.ts";

export type HookKind = "builtin" | "typescript" | "command";

/** Where a hook came from, for `hooks list`, records and error messages. */
export interface HookSource {
  kind: HookKind;
  /** The built-in's name, the TypeScript file's path, or the hooks.json path. */
  location: string;
  /** Command hooks: the argv (or shell text) run. */
  command?: string[];
}

export interface Hook {
  /** Unique within a loaded set; default `<file name>:<point>[<index>]`. */
  readonly name: string;
  readonly point: HookPoint;
  readonly source: HookSource;
  readonly timeoutMs: number;
  readonly onFailure: OnFailure;
  /** pre_execution: marked required (its failure blocks the job). */
  readonly required: boolean;
  /**
   * Runs the hook once and resolves to what it returned, unchecked (the runner validates it).
   * Rejects when the hook threw or failed. `signal` aborts when the runner gives up on it (its
   * timeout): a command hook then kills its process. Output hooks keep state in `ctx.state`,
   * which the hook changes in place (the TypeScript host copies it back).
   */
  invoke(ctx: HookContext, signal: AbortSignal): Promise<unknown>;
}

/** A file or entry that could not be loaded; the rest of the set still loads. */
export interface LoadProblem {
  /** The file (or hooks.json entry) concerned. */
  source: string;
  message: string;
}

/** What one loader produced; disposing it releases what the hooks hold (the TypeScript host). */
export interface LoadedHooks extends AsyncDisposable {
  hooks: Hook[];
  problems: LoadProblem[];
}

/** Options every loader takes. */
export interface LoaderOptions {
  /** A hook's timeout when it names none (CC_EXECUTOR_HOOK_TIMEOUT_MS). */
  defaultTimeoutMs: number;
  /** Warnings (refused files) and debug output go here. */
  logger: import("../server/log.ts").Logger;
}

/** The default on_failure: block for required pre_execution hooks, proceed otherwise. */
export function defaultOnFailure(point: HookPoint, required: boolean): OnFailure {
  return point === "pre_execution" && required ? "block" : "proceed";
}
