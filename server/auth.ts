/**
 * Bearer-token check for the WebSocket endpoint.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";

/**
 * True when the request carries `Authorization: Bearer <token>`. Compared in
 * constant time over fixed-length digests, so neither the content nor the
 * length of the token leaks through timing.
 */
export function hasValidToken(request: Request, token: string): boolean {
  const header = request.headers.get("authorization") ?? "";
  const match = /^Bearer\s+(.+)$/i.exec(header);
  if (!match) return false;
  const given = createHash("sha256").update(match[1]!.trim()).digest();
  const expected = createHash("sha256").update(token).digest();
  return timingSafeEqual(given, expected);
}
