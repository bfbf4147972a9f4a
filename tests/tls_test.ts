/**
 * TLS (CC_EXECUTOR_TLS_CERT and CC_EXECUTOR_TLS_KEY): a throwaway CA and a server certificate
 * made with openssl at test time, a real server serving HTTPS and WSS with them, and clients that
 * trust the CA (the typed client's `caCerts`, fetch with Deno.createHttpClient, the CLI and
 * `mcp --url` as subprocesses with DENO_CERT).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { ConnectionClosedError, ExecutorClient } from "../server/client.ts";
import { ConfigError, loadConfig } from "../server/config.ts";
import { settlesWithin } from "../server/deadline.ts";
import { ServerStartError } from "../server/server.ts";
import { certificateHint, readTlsFiles, type TlsConfig } from "../server/tls.ts";
import { cliCommand, runCli, tempStateDir } from "./cli_util.ts";
import { startTestServer } from "./test_util.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

interface Pki {
  dir: string;
  /** The CA's certificate: what clients trust. */
  ca: string;
  caFile: string;
  /** Signed by the CA for IP:127.0.0.1 and DNS:localhost. */
  certFile: string;
  /** Its key, mode 600. */
  keyFile: string;
  /** A key of no certificate here, mode 600. */
  otherKeyFile: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const { code, stderr } = await new Deno.Command("openssl", {
    args,
    cwd,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(stderr)}`);
  }
}

/** A CA, and a server certificate it signed; EC P-256 keys, quick to make. */
async function makePki(): Promise<Pki> {
  const dir = Deno.makeTempDirSync({ prefix: "cc-executor-tls-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=cc-executor test CA",
    ],
    dir,
  );
  await openssl(
    ["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
    dir,
  );
  Deno.writeTextFileSync(join(dir, "san.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await openssl(
    ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
      .concat(["-out", "server.pem", "-days", "2", "-extfile", "san.cnf"]),
    dir,
  );
  await openssl(
    ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "other.key"],
    dir,
  );
  for (const key of ["ca.key", "server.key", "other.key"]) Deno.chmodSync(join(dir, key), 0o600);
  const caFile = join(dir, "ca.pem");
  return {
    dir,
    ca: Deno.readTextFileSync(caFile),
    caFile,
    certFile: join(dir, "server.pem"),
    keyFile: join(dir, "server.key"),
    otherKeyFile: join(dir, "other.key"),
  };
}

const pki = await makePki();
globalThis.addEventListener("unload", () => Deno.removeSync(pki.dir, { recursive: true }));

const tls = (): TlsConfig => readTlsFiles(pki.certFile, pki.keyFile)!;

/** The CLI's environment for a server with this test's certificate. */
const tlsEnv = { CC_EXECUTOR_TLS_CERT: pki.certFile, CC_EXECUTOR_TLS_KEY: pki.keyFile };

Deno.test("tls: /health over https, and the typed client runs a command over wss://", async () => {
  await using server = await startTestServer({ tls: tls() });
  assert.match(server.url, /^wss:\/\/127\.0\.0\.1:\d+\/ws$/);
  const port = server.addr.port;

  using http = Deno.createHttpClient({ caCerts: [pki.ca] });
  const response = await fetch(`https://127.0.0.1:${port}/health`, { client: http });
  assert.equal(response.status, 200);
  const health = await response.json();
  assert.equal(health.status, "ok");
  assert.equal(health.tls, true);

  await using client = await ExecutorClient.connect(server.url, { caCerts: [pki.ca], token: "" });
  const result = await client.execute({ command: "echo hi over wss" });
  assert.equal(result.exitCode, 0);
  assert.equal(result.stdout, "hi over wss\n");

  // The certificate names localhost too.
  await using byName = await ExecutorClient.connect(`wss://localhost:${port}/ws`, {
    caCerts: [pki.ca],
    token: "",
  });
  assert.equal((await byName.execute({ command: "echo by name" })).stdout, "by name\n");
});

Deno.test("tls: plain ws:// and http:// to the TLS port fail, and so does wss:// without the CA", async () => {
  await using server = await startTestServer({ tls: tls() });
  const port = server.addr.port;
  await assert.rejects(fetch(`http://127.0.0.1:${port}/health`), TypeError);
  await assert.rejects(
    ExecutorClient.connect(`ws://127.0.0.1:${port}/ws`, { token: "" }),
    ConnectionClosedError,
  );
  // Not trusting the CA is refused: the certificate really is checked.
  await assert.rejects(
    ExecutorClient.connect(server.url, { token: "" }),
    (error: Error) => error instanceof ConnectionClosedError && /certificate/i.test(error.message),
  );
  await assert.rejects(fetch(`https://127.0.0.1:${port}/health`), TypeError);
  assert.equal(server.jobs.runningCount, 0);
});

Deno.test("tls: a token is still required over wss://; /health is not", async () => {
  const token = "a-token-of-sixteen-plus";
  await using server = await startTestServer({ tls: tls(), token });
  using http = Deno.createHttpClient({ caCerts: [pki.ca] });
  const health = await fetch(`https://127.0.0.1:${server.addr.port}/health`, { client: http });
  assert.equal(health.status, 200);
  await health.body?.cancel();
  // Over TLS the WebSocket handshake goes over HTTP/2, where a refusal is a stream error: the
  // status shows on a plain request, and the CLI says what it means.
  await assert.rejects(
    ExecutorClient.connect(server.url, { caCerts: [pki.ca], token: "" }),
    ConnectionClosedError,
  );
  const refused = await fetch(`https://127.0.0.1:${server.addr.port}/ws`, { client: http });
  assert.equal(refused.status, 401);
  await refused.body?.cancel();
  const cli = await runCli(["run", "--url", server.url, "echo never"], {
    env: { DENO_CERT: pki.caFile },
  });
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr, /refused the connection: it needs a token/);
  await using client = await ExecutorClient.connect(server.url, { caCerts: [pki.ca], token });
  assert.equal((await client.execute({ command: "echo authorized" })).stdout, "authorized\n");
});

Deno.test("tls: shutdown completes while a peer holds a TLS handshake it never finishes", async () => {
  const server = await startTestServer({ tls: tls() });
  using http = Deno.createHttpClient({ caCerts: [pki.ca] });
  const health = await fetch(`https://127.0.0.1:${server.addr.port}/health`, { client: http });
  await health.body?.cancel();
  // The first bytes of a TLS record, then nothing: the handshake stays open for as long as the
  // peer does, and Deno's graceful shutdown waited for it. (The pause lets the server take the
  // connection up; without it the test could pass without a fix, never fail with one.)
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  await idle.write(new Uint8Array([0x16, 0x03, 0x01]));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const stopped = server.shutdown();
  try {
    assert.ok(
      await settlesWithin(stopped, 60_000),
      "shutdown ends without waiting for the peer to leave",
    );
    assert.ok(await settlesWithin(server.finished, 60_000), "and the server stopped listening");
  } finally {
    idle.close();
    await stopped;
  }
});

Deno.test("tls: /mcp over https", async () => {
  await using server = await startTestServer({ tls: tls() });
  using http = Deno.createHttpClient({ caCerts: [pki.ca] });
  const transport = new StreamableHTTPClientTransport(
    new URL(`https://127.0.0.1:${server.addr.port}/mcp`),
    { fetch: (url: string | URL, init?: RequestInit) => fetch(url, { ...init, client: http }) },
  );
  const client = new Client({ name: "cc-executor-tls-test", version: "1.0.0" });
  await client.connect(transport);
  try {
    const result = await client.callTool({
      name: "execute",
      arguments: { command: "echo mcp over https", job_id: "mcp-https" },
    }) as CallToolResult;
    const text = result.content.map((part: { text?: string }) => part.text ?? "").join("\n");
    assert.match(text, /mcp over https/);
    assert.equal(server.jobs.get("mcp-https").status, "completed");
  } finally {
    await client.close();
  }
});

Deno.test("tls: the CLI (run, server status, mcp --url) talks wss:// with DENO_CERT", async () => {
  await using server = await startTestServer({ tls: tls() });
  const trusted = { DENO_CERT: pki.caFile };

  const run = await runCli(["run", "--url", server.url, "echo cli over wss"], { env: trusted });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, "cli over wss\n");

  const status = await runCli(["server", "status", "--url", server.url, "--json"], {
    env: trusted,
  });
  assert.equal(status.code, 0, status.stderr);
  const report = JSON.parse(status.stdout);
  assert.equal(report.status, "up");
  assert.equal(report.url, server.url);
  assert.equal(report.pid, Deno.pid);

  // Without the CA the CLI says what to do, and a ws:// address says to use wss://.
  const untrusted = await runCli(["run", "--url", server.url, "echo never"]);
  assert.notEqual(untrusted.code, 0);
  assert.match(untrusted.stderr, /certificate is not trusted here.*DENO_CERT=/);
  const plain = server.url.replace(/^wss:/, "ws:");
  const wrongScheme = await runCli(["run", "--url", plain, "echo never"], { env: trusted });
  assert.notEqual(wrongScheme.code, 0);
  assert.match(wrongScheme.stderr, /speaks TLS: use wss:\/\/127\.0\.0\.1/);
  // Without --url, the local default address is wss:// when CC_EXECUTOR_TLS_CERT is set.
  const byDefault = await runCli(["run", "echo default address"], {
    env: { ...tlsEnv, ...trusted, CC_EXECUTOR_PORT: String(server.addr.port) },
  });
  assert.equal(byDefault.code, 0, byDefault.stderr);
  assert.equal(byDefault.stdout, "default address\n");
  const statusUntrusted = await runCli(["server", "status", "--url", server.url]);
  assert.equal(statusUntrusted.code, 1);
  assert.match(statusUntrusted.stdout, /a TLS server answers at .*DENO_CERT=/);

  const transport = new StdioClientTransport({
    command: Deno.execPath(),
    args: ["run", "-A", MAIN, "mcp", "--url", server.url],
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      CC_EXECUTOR_ENV_FILE: "/nonexistent/.env",
      CC_EXECUTOR_STATE_DIR: "/nonexistent/state",
      NO_COLOR: "1",
      ...trusted,
    },
    stderr: "pipe",
  });
  const mcp = new Client({ name: "cc-executor-tls-test", version: "1.0.0" });
  await mcp.connect(transport);
  try {
    const result = await mcp.callTool({
      name: "execute",
      arguments: { command: "echo mcp via wss", job_id: "mcp-wss" },
    }) as CallToolResult;
    const text = result.content.map((part: { text?: string }) => part.text ?? "").join("\n");
    assert.match(text, /mcp via wss/);
    assert.equal(server.jobs.get("mcp-wss").status, "completed");
  } finally {
    await mcp.close();
  }
});

Deno.test("tls: server start --detach with TLS reports wss://; status and stop find it", async () => {
  const state = tempStateDir();
  const env = { ...tlsEnv, CC_EXECUTOR_STATE_DIR: state, CC_EXECUTOR_KILL_GRACE_MS: "300" };
  try {
    // The CLI that starts it does not trust the CA: the server's readiness still shows.
    const started = await runCli(["server", "start", "--detach", "--port", "0"], { env });
    assert.equal(started.code, 0, started.stderr);
    const url = /listening on (wss:\/\/127\.0\.0\.1:\d+\/ws)/.exec(started.stdout)?.[1];
    assert.ok(url, started.stdout);
    assert.match(Deno.readTextFileSync(join(state, "server.log")), /listening on wss:\/\//);

    // Found through the pid file.
    const status = await runCli(["server", "status", "--json"], {
      env: { ...env, DENO_CERT: pki.caFile },
    });
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).url, url);
    const run = await runCli(["run", "echo detached over wss"], {
      env: { ...env, DENO_CERT: pki.caFile },
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "detached over wss\n");
  } finally {
    const stopped = await runCli(["server", "stop"], { env });
    Deno.removeSync(state, { recursive: true });
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stdout, /cc-executor stopped/);
  }
});

Deno.test("tls: a detached server bound to 0.0.0.0 is recorded at 127.0.0.1, which its certificate names; another name gets its own hint", async () => {
  const state = tempStateDir();
  const token = "a-token-of-sixteen-plus";
  const env = {
    ...tlsEnv,
    CC_EXECUTOR_STATE_DIR: state,
    CC_EXECUTOR_KILL_GRACE_MS: "300",
    CC_EXECUTOR_TOKEN: token,
  };
  const trusted = { ...env, DENO_CERT: pki.caFile };
  try {
    const started = await runCli([
      "server",
      "start",
      "--detach",
      "--host",
      "0.0.0.0",
      "--port",
      "0",
    ], {
      env,
    });
    assert.equal(started.code, 0, started.stderr);
    assert.match(
      started.stdout,
      /listening on wss:\/\/127\.0\.0\.1:\d+\/ws \(bound to 0\.0\.0\.0\)/,
    );
    const record = JSON.parse(Deno.readTextFileSync(join(state, "server.pid")));
    assert.match(record.url, /^wss:\/\/127\.0\.0\.1:\d+\/ws$/);
    assert.equal(record.host, "0.0.0.0");

    const run = await runCli(["run", "echo through the record"], { env: trusted });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "through the record\n");

    // The CA is trusted; the name is what is wrong, so DENO_CERT is not what to change.
    const anyAddress = record.url.replace("127.0.0.1", "0.0.0.0");
    const misnamed = await runCli(["run", "--url", anyAddress, "echo never"], { env: trusted });
    assert.notEqual(misnamed.code, 0);
    assert.match(
      misnamed.stderr,
      /the server's TLS certificate does not name 0\.0\.0\.0 \(it names 127\.0\.0\.1, localhost\): use a URL with a name it lists/,
    );
    assert.doesNotMatch(misnamed.stderr, /DENO_CERT|not trusted/);
    const status = await runCli(["server", "status", "--url", anyAddress], { env: trusted });
    assert.equal(status.code, 1);
    assert.match(status.stdout, /a TLS server answers at .*does not name 0\.0\.0\.0/);

    // A restart keeps the bind, not the address it is recorded at.
    const restarted = await runCli(["server", "restart"], { env });
    assert.equal(restarted.code, 0, restarted.stderr);
    const after = JSON.parse(Deno.readTextFileSync(join(state, "server.pid")));
    assert.notEqual(after.pid, record.pid);
    assert.equal(after.host, "0.0.0.0");
    assert.match(after.url, /^wss:\/\/127\.0\.0\.1:\d+\/ws$/);
  } finally {
    const stopped = await runCli(["server", "stop"], { env });
    Deno.removeSync(state, { recursive: true });
    assert.equal(stopped.code, 0, stopped.stderr);
  }
});

Deno.test("tls: certificateHint tells a certificate naming another host from an untrusted one", () => {
  const url = "wss://0.0.0.0:8003/ws";
  // rustls before the names were listed.
  assert.equal(
    certificateHint(new Error("invalid peer certificate: NotValidForName"), url),
    "the server's TLS certificate does not name 0.0.0.0: use a URL with a name it lists",
  );
  assert.equal(
    certificateHint(
      new TypeError("fetch failed", {
        cause: new Error("invalid peer certificate: UnknownIssuer"),
      }),
      url,
    ),
    "the server's TLS certificate is not trusted here: for a certificate signed by a private CA, " +
      "set DENO_CERT=/path/to/ca.pem (the CA's PEM file) and retry",
  );
  assert.match(
    certificateHint(new Error("invalid peer certificate: NotValidForName"), "wss://[::]:1/ws")!,
    /does not name ::/,
  );
  assert.equal(certificateHint(new Error("Connection refused"), url), null);
});

Deno.test("tls: configuration needs both files, readable, PEM, and a key only its owner may read", () => {
  const refused = (env: Record<string, string>, variable: string, message: RegExp) => {
    assert.throws(
      () => loadConfig({ env, envFile: null }),
      (error: Error) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.equal(error.variable, variable);
        assert.match(error.message, message);
        return true;
      },
    );
  };
  const config = loadConfig({ env: tlsEnv, envFile: null });
  assert.equal(config.tls?.certFile, pki.certFile);
  assert.match(config.tls?.key ?? "", /PRIVATE KEY/);
  assert.equal(loadConfig({ env: {}, envFile: null }).tls, null);

  refused(
    { CC_EXECUTOR_TLS_CERT: pki.certFile },
    "CC_EXECUTOR_TLS_KEY",
    /CC_EXECUTOR_TLS_CERT is set but CC_EXECUTOR_TLS_KEY is not/,
  );
  refused(
    { CC_EXECUTOR_TLS_KEY: pki.keyFile },
    "CC_EXECUTOR_TLS_CERT",
    /CC_EXECUTOR_TLS_KEY is set but CC_EXECUTOR_TLS_CERT is not/,
  );
  refused(
    { ...tlsEnv, CC_EXECUTOR_TLS_CERT: join(pki.dir, "missing.pem") },
    "CC_EXECUTOR_TLS_CERT",
    /CC_EXECUTOR_TLS_CERT=".*missing\.pem": cannot read it/,
  );
  refused(
    { ...tlsEnv, CC_EXECUTOR_TLS_CERT: pki.keyFile },
    "CC_EXECUTOR_TLS_CERT",
    /holds no PEM certificate/,
  );
  const certAsKey = join(pki.dir, "cert-as.key");
  Deno.copyFileSync(pki.certFile, certAsKey);
  Deno.chmodSync(certAsKey, 0o600);
  refused(
    { ...tlsEnv, CC_EXECUTOR_TLS_KEY: certAsKey },
    "CC_EXECUTOR_TLS_KEY",
    /holds no PEM private key/,
  );
  const shared = join(pki.dir, "shared.key");
  Deno.copyFileSync(pki.keyFile, shared);
  for (const mode of [0o644, 0o640, 0o604]) {
    Deno.chmodSync(shared, mode);
    refused(
      { ...tlsEnv, CC_EXECUTOR_TLS_KEY: shared },
      "CC_EXECUTOR_TLS_KEY",
      new RegExp(`other users may read this private key \\(mode ${mode.toString(8)}\\)`),
    );
  }
});

Deno.test("tls: a key that is not the certificate's stops the start, naming the variable", async () => {
  await assert.rejects(
    startTestServer({ tls: readTlsFiles(pki.certFile, pki.otherKeyFile)! }),
    (error: Error) => {
      assert.ok(error instanceof ServerStartError, String(error));
      assert.match(
        error.message,
        /^Cannot start TLS: CC_EXECUTOR_TLS_KEY=".*other\.key" is not the private key of the certificate in CC_EXECUTOR_TLS_CERT=/,
      );
      return true;
    },
  );
});

Deno.test("tls: server start refuses a half or unsafe TLS setup with one line, no stack trace", async () => {
  /** The start's stderr; a server that starts after all is stopped and fails the test. */
  const line = async (env: Record<string, string>) => {
    const child = cliCommand(["server", "start", "--port", "0"], {
      env: { LOG_LEVEL: "warn", ...env },
      cwd: pki.dir,
      stdout: "null",
    }).spawn();
    let stderr = "";
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += text;
      if (/listening on/.test(stderr)) child.kill("SIGTERM");
    }
    const { code } = await child.status;
    assert.doesNotMatch(stderr, /listening on/, "the server must not start");
    assert.equal(code, 1, stderr);
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
    return stderr.trim();
  };
  assert.equal(
    await line({ CC_EXECUTOR_TLS_CERT: pki.certFile }),
    "cc-executor: Invalid configuration: CC_EXECUTOR_TLS_CERT is set but CC_EXECUTOR_TLS_KEY is " +
      "not: TLS needs both the certificate and its private key",
  );
  const shared = join(pki.dir, "world-readable.key");
  Deno.copyFileSync(pki.keyFile, shared);
  Deno.chmodSync(shared, 0o644);
  assert.equal(
    await line({ ...tlsEnv, CC_EXECUTOR_TLS_KEY: shared }),
    `cc-executor: Invalid configuration: CC_EXECUTOR_TLS_KEY=${
      JSON.stringify(shared)
    }: other users may read this private key (mode 644); run chmod 600 on it`,
  );
  assert.match(
    await line({ ...tlsEnv, CC_EXECUTOR_TLS_KEY: pki.otherKeyFile }),
    /^cc-executor: Cannot start TLS: CC_EXECUTOR_TLS_KEY=".*other\.key" is not the private key/,
  );
});
