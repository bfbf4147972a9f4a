/**
 * Tool results as text an agent can use: output sections with where they come from, what was
 * left out and how to fetch it, all within a character budget derived from a token budget.
 *
 * @module
 */
import type {
  HistoryRecord,
  JobInfo,
  JobsOutputResult,
  JobsWaitResult,
  OutputSection,
} from "../protocol.ts";

/**
 * Characters counted as one token. Real text averages about 4 in Claude's tokenizer; logs, paths
 * and code run closer to 3, so 3 keeps an estimate from undershooting.
 */
export const CHARS_PER_TOKEN = 3;

/** Characters a result of `tokens` estimated tokens may take. */
export function charBudget(tokens: number): number {
  return tokens * CHARS_PER_TOKEN;
}

/** Of a result's budget, what output text may take; the rest is for headers and guidance. */
export function outputBytesFor(chars: number): number {
  return Math.max(256, Math.floor(chars * 0.85) - 600);
}

const number = new Intl.NumberFormat("en-US");

export function humanBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** "completed, exit 0, after 1.2 s" and the like. */
export function describeOutcome(
  job: Pick<HistoryRecord, "status" | "exit_code" | "signal" | "duration_ms" | "reason">,
): string {
  const parts: string[] = [job.status];
  if (job.exit_code !== null) parts.push(`exit ${job.exit_code}`);
  if (job.signal !== null) parts.push(`signal ${job.signal}`);
  if (job.duration_ms !== null) parts.push(`after ${(job.duration_ms / 1000).toFixed(1)} s`);
  let text = parts.join(", ");
  if (job.reason) text += ` (${job.reason})`;
  return text;
}

/** A job's facts, one per line. */
export function describeJob(job: JobInfo): string {
  return [
    `job ${job.job_id}: ${describeOutcome(job)}`,
    `command: ${job.command}`,
    ...(job.cwd ? [`cwd: ${job.cwd}`] : []),
    `started ${job.started_at}${job.ended_at ? `, ended ${job.ended_at}` : ""}`,
    `output: stdout ${humanBytes(job.bytes.stdout)}, stderr ${humanBytes(job.bytes.stderr)}` +
    (job.truncated ? " (cut at max_output_bytes)" : ""),
    ...(job.attempt > 1 ? [`attempts: ${job.attempt}`] : []),
  ].join("\n");
}

/** A history record's facts, one per line (a job no longer held in memory). */
export function describeRecord(record: HistoryRecord): string {
  return [
    `job ${record.job_id}: ${describeOutcome(record)} (from history)`,
    `command: ${record.command}`,
    ...(record.cwd ? [`cwd: ${record.cwd}`] : []),
    `started ${record.started_at}${record.ended_at ? `, ended ${record.ended_at}` : ""}`,
    `output: stdout ${humanBytes(record.bytes.stdout)}, stderr ${humanBytes(record.bytes.stderr)}`,
  ].join("\n");
}

const WHY: Record<OutputSection["why"], string> = {
  all: "",
  range: "",
  head: " (first lines)",
  tail: " (last lines)",
  match: " (matching lines)",
  error: " (around an error)",
};

function header(section: OutputSection, totals: JobsOutputResult["totals"]): string {
  const total = totals[section.stream];
  if (section.why === "all") return `--- ${section.stream} ---`;
  if (section.why === "range") {
    return `--- ${section.stream}, bytes ${number.format(section.offset)}-` +
      `${number.format(section.end_offset)} of ${number.format(total.bytes)} ` +
      `(lines ${number.format(section.first_line)}-${number.format(section.last_line)}) ---`;
  }
  const lines = section.first_line === section.last_line
    ? `line ${number.format(section.first_line)}`
    : `lines ${number.format(section.first_line)}-${number.format(section.last_line)}`;
  return `--- ${section.stream}, ${lines} of ${number.format(total.lines)}${WHY[section.why]} ---`;
}

/**
 * The sections with headers, then what was left out and the job_output calls that fetch it.
 * Says so when there is no output at all.
 */
export function formatOutput(result: JobsOutputResult): string {
  const out: string[] = [];
  for (const section of result.sections) {
    out.push(header(section, result.totals));
    out.push(section.text.endsWith("\n") ? section.text.slice(0, -1) : section.text);
  }
  const { stdout, stderr } = result.totals;
  if (result.sections.length === 0) {
    out.push(
      stdout.bytes + stderr.bytes === 0
        ? "(no output)"
        : result.matches === 0
        ? "(no line matched)"
        : "(nothing in the requested range)",
    );
  }
  const notes: string[] = [];
  if (result.matches !== undefined) {
    notes.push(`${number.format(result.matches)} matching line(s) in all`);
  }
  if (result.omitted_lines > 0 || result.omitted_bytes > 0) {
    notes.push(
      `not shown: ${number.format(result.omitted_lines)} line(s), ${
        humanBytes(result.omitted_bytes)
      } of ${humanBytes(stdout.bytes + stderr.bytes)}`,
    );
  }
  if (result.truncated) notes.push("cut to fit the token budget");
  if (result.incomplete) notes.push(`incomplete: ${result.incomplete}`);
  if (result.last_output) {
    out.push("--- the last characters of the output (both streams, kept by history) ---");
    out.push(lastChars(result.last_output, 2000));
  }
  if (notes.length > 0) out.push(`[${notes.join("; ")}]`);
  const more = howToGetMore(result);
  if (more) out.push(more);
  return out.join("\n");
}

/** The last `chars` characters of `text`, marked when cut. */
function lastChars(text: string, chars: number): string {
  return text.length <= chars ? text : `… ${text.slice(-chars)}`;
}

function howToGetMore(result: JobsOutputResult): string | null {
  const id = JSON.stringify(result.job_id);
  if (result.next_offset !== undefined && result.next_offset !== null) {
    const stream = result.sections[0]?.stream ?? "stdout";
    return `[More: job_output {"job_id":${id},"stream":"${stream}","offset":${result.next_offset}}]`;
  }
  if (result.omitted_bytes === 0 && !result.truncated) return null;
  return `[More with job_output: {"job_id":${id},"grep":"<regex>","context_lines":3} for ` +
    `matching lines, {"job_id":${id},"tail_lines":200} for the end, or ` +
    `{"job_id":${id},"stream":"stdout","offset":0} for raw text from a byte offset]`;
}

/** One line on how a wait ended. */
export function describeWait(result: JobsWaitResult): string {
  const seconds = (result.waited_ms / 1000).toFixed(1);
  switch (result.reason) {
    case "matched": {
      const { stream, line, text } = result.match!;
      const shown = text.length > 300 ? `${text.slice(0, 300)} …` : text;
      return `matched after ${seconds} s: ${stream} line ${line}: ${shown}`;
    }
    case "finished":
      return `the job ended (${result.status}${
        result.exit_code === null ? "" : `, exit ${result.exit_code}`
      })`;
    case "idle":
      return `the job wrote nothing for the idle time asked for (waited ${seconds} s)`;
    case "timeout":
      return `still ${result.status} after waiting ${seconds} s`;
  }
}

/**
 * The last guard: a result over its budget is cut, and says so (sections are sized to fit, so
 * this only catches headers on many small sections).
 */
export function fitToBudget(text: string, chars: number): string {
  if (text.length <= chars) return text;
  const note = `\n[result cut at ${
    number.format(chars)
  } characters to fit the token budget; ask job_output for less, e.g. tail_lines or grep]`;
  return text.slice(0, Math.max(0, chars - note.length)) + note;
}
