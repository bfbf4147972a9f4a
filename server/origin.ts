/**
 * Browsers attach an Origin header to every WebSocket upgrade and cross-site POST. Without a
 * check, any web page the user visits could drive a local executor (cross-site WebSocket
 * hijacking, DNS rebinding). Programs (the CLI, the client, Claude Code) send no Origin.
 *
 * @module
 */

/** Null when the request may proceed; else why it may not. */
export function refusedOrigin(request: Request, allowed: readonly string[]): string | null {
  const origin = request.headers.get("origin");
  if (origin === null) return null;
  if (allowed.includes(origin)) return null;
  return `Forbidden: requests from origin ${JSON.stringify(origin)} are not allowed ` +
    "(add it to CC_EXECUTOR_ALLOWED_ORIGINS to allow it)";
}
