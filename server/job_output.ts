/**
 * `jobs.output`: a job's output read back from its spool, whole or shaped (by offset, head, tail,
 * grep, or fitted to a byte budget), with counts of what was left out.
 *
 * @module
 */
import { leftMemory } from "./job_wait.ts";
import type { Job } from "./jobs.ts";
import {
  type OutputView,
  SECTION_OVERHEAD_BYTES,
  type ViewMode,
  viewOutput,
} from "./output_view.ts";
import type { SpoolStream } from "./output_spool.ts";
import type { JobsOutputParams, JobsOutputResult } from "./protocol.ts";

/** Text one answer carries when the request names no max_bytes. */
export const DEFAULT_OUTPUT_BYTES = 64 * 1024;

/** What `jobs.output` answers for `job`. */
export async function readJobOutput(
  job: Job,
  params: Omit<JobsOutputParams, "job_id">,
): Promise<JobsOutputResult> {
  try {
    return await read(job, params);
  } catch (error) {
    throw leftMemory(job, error);
  }
}

async function read(
  job: Job,
  params: Omit<JobsOutputParams, "job_id">,
): Promise<JobsOutputResult> {
  const streams: SpoolStream[] = params.stream === undefined || params.stream === "both"
    ? ["stdout", "stderr"]
    : [params.stream];
  const mode = modeOf(params);
  const budget = params.max_bytes ?? DEFAULT_OUTPUT_BYTES;
  const view: OutputView = await viewOutput(job.spool, {
    streams,
    mode,
    // Each section is charged for the header a reader prints above it (the MCP text), so many
    // small sections cannot push the answer past its budget. A range is one section of raw text:
    // max_bytes of it, as asked.
    budgetBytes: mode.kind === "range" ? budget + SECTION_OVERHEAD_BYTES : budget,
  });
  const lost = job.spool.lost;
  const incomplete = lost
    ? `${lost.stream} after byte ${lost.offset} was not kept: ${lost.reason}`
    : job.truncated
    ? "the job reached its max_output_bytes; what it wrote past that was not delivered"
    : null;
  return {
    job_id: job.id,
    status: job.status,
    totals: {
      stdout: await totals(job, "stdout", view),
      stderr: await totals(job, "stderr", view),
    },
    sections: view.sections,
    omitted_bytes: view.omitted_bytes,
    omitted_lines: view.omitted_lines,
    truncated: view.truncated,
    ...(view.matches === undefined ? {} : { matches: view.matches }),
    ...(view.next_offset === undefined ? {} : { next_offset: view.next_offset }),
    incomplete,
    ...(lost ? { last_output: job.outputTail || job.outputHead } : {}),
  };
}

/** What the view counted for a stream it showed, else counted now. */
async function totals(job: Job, stream: SpoolStream, view: OutputView) {
  const counted = view.totals[stream];
  if (counted) return counted;
  const bytes = job.spool.bytes(stream);
  return { bytes, lines: await job.spool.countLines(stream, bytes) };
}

function modeOf(params: Omit<JobsOutputParams, "job_id">): ViewMode {
  if (params.offset !== undefined) return { kind: "range", offset: params.offset };
  if (params.head_lines !== undefined) return { kind: "head", lines: params.head_lines };
  if (params.tail_lines !== undefined) return { kind: "tail", lines: params.tail_lines };
  if (params.grep !== undefined) {
    return {
      kind: "grep",
      pattern: new RegExp(params.grep, params.ignore_case ? "i" : ""),
      context: params.context_lines ?? 0,
      maxMatches: params.max_matches ?? 200,
    };
  }
  return { kind: "summary" };
}
