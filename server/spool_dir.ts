/**
 * The folder this server's jobs spill their output into: one subfolder per server process under
 * the spool root, removed at shutdown. Folders left by servers that died are removed at start.
 *
 * @module
 */
import { dirname, join } from "node:path";
import type { ServerConfig } from "./config.ts";
import type { Logger } from "./log.ts";

/** A server's own spool folder; null when none could be made (output is then kept in memory). */
export interface SpoolFolder extends AsyncDisposable {
  readonly path: string | null;
}

/**
 * Makes `<root>/<pid>-<random>`. The root is CC_EXECUTOR_SPOOL_DIR, else spool/ beside the
 * history file, else (history in memory) `cc-executor-spool-<uid>` in the temporary folder, so a
 * server that was killed leaves nothing the next start does not sweep.
 */
export async function openSpoolFolder(config: ServerConfig, logger: Logger): Promise<SpoolFolder> {
  const shared = config.spoolDir === null && config.db === ":memory:";
  const root = config.spoolDir ??
    (shared ? join(tempRoot(), `cc-executor-spool-${uid()}`) : join(dirname(config.db), "spool"));
  try {
    await Deno.mkdir(root, { recursive: true, mode: 0o700 });
    // In a folder anyone can write to, the root could have been made by someone else first, to
    // read what jobs print: it must be ours, a real folder, and closed to others.
    if (shared) checkPrivate(root);
    await sweepDeadServers(root, logger);
    const path = join(root, `${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`);
    await Deno.mkdir(path, { mode: 0o700 });
    return {
      path,
      [Symbol.asyncDispose]: () => removeQuietly(path, logger),
    };
  } catch (error) {
    logger.warn(
      "cannot make the output spool folder; each job keeps its first 64 KiB of output for " +
        "jobs.output and the MCP tools (set CC_EXECUTOR_SPOOL_DIR to a writable folder)",
      { dir: root, error: (error as Error).message },
    );
    return { path: null, [Symbol.asyncDispose]: () => Promise.resolve() };
  }
}

function tempRoot(): string {
  try {
    return Deno.env.get("TMPDIR") || "/tmp";
  } catch {
    return "/tmp"; // no env access: the usual place
  }
}

function uid(): string {
  try {
    return String(Deno.uid() ?? "user");
  } catch {
    return "user";
  }
}

function checkPrivate(path: string): void {
  const info = Deno.lstatSync(path);
  const mine = Deno.uid();
  if (!info.isDirectory || (mine !== null && info.uid !== mine) || ((info.mode ?? 0) & 0o077)) {
    throw new Error(
      `${path} is not a private folder of this user (a link, someone else's, or open to others)`,
    );
  }
}

/** Removes `<pid>-*` folders whose server process is gone (Linux: no /proc/<pid>). */
async function sweepDeadServers(root: string, logger: Logger): Promise<void> {
  try {
    Deno.statSync("/proc/self");
  } catch {
    return; // No /proc: liveness cannot be told, so nothing is removed.
  }
  for await (const entry of Deno.readDir(root)) {
    const pid = /^(\d+)-[0-9a-f]{8}$/.exec(entry.name)?.[1];
    if (!entry.isDirectory || pid === undefined || Number(pid) === Deno.pid) continue;
    try {
      Deno.statSync(`/proc/${pid}`);
    } catch {
      await removeQuietly(join(root, entry.name), logger);
    }
  }
}

async function removeQuietly(path: string, logger: Logger): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    logger.warn("cannot remove an output spool folder", {
      dir: path,
      error: (error as Error).message,
    });
  }
}
