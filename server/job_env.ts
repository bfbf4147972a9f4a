/**
 * What of the server's environment a command gets. The server holds secrets a command has no
 * business reading (its own token, the Redis URL with its password, the Anthropic API key):
 * they are withheld, and an allow-list can narrow what passes to a known set. A request's own
 * `env` is the client's to give and always applies.
 *
 * @module
 */
import type { EnvPolicy } from "./config.ts";

/** The variables Claude needs to run, given back to the `claude` runs cc-executor starts itself. */
const CLAUDE_VARIABLES = ["ANTHROPIC_API_KEY"];

/** The environments commands start from: shell commands, and cc-executor's own claude runs. */
export interface JobEnvironments {
  command: Record<string, string>;
  claude: Record<string, string>;
}

/** True when `name` is `pattern`, or starts with it when it ends in `*`. */
function matches(name: string, pattern: string): boolean {
  return pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

/**
 * The server's environment as commands get it. A `prompt` run (cc-executor runs claude on the
 * client's behalf) also gets the variables Claude needs, unless the allow-list leaves them out.
 */
export function jobEnvironments(
  serverEnv: Record<string, string>,
  policy: EnvPolicy,
): JobEnvironments {
  const passes = (name: string) =>
    (policy.allow === null || policy.allow.some((pattern) => matches(name, pattern))) &&
    !policy.withhold.some((pattern) => matches(name, pattern));
  const command: Record<string, string> = {};
  for (const [name, value] of Object.entries(serverEnv)) {
    if (passes(name)) command[name] = value;
  }
  const claude = { ...command };
  for (const name of CLAUDE_VARIABLES) {
    const allowed = policy.allow === null || policy.allow.some((pattern) => matches(name, pattern));
    if (allowed && serverEnv[name] !== undefined) claude[name] = serverEnv[name];
  }
  return { command, claude };
}
