/**
 * Prompt templates: markdown files with named placeholders that rewrite a
 * prompt Claude answered at too great a length into one that asks for a
 * shorter answer (docs/claude.md#templates). This module parses and validates
 * them and loads the built-ins (this folder's *.md) and the user's folder
 * (CC_EXECUTOR_TEMPLATES_DIR), whose files add to or replace the built-ins by
 * name. A bad file is refused with a problem naming its file and line; the
 * others still load.
 *
 * @module
 */
import { basename, extname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isMap, isScalar, LineCounter, parseDocument } from "yaml";

/** Every placeholder a template may use; `{{prompt}}` is required. */
export const PLACEHOLDERS = ["prompt", "max_output_tokens", "word_budget", "attempt"] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

/** The front matter keys a template may set. */
export const FRONT_MATTER_KEYS = ["description", "order"] as const;

/** The conciseness rank of a template whose front matter gives none. */
export const DEFAULT_ORDER = 1;

/** Files larger than this are refused: a template is a prompt, not a document. */
export const MAX_TEMPLATE_BYTES = 64 * 1024;

/** A template's name: its file name without `.md`. Plain, so it is safe in logs, keys and argv. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** A piece of a template's body: literal text, or a placeholder to substitute. */
export type TemplatePart = { text: string } | { placeholder: Placeholder };

/** Where a template came from: this folder (built in) or the user's folder. */
export type TemplateSource = "builtin" | "user";

/** A parsed, valid template. */
export interface Template {
  /** The file name without `.md`, e.g. `concise`. */
  name: string;
  /** The file's absolute path. */
  file: string;
  source: TemplateSource;
  /** The built-in file this user template replaces, if any. */
  overrides: string | null;
  /** From the front matter; empty when it gives none. */
  description: string;
  /** Conciseness rank: 1 asks for a mildly shorter answer, higher ranks for terser ones. */
  order: number;
  /** The body, split at its placeholders; rendering joins them (render.ts). */
  parts: readonly TemplatePart[];
  /** The placeholders the body uses, each once, in order of first use. */
  placeholders: Placeholder[];
}

/** Why a file was refused: its path, the 1-based line (null: the whole file), what is wrong. */
export interface TemplateProblem {
  file: string;
  line: number | null;
  message: string;
}

/**
 * A problem as one line, `file:line: message`, the way compilers report, so editors can jump to
 * it. The path is shown relative to `cwd` when it lies inside it.
 *
 * @example
 * ```ts
 * const problem = { file: "/srv/app/templates/foo.md", line: 7, message: "unknown placeholder {{promt}}" };
 * formatProblem(problem, "/srv/app");
 * // "templates/foo.md:7: unknown placeholder {{promt}}"
 * ```
 */
export function formatProblem(problem: TemplateProblem, cwd?: string): string {
  const file = cwd === undefined ? problem.file : displayPath(problem.file, cwd);
  return `${file}${problem.line === null ? "" : `:${problem.line}`}: ${problem.message}`;
}

/** `path` relative to `cwd` when it is inside it, else as it is. */
export function displayPath(path: string, cwd: string): string {
  const inside = relative(cwd, path);
  return inside !== "" && !inside.startsWith("..") && !isAbsolute(inside) ? inside : path;
}

export interface ParseTemplateOptions {
  /** The template's name (its file name without `.md`). */
  name: string;
  /** The file's path, for problems and `Template.file`. */
  file: string;
  /** @default "user" */
  source?: TemplateSource;
}

/** A template, or why it was refused (every problem found, not only the first). */
export type ParseTemplateResult =
  | { template: Template; problems: [] }
  | { template: null; problems: TemplateProblem[] };

const KNOWN = `(known: ${PLACEHOLDERS.join(", ")})`;

/**
 * Parses and validates one template's text: optional front matter between `---` lines (YAML:
 * `description`, `order`), then the body with its `{{placeholders}}`.
 *
 * @example
 * ```ts
 * const { template, problems } = parseTemplate("Briefly: {{prompt}}", {
 *   name: "brief",
 *   file: "templates/brief.md",
 * });
 * ```
 */
export function parseTemplate(text: string, options: ParseTemplateOptions): ParseTemplateResult {
  const { file } = options;
  const problems: TemplateProblem[] = [];
  const problem = (line: number | null, message: string) => problems.push({ file, line, message });
  if (!NAME.test(options.name)) {
    problem(
      null,
      `invalid template name "${options.name}": a name is 1-64 letters, digits, '.', '_' or '-', ` +
        "starting with a letter or digit (rename the file)",
    );
  }
  // Line numbers count "\n"; a "\r" before it (a file saved on Windows) is not part of the text.
  const lines = text.replace(/^\uFEFF/, "").replaceAll("\r\n", "\n").split("\n");
  let bodyStart = 0; // index into lines
  let front: FrontMatter = { description: "", order: DEFAULT_ORDER };
  if (lines[0]?.trimEnd() === "---") {
    const close = lines.findIndex((line, i) => i > 0 && /^(---|\.\.\.)\s*$/.test(line));
    if (close === -1) {
      problem(1, "front matter is not closed: expected a line with --- after its key: value lines");
      return { template: null, problems };
    }
    front = parseFrontMatter(lines.slice(1, close).join("\n"), 2, problem);
    bodyStart = close + 1;
  }
  const { parts, placeholders } = parseBody(lines.slice(bodyStart), bodyStart + 1, problem);
  if (!placeholders.includes("prompt")) {
    problem(
      Math.min(bodyStart + 1, lines.length),
      "missing {{prompt}}: every template must include the original prompt",
    );
  }
  if (problems.length > 0) {
    // In file order, as an editor's list of errors reads.
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    return { template: null, problems };
  }
  return {
    template: {
      name: options.name,
      file,
      source: options.source ?? "user",
      overrides: null,
      description: front.description,
      order: front.order,
      parts,
      placeholders,
    },
    problems: [],
  };
}

interface FrontMatter {
  description: string;
  order: number;
}

/** The front matter's keys, checked; `firstLine` is the file line of its first line. */
function parseFrontMatter(
  text: string,
  firstLine: number,
  problem: (line: number | null, message: string) => void,
): FrontMatter {
  const result: FrontMatter = { description: "", order: DEFAULT_ORDER };
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const lineAt = (offset: number | undefined) =>
    offset === undefined ? firstLine : firstLine + lineCounter.linePos(offset).line - 1;
  if (doc.errors.length > 0) {
    for (const error of doc.errors) {
      // The library's message, without its own position (the file's line is given instead).
      const message = error.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
      problem(lineAt(error.pos[0]), `bad front matter: ${message}`);
    }
    return result;
  }
  const contents = doc.contents;
  if (contents === null || (isScalar(contents) && contents.value === null)) return result;
  if (!isMap(contents)) {
    problem(
      lineAt(contents.range?.[0]),
      `bad front matter: expected key: value lines (${FRONT_MATTER_KEYS.join(", ")})`,
    );
    return result;
  }
  for (const pair of contents.items) {
    const keyNode = pair.key;
    const line = lineAt(isScalar(keyNode) ? keyNode.range?.[0] : undefined);
    const key = isScalar(keyNode) ? keyNode.value : undefined;
    const value = isScalar(pair.value) ? pair.value.value : pair.value === null ? null : undefined;
    if (key === "description") {
      if (typeof value !== "string") {
        problem(line, "bad front matter: description must be a line of text");
      } else result.description = value.trim().replace(/\s+/g, " ");
    } else if (key === "order") {
      if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 1000) {
        problem(
          line,
          `bad front matter: order must be a whole number from 1 to 1000 ` +
            `(1: mildly more concise, higher: terser), got ${JSON.stringify(value ?? null)}`,
        );
      } else result.order = value;
    } else {
      problem(
        line,
        `bad front matter: unknown key ${JSON.stringify(key ?? String(keyNode))} ` +
          `(known: ${FRONT_MATTER_KEYS.join(", ")})`,
      );
    }
  }
  return result;
}

/**
 * Splits the body at its placeholders. A placeholder is `{{name}}` on one line (spaces inside the
 * braces are allowed); any other `{{` is a problem, so a typo never reaches Claude as literal text.
 */
function parseBody(
  lines: string[],
  firstLine: number,
  problem: (line: number | null, message: string) => void,
): { parts: TemplatePart[]; placeholders: Placeholder[] } {
  const parts: TemplatePart[] = [];
  const placeholders: Placeholder[] = [];
  let text = "";
  const flush = () => {
    if (text !== "") parts.push({ text });
    text = "";
  };
  for (const [i, line] of lines.entries()) {
    const lineNo = firstLine + i;
    let at = 0;
    while (true) {
      const open = line.indexOf("{{", at);
      if (open === -1) break;
      text += line.slice(at, open);
      const close = line.indexOf("}}", open + 2);
      if (close === -1) {
        problem(lineNo, "unclosed {{: expected }} on the same line");
        text += "{{";
        at = open + 2;
        continue;
      }
      const name = line.slice(open + 2, close).trim();
      if ((PLACEHOLDERS as readonly string[]).includes(name)) {
        flush();
        parts.push({ placeholder: name as Placeholder });
        if (!placeholders.includes(name as Placeholder)) placeholders.push(name as Placeholder);
      } else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        problem(lineNo, `unknown placeholder {{${name}}} ${KNOWN}`);
      } else {
        problem(
          lineNo,
          `invalid placeholder ${line.slice(open, close + 2)}: expected a name ${KNOWN}`,
        );
      }
      at = close + 2;
    }
    text += line.slice(at) + (i < lines.length - 1 ? "\n" : "");
  }
  flush();
  // Blank lines around the body (after the front matter, at the end of the file) are layout, not
  // prompt.
  const first = parts[0];
  if (first && "text" in first) first.text = first.text.replace(/^\s*\n/, "");
  const last = parts.at(-1);
  if (last && "text" in last) last.text = last.text.trimEnd();
  return { parts: parts.filter((part) => !("text" in part) || part.text !== ""), placeholders };
}

// ---------------------------------------------------------------------------------------------
// Loading

/** This folder: the built-in templates ship beside this module (compile: `--include templates`). */
export const BUILTIN_DIR = fileURLToPath(new URL(".", import.meta.url));

export interface LoadTemplatesOptions {
  /**
   * The user's folder (CC_EXECUTOR_TEMPLATES_DIR), relative to `cwd` or absolute.
   * @default "templates"
   */
  dir?: string;
  /** @default Deno.cwd() */
  cwd?: string;
  /** The built-in templates' folder. @default BUILTIN_DIR */
  builtinDir?: string;
}

/** Every template that loaded, and every file that was refused. */
export class TemplateSet {
  /** Sorted by order (mildest first), then by name. */
  readonly templates: readonly Template[];
  /** Refused files, in the order they were read (built-ins first). */
  readonly problems: readonly TemplateProblem[];
  /** The user's folder, resolved. */
  readonly dir: string;
  /** Why the user's folder was not read, when it was not (it is the built-ins' own folder). */
  readonly dirNote: string | null;
  readonly loadedAt: Date;
  readonly #byName: Map<string, Template>;

  constructor(
    templates: Template[],
    problems: TemplateProblem[],
    origin: { dir: string; dirNote: string | null; loadedAt?: Date },
  ) {
    this.templates = [...templates].sort((a, b) =>
      a.order - b.order || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    );
    this.problems = problems;
    this.dir = origin.dir;
    this.dirNote = origin.dirNote;
    this.loadedAt = origin.loadedAt ?? new Date();
    this.#byName = new Map(this.templates.map((t) => [t.name, t]));
  }

  /** The template called `name`, if one loaded. */
  get(name: string): Template | undefined {
    return this.#byName.get(name);
  }

  /** The names of the loaded templates, in `templates` order. */
  get names(): string[] {
    return this.templates.map((t) => t.name);
  }
}

/**
 * Loads the built-in templates, then the user's folder, whose files add to or replace the
 * built-ins by name. Never throws for a bad or unreadable file (it becomes a problem), nor for a
 * user folder that does not exist (it holds no templates). A refused user file that would have
 * replaced a built-in leaves the built-in in place.
 *
 * @example
 * ```ts
 * const set = await loadTemplates({ dir: "templates" });
 * for (const problem of set.problems) console.warn(formatProblem(problem));
 * ```
 */
export async function loadTemplates(options: LoadTemplatesOptions = {}): Promise<TemplateSet> {
  const cwd = options.cwd ?? Deno.cwd();
  const builtinDir = options.builtinDir ?? BUILTIN_DIR;
  const dir = resolve(cwd, options.dir ?? "templates");
  const problems: TemplateProblem[] = [];
  const byName = new Map<string, Template>();
  const builtinProblems = problems.length;
  for (const template of await readFolder(builtinDir, "builtin", problems)) {
    byName.set(template.name, template);
  }
  if (byName.size === 0 && problems.length === builtinProblems) {
    // The files are there in a checkout; a compiled binary has them only if it was built with them.
    problems.push({
      file: builtinDir,
      line: null,
      message: "no built-in templates found here (a compiled binary needs `--include templates`)",
    });
  }
  // Started in cc-executor's own checkout, the default folder is the built-ins' folder: reading it
  // again would list each built-in twice, as its own override.
  const isBuiltinDir = sameFolder(dir, builtinDir);
  const dirNote = isBuiltinDir
    ? `${dir} is the built-in templates' folder, so it is not read a second time; ` +
      "set CC_EXECUTOR_TEMPLATES_DIR to a folder of your templates"
    : null;
  if (!isBuiltinDir) {
    for (const template of await readFolder(dir, "user", problems)) {
      const builtin = byName.get(template.name);
      byName.set(template.name, {
        ...template,
        overrides: builtin?.source === "builtin" ? builtin.file : null,
      });
    }
  }
  return new TemplateSet([...byName.values()], problems, { dir, dirNote });
}

/** The valid templates among one folder's *.md files, by name; problems go to `problems`. */
async function readFolder(
  dir: string,
  source: TemplateSource,
  problems: TemplateProblem[],
): Promise<Template[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (extname(entry.name) === ".md" && !entry.isDirectory) names.push(entry.name);
    }
  } catch (error) {
    // No folder, no templates: the default `templates/` is optional.
    if (error instanceof Deno.errors.NotFound) return [];
    problems.push({
      file: dir,
      line: null,
      message: `cannot read the templates folder: ${(error as Error).message}`,
    });
    return [];
  }
  names.sort();
  const templates: Template[] = [];
  for (const fileName of names) {
    const file = join(dir, fileName);
    let text: string;
    try {
      const info = await Deno.stat(file);
      if (!info.isFile) continue;
      if (info.size > MAX_TEMPLATE_BYTES) {
        problems.push({
          file,
          line: null,
          message:
            `too large: ${info.size} bytes (a template may have at most ${MAX_TEMPLATE_BYTES})`,
        });
        continue;
      }
      text = await Deno.readTextFile(file);
    } catch (error) {
      problems.push({ file, line: null, message: `cannot read: ${(error as Error).message}` });
      continue;
    }
    const parsed = parseTemplate(text, { name: basename(fileName, ".md"), file, source });
    if (parsed.template) templates.push(parsed.template);
    else problems.push(...parsed.problems);
  }
  return templates;
}

function sameFolder(a: string, b: string): boolean {
  try {
    return Deno.realPathSync(a) === Deno.realPathSync(b);
  } catch {
    return false; // one of them does not exist
  }
}
