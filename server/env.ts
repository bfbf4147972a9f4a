/**
 * Reading an environment variable without ever prompting for permission:
 * the client and the CLI run under whatever permissions their user chose.
 *
 * @module
 */

/** The variable when env access is already granted; never prompts, never throws. */
export function readEnv(name: string): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return undefined;
    }
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}
