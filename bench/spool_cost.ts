/**
 * Scenario (h): what keeping every job's output costs. The (c) run (`yes ... | head -c N`, read
 * by ExecutorClient with `collect: false`) through two servers that differ only in
 * CC_EXECUTOR_SPOOL_MAX_BYTES: high enough that each job's output is kept in full for
 * `jobs.output` and the MCP tools (64 KiB in memory, the rest written to a spool file), and 0
 * (only the first 64 KiB, in memory; no file). The two servers run side by side and take turns, so drift lands on
 * both alike.
 *
 * @module
 */
import { ExecutorClient } from "../server/client.ts";
import { serverOutput } from "./scenarios.ts";
import { ServerProcess } from "./server_process.ts";

export interface SpoolCostOptions {
  cwd: string;
  /** Output of each run. */
  bytes: number;
  /** Measured runs per variant, alternating. */
  runs: number;
  warmupBytes: number;
}

export const SPOOL_VARIANTS = ["kept", "off"] as const;
export type SpoolVariant = (typeof SPOOL_VARIANTS)[number];

export interface SpoolRun {
  ms: number;
  /** CPU seconds of the server process during the run. */
  serverCpu: number;
}

export interface SpoolCostResult {
  bytes: number;
  runs: Record<SpoolVariant, SpoolRun[]>;
}

const ENV: Record<SpoolVariant, Record<string, string>> = {
  // Above any run's output, so every byte is kept (the default, 256 MiB, would stop half way).
  kept: { CC_EXECUTOR_SPOOL_MAX_BYTES: String(2 ** 40) },
  off: { CC_EXECUTOR_SPOOL_MAX_BYTES: "0" },
};

export async function measureSpoolCost(options: SpoolCostOptions): Promise<SpoolCostResult> {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-bench-spool-" });
  const servers: Partial<Record<SpoolVariant, ServerProcess>> = {};
  try {
    for (const variant of SPOOL_VARIANTS) {
      servers[variant] = await ServerProcess.start({
        cwd: options.cwd,
        // History off: the spool is the only difference.
        env: { ...ENV[variant], CC_EXECUTOR_HISTORY: "off", CC_EXECUTOR_SPOOL_DIR: `${dir}/spool` },
      });
    }
    const clients: Partial<Record<SpoolVariant, ExecutorClient>> = {};
    try {
      for (const variant of SPOOL_VARIANTS) {
        clients[variant] = await ExecutorClient.connect(servers[variant]!.url);
        await serverOutput(clients[variant]!, options.warmupBytes);
      }
      const runs: SpoolCostResult["runs"] = { kept: [], off: [] };
      for (let round = 0; round < options.runs; round++) {
        for (let k = 0; k < SPOOL_VARIANTS.length; k++) {
          const variant = SPOOL_VARIANTS[(round + k) % SPOOL_VARIANTS.length]!;
          const server = servers[variant]!;
          const cpu0 = server.cpuSeconds();
          const t0 = performance.now();
          const jobId = await serverOutput(clients[variant]!, options.bytes);
          runs[variant].push({
            ms: performance.now() - t0,
            serverCpu: server.cpuSeconds() - cpu0,
          });
          await checkKept(clients[variant]!, jobId, variant, options.bytes);
        }
      }
      return { bytes: options.bytes, runs };
    } finally {
      for (const client of Object.values(clients)) await client?.close();
    }
  } finally {
    for (const server of Object.values(servers)) await server?.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The variant did what it says: all of the output kept, or only the first 64 KiB. */
async function checkKept(
  client: ExecutorClient,
  jobId: string,
  variant: SpoolVariant,
  bytes: number,
): Promise<void> {
  const { incomplete, totals } = await client.request("jobs.output", {
    job_id: jobId,
    tail_lines: 1,
  });
  const kept = variant === "kept" ? incomplete === null : incomplete !== null;
  if (!kept || totals.stdout.bytes !== bytes) {
    throw new Error(
      `(h) ${variant}: jobs.output says ${JSON.stringify({ incomplete, totals })}`,
    );
  }
}
