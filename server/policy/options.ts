/**
 * Command-line options read the way getopt_long reads them (short clusters, attached and separate
 * arguments, optional arguments, unique prefixes of long options), so a wrapper's options are
 * split where the real tool splits them: `env -iu ls rm x` runs rm, not ls. An option the spec
 * does not know is an error: the policy cannot tell where the command starts.
 *
 * @module
 */

export interface OptionSpec {
  /** Short options that take no argument, e.g. "iv0". */
  flags?: string;
  /** Short options with a required argument, attached (`-n5`) or the next word (`-n 5`). */
  withArgument?: string;
  /** Short options whose argument can only be attached (`-e[EOF]`, xargs). */
  withOptionalArgument?: string;
  /** Long options, without their `--`. */
  long?: Record<string, "none" | "required" | "optional">;
  /** Whole words that are options of their own (nice's `-5`). */
  special?: RegExp;
}

export interface ParsedOption {
  /** The short letter, or the long name in full. */
  name: string;
  value: string | null;
}

export type ParsedOptions =
  | { ok: true; options: ParsedOption[]; /** The first word after the options. */ next: number }
  | { ok: false; why: string };

/**
 * Reads options from `words[start]` up to the first operand (options after operands are not
 * options: the wrappers this serves stop there, as `+` in their getopt strings says). A null word
 * is one known only at run time: it could be an option or the command, so it is an error.
 */
export function parseOptions(
  words: readonly (string | null)[],
  start: number,
  spec: OptionSpec,
): ParsedOptions {
  const options: ParsedOption[] = [];
  let i = start;
  while (i < words.length) {
    const word = words[i]!;
    if (word === null) {
      return { ok: false, why: "an option or the command is known only at run time" };
    }
    if (word === "--") return { ok: true, options, next: i + 1 };
    if (word === "-" || !word.startsWith("-")) break;
    if (spec.special?.test(word)) {
      options.push({ name: word, value: null });
      i++;
      continue;
    }
    if (word.startsWith("--")) {
      const equals = word.indexOf("=");
      const given = word.slice(2, equals === -1 ? undefined : equals);
      const attached = equals === -1 ? null : word.slice(equals + 1);
      const long = spec.long ?? {};
      const matches = given in long
        ? [given]
        : Object.keys(long).filter((name) => name.startsWith(given));
      if (matches.length !== 1) {
        return {
          ok: false,
          why: matches.length === 0 ? `unknown option --${given}` : `ambiguous option --${given}`,
        };
      }
      const name = matches[0]!;
      const kind = long[name]!;
      if (kind === "none") {
        if (attached !== null) return { ok: false, why: `--${name} takes no argument` };
        options.push({ name, value: null });
      } else if (kind === "optional" || attached !== null) {
        options.push({ name, value: attached });
      } else {
        const value = words[i + 1];
        if (value === undefined) return { ok: false, why: `--${name} needs an argument` };
        if (value === null) {
          return { ok: false, why: `the argument of --${name} is known only at run time` };
        }
        options.push({ name, value });
        i++;
      }
      i++;
      continue;
    }
    for (let j = 1; j < word.length; j++) {
      const letter = word[j]!;
      const rest = word.slice(j + 1);
      if (spec.flags?.includes(letter)) {
        options.push({ name: letter, value: null });
      } else if (spec.withOptionalArgument?.includes(letter)) {
        options.push({ name: letter, value: rest === "" ? null : rest });
        break;
      } else if (spec.withArgument?.includes(letter)) {
        if (rest !== "") options.push({ name: letter, value: rest });
        else {
          const value = words[i + 1];
          if (value === undefined) return { ok: false, why: `-${letter} needs an argument` };
          if (value === null) {
            return { ok: false, why: `the argument of -${letter} is known only at run time` };
          }
          options.push({ name: letter, value });
          i++;
        }
        break;
      } else {
        return { ok: false, why: `unknown option -${letter}` };
      }
    }
    i++;
  }
  return { ok: true, options, next: i };
}
