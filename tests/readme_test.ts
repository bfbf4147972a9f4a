import assert from "node:assert/strict";
import { startTestServer } from "./test_util.ts";

const root = new URL("../", import.meta.url);
const readme = await Deno.readTextFile(new URL("README.md", root));

Deno.test("readme: the TypeScript example runs as printed against a real server", async () => {
  const block =
    /<!-- The block below is run by tests\/readme_test\.ts[^>]*-->\s*```ts\n([\s\S]*?)```/.exec(
      readme,
    );
  assert.ok(block, "README has the tested example block");
  const example = block[1]!;
  assert.match(example, /"ws:\/\/127\.0\.0\.1:8003\/ws"/, "the example uses the default address");

  await using server = await startTestServer();
  // The only changes: the test server's address, and the import resolved from the repository root.
  const runnable = example
    .replace("ws://127.0.0.1:8003/ws", server.url)
    .replace('"./server/client.ts"', JSON.stringify(new URL("server/client.ts", root).href));
  // Inside the checkout, as a user running the example there would be: deno.json maps "zod".
  const dir = new URL("tmp/", root).pathname;
  await Deno.mkdir(dir, { recursive: true });
  const file = await Deno.makeTempFile({ dir, prefix: "readme_example_", suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, runnable);
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", file],
      env: { NO_COLOR: "1" },
    }).output();
    const out = new TextDecoder().decode(stdout);
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.equal(
      out,
      [
        "false failed 2",
        "hello\n",
        "exit code 2",
        "live: step 1",
        "live: step 2",
        "live: step 3",
        "",
      ].join("\n"),
    );
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("readme: the test command it gives is the one CI runs", async () => {
  const ci = await Deno.readTextFile(new URL(".ci/run", root));
  assert.match(readme, /```sh\ndeno task ok\n```/);
  assert.match(ci, /^deno task ok$/m);
});
