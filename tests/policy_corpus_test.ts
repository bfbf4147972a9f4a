/**
 * The command policy against its bypass corpus (tests/policy_corpus.json): every `deny` case is
 * denied, every `allow` case allowed. Then real bash runs each allowed case with logging stubs on
 * PATH, to check that the analysis saw everything bash really runs: nothing ran that the
 * allow-list does not name.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { checkRequest } from "../server/policy/policy.ts";
import { compilePolicyFile } from "../server/policy/policy_file.ts";

interface Case {
  command: string;
  note?: string;
  /** The server's shell, when not bash: sh is read as dash reads it. */
  shell?: "sh";
}

const corpus: { policy: unknown; deny: Case[]; allow: Case[] } = JSON.parse(
  await Deno.readTextFile(new URL("policy_corpus.json", import.meta.url)),
);
const policy = compilePolicyFile({ policies: { default: corpus.policy } }, () => {
  throw new Error("no token files here");
}).defaultPolicy!;
const allowedNames = new Set(policy.allow!.flatMap((rule) => rule.executables ?? []));
const dialectOf = (c: Case) => c.shell === "sh" ? "dash" as const : "bash" as const;
const label = (c: Case) =>
  `${JSON.stringify(c.command).slice(0, 80)}${c.note ? ` (${c.note})` : ""}`;

Deno.test("policy corpus: the corpus is big enough to mean something", () => {
  assert.ok(corpus.deny.length >= 60, `${corpus.deny.length} deny cases`);
  assert.ok(corpus.allow.length >= 30, `${corpus.allow.length} allow cases`);
});

Deno.test("policy corpus: every bypass attempt is denied, naming a rule and the part", () => {
  const wrong: string[] = [];
  for (const c of corpus.deny) {
    const verdict = checkRequest(policy, { command: c.command }, dialectOf(c));
    if (verdict.allowed) wrong.push(`allowed: ${label(c)}`);
    else if (!verdict.rule || !verdict.reason) wrong.push(`no rule or reason: ${label(c)}`);
  }
  assert.deepEqual(wrong, []);
});

Deno.test("policy corpus: every ordinary command is allowed", () => {
  const wrong: string[] = [];
  for (const c of corpus.allow) {
    const verdict = checkRequest(policy, { command: c.command }, dialectOf(c));
    if (!verdict.allowed) wrong.push(`${label(c)}: ${verdict.rule}: ${verdict.reason}`);
  }
  assert.deepEqual(wrong, []);
});

/** Programs that pass control on: the real ones, so what they start is seen by its own stub. */
const REAL_WRAPPERS = ["env", "xargs", "find", "nohup", "timeout", "nice", "stdbuf", "bash", "sh"];

Deno.test("policy corpus: real bash runs nothing the allow-list does not name, for every allowed case", async () => {
  const root = await Deno.makeTempDir({ prefix: "policy-oracle-" });
  try {
    const bin = join(root, "bin");
    const work = join(root, "work");
    await Deno.mkdir(bin);
    await Deno.mkdir(work);
    for (const name of allowedNames) {
      if (!/^[a-z]+$/.test(name) || REAL_WRAPPERS.includes(name)) continue;
      // A stub that logs its name: a program bash resolved through PATH and ran.
      await Deno.writeTextFile(
        join(bin, name),
        `#!/bin/sh\nprintf '%s\\n' "\${0##*/}" >> "$LOG"\n`,
      );
      await Deno.chmod(join(bin, name), 0o755);
    }
    for (const name of REAL_WRAPPERS) {
      const found = await new Deno.Command("bash", { args: ["-c", `command -v ${name}`] }).output();
      const path = new TextDecoder().decode(found.stdout).trim();
      if (path) await Deno.symlink(path, join(bin, name));
    }
    const wrong: string[] = [];
    for (const [i, c] of corpus.allow.entries()) {
      const log = join(root, `log-${i}`);
      await Deno.writeTextFile(log, "");
      const run = await new Deno.Command(join(bin, c.shell ?? "bash"), {
        args: c.shell ? ["-c", c.command] : ["--norc", "--noprofile", "-c", c.command],
        cwd: work,
        clearEnv: true,
        env: { PATH: bin, LOG: log, HOME: root },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
        signal: AbortSignal.timeout(20_000),
      }).output();
      const ran = (await Deno.readTextFile(log)).split("\n").filter(Boolean);
      const outside = ran.filter((name) => !allowedNames.has(name));
      if (outside.length > 0) wrong.push(`${label(c)} ran ${outside.join(", ")}`);
      // A program with no stub: bash looked for something the allow-list does not name. (Lines
      // of a startup file, such as /etc/profile for `bash -l`, start with its path: not ours.)
      const missing = new TextDecoder().decode(run.stderr).split("\n")
        .filter((line) => /command not found/.test(line) && !line.startsWith("/etc/"));
      if (missing.length > 0) wrong.push(`${label(c)}: ${missing.join("; ")}`);
    }
    assert.deepEqual(wrong, []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
