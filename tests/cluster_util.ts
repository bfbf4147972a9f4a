/**
 * Nodes of a cluster for the tests: as real `server start` processes (which a test can kill with
 * SIGKILL) or inside the test process (fast, and their job manager is at hand).
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { loadConfig } from "../server/config.ts";
import { silentLogger } from "../server/log.ts";
import { type ExecutorServer, startServer } from "../server/server.ts";
import { startCliServer } from "./cli_util.ts";

export type CliServer = Awaited<ReturnType<typeof startCliServer>>;

/** A node on `redisUrl` as a real `server start` process; down 2 s after its last heartbeat. */
export function startNodeProcess(
  redisUrl: string,
  id: string,
  env: Record<string, string> = {},
): Promise<CliServer> {
  return startCliServer({
    REDIS_URL: redisUrl,
    CC_EXECUTOR_NODE_ID: id,
    CC_EXECUTOR_NODE_DOWN_AFTER: "2",
    ...env,
  });
}

/** Stops a node process (SIGTERM: it leaves the cluster) and drains its log. */
export async function stopNodeProcess(node: CliServer): Promise<void> {
  try {
    node.child.kill("SIGTERM");
  } catch { /* already gone */ }
  await node.child.status;
  await node.log();
}

/** A node inside this test process; down 2 s after its last heartbeat. */
export function startNode(
  redisUrl: string,
  id: string,
  env: Record<string, string> = {},
): Promise<ExecutorServer> {
  const config = loadConfig({
    env: {
      REDIS_URL: redisUrl,
      CC_EXECUTOR_NODE_ID: id,
      CC_EXECUTOR_NODE_DOWN_AFTER: "2",
      CC_EXECUTOR_PORT: "0",
      CC_EXECUTOR_KILL_GRACE_MS: "300",
      // No file beside the tests: the outbox of a Redis store goes next to the database.
      CC_EXECUTOR_DB: ":memory:",
      ...env,
    },
    envFile: null,
  });
  return startServer(config, { logger: silentLogger });
}

/**
 * A Redis ACL user `name` allowed everything (so a test can take one command away from it with
 * `ACL SETUSER <name> -<command>`, making a Redis error happen at an exact point); resolves to the
 * URL that connects as it.
 */
export async function redisUser(
  admin: { sendCommand(args: string[]): Promise<unknown> },
  redisUrl: string,
  name: string,
): Promise<string> {
  await admin.sendCommand(["ACL", "SETUSER", name, "on", ">pw", "~*", "&*", "+@all"]);
  return redisUrl.replace("redis://", `redis://${name}:pw@`);
}

/** Kills node processes (SIGKILL) and the job groups a test left, whatever state they are in. */
export async function killAll(nodes: CliServer[], pgids: number[] = []): Promise<void> {
  for (const node of nodes) {
    try {
      node.child.kill("SIGKILL");
    } catch { /* gone */ }
    await node.child.status;
    await node.log();
  }
  for (const pgid of pgids) {
    try {
      Deno.kill(-pgid, "SIGKILL");
    } catch { /* gone */ }
  }
}

/**
 * Writes a policy file (docs/security.md) in `dir` giving each token of `tokens` (name ->
 * token) its own principal; resolves to its path, for CC_EXECUTOR_POLICY.
 */
export async function writeTokenPolicy(
  dir: string,
  tokens: Record<string, string>,
): Promise<string> {
  const path = join(dir, "policy.json");
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      tokens: Object.entries(tokens).map(([name, token]) => ({
        name,
        token_sha256: createHash("sha256").update(token).digest("hex"),
      })),
    }),
  );
  return path;
}
