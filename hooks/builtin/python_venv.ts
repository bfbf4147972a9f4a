/**
 * The `python_venv` built-in (CC_EXECUTOR_PYTHON_VENV=on): a Python command
 * run in a folder that holds a virtualenv runs inside it, as if the venv had
 * been activated: `VIRTUAL_ENV` is set and the venv's `bin/` goes first on
 * `PATH`. Only the job's environment changes (through the hook result); the
 * server's own environment is never read from `Deno.env` nor written.
 *
 * @module
 */
import { isAbsolute, join, resolve } from "node:path";
import type { Hook } from "../hook.ts";
import type { HookContext, HookResult, JobRequest } from "../types.ts";

/** The built-in's name, as `hooks list` and records show it. */
export const PYTHON_VENV = "python_venv";

/** Folders looked for in the job's working directory, in this order. */
const VENV_DIRS = [".venv", "venv"];

/** Programs that are Python wherever they are found: python, python3, python3.12, pip, pytest. */
const PYTHON_PROGRAM = /^(?:python(?:3(?:\.\d+)?)?|pip3?|pytest)$/;

/** `NAME=value` before the program. */
const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*=/;

/** A shell word: runs of unquoted characters and quoted strings (as in server/store/shape.ts). */
const SHELL_WORD = /(?:[^\s'"]+|'[^']*'|"(?:\\.|[^"\\])*")+/g;

export interface PythonVenvOptions {
  /** The server's environment (a snapshot): where PATH comes from when the request sets none. */
  env: Record<string, string>;
  /** Milliseconds the hook may take. */
  timeoutMs: number;
  /** The server's working directory, for a request without a cwd. @default Deno.cwd */
  cwd?: () => string;
}

/**
 * The program a command runs first: its first word after `NAME=value` assignments, unquoted;
 * undefined for an empty command.
 *
 * @example
 * ```ts
 * firstProgram("PYTHONPATH=src python3 -m pytest"); // "python3"
 * ```
 */
export function firstProgram(command: string): string | undefined {
  for (const word of command.trim().match(SHELL_WORD) ?? []) {
    if (!ASSIGNMENT.test(word)) return unquote(word);
  }
  return undefined;
}

function unquote(word: string): string {
  return word.replace(/'([^']*)'|"((?:\\.|[^"\\])*)"/g, (_, single, double) => single ?? double);
}

/**
 * The virtualenv in `dir`: the absolute path of `.venv/` or `venv/` (the first that is a folder
 * holding `pyvenv.cfg`), or null.
 */
export async function findVirtualenv(dir: string): Promise<string | null> {
  for (const name of VENV_DIRS) {
    const venv = join(dir, name);
    if (await isFile(join(venv, "pyvenv.cfg"))) return venv;
  }
  return null;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return false;
    }
    throw error;
  }
}

/** An executable file (following symlinks, as venvs' bin/python usually is one). */
async function isExecutable(path: string): Promise<boolean> {
  try {
    const info = await Deno.stat(path);
    return info.isFile && ((info.mode ?? 0o755) & 0o111) !== 0;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return false;
    }
    throw error;
  }
}

/**
 * What `python_venv` changes for `request`: the virtualenv's variables when the command runs
 * Python (or a program of the venv's `bin/`) in a folder holding a venv; undefined otherwise.
 * `serverEnv` supplies PATH when the request sets none; `serverCwd` is where a request without a
 * cwd runs.
 */
export async function venvChanges(
  request: JobRequest,
  options: { serverEnv: Record<string, string>; serverCwd: string },
): Promise<HookResult | undefined> {
  const program = firstProgram(request.command);
  // A path (./script, /usr/bin/python3) already says which program runs.
  if (program === undefined || program.includes("/")) return undefined;
  const cwd = request.cwd === null
    ? options.serverCwd
    : isAbsolute(request.cwd)
    ? request.cwd
    : resolve(options.serverCwd, request.cwd);
  const venv = await findVirtualenv(cwd);
  if (venv === null) return undefined;
  const bin = join(venv, "bin");
  if (!PYTHON_PROGRAM.test(program) && !await isExecutable(join(bin, program))) return undefined;
  const path = request.env.PATH ?? options.serverEnv.PATH ?? "";
  return {
    env: {
      VIRTUAL_ENV: venv,
      // An empty PATH gets no trailing ":" (an empty entry would mean the current directory), and
      // a PATH that already starts with the venv (a retry) is not given it twice.
      PATH: path === ""
        ? bin
        : path === bin || path.startsWith(bin + ":")
        ? path
        : `${bin}:${path}`,
    },
    message: `using virtualenv ${venv}`,
  };
}

/**
 * A pre_execution hook that runs Python commands inside the virtualenv found in the job's working
 * directory (see {@linkcode venvChanges}). It only reads the file system, so a dry run is the
 * same as a real one. PYTHONHOME in the server's environment is left alone (an environment merge
 * cannot unset it), and a venv's interpreter may then misbehave: unset it where the server starts.
 */
export function pythonVenvHook(options: PythonVenvOptions): Hook {
  const serverCwd = options.cwd ?? (() => Deno.cwd());
  return {
    name: PYTHON_VENV,
    point: "pre_execution",
    source: { kind: "builtin", location: PYTHON_VENV },
    timeoutMs: options.timeoutMs,
    onFailure: "proceed",
    required: false,
    invoke(ctx: HookContext): Promise<HookResult | undefined> {
      if (ctx.point !== "pre_execution") {
        return Promise.reject(new Error(`${PYTHON_VENV} runs at pre_execution, not ${ctx.point}`));
      }
      return venvChanges(ctx.request, { serverEnv: options.env, serverCwd: serverCwd() });
    },
  };
}
