/**
 * Runs chains of hooks: each hook with its timeout, its result checked
 * against what its point accepts, its failure handled by its `on_failure`.
 * A hook that throws, hangs or returns garbage is recorded as failed; it
 * never crashes the server or holds a job longer than its timeout.
 *
 * `HookSet` is one loaded set (built-ins, TypeScript files, command hooks);
 * it keeps counts and recent executions for `hooks.status`.
 *
 * @module
 */
import { z } from "zod";
import { MAX_TIMEOUT_SECONDS } from "../server/protocol.ts";
import type { Hook, HookKind, LoadProblem } from "./hook.ts";
import type {
  ErrorContext,
  HookContext,
  HookPoint,
  HookResult,
  JobOutcome,
  JobRequest,
  OnFailure,
  OutputContext,
  PostExecutionContext,
  PreExecutionContext,
} from "./types.ts";

/** What one hook did once, for records, `hooks.status` and `hooks run`. */
export interface HookExecution {
  hook: string;
  point: HookPoint;
  kind: HookKind;
  job_id: string;
  /** ISO 8601. */
  at: string;
  duration_ms: number;
  /** changed: proceeded with changes (or attached data); retry: asked for another run. */
  outcome: "proceeded" | "changed" | "blocked" | "retry" | "failed";
  message?: string;
  /** Why it failed: thrown message, timeout, or what was wrong with its result. */
  error?: string;
  /** With `failed`: what the failure led to. */
  on_failure?: OnFailure;
  /** The fields it changed (pre_execution) or its attachment's keys. */
  changes?: string[];
}

/** Counts per hook since it was loaded. */
export interface HookCounts {
  runs: number;
  proceeded: number;
  changed: number;
  blocked: number;
  retry: number;
  failed: number;
  total_ms: number;
}

/** Told about each failure as it happens (the job sends `hook.error`). */
export type FailureListener = (execution: HookExecution) => void;

export interface PreResult {
  /** The request after every hook's changes (unchanged when blocked). */
  request: JobRequest;
  blocked: { hook: string; message: string } | null;
  executions: HookExecution[];
}

export interface AfterRunResult {
  /** Set when an error hook asked for another run. */
  retry: { hook: string; command: string; message: string | null } | null;
  /** Data attached by hooks, by hook name. */
  attached: Record<string, unknown>;
  executions: HookExecution[];
}

/** What every chain takes besides its context. */
export interface ChainOptions {
  /** Told about each failure as it happens. */
  onFailure?: FailureListener;
  /** Aborted when the server stops waiting for hooks (shutdown): the chain ends at once. */
  stop?: AbortSignal;
}

/** Recent executions kept for `hooks.status`. */
const RECENT_KEPT = 100;

/** Largest attachment one hook may add to a record, as JSON. */
const MAX_ATTACH_BYTES = 64 * 1024;

const EnvChanges = z.record(
  z.string().regex(/^[^=\0]+$/, "variable names must not contain '=' or NUL"),
  z.string(),
);
const Attach = z.record(z.string(), z.unknown()).refine((value) => {
  try {
    return JSON.stringify(value).length <= MAX_ATTACH_BYTES;
  } catch {
    return false;
  }
}, `must be JSON of at most ${MAX_ATTACH_BYTES} bytes`);

/** What each point accepts; strict, so a misspelt field is a failure, not silently ignored. */
const RESULT_SCHEMAS: Record<HookPoint, z.ZodType<HookResult>> = {
  pre_execution: z.strictObject({
    proceed: z.boolean().optional(),
    message: z.string().optional(),
    command: z.string().refine((s) => s.trim().length > 0, "is empty").optional(),
    cwd: z.string().min(1).optional(),
    env: EnvChanges.optional(),
    timeout: z.number().positive().max(MAX_TIMEOUT_SECONDS).optional(),
  }),
  post_execution: z.strictObject({
    message: z.string().optional(),
    attach: Attach.optional(),
  }),
  error: z.strictObject({
    message: z.string().optional(),
    attach: Attach.optional(),
    retry: z.union([
      z.boolean(),
      z.strictObject({
        command: z.string().refine((s) => s.trim().length > 0, "is empty").optional(),
      }),
    ]).optional(),
  }),
  output: z.strictObject({
    data: z.string().optional(),
    state: z.record(z.string(), z.unknown()).optional(),
    message: z.string().optional(),
  }),
};

/** One hook's run: its checked result, or why it failed. */
export type Ran =
  | { ok: true; result: HookResult; durationMs: number }
  | { ok: false; error: string; durationMs: number; timedOut: boolean };

/** Where a set's hooks came from, for `hooks.status`. */
export interface HookSetOrigin {
  /** The TypeScript hooks folder, absolute. */
  dir: string;
  /** The command hooks file, absolute. */
  configFile: string;
  /** Why the folder was not read at all, when it was not. */
  dirNote: string | null;
  /** False in the compiled binary. */
  typescriptSupported: boolean;
}

/** One loaded set of hooks: built-ins first, then TypeScript files, then command hooks. */
export class HookSet implements AsyncDisposable {
  readonly loadedAt = new Date();
  readonly #byPoint = new Map<HookPoint, Hook[]>();
  readonly #counts = new Map<string, HookCounts>();
  readonly #recent: HookExecution[] = [];
  readonly #dispose: () => Promise<void>;
  #users = 0;
  #retired = false;
  #disposed: Promise<void> | null = null;

  constructor(
    readonly hooks: readonly Hook[],
    readonly problems: readonly LoadProblem[],
    readonly origin: HookSetOrigin,
    dispose: () => Promise<void> = () => Promise.resolve(),
  ) {
    this.#dispose = dispose;
    for (const hook of hooks) {
      const list = this.#byPoint.get(hook.point) ?? [];
      list.push(hook);
      this.#byPoint.set(hook.point, list);
      this.#counts.set(hook.name, {
        runs: 0,
        proceeded: 0,
        changed: 0,
        blocked: 0,
        retry: 0,
        failed: 0,
        total_ms: 0,
      });
    }
  }

  /** A set with no hooks at all: jobs skip every hook step. */
  static empty(origin: HookSetOrigin): HookSet {
    return new HookSet([], [], origin);
  }

  get isEmpty(): boolean {
    return this.hooks.length === 0;
  }

  has(point: HookPoint): boolean {
    return (this.#byPoint.get(point)?.length ?? 0) > 0;
  }

  counts(name: string): HookCounts | undefined {
    return this.#counts.get(name);
  }

  get recent(): readonly HookExecution[] {
    return this.#recent;
  }

  // -- lifetime: a job holds the set it started with, even across a reload ----------------------

  /** Marks one more job using this set; release() when it is done. */
  acquire(): this {
    this.#users++;
    return this;
  }

  release(): void {
    this.#users--;
    if (this.#retired && this.#users <= 0) void this[Symbol.asyncDispose]();
  }

  /** A reload replaced this set: dispose of it once no job uses it. */
  retire(): void {
    this.#retired = true;
    if (this.#users <= 0) void this[Symbol.asyncDispose]();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.#disposed ??= this.#dispose();
  }

  // -- chains -----------------------------------------------------------------------------------

  /** Runs the pre_execution chain: each hook sees the request as the hooks before it left it. */
  async runPre(
    base: Omit<PreExecutionContext, "point">,
    options: ChainOptions = {},
  ): Promise<PreResult> {
    const onFailure = options.onFailure;
    let request = base.request;
    const executions: HookExecution[] = [];
    for (const hook of this.#byPoint.get("pre_execution") ?? []) {
      const ctx: PreExecutionContext = { ...base, point: "pre_execution", request: copy(request) };
      const ran = await this.#run(hook, ctx, options.stop);
      if (!ran.ok) {
        if (this.#failed(hook, base.job_id, ran, executions, onFailure)) {
          return {
            request,
            blocked: {
              hook: hook.name,
              message: `hook ${hook.name} failed and ${
                hook.required ? "is required" : "blocks on failure"
              }: ${ran.error}`,
            },
            executions,
          };
        }
        continue;
      }
      const { result } = ran;
      if (result.proceed === false) {
        const message = result.message ?? `blocked by hook ${hook.name}`;
        executions.push(this.#note(hook, base.job_id, ran, { outcome: "blocked", message }));
        return { request, blocked: { hook: hook.name, message }, executions };
      }
      const changes: string[] = [];
      const next = { ...request, env: { ...request.env } };
      if (result.command !== undefined && result.command !== request.command) {
        next.command = result.command;
        changes.push("command");
      }
      if (result.cwd !== undefined && result.cwd !== request.cwd) {
        next.cwd = result.cwd;
        changes.push("cwd");
      }
      if (result.env !== undefined) {
        const changed = Object.entries(result.env).filter(([k, v]) => request.env[k] !== v);
        if (changed.length > 0) {
          Object.assign(next.env, result.env);
          changes.push(...changed.map(([k]) => `env.${k}`));
        }
      }
      if (result.timeout !== undefined && result.timeout !== request.timeout) {
        next.timeout = result.timeout;
        changes.push("timeout");
      }
      request = next;
      executions.push(this.#note(hook, base.job_id, ran, {
        outcome: changes.length > 0 ? "changed" : "proceeded",
        message: result.message,
        changes: changes.length > 0 ? changes : undefined,
      }));
    }
    return { request, blocked: null, executions };
  }

  /**
   * After a failed run (failed, timed out, killed, error; not canceled): the error chain, which may
   * ask for a retry when `retryAllowed`. The first hook asking for one ends the chain.
   */
  async runError(
    base: Omit<ErrorContext, "point" | "max_attempts">,
    options: ChainOptions & { maxAttempts: number; retryAllowed: boolean },
  ): Promise<AfterRunResult> {
    const attached: Record<string, unknown> = {};
    const executions: HookExecution[] = [];
    if (!isFailure(base.outcome)) return { retry: null, attached, executions };
    for (const hook of this.#byPoint.get("error") ?? []) {
      const ctx: ErrorContext = {
        ...base,
        request: copy(base.request),
        point: "error",
        max_attempts: options.maxAttempts,
      };
      const ran = await this.#run(hook, ctx, options.stop);
      if (!ran.ok) {
        if (this.#failed(hook, base.job_id, ran, executions, options.onFailure)) break;
        continue;
      }
      const { result } = ran;
      if (result.attach) attached[hook.name] = result.attach;
      const wantsRetry = result.retry !== undefined && result.retry !== false;
      if (wantsRetry && options.retryAllowed) {
        const command = typeof result.retry === "object" && result.retry.command !== undefined
          ? result.retry.command
          : base.request.command;
        executions.push(this.#note(hook, base.job_id, ran, {
          outcome: "retry",
          message: result.message,
        }));
        return {
          retry: { hook: hook.name, command, message: result.message ?? null },
          attached,
          executions,
        };
      }
      executions.push(this.#note(hook, base.job_id, ran, {
        outcome: result.attach ? "changed" : "proceeded",
        message: wantsRetry
          ? `${
            result.message ? result.message + "; " : ""
          }retry not possible (attempt ${base.attempt} of ${options.maxAttempts})`
          : result.message,
        changes: result.attach ? Object.keys(result.attach) : undefined,
      }));
    }
    return { retry: null, attached, executions };
  }

  /** Once the job's outcome is final (no retry follows): the post_execution chain. */
  async runPost(
    base: Omit<PostExecutionContext, "point">,
    options: ChainOptions = {},
  ): Promise<Omit<AfterRunResult, "retry">> {
    const attached: Record<string, unknown> = {};
    const executions: HookExecution[] = [];
    for (const hook of this.#byPoint.get("post_execution") ?? []) {
      const ctx: PostExecutionContext = {
        ...base,
        request: copy(base.request),
        point: "post_execution",
        attached: structuredClone({ ...base.attached, ...attached }),
      };
      const ran = await this.#run(hook, ctx, options.stop);
      if (!ran.ok) {
        if (this.#failed(hook, base.job_id, ran, executions, options.onFailure)) break;
        continue;
      }
      const { result } = ran;
      if (result.attach) attached[hook.name] = result.attach;
      executions.push(this.#note(hook, base.job_id, ran, {
        outcome: result.attach ? "changed" : "proceeded",
        message: result.message,
        changes: result.attach ? Object.keys(result.attach) : undefined,
      }));
    }
    return { attached, executions };
  }

  /** A filter for one job's output through the output chain; null when there are no output hooks. */
  outputFilter(base: OutputBase, options: ChainOptions = {}): OutputFilter | null {
    const hooks = this.#byPoint.get("output") ?? [];
    return hooks.length === 0 ? null : new OutputFilter(this, hooks, base, options);
  }

  // -- one hook ---------------------------------------------------------------------------------

  /**
   * Runs one hook with its timeout and checks its result; never rejects. `stop` (the server
   * shutting down) ends the wait at once, like a timeout.
   */
  async #run(hook: Hook, ctx: HookContext, stop?: AbortSignal): Promise<Ran> {
    const started = performance.now();
    if (stop?.aborted) return fail(`not run: ${reasonOf(stop)}`);
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onStop: (() => void) | undefined;
    const gaveUp = new Promise<"timeout" | "stopped">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), hook.timeoutMs);
      onStop = () => resolve("stopped");
      stop?.addEventListener("abort", onStop, { once: true });
    });
    let value: unknown;
    try {
      // invoke() may throw synchronously (a built-in's bug): that is a failure like any other.
      const outcome = await Promise.race([
        Promise.resolve().then(() => hook.invoke(ctx, abort.signal)),
        gaveUp,
      ]);
      if (outcome === "timeout") {
        abort.abort(new Error("timed out"));
        return fail(`did not finish within its timeout (${hook.timeoutMs} ms)`, true);
      }
      if (outcome === "stopped") {
        abort.abort(stop!.reason);
        return fail(`stopped: ${reasonOf(stop!)}`);
      }
      value = outcome;
    } catch (error) {
      return fail(messageOf(error));
    } finally {
      clearTimeout(timer);
      if (onStop) stop?.removeEventListener("abort", onStop);
    }
    if (value === undefined || value === null) return ok({});
    const parsed = RESULT_SCHEMAS[hook.point].safeParse(value);
    if (!parsed.success) {
      return fail(`returned an invalid result for ${hook.point}: ${describe(parsed.error, value)}`);
    }
    return ok(parsed.data);

    function ok(result: HookResult): Ran {
      return { ok: true, result, durationMs: performance.now() - started };
    }
    function fail(error: string, timedOut = false): Ran {
      return { ok: false, error, durationMs: performance.now() - started, timedOut };
    }
  }

  /** Records a failed run and tells the listener; true when the hook's on_failure stops the chain. */
  #failed(
    hook: Hook,
    jobId: string,
    ran: Ran,
    executions: HookExecution[],
    onFailure?: FailureListener,
  ): boolean {
    const execution = this.#note(hook, jobId, ran, {
      outcome: "failed",
      on_failure: hook.onFailure,
    });
    executions.push(execution);
    onFailure?.(execution);
    return hook.onFailure === "block";
  }

  /** Counts an output hook's run without keeping it in the recent list (there is one per chunk). */
  countOutput(hook: Hook, ran: Ran): void {
    const counts = this.#counts.get(hook.name);
    if (!counts) return;
    counts.runs++;
    counts.total_ms += ran.durationMs;
    if (ran.ok) counts.proceeded++;
    else counts.failed++;
  }

  /** Runs an output hook (for OutputFilter). */
  runOutput(hook: Hook, ctx: OutputContext, stop?: AbortSignal): Promise<Ran> {
    return this.#run(hook, ctx, stop);
  }

  /** Records a failure of an output hook in the recent list. */
  noteOutputFailure(hook: Hook, jobId: string, ran: Ran & { ok: false }): HookExecution {
    return this.#note(hook, jobId, ran, { outcome: "failed", on_failure: hook.onFailure }, false);
  }

  #note(
    hook: Hook,
    jobId: string,
    ran: Ran,
    detail: Pick<HookExecution, "outcome" | "message" | "on_failure" | "changes">,
    count = true,
  ): HookExecution {
    const execution: HookExecution = {
      hook: hook.name,
      point: hook.point,
      kind: hook.source.kind,
      job_id: jobId,
      at: new Date().toISOString(),
      duration_ms: Math.round(ran.durationMs * 100) / 100,
      outcome: detail.outcome,
      ...(detail.message !== undefined ? { message: detail.message } : {}),
      ...(!ran.ok ? { error: ran.error } : {}),
      ...(detail.on_failure ? { on_failure: detail.on_failure } : {}),
      ...(detail.changes ? { changes: detail.changes } : {}),
    };
    const counts = this.#counts.get(hook.name);
    if (counts && count) {
      counts.runs++;
      counts[detail.outcome]++;
      counts.total_ms += ran.durationMs;
    }
    this.#recent.push(execution);
    if (this.#recent.length > RECENT_KEPT) this.#recent.shift();
    return execution;
  }
}

/**
 * One job's output through the output hooks, chunk by chunk and in order. Each hook keeps its own
 * state per stream; at the end of a stream every hook gets a `final` call to release what it held.
 */
export class OutputFilter {
  readonly #states = new Map<string, Record<string, unknown>>();
  /**
   * Hooks that timed out on this job: each chunk would wait their whole timeout again, holding the
   * job (and a stopping job's end) for minutes, so they are not called again for it. One with
   * on_failure "block" then withholds the rest of the output.
   */
  readonly #tripped = new Set<string>();
  /** Failures, for the job's record (one per hook is enough to tell). */
  readonly failures: HookExecution[] = [];
  #base: OutputBase;

  constructor(
    private readonly set: HookSet,
    private readonly hooks: readonly Hook[],
    base: OutputBase,
    private readonly options: ChainOptions = {},
  ) {
    this.#base = base;
  }

  /** A retry: the hooks see its attempt and request from now on (their state carries over). */
  rebase(base: OutputBase): void {
    this.#base = base;
  }

  /** The text to send and store for one chunk (possibly empty). */
  push(stream: OutputContext["stream"], data: string, offset: number): Promise<string> {
    return this.#through(stream, data, offset, false);
  }

  /** What the hooks still held for `stream`, at its end. */
  end(stream: OutputContext["stream"], offset: number): Promise<string> {
    return this.#through(stream, "", offset, true);
  }

  async #through(
    stream: OutputContext["stream"],
    data: string,
    offset: number,
    final: boolean,
  ): Promise<string> {
    for (const hook of this.hooks) {
      if (this.#tripped.has(hook.name)) {
        if (hook.onFailure === "block") data = "";
        continue;
      }
      const key = `${hook.name}\0${stream}`;
      let state = this.#states.get(key);
      if (!state) this.#states.set(key, state = {});
      // At the end, a hook still gets its final call when the hooks before it released nothing.
      if (!final && data.length === 0) continue;
      const ctx: OutputContext = {
        ...this.#base,
        point: "output",
        stream,
        data,
        offset,
        final,
        state,
      };
      const ran = await this.set.runOutput(hook, ctx, this.options.stop);
      this.set.countOutput(hook, ran);
      if (!ran.ok) {
        if (!this.failures.some((f) => f.hook === hook.name)) {
          const execution = this.set.noteOutputFailure(hook, this.#base.job_id, ran);
          this.failures.push(execution);
          this.options.onFailure?.(execution);
        }
        if (ran.timedOut || this.options.stop?.aborted) this.#tripped.add(hook.name);
        // Fail closed: a failed redaction must not let the text (or what it held back) through.
        if (hook.onFailure === "block") {
          data = `[output withheld: hook ${hook.name} failed${
            this.#tripped.has(hook.name) ? "; the rest of this job's output is withheld" : ""
          }]\n`;
        }
        continue;
      }
      if (ran.result.state) this.#states.set(key, ran.result.state);
      if (ran.result.data !== undefined) data = ran.result.data;
    }
    return data;
  }
}

type OutputBase = Omit<OutputContext, "point" | "stream" | "data" | "offset" | "final" | "state">;

/** The request as hooks see it: a copy, so one hook cannot change another's view in place. */
function copy(request: JobRequest): JobRequest {
  return { ...request, env: { ...request.env } };
}

function isFailure(outcome: JobOutcome): boolean {
  return outcome.status === "failed" || outcome.status === "timed_out" ||
    outcome.status === "killed" || outcome.status === "error";
}

function reasonOf(signal: AbortSignal): string {
  return signal.reason instanceof Error
    ? signal.reason.message
    : String(signal.reason ?? "stopped");
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return `threw ${JSON.stringify(error) ?? String(error)}`;
}

function describe(error: z.ZodError, value: unknown): string {
  if (typeof value !== "object" || Array.isArray(value)) {
    return `expected an object (or nothing), got ${
      Array.isArray(value) ? "an array" : typeof value
    }`;
  }
  return error.issues.map((issue) => {
    const path = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`;
    }
    return path ? `${path}: ${issue.message}` : issue.message;
  }).join("; ");
}
