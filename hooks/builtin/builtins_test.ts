import assert from "node:assert/strict";
import type { HooksConfig } from "../../server/config.ts";
import { createLogger } from "../../server/log.ts";
import { NoStore } from "../../server/store/none.ts";
import { builtinHooks } from "./builtins.ts";

const config: HooksConfig = {
  dir: "hooks",
  configFile: null,
  timeoutMs: 1234,
  maxAttempts: 3,
  redactSecrets: false,
  secretEnvVars: ["GITHUB_TOKEN"],
  pythonVenv: false,
  recordMetrics: false,
};

Deno.test("builtins: only the enabled ones, in order, with the configured timeout", () => {
  const lines: string[] = [];
  const deps = {
    store: new NoStore(),
    env: { PATH: "/usr/bin" },
    logger: createLogger("debug", { write: (line) => lines.push(line) }),
  };
  assert.deepEqual(builtinHooks(config, deps), []);
  const all = builtinHooks({
    ...config,
    redactSecrets: true,
    pythonVenv: true,
    recordMetrics: true,
  }, deps);
  assert.deepEqual(all.map((h) => [h.name, h.point, h.source.kind, h.timeoutMs, h.onFailure]), [
    ["python_venv", "pre_execution", "builtin", 1234, "proceed"],
    ["redact_secrets", "output", "builtin", 1234, "block"],
    ["record_metrics", "post_execution", "builtin", 1234, "proceed"],
  ]);
  assert.deepEqual(builtinHooks({ ...config, recordMetrics: true }, deps).map((h) => h.name), [
    "record_metrics",
  ]);
  assert.deepEqual(lines, []);
  // PYTHONHOME cannot be unset through the job's env: said once, at load.
  builtinHooks({ ...config, pythonVenv: true }, { ...deps, env: { PYTHONHOME: "/opt/py" } });
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, / WARN {2}python_venv: PYTHONHOME is set/);
});
