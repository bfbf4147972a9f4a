/**
 * `cc-executor jobs list|attach|cancel|pause|resume`: the jobs a server
 * holds (running, and the recently finished it keeps in memory).
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import type { ExecuteOutcome, ExecutorClient } from "../server/client.ts";
import { type ClusterJob, type JobInfo, JobStatus } from "../server/protocol.ts";
import { oneOf, positiveInt } from "./args.ts";
import type { CliContext } from "./context.ts";
import { examples } from "./help.ts";
import { Interrupts } from "./interrupts.ts";
import { EXIT, exitCodeFor, outcomeJson, summarize } from "./outcome.ts";
import { formatDuration, type Output, type Paint, type Spinner, UsageError } from "./output.ts";
import { connectTo, resolveTarget, rpc, type TargetOptions, withTarget } from "./target.ts";

/** `jobs` and its subcommands. */
export function jobsCommand(ctx: CliContext) {
  const jobs = new Command("jobs").description("list, follow and control the server's jobs")
    .addHelpText(
      "after",
      examples([
        ["cc-executor jobs list", ""],
        ["cc-executor jobs attach 3c8e…", "replay its output, follow it, exit with its code"],
        ["cc-executor jobs cancel 3c8e…", ""],
      ]),
    );

  withTarget(
    jobs.command("list").alias("ls").description("list running and recent jobs, newest first"),
  )
    .option(
      "--status <status>",
      `only jobs with this status (${JobStatus.options.join(", ")})`,
      oneOf(JobStatus.options),
    )
    .option("--limit <n>", "at most this many", positiveInt)
    .option(
      "--all-nodes",
      "the running jobs of every node of the cluster, from the shared records (docs/cluster.md)",
    )
    .option("--json", "print the jobs as a JSON array")
    .addHelpText(
      "after",
      examples([
        ["cc-executor jobs list --status running", ""],
        ["cc-executor jobs list --json | jq '.[].job_id'", ""],
        ["cc-executor jobs list --all-nodes", "what runs where, and on nodes that are down"],
      ]),
    )
    .action(async (options) => {
      await using client = await connectTo(resolveTarget(options));
      if (options.allNodes) {
        if (options.status !== undefined && options.status !== "running") {
          throw new UsageError(
            "jobs list: --all-nodes lists running jobs; for others use `history list --status`",
          );
        }
        const { jobs } = await rpc(() => client.request("cluster.jobs", { limit: options.limit }));
        if (options.json) return ctx.output.json(jobs);
        if (jobs.length === 0) return ctx.output.err("no job is running on any node");
        ctx.output.table(["JOB", "NODE", "STARTED", "COMMAND"], jobs.map(clusterJobRow));
        return;
      }
      const { jobs } = await rpc(() =>
        client.request("jobs.list", { status: options.status, limit: options.limit })
      );
      if (options.json) return ctx.output.json(jobs);
      if (jobs.length === 0) return ctx.output.err("no jobs");
      const paint = ctx.output.paint("stdout");
      ctx.output.table(
        ["JOB", "STATUS", "EXIT", "DURATION", "STARTED", "COMMAND"],
        jobs.map((job) => jobRow(job, paint)),
      );
    });

  withTarget(
    jobs.command("attach").description(
      "replay a job's output, follow it until it ends, and exit with its exit code (Ctrl-C stops following; the job keeps running)",
    ),
  )
    .argument("<job_id>")
    .option("-q, --quiet", "print none of its output; wait and exit with its code")
    .option("--json", "print one JSON object with the outcome and output at the end")
    .addHelpText("after", examples([["cc-executor jobs attach 3c8e…", ""]]))
    .action(async (jobId, options) => {
      ctx.setExitCode(await attach(jobId, options, ctx.output));
    });

  for (const action of ["cancel", "pause", "resume"] as const) {
    const what = {
      cancel:
        "cancel a job: SIGTERM to its process group, a grace period, SIGKILL; waits for its outcome",
      pause: "pause a job (SIGSTOP to its whole process group)",
      resume: "resume a paused job (SIGCONT)",
    }[action];
    const command = withTarget(jobs.command(action).description(what))
      .argument("<job_id>")
      .addHelpText("after", examples([[`cc-executor jobs ${action} 3c8e…`, ""]]));
    if (action === "cancel") {
      command.option(
        "--no-wait",
        "return once the cancel is sent, without waiting for the outcome",
      );
    }
    command.action(async (jobId, options: TargetOptions & { wait?: boolean }) => {
      await using client = await connectTo(resolveTarget(options));
      if (action === "cancel" && options.wait !== false) {
        const outcome = await cancelAndWait(client, jobId);
        ctx.output.out(
          `job ${jobId}: ${outcome.status}${outcome.error ? ` (${outcome.error})` : ""}`,
        );
        return;
      }
      const result = await rpc(() => client.request("control", { type: action, job_id: jobId }));
      // A cancel without waiting has only been asked for: the job is still stopping.
      ctx.output.out(
        action === "cancel" ? `job ${jobId}: cancel sent` : `job ${jobId}: ${result.status}`,
      );
    });
  }
  return jobs;
}

function jobRow(job: JobInfo, paint: Paint): string[] {
  const status = job.status === "completed"
    ? paint.green(job.status)
    : job.status === "running" || job.status === "paused"
    ? paint.yellow(job.status)
    : paint.red(job.status);
  const exit = job.exit_code !== null ? String(job.exit_code) : job.signal ?? "";
  const duration = job.duration_ms !== null
    ? formatDuration(job.duration_ms)
    : formatDuration(Date.now() - Date.parse(job.started_at));
  const command = job.command.replace(/\s+/g, " ");
  return [
    job.job_id,
    status,
    exit,
    duration,
    job.started_at.replace("T", " ").replace(/\.\d+Z$/, "Z"),
    command.length > 60 ? command.slice(0, 59) + "…" : command,
  ];
}

function clusterJobRow(job: ClusterJob): string[] {
  const command = job.command.replace(/\s+/g, " ");
  return [
    job.job_id,
    job.node_status === "up" ? job.node_id : `${job.node_id} (${job.node_status})`,
    job.started_at.replace("T", " ").replace(/\.\d+Z$/, "Z"),
    command.length > 60 ? command.slice(0, 59) + "…" : command,
  ];
}

async function attach(
  jobId: string,
  options: TargetOptions & { quiet?: true; json?: true },
  output: Output,
): Promise<number> {
  // Ctrl-C stops following; the job was started elsewhere and keeps running.
  const stopFollowing = Promise.withResolvers<number>();
  // Set once connected; the interrupt handler may run before that.
  const waiting: { spinner?: Spinner } = {};
  using interrupts = new Interrupts(() => {
    waiting.spinner?.stop();
    if (!options.quiet) {
      output.err(
        `cc-executor: stopped following job ${jobId}; it keeps running (cc-executor jobs cancel ${jobId})`,
      );
    }
    stopFollowing.resolve(interrupts.exitCode!);
  });
  await using client = await connectTo(resolveTarget(options), {
    exitCode: EXIT.EXECUTOR_ERROR,
  });
  if (interrupts.exitCode !== null) return interrupts.exitCode;
  const spinner = waiting.spinner = output.spinner(`waiting for output from job ${jobId}`);
  let broken = false;
  const write = (stream: "stdout" | "stderr") => (text: string) => {
    spinner.stop();
    if (options.quiet || options.json || broken) return;
    try {
      output.write(stream, text);
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      broken = true;
      stopFollowing.resolve(EXIT.BROKEN_PIPE);
    }
  };
  try {
    const outcome = client.subscribe(jobId, {
      fromSeq: 0,
      onStdout: write("stdout"),
      onStderr: write("stderr"),
      collect: Boolean(options.json),
      onSubscribed: ({ missed, replay_from_seq }) => {
        // The replay buffer is bounded: say so rather than pass off a tail as the whole output.
        if (missed > 0 && !options.quiet && !options.json) {
          spinner.stop();
          output.err(
            `cc-executor: the server no longer holds the start of job ${jobId}'s output; ` +
              `replaying from notification ${
                replay_from_seq ?? "(none)"
              } (${missed} earlier ones dropped)`,
          );
        }
      },
    });
    const result = await Promise.race([
      rpc(() => outcome, EXIT.EXECUTOR_ERROR),
      stopFollowing.promise,
    ]);
    if (typeof result === "number") return result;
    return finish(result, options, output);
  } finally {
    spinner.stop();
  }
}

function finish(outcome: ExecuteOutcome, options: { quiet?: true; json?: true }, output: Output) {
  if (options.json) output.json(outcomeJson(outcome, true));
  else if (!options.quiet) {
    const summary = summarize(outcome);
    if (summary) output.err(`cc-executor: ${summary}`);
  }
  return exitCodeFor(outcome);
}

/** Sends CANCEL and follows the job, from what it has already sent, until its outcome. */
async function cancelAndWait(client: ExecutorClient, jobId: string): Promise<ExecuteOutcome> {
  const info = await rpc(() => client.request("jobs.get", { job_id: jobId }));
  const outcome = client.subscribe(jobId, { fromSeq: info.last_seq + 1, collect: false });
  outcome.catch(() => {});
  await rpc(() => client.request("control", { type: "CANCEL", job_id: jobId }));
  return await rpc(() => outcome);
}
