/**
 * `cc-executor run "<command>"`: run one command on the server, stream its
 * output to this terminal, exit with its exit code.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { Command, Option } from "@commander-js/extra-typings";
import {
  ConnectionClosedError,
  type ExecuteOutcome,
  type ExecutorClient,
  ExecutorRpcError,
} from "../server/client.ts";
import { isLoopbackHost } from "../server/config.ts";
import { ErrorCode, type ExecuteParams, type JobQueuedParams } from "../server/protocol.ts";
import { keyValue, positiveInt, seconds } from "./args.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import { Interrupts } from "./interrupts.ts";
import type { LocalServer } from "./local.ts";
import { EXIT, exitCodeFor, outcomeJson, summarize } from "./outcome.ts";
import { CliError, type Output, UsageError } from "./output.ts";
import { connectTo, resolveTarget, START_HINT, type Target, withTarget } from "./target.ts";

export interface RunOptions {
  timeout?: number;
  idleTimeout?: number;
  cwd?: string;
  env?: Record<string, string>;
  stdinFile?: string;
  maxOutput?: number;
  id?: string;
  detach?: true;
  json?: true;
  quiet?: true;
  local?: true;
  url?: string;
  token?: string;
  prompt?: string;
  node?: string;
  labels?: string[];
  retryOnNodeLoss?: true;
  concurrencyKey?: string;
  model?: string;
  outputFormat?: "text" | "json" | "stream-json";
  claudeArg?: string[];
  retry?: number;
}

/** `run`. */
export function runCommand(ctx: CliContext) {
  return withTarget(
    new Command("run")
      .description(
        "run a shell command on the server, streaming its stdout and stderr here; exits with its exit code",
      )
      .argument("[command...]", "the command line, run as <shell> -c <command>")
      .option("--prompt <text>", "run Claude with this prompt instead (claude -p, no shell)")
      .option("--model <name>", "with --prompt: the Claude model")
      .addOption(
        new Option("--output-format <format>", "with --prompt: Claude's output (default: text)")
          .choices(["text", "json", "stream-json"] as const),
      )
      .option(
        "--claude-arg <arg>",
        "with --prompt: one more argument for claude, as --name=value (repeatable)",
        (value: string, previous: string[] = []) => [...previous, value],
      )
      .option(
        "--retry <attempts>",
        "with --prompt: run up to this many times in all after a limit (concise prompt, or a wait)",
        positiveInt,
      )
      .option("--timeout <seconds>", "stop it after this long (exit 124)", seconds)
      .option("--idle-timeout <seconds>", "stop it when it prints nothing for this long", seconds)
      .option("--cwd <dir>", "working directory (default: this directory, on a local server)")
      .option("-e, --env <KEY=value>", "set a variable for the command (repeatable)", keyValue)
      .option("--stdin-file <path>", "feed this file to the command's stdin ('-': this stdin)")
      .option("--max-output <bytes>", "deliver at most this many bytes of output", positiveInt)
      .option("--id <job_id>", "choose the job id (a retry with the same id attaches instead)")
      .option("-d, --detach", "start it, print the job id, and return; it keeps running")
      .option("--node <id>", "run it on this node of the cluster (docs/cluster.md)")
      .option(
        "--labels <a,b>",
        "run it on a node of the cluster that has all these labels",
        (value: string) => value.split(",").map((label) => label.trim()).filter(Boolean),
      )
      .option(
        "--concurrency-key <key>",
        "wait until no other job with this key runs (across the cluster), e.g. a repo path",
      )
      .option(
        "--retry-on-node-loss",
        "with --node or --labels: run it again elsewhere if its node dies (instead of lost)",
      )
      .option("--json", "print one JSON object with the outcome and output, instead of streaming")
      .option(
        "-q, --quiet",
        "print none of the command's output or cc-executor's notes; exit code only",
      )
      .option("--local", "run it in an in-process server (no server needed)"),
  )
    .passThroughOptions()
    .addHelpText(
      "after",
      `
Options go before the command; everything after it belongs to the command.
Exit codes: the command's own; 128+N when signal N ended it; 124 on timeout;
130 after Ctrl-C (which cancels the job); 125 when cc-executor could not run it;
126 when a hook or the command policy of the server refused it.
${
        examples([
          ['cc-executor run "npm test"', "run in this directory on the local server"],
          ["cc-executor run -- ls -la /tmp", "words after -- are joined with spaces"],
          ['cc-executor run --timeout 60 --env CI=1 "make check"', ""],
          ['cc-executor run --json "git status --short" | jq .stdout', ""],
          ['id=$(cc-executor run --detach "sleep 600")', "then: cc-executor jobs attach $id"],
          ['cc-executor run --local "echo works without a server"', ""],
          ['cc-executor run --labels gpu,linux "nvidia-smi"', "on a node of the cluster with both"],
          [
            'cc-executor run --concurrency-key "$PWD" "npm install"',
            "one at a time in this repo",
          ],
          [
            'cc-executor run --prompt "summarise README.md" --retry 3',
            "claude -p, retried after limits",
          ],
        ])
      }`,
    )
    .action(async (words, options) => {
      ctx.setExitCode(await run(words.join(" "), options, ctx.output));
    });
}

/** The prompt options make sense only with --prompt, and a prompt replaces the command. */
function checkPromptOptions(command: string, options: RunOptions): void {
  if (options.prompt === undefined) {
    const stray = [
      ["--model", options.model],
      ["--output-format", options.outputFormat],
      ["--claude-arg", options.claudeArg],
      ["--retry", options.retry],
    ].find(([, value]) => value !== undefined);
    if (stray) throw new UsageError(`run: ${stray[0]} goes with --prompt`);
    checkRouteOptions(options);
    if (command.trim() === "") throw new UsageError("run: the command is empty");
    return;
  }
  if (command.trim() !== "") {
    throw new UsageError("run: give a command or --prompt, not both");
  }
  if (options.prompt.trim() === "") throw new UsageError("run: the prompt is empty");
  checkRouteOptions(options);
  if (options.retry !== undefined && options.retry > 1 && options.stdinFile !== undefined) {
    // The input is streamed once, to the first run: a retry would run without it.
    throw new UsageError(
      "run: --retry cannot be used with --stdin-file (a retry would get no input)",
    );
  }
}

/** Where a job may go: a node or labels, and a retry only with one of them. */
function checkRouteOptions(options: RunOptions): void {
  if (options.node !== undefined && options.labels !== undefined) {
    throw new UsageError("run: give --node or --labels, not both");
  }
  if (options.labels !== undefined && options.labels.length === 0) {
    throw new UsageError("run: --labels needs at least one label");
  }
  if (options.retryOnNodeLoss && options.node === undefined && options.labels === undefined) {
    throw new UsageError("run: --retry-on-node-loss goes with --node or --labels");
  }
  if (options.local && (options.node !== undefined || options.labels !== undefined)) {
    throw new UsageError("run: --local runs here; --node and --labels need a cluster's server");
  }
}

async function run(command: string, options: RunOptions, output: Output): Promise<number> {
  checkPromptOptions(command, options);
  if (options.local && options.url !== undefined) {
    throw new UsageError("run: --local and --url cannot be used together");
  }
  if (options.local && options.detach) {
    throw new UsageError(
      "run: --local and --detach cannot be used together (the server ends with this command)",
    );
  }
  // First signal: cancel the job and wait for its outcome. Second: stop waiting (the server
  // cancels a job whose connection closes; an in-process server's jobs are killed at once).
  // Later ones are ignored while the in-process server, if any, winds down.
  const state: FollowState = {
    cancel: new AbortController(),
    leave: Promise.withResolvers<void>(),
    jobId: undefined,
    brokenPipe: false,
    signalExitCode: () => interrupts.exitCode,
  };
  using interrupts = new Interrupts((count) => {
    if (count === 1) {
      if (!options.quiet && state.jobId && !options.detach) {
        output.err(`cc-executor: canceling job ${state.jobId} (Ctrl-C again to stop waiting)`);
      }
      state.cancel.abort();
    } else if (count === 2) {
      state.local?.server.jobs.killAll();
      state.leave.resolve();
    }
  });
  // Loaded only here: the server's modules are most of what the CLI would otherwise load at start.
  const local = state.local = options.local
    ? await (await import("./local.ts")).startLocalServer(EXIT.EXECUTOR_ERROR)
    : undefined;
  try {
    const target = local?.target ?? resolveTarget(options);
    const params = buildParams(command, options, target);
    const stdin = options.stdinFile !== undefined ? await openStdin(options.stdinFile) : undefined;
    await using client = await connectTo(target, {
      exitCode: EXIT.EXECUTOR_ERROR,
      hint: `${START_HINT}, or run it in-process: cc-executor run --local ${
        options.prompt === undefined ? JSON.stringify(command) : "--prompt ..."
      }`,
    });
    // Interrupted before anything started: nothing to cancel.
    if (interrupts.exitCode !== null) return interrupts.exitCode;
    state.jobId = params.job_id;
    if (options.detach) return await startDetachedJob(client, params, stdin, options, output);
    return await follow(client, params, stdin, state, options, output);
  } finally {
    await local?.[Symbol.asyncDispose]();
  }
}

interface FollowState {
  /** Aborted to cancel the job. */
  cancel: AbortController;
  /** Resolved to stop waiting for the outcome. */
  leave: PromiseWithResolvers<void>;
  jobId: string | undefined;
  brokenPipe: boolean;
  /** 128 + the first signal this command received; null while none has. */
  signalExitCode: () => number | null;
  /** The in-process server of --local. */
  local?: LocalServer;
}

function buildParams(command: string, options: RunOptions, target: Target): ExecuteParams {
  const local = isLoopbackHost(new URL(target.url).hostname.replace(/^\[(.*)\]$/, "$1"));
  let cwd = options.cwd;
  // A local server shares this filesystem: run where the user is, as a shell would. A remote one
  // has its own, so its default (and paths as given) apply; so does the node a routed job goes to.
  const routed = options.node !== undefined || options.labels !== undefined;
  if (local && !routed) cwd = cwd === undefined ? Deno.cwd() : isAbsolute(cwd) ? cwd : resolve(cwd);
  const what: Pick<ExecuteParams, "command" | "prompt" | "claude" | "retry"> =
    options.prompt === undefined ? { command } : {
      prompt: options.prompt,
      // Text by default: a person reads the answer; stream-json is for programs (--json, pipes).
      claude: {
        output_format: options.outputFormat ?? "text",
        model: options.model,
        args: options.claudeArg,
      },
      retry: options.retry === undefined ? undefined : { max_attempts: options.retry },
    };
  return {
    ...what,
    timeout: options.timeout,
    idle_timeout: options.idleTimeout,
    cwd,
    env: options.env,
    max_output_bytes: options.maxOutput,
    job_id: options.id ?? crypto.randomUUID(),
    detach: options.detach,
    node: options.node,
    labels: options.labels,
    retry_on_node_loss: options.retryOnNodeLoss,
    concurrency_key: options.concurrencyKey,
    keep_stdin_open: options.stdinFile !== undefined ? true : undefined,
  };
}

/** How long a routed job may wait in its queue before `run` says that it does. */
const QUEUED_NOTE_AFTER_MS = 1000;

async function startDetachedJob(
  client: ExecutorClient,
  params: ExecuteParams,
  stdin: ReadableStream<Uint8Array> | undefined,
  options: RunOptions,
  output: Output,
): Promise<number> {
  // A routed job waiting in the cluster's queue is as good as started: it runs when a node is
  // free, without this command. (Unless it needs our input, which it can take only once running.)
  const queued = Promise.withResolvers<JobQueuedParams>();
  const stopWatching = client.onNotification(({ method, params: p }) => {
    const note = p as JobQueuedParams;
    if (method === "job.queued" && note.job_id === params.job_id) queued.resolve(note);
  });
  const first = await request(() =>
    Promise.race([
      client.request("execute", params),
      stdin ? new Promise<never>(() => {}) : queued.promise,
    ])
  ).finally(stopWatching);
  if ("queue" in first) {
    if (options.json) output.json({ job_id: first.job_id, status: "queued", queue: first.queue });
    else output.out(first.job_id);
    return 0;
  }
  const started = first;
  if (stdin) {
    try {
      await feedStdin(client, started.job_id, stdin, options.stdinFile!);
    } catch (error) {
      // Half an input is worse than none: the job must not run on with it.
      await client.cancel(started.job_id).catch(() => {});
      if (error instanceof CliError) {
        throw new CliError(`${error.message}; job ${started.job_id} was canceled`, error.exitCode);
      }
      throw error;
    }
  }
  if (options.json) output.json(started);
  else output.out(started.job_id);
  return 0;
}

async function follow(
  client: ExecutorClient,
  params: ExecuteParams,
  stdin: ReadableStream<Uint8Array> | undefined,
  state: FollowState,
  options: RunOptions,
  output: Output,
): Promise<number> {
  const jobId = params.job_id!;
  const quiet = options.quiet || options.json;
  const write = (stream: "stdout" | "stderr") => (text: string) => {
    if (quiet || state.brokenPipe) return;
    try {
      output.write(stream, text);
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      // Nobody reads any more (`| head`): stop the job, as SIGPIPE would have stopped it locally.
      state.brokenPipe = true;
      state.cancel.abort();
    }
  };
  let stdinFailure: CliError | undefined;
  // A routed job is queued first; most start at once, so only a wait worth mentioning is told.
  let running = false;
  let queuedNote: ReturnType<typeof setTimeout> | undefined;
  const stopWatching = client.onNotification(({ method, params: p }) => {
    const note = p as JobQueuedParams;
    if (method !== "job.queued" || note.job_id !== jobId || quiet) return;
    queuedNote = setTimeout(() => {
      if (running || state.brokenPipe) return;
      output.err(
        `cc-executor: queued in ${note.queue} (${note.waiting} in it); it starts when ${
          note.queue.startsWith("key:")
            ? "the jobs before it with its concurrency key have ended"
            : "a node is free"
        }`,
      );
    }, QUEUED_NOTE_AFTER_MS);
  });
  const outcome = client.execute({
    ...params,
    onStdout: write("stdout"),
    onStderr: write("stderr"),
    onEvent: (event) => {
      if (event.method === "process.started") running = true;
      if (event.method !== "process.started" || !stdin) return;
      feedStdin(client, jobId, stdin, options.stdinFile!).catch((error) => {
        // Reading the input failed: the job must not run on with half of it.
        stdinFailure = error instanceof CliError
          ? error
          : new CliError(`--stdin-file ${options.stdinFile}: ${error?.message ?? error}`, 2);
        state.cancel.abort();
      });
    },
    signal: state.cancel.signal,
    collect: Boolean(options.json),
  });
  const result = await Promise.race([request(() => outcome), state.leave.promise])
    .finally(() => {
      stopWatching();
      clearTimeout(queuedNote);
    });
  if (result === undefined) return state.signalExitCode() ?? EXIT.INTERRUPTED;
  if (stdinFailure) {
    throw new CliError(`${stdinFailure.message}; job ${jobId} was canceled`, stdinFailure.exitCode);
  }
  return report(result, options, output, state);
}

function report(
  outcome: ExecuteOutcome,
  options: RunOptions,
  output: Output,
  state: FollowState,
): number {
  if (options.json) output.json(outcomeJson(outcome, true));
  else if (!options.quiet && !state.brokenPipe) {
    const summary = summarize(outcome);
    if (summary) output.err(`cc-executor: ${summary}`);
  }
  if (state.brokenPipe) return EXIT.BROKEN_PIPE;
  return state.signalExitCode() ?? exitCodeFor(outcome);
}

/** The file (or this process's stdin) for --stdin-file, opened before the job starts. */
async function openStdin(path: string): Promise<ReadableStream<Uint8Array>> {
  if (path === "-") return Deno.stdin.readable;
  try {
    const file = await Deno.open(path);
    if ((await file.stat()).isDirectory) {
      file.close();
      throw new UsageError(`--stdin-file ${path}: is a directory`);
    }
    return file.readable;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`--stdin-file ${path}: ${(error as Error).message}`);
  }
}

/**
 * Streams `input` into the job's stdin, then closes it. Input that is not UTF-8 is refused rather
 * than altered: the protocol carries text, and replacing bytes would change the data silently.
 */
async function feedStdin(
  client: ExecutorClient,
  jobId: string,
  input: ReadableStream<Uint8Array>,
  path: string,
): Promise<void> {
  try {
    // The decoder never splits a character across writes.
    for await (const text of input.pipeThrough(new TextDecoderStream("utf-8", { fatal: true }))) {
      await client.input(jobId, text);
    }
    await client.input(jobId, "", { eof: true });
  } catch (error) {
    // The command closed its stdin or ended: what it did not read is its business, as with a pipe.
    if (error instanceof ExecutorRpcError || error instanceof ConnectionClosedError) return;
    if (error instanceof TypeError) {
      throw new UsageError(
        `--stdin-file ${path} is not UTF-8 text; the protocol carries text, so binary input ` +
          "cannot be passed (encode it, e.g. with base64)",
      );
    }
    throw error;
  }
}

/** Turns the server's refusals and a lost connection into messages and exit codes. */
async function request<T>(send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (error) {
    if (error instanceof ExecutorRpcError) {
      if (error.code === ErrorCode.INVALID_PARAMS) throw new UsageError(error.message);
      if (error.code === ErrorCode.HOOK_BLOCKED || error.code === ErrorCode.POLICY_DENIED) {
        throw new CliError(error.message, EXIT.BLOCKED);
      }
      throw new CliError(error.message, EXIT.EXECUTOR_ERROR);
    }
    if (error instanceof ConnectionClosedError) {
      throw new CliError(`Lost the server: ${error.message}`, EXIT.EXECUTOR_ERROR);
    }
    throw error;
  }
}
