/**
 * All CLI printing goes through here, so commands stay testable and output
 * stays consistent: results to stdout, diagnostics to stderr.
 *
 * @module
 */

const encoder = new TextEncoder();

export interface Output {
  /** A line of result for the user or a script (stdout). */
  out(line: string): void;
  /** A diagnostic line (stderr). */
  err(line: string): void;
}

export const consoleOutput: Output = {
  out: (line) => Deno.stdout.writeSync(encoder.encode(line + "\n")),
  err: (line) => Deno.stderr.writeSync(encoder.encode(line + "\n")),
};

/** An error the user can act on: printed without a stack, exits with `exitCode`. */
export class UsageError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = "UsageError";
  }
}
