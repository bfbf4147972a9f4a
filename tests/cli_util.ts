/**
 * Running the CLI as a real subprocess (`deno run -A main.ts ...`), the way
 * users and scripts do.
 *
 * @module
 */

const MAIN = new URL("../main.ts", import.meta.url).pathname;

export interface CliOptions {
  /** Extra environment; the CLI never reads the developer's .env or state directory. */
  env?: Record<string, string>;
  cwd?: string;
  /** Text for the CLI's stdin; default none (null). */
  stdin?: string;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A state directory of its own, so tests never see each other's (or the user's) servers. */
export function tempStateDir(): string {
  return Deno.makeTempDirSync({ prefix: "cc-executor-state-" });
}

/** The command for `cc-executor <args>`, isolated from the caller's environment files. */
export function cliCommand(
  args: string[],
  options: CliOptions & { stdout?: "piped" | "null"; stdinMode?: "piped" | "null" } = {},
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd: options.cwd,
    env: {
      CC_EXECUTOR_ENV_FILE: "/nonexistent/.env",
      CC_EXECUTOR_STATE_DIR: "/nonexistent/state",
      // Servers started by the CLI keep history in memory unless a test names a file.
      CC_EXECUTOR_DB: ":memory:",
      NO_COLOR: "1",
      ...options.env,
    },
    stdin: options.stdinMode ?? (options.stdin !== undefined ? "piped" : "null"),
    stdout: options.stdout ?? "piped",
    stderr: "piped",
  });
}

/** Runs `cc-executor <args>` to the end. */
export async function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const child = cliCommand(args, options).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** Starts `server start` on a free port and resolves once it is listening. */
export async function startCliServer(env: Record<string, string> = {}) {
  const child = cliCommand(["server", "start"], {
    env: { CC_EXECUTOR_PORT: "0", CC_EXECUTOR_KILL_GRACE_MS: "300", ...env },
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  while (true) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`server exited before listening:\n${log}`);
    log += value;
    const match = /listening on (ws:\/\/\S+)/.exec(log);
    if (match) {
      // Keep draining stderr so the server never blocks on a full pipe.
      const rest = (async () => {
        while (true) {
          const { value, done } = await lines.read();
          if (done) return log;
          log += value;
        }
      })();
      return { child, url: match[1]!, log: () => rest };
    }
  }
}

/** Whether util-linux `script` is here, to give the CLI a real pseudo-terminal. */
export const hasScript = (() => {
  try {
    return new Deno.Command("script", { args: ["--version"] }).outputSync().success;
  } catch {
    return false;
  }
})();
