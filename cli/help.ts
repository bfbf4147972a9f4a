/**
 * Help text shared by every command: the "Examples:" block that `--help`
 * ends with.
 *
 * @module
 */

/** `[command line, what it does]` pairs as an indented "Examples:" block. */
export function examples(lines: [string, string][]): string {
  const body = lines.map(([command, what]) =>
    what ? `  $ ${command}\n      ${what}` : `  $ ${command}`
  );
  return `\nExamples:\n${body.join("\n")}`;
}
