/**
 * # Fake `claude` for cc-executor's tests
 *
 * `tests/fake_claude/claude` (a two-line sh launcher for this file) behaves like the Claude Code
 * CLI 2.1.197 in `-p` mode, without a network or an account, and prints real-shaped output:
 *
 *     claude -p [--output-format text|json|stream-json] [--verbose] [--model M] [--] PROMPT
 *
 * Like the real one it reads the prompt from stdin when no prompt argument is given, answers
 * `--version` with `2.1.197 (Claude Code)`, and refuses what 2.1.197 refuses, with its words
 * (on stderr, exit 1): an `--output-format` outside the three, `stream-json` without `--verbose`,
 * and no prompt at all. Every other option is accepted and ignored.
 *
 * ## Scenarios
 *
 * A scenario comes from a marker in the prompt (`[[token-limit]]`), else from the environment
 * variable `FAKE_CLAUDE_SCENARIO`, else it is `ok`. A scenario is a list of steps, one per attempt:
 * `[[token-limit,ok]]` fails the first run and succeeds from the second on (the last step
 * repeats); `token-limit-then-ok` means the same, and `rate-limit:1*2,ok` repeats a step twice.
 * Attempts are counted only with `FAKE_CLAUDE_STATE=<file>` (without it every run is attempt 1).
 *
 * | step                  | what the run does                                                                 |
 * | --------------------- | --------------------------------------------------------------------------------- |
 * | `ok[:N]`              | N tool rounds (default 1: a `Bash` tool use and its result), then a short answer |
 * | `long-answer[:N]`     | an answer of N paragraphs (default 40) that uses "tokens", "limit", "429"...      |
 * |                       | in their ordinary senses: no limit detector may fire on it                        |
 * | `token-limit[:N]`     | "API Error: Claude's response exceeded the N output token maximum. ..."          |
 * |                       | N defaults to `CLAUDE_CODE_MAX_OUTPUT_TOKENS`, else 32000, as the real one        |
 * | `usage-limit[:S]`     | "You've hit your session limit · resets 3pm (Zone)": the reset S seconds away   |
 * |                       | (default 10800), printed to the minute as Claude prints it                        |
 * | `weekly-limit[:S]`    | the same with "weekly limit" (default 3 days: "resets Dec 1, 9am (Zone)")        |
 * | `usage-limit-epoch[:S]` | the old "Claude AI usage limit reached\|<epoch>" (to the second; default 10800) |
 * | `rate-limit[:S]`      | "API Error: Request rejected (429) · This request would exceed your account's   |
 * |                       | rate limit. Please try again later."; with S, stream-json first carries two       |
 * |                       | `system/api_retry` events with `retry_delay_ms` S×1000 (text output never         |
 * |                       | carries a retry-after, as with the real CLI)                                      |
 * | `overloaded`          | "API Error: Repeated 529 Overloaded errors. The API is at capacity ..."          |
 * | `context-overflow`    | "Prompt is too long"                                                              |
 * | `max-turns[:N]`       | the run stops at `--max-turns` (or N): result `error_max_turns`                   |
 * | `hang`                | prints the init event (stream-json) and then waits to be killed                   |
 *
 * Reset times are printed in `FAKE_CLAUDE_TZ`, else the process's own zone (as Claude does).
 * `[[delay:MS]]` in the prompt, or `FAKE_CLAUDE_DELAY_MS`, waits MS ms between stream-json
 * events, for tests that watch progress arrive.
 *
 * ## Where the messages go (as Claude Code 2.1.197 does it, checked against its binary)
 *
 * A limit is an API error, and in `-p` mode Claude reports API errors as the run's result: text
 * mode prints the message on **stdout** (stderr stays empty); `json` prints one result object with
 * `is_error: true`; `stream-json` emits a synthetic assistant message (`"model":"<synthetic>"`,
 * `"error":"rate_limit"|"max_output_tokens"|"invalid_request"|"server_error"`) and then a result
 * with `"subtype":"success","is_error":true` and `api_error_status`. Every such run exits 1;
 * a successful one exits 0. Usage limits are preceded in stream-json by a `rate_limit_event`
 * with `"status":"rejected"` and the reset epoch.
 *
 * ## Records
 *
 * `FAKE_CLAUDE_LOG=<file>` appends one JSON line per run: `{argv, prompt, output_format, model,
 * verbose, scenario, step, attempt, pid, cwd, time}`, so a test can check the exact prompt and
 * argv it was given. `FAKE_CLAUDE_STATE=<file>` holds one line per run, for attempt counting
 * (safe for runs started at once).
 *
 * @module
 */

const VERSION = "2.1.197";
const encoder = new TextEncoder();
const started = performance.now();

// ---------------------------------------------------------------------------
// Arguments, read as Claude's commander parser reads them (a subset of its options)

const VALUE_OPTIONS = new Set([
  "--output-format",
  "--input-format",
  "--model",
  "--max-turns",
  "--system-prompt",
  "--append-system-prompt",
  "--permission-mode",
  "--session-id",
  "--settings",
  "--setting-sources",
  "--fallback-model",
  "--effort",
  "--agent",
  "--agents",
  "--json-schema",
  "--max-budget-usd",
  "--debug-file",
  "--plugin-dir",
  "--name",
  "-n",
]);
const VARIADIC_OPTIONS = new Set([
  "--allowedTools",
  "--allowed-tools",
  "--disallowedTools",
  "--disallowed-tools",
  "--add-dir",
  "--mcp-config",
  "--tools",
  "--betas",
  "--file",
]);
const OPTIONAL_VALUE = new Set(["--resume", "-r", "--debug", "-d", "--worktree", "-w"]);

interface Args {
  print: boolean;
  verbose: boolean;
  version: boolean;
  values: Map<string, string>;
  prompt: string | null;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    print: false,
    verbose: false,
    version: false,
    values: new Map(),
    prompt: null,
  };
  const operands: string[] = [];
  let variadic = false;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === "--") {
      operands.push(...argv.slice(i + 1));
      break;
    }
    const isOption = word.length > 1 && word.startsWith("-");
    if (variadic && !isOption) continue;
    variadic = false;
    if (!isOption) {
      operands.push(word);
      continue;
    }
    const eq = word.startsWith("--") ? word.indexOf("=") : -1;
    const name = eq === -1 ? word : word.slice(0, eq);
    if (name === "-p" || name === "--print") args.print = true;
    else if (name === "--verbose") args.verbose = true;
    else if (name === "-v" || name === "--version") args.version = true;
    else if (VALUE_OPTIONS.has(name)) {
      const value = eq === -1 ? argv[++i] : word.slice(eq + 1);
      if (value !== undefined) args.values.set(name, value);
    } else if (VARIADIC_OPTIONS.has(name)) {
      if (eq === -1) i++;
      variadic = true;
    } else if (OPTIONAL_VALUE.has(name)) {
      const next = argv[i + 1];
      if (eq === -1 && next !== undefined && !next.startsWith("-")) i++;
    } else if (/^-[a-zA-Z]{2,}$/.test(word)) {
      // A cluster: `-pv` sets both flags; `-p` with a valued letter is not modelled.
      if (word.includes("p")) args.print = true;
    }
  }
  args.prompt = operands[0] ?? null;
  return args;
}

// ---------------------------------------------------------------------------
// Scenario and attempt

interface Step {
  name: string;
  param: number | null;
}

function parseScenario(text: string): Step[] {
  const steps: Step[] = [];
  for (const part of text.replaceAll("-then-", ",").split(",")) {
    const match = /^\s*([a-z-]+)(?::(\d+(?:\.\d+)?))?(?:\*(\d+))?\s*$/.exec(part);
    if (match === null) fail(`fake claude: cannot read scenario step "${part}" in "${text}"`);
    const step = { name: match[1]!, param: match[2] === undefined ? null : Number(match[2]) };
    for (let n = Number(match[3] ?? 1); n > 0; n--) steps.push(step);
  }
  return steps;
}

/** This run's 1-based attempt number: its line's position in the state file. */
function attemptNumber(): number {
  const state = Deno.env.get("FAKE_CLAUDE_STATE");
  if (!state) return 1;
  const token = `${Deno.pid}-${crypto.randomUUID()}`;
  Deno.writeTextFileSync(state, `${token}\n`, { append: true });
  return Deno.readTextFileSync(state).split("\n").indexOf(token) + 1;
}

// ---------------------------------------------------------------------------
// Output

function write(stream: typeof Deno.stdout | typeof Deno.stderr, text: string): void {
  let bytes = encoder.encode(text);
  try {
    while (bytes.length > 0) bytes = bytes.subarray(stream.writeSync(bytes));
  } catch (e) {
    // The reader went away (`| head`, a cancelled job): stop quietly, as a CLI does.
    if (e instanceof Deno.errors.BrokenPipe) Deno.exit(1);
    throw e;
  }
}

function fail(message: string): never {
  write(Deno.stderr, `${message}\n`);
  Deno.exit(1);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Claude Code's reset time: "3pm", "3:07pm", "Dec 1, 9am" (> 24 h away), then " (Zone)". */
function claudeTime(at: Date, zone: string, now: Date): string {
  const minute = Number(
    new Intl.DateTimeFormat("en-US", { timeZone: zone, minute: "numeric" }).format(at),
  );
  const base: Intl.DateTimeFormatOptions = {
    timeZone: zone,
    hour: "numeric",
    minute: minute === 0 ? undefined : "2-digit",
    hour12: true,
  };
  const farAway = (at.getTime() - now.getTime()) / 3_600_000 > 24;
  const year = (d: Date) =>
    new Intl.DateTimeFormat("en-US", { timeZone: zone, year: "numeric" }).format(d);
  const text = farAway
    ? at.toLocaleString("en-US", {
      ...base,
      month: "short",
      day: "numeric",
      ...(year(at) !== year(now) ? { year: "numeric" } : {}),
    })
    : at.toLocaleTimeString("en-US", base);
  return `${text.replace(/[ \u202f]([AP]M)/i, (_, half: string) => half.toLowerCase())} (${zone})`;
}

// ---------------------------------------------------------------------------
// The run

const args = parseArgs(Deno.args);
if (args.version) {
  write(Deno.stdout, `${VERSION} (Claude Code)\n`);
  Deno.exit(0);
}
const format = args.values.get("--output-format") ?? "text";
if (!["text", "json", "stream-json"].includes(format)) {
  fail(
    `error: option '--output-format <format>' argument '${format}' is invalid. ` +
      "Allowed choices are text, json, stream-json.",
  );
}
if (format === "stream-json" && !args.verbose) {
  fail("Error: When using --print, --output-format=stream-json requires --verbose");
}
let prompt = args.prompt;
if (prompt === null && !Deno.stdin.isTerminal()) {
  prompt = (await new Response(Deno.stdin.readable).text()).trim() || null;
}
if (prompt === null) {
  fail(
    "Error: Input must be provided either through stdin or as a prompt argument when using --print",
  );
}

const markers = [...prompt.matchAll(/\[\[([^\]]+)\]\]/g)].map((m) => m[1]!.trim());
const delayMarker = markers.find((m) => m.startsWith("delay:"));
const delayMs = Number(delayMarker?.slice(6) || Deno.env.get("FAKE_CLAUDE_DELAY_MS") || 0);
const scenario = markers.find((m) => !m.startsWith("delay:")) ||
  Deno.env.get("FAKE_CLAUDE_SCENARIO") || "ok";
const steps = parseScenario(scenario);
const attempt = attemptNumber();
const step = steps[Math.min(attempt, steps.length) - 1]!;
const model = args.values.get("--model") ?? "claude-sonnet-4-5-20250929";
const sessionId = args.values.get("--session-id") ?? crypto.randomUUID();

const log = Deno.env.get("FAKE_CLAUDE_LOG");
if (log) {
  const record = {
    argv: Deno.args,
    prompt,
    output_format: format,
    model: args.values.get("--model") ?? null,
    verbose: args.verbose,
    scenario,
    step: step.param === null ? step.name : `${step.name}:${step.param}`,
    attempt,
    pid: Deno.pid,
    cwd: Deno.cwd(),
    time: new Date().toISOString(),
  };
  Deno.writeTextFileSync(log, `${JSON.stringify(record)}\n`, { append: true });
}

let messageCount = 0;
let turns = 0;
const usage = {
  input_tokens: 0,
  output_tokens: 0,
  cache_creation_input_tokens: 0,
  cache_read_input_tokens: 0,
};

async function emit(event: Record<string, unknown>): Promise<void> {
  if (format !== "stream-json") return;
  if (delayMs > 0 && messageCount++ > 0) await sleep(delayMs);
  write(Deno.stdout, `${JSON.stringify(event)}\n`);
}

function messageUsage(input: number, output: number) {
  usage.input_tokens += input;
  usage.output_tokens += output;
  usage.cache_read_input_tokens += 14_000;
  usage.cache_creation_input_tokens += 300;
  return {
    input_tokens: input,
    cache_creation_input_tokens: 300,
    cache_read_input_tokens: 14_000,
    output_tokens: output,
    service_tier: "standard",
  };
}

function assistant(id: string, content: unknown[], stopReason: string | null, output = 40) {
  return {
    type: "assistant",
    message: {
      model,
      id,
      type: "message",
      role: "assistant",
      content,
      stop_reason: stopReason,
      stop_sequence: null,
      usage: messageUsage(6, output),
      context_management: null,
    },
    parent_tool_use_id: null,
    session_id: sessionId,
    uuid: crypto.randomUUID(),
  };
}

const msgId = () => `msg_01${crypto.randomUUID().replaceAll("-", "").slice(0, 22)}`;
const toolId = () => `toolu_01${crypto.randomUUID().replaceAll("-", "").slice(0, 22)}`;

const TOOLS = [
  {
    name: "Bash",
    input: { command: "ls", description: "List files" },
    output: "README.md\nsrc\ntests",
  },
  { name: "Read", input: { file_path: "/repo/README.md" }, output: "     1→# Project\n     2→" },
  {
    name: "Grep",
    input: { pattern: "TODO", path: "/repo/src" },
    output: "Found 2 files\nsrc/a.ts\nsrc/b.ts",
  },
];

async function toolRounds(rounds: number): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    const tool = TOOLS[round % TOOLS.length]!;
    const id = msgId();
    const useId = toolId();
    turns++;
    await emit(
      assistant(id, [{ type: "text", text: `Let me check with ${tool.name} first.` }], null),
    );
    await emit(
      assistant(
        id,
        [{ type: "tool_use", id: useId, name: tool.name, input: tool.input }],
        "tool_use",
      ),
    );
    await emit({
      type: "user",
      message: {
        role: "user",
        content: [{
          tool_use_id: useId,
          type: "tool_result",
          content: tool.output,
          is_error: false,
        }],
      },
      parent_tool_use_id: null,
      session_id: sessionId,
      uuid: crypto.randomUUID(),
      timestamp: new Date().toISOString(),
    });
  }
}

function cost(): number {
  return Math.round(
    (usage.input_tokens * 3 + usage.output_tokens * 15 + usage.cache_read_input_tokens * 0.3 +
      usage.cache_creation_input_tokens * 3.75) / 1e6 * 1e8,
  ) / 1e8;
}

/** Prints the outcome in the chosen format and exits as Claude does. */
async function finish(
  text: string,
  isError: boolean,
  extra: {
    subtype?: string;
    apiErrorStatus?: number | null;
    stopReason?: string;
    errors?: string[];
  } = {},
): Promise<never> {
  const subtype = extra.subtype ?? "success";
  const durationMs = Math.round(performance.now() - started) + 1200;
  const result = {
    type: "result",
    subtype,
    is_error: isError,
    api_error_status: extra.apiErrorStatus ?? null,
    duration_ms: durationMs,
    duration_api_ms: turns === 0 ? 0 : durationMs - 150,
    num_turns: Math.max(turns, 1),
    ...(subtype === "success" ? { result: text } : { errors: extra.errors ?? [text] }),
    stop_reason: extra.stopReason ?? (isError ? "stop_sequence" : "end_turn"),
    session_id: sessionId,
    total_cost_usd: cost(),
    usage: {
      ...usage,
      server_tool_use: { web_search_requests: 0, web_fetch_requests: 0 },
      service_tier: "standard",
      cache_creation: {
        ephemeral_1h_input_tokens: 0,
        ephemeral_5m_input_tokens: usage.cache_creation_input_tokens,
      },
    },
    modelUsage: {
      [model]: {
        inputTokens: usage.input_tokens,
        outputTokens: usage.output_tokens,
        cacheReadInputTokens: usage.cache_read_input_tokens,
        cacheCreationInputTokens: usage.cache_creation_input_tokens,
        webSearchRequests: 0,
        costUSD: cost(),
        contextWindow: 200_000,
        maxOutputTokens: 32_000,
      },
    },
    permission_denials: [],
    terminal_reason: "completed",
    fast_mode_state: "off",
    uuid: crypto.randomUUID(),
  };
  if (format === "stream-json") await emit(result);
  else if (format === "json") write(Deno.stdout, `${JSON.stringify(result)}\n`);
  else write(Deno.stdout, text.endsWith("\n") ? text : `${text}\n`);
  Deno.exit(isError ? 1 : 0);
}

/** An API error as Claude 2.1.197 reports it: a synthetic assistant message, then the result. */
async function apiError(text: string, error: string, status: number | null): Promise<never> {
  await emit({
    type: "assistant",
    message: {
      id: crypto.randomUUID(),
      container: null,
      model: "<synthetic>",
      role: "assistant",
      stop_details: null,
      stop_reason: "stop_sequence",
      stop_sequence: "",
      type: "message",
      usage: {
        input_tokens: 0,
        output_tokens: 0,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
      },
      content: [{ type: "text", text }],
      context_management: null,
    },
    parent_tool_use_id: null,
    session_id: sessionId,
    uuid: crypto.randomUUID(),
    error,
  });
  return await finish(text, true, { apiErrorStatus: status });
}

await emit({
  type: "system",
  subtype: "init",
  cwd: Deno.cwd(),
  session_id: sessionId,
  tools: ["Task", "Bash", "Edit", "Glob", "Grep", "Read", "Write", "WebFetch", "WebSearch"],
  mcp_servers: [],
  model,
  permissionMode: "default",
  slash_commands: ["compact", "context", "init", "review"],
  apiKeySource: "none",
  claude_code_version: VERSION,
  output_style: "default",
  agents: ["general-purpose", "Explore", "Plan"],
  skills: [],
  plugins: [],
  uuid: crypto.randomUUID(),
  fast_mode_state: "off",
});

const now = new Date();
// Read only when needed: loading the zone data costs a few milliseconds of every run.
const zone = () =>
  Deno.env.get("FAKE_CLAUDE_TZ") || Intl.DateTimeFormat().resolvedOptions().timeZone;

switch (step.name) {
  case "ok": {
    await toolRounds(step.param ?? 1);
    const text = `Done. This is fake Claude's answer (attempt ${attempt}).`;
    turns++;
    await emit(assistant(msgId(), [{ type: "text", text }], "end_turn"));
    await finish(text, false);
    break;
  }
  case "long-answer": {
    const paragraphs: string[] = [];
    for (let k = 1; k <= (step.param ?? 40); k++) {
      paragraphs.push(
        `Section ${k}. The tokenizer splits the input into tokens before the model reads it, and ` +
          `the rate limiter in src/limiter.ts resets its bucket every minute; its limit is 429 ` +
          `requests per window in the tests. Output longer than 80 columns is truncated in the ` +
          `old log viewer, and max_tokens in the config caps each reply at 1024 tokens.`,
      );
    }
    const text = paragraphs.join("\n\n");
    await toolRounds(1);
    turns++;
    await emit(assistant(msgId(), [{ type: "text", text }], "end_turn", 9000));
    await finish(text, false);
    break;
  }
  case "token-limit": {
    await toolRounds(1);
    const max = step.param ?? Number(Deno.env.get("CLAUDE_CODE_MAX_OUTPUT_TOKENS") || 32000);
    turns++;
    await apiError(
      `API Error: Claude's response exceeded the ${max} output token maximum. To configure this ` +
        "behavior, set the CLAUDE_CODE_MAX_OUTPUT_TOKENS environment variable.",
      "max_output_tokens",
      null,
    );
    break;
  }
  case "usage-limit":
  case "weekly-limit":
  case "usage-limit-epoch": {
    const weekly = step.name === "weekly-limit";
    const seconds = step.param ?? (weekly ? 3 * 86_400 : 10_800);
    const resetsAt = new Date(now.getTime() + seconds * 1000);
    const epoch = Math.ceil(resetsAt.getTime() / 1000);
    await emit({
      type: "rate_limit_event",
      rate_limit_info: {
        status: "rejected",
        resetsAt: epoch,
        rateLimitType: weekly ? "seven_day" : "five_hour",
        overageStatus: "rejected",
        overageDisabledReason: "org_level_disabled",
        isUsingOverage: false,
      },
      uuid: crypto.randomUUID(),
      session_id: sessionId,
    });
    const text = step.name === "usage-limit-epoch"
      ? `Claude AI usage limit reached|${epoch}`
      : `You've hit your ${weekly ? "weekly" : "session"} limit · resets ${
        claudeTime(resetsAt, zone(), now)
      }`;
    await apiError(text, "rate_limit", 429);
    break;
  }
  case "rate-limit": {
    if (step.param !== null) {
      for (let retry = 1; retry <= 2; retry++) {
        await emit({
          type: "system",
          subtype: "api_retry",
          attempt: retry,
          max_retries: 10,
          retry_delay_ms: step.param * 1000,
          error_status: 429,
          error: "rate_limit",
          session_id: sessionId,
          uuid: crypto.randomUUID(),
        });
      }
    }
    await apiError(
      "API Error: Request rejected (429) · This request would exceed your account's rate limit. " +
        "Please try again later.",
      "rate_limit",
      429,
    );
    break;
  }
  case "overloaded":
    await apiError(
      "API Error: Repeated 529 Overloaded errors. The API is at capacity — this is usually " +
        "temporary. Try again in a moment. If it persists, check https://status.claude.com.",
      "server_error",
      529,
    );
    break;
  case "context-overflow":
    await apiError("Prompt is too long", "invalid_request", 400);
    break;
  case "max-turns": {
    const max = step.param ?? Number(args.values.get("--max-turns") ?? 2);
    await toolRounds(max);
    // 2.1.197 prints this line in text mode; json/stream-json carry `errors` instead of `result`.
    await finish(`Error: Reached max turns (${max})`, true, {
      subtype: "error_max_turns",
      stopReason: "tool_use",
      errors: [`Reached maximum number of turns (${max})`],
    });
    break;
  }
  case "hang":
    for (;;) await sleep(3_600_000); // a pending timer keeps the process alive until killed
  default:
    fail(`fake claude: unknown scenario step "${step.name}" (in "${scenario}")`);
}
