import assert from "node:assert/strict";
import { settlesWithin } from "./deadline.ts";

Deno.test("deadline: true when the promise settles in time, false when it does not", async () => {
  assert.equal(await settlesWithin(Promise.resolve("x"), 1000), true);
  assert.equal(await settlesWithin(new Promise(() => {}), 10), false);
});

Deno.test("deadline: a rejection in time is passed on", async () => {
  await assert.rejects(settlesWithin(Promise.reject(new Error("boom")), 1000), /boom/);
});
