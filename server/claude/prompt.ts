/**
 * An `execute` with a `prompt`: the server builds the `claude -p` run itself,
 * as an argv run with no shell, so no text in the prompt (quotes, `$(...)`,
 * newlines, a leading `-`) can be read as anything but the prompt.
 *
 * @module
 */
import type { JobParams } from "../jobs.ts";
import { ErrorCode, type ExecuteParams, RpcError } from "../protocol.ts";
import { claudeArgv, shellQuoteArgv } from "./invocation.ts";

/**
 * What a job runs for `params`: the command as given, or for a prompt the argv of `claude -p`
 * (stream-json unless asked otherwise) with its quoted form as the command shown and recorded.
 *
 * @throws {RpcError} INVALID_PARAMS when the claude options would change how the prompt is read.
 */
export function toJobParams(params: ExecuteParams, claudeBin: string): JobParams {
  // (retry is kept in claudeRun below, for a prompt job only: the schema allows it nowhere else.)
  const { prompt, claude, command, retry: _retry, ...rest } = params;
  if (prompt === undefined) return { ...rest, command: command! };
  let argv: string[];
  const outputFormat = claude?.output_format ?? "stream-json";
  try {
    argv = claudeArgv(prompt, {
      program: claudeBin,
      outputFormat,
      model: claude?.model,
      extraArgs: claude?.args,
    });
  } catch (error) {
    throw new RpcError(
      ErrorCode.INVALID_PARAMS,
      `Invalid params for "execute": ${(error as Error).message}`,
      {
        issues: [{
          path: (error as Error).message.includes("extra argument") ? "claude.args" : "prompt",
          message: (error as Error).message,
          code: "custom",
        }],
      },
    );
  }
  return {
    ...rest,
    command: shellQuoteArgv(argv),
    argv,
    claudeOutputFormat: outputFormat,
    claudeRun: {
      prompt,
      program: claudeBin,
      outputFormat,
      model: claude?.model,
      args: claude?.args,
      retry: params.retry,
    },
  };
}
