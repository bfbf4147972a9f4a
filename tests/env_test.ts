/** What of the server's environment commands get: through a real server and real processes. */
import assert from "node:assert/strict";
import { ExecutorClient } from "../server/client.ts";
import { defaultConfig } from "../server/config.ts";
import { silentLogger } from "../server/log.ts";
import { startServer } from "../server/server.ts";

Deno.test("env: the server's secrets are withheld from commands; a request's own env applies", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A stand-in for claude that says which key it got.
    const claude = `${dir}/claude`;
    await Deno.writeTextFile(
      claude,
      '#!/bin/sh\necho "claude sees key=${ANTHROPIC_API_KEY:-none}"\n',
    );
    await Deno.chmod(claude, 0o755);
    await using server = await startServer(
      defaultConfig({ port: 0, killGraceMs: 300, claudeBin: claude }),
      {
        logger: silentLogger,
        env: {
          PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
          CC_EXECUTOR_TOKEN: "server-token-0123456789",
          REDIS_URL: "redis://:password@db:6379",
          ANTHROPIC_API_KEY: "sk-ant-server",
          HARMLESS: "passes",
        },
      },
    );
    await using client = await ExecutorClient.connect(server.url);
    const shown = await client.execute({
      command: 'echo "token=${CC_EXECUTOR_TOKEN:-none} redis=${REDIS_URL:-none} ' +
        'key=${ANTHROPIC_API_KEY:-none} harmless=${HARMLESS:-none} mine=${MINE:-none}"',
      env: { MINE: "given" },
    });
    assert.equal(
      shown.stdout,
      "token=none redis=none key=none harmless=passes mine=given\n",
    );
    // A client may give a command a key of its own: that is its to give.
    const own = await client.execute({
      command: 'echo "key=$ANTHROPIC_API_KEY"',
      env: { ANTHROPIC_API_KEY: "sk-ant-client" },
    });
    assert.equal(own.stdout, "key=sk-ant-client\n");
    // A prompt run (cc-executor runs claude itself) gets the server's key.
    const prompt = await client.execute({ prompt: "hi", claude: { output_format: "text" } });
    assert.equal(prompt.stdout, "claude sees key=sk-ant-server\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
