import assert from "node:assert/strict";
import { VERSION } from "../server/version.ts";
import { RawClient, startTestServer } from "./test_util.ts";

Deno.test("protocol: connecting sends `connected` with the session id, version and capabilities", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const connected = client.frames[0];
  assert.equal(connected.method, "connected");
  assert.equal(connected.id, undefined);
  assert.match(connected.params.session_id, /^[0-9a-f-]{36}$/);
  assert.equal(connected.params.version, VERSION);
  assert.ok(connected.params.capabilities.methods.includes("execute"));
  assert.ok(connected.params.capabilities.notifications.includes("process.completed"));
});

Deno.test("protocol: /ws/mcp is an alias of /ws for clients of the earlier cc_executor", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url.replace(/\/ws$/, "/ws/mcp"));
  const { job_id } = await client.result("execute", { command: "echo legacy" });
  await client.completion(job_id);
  assert.equal(client.output(job_id), "legacy\n");
});

Deno.test("protocol: malformed frames of every kind get the right error and the session survives", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  const cases: [string | Uint8Array, number, unknown][] = [
    ["{not json", -32700, null],
    ["", -32700, null],
    [new TextEncoder().encode('{"jsonrpc":"2.0","id":1,"method":"ping"}'), -32700, null], // binary frame
    ["[]", -32600, null],
    ["42", -32600, null],
    ['{"jsonrpc":"1.0","id":"v","method":"ping"}', -32600, "v"],
    ['{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', -32600, null],
    ['{"jsonrpc":"2.0","id":9,"method":7}', -32600, 9],
    ['{"jsonrpc":"2.0","id":10,"method":"rm -rf"}', -32601, 10],
    ['{"jsonrpc":"2.0","id":11,"method":"execute","params":{}}', -32602, 11],
    ['{"jsonrpc":"2.0","id":12,"method":"execute","params":["ls"]}', -32602, 12],
    [
      '{"jsonrpc":"2.0","id":13,"method":"execute","params":{"command":"ls","timeout":-1}}',
      -32602,
      13,
    ],
    [
      '{"jsonrpc":"2.0","id":14,"method":"execute","params":{"command":"ls","bogus":1}}',
      -32602,
      14,
    ],
    [
      '{"jsonrpc":"2.0","id":15,"method":"execute","params":{"command":"ls","env":{"A=B":"c"}}}',
      -32602,
      15,
    ],
  ];
  for (const [text, code, id] of cases) {
    const before = client.frames.length;
    client.sendText(text);
    const response = await client.waitFor(
      (f) => client.frames.indexOf(f) >= before && "error" in f,
      `the error for ${String(text)}`,
    );
    assert.equal(response.error.code, code, String(text));
    assert.equal(response.id, id, String(text));
    assert.equal(response.jsonrpc, "2.0");
    assert.equal(typeof response.error.message, "string");
  }
  const invalid = client.frames.find((f) => f.id === 11);
  assert.deepEqual(invalid.error.data.issues[0].path, "command");
  assert.equal((await client.result("ping", {})).pong, true, "the session is still usable");
});

Deno.test("protocol: notifications get no response; batches get one array", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  client.sendText('{"jsonrpc":"2.0","method":"ping"}');
  client.sendText('{"jsonrpc":"2.0","method":"no.such"}');
  client.sendText('{"jsonrpc":"2.0","method":"pong"}');
  client.sendText(JSON.stringify([
    { jsonrpc: "2.0", id: "a", method: "ping" },
    { jsonrpc: "2.0", method: "ping" },
    { jsonrpc: "2.0", id: "b", method: "jobs.get", params: { job_id: "ghost" } },
  ]));
  const batch = await client.waitFor((f) => Array.isArray(f), "the batch response");
  assert.equal(batch.length, 2);
  const byId = Object.fromEntries(batch.map((r: { id: string }) => [r.id, r]));
  assert.equal(byId.a.result.pong, true);
  assert.equal(byId.b.error.code, -32001);
  await client.result("ping", {});
  const answers = client.frames.filter((f) => f.method !== "connected");
  assert.equal(answers.length, 2, "only the batch and the last ping were answered");
});

Deno.test("protocol: a batch can start several jobs at once", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  client.sendText(JSON.stringify([
    { jsonrpc: "2.0", id: 1, method: "execute", params: { command: "echo one", job_id: "b1" } },
    { jsonrpc: "2.0", id: 2, method: "execute", params: { command: "echo two", job_id: "b2" } },
  ]));
  await client.completion("b1");
  await client.completion("b2");
  assert.equal(client.output("b1"), "one\n");
  assert.equal(client.output("b2"), "two\n");
  const batchAt = client.frames.findIndex((f) => Array.isArray(f));
  const firstEvent = client.frames.findIndex((f) => f.method === "process.started");
  assert.ok(batchAt < firstEvent, "the batch response comes before the jobs' notifications");
});

Deno.test("http: /health reports status, version, uptime, sessions and running jobs", async () => {
  await using server = await startTestServer();
  await using client = await RawClient.connect(server.url);
  await client.result("execute", { command: "sleep 30" });
  const url = `http://${server.addr.hostname}:${server.addr.port}`;
  const response = await fetch(`${url}/health`);
  assert.equal(response.status, 200);
  const health = await response.json();
  assert.equal(health.status, "ok");
  assert.equal(health.version, VERSION);
  assert.equal(health.sessions, 1);
  assert.equal(health.running_jobs, 1);
  assert.equal(typeof health.uptime_ms, "number");
  await client.result("control", { type: "CANCEL" });
});

Deno.test("http: unknown paths are 404 and /ws without an upgrade is 426", async () => {
  await using server = await startTestServer();
  const url = `http://${server.addr.hostname}:${server.addr.port}`;
  const missing = await fetch(`${url}/nope`);
  assert.equal(missing.status, 404);
  assert.deepEqual((await missing.json()).endpoints, ["/ws", "/ws/mcp", "/mcp", "/health"]);
  const plain = await fetch(`${url}/ws`);
  assert.equal(plain.status, 426);
  assert.match((await plain.json()).error, /JSON-RPC 2.0 over WebSocket/);
});

Deno.test("auth: with a token set, /ws needs it and /health does not", async () => {
  const token = "test-token-0123456789";
  await using server = await startTestServer({ token });
  const url = `http://${server.addr.hostname}:${server.addr.port}`;
  const anonymous = await fetch(`${url}/ws`, { headers: { upgrade: "websocket" } });
  assert.equal(anonymous.status, 401);
  await anonymous.body?.cancel();
  const wrong = await fetch(`${url}/ws`, {
    headers: { authorization: "Bearer wrong-token-000000000" },
  });
  assert.equal(wrong.status, 401);
  await wrong.body?.cancel();
  assert.equal((await fetch(`${url}/health`).then((r) => r.json())).status, "ok");
  await assert.rejects(RawClient.connect(server.url));
  await using client = await RawClient.connect(server.url, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal((await client.result("ping", {})).pong, true);
});

Deno.test("origin: a browser origin not allowed gets 403 on /ws; an allowed one connects", async () => {
  await using server = await startTestServer({ allowedOrigins: ["http://localhost:3000"] });
  const url = `http://${server.addr.hostname}:${server.addr.port}`;
  const refused = await fetch(`${url}/ws`, { headers: { origin: "https://evil.example" } });
  assert.equal(refused.status, 403);
  assert.match((await refused.json()).error, /origin "https:\/\/evil.example" are not allowed/);
  const hijack = new WebSocket(server.url, { headers: { origin: "https://evil.example" } });
  const closed = await new Promise<CloseEvent>((resolve) => (hijack.onclose = resolve));
  assert.equal(closed.wasClean, false);
  const allowed = new WebSocket(server.url, { headers: { origin: "http://localhost:3000" } });
  const hello = await new Promise<MessageEvent>((resolve) => (allowed.onmessage = resolve));
  assert.equal(JSON.parse(hello.data).method, "connected");
  allowed.close();
  await new Promise((resolve) => (allowed.onclose = resolve));
});

Deno.test("auth: a browser sends the token as a subprotocol and gets cc-executor back", async () => {
  const token = "browser-token-0123456789";
  await using server = await startTestServer({ token });
  const open = (protocols: string[]) =>
    new Promise<WebSocket | CloseEvent>((resolve) => {
      const socket = new WebSocket(server.url, protocols);
      socket.onmessage = () => resolve(socket);
      socket.onclose = (event) => resolve(event);
    });
  const ok = await open(["cc-executor", `cc-executor.bearer.${token}`]);
  assert.ok(ok instanceof WebSocket, "connected");
  assert.equal(ok.protocol, "cc-executor", "the token is never echoed back");
  const closed = new Promise((resolve) => (ok.onclose = resolve));
  ok.close();
  await closed;
  const wrong = await open(["cc-executor", "cc-executor.bearer.wrong-token-0123456789"]);
  assert.ok(!(wrong instanceof WebSocket), "a wrong token is refused");

  const unknown = await upgradeRequest(server, {
    authorization: `Bearer ${token}`,
    "sec-websocket-protocol": "graphql-ws",
  });
  assert.equal(unknown.status, 400);
  assert.match((await unknown.json()).error, /offer "cc-executor"/);
});

Deno.test("limits: message size, sessions and jobs per connection each get a clear error", async () => {
  await using server = await startTestServer({
    maxMessageBytes: 4096,
    maxSessions: 2,
    maxJobsPerSession: 1,
  });
  await using client = await RawClient.connect(server.url);
  const info = await client.result("server.info", {});
  assert.equal(info.limits.max_message_bytes, 4096);
  assert.equal(info.limits.max_sessions, 2);
  assert.equal(info.limits.max_jobs_per_session, 1);

  // Over the message limit: -32600 naming the setting; the connection goes on.
  client.socket.send(JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "execute",
    params: { command: "x".repeat(5000) },
  }));
  const big = await client.waitFor((f) => f.error?.code === -32600, "the -32600");
  assert.match(big.error.message, /over the limit of 4096 bytes \(CC_EXECUTOR_MAX_MESSAGE_BYTES\)/);
  assert.deepEqual(big.error.data, { limit: 4096 });

  // One job per connection: the second is refused while the first runs; another connection may.
  const first = await client.result("execute", { command: "sleep 30" });
  const second = await client.call("execute", { command: "true" });
  assert.equal(second.error?.code, -32003);
  assert.match(second.error.message, /this connection has 1 jobs running/);
  assert.equal(second.error.data.scope, "session");
  await using other = await RawClient.connect(server.url);
  const elsewhere = await other.result("execute", { command: "true" });
  await other.completion(elsewhere.job_id);

  // Two sessions are open: a third is refused with 503.
  const third = await upgradeRequest(server);
  assert.equal(third.status, 503);
  assert.match((await third.json()).error, /limit \(CC_EXECUTOR_MAX_SESSIONS\)/);
  await client.result("control", { type: "CANCEL", job_id: first.job_id });
});

/** A WebSocket upgrade request to /ws sent with fetch, to see the HTTP answer to a refused one. */
function upgradeRequest(
  server: { addr: Deno.NetAddr },
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`http://${server.addr.hostname}:${server.addr.port}/ws`, {
    headers: {
      upgrade: "websocket",
      connection: "upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
      ...headers,
    },
  });
}
