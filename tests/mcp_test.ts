/**
 * The MCP face through the SDK's own client: over stdio (spawning `main.ts mcp`, in-process and
 * with --url) and over Streamable HTTP (a real server's /mcp).
 */
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { ExecutorClient } from "../server/client.ts";
import { defaultConfig } from "../server/config.ts";
import { runCli } from "./cli_util.ts";
import { groupAlive, startTestServer, waitUntil } from "./test_util.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

const TOOLS = [
  "execute",
  "history_search",
  "job_cancel",
  "job_input",
  "job_output",
  "job_pause",
  "job_resume",
  "job_status",
  "job_wait",
];

/** An SDK client on `cc-executor mcp` over stdio; `args` are extra CLI arguments. */
async function stdioClient(
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<Client & AsyncDisposable> {
  const transport = new StdioClientTransport({
    command: Deno.execPath(),
    args: ["run", "-A", MAIN, "mcp", ...args],
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      CC_EXECUTOR_ENV_FILE: "/nonexistent/.env",
      CC_EXECUTOR_STATE_DIR: "/nonexistent/state",
      CC_EXECUTOR_DB: ":memory:",
      CC_EXECUTOR_KILL_GRACE_MS: "300",
      NO_COLOR: "1",
      ...env,
    },
    stderr: "pipe",
  });
  return await connected(transport);
}

/** An SDK client on a server's /mcp. */
async function httpClient(
  wsUrl: string,
  headers: Record<string, string> = {},
): Promise<Client & AsyncDisposable> {
  const url = new URL(wsUrl.replace(/^ws/, "http").replace(/\/ws$/, "/mcp"));
  return await connected(new StreamableHTTPClientTransport(url, { requestInit: { headers } }));
}

async function connected(
  transport: StdioClientTransport | StreamableHTTPClientTransport,
): Promise<Client & AsyncDisposable> {
  const client = new Client({ name: "cc-executor-test", version: "1.0.0" });
  await client.connect(transport);
  return Object.assign(client, { [Symbol.asyncDispose]: () => client.close() });
}

async function call(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  options: { onprogress?: (progress: { progress: number; message?: string }) => void } = {},
): Promise<CallToolResult & { text: string }> {
  const result = await client.callTool({ name, arguments: args }, undefined, {
    timeout: 120_000,
    onprogress: options.onprogress,
    resetTimeoutOnProgress: true,
  }) as CallToolResult;
  const text = result.content.map((part: { type: string; text?: string }) => part.text ?? "").join(
    "\n",
  );
  return { ...result, text };
}

/** 5.2 MB on stdout: 120,000 numbered lines, an error line in the middle, a last line. */
const FIVE_MB = "seq -f 'line %06g of the big output, about 5 MB.' 1 60000; " +
  "echo 'error: the disk is on fire'; " +
  "seq -f 'line %06g of the big output, about 5 MB.' 60001 120000; " +
  "echo 'the very last line'";

type Transport = "stdio" | "http";

/** An SDK client over `transport`, on an engine that sends progress every 200 ms. */
async function clientOver(transport: Transport): Promise<Client & AsyncDisposable> {
  if (transport === "stdio") return await stdioClient([], { CC_EXECUTOR_MCP_PROGRESS_MS: "200" });
  const server = await startTestServer({ mcp: { ...defaultConfig().mcp, progressMs: 200 } });
  try {
    const client = await httpClient(server.url);
    return Object.assign(client, {
      [Symbol.asyncDispose]: async () => {
        await client.close();
        await server.shutdown();
      },
    });
  } catch (error) {
    await server.shutdown();
    throw error;
  }
}

for (const transport of ["stdio", "http"] as const) {
  Deno.test(`mcp ${transport}: tools, a failing command, 5 MB shaped under the budget, paging`, async () => {
    await using client = await clientOver(transport);
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((tool: { name: string }) => tool.name).sort(), TOOLS);
    const execute = tools.find((tool: { name: string }) => tool.name === "execute")!;
    assert.ok(execute.description!.includes("process group"));
    assert.deepEqual(execute.inputSchema.required, ["command"]);

    const failing = await call(client, "execute", { command: "echo hello; echo oops >&2; exit 3" });
    assert.equal(failing.isError, true);
    assert.match(failing.text, /failed, exit 3/);
    assert.match(failing.text, /--- stdout ---\nhello/);
    assert.match(failing.text, /--- stderr ---\noops/);
    assert.equal((failing.structuredContent as { exit_code: number }).exit_code, 3);

    const progress: string[] = [];
    const big = await call(client, "execute", { command: `sleep 0.6; ${FIVE_MB}` }, {
      onprogress: (p) => progress.push(p.message ?? ""),
    });
    assert.equal(big.isError, undefined, big.text);
    const jobId = (big.structuredContent as { job_id: string }).job_id;
    // The default budget is 8000 tokens at 3 characters each.
    assert.ok(big.text.length <= 24_000, `result is ${big.text.length} characters`);
    assert.ok(big.text.length > 12_000, "the budget is used, not wasted");
    assert.match(big.text, /completed, exit 0/);
    assert.match(big.text, /line 000001 of the big output/);
    assert.match(big.text, /error: the disk is on fire/);
    assert.match(big.text, /the very last line/);
    assert.match(big.text, /not shown: 11\d,\d{3} line\(s\), 4\.\d MB of 4\.\d MB/);
    assert.match(big.text, /job_output/);
    assert.ok(progress.length >= 1, "progress notifications while the call waited");
    assert.match(progress[0]!, /running for \d+ s/);

    // The rest is there: raw text from an offset, and grep.
    const page = await call(client, "job_output", {
      job_id: jobId,
      stream: "stdout",
      offset: 2_500_000,
      max_tokens: 1000,
    });
    assert.match(page.text, /--- stdout, bytes 2,500,\d+-2,50\d,\d+ of 5,\d+,\d+/);
    assert.match(page.text, /More: job_output \{"job_id":".+","stream":"stdout","offset":\d+\}/);
    const grep = await call(client, "job_output", {
      job_id: jobId,
      grep: "disk is on fire|the very last",
      context_lines: 1,
    });
    assert.match(grep.text, /2 matching line\(s\) in all/);
    assert.match(
      grep.text,
      /line 060000 of the big output[^\n]*\nerror: the disk is on fire\nline 060001/,
    );
  });
}

Deno.test("mcp stdio: job_wait on a pattern, job_input, job_cancel kills the group", async () => {
  await using client = await stdioClient([], { CC_EXECUTOR_MCP_PROGRESS_MS: "200" });
  const started = await call(client, "execute", {
    command: "echo starting; sleep 0.9; echo 'ready on port 4321'; sleep 60",
    background: true,
  });
  const jobId = (started.structuredContent as { job_id: string }).job_id;
  assert.match(started.text, /in the background/);
  const boot = await call(client, "job_wait", { job_id: jobId, pattern: "^starting$" });
  assert.match(boot.text, /stdout line 1: starting/);
  // The wait is taken in 200 ms slices, each going on from the last: progress between them.
  // "starting" is behind it (new_output_only), so what matches is the port line.
  const beats: number[] = [];
  const waited = await call(client, "job_wait", {
    job_id: jobId,
    pattern: "ready on port (\\d+)|starting",
    new_output_only: true,
    timeout_seconds: 30,
  }, { onprogress: (p) => beats.push(p.progress) });
  assert.ok(beats.length >= 2, `progress: ${beats}`);
  assert.equal((waited.structuredContent as { reason: string }).reason, "matched");
  assert.match(waited.text, /matched after [\d.]+ s: stdout line 2: ready on port 4321/);
  const status = await call(client, "job_status", { job_id: jobId });
  assert.match(status.text, /running/);
  const paused = await call(client, "job_pause", { job_id: jobId });
  assert.match(paused.text, /paused$/);
  const resumed = await call(client, "job_resume", { job_id: jobId });
  assert.match(resumed.text, /running$/);

  const canceled = await call(client, "job_cancel", { job_id: jobId });
  assert.match(canceled.text, /the job ended \(canceled\)/);

  const chat = await call(client, "execute", {
    command: 'read line; echo "got $line"',
    keep_stdin_open: true,
    background: true,
  });
  const chatId = (chat.structuredContent as { job_id: string }).job_id;
  const wrote = await call(client, "job_input", { job_id: chatId, data: "hi there\n", eof: true });
  assert.match(wrote.text, /wrote 9 bytes/);
  const done = await call(client, "job_wait", { job_id: chatId, timeout_seconds: 30 });
  assert.match(done.text, /the job ended \(completed, exit 0\)/);
  assert.match(done.text, /got hi there/);

  // A wait that outlasts its patience says so, and the job runs on.
  const slow = await call(client, "execute", { command: "sleep 30", wait_seconds: 0.5 });
  assert.match(slow.text, /still running after 0.5 s; it continues in the background/);
  const slowId = (slow.structuredContent as { job_id: string }).job_id;
  const idle = await call(client, "job_wait", { job_id: slowId, idle_seconds: 0.3 });
  assert.equal((idle.structuredContent as { reason: string }).reason, "idle");
  await call(client, "job_cancel", { job_id: slowId });
});

for (const transport of ["stdio", "http"] as const) {
  Deno.test(`mcp ${transport}: invalid arguments get a clear error and the server keeps serving`, async () => {
    await using client = await clientOver(transport);
    const wrongType = await call(client, "execute", { command: 5 });
    assert.equal(wrongType.isError, true);
    assert.match(wrongType.text, /Invalid arguments for tool execute/);
    assert.match(wrongType.text, /command/);
    const badRegex = await call(client, "job_output", { job_id: "nope", grep: "(" });
    assert.equal(badRegex.isError, true);
    assert.match(badRegex.text, /grep: not a valid regular expression/);
    const twoModes = await call(client, "job_output", {
      job_id: "x",
      head_lines: 1,
      tail_lines: 1,
    });
    assert.match(twoModes.text, /give one of offset, head_lines, tail_lines or grep/);
    const missing = await call(client, "job_status", { job_id: "no-such-job" });
    assert.equal(missing.isError, true);
    assert.match(missing.text, /no-such-job/);
    const unknown = await client.callTool({ name: "rm_rf", arguments: {} }) as CallToolResult;
    assert.equal(unknown.isError, true);
    // Still serving.
    const ok = await call(client, "execute", { command: "echo still here" });
    assert.match(ok.text, /still here/);
  });
}

Deno.test("mcp http: same engine as /ws, history, resources, auth and origin", async () => {
  const token = "t".repeat(32);
  await using server = await startTestServer({ token });
  const unauthorized = await fetch(server.url.replace(/^ws/, "http").replace(/\/ws$/, "/mcp"), {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
  });
  assert.equal(unauthorized.status, 401);
  await unauthorized.body?.cancel();
  const fromPage = await fetch(server.url.replace(/^ws/, "http").replace(/\/ws$/, "/mcp"), {
    method: "POST",
    headers: { origin: "https://evil.example", authorization: `Bearer ${token}` },
    body: "{}",
  });
  assert.equal(fromPage.status, 403);
  assert.match((await fromPage.json()).error, /origin "https:\/\/evil.example" are not allowed/);

  await using client = await httpClient(server.url, { authorization: `Bearer ${token}` });
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((tool: { name: string }) => tool.name).sort(), TOOLS);
  // Stateless: no stream to hold open for server messages, and no session to end.
  for (const method of ["GET", "DELETE"]) {
    const refused = await fetch(server.url.replace(/^ws/, "http").replace(/\/ws$/, "/mcp"), {
      method,
      headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
    });
    assert.equal(refused.status, 405);
    assert.equal(refused.headers.get("allow"), "POST");
    await refused.body?.cancel();
  }

  await using ws = await ExecutorClient.connect(server.url, { token });
  const run = await call(client, "execute", {
    command: "echo from-mcp; sleep 0.2",
    job_id: "mcp-http-1",
  });
  assert.match(run.text, /from-mcp/);
  const listed = await ws.request("jobs.list", {});
  assert.ok(listed.jobs.some((job) => job.job_id === "mcp-http-1" && job.status === "completed"));
  const recorded = await waitUntil(async () => {
    const page = await ws.request("history.list", { search: "from-mcp" });
    return page.jobs.find((job) => job.job_id === "mcp-http-1");
  }, "the MCP job in history");
  assert.equal(recorded!.exit_code, 0);

  // A job started over WebSocket is followed over MCP.
  const outcome = await ws.execute({ command: "printf 'a\\nb\\nc\\n'", job_id: "ws-job" });
  assert.equal(outcome.exitCode, 0);
  const tail = await call(client, "job_output", { job_id: "ws-job", tail_lines: 2 });
  assert.match(tail.text, /--- stdout, lines 2-3 of 3 \(last lines\) ---\nb\nc/);
  const search = await call(client, "history_search", { query: "printf" });
  assert.match(search.text, /ws-job {2}completed, exit 0/);
  // structuredContent carries facts, not the listing: some clients show the model only it.
  assert.deepEqual(search.structuredContent, { count: 1, next_cursor: null });

  const { resources } = await client.listResources();
  assert.ok(resources.some((resource: { uri: string }) => resource.uri === "job://ws-job/output"));
  const read = await client.readResource({ uri: "job://ws-job/output" });
  assert.match(String(read.contents[0]!.text), /--- stdout ---\na\nb\nc/);

  // Cancel over MCP reaches the whole process group.
  const bg = await call(client, "execute", { command: "sleep 60 & sleep 60", background: true });
  const bgId = (bg.structuredContent as { job_id: string }).job_id;
  const info = await ws.request("jobs.get", { job_id: bgId });
  const canceled = await call(client, "job_cancel", { job_id: bgId });
  assert.match(canceled.text, /canceled/);
  assert.equal(groupAlive(info.pgid), false);
});

Deno.test("mcp stdio --url: jobs run on that server and show up in its jobs list", async () => {
  await using server = await startTestServer();
  await using client = await stdioClient(["--url", server.url]);
  const run = await call(client, "execute", { command: "echo remote", job_id: "via-url" });
  assert.match(run.text, /remote/);
  assert.equal(server.jobs.get("via-url").status, "completed");
  // A server that is not there is reported at start, on stderr, with exit 1: not on the first call.
  const missing = await runCli(["mcp", "--url", "ws://127.0.0.1:9/ws"], { stdin: "" });
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.stderr, /No cc-executor server at ws:\/\/127\.0\.0\.1:9\/ws/);
  assert.equal(missing.stdout, "", "nothing but MCP messages ever goes to stdout");
});
