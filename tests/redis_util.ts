/**
 * A real redis-server for tests: started on a free loopback port with nothing
 * persisted, stopped (and its directory removed) on dispose. Tests that need
 * one are registered with `ignore: !HAS_REDIS`, so a machine without
 * redis-server reports them as ignored, never as passed.
 *
 * @module
 */

/** True when `redis-server` can be run here. */
export const HAS_REDIS: boolean = (() => {
  try {
    return new Deno.Command("redis-server", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
})();

if (!HAS_REDIS) {
  console.error(
    "!!! redis-server is not installed: the Redis store tests are SKIPPED; .ci/run installs it",
  );
}

export interface RedisServer extends AsyncDisposable {
  /** redis://127.0.0.1:<port> (with the password when one was set). */
  readonly url: string;
  readonly port: number;
  /** The redis-server process's id; null while it is stopped. */
  readonly pid: number | null;
  /** SIGTERM, then waits for the process to exit. Does nothing when already stopped. */
  stop(): Promise<void>;
  /** Stops it, then starts it again on the same port (empty unless started with `persist`). */
  restart(): Promise<void>;
}

export interface StartRedisOptions {
  /** Clients must AUTH with this password (`--requirepass`). */
  password?: string;
  /** Keep the data across `restart()` (an append-only file, fsynced on every write), as a real deployment would. */
  persist?: boolean;
}

/** Starts a redis-server on a free port and resolves once it answers PING. */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const dir = await Deno.makeTempDir({ prefix: "cc-executor-redis-" });
  const port = freePort();
  let child: Deno.ChildProcess | undefined;
  const start = async () => {
    const args = [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      options.persist ? "yes" : "no",
      ...(options.persist ? ["--appendfsync", "always"] : []),
      "--dir",
      dir,
      "--logfile",
      "redis.log",
    ];
    if (options.password !== undefined) args.push("--requirepass", options.password);
    child = new Deno.Command("redis-server", {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    })
      .spawn();
    await waitForPing(port, options.password, child, `${dir}/redis.log`);
  };
  const stop = async () => {
    const running = child;
    child = undefined;
    if (!running) return;
    try {
      running.kill("SIGTERM");
    } catch (error) {
      // Already exited on its own: its status below says so.
      if (!(error instanceof TypeError)) throw error;
    }
    await running.status;
  };
  try {
    await start();
  } catch (error) {
    await stop();
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  const auth = options.password === undefined ? "" : `:${encodeURIComponent(options.password)}@`;
  return {
    url: `redis://${auth}127.0.0.1:${port}`,
    port,
    get pid() {
      return child?.pid ?? null;
    },
    stop,
    async restart() {
      await stop();
      await start();
    },
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A loopback port nothing listens on (it was free a moment ago). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Polls with PING over a raw connection until +PONG, the process exits, or 10 s pass. */
async function waitForPing(
  port: number,
  password: string | undefined,
  child: Deno.ChildProcess,
  logFile: string,
): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = performance.now() + 10_000;
  const request = password === undefined
    ? "PING\r\n"
    : `AUTH ${JSON.stringify(password)}\r\nPING\r\n`;
  while (true) {
    if (exited) {
      const log = await Deno.readTextFile(logFile).catch(() => "(no log)");
      throw new Error(`redis-server on port ${port} exited at start:\n${log}`);
    }
    if (await answersPing(port, request)) return;
    if (performance.now() > deadline) {
      throw new Error(`redis-server on port ${port} did not answer PING within 10 s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function answersPing(port: number, request: string): Promise<boolean> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return false;
    throw error;
  }
  try {
    await conn.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(256);
    let text = "";
    while (!text.includes("PONG") && !text.includes("-")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return text.includes("+PONG");
  } catch (error) {
    // Accepted, then closed while starting up.
    if (error instanceof Deno.errors.ConnectionReset) return false;
    throw error;
  } finally {
    conn.close();
  }
}
