import assert from "node:assert/strict";
import { cliCommand, runCli, startCliServer } from "./cli_util.ts";
import { groupAlive, startTestServer, waitUntil } from "./test_util.ts";

Deno.test("cli run: exit codes are the command's, 128+signal, 124 on timeout", async () => {
  await using server = await startTestServer();
  const run = (...args: string[]) => runCli(["run", "--url", server.url, ...args]);
  const [ok, failed, three, timeout, killed, terminated] = await Promise.all([
    run("true"),
    run("false"),
    run("exit 3"),
    run("--timeout", "0.3", "sleep 10"),
    run("kill -KILL $$"),
    run("kill -TERM $$"),
  ]);
  assert.equal(ok.code, 0);
  assert.equal(ok.stderr, "", "nothing to say about a success");
  assert.equal(failed.code, 1);
  assert.equal(three.code, 3);
  assert.equal(three.stderr, "", "a plain failure speaks through its exit code, as with ssh");
  assert.equal(timeout.code, 124);
  assert.match(timeout.stderr, /timed out after 0.3s/);
  assert.equal(killed.code, 128 + 9);
  assert.match(killed.stderr, /killed by SIGKILL/);
  assert.equal(terminated.code, 128 + 15);
});

Deno.test("cli run: stdout and stderr stay separate and arrive in order", async () => {
  await using server = await startTestServer();
  const result = await runCli([
    "run",
    "--url",
    server.url,
    "for i in 1 2 3; do echo out$i; echo err$i >&2; done; printf 'no newline'",
  ]);
  assert.equal(result.code, 0);
  assert.equal(result.stdout, "out1\nout2\nout3\nno newline");
  assert.equal(result.stderr, "err1\nerr2\nerr3\n");
});

Deno.test("cli run: words after -- are the command line; options go before it", async () => {
  await using server = await startTestServer();
  const result = await runCli(["run", "--url", server.url, "--", "echo", "-n", "a  b"]);
  assert.equal(result.stdout, "a b", "joined with spaces, then run by the shell (as ssh does)");
  const passThrough = await runCli(["run", "--url", server.url, "echo", "--timeout", "5"]);
  assert.equal(passThrough.stdout, "--timeout 5\n", "options after the command are its own");
});

Deno.test("cli run: --env, --cwd and the default cwd (this directory on a local server)", async () => {
  await using server = await startTestServer();
  const dir = Deno.makeTempDirSync();
  try {
    const here = await runCli(["run", "--url", server.url, "pwd"], { cwd: dir });
    assert.equal(here.stdout.trim(), Deno.realPathSync(dir));
    const there = await runCli([
      "run",
      "--url",
      server.url,
      "--cwd",
      "/",
      "-e",
      "A=1",
      "--env",
      "B=two=2",
      'pwd; echo "$A $B"',
    ]);
    assert.equal(there.stdout, "/\n1 two=2\n");
    const missing = await runCli(["run", "--url", server.url, "--cwd", "/no/such/dir", "true"]);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /cwd "\/no\/such\/dir" does not exist/);
    const badEnv = await runCli(["run", "--url", server.url, "-e", "NOVALUE", "true"]);
    assert.equal(badEnv.code, 2);
    assert.match(badEnv.stderr, /expected KEY=value/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("cli run: --stdin-file feeds a file or this stdin, then closes it", async () => {
  await using server = await startTestServer();
  const file = Deno.makeTempFileSync();
  try {
    const lines = Array.from({ length: 5000 }, (_, i) => `line ${i} ünïcödé`).join("\n") + "\n";
    Deno.writeTextFileSync(file, lines);
    const fromFile = await runCli(["run", "--url", server.url, "--stdin-file", file, "wc -l"]);
    assert.equal(fromFile.stdout.trim(), "5000");
    const fromStdin = await runCli(["run", "--url", server.url, "--stdin-file", "-", "cat"], {
      stdin: lines,
    });
    assert.equal(fromStdin.stdout, lines, "every byte, characters intact");
    const missing = await runCli([
      "run",
      "--url",
      server.url,
      "--stdin-file",
      "/no/such/file",
      "cat",
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--stdin-file \/no\/such\/file: No such file/);
    assert.equal(server.jobs.list().length, 2, "no job was started for it");
  } finally {
    Deno.removeSync(file);
  }
});

Deno.test("cli run: --json prints one object with the outcome; --quiet prints nothing", async () => {
  await using server = await startTestServer();
  const json = await runCli([
    "run",
    "--url",
    server.url,
    "--json",
    "echo hi; echo oops >&2; exit 5",
  ]);
  assert.equal(json.code, 5);
  const outcome = JSON.parse(json.stdout);
  assert.equal(outcome.status, "failed");
  assert.equal(outcome.exit_code, 5);
  assert.equal(outcome.stdout, "hi\n");
  assert.equal(outcome.stderr, "oops\n");
  assert.equal(typeof outcome.job_id, "string");
  assert.equal(json.stderr, "");
  const quiet = await runCli([
    "run",
    "--url",
    server.url,
    "-q",
    "--timeout",
    "0.2",
    "echo hi; sleep 5",
  ]);
  assert.equal(quiet.code, 124);
  assert.equal(quiet.stdout + quiet.stderr, "");
});

Deno.test("cli run: --detach prints the job id; jobs attach replays, follows and exits with its code", async () => {
  await using server = await startTestServer();
  const flag = `${Deno.makeTempDirSync()}/go`;
  const started = await runCli([
    "run",
    "--url",
    server.url,
    "--detach",
    // Waits for the test, not for a time: a loaded machine cannot make it finish early.
    `echo first; while [ ! -e '${flag}' ]; do sleep 0.02; done; echo second >&2; exit 7`,
  ]);
  assert.equal(started.code, 0, started.stderr);
  const jobId = started.stdout.trim();
  assert.match(jobId, /^[0-9a-f-]{36}$/);
  // The starting connection is gone; the job runs on.
  assert.equal(server.jobs.get(jobId).status, "running");
  const attach = cliCommand(["jobs", "attach", "--url", server.url, jobId]).spawn();
  const stdout = attach.stdout.pipeThrough(new TextDecoderStream()).getReader();
  assert.equal((await stdout.read()).value, "first\n", "the replay comes first");
  Deno.writeTextFileSync(flag, "");
  const stderr = new Response(attach.stderr).text();
  assert.equal((await stdout.read()).done, true);
  assert.equal((await attach.status).code, 7);
  assert.equal(await stderr, "second\n", "then the live output");
  // Attaching to a finished job replays it.
  const later = await runCli(["jobs", "attach", "--url", server.url, jobId]);
  assert.equal(later.code, 7);
  assert.equal(later.stdout, "first\n");
  assert.equal(later.stderr, "second\n");
});

Deno.test("cli run: Ctrl-C cancels the remote job, waits for its outcome, exits 130", async () => {
  await using server = await startTestServer();
  const child = cliCommand(["run", "--url", server.url, "sleep 30 & sleep 30 & echo ready; wait"])
    .spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  assert.equal((await reader.read()).value, "ready\n");
  const [job] = server.jobs.list();
  assert.ok(job);
  assert.equal(groupAlive(job.group.pgid), true);
  child.kill("SIGINT");
  const stderr = new Response(child.stderr).text();
  while (!(await reader.read()).done);
  assert.equal((await child.status).code, 130);
  assert.match(await stderr, /canceling job/);
  assert.equal(job.status, "canceled");
  assert.equal(job.reason, "canceled by request");
  assert.equal(groupAlive(job.group.pgid), false, "the whole remote group is gone");
});

Deno.test("cli run: a reader that goes away (| head) stops the job", async () => {
  await using server = await startTestServer();
  const child = cliCommand(["run", "--url", server.url, "yes"]).spawn();
  const reader = child.stdout.getReader();
  await reader.read();
  await reader.cancel();
  const status = await child.status;
  await child.stderr.cancel();
  assert.equal(status.code, 141, "128 + SIGPIPE, as a shell reports it");
  const [job] = server.jobs.list();
  await waitUntil(() => job!.status !== "running", "the job to stop");
  assert.equal(job!.status, "canceled");
  assert.equal(groupAlive(job!.group.pgid), false);
});

Deno.test("cli run: --local needs no server; without one, run says how to get one", async () => {
  const local = await runCli(["run", "--local", "echo in-process; exit 4"]);
  assert.equal(local.code, 4);
  assert.equal(local.stdout, "in-process\n");

  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const none = await runCli(["run", "--url", `127.0.0.1:${port}`, "echo hi"]);
  assert.equal(none.code, 125);
  assert.match(none.stderr, new RegExp(`No cc-executor server at ws://127.0.0.1:${port}/ws`));
  assert.match(none.stderr, /cc-executor server start --detach/);
  assert.match(none.stderr, /cc-executor run --local "echo hi"/);
  assert.doesNotMatch(none.stderr, /\n\s+at /, "no stack trace");
});

Deno.test("cli run: a server that needs a token says so", async () => {
  await using server = await startTestServer({ token: "a-token-of-sixteen-plus" });
  const without = await runCli(["run", "--url", server.url, "true"]);
  assert.equal(without.code, 125);
  assert.match(without.stderr, /needs a token\. Pass --token or set CC_EXECUTOR_TOKEN/);
  const wrong = await runCli([
    "run",
    "--url",
    server.url,
    "--token",
    "wrong-token-xxxxxxxx",
    "true",
  ]);
  assert.match(wrong.stderr, /the token was not accepted/);
  const right = await runCli(["run", "--url", server.url, "echo ok"], {
    env: { CC_EXECUTOR_TOKEN: "a-token-of-sixteen-plus" },
  });
  assert.equal(right.code, 0);
  assert.equal(right.stdout, "ok\n");
  // The server's token file works for the CLI too.
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(file, "a-token-of-sixteen-plus\n");
    const fromFile = await runCli(["run", "--url", server.url, "echo file"], {
      env: { CC_EXECUTOR_TOKEN_FILE: file },
    });
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.equal(fromFile.stdout, "file\n");
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("cli run: --stdin-file refuses a directory and input that is not UTF-8", async () => {
  await using server = await startTestServer();
  const dir = Deno.makeTempDirSync();
  try {
    const directory = await runCli(["run", "--url", server.url, "--stdin-file", dir, "cat"]);
    assert.equal(directory.code, 2);
    assert.equal(directory.stderr, `cc-executor: --stdin-file ${dir}: is a directory\n`);
    const binary = `${dir}/binary`;
    Deno.writeFileSync(binary, new Uint8Array([0x68, 0x69, 0xff, 0xfe, 0x0a]));
    const result = await runCli(["run", "--url", server.url, "--stdin-file", binary, "cat"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /is not UTF-8 text; .*job \S+ was canceled/);
    assert.doesNotMatch(result.stdout, /\ufffd/, "nothing was altered and passed on");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("cli run: a server that dies mid-run ends run with 125 and a clear message", async () => {
  const { child, url, log } = await startCliServer();
  const run = cliCommand(["run", "--url", url, "echo $$; sleep 30"]).spawn();
  const stdout = run.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const pgid = Number((await stdout.read()).value);
  child.kill("SIGKILL");
  await child.status;
  const stderr = new Response(run.stderr).text();
  while (!(await stdout.read()).done);
  assert.equal((await run.status).code, 125);
  assert.match(await stderr, /^cc-executor: Lost the server: connection to .* closed/);
  await child.stdout.cancel();
  await log();
  // The SIGKILLed server could not stop its job; this test does.
  Deno.kill(-pgid, "SIGKILL");
});

Deno.test("cli run: SIGTERM cancels the job too, and the exit code says which signal (143)", async () => {
  await using server = await startTestServer();
  const child = cliCommand(["run", "--url", server.url, "echo ready; sleep 30"]).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  assert.equal((await reader.read()).value, "ready\n");
  child.kill("SIGTERM");
  const stderr = new Response(child.stderr).text();
  while (!(await reader.read()).done);
  assert.equal((await child.status).code, 143);
  await stderr;
  const [job] = server.jobs.list();
  assert.equal(job!.status, "canceled");
  assert.equal(groupAlive(job!.group.pgid), false);
});

Deno.test("cli run: --local, repeated Ctrl-C while a job ignores SIGTERM: exits, nothing left behind", async () => {
  const child = cliCommand([
    "run",
    "--local",
    "trap '' TERM INT; echo $$; sleep 30 & wait; sleep 30",
  ], { env: { CC_EXECUTOR_KILL_GRACE_MS: "60000" } }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const pgid = Number((await reader.read()).value);
  assert.ok(pgid > 1);
  assert.equal(groupAlive(pgid), true);
  // The third would kill a CLI that stopped listening for signals before its server stopped.
  for (let i = 0; i < 3; i++) {
    try {
      child.kill("SIGINT");
    } catch {
      break; // Already gone: the second one ended it.
    }
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  const stderr = new Response(child.stderr).text();
  while (!(await reader.read()).done);
  assert.equal((await child.status).code, 130);
  await stderr;
  assert.equal(groupAlive(pgid), false, "the in-process server killed the job before leaving");
});

Deno.test("cli run: a pid file left by a dead server does not hide the server on the default port", async () => {
  await using server = await startTestServer();
  const state = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(
      `${state}/server.pid`,
      JSON.stringify({
        pid: 999_999_9,
        url: "ws://127.0.0.1:1/ws",
        log: `${state}/server.log`,
        started_at: new Date().toISOString(),
        version: "0.0.0",
      }),
    );
    const result = await runCli(["run", "echo reached"], {
      env: { CC_EXECUTOR_STATE_DIR: state, CC_EXECUTOR_PORT: String(server.addr.port) },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "reached\n");
  } finally {
    Deno.removeSync(state, { recursive: true });
  }
});
