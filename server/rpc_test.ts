import assert from "node:assert/strict";
import { z } from "zod";
import { ErrorCode, RpcError } from "./protocol.ts";
import { createRpcHandler } from "./rpc.ts";

const internalErrors: unknown[] = [];
const calls: string[] = [];
const handle = createRpcHandler<{ user: string }>({
  add: {
    params: z.strictObject({ a: z.number(), b: z.number() }),
    handler: (p: { a: number; b: number }) => p.a + p.b,
  },
  whoami: { params: z.object({}), handler: (_p: unknown, ctx) => ctx.user },
  record: {
    params: z.object({ note: z.string() }),
    handler: (p: { note: string }) => void calls.push(p.note),
  },
  refuse: {
    params: z.object({}),
    handler: () => {
      throw new RpcError(ErrorCode.JOB_NOT_FOUND, 'Job "x" not found', { job_id: "x" });
    },
  },
  crash: {
    params: z.object({}),
    handler: () => {
      throw new TypeError("secret internals");
    },
  },
  slow: {
    params: z.object({ ms: z.number() }),
    handler: async (p: { ms: number }) => {
      await new Promise((r) => setTimeout(r, p.ms));
      return p.ms;
    },
  },
}, { onInternalError: (error) => internalErrors.push(error) });

const ctx = { user: "ada" };
const call = async (message: unknown) => {
  const text = typeof message === "string" ? message : JSON.stringify(message);
  const out = await handle(text, ctx);
  return out === undefined ? undefined : JSON.parse(out);
};

Deno.test("rpc: a request gets its result under its own id", async () => {
  assert.deepEqual(await call({ jsonrpc: "2.0", id: 7, method: "add", params: { a: 2, b: 3 } }), {
    jsonrpc: "2.0",
    id: 7,
    result: 5,
  });
  assert.deepEqual(await call({ jsonrpc: "2.0", id: "s", method: "whoami" }), {
    jsonrpc: "2.0",
    id: "s",
    result: "ada",
  });
});

Deno.test("rpc: a handler returning nothing answers null, and a null id is echoed", async () => {
  assert.deepEqual(
    await call({ jsonrpc: "2.0", id: null, method: "record", params: { note: "n" } }),
    {
      jsonrpc: "2.0",
      id: null,
      result: null,
    },
  );
});

Deno.test("rpc: notifications are served but never answered, not even with errors", async () => {
  calls.length = 0;
  assert.equal(
    await call({ jsonrpc: "2.0", method: "record", params: { note: "seen" } }),
    undefined,
  );
  assert.deepEqual(calls, ["seen"]);
  assert.equal(await call({ jsonrpc: "2.0", method: "no.such.method" }), undefined);
  assert.equal(await call({ jsonrpc: "2.0", method: "add", params: { a: "x" } }), undefined);
  internalErrors.length = 0;
  assert.equal(await call({ jsonrpc: "2.0", method: "crash" }), undefined);
  assert.equal(
    internalErrors.length,
    1,
    "an internal error in a notification is still reported to the server log",
  );
});

Deno.test("rpc: unparseable JSON is -32700 with id null", async () => {
  for (const text of ["{", "garbage", '{"jsonrpc":"2.0",', ""]) {
    const response = await call(text);
    assert.equal(response.error.code, ErrorCode.PARSE_ERROR, text);
    assert.equal(response.id, null);
    assert.match(response.error.message, /not valid JSON/);
  }
});

Deno.test("rpc: a message that is not a request object is -32600 with id null", async () => {
  for (const text of ["42", '"text"', "null", "true", '{"foo":1}']) {
    const response = await call(text);
    assert.equal(response.error.code, ErrorCode.INVALID_REQUEST, text);
    assert.equal(response.id, null);
  }
});

Deno.test("rpc: a malformed request keeps its id when the id itself is valid", async () => {
  const noVersion = await call({ id: 3, method: "add", params: { a: 1, b: 1 } });
  assert.equal(noVersion.error.code, ErrorCode.INVALID_REQUEST);
  assert.equal(noVersion.id, 3);
  const badVersion = await call({ jsonrpc: "1.0", id: "q", method: "add" });
  assert.equal(badVersion.error.code, ErrorCode.INVALID_REQUEST);
  assert.equal(badVersion.id, "q");
  const badMethod = await call({ jsonrpc: "2.0", id: 4, method: 12 });
  assert.equal(badMethod.error.code, ErrorCode.INVALID_REQUEST);
  assert.deepEqual(badMethod.error.data.issues.map((i: { path: string }) => i.path), ["method"]);
  const badId = await call({ jsonrpc: "2.0", id: { x: 1 }, method: "add" });
  assert.equal(badId.error.code, ErrorCode.INVALID_REQUEST);
  assert.equal(badId.id, null);
  const badParams = await call({ jsonrpc: "2.0", id: 5, method: "add", params: "a,b" });
  assert.equal(badParams.error.code, ErrorCode.INVALID_REQUEST);
});

Deno.test("rpc: an unknown method is -32601 naming it and listing what exists", async () => {
  const response = await call({ jsonrpc: "2.0", id: 1, method: "nope" });
  assert.equal(response.error.code, ErrorCode.METHOD_NOT_FOUND);
  assert.equal(response.error.message, "Method not found: nope");
  assert.equal(response.error.data.method, "nope");
  assert.ok(response.error.data.available.includes("add"));
  // Inherited object properties are not methods.
  const proto = await call({ jsonrpc: "2.0", id: 2, method: "toString" });
  assert.equal(proto.error.code, ErrorCode.METHOD_NOT_FOUND);
});

Deno.test("rpc: invalid params are -32602 with each zod issue in data", async () => {
  const response = await call({ jsonrpc: "2.0", id: 1, method: "add", params: { a: "1", c: 2 } });
  assert.equal(response.error.code, ErrorCode.INVALID_PARAMS);
  assert.match(response.error.message, /^Invalid params for "add": /);
  const paths = response.error.data.issues.map((i: { path: string }) => i.path).sort();
  assert.deepEqual(paths, ["", "a", "b"]); // "" is the unrecognized key "c"
});

Deno.test("rpc: positional (array) params are refused with -32602", async () => {
  const response = await call({ jsonrpc: "2.0", id: 1, method: "add", params: [1, 2] });
  assert.equal(response.error.code, ErrorCode.INVALID_PARAMS);
  assert.match(response.error.message, /named parameters/);
});

Deno.test("rpc: RpcErrors keep their code, message and data", async () => {
  const response = await call({ jsonrpc: "2.0", id: 1, method: "refuse" });
  assert.deepEqual(response.error, {
    code: ErrorCode.JOB_NOT_FOUND,
    message: 'Job "x" not found',
    data: { job_id: "x" },
  });
});

Deno.test("rpc: other exceptions are -32603 without a stack trace, and reported to the server", async () => {
  internalErrors.length = 0;
  const response = await call({ jsonrpc: "2.0", id: 1, method: "crash" });
  assert.equal(response.error.code, ErrorCode.INTERNAL_ERROR);
  assert.equal(response.error.message, "Internal error");
  assert.deepEqual(response.error.data, { message: "secret internals" });
  assert.doesNotMatch(JSON.stringify(response), /at .*rpc_test\.ts/);
  assert.equal(internalErrors.length, 1);
});

Deno.test("rpc: a batch answers every request, in any order, and skips notifications", async () => {
  const response = await call([
    { jsonrpc: "2.0", id: 1, method: "slow", params: { ms: 20 } },
    { jsonrpc: "2.0", method: "record", params: { note: "batched" } },
    { jsonrpc: "2.0", id: 2, method: "add", params: { a: 1, b: 2 } },
    42,
    { jsonrpc: "2.0", id: 3, method: "nope" },
  ]);
  assert.ok(Array.isArray(response));
  assert.equal(response.length, 4);
  type Response = { id: unknown; result?: number; error?: { code: number } };
  const byId = new Map((response as Response[]).map((r) => [r.id, r]));
  assert.equal(byId.get(1)?.result, 20);
  assert.equal(byId.get(2)?.result, 3);
  assert.equal(byId.get(3)?.error?.code, ErrorCode.METHOD_NOT_FOUND);
  assert.equal(byId.get(null)?.error?.code, ErrorCode.INVALID_REQUEST);
});

Deno.test("rpc: an empty batch is one -32600; a batch of notifications gets no answer", async () => {
  const empty = await call([]);
  assert.equal(empty.error.code, ErrorCode.INVALID_REQUEST);
  assert.equal(empty.id, null);
  assert.equal(
    await call([{ jsonrpc: "2.0", method: "record", params: { note: "x" } }]),
    undefined,
  );
});
