/**
 * The bearer token a request to `/ws` or `/mcp` carries (compared in principal.ts).
 *
 * @module
 */
/** The subprotocol a browser offers, with `BEARER_PROTOCOL_PREFIX + token`, to authenticate. */
export const PROTOCOL = "cc-executor";
/**
 * Browsers cannot set headers on a WebSocket, so they may send the token as a subprotocol:
 * `new WebSocket(url, ["cc-executor", "cc-executor.bearer." + token])`. The server answers with
 * `cc-executor`, never with the token.
 */
export const BEARER_PROTOCOL_PREFIX = "cc-executor.bearer.";

/**
 * The token a request carries: `Authorization: Bearer <token>`, or (a browser's WebSocket) a
 * `cc-executor.bearer.<token>` subprotocol; null when it carries none. Principals (principal.ts)
 * compares it, in constant time.
 */
export function presentedToken(request: Request): string | null {
  const header = request.headers.get("authorization") ?? "";
  const match = /^Bearer\s+(.+)$/i.exec(header);
  if (match) return match[1]!.trim();
  return bearerProtocol(request);
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
