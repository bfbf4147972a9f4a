/** The cc-executor version, reported by `/health`, `server.info` and `connected`. Keep in step with deno.json. */
export const VERSION = "0.1.0";
