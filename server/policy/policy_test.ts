import assert from "node:assert/strict";
import { checkRequest, type PolicyVerdict } from "./policy.ts";
import { compilePolicyFile, sha256 } from "./policy_file.ts";
import { analyseArgv, analyseShell, MAX_POLICY_TEXT } from "./shell_commands.ts";

const noTokenFiles = () => {
  throw new Error("no token files here");
};
const policyOf = (policy: unknown) =>
  compilePolicyFile({ policies: { default: policy } }, noTokenFiles).defaultPolicy!;
const denied = (verdict: PolicyVerdict) => {
  assert.equal(verdict.allowed, false);
  return verdict as Extract<PolicyVerdict, { allowed: false }>;
};

Deno.test("policy: a deny rule by name also stops the program by path; an allow rule by name does not let a path through", () => {
  const policy = policyOf({
    allow: [{ executable: ["ls", "rm", "/usr/bin/git"] }],
    deny: [{ executable: "rm", reason: "no deleting" }],
  });
  for (const command of ["rm x", "/bin/rm x", "./rm x", "ls; ../bin/rm x"]) {
    const verdict = denied(checkRequest(policy, { command }, "bash"));
    assert.equal(verdict.rule, "deny[0]", command);
    assert.equal(verdict.reason, "no deleting");
  }
  assert.equal(denied(checkRequest(policy, { command: "/bin/ls" }, "bash")).rule, "allow-list");
  assert.equal(checkRequest(policy, { command: "/usr/bin/git status" }, "bash").allowed, true);
  assert.equal(denied(checkRequest(policy, { command: "git status" }, "bash")).rule, "allow-list");
});

Deno.test("policy: args and pattern rules, and dynamic arguments", () => {
  const policy = policyOf({
    allow: [
      { executable: "git", args: "^(status|log|diff)( |$)" },
      { executable: "cat", args: "^[a-z./]+$", dynamic_args: "as_written" },
      { pattern: "^echo " },
    ],
    deny: [{ name: "no-force", pattern: "--force" }],
  });
  const allowed = (command: string) => checkRequest(policy, { command }, "bash").allowed;
  assert.equal(allowed("git log -3"), true);
  assert.equal(allowed("git push"), false);
  // An argument known only at run time could be anything: an allow rule on arguments cannot vouch.
  assert.equal(allowed('git log "$REF"'), false);
  assert.equal(allowed("git log $(cat ref)"), false);
  // ...unless the rule says dynamic arguments are fine; they are matched as written.
  assert.equal(allowed("cat x.txt"), true);
  assert.equal(
    allowed("cat ~/.ssh/id_rsa"),
    false,
    "tilde is dynamic, and '~' is not in the class",
  );
  assert.equal(allowed("echo hello"), true);
  const force = denied(checkRequest(policy, { command: "echo x --force" }, "bash"));
  assert.equal(force.rule, "no-force");
  assert.equal(force.part, "echo x --force");
});

Deno.test("policy: without an allow-list only deny rules apply, and what cannot be classified passes unless asked otherwise", () => {
  const open = policyOf({ deny: [{ executable: "rm" }] });
  assert.equal(checkRequest(open, { command: "python3 -c 'print(1)'" }, "bash").allowed, true);
  assert.equal(checkRequest(open, { command: "$CMD x" }, "bash").allowed, true);
  assert.equal(denied(checkRequest(open, { command: "ls && rm -rf x" }, "bash")).rule, "deny[0]");
  // What the analysis could not finish is denied under any policy: padding or a syntax error
  // after the command must not hide it from a deny rule.
  for (
    const command of ["rm -rf x; #" + "a".repeat(MAX_POLICY_TEXT), "rm -rf x\necho 'unterminated"]
  ) {
    const stopped = denied(checkRequest(open, { command }, "bash"));
    assert.equal(stopped.rule, "unclassified");
    assert.match(stopped.reason, /longer than|syntax error/);
  }
  // Deny rules see through what the second and third reviews found: eval --, strings other
  // shells run, words bash splits or joins differently; variable names known only at run time
  // and keyword mode are denied under any policy.
  const hidden = [
    "eval -- 'rm -rf x'",
    "flock /tmp/l -c 'rm -rf x'",
    "su -c 'rm -rf x' root",
    "n=PATH; declare $n=/tmp/x; ls",
    "set -k; ls",
    "<&-rm -rf x",
    ">&-rm -rf x",
    "$'\\x{72}m' -rf x",
    "$\\\n{x} -rf x",
    "r<()m -rf x",
    "env =x rm -rf x",
  ];
  for (const command of hidden) {
    assert.equal(checkRequest(open, { command }, "bash").allowed, false, command);
  }
  assert.equal(checkRequest(open, { command: "sleep 1 & wait $!" }, "bash").allowed, true);
  const strict = policyOf({ deny: [{ executable: "rm" }], unclassified: "deny" });
  const verdict = denied(checkRequest(strict, { command: "$CMD x" }, "bash"));
  assert.equal(verdict.rule, "unclassified");
  assert.match(verdict.reason, /command name is dynamic: parameter expansion \$CMD/);
});

Deno.test("policy: write_redirects false refuses redirections that write files, not /dev/null or descriptors", () => {
  const policy = policyOf({ allow: [{ executable: ["ls", "echo"] }], write_redirects: false });
  const allowed = (command: string) => checkRequest(policy, { command }, "bash").allowed;
  assert.equal(allowed("ls >/dev/null 2>&1"), true);
  assert.equal(allowed("ls 2>/dev/null | echo"), true);
  for (
    const command of ["ls > f", "ls >> f", "ls &> f", "ls >&f", "echo >| f", "ls 1<>f", 'ls > "$F"']
  ) {
    assert.equal(
      denied(checkRequest(policy, { command }, "bash")).rule,
      "write-redirects",
      command,
    );
  }
});

Deno.test("policy: a request's env may not set variables that change what runs", () => {
  const policy = policyOf({ allow: [{ executable: "ls" }], variables: ["FOO", "CI_*", "PATH"] });
  const env = { FOO: "1", CI_JOB: "2", foo: "3" };
  assert.equal(checkRequest(policy, { command: "ls", env }, "bash").allowed, true);
  // With an allow-list, environment-like names must be listed; lower-case shell variables are free.
  const bar = denied(checkRequest(policy, { command: "ls", env: { BAR: "1" } }, "bash"));
  assert.match(bar.reason, /BAR is not among the variables/);
  const inline = denied(checkRequest(policy, { command: "BAR=1 ls" }, "bash"));
  assert.deepEqual([inline.rule, inline.part], ["variables", "BAR=1"]);
  // Listed or not, these never pass...
  const never = ["PATH", "LD_PRELOAD", "BASH_ENV", "ENV", "BASH_FUNC_ls%%", "GIT_DIR", "HOME"];
  for (const name of never) {
    const verdict = denied(checkRequest(policy, { command: "ls", env: { [name]: "x" } }, "bash"));
    assert.equal(verdict.rule, "env");
    assert.equal(verdict.part, name);
  }
  // ...unless the policy names the exact value; the shell's own variables need no listing.
  const exact = policyOf({ allow: [{ executable: ["git", "read"] }], variables: ["PAGER=cat"] });
  assert.equal(
    checkRequest(exact, { command: "PAGER=cat git log", env: { PAGER: "cat" } }, "bash").allowed,
    true,
  );
  assert.equal(
    denied(checkRequest(exact, { command: "PAGER=less git log" }, "bash")).rule,
    "variables",
  );
  assert.equal(checkRequest(exact, { command: "IFS=, read -r a b <<< x,y" }, "bash").allowed, true);
});

Deno.test("policy: a program run without a shell (argv) is judged with its wrappers", () => {
  const policy = policyOf({ allow: [{ executable: ["claude", "env", "bash"] }] });
  assert.equal(
    checkRequest(policy, { argv: ["claude", "-p", "$(rm x); `rm y`"] }, "bash").allowed,
    true,
  );
  assert.equal(denied(checkRequest(policy, { argv: ["env", "rm", "x"] }, "bash")).part, "env rm x");
  assert.equal(
    denied(checkRequest(policy, { argv: ["bash", "-c", "ls; rm x"] }, "bash")).via[0],
    "bash -c",
  );
  assert.deepEqual(analyseArgv(["a\0b"]).unclassified.map((u) => u.why), [
    "a NUL character in the command",
  ]);
});

Deno.test("policy: sh is read as dash, where $'...' does not exist", () => {
  const policy = policyOf({
    allow: [{ executable: ["echo", "rm"] }],
    deny: [{ executable: "rm" }],
  });
  const text = "echo $'\\'\nrm x\necho '";
  // bash reads one echo; dash reads three commands, the second of them rm.
  assert.equal(checkRequest(policy, { command: text }, "bash").allowed, true);
  assert.equal(denied(checkRequest(policy, { command: text }, "dash")).rule, "unclassified");
});

Deno.test("policy: huge or pathological text is unclassified quickly, never a crash", () => {
  assert.match(
    analyseShell("echo " + "a".repeat(MAX_POLICY_TEXT)).unclassified[0]!.why,
    /longer than/,
  );
  const nested = analyseShell("$(".repeat(5000) + "ls" + ")".repeat(5000));
  assert.ok(nested.unclassified.length > 0);
  const evals = analyseShell("eval ".repeat(2000) + "ls");
  assert.ok(evals.unclassified.some((u) => /nested deeper|too much nested/.test(u.why)));
  const many = analyseShell("ls;".repeat(20_000));
  assert.ok(many.unclassified.some((u) => /more than 10000 commands/.test(u.why)));
});

Deno.test("policy file: mistakes are reported with the field that is wrong", () => {
  const bad = (file: unknown, message: RegExp) =>
    assert.throws(() => compilePolicyFile(file, noTokenFiles), message);
  bad(
    { policies: { default: { allow: [{ executable: "ls", args: "(" }] } } },
    /policies\.default\.allow\[0\]\.args: not a valid regular expression/,
  );
  bad(
    { policies: { default: { allow: [{ args: "x" }] } } },
    /policies\.default\.allow\[0\]: a rule needs an executable or a pattern/,
  );
  bad({ policies: { default: { alow: [] } } }, /policies\.default: Unrecognized key: "alow"/);
  bad(
    { tokens: [{ name: "ci", policy: "nope", token_sha256: "a".repeat(64) }] },
    /tokens\[0\]\.policy: there is no policy "nope"/,
  );
  bad({ tokens: [{ name: "ci" }] }, /tokens\[0\]: give token_sha256 or token_file/);
  bad(
    { tokens: [{ name: "default", token_sha256: "a".repeat(64) }] },
    /tokens\[0\]\.name: "default" is the name of the main token/,
  );
  bad({
    tokens: [
      { name: "a", token_sha256: "a".repeat(64) },
      { name: "b", token_sha256: "A".repeat(64) },
    ],
  }, /tokens\[1\]: the same token as another entry/);
  bad(
    { tokens: [{ name: "ci", token_file: "/nope" }] },
    /tokens\[0\]\.token_file "\/nope": no token files here/,
  );
});

Deno.test("policy file: tokens get the default policy unless they name one; digests match sha256", () => {
  const file = compilePolicyFile({
    policies: { default: { deny: [{ executable: "rm" }] }, ro: { allow: [{ executable: "ls" }] } },
    tokens: [
      {
        name: "ci",
        token_sha256: Array.from(
          sha256("ci-token-0123456789"),
          (b) => b.toString(16).padStart(2, "0"),
        ).join(""),
      },
      {
        name: "reader",
        token_file: "reader.token",
        policy: "ro",
        max_jobs: 2,
        executes_per_minute: 10,
        history: true,
      },
    ],
  }, (path) => `token from ${path}`);
  assert.equal(file.defaultPolicy?.name, "default");
  assert.equal(file.tokens[0]!.policy?.name, "default");
  assert.deepEqual(file.tokens[0]!.digest, sha256("ci-token-0123456789"));
  assert.equal(file.tokens[1]!.policy?.name, "ro");
  assert.deepEqual(file.tokens[1]!.digest, sha256("token from reader.token"));
  assert.deepEqual([
    file.tokens[1]!.maxJobs,
    file.tokens[1]!.executesPerMinute,
    file.tokens[1]!.history,
  ], [2, 10, true]);
});

Deno.test("policy: a deny rule on arguments fails closed on arguments known at run time, unless it says as_written", () => {
  const closed = policyOf({ deny: [{ executable: "git", args: "(^| )push( |$)" }] });
  const commit = 'git commit -m "$(cat msg)"';
  const verdict = denied(checkRequest(closed, { command: commit }, "bash"));
  assert.match(verdict.reason, /known only at run time/);
  const written = policyOf({
    deny: [{ executable: "git", args: "(^| )push( |$)", dynamic_args: "as_written" }],
  });
  assert.equal(checkRequest(written, { command: commit }, "bash").allowed, true);
  assert.equal(checkRequest(written, { command: 'git push "$remote"' }, "bash").allowed, false);
});
