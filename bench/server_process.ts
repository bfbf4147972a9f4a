/**
 * The server under test, in its own process (`deno run -A main.ts server
 * start`), so its memory and CPU can be read from /proc apart from the
 * client's, and so the client's work and the server's compete for the CPUs
 * the way they do in real use.
 *
 * @module
 */
import { median } from "./stats.ts";

export interface ServerProcessOptions {
  /** The project root, where main.ts is. */
  cwd: string;
  /** Added to the inherited environment (CC_EXECUTOR_CHUNK_BYTES=... for experiments). */
  env?: Record<string, string>;
  /** @default 60000: the first start may have to load npm packages into the cache. */
  startTimeoutMs?: number;
}

const TAIL_CHARS = 8192;

/** What the bench started and must stop even when a run is interrupted. */
export interface Stoppable {
  stop(graceMs?: number): Promise<unknown>;
}

/**
 * Every server and websocketd the bench has started and not yet stopped, wherever in a scenario it
 * was started: an interrupted run stops them all (a child outlives its parent's Deno.exit).
 */
const running = new Set<Stoppable>();

/** Registers a child until `stopped` settles. */
export function track(child: Stoppable, stopped: Promise<unknown>): void {
  running.add(child);
  stopped.finally(() => running.delete(child));
}

/** Stops every child still running (an interrupted run: scenarios may hold servers of their own). */
export function stopAll(graceMs: number): Promise<unknown> {
  return Promise.allSettled([...running].map((child) => child.stop(graceMs)));
}

export class ServerProcess implements AsyncDisposable, Stoppable {
  readonly pid: number;
  readonly port: number;
  /** ws://127.0.0.1:port/ws */
  readonly url: string;
  readonly #child: Deno.ChildProcess;
  readonly #drained: Promise<unknown>;
  #tail = "";
  #exited = false;
  #stopped: Promise<Deno.CommandStatus> | null = null;

  private constructor(child: Deno.ChildProcess, port: number) {
    this.#child = child;
    this.pid = child.pid;
    this.port = port;
    this.url = `ws://127.0.0.1:${port}/ws`;
    // Keep the last of what it prints (only warnings and errors at LOG_LEVEL=warn) for error messages,
    // and keep reading so a chatty server can never block on a full pipe.
    const keep = async (stream: ReadableStream<Uint8Array>) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        this.#tail = (this.#tail + text).slice(-TAIL_CHARS);
      }
    };
    this.#drained = Promise.all([keep(child.stdout), keep(child.stderr)]);
    child.status.then(() => (this.#exited = true));
    track(this, child.status);
  }

  /** Starts the server on a free loopback port and resolves once /health answers. */
  static async start(options: ServerProcessOptions): Promise<ServerProcess> {
    const port = freePort();
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts", "server", "start"],
      cwd: options.cwd,
      env: {
        // A stray .env in the checkout must not change what is measured.
        CC_EXECUTOR_ENV_FILE: "",
        ...options.env,
        CC_EXECUTOR_HOST: "127.0.0.1",
        CC_EXECUTOR_PORT: String(port),
        LOG_LEVEL: "warn",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const server = new ServerProcess(child, port);
    try {
      await server.#waitHealthy(options.startTimeoutMs ?? 60_000);
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  /** What the server printed last (stdout and stderr interleaved). */
  get output(): string {
    return this.#tail;
  }

  /** Current resident set size, bytes (VmRSS). */
  rss(): number {
    return statusField(this.pid, "VmRSS");
  }

  /** Peak resident set size since start or the last resetPeak(), bytes (VmHWM). */
  peakRss(): number {
    return statusField(this.pid, "VmHWM");
  }

  /**
   * Resets VmHWM to the current RSS (Linux 4.0+: "5" to clear_refs), so a
   * scenario's peak is its own and not an earlier scenario's. False where
   * that is not allowed; the sampled peak is still reported then.
   */
  resetPeak(): boolean {
    try {
      Deno.writeTextFileSync(`/proc/${this.pid}/clear_refs`, "5");
      return true;
    } catch {
      return false;
    }
  }

  /** User plus system CPU time the server has used, seconds. */
  cpuSeconds(): number {
    return cpuSecondsOf(this.pid);
  }

  /** SIGTERM (the server stops its jobs and sessions), then waits; SIGKILL after `graceMs`. */
  stop(graceMs = 15_000): Promise<Deno.CommandStatus> {
    return this.#stopped ??= (async () => {
      if (!this.#exited) {
        try {
          this.#child.kill("SIGTERM");
        } catch (error) {
          if (!(error instanceof TypeError)) throw error; // already exited
        }
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) => (timer = setTimeout(resolve, graceMs, "late")));
      const first = await Promise.race([this.#child.status, late]);
      clearTimeout(timer);
      if (first === "late") this.#child.kill("SIGKILL");
      const status = await this.#child.status;
      await this.#drained;
      return status;
    })();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (true) {
      if (this.#exited) {
        throw new Error(`the server exited during start:\n${this.#tail}`);
      }
      try {
        const response = await fetch(`http://127.0.0.1:${this.port}/health`);
        const body = await response.json();
        if (response.ok && body.status === "ok") return;
      } catch (error) {
        if (!(error instanceof TypeError)) throw error; // TypeError: not listening yet
      }
      if (performance.now() > deadline) {
        throw new Error(`the server did not answer /health within ${timeoutMs} ms:\n${this.#tail}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/**
 * Samples a process's VmRSS every `intervalMs` until stopped. A timer loop in
 * the client process: the client is mostly waiting on I/O in the scenarios
 * this runs in, so the samples come close to on time.
 */
export class RssSampler implements Disposable {
  readonly samples: number[] = [];
  #timer: ReturnType<typeof setInterval>;

  constructor(server: ServerProcess, intervalMs = 20) {
    this.samples.push(server.rss());
    this.#timer = setInterval(() => {
      try {
        this.samples.push(server.rss());
      } catch {
        // The process is gone; the samples so far stand.
      }
    }, intervalMs);
  }

  get peak(): number {
    return Math.max(...this.samples);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** A scenario that fails must not leave the interval keeping the bench alive. */
  [Symbol.dispose](): void {
    this.stop();
  }
}

/** A memory figure of /proc/<pid>/status (VmRSS: resident now; VmHWM: peak), bytes. */
export function statusField(pid: number, field: "VmRSS" | "VmHWM"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  if (!match) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(match[1]) * 1024;
}

/** The median of five readings 100 ms apart: one reading can land on a collection in progress. */
export async function steadyRss(server: ServerProcess): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 100));
    samples.push(server.rss());
  }
  return median(samples);
}

/** User plus system CPU time of this process (not its children), seconds. */
export function ownCpuSeconds(): number {
  return cpuSecondsOf("self");
}

/** Clock ticks per second for /proc/<pid>/stat; 100 on every Linux we run on. */
const CLOCK_TICKS = 100;

export function cpuSecondsOf(pid: number | "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // "pid (comm) state ..." where comm may hold spaces: utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** A port nothing listens on right now (the kernel picks it; we close and hand it over). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}
