import assert from "node:assert/strict";
import { formatTable } from "./output.ts";

Deno.test("output: table columns line up when cells are painted (colour codes take no room)", () => {
  const red = (text: string) => `\x1b[31m${text}\x1b[39m`;
  const table = formatTable(["NODE", "STATUS", "URL"], [
    ["a", red("up"), "ws://a"],
    ["bb", red("down"), "ws://b"],
  ]);
  const visible = table.replaceAll("\x1b[31m", "").replaceAll("\x1b[39m", "").split("\n");
  assert.deepEqual(visible.slice(0, 3), [
    "NODE  STATUS  URL",
    "a     up      ws://a",
    "bb    down    ws://b",
  ]);
});
