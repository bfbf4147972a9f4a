/**
 * A small leveled logger writing one line per event to stderr. Injected
 * everywhere as `Logger`, so tests can capture or silence it.
 *
 * @module
 */

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LoggerOptions {
  /** Where finished lines go. @default a write to stderr */
  write?: (line: string) => void;
  /** @default () => new Date() */
  now?: () => Date;
}

/** A logger that drops everything below `level`. */
export function createLogger(level: LogLevel, options: LoggerOptions = {}): Logger {
  const encoder = new TextEncoder();
  const write = options.write ?? ((line: string) => Deno.stderr.writeSync(encoder.encode(line)));
  const now = options.now ?? (() => new Date());
  const min = RANK[level];
  const log = (lvl: LogLevel) => (message: string, fields?: Record<string, unknown>) => {
    if (RANK[lvl] < min) return;
    const extra = fields && Object.keys(fields).length > 0 ? " " + JSON.stringify(fields) : "";
    write(`${now().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${message}${extra}\n`);
  };
  return { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
}

/** A logger that discards everything. */
export const silentLogger: Logger = createLogger("error", { write: () => {} });
