/**
 * All CLI printing goes through here, so commands stay testable and output
 * stays consistent: results to stdout, diagnostics to stderr, colour only on
 * a terminal and never with NO_COLOR, spinners only on a terminal.
 *
 * @module
 */
import { readEnv } from "../server/env.ts";

const encoder = new TextEncoder();

export type StreamName = "stdout" | "stderr";

/** ANSI styles; each returns the text unchanged when colour is off for that stream. */
export interface Paint {
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  dim(text: string): string;
  bold(text: string): string;
}

/** A running spinner; `stop` erases it. A no-op when stderr is not a terminal. */
export interface Spinner {
  update(text: string): void;
  stop(): void;
}

export interface Output {
  /** A line of result for the user or a script (stdout). */
  out(line: string): void;
  /** A diagnostic line (stderr). */
  err(line: string): void;
  /**
   * Text exactly as given (a job's output), to stdout or stderr.
   * @throws {Deno.errors.BrokenPipe} when the reader has gone (`run ... | head`).
   */
  write(stream: StreamName, text: string): void;
  /** One JSON document on stdout. */
  json(value: unknown): void;
  /** Rows under a header, columns aligned, on stdout. */
  table(header: string[], rows: string[][]): void;
  /** Styles for text bound for that stream. */
  paint(stream: StreamName): Paint;
  /** A spinner on stderr while something slow happens; nothing at all when it is not a TTY. */
  spinner(text: string): Spinner;
}

/** An error the user can act on: printed without a stack, exits with `exitCode`. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = "CliError";
  }
}

/** Bad flags or arguments: exit code 2, like every Unix tool. */
export class UsageError extends CliError {
  constructor(message: string, exitCode = 2) {
    super(message, exitCode);
    this.name = "UsageError";
  }
}

export interface OutputOptions {
  stdout?: Pick<typeof Deno.stdout, "writeSync" | "isTerminal">;
  stderr?: Pick<typeof Deno.stderr, "writeSync" | "isTerminal">;
  /** @default NO_COLOR from the environment, when env access is granted */
  noColor?: boolean;
}

/** The terminal's output; colour follows https://no-color.org and isatty. */
export function createOutput(options: OutputOptions = {}): Output {
  const streams = { stdout: options.stdout ?? Deno.stdout, stderr: options.stderr ?? Deno.stderr };
  const noColor = options.noColor ?? Boolean(readEnv("NO_COLOR"));
  const terminal = {
    stdout: streams.stdout.isTerminal(),
    stderr: streams.stderr.isTerminal(),
  };
  const paints = {
    stdout: makePaint(!noColor && terminal.stdout),
    stderr: makePaint(!noColor && terminal.stderr),
  };
  const write = (stream: StreamName, text: string) => writeAll(streams[stream], text);
  let activeSpinner: TerminalSpinner | null = null;
  // A spinner shares stderr's line: erase it before anything else is printed, redraw after.
  const around = (print: () => void) => {
    activeSpinner?.clear();
    print();
    activeSpinner?.draw();
  };
  return {
    out: (line) => around(() => write("stdout", line + "\n")),
    err: (line) => around(() => write("stderr", line + "\n")),
    write: (stream, text) => around(() => write(stream, text)),
    json: (value) => around(() => write("stdout", JSON.stringify(value, null, 2) + "\n")),
    table: (header, rows) =>
      around(() => write("stdout", formatTable(header, rows, paints.stdout))),
    paint: (stream) => paints[stream],
    spinner: (text) => {
      if (!terminal.stderr) return { update: () => {}, stop: () => {} };
      activeSpinner?.stop();
      const spinner = new TerminalSpinner(text, (s) => write("stderr", s), () => {
        if (activeSpinner === spinner) activeSpinner = null;
      });
      activeSpinner = spinner;
      return spinner;
    },
  };
}

/** Columns padded to their widest cell; the last column is not padded. */
export function formatTable(header: string[], rows: string[][], paint?: Paint): string {
  // Painted cells are measured without their colour codes, which take no room on the screen.
  const width = (cell: string) => cell.replace(ANSI_STYLE, "").length;
  const widths = header.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ""))));
  const line = (cells: string[]) =>
    cells.map((cell, i) =>
      i === cells.length - 1 ? cell : cell + " ".repeat(widths[i]! - width(cell))
    ).join("  ").trimEnd();
  const head = line(header);
  return [paint ? paint.bold(head) : head, ...rows.map(line)].join("\n") + "\n";
}

/** An SGR escape sequence, as Paint writes them. */
// deno-lint-ignore no-control-regex -- ESC is what starts every such sequence
const ANSI_STYLE = /\x1b\[[0-9;]*m/g;

/** 93784000 -> "1d 2h 3m 4s". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let rest = Math.floor(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0 || parts.length === 0) parts.push(`${rest}s`);
  return parts.join(" ");
}

function writeAll(stream: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(stream.writeSync(bytes));
}

function makePaint(enabled: boolean): Paint {
  const style = (open: number, close: number) => (text: string) =>
    enabled ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return {
    red: style(31, 39),
    green: style(32, 39),
    yellow: style(33, 39),
    dim: style(2, 22),
    bold: style(1, 22),
  };
}

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

class TerminalSpinner implements Spinner {
  #frame = 0;
  #timer: ReturnType<typeof setInterval>;
  #stopped = false;

  constructor(
    private text: string,
    private readonly write: (s: string) => void,
    private readonly onStop: () => void,
  ) {
    this.draw();
    this.#timer = setInterval(() => {
      this.#frame = (this.#frame + 1) % FRAMES.length;
      this.draw();
    }, 80);
    // A forgotten spinner must never keep the CLI alive.
    Deno.unrefTimer(this.#timer);
  }

  update(text: string): void {
    this.text = text;
    this.draw();
  }

  draw(): void {
    if (!this.#stopped) this.write(`\r\x1b[2K${FRAMES[this.#frame]} ${this.text}`);
  }

  clear(): void {
    if (!this.#stopped) this.write("\r\x1b[2K");
  }

  stop(): void {
    if (this.#stopped) return;
    this.clear();
    this.#stopped = true;
    clearInterval(this.#timer);
    this.onStop();
  }
}
