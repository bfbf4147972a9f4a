/**
 * `cc-executor policy check`, run as users run it: a subprocess reading CC_EXECUTOR_POLICY.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli, startCliServer } from "./cli_util.ts";

Deno.test("cli policy check: allowed, denied with the rule and part, per token, explained, and its errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli-policy-" });
  try {
    const path = join(dir, "policy.json");
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        policies: {
          default: { deny: [{ executable: "rm", reason: "no deleting" }] },
          ro: { allow: [{ executable: ["ls", "cat", "xargs"] }], write_redirects: false },
        },
        tokens: [{ name: "reviewer", token_sha256: "b".repeat(64), policy: "ro" }],
      }),
    );
    const env = { CC_EXECUTOR_POLICY: path };
    const allowed = await runCli(["policy", "check", "ls | cat"], { env });
    assert.deepEqual([allowed.code, allowed.stdout], [0, 'allowed by policy "default"\n']);

    const denied = await runCli(["policy", "check", "ls && bash -c '/bin/rm -rf x'"], { env });
    assert.equal(denied.code, 1);
    assert.equal(
      denied.stdout,
      'denied by policy "default", rule deny[0]: no deleting\n  part: /bin/rm -rf x\n  via:  bash -c\n',
    );

    const explained = await runCli(
      ["policy", "check", "--token", "reviewer", "--explain", "ls; $CMD"],
      { env },
    );
    assert.equal(explained.code, 1);
    assert.match(explained.stdout, /^denied by policy "ro", rule unclassified: /);
    assert.match(
      explained.stdout,
      /\n {2}command: ls\n {2}cannot classify: \$CMD: the command name is dynamic/,
    );

    const json = await runCli(["policy", "check", "--json", "-"], { env, stdin: "rm x\n" });
    assert.equal(json.code, 1);
    assert.deepEqual(JSON.parse(json.stdout), {
      policy: "default",
      allowed: false,
      rule: "deny[0]",
      part: "rm x",
      reason: "no deleting",
      via: [],
    });

    const unknown = await runCli(["policy", "check", "--token", "nope", "ls"], { env });
    assert.deepEqual([unknown.code, unknown.stderr], [
      2,
      'cc-executor: No token "nope" in the policy file (tokens: reviewer)\n',
    ]);
    const none = await runCli(["policy", "check", "ls"]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /CC_EXECUTOR_POLICY is not set/);
    await Deno.writeTextFile(
      path,
      '{"policies": {"default": {"deny": [{"executable": "rm", "args": "("}]}}}',
    );
    const bad = await runCli(["policy", "check", "ls"], { env });
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /CC_EXECUTOR_POLICY=".*": policies\.default\.deny\[0\]\.args: not a valid regular expression/,
    );
    assert.doesNotMatch(bad.stderr, /\n\s+at /, "no stack trace");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli run: a command the server's policy denies exits 126 with the rule, and nothing runs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cli-policy-run-" });
  const path = join(dir, "policy.json");
  await Deno.writeTextFile(
    path,
    JSON.stringify({ policies: { default: { deny: [{ executable: "touch" }] } } }),
  );
  const server = await startCliServer({ CC_EXECUTOR_POLICY: path });
  try {
    const marker = join(dir, "made");
    const denied = await runCli(["run", "--url", server.url, `echo hi; touch ${marker}`]);
    assert.equal(denied.code, 126);
    assert.equal(denied.stdout, "", "nothing ran: not even the echo before it");
    assert.equal(
      denied.stderr,
      `cc-executor: Denied by policy "default" (rule deny[0]): "touch" matches a deny rule: touch ${marker}\n`,
    );
    assert.equal(await Deno.stat(marker).then(() => true, () => false), false);
    const allowed = await runCli(["run", "--url", server.url, "echo fine"]);
    assert.deepEqual([allowed.code, allowed.stdout], [0, "fine\n"]);
  } finally {
    server.child.kill("SIGTERM");
    await server.child.status;
    await server.child.stdout.cancel();
    await server.log();
    await Deno.remove(dir, { recursive: true });
  }
});
