import assert from "node:assert/strict";
import { untrustedFileReason, untrustedReason } from "./trust.ts";

Deno.test("trust: a file or folder writable by everyone is refused; a private one is not", () => {
  const dir = Deno.makeTempDirSync();
  const file = `${dir}/hook.ts`;
  Deno.writeTextFileSync(file, "export const HOOKS = {};");
  Deno.chmodSync(file, 0o644);
  assert.equal(untrustedFileReason(file, dir), null);
  Deno.chmodSync(file, 0o666);
  assert.match(untrustedFileReason(file, dir)!, /hook\.ts is writable by everyone \(mode 666\)/);
  Deno.chmodSync(file, 0o644);
  Deno.chmodSync(dir, 0o777);
  assert.match(untrustedFileReason(file, dir)!, /its folder .* is writable by everyone/);
  Deno.chmodSync(dir, 0o700);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("trust: a link to a file in a folder writable by everyone is refused", () => {
  const open = Deno.makeTempDirSync();
  Deno.chmodSync(open, 0o777);
  const target = `${open}/evil.ts`;
  Deno.writeTextFileSync(target, "export const HOOKS = {};");
  Deno.chmodSync(target, 0o644);
  const hooks = Deno.makeTempDirSync();
  Deno.symlinkSync(target, `${hooks}/a.ts`);
  assert.match(
    untrustedFileReason(`${hooks}/a.ts`, hooks)!,
    /links to .*evil\.ts, whose folder .* is writable by everyone/,
  );
  // The same link into a private folder is fine.
  Deno.chmodSync(open, 0o755);
  assert.equal(untrustedFileReason(`${hooks}/a.ts`, hooks), null);
  Deno.removeSync(open, { recursive: true });
  Deno.removeSync(hooks, { recursive: true });
});

Deno.test("trust: a path that cannot be read is not trusted", () => {
  assert.match(untrustedReason("/nonexistent/hook.ts")!, /cannot be checked/);
});
