/**
 * Picking one job's frames out of a connection's transcript: each scenario
 * job gets a client-chosen id (`assess-<what>-<random>`), and every frame
 * about the job carries it somewhere.
 *
 * @module
 */
import type { TranscriptEntry } from "./raw_client.ts";

/** A job id unique to this run. */
export function jobId(what: string): string {
  return `assess-${what}-${crypto.randomUUID().slice(0, 8)}`;
}

/** The transcript entries of one job: its request, the response and its notifications. */
export function ofJob(id: string): (entry: TranscriptEntry) => boolean {
  return ({ frame }) =>
    frame?.params?.job_id === id || frame?.result?.job_id === id ||
    frame?.error?.data?.job_id === id;
}
