/**
 * `test assess hooks`: a temporary hooks folder with blocking, rewriting,
 * failing, output and attaching hooks, in both forms (a TypeScript file and
 * command hooks in hooks.json), and scenarios that check over the wire and
 * through `run` that each does what docs/hooks.md says, and that an ordinary
 * command goes through the chain unchanged.
 *
 * `--hooks-dir` adds the user's own hooks to the folder (a re-exporting file
 * for each TypeScript file, their hooks.json entries with paths made
 * absolute), so the same scenarios show whether those hooks leave the
 * documented behaviour intact.
 *
 * @module
 */
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Frame, RawClient } from "./raw_client.ts";
import { jobId, ofJob } from "./job_frames.ts";
import type { Scenario, ScenarioContext } from "./scenario.ts";
import { untrustedFileReason } from "../../hooks/trust.ts";
import { UsageError } from "../output.ts";

/** Words in a command that make the assessment's hooks act. */
const WORDS = {
  block: "ASSESS_BLOCK_ME",
  rewrite: "ASSESS_REWRITE_ME",
  throws: "ASSESS_THROW",
  required: "ASSESS_REQUIRED_FAIL",
  secret: "ASSESS_SECRET_VALUE",
  commandBlock: "ASSESS_COMMAND_HOOK_BLOCK",
} as const;

const REWRITTEN = "echo rewritten by a hook";

/** The TypeScript hooks, self-contained (no import), so the file works wherever it is. */
const TYPESCRIPT_HOOKS =
  `// Written by \`cc-executor test assess hooks\` for one run; see docs/hooks.md.
const has = (ctx, word) => ctx.request.command.includes(word);

export const HOOKS = {
  pre_execution: [
    {
      name: "assess-block",
      run: (ctx) =>
        has(ctx, "${WORDS.block}") ? { proceed: false, message: "the assessment blocks this" } : {},
    },
    {
      name: "assess-rewrite",
      run: (ctx) => has(ctx, "${WORDS.rewrite}") ? { command: "${REWRITTEN}" } : {},
    },
    {
      name: "assess-throw",
      run: (ctx) => {
        if (has(ctx, "${WORDS.throws}")) throw new Error("the assessment's hook failed on purpose");
        return {};
      },
    },
    {
      name: "assess-required",
      required: true,
      run: (ctx) => {
        if (has(ctx, "${WORDS.required}")) throw new Error("a required hook failed on purpose");
        return {};
      },
    },
  ],
  output: [
    {
      name: "assess-redact",
      run: (ctx) => ({ data: ctx.data.replaceAll("${WORDS.secret}", "[hidden]") }),
    },
  ],
  post_execution: [
    {
      name: "assess-attach",
      run: (ctx) => ({ attach: { exit_code: ctx.outcome.exit_code } }),
    },
  ],
};
`;

/** A command hook: exit 2 blocks (stderr is the message), else proceed. */
const COMMAND_GUARD = `#!/bin/sh
# Written by \`cc-executor test assess hooks\`: blocks commands holding ${WORDS.commandBlock}.
ctx=$(cat)
case "$ctx" in
  *${WORDS.commandBlock}*) echo "the assessment's command hook blocks this" >&2; exit 2 ;;
esac
exit 0
`;

/** A command hook that attaches its own JSON to every job. */
const COMMAND_ATTACH = `#!/bin/sh
cat >/dev/null
echo '{"attach": {"from": "command hook"}}'
`;

const OWN_HOOKS = {
  typescript: [
    "assess-block",
    "assess-rewrite",
    "assess-throw",
    "assess-required",
    "assess-redact",
    "assess-attach",
  ],
  command: ["assess-command-guard", "assess-command-attach"],
};

/**
 * Writes the assessment's hooks into `dir` (created), plus those of `userDir` when given, and
 * returns `dir`.
 */
export async function writeHooksFolder(dir: string, userDir?: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const write = async (name: string, text: string, mode: number) => {
    await Deno.writeTextFile(join(dir, name), text, { mode });
    await Deno.chmod(join(dir, name), mode);
  };
  await write("assess_hooks.ts", TYPESCRIPT_HOOKS, 0o644);
  await write("assess_guard.sh", COMMAND_GUARD, 0o755);
  await write("assess_attach.sh", COMMAND_ATTACH, 0o755);
  const entries: unknown[] = [
    { name: "assess-command-guard", point: "pre_execution", command: ["./assess_guard.sh"] },
    { name: "assess-command-attach", point: "post_execution", command: ["./assess_attach.sh"] },
  ];
  if (userDir !== undefined) entries.push(...await addUserHooks(resolve(userDir), write));
  await write("hooks.json", JSON.stringify({ hooks: entries }, null, 2) + "\n", 0o644);
  return dir;
}

/**
 * Re-exports the user's TypeScript hooks (the folder was checked to exist) into `dir`; returns
 * their hooks.json entries, made absolute. A file cc-executor would refuse (writable by others)
 * is not loaded: its stand-in throws the reason, so the server reports it as the refusal it is.
 */
async function addUserHooks(
  userDir: string,
  write: (name: string, text: string, mode: number) => Promise<void>,
): Promise<unknown[]> {
  for await (const entry of Deno.readDir(userDir)) {
    const name = entry.name;
    if (name.startsWith(".") || !name.endsWith(".ts") || name.endsWith(".d.ts")) continue;
    const file = join(userDir, name);
    const refused = untrustedFileReason(file, userDir);
    // A file that re-exports theirs keeps their relative imports working from where they are.
    const url = pathToFileURL(file).href;
    await write(
      `yours_${name}`,
      refused ? refusedModule(refused) : `export { HOOKS } from ${JSON.stringify(url)};\n`,
      0o644,
    );
  }
  const entries = await readUserHooksJson(userDir);
  if (entries === null) return [];
  const refused = untrustedFileReason(join(userDir, "hooks.json"), userDir);
  if (refused) {
    await write("yours_hooks.json.refused.ts", refusedModule(refused), 0o644);
    return [];
  }
  const absolute = (path: string) => isAbsolute(path) ? path : resolve(userDir, path);
  return entries.map((entry) => {
    // What is not an entry at all goes in as it is: the server says what is wrong with it.
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) return entry;
    const { command, cwd } = entry as Record<string, unknown>;
    return {
      ...entry,
      ...(Array.isArray(command) && typeof command[0] === "string" && command[0].includes("/")
        ? { command: [absolute(command[0]), ...command.slice(1)] }
        : {}),
      cwd: absolute(typeof cwd === "string" ? cwd : "."),
    };
  });
}

/** A stand-in for a file cc-executor refuses: loading it fails with the reason. */
function refusedModule(reason: string): string {
  return `// cc-executor refuses the file this stands for, so the assessment does not load it.\n` +
    `throw new Error(${JSON.stringify(`refused as cc-executor refuses it: ${reason}`)});\n`;
}

/**
 * The entries of `userDir`'s hooks.json, or null when it has none.
 *
 * @throws {UsageError} when the file is not JSON shaped as `{ "hooks": [...] }`: its entries
 * cannot be merged into the assessment's.
 */
export async function readUserHooksJson(userDir: string): Promise<unknown[] | null> {
  const path = join(resolve(userDir), "hooks.json");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    throw new UsageError(`test assess: --hooks-dir: ${path} is not valid JSON: ${error.message}`);
  }
  const hooks = (parsed as { hooks?: unknown } | null)?.hooks;
  if (typeof parsed !== "object" || Array.isArray(parsed) || !Array.isArray(hooks)) {
    throw new UsageError(
      `test assess: --hooks-dir: ${path}: expected an object such as { "hooks": [ ... ] }`,
    );
  }
  return hooks;
}

async function execute(client: RawClient, params: Record<string, unknown>) {
  const response = await client.call("execute", params);
  const done: Frame | null = response.result
    ? await client.completion(response.result.job_id, 30_000)
    : null;
  return { response, done };
}

/** Skips a scenario of TypeScript hooks on a server that cannot load them (the compiled binary). */
async function typescriptLoaded(ctx: ScenarioContext, client: RawClient): Promise<void> {
  const status = await client.result("hooks.status", {});
  if (!status.typescript_supported) {
    ctx.skip("this server cannot load TypeScript hooks (the compiled binary); see docs/hooks.md");
  }
}

const loaded: Scenario = {
  area: "hooks",
  name: "loaded",
  title: "Every hook of the folder is loaded, in both forms, with no problem reported",
  async run(ctx) {
    const client = await ctx.connect();
    const status = await client.result("hooks.status", {});
    const evidence = ctx.frames(
      client,
      ({ frame }) => frame.method === "hooks.status" || frame.result?.hooks !== undefined,
    );
    const names = (status.hooks as { name: string }[]).map((h) => h.name);
    const expected = [
      ...(status.typescript_supported ? OWN_HOOKS.typescript : []),
      ...OWN_HOOKS.command,
    ];
    ctx.check("the assessment's hooks are all loaded", expected.every((n) => names.includes(n)), {
      expected: expected.join(", "),
      actual: names.join(", "),
      evidence,
    });
    ctx.equal("no hook file or entry was refused", status.problems, [], evidence);
  },
};

const ordinary: Scenario = {
  area: "hooks",
  name: "ordinary-command",
  title: "An ordinary command goes through the whole chain unchanged, and the hooks attach to it",
  async run(ctx) {
    const client = await ctx.connect();
    const id = jobId("ordinary");
    const { response, done } = await execute(client, { command: "echo plain output", job_id: id });
    const evidence = ctx.frames(client, ofJob(id));
    if (
      !ctx.check("it is not blocked", response.result !== undefined, {
        expected: "an execute result",
        actual: response.error ?? "a result",
        evidence,
      })
    ) return;
    const started = client.events(id).find((e) => e.method === "process.started");
    ctx.equal("it runs as written", started?.params.command, "echo plain output", evidence);
    ctx.equal("its output is untouched", client.output(id), "plain output\n", evidence);
    ctx.equal("it completes", [done.status, done.exit_code], ["completed", 0], evidence);
    const attached = done.hooks?.attached ?? {};
    ctx.equal("the command hook attached its JSON", attached["assess-command-attach"], {
      from: "command hook",
    }, evidence);
    const status = await client.result("hooks.status", {});
    if (status.typescript_supported) {
      ctx.equal(
        "the TypeScript post_execution hook attached the exit code",
        attached["assess-attach"],
        { exit_code: 0 },
        evidence,
      );
    }
    const failures = client.frames.filter((f) =>
      f.method === "hook.error" && f.params.job_id === id
    );
    ctx.equal("no hook failed on it", failures.map((f) => f.params.hook), [], evidence);
  },
};

const block: Scenario = {
  area: "hooks",
  name: "block",
  title: "A blocking hook stops the job before it starts; the client, history and `run` say why",
  async run(ctx) {
    const client = await ctx.connect();
    await typescriptLoaded(ctx, client);
    const id = jobId("block");
    const { response } = await execute(client, { command: `echo ${WORDS.block}`, job_id: id });
    const evidence = ctx.frames(client, ofJob(id));
    ctx.check(
      "execute fails with -32010 naming the hook and its message",
      response.error?.code === -32010 &&
        /Blocked by hook assess-block: the assessment blocks this/.test(response.error.message),
      {
        expected: "-32010 Blocked by hook assess-block: the assessment blocks this",
        actual: response.error ?? response.result,
        evidence,
      },
    );
    ctx.check(
      "a hook.blocked notification came first",
      client.frames.some((f) =>
        f.method === "hook.blocked" && f.params.job_id === id && f.params.hook === "assess-block"
      ),
      {
        expected: "hook.blocked for the job",
        actual: client.frames.filter((f) => f.method === "hook.blocked").length +
          " hook.blocked notification(s)",
        evidence,
      },
    );
    ctx.equal(
      "no process was started",
      client.events(id).filter((e) => e.method === "process.started").length,
      0,
      evidence,
    );
    const record = await client.call("history.get", { job_id: id });
    ctx.equal(
      "history records it as blocked",
      record.result?.status ?? record.error,
      "blocked",
      ctx.frames(client, ({ frame }) => frame.id === record.id),
    );
    const run = await ctx.cli(["run", `echo ${WORDS.block}`]);
    ctx.equal("`run` exits 126", run.code, 126, ctx.cliEvidence(run));
    ctx.check(
      "`run` says which hook blocked it and why",
      /Blocked by hook assess-block: the assessment blocks this/.test(run.stderr),
      {
        expected: "Blocked by hook assess-block: ... on stderr",
        actual: run.stderr,
        evidence: ctx.cliEvidence(run),
      },
    );
  },
};

const rewrite: Scenario = {
  area: "hooks",
  name: "rewrite",
  title: "A rewriting hook changes the command that runs; the record keeps what was asked",
  async run(ctx) {
    const client = await ctx.connect();
    await typescriptLoaded(ctx, client);
    const id = jobId("rewrite");
    const { done } = await execute(client, { command: `echo ${WORDS.rewrite}`, job_id: id });
    const evidence = ctx.frames(client, ofJob(id));
    const started = client.events(id).find((e) => e.method === "process.started");
    ctx.equal(
      "process.started shows the rewritten command",
      started?.params.command,
      REWRITTEN,
      evidence,
    );
    ctx.equal(
      "the rewritten command is what ran",
      client.output(id),
      "rewritten by a hook\n",
      evidence,
    );
    ctx.equal("it completes", done?.status, "completed", evidence);
    const record = await client.call("history.get", { job_id: id });
    ctx.equal(
      "the record keeps the command as requested",
      record.result?.hooks?.requested_command ?? record.error,
      `echo ${WORDS.rewrite}`,
      ctx.frames(client, ({ frame }) => frame.id === record.id),
    );
  },
};

const failing: Scenario = {
  area: "hooks",
  name: "failing-hooks",
  title: "A failing hook is reported and the job goes on; a failing required hook blocks it",
  async run(ctx) {
    const client = await ctx.connect();
    await typescriptLoaded(ctx, client);
    const id = jobId("throw");
    const { done } = await execute(client, { command: `echo ${WORDS.throws}`, job_id: id });
    const evidence = ctx.frames(client, ofJob(id));
    const failure = client.frames.find((f) => f.method === "hook.error" && f.params.job_id === id);
    ctx.check(
      "hook.error names the hook, its error and on_failure proceed",
      failure?.params.hook === "assess-throw" && /failed on purpose/.test(failure.params.error) &&
        failure.params.on_failure === "proceed",
      {
        expected: "hook.error from assess-throw, on_failure proceed",
        actual: failure?.params ?? "no hook.error",
        evidence,
      },
    );
    ctx.equal("the job ran anyway", [done?.status, client.output(id)], [
      "completed",
      `${WORDS.throws}\n`,
    ], evidence);

    const requiredId = jobId("required");
    const { response } = await execute(client, {
      command: `echo ${WORDS.required}`,
      job_id: requiredId,
    });
    ctx.check(
      "a required hook's failure blocks the job (-32010, failed and is required)",
      response.error?.code === -32010 &&
        /assess-required failed and is required/.test(response.error.message),
      {
        expected: "-32010 ... hook assess-required failed and is required: ...",
        actual: response.error ?? response.result,
        evidence: ctx.frames(client, ofJob(requiredId)),
      },
    );
  },
};

const output: Scenario = {
  area: "hooks",
  name: "output-hook",
  title: "An output hook rewrites output before clients and history see it",
  async run(ctx) {
    const client = await ctx.connect();
    await typescriptLoaded(ctx, client);
    const id = jobId("output");
    await execute(client, { command: `echo "key=${WORDS.secret} end"`, job_id: id });
    const evidence = ctx.frames(client, ofJob(id));
    ctx.equal(
      "the client gets the rewritten output",
      client.output(id),
      "key=[hidden] end\n",
      evidence,
    );
    const record = await client.call("history.get", { job_id: id, include_output: true });
    const head: string = record.result?.output?.head ?? "";
    ctx.check(
      "history keeps the rewritten output, not the original",
      head.includes("[hidden]") && !head.includes(WORDS.secret),
      {
        expected: "output.head with [hidden], without the secret",
        actual: head,
        evidence: ctx.frames(client, ({ frame }) => frame.id === record.id),
      },
    );
  },
};

const commandHook: Scenario = {
  area: "hooks",
  name: "command-hook",
  title: "A command hook (any executable, from hooks.json) blocks with exit 2 and its stderr",
  async run(ctx) {
    const client = await ctx.connect();
    const id = jobId("command-hook");
    const { response } = await execute(client, {
      command: `echo ${WORDS.commandBlock}`,
      job_id: id,
    });
    ctx.check(
      "execute fails with -32010 carrying the hook's stderr",
      response.error?.code === -32010 &&
        /assess-command-guard: the assessment's command hook blocks this/.test(
          response.error.message,
        ),
      {
        expected:
          "-32010 Blocked by hook assess-command-guard: the assessment's command hook blocks this",
        actual: response.error ?? response.result,
        evidence: ctx.frames(client, ofJob(id)),
      },
    );
  },
};

/** Every hooks scenario, in the order they run. */
export const HOOK_SCENARIOS: readonly Scenario[] = [
  loaded,
  ordinary,
  block,
  rewrite,
  failing,
  output,
  commandHook,
];
