/**
 * Bearer-token checks for `/ws` and `/mcp`.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";

/** The subprotocol a browser offers, with `BEARER_PROTOCOL_PREFIX + token`, to authenticate. */
export const PROTOCOL = "cc-executor";
/**
 * Browsers cannot set headers on a WebSocket, so they may send the token as a subprotocol:
 * `new WebSocket(url, ["cc-executor", "cc-executor.bearer." + token])`. The server answers with
 * `cc-executor`, never with the token.
 */
export const BEARER_PROTOCOL_PREFIX = "cc-executor.bearer.";

/**
 * True when the request carries the token: `Authorization: Bearer <token>`, or (a browser's
 * WebSocket) a `cc-executor.bearer.<token>` subprotocol. Compared in constant time over
 * fixed-length digests, so neither the content nor the length of the token leaks through timing.
 */
export function hasValidToken(request: Request, token: string): boolean {
  const header = request.headers.get("authorization") ?? "";
  const match = /^Bearer\s+(.+)$/i.exec(header);
  if (match) return sameSecret(match[1]!.trim(), token);
  const offered = bearerProtocol(request);
  return offered !== null && sameSecret(offered, token);
}

/** The token a `cc-executor.bearer.` subprotocol carries, if the request offers one. */
function bearerProtocol(request: Request): string | null {
  for (const protocol of offeredProtocols(request)) {
    if (protocol.startsWith(BEARER_PROTOCOL_PREFIX)) {
      return protocol.slice(BEARER_PROTOCOL_PREFIX.length);
    }
  }
  return null;
}

/** The subprotocols a WebSocket upgrade offers, in order. */
export function offeredProtocols(request: Request): string[] {
  return (request.headers.get("sec-websocket-protocol") ?? "")
    .split(",")
    .map((protocol) => protocol.trim())
    .filter(Boolean);
}

function sameSecret(given: string, token: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(token).digest();
  return timingSafeEqual(a, b);
}
