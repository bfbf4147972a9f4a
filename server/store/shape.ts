/**
 * Command shapes and adaptive timeouts. A shape is what a command's timing
 * is keyed by: its program and, when the next word looks like a subcommand,
 * that word (`npm test`, `git status`, `make`, `sleep`). The timeout for a
 * request that gives none is estimated from the shape's recent durations.
 *
 * @module
 */

/**
 * `FOO=1 /usr/bin/npm test -- --watch | tee log` -> `npm test`;
 * `cd /repo && make -j4 test` -> `make`; `python3 script.py` -> `python3 script.py`;
 * `ls -la` -> `ls`; `sleep 5` -> `sleep`.
 * The first simple command that does the work counts: commands that only prepare the shell
 * (`cd`, `source`, `export`, ...) are skipped, as are variable assignments, wrappers that do not
 * change what runs (`env`, `exec`, `time`, `nohup`, `stdbuf -oL`) and subshell parentheses.
 */
export function commandShape(command: string): string {
  const simple = command.trim().split(/\s*(?:\|\||&&|[|;&\n])\s*/).map(shapeOf);
  return simple.find((shape) => shape !== "" && !PREPARATION.has(shape.split(" ")[0]!)) ??
    simple.find((shape) => shape !== "") ?? "";
}

/** The shape of one simple command. */
function shapeOf(text: string): string {
  const words = (text.replace(/^[({\s]+|[)}\s]+$/g, "").match(SHELL_WORD) ?? []).map(unquote);
  let i = 0;
  while (i < words.length) {
    const word = words[i]!;
    if (/^[A-Za-z_][A-Za-z0-9_]*=/.test(word)) i++;
    else if (WRAPPERS.has(word)) {
      i++;
      while (i < words.length && words[i]!.startsWith("-")) i++;
    } else break;
  }
  const program = words[i];
  if (program === undefined) return "";
  const name = program.slice(program.lastIndexOf("/") + 1);
  const next = words[i + 1];
  return next !== undefined && SUBCOMMAND.test(next) ? `${name} ${next}` : name;
}

/** Commands that set the shell up for the one that does the work. */
const PREPARATION = new Set([
  "cd",
  "pushd",
  "popd",
  "source",
  ".",
  "export",
  "set",
  "unset",
  "umask",
  "ulimit",
  "true",
  ":",
]);

const WRAPPERS = new Set(["env", "exec", "time", "nohup", "stdbuf", "command", "builtin"]);

/** A word that names what to do (`test`, `run:dev`, `script.py`), not an option or a value. */
const SUBCOMMAND = /^[A-Za-z][A-Za-z0-9._:-]*$/;

/** A shell word: runs of unquoted characters and quoted strings (`BAR='x y'` is one word). */
const SHELL_WORD = /(?:[^\s'"]+|'[^']*'|"(?:\\.|[^"\\])*")+/g;

function unquote(word: string): string {
  return word.replace(/'([^']*)'|"((?:\\.|[^"\\])*)"/g, (_, single, double) => single ?? double);
}

/** The p-th percentile (0..100) of `values`, nearest-rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface TimeoutPolicy {
  /** Off: a request without a timeout runs without one. */
  adaptive: boolean;
  /** Seconds, when a shape has fewer than `minSamples` successful runs. */
  defaultSeconds: number;
  floorSeconds: number;
  ceilingSeconds: number;
  /** The estimate is this multiple of the shape's p95. */
  multiplier: number;
  minSamples: number;
}

export interface TimeoutEstimate {
  seconds: number | null;
  source: "history" | "default" | "none";
  /** Durations the estimate rests on. */
  samples: number;
  p95_ms: number | null;
}

/** The timeout for a request that gave none: `multiplier` x p95, clamped, or the default. */
export function estimateTimeout(
  durationsMs: readonly number[],
  policy: TimeoutPolicy,
): TimeoutEstimate {
  if (!policy.adaptive) return { seconds: null, source: "none", samples: 0, p95_ms: null };
  if (durationsMs.length < policy.minSamples) {
    return {
      seconds: policy.defaultSeconds,
      source: "default",
      samples: durationsMs.length,
      p95_ms: null,
    };
  }
  const p95 = percentile(durationsMs, 95);
  const seconds = Math.min(
    policy.ceilingSeconds,
    Math.max(policy.floorSeconds, Math.ceil((policy.multiplier * p95) / 1000)),
  );
  return { seconds, source: "history", samples: durationsMs.length, p95_ms: p95 };
}
