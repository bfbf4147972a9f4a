import assert from "node:assert/strict";
import type { ExecuteOutcome } from "../server/client.ts";
import { EXIT, exitCodeFor, summarize } from "./outcome.ts";

Deno.test("outcome: a job lost with its node exits 125 (cc-executor lost it) and says why", () => {
  const outcome: ExecuteOutcome = {
    jobId: "j",
    success: false,
    status: "lost",
    exitCode: null,
    signal: null,
    stdout: "",
    stderr: "",
    output: "",
    durationMs: 1000,
    error: 'its node "n2" stopped answering (down since 10:00:00)',
    truncated: false,
    bytes: { stdout: 0, stderr: 0 },
    hooks: {},
    attempts: 1,
  };
  // Before, it exited 1 (a command's own failure) with "ended with status lost" and no reason.
  assert.equal(exitCodeFor(outcome), EXIT.EXECUTOR_ERROR);
  assert.equal(
    summarize(outcome),
    'job j was lost: its node "n2" stopped answering (down since 10:00:00)',
  );
});
