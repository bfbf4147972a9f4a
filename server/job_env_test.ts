import assert from "node:assert/strict";
import { jobEnvironments } from "./job_env.ts";

const SERVER = {
  PATH: "/usr/bin",
  HOME: "/home/me",
  CC_EXECUTOR_TOKEN: "secret-token-0123456789",
  REDIS_URL: "redis://:pw@host:6379",
  ANTHROPIC_API_KEY: "sk-ant-xyz",
  AWS_SECRET_ACCESS_KEY: "aws",
  AWS_REGION: "eu-west-1",
};

Deno.test("job_env: withheld variables (names and PREFIX*) never reach commands", () => {
  const { command } = jobEnvironments(SERVER, {
    withhold: ["CC_EXECUTOR_TOKEN", "REDIS_URL", "ANTHROPIC_API_KEY", "AWS_SECRET*"],
    allow: null,
  });
  assert.deepEqual(command, { PATH: "/usr/bin", HOME: "/home/me", AWS_REGION: "eu-west-1" });
});

Deno.test("job_env: an allow-list passes only what it names; withheld still wins", () => {
  const { command } = jobEnvironments(SERVER, {
    withhold: ["CC_EXECUTOR_TOKEN"],
    allow: ["PATH", "AWS_*", "CC_EXECUTOR_TOKEN"],
  });
  assert.deepEqual(command, {
    PATH: "/usr/bin",
    AWS_SECRET_ACCESS_KEY: "aws",
    AWS_REGION: "eu-west-1",
  });
});

Deno.test("job_env: claude runs cc-executor starts get the Anthropic key back, unless not allowed", () => {
  const policy = { withhold: ["CC_EXECUTOR_TOKEN", "ANTHROPIC_API_KEY"], allow: null };
  const { command, claude } = jobEnvironments(SERVER, policy);
  assert.equal(command.ANTHROPIC_API_KEY, undefined);
  assert.equal(claude.ANTHROPIC_API_KEY, "sk-ant-xyz");
  assert.equal(claude.CC_EXECUTOR_TOKEN, undefined);
  const narrow = jobEnvironments(SERVER, { ...policy, allow: ["PATH"] });
  assert.equal(narrow.claude.ANTHROPIC_API_KEY, undefined);
});
