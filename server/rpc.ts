/**
 * Pure JSON-RPC 2.0 dispatch: one incoming text frame in, the serialized
 * response (or nothing) out. No sockets here, so every rule of the spec is
 * tested without a server (rpc_test.ts).
 *
 * @module
 */
import type { z } from "zod";
import {
  describeIssues,
  ErrorCode,
  invalidParamsError,
  issuesOf,
  type RequestId,
  RpcError,
  RpcRequest,
  type RpcResponse,
} from "./protocol.ts";

/** One method: the zod schema its params must satisfy and the function that serves it. */
export interface MethodDefinition<Ctx, P = unknown> {
  params: z.ZodType<P, unknown>;
  handler: (params: P, ctx: Ctx) => unknown;
}

// deno-lint-ignore no-explicit-any
export type MethodTable<Ctx> = Record<string, MethodDefinition<Ctx, any>>;

export interface RpcHandlerOptions {
  /** Called with errors that are not RpcErrors, which reach the client only as -32603. */
  onInternalError?: (error: unknown, method: string) => void;
}

/** Maps one incoming frame to its serialized response; undefined when nothing must be sent. */
export type RpcHandler<Ctx> = (text: string, ctx: Ctx) => Promise<string | undefined>;

/**
 * Builds the dispatcher for a method table.
 *
 * @example
 * ```ts
 * const handle = createRpcHandler({ add: { params: z.object({ a: z.number() }), handler: (p) => p.a + 1 } });
 * await handle('{"jsonrpc":"2.0","id":1,"method":"add","params":{"a":1}}', {}); // '{"jsonrpc":"2.0","id":1,"result":2}'
 * ```
 */
export function createRpcHandler<Ctx>(
  methods: MethodTable<Ctx>,
  options: RpcHandlerOptions = {},
): RpcHandler<Ctx> {
  const handleOne = async (message: unknown, ctx: Ctx): Promise<RpcResponse | undefined> => {
    const parsed = RpcRequest.safeParse(message);
    if (!parsed.success) {
      return errorResponse(
        idOf(message),
        new RpcError(
          ErrorCode.INVALID_REQUEST,
          "Invalid Request: " + describeIssues(parsed.error),
          {
            issues: issuesOf(parsed.error),
          },
        ),
      );
    }
    const request = parsed.data;
    // A request without an id is a notification: it is served but never answered, not even with an error.
    const isNotification = !("id" in request);
    const id = request.id ?? null;
    try {
      const result = await dispatch(request, ctx);
      return isNotification ? undefined : { jsonrpc: "2.0", id, result: result ?? null };
    } catch (error) {
      if (!(error instanceof RpcError)) options.onInternalError?.(error, request.method);
      if (isNotification) return undefined;
      if (error instanceof RpcError) return errorResponse(id, error);
      // The message helps the client; the stack stays in the server's log.
      return errorResponse(
        id,
        new RpcError(ErrorCode.INTERNAL_ERROR, "Internal error", {
          message: error instanceof Error ? error.message : String(error),
        }),
      );
    }
  };

  const dispatch = (request: RpcRequest, ctx: Ctx): unknown => {
    const method = Object.hasOwn(methods, request.method) ? methods[request.method] : undefined;
    if (!method) {
      throw new RpcError(ErrorCode.METHOD_NOT_FOUND, `Method not found: ${request.method}`, {
        method: request.method,
        available: Object.keys(methods),
      });
    }
    if (Array.isArray(request.params)) {
      throw new RpcError(
        ErrorCode.INVALID_PARAMS,
        `Invalid params for "${request.method}": params must be an object of named parameters, not an array`,
      );
    }
    const params = method.params.safeParse(request.params ?? {});
    if (!params.success) throw invalidParamsError(request.method, params.error);
    return method.handler(params.data, ctx);
  };

  return async (text, ctx) => {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch (error) {
      return JSON.stringify(
        errorResponse(
          null,
          new RpcError(ErrorCode.PARSE_ERROR, "Parse error: the message is not valid JSON", {
            message: (error as Error).message,
          }),
        ),
      );
    }
    if (!Array.isArray(message)) {
      const response = await handleOne(message, ctx);
      return response && JSON.stringify(response);
    }
    if (message.length === 0) {
      return JSON.stringify(
        errorResponse(
          null,
          new RpcError(ErrorCode.INVALID_REQUEST, "Invalid Request: empty batch"),
        ),
      );
    }
    const responses = (await Promise.all(message.map((m) => handleOne(m, ctx)))).filter(
      (r): r is RpcResponse => r !== undefined,
    );
    // A batch of notifications is answered with nothing at all.
    return responses.length > 0 ? JSON.stringify(responses) : undefined;
  };
}

function errorResponse(id: RequestId, error: RpcError): RpcResponse {
  return { jsonrpc: "2.0", id, error: error.toJSON() };
}

/** The id to answer an invalid request with: its own id when that is a valid id, else null. */
function idOf(message: unknown): RequestId {
  if (message !== null && typeof message === "object" && "id" in message) {
    const id = (message as { id: unknown }).id;
    if (typeof id === "string" || typeof id === "number") return id;
  }
  return null;
}
