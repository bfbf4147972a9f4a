/**
 * What every command group gets: where to print, and how to set the exit
 * code (main.ts is the only place that exits).
 *
 * @module
 */
import type { Output } from "./output.ts";

export interface CliContext {
  output: Output;
  /** The process exits with this once the command's action has finished. */
  setExitCode(code: number): void;
}
