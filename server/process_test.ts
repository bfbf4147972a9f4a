import assert from "node:assert/strict";
import {
  detectGroupMode,
  type GroupMode,
  liveMembers,
  ProcessGroup,
  SpawnError,
} from "./process.ts";

const mode = await detectGroupMode();

function spawn(command: string, groupMode: GroupMode = mode): ProcessGroup {
  return ProcessGroup.spawn({ shell: "bash", command, pipeStdin: false }, groupMode);
}

async function drain(group: ProcessGroup): Promise<string> {
  const [out] = await Promise.all([
    new Response(group.stdout).text(),
    new Response(group.stderr).text(),
  ]);
  return out;
}

/** Waits for the first output (the command's "ready"), then reads both pipes to the end in the background. */
async function afterReady(group: ProcessGroup): Promise<{ drained: Promise<unknown> }> {
  const reader = group.stdout.getReader();
  await reader.read();
  // Wrapped: an async function returning a promise would wait for it.
  const drained = Promise.all([
    (async () => {
      while (!(await reader.read()).done);
    })(),
    new Response(group.stderr).text(),
  ]);
  return { drained };
}

function pgrpOf(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
}

Deno.test("process: this machine has setsid, the fast way to make a group", () => {
  assert.equal(mode, "setsid");
});

for (const groupMode of ["setsid", "detached"] as const) {
  Deno.test(`process (${groupMode}): the shell leads its own process group`, async () => {
    await using group = spawn("read -t 5 _ < /dev/zero; sleep 5", groupMode);
    // setsid(2) runs a moment after spawn; wait for it rather than race it.
    const deadline = performance.now() + 5000;
    while (pgrpOf(group.pid) !== group.pid && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(group.pgid, group.pid);
    assert.equal(pgrpOf(group.pid), group.pid);
    assert.notEqual(pgrpOf(group.pid), pgrpOf(Deno.pid), "not in the server's own group");
    await group.stop(1000);
    await drain(group);
  });

  Deno.test(`process (${groupMode}): stop reaches every descendant, background ones too`, async () => {
    const group = spawn("sleep 30 & sleep 30 & (sleep 30 &) ; echo ready; wait", groupMode);
    const { drained } = await afterReady(group); // "ready": all three sleeps exist
    assert.ok(liveMembers(group.pgid)! >= 4, `live: ${liveMembers(group.pgid)}`);
    const killed = await group.stop(2000);
    assert.equal(killed, false, "SIGTERM was enough");
    assert.equal(liveMembers(group.pgid), 0);
    assert.equal((await group.status).signal, "SIGTERM");
    await drained;
  });
}

Deno.test("process: stop escalates to SIGKILL when the group ignores SIGTERM", async () => {
  const group = spawn("trap '' TERM; sleep 30 & echo ready; wait");
  const { drained } = await afterReady(group);
  const started = performance.now();
  const killed = await group.stop(200);
  assert.equal(killed, true);
  assert.ok(performance.now() - started >= 190, "waited out the grace period first");
  assert.equal(liveMembers(group.pgid), 0);
  assert.equal((await group.status).signal, "SIGKILL");
  await drained;
});

Deno.test("process: stopping right after spawn works even before setsid has run", async () => {
  for (let i = 0; i < 20; i++) {
    const group = spawn("sleep 30");
    await group.stop(1000);
    assert.equal(liveMembers(group.pgid), 0);
    assert.equal(group.isAlive(), false);
    await drain(group);
  }
});

Deno.test("process: sweep stops what the shell left running, and is a no-op otherwise", async () => {
  const leftover = spawn("sleep 30 >/dev/null 2>&1 & echo started");
  assert.equal(await drain(leftover), "started\n");
  await leftover.status;
  assert.ok(leftover.isAlive(), "the background sleep outlived the shell");
  assert.equal(await leftover.sweep(1000), true);
  assert.equal(liveMembers(leftover.pgid), 0);

  const clean = spawn("echo done");
  await drain(clean);
  await clean.status;
  assert.equal(await clean.sweep(1000), false);
});

Deno.test("process: a shell that cannot be started is a SpawnError, not a crash", () => {
  assert.throws(
    () =>
      ProcessGroup.spawn(
        { shell: "/nonexistent/shell", command: "true", pipeStdin: false },
        "detached",
      ),
    (error) =>
      error instanceof SpawnError && /Cannot start \/nonexistent\/shell/.test(error.message),
  );
});

for (const groupMode of ["setsid", "detached"] as const) {
  Deno.test(`process (${groupMode}): argv runs without a shell, so no argument is shell syntax`, async () => {
    const hostile = `"; touch /tmp/cc-pwned-$$ ; echo '$(id)' \`whoami\`\n-- -p`;
    await using group = ProcessGroup.spawn({
      shell: "bash",
      command: "(shown only)",
      argv: ["printf", "%s\\0", "-p", hostile],
      pipeStdin: false,
    }, groupMode);
    assert.equal(await drain(group), `-p\0${hostile}\0`);
    assert.equal((await group.status).code, 0);
    // The program leads its own group, as the shell does.
    await using sleeper = ProcessGroup.spawn(
      { shell: "bash", command: "sleep 5", argv: ["sleep", "5"], pipeStdin: false },
      groupMode,
    );
    const deadline = performance.now() + 5000;
    while (pgrpOf(sleeper.pid) !== sleeper.pid && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(pgrpOf(sleeper.pid), sleeper.pid);
    await sleeper.stop(1000);
    await drain(sleeper);
  });
}
