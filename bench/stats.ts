/**
 * Summaries of benchmark samples and the number formats the report uses.
 * Percentiles use the nearest-rank method: every reported figure is a value
 * that was actually measured, never an interpolation between two.
 *
 * @module
 */

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of ascending `sorted` samples; `p` in (0, 100]. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new Error("percentile: no samples");
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    min: sorted[0] ?? NaN,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? NaN,
    mean: sorted.reduce((sum, x) => sum + x, 0) / sorted.length,
  };
}

/** The middle value (the lower one of an even count), for a handful of repeated runs. */
export function median(samples: readonly number[]): number {
  return percentile([...samples].sort((a, b) => a - b), 50);
}

export const MiB = 1024 * 1024;
/** Decimal megabytes: the memory target is stated in MB. */
export const MB = 1_000_000;

/** Fixed decimals, so the report's columns keep their shape from run to run. */
export function fixed(value: number, decimals: number): string {
  return Number.isFinite(value) ? value.toFixed(decimals) : "n/a";
}

/** `measured / baseline` as "1.23x". */
export function ratio(measured: number, baseline: number): string {
  return `${fixed(measured / baseline, 2)}x`;
}

/**
 * Runs one sample of each kind per round, starting each round one kind later, so drift (CPU
 * frequency, page cache, another tenant) lands on every kind alike. `keep` is false during the
 * `warmup` rounds.
 */
export async function rotateRounds(
  kinds: ((keep: boolean) => Promise<unknown>)[],
  rounds: { warmup: number; samples: number },
): Promise<void> {
  for (let round = 0; round < rounds.warmup + rounds.samples; round++) {
    for (let k = 0; k < kinds.length; k++) {
      await kinds[(round + k) % kinds.length]!(round >= rounds.warmup);
    }
  }
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
