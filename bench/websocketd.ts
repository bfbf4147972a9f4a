/**
 * Scenario (k): cc-executor next to websocketd (the Debian package), the classic "a program
 * behind a WebSocket" server, when it is on PATH. websocketd runs one program per connection
 * and sends each line of its stdout as a message (or, with `--binary`, each chunk it reads), then
 * closes the connection when the program exits. It has no JSON-RPC, no process group, no exit
 * status, no cancel, no replay and no history: this measures the same two runs, `echo hi` and
 * the (c) output, through both, not two equivalent services.
 *
 * @module
 */
import { ExecutorClient } from "../server/client.ts";
import { bareEcho, ECHO, outputCommand, serverEcho, serverOutput, within } from "./scenarios.ts";
import {
  cpuSecondsOf,
  freePort,
  type ServerProcess,
  statusField,
  type Stoppable,
  track,
} from "./server_process.ts";
import { median, rotateRounds, summarize, type Summary } from "./stats.ts";

const PROGRAM = "websocketd";

export interface WebsocketdOptions {
  latencySamples: number;
  latencyWarmup: number;
  /** Output of the runs through `--binary` (chunks) and through cc-executor. */
  binaryBytes: number;
  /** Output of the runs in websocketd's own line mode (a message per 64-byte line) and through cc-executor. */
  lineBytes: number;
  runs: number;
}

export interface LatencyPath {
  ms: Summary;
  /** CPU of the serving process (cc-executor's server, or websocketd) per job, ms. */
  serverCpuMs: number;
}

export interface OutputRuns {
  bytes: number;
  /** Wall time of each run, ms. */
  ms: number[];
  bytesPerSecond: number;
  /** CPU seconds of the serving process per run. */
  serverCpu: number;
  /** WebSocket messages per run. */
  messages: number;
}

export interface WebsocketdResult {
  installed: true;
  version: string;
  latency: {
    /** ExecutorClient on an open connection: execute -> process.completed, as (a). */
    server: LatencyPath;
    /** A new ExecutorClient per job: connect -> `connected` -> execute -> process.completed. */
    serverConnect: LatencyPath;
    /** A new WebSocket per job: open -> "hi" -> the close websocketd sends when bash exits. */
    websocketd: LatencyPath;
    /** `bash -c 'echo hi'` spawned here, as (a)'s baseline. */
    bare: Summary;
  };
  output: {
    server: OutputRuns;
    binary: OutputRuns;
    serverSmall: OutputRuns;
    line: OutputRuns;
  };
  /** websocketd's RSS after the runs: the largest of the three instances, bytes. */
  websocketdRss: number;
  /** websocketd connections (warm-ups included) that ended with a close frame, and without one. */
  closes: Closes;
}

interface Closes {
  clean: number;
  unclean: number;
}

export type WebsocketdOutcome = WebsocketdResult | { installed: false; skipped: string };

export async function measureWebsocketd(
  server: ServerProcess,
  client: ExecutorClient,
  options: WebsocketdOptions,
): Promise<WebsocketdOutcome> {
  const version = await websocketdVersion();
  if (version === null) {
    return { installed: false, skipped: "websocketd not installed: skipped" };
  }
  // One websocketd per command: it serves a single program, fixed when it starts.
  await using echo = await Websocketd.start(["bash", "-c", ECHO]);
  await using binary = await Websocketd.start(["bash", "-c", outputCommand(options.binaryBytes)], {
    binary: true,
  });
  await using line = await Websocketd.start(["bash", "-c", outputCommand(options.lineBytes)]);

  const closes: Closes = { clean: 0, unclean: 0 };
  const latency = await measureLatencies(server, client, echo, closes, options);
  const output = await measureOutputs(server, client, { binary, line }, closes, options);
  const websocketdRss = Math.max(echo.rss(), binary.rss(), line.rss());
  return { installed: true, version, latency, output, websocketdRss, closes };
}

async function measureLatencies(
  server: ServerProcess,
  client: ExecutorClient,
  echo: Websocketd,
  closes: Closes,
  options: WebsocketdOptions,
): Promise<WebsocketdResult["latency"]> {
  const ms = { server: [] as number[], serverConnect: [] as number[], websocketd: [] as number[] };
  const cpu = { server: 0, serverConnect: 0, websocketd: 0 };
  const bare: number[] = [];
  // `run` may hand back a teardown: not timed (the outcome is in), but awaited before the next
  // sample starts and billed to this path's CPU, as websocketd's teardown is billed to it.
  const timed = (
    name: keyof typeof ms,
    cpuOf: () => number,
    run: () => Promise<(() => Promise<void>) | void>,
  ) =>
  async (keep: boolean) => {
    const cpu0 = cpuOf();
    const t0 = performance.now();
    const teardown = await run();
    const elapsed = performance.now() - t0;
    if (teardown) await teardown();
    if (!keep) return;
    ms[name].push(elapsed);
    cpu[name] += cpuOf() - cpu0;
  };
  const serverCpu = () => server.cpuSeconds();
  await rotateRounds([
    timed("server", serverCpu, async () => {
      await serverEcho(client);
    }),
    timed("serverConnect", serverCpu, async () => {
      const fresh = await ExecutorClient.connect(server.url);
      try {
        await serverEcho(fresh);
      } catch (error) {
        await fresh.close();
        throw error;
      }
      return () => fresh.close();
    }),
    timed("websocketd", () => echo.cpuSeconds(), async () => {
      const { messages, clean } = await readAll(echo.url, "text");
      closes[clean ? "clean" : "unclean"]++;
      if (messages.length !== 1 || messages[0] !== "hi") {
        throw new Error(`websocketd ${ECHO}: got ${JSON.stringify(messages)}, expected ["hi"]`);
      }
    }),
    async (keep) => {
      const t0 = performance.now();
      await bareEcho("bash");
      if (keep) bare.push(performance.now() - t0);
    },
  ], { warmup: options.latencyWarmup, samples: options.latencySamples });
  const path = (name: keyof typeof ms): LatencyPath => ({
    ms: summarize(ms[name]),
    serverCpuMs: (cpu[name] / ms[name].length) * 1000,
  });
  return {
    server: path("server"),
    serverConnect: path("serverConnect"),
    websocketd: path("websocketd"),
    bare: summarize(bare),
  };
}

async function measureOutputs(
  server: ServerProcess,
  client: ExecutorClient,
  websocketd: { binary: Websocketd; line: Websocketd },
  closes: Closes,
  options: WebsocketdOptions,
): Promise<WebsocketdResult["output"]> {
  type Name = keyof WebsocketdResult["output"];
  const runs: Record<Name, { ms: number; cpu: number; messages: number }[]> = {
    server: [],
    binary: [],
    serverSmall: [],
    line: [],
  };
  const bytes: Record<Name, number> = {
    server: options.binaryBytes,
    binary: options.binaryBytes,
    serverSmall: options.lineBytes,
    line: options.lineBytes,
  };
  const viaServer = (n: number) => async () => {
    let messages = 0;
    const unsubscribe = client.onNotification((x) =>
      void (x.method === "process.output" && messages++)
    );
    try {
      await serverOutput(client, n);
    } finally {
      unsubscribe();
    }
    return messages;
  };
  const viaWebsocketd = (instance: Websocketd, mode: "binary" | "text", n: number) => async () => {
    const { bytes, frames, clean } = await readAll(instance.url, mode);
    closes[clean ? "clean" : "unclean"]++;
    if (bytes !== n) throw new Error(`websocketd output: read ${bytes} bytes, expected ${n}`);
    return frames;
  };
  const kinds: Record<Name, { cpu: () => number; run: () => Promise<number> }> = {
    server: { cpu: () => server.cpuSeconds(), run: viaServer(options.binaryBytes) },
    binary: {
      cpu: () => websocketd.binary.cpuSeconds(),
      run: viaWebsocketd(websocketd.binary, "binary", options.binaryBytes),
    },
    serverSmall: { cpu: () => server.cpuSeconds(), run: viaServer(options.lineBytes) },
    line: {
      cpu: () => websocketd.line.cpuSeconds(),
      run: viaWebsocketd(websocketd.line, "text", options.lineBytes),
    },
  };
  const names = Object.keys(kinds) as Name[];
  await rotateRounds(
    names.map((name) => async (keep: boolean) => {
      const cpu0 = kinds[name].cpu();
      const t0 = performance.now();
      const messages = await kinds[name].run();
      if (keep) {
        runs[name].push({ ms: performance.now() - t0, cpu: kinds[name].cpu() - cpu0, messages });
      }
    }),
    // One unmeasured round: the first websocketd connection and the first big job pay for
    // page-cache and allocator warm-up that later ones do not.
    { warmup: 1, samples: options.runs },
  );
  const summary = (name: Name): OutputRuns => {
    const ms = runs[name].map((x) => x.ms);
    return {
      bytes: bytes[name],
      ms,
      bytesPerSecond: bytes[name] / (median(ms) / 1000),
      serverCpu: runs[name].reduce((sum, x) => sum + x.cpu, 0) / runs[name].length,
      messages: median(runs[name].map((x) => x.messages)),
    };
  };
  return {
    server: summary("server"),
    binary: summary("binary"),
    serverSmall: summary("serverSmall"),
    line: summary("line"),
  };
}

/**
 * Opens a WebSocket to websocketd and reads until the connection ends (websocketd ends it when
 * its program exits): text messages are kept (each a line, newline stripped, so a byte each is
 * added back), binary ones only counted. websocketd sometimes drops the TCP connection without a
 * close frame after the last message; that still marks the program's end, and is counted.
 */
async function readAll(
  url: string,
  mode: "binary" | "text",
): Promise<{ bytes: number; messages: string[]; frames: number; clean: boolean }> {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const messages: string[] = [];
  let bytes = 0, frames = 0;
  ws.onmessage = (event) => {
    frames++;
    if (typeof event.data === "string") {
      if (mode === "text") messages.push(event.data);
      bytes += event.data.length + 1;
    } else {
      bytes += (event.data as ArrayBuffer).byteLength;
    }
  };
  const clean = await within(
    new Promise<boolean>((resolve) => (ws.onclose = (event) => resolve(event.wasClean))),
    120_000,
    `websocketd ${url} ending the connection`,
  );
  return { bytes, messages: mode === "text" ? messages : [], frames, clean };
}

async function websocketdVersion(): Promise<string | null> {
  try {
    const { stdout, stderr } = await new Deno.Command(PROGRAM, { args: ["--version"] }).output();
    const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
    // Debian's build says "websocketd DEVBUILD (go1.19.8 linux-amd64) --": dpkg knows the release.
    return (await dpkgVersion()) ?? (text.trim() || "unknown version");
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

async function dpkgVersion(): Promise<string | null> {
  try {
    const { success, stdout } = await new Deno.Command("dpkg-query", {
      args: ["-W", "-f", "${Version}", PROGRAM],
      stderr: "null",
    }).output();
    const version = new TextDecoder().decode(stdout).trim();
    return success && version ? `${version} (Debian package)` : null;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** One websocketd serving `command` on a free loopback port. */
class Websocketd implements AsyncDisposable, Stoppable {
  readonly url: string;
  readonly #child: Deno.ChildProcess;
  readonly #port: number;
  #tail = "";
  readonly #drained: Promise<unknown>;

  private constructor(child: Deno.ChildProcess, port: number) {
    this.#child = child;
    this.#port = port;
    this.url = `ws://127.0.0.1:${port}/`;
    // Keep reading, so its log (errors only) can never block it, and keep the end for errors.
    const keep = async (stream: ReadableStream<Uint8Array>) => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        this.#tail = (this.#tail + text).slice(-4096);
      }
    };
    this.#drained = Promise.all([keep(child.stdout), keep(child.stderr)]);
    track(this, child.status);
  }

  static async start(command: string[], options: { binary?: boolean } = {}): Promise<Websocketd> {
    const port = freePort();
    const child = new Deno.Command(PROGRAM, {
      args: [
        `--port=${port}`,
        "--address=127.0.0.1",
        "--loglevel=error",
        ...(options.binary ? ["--binary"] : []),
        ...command,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const instance = new Websocketd(child, port);
    try {
      await instance.#waitListening();
    } catch (error) {
      await instance[Symbol.asyncDispose]();
      throw error;
    }
    return instance;
  }

  rss(): number {
    return statusField(this.#child.pid, "VmRSS");
  }

  cpuSeconds(): number {
    return cpuSecondsOf(this.#child.pid);
  }

  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch (error) {
      if (!(error instanceof TypeError)) throw error; // already exited
    }
    await this.#child.status;
    await this.#drained;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #waitListening(): Promise<void> {
    const deadline = performance.now() + 10_000;
    while (true) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: this.#port })).close();
        return;
      } catch (error) {
        if (!(error instanceof Deno.errors.ConnectionRefused)) throw error;
      }
      if (performance.now() > deadline) {
        throw new Error(
          `websocketd did not listen on port ${this.#port} within 10 s:\n${this.#tail}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
