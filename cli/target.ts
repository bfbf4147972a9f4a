/**
 * Which server a command talks to, and connecting to it with errors a person
 * can act on. Every command that reaches a server takes `--url` and
 * `--token`, falling back to CC_EXECUTOR_URL / CC_EXECUTOR_TOKEN, then to the
 * detached server recorded in the state directory, then to the local default.
 *
 * @module
 */
import type { Command, OptionValues } from "@commander-js/extra-typings";
import { ConnectionClosedError, ExecutorClient, ExecutorRpcError } from "../server/client.ts";
import { ErrorCode } from "../server/protocol.ts";
import { VERSION } from "../server/version.ts";
import { ConfigError, readTokenFile } from "../server/config.ts";
import { readEnv } from "../server/env.ts";
import { certificateHint } from "../server/tls.ts";
import { CliError, UsageError } from "./output.ts";
import { type PidFile, pidFilePath, readPidFile, recordedServerAlive } from "./state.ts";

export interface TargetOptions {
  url?: string;
  token?: string;
}

export interface Target {
  /** ws://host:port/ws, or wss:// for a server with TLS */
  url: string;
  token: string | undefined;
  /** How the url was chosen, for messages. */
  source: "--url" | "CC_EXECUTOR_URL" | "pid file" | "default";
}

/** Adds `--url` and `--token` to a command that talks to a server. */
export function withTarget<
  Args extends unknown[],
  Opts extends OptionValues,
  Globals extends OptionValues,
>(command: Command<Args, Opts, Globals>) {
  return command
    .option(
      "--url <url>",
      "server to use (CC_EXECUTOR_URL; default: the detached server, else ws://127.0.0.1:8003/ws)",
    )
    .option("--token <token>", "bearer token for the server (CC_EXECUTOR_TOKEN)");
}

/**
 * The token in CC_EXECUTOR_TOKEN_FILE, read as the server reads it (same checks: a file others
 * may read is refused), when it is set.
 */
function tokenFromFile(): string | undefined {
  const path = readEnv("CC_EXECUTOR_TOKEN_FILE");
  if (!path) return undefined;
  try {
    return readTokenFile(path);
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(error.message);
    throw error;
  }
}

/** Resolves the server to talk to. */
export function resolveTarget(options: TargetOptions): Target {
  const token = options.token ?? (readEnv("CC_EXECUTOR_TOKEN") || tokenFromFile());
  if (options.url !== undefined) {
    return { url: normalizeUrl(options.url, "--url"), token, source: "--url" };
  }
  const fromEnv = readEnv("CC_EXECUTOR_URL");
  if (fromEnv) {
    return { url: normalizeUrl(fromEnv, "CC_EXECUTOR_URL"), token, source: "CC_EXECUTOR_URL" };
  }
  const detached = liveDetachedServer();
  if (detached) return { url: detached.url, token, source: "pid file" };
  const port = readEnv("CC_EXECUTOR_PORT") || "8003";
  // A server started with this environment speaks TLS when it has a certificate.
  const scheme = readEnv("CC_EXECUTOR_TLS_CERT") ? "wss" : "ws";
  return { url: `${scheme}://127.0.0.1:${port}/ws`, token, source: "default" };
}

/**
 * Accepts what people type: `ws://host:port/ws`, `ws://host:port`, `http://host:port`,
 * `host:port`. The path defaults to /ws.
 */
export function normalizeUrl(text: string, from = "--url"): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `ws://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError(`Invalid ${from} ${JSON.stringify(text)}: expected ws://host:port/ws`);
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new UsageError(
      `Invalid ${from} ${JSON.stringify(text)}: expected a ws:// or wss:// address`,
    );
  }
  if (url.pathname === "/" || url.pathname === "") url.pathname = "/ws";
  return url.href;
}

/** The HTTP address of `path` (e.g. /health) on the same server. */
export function httpUrl(wsUrl: string, path: string): string {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = path;
  return url.href;
}

/**
 * The background server the state directory records, if it is still that server: a record left
 * by one that died (or an unreadable state directory) must not hide the default address.
 */
function liveDetachedServer(): PidFile | null {
  try {
    const path = pidFilePath();
    const record = readPidFile(path);
    return record && recordedServerAlive(path, record) ? record : null;
  } catch (error) {
    if (error instanceof CliError) return null;
    throw error;
  }
}

/** How to get a server, for "nothing is listening" messages. */
export const START_HINT =
  "Start one with `cc-executor server start --detach` (or `deno task start` in the foreground)";

/**
 * Connects, turning failures into messages that say what to do.
 * @param exitCode the exit code when it cannot connect
 */
export async function connectTo(
  target: Target,
  options: { exitCode?: number; hint?: string } = {},
): Promise<ExecutorClient> {
  try {
    return await ExecutorClient.connect(target.url, { token: target.token, timeoutMs: 10_000 });
  } catch (error) {
    if (!(error instanceof ConnectionClosedError)) throw error;
    throw new CliError(await explainConnectFailure(target, error, options.hint), options.exitCode);
  }
}

async function explainConnectFailure(
  target: Target,
  error: Error,
  hint = START_HINT,
): Promise<string> {
  const refused = certificateHint(error, target.url);
  if (refused) return `Cannot connect to ${target.url}: ${refused}.`;
  const health = await probeHealth(target.url);
  if (health === "down" && await speaksTls(target.url)) {
    return `The server at ${target.url} speaks TLS: use ${
      secureUrl(target.url)
    } (--url or CC_EXECUTOR_URL).`;
  }
  if (health === "down") {
    return `No cc-executor server at ${target.url}${
      target.source === "pid file" ? " (the recorded background server is not answering)" : ""
    }. ${hint}.`;
  }
  if (health === 401 || /401/.test(error.message)) {
    return `The server at ${target.url} refused the connection: ${
      target.token ? "the token was not accepted" : "it needs a token"
    }. Pass --token or set CC_EXECUTOR_TOKEN.`;
  }
  return error.message;
}

/** wss:// (or https://) in place of ws:// (or http://). */
export function secureUrl(url: string): string {
  const secure = new URL(url);
  secure.protocol = secure.protocol === "http:" ? "https:" : "wss:";
  return secure.href;
}

/**
 * Whether a TLS server answers at the plain `ws://` address `wsUrl`: one that says so once asked
 * over https, even with a certificate this process does not trust.
 */
export async function speaksTls(wsUrl: string): Promise<boolean> {
  if (new URL(wsUrl).protocol !== "ws:") return false;
  try {
    const response = await fetch(httpUrl(secureUrl(wsUrl), "/health"), {
      signal: AbortSignal.timeout(3000),
    });
    await response.body?.cancel();
    return true;
  } catch (error) {
    return certificateHint(error, wsUrl) !== null;
  }
}

/** "down" when nothing answers HTTP there; otherwise the status of GET /ws without upgrade. */
async function probeHealth(wsUrl: string): Promise<"down" | number> {
  try {
    const response = await fetch(httpUrl(wsUrl, new URL(wsUrl).pathname), {
      signal: AbortSignal.timeout(3000),
    });
    await response.body?.cancel();
    return response.status;
  } catch {
    return "down";
  }
}

/**
 * Runs a request and turns the server's refusals and a lost connection into CLI errors with
 * `exitCode`: they already say what is wrong (`Job "x" not found`). A method the server does not
 * know means it is older than this CLI, which the message adds.
 */
export async function rpc<T>(send: () => Promise<T>, exitCode = 1): Promise<T> {
  try {
    return await send();
  } catch (error) {
    if (error instanceof ExecutorRpcError && error.code === ErrorCode.METHOD_NOT_FOUND) {
      throw new CliError(
        `${error.message} (the server is older than this cc-executor ${VERSION})`,
        exitCode,
      );
    }
    if (error instanceof ExecutorRpcError || error instanceof ConnectionClosedError) {
      throw new CliError(error.message, exitCode);
    }
    throw error;
  }
}
