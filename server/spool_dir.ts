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
 * history file, else (history in memory) a new temporary folder.
 */
export async function openSpoolFolder(config: ServerConfig, logger: Logger): Promise<SpoolFolder> {
  let root: string | null = config.spoolDir ??
    (config.db === ":memory:" ? null : join(dirname(config.db), "spool"));
  let made: string | null = null;
  try {
    if (root === null) {
      root = await Deno.makeTempDir({ prefix: "cc-executor-spool-" });
      made = root;
    } else {
      await Deno.mkdir(root, { recursive: true, mode: 0o700 });
      await sweepDeadServers(root, logger);
    }
    const path = join(root, `${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`);
    await Deno.mkdir(path, { mode: 0o700 });
    const owned = made ?? path;
    return {
      path,
      [Symbol.asyncDispose]: () => removeQuietly(owned, logger),
    };
  } catch (error) {
    if (made) await removeQuietly(made, logger);
    logger.warn(
      "cannot make the output spool folder; each job keeps its first 64 KiB of output for " +
        "jobs.output and the MCP tools (set CC_EXECUTOR_SPOOL_DIR to a writable folder)",
      { dir: root, error: (error as Error).message },
    );
    return { path: null, [Symbol.asyncDispose]: () => Promise.resolve() };
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
