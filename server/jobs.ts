/**
 * Job lifecycle: start a command in its own process group, read its output
 * with backpressure, coalesce and fan it out to subscribers, keep a bounded
 * replay buffer, enforce timeouts and the concurrency limit, and end every
 * job with exactly one `process.completed`. Nothing here knows about sockets:
 * subscribers are anything with `send` and `ready`.
 *
 * @module
 */
import type { HookExecution, HookSet, OutputFilter } from "../hooks/runner.ts";
import type { JobOutcome, JobRequest } from "../hooks/types.ts";
import { Coalescer, type Timer, utf8SafeLength } from "./chunker.ts";
import { eligibleTemplates, selectTemplate, type TemplateTally } from "../templates/select.ts";
import type { Template, TemplateSet } from "../templates/loader.ts";
import { renderTemplate } from "../templates/render.ts";
import {
  claudeArgv,
  claudeInvocation,
  type ClaudeOutputFormat,
  shellQuoteArgv,
} from "./claude/invocation.ts";
import type { LimitSignal } from "./claude/limits.ts";
import { type ClaudeNotice, ClaudeWatcher } from "./claude/watcher.ts";
import type { ServerConfig } from "./config.ts";
import { settlesWithin } from "./deadline.ts";
import type { Logger } from "./log.ts";
import { type GroupMode, ProcessGroup, type SpawnSpec } from "./process.ts";
import {
  type ByteCounts,
  type ClaudeRetry,
  type ControlType,
  ErrorCode,
  type ExecuteParams,
  type ExecuteResult,
  type JobInfo,
  type JobNotificationName,
  type JobStatus,
  type NotificationParams,
  RpcError,
  type StreamName,
  TERMINAL_STATUSES,
} from "./protocol.ts";
import type { JobEnvironments } from "./job_env.ts";
import { Admission, UNRESTRICTED } from "./job_admission.ts";
import type { Principal } from "./principal.ts";
import { OutputSpool } from "./output_spool.ts";
import { ReplayBuffer, type ReplaySlice } from "./replay.ts";
import { commandShape, estimateTimeout } from "./store/shape.ts";
import type { Store } from "./store/store.ts";

/**
 * What a job runs: an execute's params with the command settled. `argv`, when set, is run
 * directly with no shell (a command cc-executor built itself); `command` is then its display form.
 */
export type JobParams = Omit<ExecuteParams, "command" | "prompt" | "claude" | "retry"> & {
  command: string;
  argv?: string[];
  /** Set when `argv` is a `claude -p` run cc-executor built: its output format. */
  claudeOutputFormat?: ClaudeOutputFormat;
  /** Set for an execute with a prompt: what a retry needs to build the next run. */
  claudeRun?: ClaudeRun;
  /**
   * Set when this node runs again a job whose node died (retry_on_node_loss): its notifications
   * go on from the dead run's last seq, as the next attempt, and its id is already on record.
   */
  takeOver?: { lastSeq: number; attempt: number };
};

/** How a prompt job's `claude -p` run was built, so a retry can build the next one. */
export interface ClaudeRun {
  prompt: string;
  program: string;
  outputFormat: ClaudeOutputFormat;
  model?: string;
  args?: string[];
  retry?: ClaudeRetry;
}

/** Someone who receives a job's notifications: in practice a WebSocket session. */
export interface Subscriber {
  readonly id: string;
  send(frame: string): void;
  /**
   * Undefined when the subscriber can take more now; otherwise a promise that
   * resolves when it can (or when it has gone away). The job stops reading
   * its pipes until then, so a slow client slows the command, not the heap.
   */
  ready(): Promise<void> | undefined;
}

export type JobManagerConfig = Pick<
  ServerConfig,
  | "nodeId"
  | "timeouts"
  | "historyOutputChars"
  | "maxJobs"
  | "maxJobsPerSession"
  | "maxOutputBytes"
  | "maxTimeoutSeconds"
  | "replayBufferBytes"
  | "finishedReplayBytes"
  | "keepFinishedJobs"
  | "killGraceMs"
  | "coalesceMs"
  | "chunkBytes"
>;

export interface JobManagerOptions {
  config: JobManagerConfig;
  shell: string;
  groupMode: GroupMode;
  logger: Logger;
  /** @default ProcessGroup.spawn */
  spawn?: (spec: SpawnSpec, mode: GroupMode) => ProcessGroup;
  /** Where every job is recorded; without one, jobs live in memory only. */
  store?: Store;
  /** Milliseconds since the epoch. @default Date.now */
  now?: () => number;
  /** Where jobs get their hooks; without it no hooks run. */
  hooks?: JobHooksSource;
  /** The prompt templates Claude retries rewrite prompts with; without them no such retry. */
  templates?: TemplateSet;
  /**
   * Where jobs' output spills once it outgrows memory (server/output_spool.ts), for
   * `jobs.output`; null keeps memory only (64 KiB a job). @default null
   */
  spoolDir?: string | null;
  /** Bytes of each stream of a job the spool keeps. @default Infinity */
  spoolMaxBytes?: number;
  /**
   * The environments commands start from (server/job_env.ts). @default the server's own,
   * inherited whole
   */
  env?: JobEnvironments;
  /** Called once for each job as it starts, before its first notification (the cluster mirror). */
  onJobStarted?: (job: Job) => void;
}

/** The hooks new jobs use (the registry's current set) and how many runs error hooks may ask for. */
export interface JobHooksSource {
  readonly current: HookSet;
  /** Runs a job may get in all (CC_EXECUTOR_HOOK_MAX_ATTEMPTS). */
  readonly maxAttempts: number;
}

/** One job's hooks: the set it started with, and what they did. */
interface JobHooks {
  set: HookSet;
  output: OutputFilter | null;
  /** What ran before the job started (pre_execution), then after each run. */
  executions: HookExecution[];
  attached: Record<string, unknown>;
}

/** Longest wait for a Claude limit to lift when the request names none (max_wait_seconds). */
const DEFAULT_MAX_WAIT_SECONDS = 900;

/** A rate limit's wait when Claude's output gives no retry-after. */
const DEFAULT_RATE_LIMIT_WAIT_SECONDS = 30;

/** Past a usage limit's printed reset (it is to the minute), before running again. */
const RESET_MARGIN_SECONDS = 5;

/** How long hooks may go on after a shutdown's kill grace before they are cut short. */
const SHUTDOWN_HOOK_GRACE_MS = 3000;

/** How a run ended, before hooks decide whether it is the job's outcome. */
interface RunOutcome {
  status: JobStatus;
  reason: string | null;
  exit_code: number | null;
  signal: string | null;
}

/** Executions kept in one job's record (the rest are counted in hooks.status). */
const RECORD_EXECUTIONS_KEPT = 50;

/** Output chunks waiting for the output hooks before the job stops reading its pipes. */
const OUTPUT_HOOK_BACKLOG = 16;

/** Waits between tries of a store write that failed (then it is given up and logged). */
const RECORD_RETRIES_MS = [100, 300, 700, 1500];

/** Shapes whose cut-short timeout is remembered (the oldest is forgotten first). */
const CUT_SHORT_KEPT = 1000;

/** Past durations of a command shape the timeout estimate looks at. */
const TIMING_SAMPLES = 200;

/** Most a pipe read returns at once (Linux's default pipe capacity). */
const READ_BUFFER_BYTES = 64 * 1024;

/** How long the pipes may stay open after the whole group is gone before we stop waiting for EOF. */
const ESCAPED_PIPE_MS = 1000;

/**
 * Most a pipe may deliver after the whole group is gone: the group's leftovers are at most the
 * pipe's capacity, so more means a process outside the group is writing.
 */
const DRAIN_LIMIT_BYTES = 1024 * 1024;

type Cause = { status: "canceled" | "timed_out"; reason: string };

/**
 * Whether a job's next run started; if not, why (null: nothing to say), and whether it was the
 * server's limit on the job's time (CC_EXECUTOR_MAX_TIMEOUT) that stopped it.
 */
type RetryStart = { started: true } | { started: false; why: string | null; timedOut?: boolean };

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** One command run: its process group, output, subscribers and outcome. */
export class Job {
  readonly id: string;
  /** The command that runs: after pre_execution hooks, and an error hook's retry, changed it. */
  command: string;
  /** The command the client asked for (a retried execute with the same job_id must match it). */
  readonly requestedCommand: string;
  /** Where the current run runs (a pre_execution hook may move a retry). */
  cwd: string | null;
  readonly detach: boolean;
  /** The session that started the job; its disconnect cancels the job unless detached. */
  readonly owner: string;
  /** The token whose client started it ("default": the main token, or none). */
  principal = "default";
  readonly startedAt: number;
  /** Resolves after `process.completed` has been sent. */
  readonly done: Promise<void>;

  status: JobStatus = "running";
  endedAt: number | null = null;
  exitCode: number | null = null;
  signal: string | null = null;
  reason: string | null = null;
  truncated = false;
  readonly bytes: ByteCounts = { stdout: 0, stderr: 0 };
  /** The effective wall-clock limit and where it came from. */
  readonly timeout: ExecuteResult["timeout"];
  /** The start and the end of the output (both streams, in order), bounded, for history. */
  outputHead = "";
  outputTail = "";
  /** Everything the job delivered, for `jobs.output`; kept as long as the job is in memory. */
  readonly spool: OutputSpool;

  #seq = 0;
  /** Set once `process.completed` has been emitted. */
  #completed = false;
  #replay: ReplayBuffer;
  #subscribers = new Map<string, Subscriber>();
  #outputBudget: number;
  #cause: Cause | null = null;
  #stopping: Promise<unknown> | null = null;
  #stdin: WritableStreamDefaultWriter<Uint8Array> | null = null;
  #stdinChain: Promise<unknown> = Promise.resolve();
  #lastActivity: number;
  /** performance.now() of the last output delivered (the start until there is some). */
  #lastOutputAt: number;
  /** Told of each delivered chunk and of the end (`jobs.wait`). */
  #watchers = new Set<() => void>();
  #wallTimer: Timer | undefined;
  #idleTimer: Timer | undefined;
  #pumps: Pump[] = [];
  /** Set once no process of the group is left; from then on pipes are read regardless of subscribers. */
  #groupGone = false;
  /** Pumps waiting for slow subscribers; the command is blocked by us then, not idle. */
  #heldBack = 0;
  /** Wake-ups of pumps waiting for slow subscribers. */
  #waiters = new Set<() => void>();
  #resolveDone!: () => void;
  readonly #manager: JobManager;
  #group: ProcessGroup;
  /** 1, then one more for each run an error hook asks for. */
  #attempt = 1;
  readonly #hooks: JobHooks | null;
  /** Output waiting for the output hooks, in order. */
  #outputChain: Promise<void> = Promise.resolve();
  #outputBacklog = 0;
  /** When the current run started, and the byte counts before it: for its attempt record. */
  #runStartedAt: number;
  #runBytesBefore: ByteCounts = { stdout: 0, stderr: 0 };
  /** Every earlier run's command and outcome (retries). */
  #runs: {
    attempt: number;
    command: string;
    status: JobStatus;
    exit_code: number | null;
    signal: string | null;
    reason: string | null;
  }[] = [];
  /** Claude retries: the template the last rewrite used, and the one the current run uses. */
  #lastTemplate: Template | null = null;
  #templateInUse: string | null = null;
  /** Ends a Claude retry's wait early (a cancel). */
  #wakeRetryWait: (() => void) | null = null;
  /** Reads the current run's output when it is a Claude run (docs/claude.md); else null. */
  #claude: ClaudeWatcher | null = null;
  /** Set while hooks run after a run; a cancel then means "no retry". */
  #afterRun = false;
  /** Set when a run was stopped because the job's time under CC_EXECUTOR_MAX_TIMEOUT ran out. */
  #outOfTime = false;
  #noRetry = false;
  #params!: JobParams;
  #config!: JobManagerConfig;

  constructor(
    manager: JobManager,
    id: string,
    params: JobParams,
    owner: string,
    group: ProcessGroup,
    replayBufferBytes: number,
    timeout: ExecuteResult["timeout"],
    hooks: JobHooks | null = null,
    requestedCommand = params.command,
  ) {
    this.#manager = manager;
    this.#group = group;
    this.#hooks = hooks;
    this.#params = params;
    this.timeout = timeout;
    this.id = id;
    this.command = params.command;
    this.requestedCommand = requestedCommand;
    if (hooks) {
      hooks.output = hooks.set.outputFilter(this.#hookBase(), {
        onFailure: (failure) => this.#hookError(failure),
        stop: manager.hookStop,
      });
    }
    this.cwd = params.cwd ?? null;
    this.detach = params.detach ?? false;
    this.owner = owner;
    this.startedAt = manager.now();
    this.#runStartedAt = this.startedAt;
    this.#lastActivity = performance.now();
    this.#lastOutputAt = this.#lastActivity;
    this.spool = new OutputSpool(id, { dir: manager.spoolDir, maxBytes: manager.spoolMaxBytes });
    this.#replay = new ReplayBuffer(replayBufferBytes);
    this.#outputBudget = params.max_output_bytes ?? Infinity;
    if (params.takeOver) {
      this.#seq = params.takeOver.lastSeq;
      this.#attempt = params.takeOver.attempt;
    }
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  /** Whether this run takes over a job from a node that died (see JobParams.takeOver). */
  get takenOver(): boolean {
    return this.#params.takeOver !== undefined;
  }

  /** The process group of the current run. */
  get group(): ProcessGroup {
    return this.#group;
  }

  get attempt(): number {
    return this.#attempt;
  }

  get lastSeq(): number {
    return this.#seq;
  }

  get isFinished(): boolean {
    return TERMINAL_STATUSES.has(this.status);
  }

  get stdinOpen(): boolean {
    return this.#stdin !== null;
  }

  info(): JobInfo {
    return {
      job_id: this.id,
      command: this.command,
      cwd: this.cwd,
      status: this.status,
      pid: this.group.pid,
      pgid: this.group.pgid,
      detach: this.detach,
      started_at: new Date(this.startedAt).toISOString(),
      ended_at: this.endedAt === null ? null : new Date(this.endedAt).toISOString(),
      duration_ms: this.endedAt === null ? null : this.endedAt - this.startedAt,
      exit_code: this.exitCode,
      signal: this.signal,
      bytes: { ...this.bytes },
      truncated: this.truncated,
      last_seq: this.#seq,
      reason: this.reason,
      attempt: this.#attempt,
    };
  }

  // -- subscribers ----------------------------------------------------------

  /**
   * Replays what the buffer holds from `fromSeq`, then follows live. Replay
   * and registration happen in one synchronous step, so nothing falls between.
   */
  subscribe(subscriber: Subscriber, fromSeq = 0): ReplaySlice {
    const slice = this.#replay.from(fromSeq);
    for (const frame of slice.frames) subscriber.send(frame);
    if (!this.isFinished) this.#subscribers.set(subscriber.id, subscriber);
    return slice;
  }

  /** The oldest notification the replay buffer still holds (null: none yet). Cheap. */
  get oldestReplaySeq(): number | null {
    return this.#replay.oldestSeq;
  }

  /** What `subscribe(_, fromSeq)` would replay, without replaying it. */
  previewReplay(fromSeq: number): Omit<ReplaySlice, "frames"> {
    const { firstSeq, missed } = this.#replay.from(fromSeq);
    return { firstSeq, missed };
  }

  unsubscribe(subscriberId: string): boolean {
    const removed = this.#subscribers.delete(subscriberId);
    if (removed) this.#notifyChange();
    return removed;
  }

  isSubscribed(subscriberId: string): boolean {
    return this.#subscribers.has(subscriberId);
  }

  /**
   * Calls `onChange` after each chunk of output is delivered and once the job has ended, until
   * the returned function is called. Cheap: nothing is serialised for it.
   */
  watch(onChange: () => void): () => void {
    this.#watchers.add(onChange);
    return () => this.#watchers.delete(onChange);
  }

  /** Milliseconds since the job last delivered output (since it started when it has not). */
  get quietMs(): number {
    return performance.now() - this.#lastOutputAt;
  }

  #tellWatchers(): void {
    for (const watcher of this.#watchers) watcher();
  }

  #emit<N extends JobNotificationName>(
    method: N,
    params: Omit<NotificationParams<N>, "seq" | "job_id">,
  ): void {
    // After the terminal notification nothing more is sent (an errored job's pipes may still talk).
    if (this.#completed) return;
    if (method === "process.completed") this.#completed = true;
    const seq = ++this.#seq;
    const frame = JSON.stringify({
      jsonrpc: "2.0",
      method,
      params: { job_id: this.id, seq, ...params },
    });
    this.#replay.add(seq, frame);
    for (const subscriber of this.#subscribers.values()) subscriber.send(frame);
  }

  /** Undefined when every subscriber can take more; else a promise for when they can. */
  #backpressure(): Promise<unknown> | undefined {
    let waits: Promise<void>[] | undefined;
    for (const subscriber of this.#subscribers.values()) {
      const wait = subscriber.ready();
      if (wait) (waits ??= []).push(wait);
    }
    // Slow output hooks slow the command too, rather than queueing its output in memory.
    if (this.#outputBacklog > OUTPUT_HOOK_BACKLOG) (waits ??= []).push(this.#outputChain);
    // So does a disk slower than the command: its output waits in the pipe, not in memory.
    const spool = this.spool.ready();
    if (spool) (waits ??= []).push(spool);
    return waits && Promise.all(waits);
  }

  // -- running ----------------------------------------------------------------

  /** Called once by the manager right after spawn; `preFailures` are pre_execution hooks that failed. */
  start(config: JobManagerConfig, preFailures: HookExecution[] = []): void {
    this.#config = config;
    for (const failure of preFailures) this.#hookError(failure);
    this.#startRun();
  }

  /** Starts watching the current run: stdin, timers, output, its end. */
  #startRun(): void {
    const params = this.#params;
    const config = this.#config;
    this.#claude = params.argv && params.claudeOutputFormat
      ? new ClaudeWatcher({ outputFormat: params.claudeOutputFormat })
      : claudeWatcherFor(this.command);
    this.#emit("process.started", {
      pid: this.group.pid,
      pgid: this.group.pgid,
      command: this.command,
      cwd: this.cwd,
      attempt: this.#attempt,
    });
    if (this.group.stdin) this.#openStdin(params);
    const { seconds, source } = this.timeout;
    // A retry gets its own timeout, or what is left of the job's time under
    // CC_EXECUTOR_MAX_TIMEOUT when that is less. (The first run's timeout is already within it.)
    const left = this.#attempt > 1 ? this.#leftUnderLimit() : null;
    if (left !== null && (seconds === null || left < seconds * 1000)) {
      this.#wallTimer = setTimeout(() => {
        this.#outOfTime = true;
        this.terminate(
          "timed_out",
          `timed out in run ${this.#attempt}: the job used up ${this.#limitNote()}`,
        );
      }, Math.max(0, left));
    } else if (seconds !== null) {
      const why = source === "history"
        ? " (estimated from this command's history)"
        : source === "default"
        ? " (the default timeout: no timeout was given)"
        : source === "limit"
        ? " (the server's limit, CC_EXECUTOR_MAX_TIMEOUT)"
        : "";
      this.#wallTimer = setTimeout(
        () => this.terminate("timed_out", `timed out after ${seconds}s${why}`),
        seconds * 1000,
      );
    }
    if (params.idle_timeout !== undefined) this.#armIdleTimer(params.idle_timeout * 1000);
    const chunkOptions = { maxBytes: config.chunkBytes, delayMs: config.coalesceMs };
    this.#pumps = [
      this.#pump(this.group.stdout, "stdout", chunkOptions),
      this.#pump(this.group.stderr, "stderr", chunkOptions),
    ];
    this.#run(config.killGraceMs).catch((error) => this.#fail(error));
  }

  /**
   * Milliseconds left of the job's time under CC_EXECUTOR_MAX_TIMEOUT, which counts from the job's
   * start across every run and what comes between runs (error hooks, a wait for a Claude limit to
   * lift); null when the server sets no limit.
   */
  #leftUnderLimit(): number | null {
    const limit = this.#config.maxTimeoutSeconds;
    return limit === null ? null : this.startedAt + limit * 1000 - this.#manager.now();
  }

  /** CC_EXECUTOR_MAX_TIMEOUT, named for a reason. */
  #limitNote(): string {
    return `the server's limit of ${this.#config.maxTimeoutSeconds}s on a job's wall time, every ` +
      "run included (CC_EXECUTOR_MAX_TIMEOUT)";
  }

  #pump(
    stream: ReadableStream<Uint8Array>,
    name: StreamName,
    chunkOptions: { maxBytes: number; delayMs: number },
  ): Pump {
    // A BYOB reader fills one reused buffer; the default reader allocates (and zeroes) 64 KiB per
    // read, which dominated the cost of fast output.
    const reader = stream.getReader({ mode: "byob" });
    let readBuffer = new ArrayBuffer(READ_BUFFER_BYTES);
    // A retry's output continues the offsets where the earlier runs left them.
    const offsetBase = this.bytes[name];
    const coalescer = new Coalescer(
      (chunk) => this.#output(name, offsetBase + chunk.offset, chunk.bytes),
      chunkOptions,
    );
    const pump: Pump = {
      stream: name,
      finished: false,
      done: Promise.resolve(),
      cancel: () => {},
    };
    let canceled = false;
    pump.cancel = () => {
      canceled = true;
      reader.cancel().catch(() => {});
    };
    // Bytes read regardless of subscribers: while the group is being stopped (so what a command
    // writes on SIGTERM does not block it into SIGKILL), and after it is gone (its leftovers).
    let readWhileStopping = 0;
    let readAfterGroupGone = 0;
    const unthrottled = () =>
      this.#groupGone || (this.#cause !== null && readWhileStopping < DRAIN_LIMIT_BYTES);
    pump.done = (async () => {
      try {
        while (true) {
          const wait = unthrottled() ? undefined : this.#backpressure();
          if (wait) {
            this.#heldBack++;
            // A stop, an unsubscribe or the group's end changes what we wait for: look again then.
            await this.#waitForSubscribers(wait);
            this.#heldBack--;
            // Waiting for a slow client is not the command being idle.
            this.#lastActivity = performance.now();
            continue;
          }
          const { value, done } = await reader.read(new Uint8Array(readBuffer));
          this.#lastActivity = performance.now();
          if (done || !value) break;
          readBuffer = value.buffer; // the read transferred the buffer; it comes back in `value`
          this.bytes[name] += value.length;
          coalescer.push(value);
          if (this.#cause !== null && !this.#groupGone) readWhileStopping += value.length;
          if (this.#groupGone && (readAfterGroupGone += value.length) > DRAIN_LIMIT_BYTES) {
            // Only a process outside the group can still be writing this much.
            pump.cancel();
            break;
          }
        }
      } catch (error) {
        if (!canceled) {
          this.#emit("process.error", {
            message: `Reading ${name} failed: ${(error as Error).message}`,
          });
        }
      } finally {
        pump.finished = !canceled;
        coalescer.end();
        reader.releaseLock();
      }
    })();
    return pump;
  }

  /**
   * Waits until the subscribers can take more, or until something changes what we wait for (a
   * stop, an unsubscribe, the group's end). Each wait registers its own wake-up and removes it
   * when done, so a long run of slow-client episodes leaves nothing behind.
   */
  async #waitForSubscribers(wait: Promise<unknown>): Promise<void> {
    const changed = Promise.withResolvers<void>();
    this.#waiters.add(changed.resolve);
    try {
      await Promise.race([wait, changed.promise]);
    } finally {
      this.#waiters.delete(changed.resolve);
    }
  }

  #notifyChange(): void {
    for (const wake of this.#waiters) wake();
    this.#waiters.clear();
  }

  #output(stream: StreamName, offset: number, bytes: Uint8Array): void {
    // Claude's progress and limits are read from everything it printed: past max_output_bytes
    // too, and before any output hook rewrites it. They are sent after the chunk they came in.
    const whole = this.#claude ? decoder.decode(bytes) : null;
    const notices = whole === null ? null : this.#claude![stream](whole);
    if (this.truncated) { // past max_output_bytes: read (so the command does not block) but drop
      if (notices) this.#sendClaude(notices);
      return;
    }
    let cut = false;
    if (bytes.length > this.#outputBudget) {
      bytes = bytes.subarray(0, utf8SafeLength(bytes, this.#outputBudget));
      cut = true;
    }
    this.#outputBudget -= bytes.length;
    if (cut) this.truncated = true;
    const data = whole !== null && !cut ? whole : decoder.decode(bytes);
    const filter = this.#hooks?.output;
    if (!filter) {
      this.#deliver(stream, offset, data, cut, bytes);
      if (notices) this.#sendClaude(notices);
      return;
    }
    // Output hooks may take time: chunks go through them one after another, in order.
    this.#outputBacklog++;
    this.#outputChain = this.#outputChain
      .then(() => filter.push(stream, data, offset))
      .catch((error) => `[output withheld: output hooks failed: ${(error as Error).message}]\n`)
      .then((text) => {
        this.#deliver(stream, offset, text, cut);
        if (notices) this.#sendClaude(notices);
      })
      .finally(() => this.#outputBacklog--);
  }

  /** Releases what output hooks still hold at the end of a run, after every chunk went through. */
  async #flushOutputHooks(): Promise<void> {
    const filter = this.#hooks?.output;
    if (!filter) return;
    await this.#outputChain;
    for (const stream of ["stdout", "stderr"] as const) {
      const text = await filter.end(stream, this.bytes[stream]).catch((error) =>
        `[output withheld: output hooks failed: ${(error as Error).message}]\n`
      );
      this.#deliver(stream, this.bytes[stream], text, false);
    }
  }

  /** `raw`: the bytes `data` was decoded from, when no hook changed them (spooled as they are). */
  #deliver(
    stream: StreamName,
    offset: number,
    data: string,
    cut: boolean,
    raw?: Uint8Array,
  ): void {
    // Hooks may hold text back (or drop it): an empty chunk is not worth a frame.
    if (data.length === 0 && !cut) return;
    this.#keepForHistory(data);
    if (raw) this.spool.appendBytes(stream, raw);
    else this.spool.append(stream, data);
    this.#lastOutputAt = performance.now();
    this.#emit("process.output", {
      stream,
      type: stream,
      offset,
      data,
      ...(cut ? { truncated: true } : {}),
    });
    this.#tellWatchers();
  }

  /** The first and last `historyOutputChars` characters of the output, for the job's record. */
  #keepForHistory(data: string): void {
    const limit = this.#manager.config.historyOutputChars;
    if (limit === 0) return;
    if (this.outputHead.length < limit) {
      const room = limit - this.outputHead.length;
      this.outputHead += data.slice(0, room);
      data = data.slice(room);
      if (data.length === 0) return;
    }
    // Past the head: the tail is what follows it, last `limit` characters of it.
    this.outputTail = data.length >= limit
      ? data.slice(-limit)
      : (this.outputTail + data).slice(-limit);
  }

  async #run(graceMs: number): Promise<void> {
    const status = await this.group.status;
    this.#clearTimers();
    // The leader is gone; whatever it left running in the group (`cmd &`) goes too, so it can
    // neither outlive the job nor hold the pipes open.
    if (this.#stopping) await this.#stopping;
    else await this.group.sweep(graceMs);
    // Nothing in the group can write any more: what is left is at most a pipe's capacity, so
    // read it without waiting for slow subscribers (a stalled client must not keep a stopped
    // job, its slot and server shutdown waiting).
    this.#groupGone = true;
    this.#notifyChange();
    await this.#drainPipes();
    this.#pumps = []; // a finished job kept in memory must not keep its read buffers
    await this.#flushOutputHooks();
    if (this.#claude) this.#sendClaude(this.#claude.end());
    await this.#finish(status);
  }

  /**
   * Waits for both pipes to reach EOF. A process that left the group (setsid,
   * daemonized) may still hold one open: after ESCAPED_PIPE_MS, or once it has
   * written DRAIN_LIMIT_BYTES since the group ended, we stop reading and say so.
   */
  async #drainPipes(): Promise<void> {
    const all = Promise.all(this.#pumps.map((p) => p.done));
    if (!(await settlesWithin(all, ESCAPED_PIPE_MS))) {
      for (const pump of this.#pumps) if (!pump.finished) pump.cancel();
      await all;
    }
    const held = this.#pumps.filter((pump) => !pump.finished);
    if (held.length === 0) return;
    this.#emit("process.error", {
      message: `Stopped reading ${held.map((p) => p.stream).join(" and ")}: ` +
        "a process outside the job's process group still holds the pipe open",
    });
  }

  async #finish(status: Deno.CommandStatus): Promise<void> {
    if (this.isFinished) return;
    let run: RunOutcome;
    const exit_code = status.signal === null ? status.code : null;
    if (this.#cause) {
      run = { ...this.#cause, exit_code, signal: status.signal };
    } else if (status.signal !== null) {
      run = {
        status: "killed",
        reason: `killed by ${status.signal}`,
        exit_code,
        signal: status.signal,
      };
    } else {
      run = {
        status: status.code === 0 ? "completed" : "failed",
        reason: null,
        exit_code,
        signal: null,
      };
    }
    const hooks = this.#hooks;
    this.#noteTemplateOutcome(run.status);
    const claudeRetry = this.#claudeRetryFor(run);
    if (!claudeRetry && (!hooks || !(hooks.set.has("error") || hooks.set.has("post_execution")))) {
      return this.#end(run);
    }
    // From here until the job ends or its next run starts, a cancel means "no retry".
    this.#afterRun = true;
    let why: string | null = null;
    let timedOut = false;
    let decided = false;
    if (hooks?.set.has("error")) {
      const retry = await this.#runErrorHooks(hooks, run);
      if (this.isFinished) return; // failed meanwhile
      if (retry) {
        decided = true;
        const next = await this.#runAgain(
          { command: retry.command },
          run,
          (command) =>
            this.#emit("hook.retry", {
              hook: retry.hook,
              attempt: this.#attempt,
              command,
              message: retry.message,
              previous: {
                status: run.status,
                exit_code: run.exit_code,
                signal: run.signal,
                reason: run.reason,
              },
            }),
        );
        if (this.isFinished) return;
        if (next.started) {
          this.#afterRun = false;
          return;
        }
        why = next.why;
        timedOut = next.timedOut === true;
      }
    }
    if (!decided && claudeRetry && !this.#noRetry && !this.#manager.shuttingDown) {
      const next = await this.#retryClaude(claudeRetry, run);
      if (this.isFinished) return;
      if (next.started) {
        this.#afterRun = false;
        return;
      }
      why = next.why;
      timedOut = next.timedOut === true;
    }
    // A retry the server's limit on the job's time left unrun: the job is out of time (which the
    // run's own reason already says when that limit is what stopped it).
    if (timedOut) run = { ...run, status: "timed_out" };
    if (why !== null && !(timedOut && this.#outOfTime)) {
      run = { ...run, reason: run.reason ? `${run.reason}; ${why}` : why };
    }
    if (hooks) await this.#runPostHooks(hooks, run);
    this.#afterRun = false;
    if (!this.isFinished) this.#end(run);
  }

  #end(run: RunOutcome): void {
    this.exitCode = run.exit_code;
    this.signal = run.signal;
    this.status = run.status;
    this.reason = run.reason;
    this.#complete();
  }

  /** What hooks are told about how a run ended. */
  #outcomeFor(run: RunOutcome): JobOutcome {
    return {
      status: run.status as JobOutcome["status"],
      exit_code: run.exit_code,
      signal: run.signal,
      duration_ms: this.#manager.now() - this.startedAt,
      reason: run.reason,
      bytes: { ...this.bytes },
      truncated: this.truncated,
      output: { head: this.outputHead, tail: this.outputTail },
    };
  }

  /** The error chain after a failed run; returns the retry it asks for, if one may run. */
  async #runErrorHooks(
    hooks: JobHooks,
    run: RunOutcome,
  ): Promise<{ hook: string; command: string; message: string | null } | null> {
    const result = await hooks.set.runError(
      { ...this.#hookBase(), outcome: this.#outcomeFor(run) },
      {
        maxAttempts: this.#manager.maxAttempts,
        retryAllowed: this.#attempt < this.#manager.maxAttempts && !this.#noRetry &&
          !this.#manager.shuttingDown,
        onFailure: (failure) => this.#hookError(failure),
        stop: this.#manager.hookStop,
      },
    );
    hooks.executions.push(...result.executions);
    Object.assign(hooks.attached, result.attached);
    // A cancel or a shutdown while the error hooks ran wins over their retry.
    return this.#noRetry || this.#manager.shuttingDown ? null : result.retry;
  }

  /** The post_execution chain, once the job's outcome is final. */
  async #runPostHooks(hooks: JobHooks, run: RunOutcome): Promise<void> {
    if (!hooks.set.has("post_execution")) return;
    const result = await hooks.set.runPost({
      ...this.#hookBase(),
      outcome: this.#outcomeFor(run),
      attached: hooks.attached,
    }, { onFailure: (failure) => this.#hookError(failure), stop: this.#manager.hookStop });
    hooks.executions.push(...result.executions);
    Object.assign(hooks.attached, result.attached);
  }

  /** The job as hooks see it. */
  #request(): JobRequest {
    return {
      command: this.command,
      cwd: this.cwd,
      env: { ...this.#params.env },
      timeout: this.#params.timeout ?? null,
    };
  }

  #sendClaude(notices: ClaudeNotice[]): void {
    // With output hooks, Claude's own text (answers, assistant text) would go around them (a
    // redaction, a withheld chunk): it is left out of the notifications then; the figures stay.
    const withoutText = this.#hooks?.output ? true : false;
    for (let notice of notices) {
      if (withoutText && notice.method === "claude.event") notice = withoutClaudeText(notice);
      // Narrowed one by one: #emit types its params by the method name.
      if (notice.method === "claude.event") this.#emit("claude.event", notice.params);
      else if (notice.method === "error.token_limit_exceeded") {
        this.#emit("error.token_limit_exceeded", notice.params);
      } else this.#emit("error.rate_limit_exceeded", notice.params);
    }
  }

  #claudeSummary(watcher: ClaudeWatcher) {
    const summary = watcher.summary();
    // As in #sendClaude: Claude's answer would go around the output hooks.
    return this.#hooks?.output ? { ...summary, result: null } : summary;
  }

  #hookError(failure: HookExecution): void {
    this.#emit("hook.error", {
      hook: failure.hook,
      point: failure.point,
      error: failure.error ?? "failed",
      on_failure: failure.on_failure ?? "proceed",
    });
  }

  /** Runs the command again, as an error hook asked: a new process group, the same job. */
  /**
   * Starts the job's next run (an error hook's retry, or a Claude retry), unless the
   * pre_execution hooks refuse its command, its cwd is gone, or a cancel or shutdown came
   * meanwhile, or the job's time under CC_EXECUTOR_MAX_TIMEOUT is up (`timedOut`): then `why` says
   * so (null: no need). `announce` sends the notification that says why this run comes, before its
   * `process.started`.
   */
  async #runAgain(
    next: { command: string; argv?: string[] },
    previous: RunOutcome,
    announce: (command: string) => void,
  ): Promise<RetryStart> {
    const hooks = this.#hooks;
    let params: JobParams = next.argv
      ? { ...this.#params, command: next.command, argv: next.argv }
      : withCommand(this.#params, next.command);
    // A retry's command is a new command: the pre_execution hooks judge it like the first, so an
    // error hook cannot run what they would refuse.
    if (hooks?.set.has("pre_execution")) {
      const pre = await hooks.set.runPre({
        ...this.#hookBase(),
        attempt: this.#attempt + 1,
        request: { ...this.#request(), command: params.command },
      }, { onFailure: (failure) => this.#hookError(failure), stop: this.#manager.hookStop });
      hooks.executions.push(...pre.executions);
      if (pre.blocked) {
        return {
          started: false,
          why: `retry blocked by hook ${pre.blocked.hook}: ${pre.blocked.message}`,
        };
      }
      const { request } = pre;
      params = withCommand(params, request.command);
      if (request.cwd !== null) params.cwd = request.cwd;
      if (Object.keys(request.env).length > 0) params.env = request.env;
      if (request.cwd !== null && request.cwd !== this.cwd) {
        try {
          checkCwd(request.cwd);
        } catch (error) {
          return { started: false, why: `retry not run: ${(error as Error).message}` };
        }
      }
    }
    if (this.isFinished || this.#noRetry || this.#manager.shuttingDown) {
      return { started: false, why: null };
    }
    const left = this.#leftUnderLimit();
    if (left !== null && left <= 0) {
      return {
        started: false,
        why: `retry not run: the job used up ${this.#limitNote()}`,
        timedOut: true,
      };
    }
    let group: ProcessGroup;
    try {
      group = this.#manager.respawn(this.id, {
        shell: this.#manager.shell,
        command: params.command,
        argv: params.argv,
        cwd: params.cwd,
        env: params.env,
        baseEnv: this.#manager.baseEnv(params),
        pipeStdin: params.stdin !== undefined || params.keep_stdin_open === true,
      });
    } catch (error) {
      return { started: false, why: `retry not run: ${(error as Error).message}` };
    }
    this.#runs.push({ attempt: this.#attempt, command: this.command, ...previous });
    this.#recordAttempt(previous);
    this.#attempt++;
    this.#runStartedAt = this.#manager.now();
    this.#runBytesBefore = { ...this.bytes };
    this.#params = params;
    this.command = params.command;
    this.cwd = params.cwd ?? null;
    this.#group = group;
    hooks?.output?.rebase(this.#hookBase());
    announce(this.command);
    this.#cause = null;
    this.#stopping = null;
    this.#groupGone = false;
    this.#heldBack = 0;
    this.#lastActivity = performance.now();
    this.#startRun();
    return { started: true };
  }

  /** The current run as a record of its own, a child of this job's record (`<id>.attempt-<N>`). */
  #recordAttempt(run: RunOutcome): void {
    const endedAt = this.#manager.now();
    this.#manager.recordAttempt(this, {
      attempt: this.#attempt,
      command: this.command,
      cwd: this.cwd,
      pid: this.group.pid,
      pgid: this.group.pgid,
      startedAt: this.#runStartedAt,
      endedAt,
      run,
      bytes: {
        stdout: this.bytes.stdout - this.#runBytesBefore.stdout,
        stderr: this.bytes.stderr - this.#runBytesBefore.stderr,
      },
    });
  }

  // -- adaptive retry of Claude runs (docs/claude.md#adaptive-retry) ----------------------------

  /** The limit a finished run hit when the request asked to retry after it, and may; else null. */
  #claudeRetryFor(run: RunOutcome): { limit: LimitSignal; claude: ClaudeRun } | null {
    const claude = this.#params.claudeRun;
    const limit = this.#claude?.limit;
    // A run that completed anyway (Claude fell back and finished) is not run again: an agentic
    // run repeated would repeat its edits.
    if (!claude?.retry || !limit || run.status === "canceled" || run.status === "completed") {
      return null;
    }
    if (this.#attempt >= claude.retry.max_attempts) return null;
    const strategy = claude.retry.strategy ?? "adaptive";
    if (limit.kind === "token_limit") return strategy === "wait" ? null : { limit, claude };
    if (limit.kind === "usage_limit" || limit.kind === "rate_limit") {
      return strategy === "concise" ? null : { limit, claude };
    }
    return null; // context_overflow: the same input fails again
  }

  /**
   * A Claude retry: after an output-token limit, the prompt rewritten through a more concise
   * template chosen by measured success rate; after a usage or rate limit, the same run once the
   * limit lifts (within max_wait_seconds).
   */
  async #retryClaude(
    { limit, claude }: { limit: LimitSignal; claude: ClaudeRun },
    previous: RunOutcome,
  ): Promise<RetryStart> {
    const maxWait = claude.retry!.max_wait_seconds ?? DEFAULT_MAX_WAIT_SECONDS;
    let argv = this.#params.argv!;
    let template: string | null = null;
    let waitSeconds = 0;
    if (limit.kind === "token_limit") {
      const templates = this.#manager.templates;
      const stats = await this.#manager.templateStats();
      const chosen = templates &&
        selectTemplate(eligibleTemplates(templates.templates, this.#lastTemplate), stats);
      if (!chosen) {
        return { started: false, why: "no more concise prompt template to retry with" };
      }
      const rendered = renderTemplate(chosen, {
        prompt: claude.prompt,
        max_output_tokens: limit.max_output_tokens ?? undefined,
        attempt: this.#attempt + 1,
      });
      argv = claudeArgv(rendered.text, {
        program: claude.program,
        outputFormat: claude.outputFormat,
        model: claude.model,
        extraArgs: claude.args,
      });
      this.#lastTemplate = chosen;
      template = chosen.name;
    } else if (limit.kind === "rate_limit") {
      waitSeconds = limit.retry_after_seconds ?? DEFAULT_RATE_LIMIT_WAIT_SECONDS;
    } else if (limit.kind === "usage_limit") {
      if (limit.resets_at === null) {
        return { started: false, why: `the ${limit.limit} has no reset time to wait for` };
      }
      waitSeconds = Math.max(0, (Date.parse(limit.resets_at) - this.#manager.now()) / 1000) +
        RESET_MARGIN_SECONDS;
    }
    if (waitSeconds > maxWait) {
      const when = limit.kind === "usage_limit"
        ? `resets at ${limit.resets_at}`
        : `asks to wait ${waitSeconds} s`;
      return {
        started: false,
        why:
          `no retry: the ${limit.kind === "usage_limit" ? limit.limit : "rate limit"} ${when}, ` +
          `beyond max_wait_seconds (${maxWait})`,
      };
    }
    const left = this.#leftUnderLimit();
    if (left !== null && waitSeconds > 0 && waitSeconds * 1000 >= left) {
      const when = limit.kind === "usage_limit"
        ? `${limit.limit} resets at ${limit.resets_at}`
        : `rate limit asks to wait ${waitSeconds} s`;
      return {
        started: false,
        why: `no retry: the ${when}, past the end of ${this.#limitNote()}`,
        timedOut: true,
      };
    }
    if (this.#noRetry || this.#manager.shuttingDown) return { started: false, why: null };
    this.#emit("claude.retry", {
      attempt: this.#attempt + 1,
      reason: limit.kind as "token_limit" | "usage_limit" | "rate_limit",
      template,
      wait_seconds: Math.round(waitSeconds * 1000) / 1000,
      resumes_at: new Date(this.#manager.now() + waitSeconds * 1000).toISOString(),
    });
    if (waitSeconds > 0 && !(await this.#waitForRetry(waitSeconds * 1000))) {
      this.#lastTemplate = null;
      return { started: false, why: "canceled while waiting for the limit to lift" };
    }
    const started = await this.#runAgain(
      { command: shellQuoteArgv(argv), argv },
      previous,
      () => {},
    );
    if (started.started && template !== null) this.#templateInUse = template;
    return started;
  }

  /** Waits `ms`; false when a cancel, disconnect or shutdown came first. */
  #waitForRetry(ms: number): Promise<boolean> {
    if (this.#noRetry || this.#manager.shuttingDown || this.#manager.hookStop.aborted) {
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const stop = this.#manager.hookStop;
      const done = (ok: boolean) => {
        clearTimeout(timer);
        stop.removeEventListener("abort", onStop);
        this.#wakeRetryWait = null;
        resolve(ok);
      };
      const onStop = () => done(false);
      const timer = setTimeout(() => done(true), ms);
      stop.addEventListener("abort", onStop, { once: true });
      this.#wakeRetryWait = () => done(false);
    });
  }

  /**
   * A run made with a template has ended. Only a run that ended on its own says anything about the
   * template: it succeeded when it completed without hitting the limit. A canceled, timed-out or
   * killed run is not counted (it would favour templates whose runs were cut short).
   */
  #noteTemplateOutcome(status: JobStatus): void {
    const template = this.#templateInUse;
    if (template === null) return;
    this.#templateInUse = null;
    if (status !== "completed" && status !== "failed") return;
    const success = status === "completed" && this.#claude?.limit?.kind !== "token_limit";
    this.#manager.recordTemplateOutcome({ template, success, at: this.#manager.now() });
  }

  /** The context every hook of this job starts from. */
  #hookBase() {
    return {
      job_id: this.id,
      session_id: this.owner,
      attempt: this.#attempt,
      dry_run: false,
      request: this.#request(),
    };
  }

  /** What the job's record keeps of its hooks; null when it had none. */
  hooksRecord(): unknown {
    const hooks = this.#hooks;
    if (!hooks) return null;
    return {
      ...(this.requestedCommand !== (this.#runs[0]?.command ?? this.command)
        ? { requested_command: this.requestedCommand }
        : {}),
      attempts: this.#attempt,
      ...(this.#runs.length > 0 ? { runs: this.#runs } : {}),
      attached: hooks.attached,
      executions: keepEnds([...hooks.executions, ...(hooks.output?.failures ?? [])]),
    };
  }

  /** Ends the job as `error` after something went wrong on our side. */
  #fail(error: unknown): void {
    if (this.isFinished) return;
    this.#manager.logger.error("job failed", { job_id: this.id, error: String(error) });
    this.group.stop(0).catch((stopError) =>
      this.#manager.logger.error("cannot stop the group of a failed job", {
        job_id: this.id,
        pgid: this.group.pgid,
        error: String(stopError),
      })
    );
    this.status = "error";
    this.reason = (error as Error)?.message ?? String(error);
    this.#complete();
    // Nothing more will be sent: stop reading. A pump held back by a slow subscriber wakes (the
    // subscribers are gone now) and ends.
    for (const pump of this.#pumps) pump.cancel();
    this.#pumps = [];
    this.#notifyChange();
  }

  #complete(): void {
    this.#clearTimers();
    this.endedAt = this.#manager.now();
    this.#closeStdin();
    const hooks = this.#hooks;
    // Ended some other way than #finish (#fail): the template run still counts.
    this.#noteTemplateOutcome(this.status);
    // A job that ran more than once keeps each run as its own record; this is the last.
    if (this.#attempt > 1) {
      this.#recordAttempt({
        status: this.status,
        exit_code: this.exitCode,
        signal: this.signal,
        reason: this.reason,
      });
    }
    this.#emit("process.completed", {
      status: this.status,
      exit_code: this.exitCode,
      signal: this.signal,
      duration_ms: this.endedAt - this.startedAt,
      bytes: { ...this.bytes },
      truncated: this.truncated,
      reason: this.reason,
      ...(hooks ? { hooks: { attached: hooks.attached, attempts: this.#attempt } } : {}),
      ...(this.#claude
        ? { claude: { ...this.#claudeSummary(this.#claude), attempts: this.#attempt } }
        : {}),
    });
    this.#subscribers.clear();
    this.#replay.shrink(this.#manager.config.finishedReplayBytes);
    this.#tellWatchers();
    this.#watchers.clear();
    this.#manager.finished(this);
    hooks?.set.release();
    this.#resolveDone();
  }

  // -- control --------------------------------------------------------------

  /** Stops the job for `cause`; the first cause wins, later ones are ignored. */
  terminate(status: Cause["status"], reason: string): void {
    // A canceled job is never run again; between runs (hooks deciding on a retry) neither is a
    // stopped one.
    if (status === "canceled" || this.#afterRun || this.group.leaderExited) {
      this.#noRetry = true;
      this.#wakeRetryWait?.();
    }
    // Once the leader has exited its status is the outcome; only leftovers are being swept.
    if (this.isFinished || this.#cause || this.group.leaderExited) return;
    this.#cause = { status, reason };
    this.#notifyChange(); // pumps held back by slow subscribers may read on while it stops
    // Handled here at once: terminate() runs from timers and close handlers, where a rejection
    // nobody awaits yet would take the whole server down.
    this.#stopping = this.group.stop(this.#manager.config.killGraceMs).catch((error) =>
      this.#fail(error)
    );
  }

  control(type: ControlType): JobStatus {
    const betweenRuns = this.#afterRun ||
      (this.group.leaderExited &&
        (this.#hooks?.set.has("error") === true || this.#params.claudeRun?.retry !== undefined));
    if (type === "CANCEL" && betweenRuns && !this.isFinished) {
      this.#noRetry = true; // the run is over; canceling now means no retry
      this.#wakeRetryWait?.();
      return this.status;
    }
    if (this.isFinished || this.#cause || this.group.leaderExited) {
      // `status` stays the job's status; `state` says why a job still "running" cannot be controlled.
      const state = this.isFinished ? null : this.#cause ? "stopping" : "exited";
      const why = state === null
        ? `it is not running (status: ${this.status})`
        : state === "stopping"
        ? `it is already being stopped (${this.#cause!.reason})`
        : "its shell has exited and the job is finishing";
      throw new RpcError(
        ErrorCode.JOB_NOT_RUNNING,
        `Cannot ${type.toLowerCase()} job "${this.id}": ${why}`,
        {
          job_id: this.id,
          status: this.status,
          ...(state ? { state } : {}),
        },
      );
    }
    switch (type) {
      case "CANCEL":
        this.terminate("canceled", "canceled by request");
        break;
      case "PAUSE":
        if (this.status === "paused") throw this.#wrongState("pause", "it is already paused");
        this.#signalOrThrow("SIGSTOP");
        this.status = "paused";
        this.#emit("process.paused", {});
        break;
      case "RESUME":
        if (this.status !== "paused") throw this.#wrongState("resume", "it is not paused");
        this.#signalOrThrow("SIGCONT");
        this.status = "running";
        this.#lastActivity = performance.now();
        this.#emit("process.resumed", {});
        break;
    }
    return this.status;
  }

  #signalOrThrow(signal: Deno.Signal): void {
    try {
      this.group.signal(signal);
    } catch (error) {
      throw new RpcError(ErrorCode.INTERNAL_ERROR, (error as Error).message, { job_id: this.id });
    }
  }

  #wrongState(action: string, why: string): RpcError {
    return new RpcError(ErrorCode.JOB_NOT_RUNNING, `Cannot ${action} job "${this.id}": ${why}`, {
      job_id: this.id,
      status: this.status,
    });
  }

  // -- timers ---------------------------------------------------------------

  /** One timer, re-armed for the remaining time, instead of a reset on every read. */
  #armIdleTimer(idleMs: number): void {
    const check = () => {
      // A paused job, or one held back by a slow client, is silent because of us: not idle.
      const heldByUs = this.status === "paused" || this.#heldBack > 0;
      if (heldByUs) this.#lastActivity = performance.now();
      const silent = performance.now() - this.#lastActivity;
      if (silent >= idleMs) {
        this.#idleTimer = undefined;
        this.terminate("timed_out", `idle for ${idleMs / 1000}s (no output)`);
        return;
      }
      this.#idleTimer = setTimeout(check, idleMs - silent);
    };
    this.#idleTimer = setTimeout(check, idleMs);
  }

  #clearTimers(): void {
    clearTimeout(this.#wallTimer);
    clearTimeout(this.#idleTimer);
    this.#wallTimer = this.#idleTimer = undefined;
  }

  // -- stdin ----------------------------------------------------------------

  #openStdin(params: JobParams): void {
    this.#stdin = this.group.stdin!.getWriter();
    if (params.stdin !== undefined) {
      this.input(params.stdin, !params.keep_stdin_open).catch(() => {});
    } else if (!params.keep_stdin_open) this.#closeStdin();
  }

  /** Writes to the command's stdin, in order with earlier writes; `eof` closes it afterwards. */
  input(data: string | undefined, eof: boolean): Promise<number> {
    const writer = this.#stdin;
    if (!writer) {
      return Promise.reject(
        new RpcError(
          ErrorCode.STDIN_CLOSED,
          `Cannot write to job "${this.id}": its stdin is closed`,
          {
            job_id: this.id,
            status: this.status,
          },
        ),
      );
    }
    if (eof) this.#stdin = null;
    const bytes = data ? encoder.encode(data) : new Uint8Array();
    const write = this.#stdinChain.then(async () => {
      try {
        if (bytes.length > 0) await writer.write(bytes);
      } catch (error) {
        writer.releaseLock();
        this.#stdin = null;
        throw new RpcError(
          ErrorCode.STDIN_CLOSED,
          `Cannot write to job "${this.id}": the command closed its stdin (${
            (error as Error).message
          })`,
          { job_id: this.id, status: this.status },
        );
      }
      if (eof) await writer.close().catch(() => {});
      return bytes.length;
    });
    this.#stdinChain = write.catch(() => {});
    return write;
  }

  #closeStdin(): void {
    const writer = this.#stdin;
    if (!writer) return;
    this.#stdin = null;
    this.#stdinChain = this.#stdinChain.then(() => writer.close()).catch(() => {});
  }
}

interface Pump {
  stream: StreamName;
  /** Set when reading ended: true at EOF (or a read error), false when we stopped reading. */
  finished: boolean;
  done: Promise<void>;
  cancel(): void;
}

/** All jobs of one server: limits, ids, retention, shutdown. */
export class JobManager {
  readonly config: JobManagerConfig;
  readonly logger: Logger;
  readonly now: () => number;
  readonly shell: string;
  readonly groupMode: GroupMode;
  #spawn: (spec: SpawnSpec, mode: GroupMode) => ProcessGroup;
  readonly #onJobStarted: ((job: Job) => void) | undefined;
  #jobs = new Map<string, Job>();
  #running = new Set<Job>();
  #finishedOrder: string[] = [];
  #shuttingDown = false;
  /** The session starting each of #starting, for the per-session limit. */
  #startingOwners = new Map<string, string>();
  /** Sessions the per-session limit does not apply to (the MCP face's, shared by its clients). */
  #unlimitedOwners = new Set<string>();
  /** The token starting each of #starting, for the per-token limit. */
  #startingPrincipals = new Map<string, string>();
  /** Rate and policy checks per token. */
  readonly #admission: Admission;
  /** Jobs being recorded and spawned, by id: they hold a slot and a retry waits for them. */
  #starting = new Map<string, Promise<Job>>();
  /**
   * Shapes whose last estimated timeout cut a run short, with that timeout: the next estimate is
   * at least 3 times it (up to the ceiling), so a shape that got slower is not killed every time.
   */
  #cutShort = new Map<string, number>();
  /** Each job's store writes in flight, chained so they land in order. */
  #recordChains = new Map<string, Promise<void>>();
  /** Record writes of finished jobs not yet acknowledged by the store. */
  #pendingRecords = new Set<Promise<void>>();
  readonly #store: Store | undefined;
  readonly #hooks: JobHooksSource | undefined;
  readonly #hookStop = new AbortController();
  readonly templates: TemplateSet | undefined;
  readonly #env: JobEnvironments | undefined;
  /** See JobManagerOptions.spoolDir and spoolMaxBytes. */
  readonly spoolDir: string | null;
  readonly spoolMaxBytes: number;

  constructor(options: JobManagerOptions) {
    this.config = options.config;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
    this.shell = options.shell;
    this.groupMode = options.groupMode;
    this.#spawn = options.spawn ?? ProcessGroup.spawn;
    this.#store = options.store;
    this.#hooks = options.hooks;
    this.templates = options.templates;
    this.spoolDir = options.spoolDir ?? null;
    this.spoolMaxBytes = options.spoolMaxBytes ?? Infinity;
    this.#env = options.env;
    this.#onJobStarted = options.onJobStarted;
    this.#admission = new Admission(options.shell);
  }

  /**
   * Writes one run of `job` as a record of its own, `<job id>.attempt-<N>`, linked to the job's
   * record (`parent_job_id`), so history shows every attempt of a retried job.
   */
  recordAttempt(job: Job, attempt: {
    attempt: number;
    command: string;
    cwd: string | null;
    pid: number;
    pgid: number;
    startedAt: number;
    endedAt: number;
    run: RunOutcome;
    bytes: ByteCounts;
  }): void {
    // "#" is not allowed in client job ids, so an attempt's id never names another job.
    const id = `${job.id}#attempt-${attempt.attempt}`;
    const store = this.#store;
    if (!store) return;
    // Three writes, each retried on its own and chained in order under the attempt's id.
    this.#record("jobStarted", id, () =>
      store.jobStarted({
        job_id: id,
        command: attempt.command,
        shape: commandShape(attempt.command),
        cwd: attempt.cwd,
        session_id: job.owner,
        node_id: this.config.nodeId,
        server_pid: Deno.pid,
        started_at: attempt.startedAt,
        timeout_s: job.timeout.seconds,
        timeout_source: job.timeout.source,
        parent_job_id: job.id,
        attempt: attempt.attempt,
      }));
    this.#record(
      "jobSpawned",
      id,
      () => store.jobSpawned(id, { pid: attempt.pid, pgid: attempt.pgid }),
    );
    this.#trackRecord(this.#record("jobEnded", id, () =>
      store.jobEnded(id, {
        status: attempt.run.status,
        ended_at: attempt.endedAt,
        duration_ms: attempt.endedAt - attempt.startedAt,
        exit_code: attempt.run.exit_code,
        signal: attempt.run.signal,
        reason: attempt.run.reason,
        bytes_stdout: attempt.bytes.stdout,
        bytes_stderr: attempt.bytes.stderr,
        truncated: false,
        // The output stays with the job's own record.
        output_head: "",
        output_tail: "",
        hooks: null,
      })));
  }

  /** Each template's uses and successes; none (all alike) when the store cannot say. */
  async templateStats(): Promise<TemplateTally[]> {
    try {
      return (await this.#store?.templateStats()) ?? [];
    } catch {
      return [];
    }
  }

  /** Records how a retry with a template went; a store that cannot take it is logged. */
  recordTemplateOutcome(outcome: { template: string; success: boolean; at: number }): void {
    this.#store?.recordTemplateOutcome(outcome).catch((error) =>
      this.logger.warn("cannot record a template's outcome", {
        template: outcome.template,
        error: (error as Error).message,
      })
    );
  }

  /** Runs a job may get in all, retries asked for by error hooks included. */
  get maxAttempts(): number {
    return this.#hooks?.maxAttempts ?? 1;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** A new process group for job `jobId`'s next run (a retry); its record gets the new pid. */
  respawn(jobId: string, spec: SpawnSpec): ProcessGroup {
    if (this.#shuttingDown) throw new Error("the server is shutting down");
    const group = this.#spawn(spec, this.groupMode);
    this.#trackRecord(this.#record(
      "jobSpawned",
      jobId,
      () => this.#store?.jobSpawned(jobId, { pid: group.pid, pgid: group.pgid }),
    ));
    return group;
  }

  /** Aborted when the server stops waiting for hooks (shutdown after a grace, or killAll). */
  get hookStop(): AbortSignal {
    return this.#hookStop.signal;
  }

  get runningCount(): number {
    return this.#running.size;
  }

  /** Jobs running or being started: what counts against a limit on jobs at once. */
  get busyCount(): number {
    return this.#running.size + this.#starting.size;
  }

  /** Whether this server holds job `jobId` (running, or finished and still kept). */
  has(jobId: string): boolean {
    return this.#jobs.has(jobId);
  }

  get(jobId: string): Job {
    const job = this.#jobs.get(jobId);
    if (!job) {
      throw new RpcError(ErrorCode.JOB_NOT_FOUND, `Job "${jobId}" not found`, { job_id: jobId });
    }
    return job;
  }

  list(filter: { status?: JobStatus; limit?: number } = {}): Job[] {
    let jobs = [...this.#jobs.values()];
    if (filter.status) jobs = jobs.filter((job) => job.status === filter.status);
    jobs.sort((a, b) => b.startedAt - a.startedAt);
    return filter.limit ? jobs.slice(0, filter.limit) : jobs;
  }

  /**
   * Starts a job, or returns the existing one when `job_id` names a job with
   * the same command (a retried execute must not run the command twice). The
   * job's record is in the store before its process is spawned.
   *
   * @throws {RpcError} SHUTTING_DOWN, INVALID_PARAMS (over a server limit), JOB_ID_CONFLICT,
   * TOO_MANY_JOBS, INVALID_CWD, SPAWN_FAILED
   */
  async start(
    params: JobParams,
    owner: string,
    /** Who asks: its policy, rate and job limit apply; its jobs carry its name. */
    principal: Principal = UNRESTRICTED,
  ): Promise<{ job: Job; existing: boolean }> {
    params = this.#withinLimits(params);
    if (this.#shuttingDown) {
      throw new RpcError(ErrorCode.SHUTTING_DOWN, "Cannot execute: the server is shutting down");
    }
    if (params.job_id !== undefined) {
      // A retry racing the first attempt waits for it, then follows the same job. Only a start
      // actually in progress is awaited: any await here would let two requests in one batch both
      // pass the checks below before either registers.
      for (let inProgress; (inProgress = this.#starting.get(params.job_id));) {
        await inProgress.catch(() => {});
      }
      const existing = this.#jobs.get(params.job_id);
      if (existing) {
        if (!principal.admin && existing.principal !== principal.name) {
          throw new RpcError(
            ErrorCode.JOB_ID_CONFLICT,
            `Cannot execute: job_id "${params.job_id}" is already used`,
            { job_id: params.job_id },
          );
        }
        if (existing.requestedCommand !== params.command) {
          throw new RpcError(
            ErrorCode.JOB_ID_CONFLICT,
            `Cannot execute: job_id "${params.job_id}" is already used by a different command`,
            { job_id: params.job_id, command: existing.requestedCommand },
          );
        }
        return { job: existing, existing: true };
      }
    }
    this.#admission.takeExecute(principal, performance.now());
    const refusal = this.#admission.refusal(principal, params);
    if (refusal) {
      const id = params.job_id ?? crypto.randomUUID();
      if (params.job_id !== undefined) await this.#checkIdUnused(id, principal);
      await this.#recordBlocked(id, params, owner, refusal.message, []);
      throw new RpcError(refusal.code, refusal.message, { job_id: id, ...refusal.data as object });
    }
    // Jobs still being recorded hold their slot, so the limit holds across the awaits below.
    const busy = this.#running.size + this.#starting.size;
    if (busy >= this.config.maxJobs) {
      throw new RpcError(
        ErrorCode.TOO_MANY_JOBS,
        `Cannot execute: ${busy} jobs are running, the limit (CC_EXECUTOR_MAX_JOBS) is ${this.config.maxJobs}`,
        { running: busy, limit: this.config.maxJobs },
      );
    }
    const perSession = this.config.maxJobsPerSession;
    if (perSession < this.config.maxJobs && !this.#unlimitedOwners.has(owner)) {
      let mine = 0;
      for (const job of this.#running) if (job.owner === owner) mine++;
      for (const starting of this.#startingOwners.values()) if (starting === owner) mine++;
      if (mine >= perSession) {
        throw new RpcError(
          ErrorCode.TOO_MANY_JOBS,
          `Cannot execute: this connection has ${mine} jobs running, the limit ` +
            `(CC_EXECUTOR_MAX_JOBS_PER_SESSION) is ${perSession}`,
          { running: mine, limit: perSession, scope: "session" },
        );
      }
    }
    if (principal.maxJobs < this.config.maxJobs) {
      let theirs = 0;
      for (const job of this.#running) if (job.principal === principal.name) theirs++;
      for (const name of this.#startingPrincipals.values()) if (name === principal.name) theirs++;
      if (theirs >= principal.maxJobs) {
        throw new RpcError(
          ErrorCode.TOO_MANY_JOBS,
          `Cannot execute: this token has ${theirs} jobs running, its limit is ${principal.maxJobs}`,
          { running: theirs, limit: principal.maxJobs, scope: "token", token: principal.name },
        );
      }
    }
    if (params.cwd !== undefined) checkCwd(params.cwd);
    const id = params.job_id ?? crypto.randomUUID();
    // Set before #launch runs, which reads it when it creates the job.
    this.#startingPrincipals.set(id, principal.name);
    const starting = this.#launch(id, params, owner, params.job_id !== undefined, principal);
    this.#starting.set(id, starting);
    this.#startingOwners.set(id, owner);
    try {
      return { job: await starting, existing: false };
    } finally {
      this.#starting.delete(id);
      this.#startingOwners.delete(id);
      this.#startingPrincipals.delete(id);
    }
  }

  async #launch(
    id: string,
    params: JobParams,
    owner: string,
    clientChosenId: boolean,
    principal: Principal,
  ): Promise<Job> {
    // A job id is never reused: a record in history (the job left memory, or another server
    // sharing the store ran it) must not be overwritten by a new job.
    if (clientChosenId && !params.takeOver) await this.#checkIdUnused(id, principal);
    const set = this.#hooks?.current;
    if (!set || set.isEmpty) return this.#spawnJob(id, params, owner, null);
    set.acquire();
    try {
      return await this.#launchWithHooks(id, params, owner, set);
    } catch (error) {
      set.release();
      throw error;
    }
  }

  /** Runs the pre_execution hooks, then starts the job as they left it (or records the refusal). */
  async #launchWithHooks(
    id: string,
    params: JobParams,
    owner: string,
    set: HookSet,
  ): Promise<Job> {
    const hooks: JobHooks = {
      set,
      output: null,
      executions: [],
      attached: {},
    };
    const requested: JobRequest = {
      command: params.command,
      cwd: params.cwd ?? null,
      env: { ...params.env },
      timeout: params.timeout ?? null,
    };
    const pre = await set.runPre({
      job_id: id,
      session_id: owner,
      attempt: 1,
      dry_run: false,
      request: requested,
    }, { stop: this.#hookStop.signal });
    hooks.executions.push(...pre.executions);
    if (pre.blocked) {
      await this.#recordBlocked(id, params, owner, pre.blocked.message, hooks.executions);
      throw new RpcError(
        ErrorCode.HOOK_BLOCKED,
        `Blocked by hook ${pre.blocked.hook}: ${pre.blocked.message}`,
        {
          job_id: id,
          hook: pre.blocked.hook,
          point: "pre_execution",
          message: pre.blocked.message,
        },
      );
    }
    const { request } = pre;
    if (request.cwd !== null && request.cwd !== requested.cwd) checkCwd(request.cwd);
    const effective: JobParams = withCommand(params, request.command);
    if (request.cwd !== null) effective.cwd = request.cwd;
    if (Object.keys(request.env).length > 0) effective.env = request.env;
    if (request.timeout !== null) effective.timeout = request.timeout;
    const maxTimeout = this.config.maxTimeoutSeconds;
    if (request.timeout !== null && maxTimeout !== null && request.timeout > maxTimeout) {
      // Hooks are the operator's configuration, not a client: capped (#timeoutFor), not refused.
      this.logger.warn("a pre_execution hook's timeout is over CC_EXECUTOR_MAX_TIMEOUT; capped", {
        job_id: id,
        timeout: request.timeout,
        limit: maxTimeout,
      });
    }
    const failures = pre.executions.filter((execution) => execution.outcome === "failed");
    return this.#spawnJob(id, effective, owner, hooks, failures, params.command);
  }

  /** A job a hook refused is recorded too (status blocked), so history shows who tried what. */
  async #recordBlocked(
    id: string,
    params: JobParams,
    owner: string,
    message: string,
    executions: HookExecution[],
  ): Promise<void> {
    const now = this.now();
    await this.#record("jobStarted", id, () =>
      this.#store?.jobStarted({
        job_id: id,
        command: params.command,
        shape: commandShape(params.command),
        cwd: params.cwd ?? null,
        session_id: owner,
        node_id: this.config.nodeId,
        server_pid: Deno.pid,
        started_at: now,
        timeout_s: params.timeout ?? null,
        timeout_source: params.timeout !== undefined ? "request" : "none",
      }));
    await this.#record("jobEnded", id, () =>
      this.#store?.jobEnded(id, {
        status: "blocked",
        ended_at: now,
        duration_ms: 0,
        exit_code: null,
        signal: null,
        reason: message,
        bytes_stdout: 0,
        bytes_stderr: 0,
        truncated: false,
        output_head: "",
        output_tail: "",
        hooks: { attempts: 0, attached: {}, executions },
      }));
  }

  async #spawnJob(
    id: string,
    params: JobParams,
    owner: string,
    hooks: JobHooks | null,
    preFailures: HookExecution[] = [],
    /** What the client asked for, when pre_execution hooks changed the command. */
    requestedCommand = params.command,
  ): Promise<Job> {
    const shape = commandShape(params.command);
    const timeout = await this.#timeoutFor(params, shape);
    const startedAt = this.now();
    await this.#record("jobStarted", id, () =>
      this.#store?.jobStarted({
        job_id: id,
        command: params.command,
        shape,
        cwd: params.cwd ?? null,
        session_id: owner,
        node_id: this.config.nodeId,
        server_pid: Deno.pid,
        started_at: startedAt,
        timeout_s: timeout.seconds,
        timeout_source: timeout.source,
      }));
    let group: ProcessGroup;
    try {
      if (this.#shuttingDown) {
        throw new RpcError(ErrorCode.SHUTTING_DOWN, "Cannot execute: the server is shutting down");
      }
      group = this.#spawn({
        shell: this.shell,
        command: params.command,
        argv: params.argv,
        cwd: params.cwd,
        env: params.env,
        baseEnv: this.baseEnv(params),
        pipeStdin: params.stdin !== undefined || params.keep_stdin_open === true,
      }, this.groupMode);
    } catch (error) {
      const refusal = error instanceof RpcError ? error : new RpcError(
        ErrorCode.SPAWN_FAILED,
        `Cannot execute: ${(error as Error).message}`,
        { shell: this.shell, group_mode: this.groupMode },
      );
      // The record says what happened to the job that never ran.
      const now = this.now();
      await this.#record("jobEnded", id, () =>
        this.#store?.jobEnded(id, {
          status: "error",
          ended_at: now,
          duration_ms: now - startedAt,
          exit_code: null,
          signal: null,
          reason: refusal.message,
          bytes_stdout: 0,
          bytes_stderr: 0,
          truncated: false,
          output_head: "",
          output_tail: "",
          hooks: hooks && { attempts: 0, attached: {}, executions: hooks.executions },
        }));
      throw refusal;
    }
    const job = new Job(
      this,
      id,
      params,
      owner,
      group,
      this.config.replayBufferBytes,
      timeout,
      hooks,
      requestedCommand,
    );
    job.principal = this.#startingPrincipals.get(id) ?? "default";
    this.#jobs.set(job.id, job);
    this.#running.add(job);
    // Running now: no longer also counted as starting, which its start() would only undo a few
    // awaits later (meanwhile a request checked against the limits would count it twice).
    this.#starting.delete(id);
    this.#startingOwners.delete(id);
    this.#startingPrincipals.delete(id);
    this.logger.debug("job started", { job_id: job.id, pid: group.pid, owner });
    this.#onJobStarted?.(job);
    job.start(this.config, preFailures);
    // The pgid lets a later start stop this group if the server dies before the job ends. Not
    // awaited: the job runs already, and its writes are chained in order.
    this.#trackRecord(this.#record(
      "jobSpawned",
      id,
      () => this.#store?.jobSpawned(id, { pid: group.pid, pgid: group.pgid }),
    ));
    return job;
  }

  /**
   * Refuses client-chosen id `id` when history holds a job with it (a job that waits before it
   * starts checks this before it waits).
   * @throws {RpcError} JOB_ID_CONFLICT
   */
  checkIdUnused(id: string, principal: Principal): Promise<void> {
    return this.#checkIdUnused(id, principal);
  }

  /** Only the main token learns what the earlier job was: the id may be another token's. */
  async #checkIdUnused(id: string, principal: Principal): Promise<void> {
    let recorded;
    try {
      recorded = await this.#store?.get(id);
    } catch {
      return; // History is unavailable (or off): what is in memory was checked already.
    }
    if (!recorded) return;
    if (!principal.admin) {
      throw new RpcError(
        ErrorCode.JOB_ID_CONFLICT,
        `Cannot execute: job_id "${id}" is already used`,
        { job_id: id },
      );
    }
    throw new RpcError(
      ErrorCode.JOB_ID_CONFLICT,
      `Cannot execute: job_id "${id}" was already used (status: ${recorded.status}, see history.get)`,
      { job_id: id, command: recorded.command, status: recorded.status },
    );
  }

  /**
   * `params` within the server's limits: a request for more output or a longer timeout than they
   * allow is refused; one that names no output cap gets CC_EXECUTOR_MAX_OUTPUT_BYTES.
   */
  #withinLimits(params: JobParams): JobParams {
    const refuse = (what: string, requested: number, limit: number, variable: string) =>
      new RpcError(
        ErrorCode.INVALID_PARAMS,
        `Invalid params for "execute": ${what} ${requested} is over the server's limit of ` +
          `${limit} (${variable})`,
        { limit, variable, requested },
      );
    const maxTimeout = this.config.maxTimeoutSeconds;
    if (maxTimeout !== null && params.timeout !== undefined && params.timeout > maxTimeout) {
      throw refuse("timeout", params.timeout, maxTimeout, "CC_EXECUTOR_MAX_TIMEOUT");
    }
    const maxOutput = this.config.maxOutputBytes;
    if (maxOutput === null) return params;
    if (params.max_output_bytes === undefined) return { ...params, max_output_bytes: maxOutput };
    if (params.max_output_bytes > maxOutput) {
      throw refuse(
        "max_output_bytes",
        params.max_output_bytes,
        maxOutput,
        "CC_EXECUTOR_MAX_OUTPUT_BYTES",
      );
    }
    return params;
  }

  /** The job's timeout, at most CC_EXECUTOR_MAX_TIMEOUT (which also applies where none would). */
  async #timeoutFor(params: JobParams, shape: string): Promise<ExecuteResult["timeout"]> {
    const timeout = await this.#uncappedTimeoutFor(params, shape);
    const limit = this.config.maxTimeoutSeconds;
    if (limit === null || (timeout.seconds !== null && timeout.seconds <= limit)) return timeout;
    return { seconds: limit, source: "limit", samples: 0 };
  }

  /** The request's timeout, or one estimated from the command shape's history. */
  async #uncappedTimeoutFor(params: JobParams, shape: string): Promise<ExecuteResult["timeout"]> {
    if (params.timeout !== undefined) {
      return { seconds: params.timeout, source: "request", samples: 0 };
    }
    let durations: number[] = [];
    if (this.config.timeouts.adaptive && this.#store) {
      try {
        durations = await this.#store.durations(shape, TIMING_SAMPLES);
      } catch (error) {
        // No history to hand (the store is unreachable): the default applies.
        this.logger.warn("cannot read timing history; using the default timeout", {
          shape,
          error: (error as Error).message,
        });
      }
    }
    const estimate = estimateTimeout(durations, this.config.timeouts);
    let seconds = estimate.seconds;
    // History counts successful runs only; a run the estimate cut short says it was too small.
    const cutShort = this.#cutShort.get(shape);
    if (seconds !== null && cutShort !== undefined) {
      seconds = Math.min(this.config.timeouts.ceilingSeconds, Math.max(seconds, cutShort * 3));
    }
    return { seconds, source: estimate.source, samples: estimate.samples };
  }

  /**
   * Runs one store write for job `jobId`, after that job's earlier writes (so a retried start
   * never lands after its end). A write that fails (SQLite busy with another server's prune) is
   * retried with backoff; one that still fails is logged with the job: the job itself runs on.
   */
  #record(what: string, jobId: string, write: () => Promise<void> | undefined): Promise<void> {
    const previous = this.#recordChains.get(jobId) ?? Promise.resolve();
    const chain = previous.then(async () => {
      for (let attempt = 0;; attempt++) {
        try {
          return await write();
        } catch (error) {
          if (attempt + 1 >= RECORD_RETRIES_MS.length + 1) {
            this.logger.error(`store: ${what} failed; the record of this job is incomplete`, {
              job_id: jobId,
              error: (error as Error).message,
            });
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, RECORD_RETRIES_MS[attempt]));
        }
      }
    });
    this.#recordChains.set(jobId, chain);
    chain.finally(() => {
      if (this.#recordChains.get(jobId) === chain) this.#recordChains.delete(jobId);
    });
    return chain;
  }

  /** Shutdown waits for `record` to land. */
  #trackRecord(record: Promise<void>): void {
    this.#pendingRecords.add(record);
    record.finally(() => this.#pendingRecords.delete(record));
  }

  /** Called by a job once it has sent its terminal notification. */
  finished(job: Job): void {
    this.#running.delete(job);
    if (
      job.status === "timed_out" && job.timeout.seconds !== null &&
      (job.timeout.source === "history" || job.timeout.source === "default")
    ) {
      const shape = commandShape(job.command);
      this.#cutShort.delete(shape);
      this.#cutShort.set(shape, job.timeout.seconds);
      if (this.#cutShort.size > CUT_SHORT_KEPT) {
        this.#cutShort.delete(this.#cutShort.keys().next().value!);
      }
    }
    const record = this.#record("jobEnded", job.id, () =>
      this.#store?.jobEnded(job.id, {
        status: job.status,
        ended_at: job.endedAt!,
        duration_ms: job.endedAt! - job.startedAt,
        exit_code: job.exitCode,
        signal: job.signal,
        reason: job.reason,
        bytes_stdout: job.bytes.stdout,
        bytes_stderr: job.bytes.stderr,
        truncated: job.truncated,
        output_head: job.outputHead,
        output_tail: job.outputTail,
        hooks: job.hooksRecord(),
      }));
    this.#trackRecord(record);
    this.logger.debug("job finished", {
      job_id: job.id,
      status: job.status,
      exit_code: job.exitCode,
    });
    // The spool's files are closed now; its reads reopen them (`jobs.output` after the end).
    job.spool.seal().catch((error) =>
      this.logger.warn("cannot close a job's output files", {
        job_id: job.id,
        error: (error as Error).message,
      })
    );
    this.#finishedOrder.push(job.id);
    while (this.#finishedOrder.length > this.config.keepFinishedJobs) {
      this.#forget(this.#finishedOrder.shift()!);
    }
  }

  /** Drops a finished job from memory, and its output with it. */
  #forget(jobId: string): void {
    const job = this.#jobs.get(jobId);
    this.#jobs.delete(jobId);
    job?.spool[Symbol.asyncDispose]().catch((error) =>
      this.logger.warn("cannot delete a job's output files", {
        job_id: jobId,
        error: (error as Error).message,
      })
    );
  }

  /** The environment a job's run starts from: a claude run cc-executor built gets Claude's key. */
  baseEnv(params: JobParams): Record<string, string> | undefined {
    const env = this.#env;
    if (!env) return undefined;
    return params.argv && params.claudeOutputFormat ? env.claude : env.command;
  }

  /** Exempts a session from CC_EXECUTOR_MAX_JOBS_PER_SESSION until it closes. */
  exemptFromSessionLimit(sessionId: string): void {
    this.#unlimitedOwners.add(sessionId);
  }

  /** A connection went away: drop its subscriptions and cancel the jobs it owns, unless detached. */
  sessionClosed(sessionId: string): void {
    this.#unlimitedOwners.delete(sessionId);
    for (const job of this.#running) {
      job.unsubscribe(sessionId);
      if (job.owner === sessionId && !job.detach) job.terminate("canceled", "client disconnected");
    }
  }

  /**
   * Stops every job (SIGTERM, grace, SIGKILL) and waits until each has completed and its record
   * has been written.
   */
  async shutdown(reason = "server shutting down"): Promise<void> {
    this.#shuttingDown = true;
    // Hooks of the stopping jobs get the jobs' grace period and a little more, then are cut short.
    const hookGrace = setTimeout(
      () => this.#hookStop.abort(new Error("the server is shutting down")),
      this.config.killGraceMs + SHUTDOWN_HOOK_GRACE_MS,
    );
    await Promise.all([...this.#starting.values()].map((p) => p.catch(() => {})));
    const running = [...this.#running];
    for (const job of running) job.terminate("canceled", reason);
    await Promise.all(running.map((job) => job.done));
    clearTimeout(hookGrace);
    await Promise.all(this.#pendingRecords);
    // The spool folder goes with the server; finished jobs' outputs go with it.
    await Promise.all(
      [...this.#jobs.values()].map((job) => job.spool[Symbol.asyncDispose]().catch(() => {})),
    );
  }

  /** SIGKILL to every running group, for a second Ctrl-C; hooks still running are stopped too. */
  killAll(): void {
    this.#hookStop.abort(new Error("the server is being killed"));
    for (const job of this.#running) {
      try {
        job.group.signal("SIGKILL");
      } catch (error) {
        this.logger.error("cannot kill job", { job_id: job.id, error: (error as Error).message });
      }
    }
  }
}

function checkCwd(cwd: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(cwd);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound ? "does not exist" : (error as Error).message;
    throw new RpcError(ErrorCode.INVALID_CWD, `Cannot execute: cwd "${cwd}" ${why}`, { cwd });
  }
  if (!info.isDirectory) {
    throw new RpcError(ErrorCode.INVALID_CWD, `Cannot execute: cwd "${cwd}" is not a directory`, {
      cwd,
    });
  }
}

/** The first and the last executions, when there are more than a record keeps. */
function keepEnds<T>(items: T[]): T[] {
  if (items.length <= RECORD_EXECUTIONS_KEPT) return items;
  const head = Math.floor(RECORD_EXECUTIONS_KEPT / 5);
  return [...items.slice(0, head), ...items.slice(items.length - (RECORD_EXECUTIONS_KEPT - head))];
}

/**
 * `params` running `command` instead: a built argv no longer says what runs once a hook changed
 * the command (the new text is shell text), so it is dropped then.
 */
function withCommand(params: JobParams, command: string): JobParams {
  if (command === params.command) return params;
  const { argv: _built, claudeOutputFormat: _format, claudeRun: _run, ...rest } = params;
  return { ...rest, command };
}

/** A watcher for `command` when it runs Claude (a session, not a subcommand such as `claude mcp`). */
function claudeWatcherFor(command: string): ClaudeWatcher | null {
  // Most commands never name claude: skip parsing them.
  if (!command.includes("claude")) return null;
  const invocation = claudeInvocation(command);
  return invocation && !invocation.subcommand ? new ClaudeWatcher(invocation) : null;
}

/** A progress notification without Claude's text (see Job.#sendClaude). */
function withoutClaudeText(notice: ClaudeNotice & { method: "claude.event" }): ClaudeNotice {
  const { text: _text, result, ...params } = notice.params;
  return {
    method: "claude.event",
    params: { ...params, ...(result ? { result: { ...result, text: null } } : {}) },
  };
}
