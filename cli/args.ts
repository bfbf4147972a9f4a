/**
 * Parsers for option values, so a bad value is a usage error (exit 2) that
 * names the option and says what was expected.
 *
 * @module
 */
import { InvalidArgumentError } from "@commander-js/extra-typings";
import { MAX_TIMEOUT_SECONDS } from "../server/protocol.ts";

/** Seconds, fractions allowed, above 0 and within what a timer can wait. */
export function seconds(text: string): number {
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError("expected a number of seconds above 0.");
  }
  if (value > MAX_TIMEOUT_SECONDS) {
    throw new InvalidArgumentError(`expected at most ${MAX_TIMEOUT_SECONDS} seconds.`);
  }
  return value;
}

/** A whole number at least 1. */
export function positiveInt(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < 1) {
    throw new InvalidArgumentError("expected a whole number of at least 1.");
  }
  return value;
}

/** `KEY=value`, collected into a record across repeats of the option. */
export function keyValue(text: string, previous: Record<string, string> = {}) {
  const at = text.indexOf("=");
  if (at <= 0) throw new InvalidArgumentError(`expected KEY=value, got ${JSON.stringify(text)}.`);
  const key = text.slice(0, at);
  if (key.includes("\0")) throw new InvalidArgumentError("the name must not contain NUL.");
  return { ...previous, [key]: text.slice(at + 1) };
}

/** A TCP port, 0..65535 (0: any free port); kept as text, as the environment would carry it. */
export function port(text: string): string {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value > 65535) {
    throw new InvalidArgumentError("expected a port number between 0 and 65535.");
  }
  return String(value);
}

/** A listen address: not empty. */
export function host(text: string): string {
  if (text.trim() === "") throw new InvalidArgumentError("expected an address, e.g. 127.0.0.1.");
  return text.trim();
}

/** One of `values` (a zod enum's options), as given. */
export function oneOf<T extends string>(values: readonly T[]) {
  return (text: string): T => {
    if (!(values as readonly string[]).includes(text)) {
      throw new InvalidArgumentError(`expected one of ${values.join(", ")}.`);
    }
    return text as T;
  };
}
