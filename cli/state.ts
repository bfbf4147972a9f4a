/**
 * The state directory: where a detached server leaves its pid file and log,
 * so later commands (`server status|stop`, `run`, `jobs`) can find it.
 *
 * @module
 */
import { join } from "node:path";
import { z } from "zod";
import { readEnv } from "../server/env.ts";
import { processAlive, procStat } from "../server/process.ts";
import { CliError } from "./output.ts";

/** `CC_EXECUTOR_STATE_DIR`, else `$XDG_STATE_HOME/cc-executor`, else `~/.local/state/cc-executor`. */
export function stateDir(): string {
  const explicit = readEnv("CC_EXECUTOR_STATE_DIR");
  if (explicit) return explicit;
  const xdg = readEnv("XDG_STATE_HOME");
  if (xdg) return join(xdg, "cc-executor");
  const home = readEnv("HOME");
  if (!home) {
    throw new CliError("Cannot find a state directory: set CC_EXECUTOR_STATE_DIR or HOME");
  }
  return join(home, ".local", "state", "cc-executor");
}

/** What a detached server writes once it is listening. */
export const PidFile = z.object({
  pid: z.number().int().positive(),
  /** Where to reach it from this machine. */
  url: z.string(),
  /** The address it listens on, when `url` names another: an any-address bind (0.0.0.0, ::). */
  host: z.string().optional(),
  log: z.string(),
  started_at: z.string(),
  version: z.string(),
});
export type PidFile = z.infer<typeof PidFile>;

export function pidFilePath(dir = stateDir()): string {
  return join(dir, "server.pid");
}

export function logFilePath(dir = stateDir()): string {
  return join(dir, "server.log");
}

/** The pid file's contents; null when there is none or it is not one of ours. */
export function readPidFile(path = pidFilePath()): PidFile | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new CliError(`Cannot read the pid file ${path}: ${(error as Error).message}`);
  }
  try {
    const parsed = PidFile.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Written to a temporary name and renamed, so a reader never sees half a file. */
export function writePidFile(path: string, content: PidFile): void {
  const temporary = `${path}.${content.pid}.tmp`;
  Deno.writeTextFileSync(temporary, JSON.stringify(content) + "\n");
  Deno.renameSync(temporary, path);
}

/** Removes the pid file if it still names `pid` (a newer server may have replaced it). */
export function removePidFile(path: string, pid: number): void {
  if (readPidFile(path)?.pid !== pid) return;
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/**
 * True when the pid file's process is alive and is the server that wrote it, not an unrelated
 * process that was given the same pid after the server died without removing its file.
 */
export function recordedServerAlive(path: string, record: PidFile): boolean {
  if (!processAlive(record.pid)) return false;
  try {
    const argv = Deno.readTextFileSync(`/proc/${record.pid}/cmdline`).split("\0");
    return argv.includes("--pid-file") && argv.includes(path);
  } catch (error) {
    // Without /proc there is no way to tell; trust the file.
    return error instanceof Deno.errors.NotFound && procStat(Deno.pid) === null;
  }
}
