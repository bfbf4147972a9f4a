import assert from "node:assert/strict";
import { commandShape, estimateTimeout, percentile, type TimeoutPolicy } from "./shape.ts";

Deno.test("shape: a command's shape is its program and a subcommand-like next word", () => {
  const cases: [string, string][] = [
    ["npm test", "npm test"],
    ["npm test -- --watch", "npm test"],
    ["/usr/local/bin/npm run build:prod", "npm run"],
    ["FOO=1 BAR='x y' git status --short", "git status"],
    ["ls -la /tmp", "ls"],
    ["sleep 5", "sleep"],
    ["python3 script.py --flag", "python3 script.py"],
    ["make -j4 test", "make"],
    ["cargo build && cargo test", "cargo build"],
    ["cd /repo && npm test", "npm test"],
    ["cd /repo; source venv/bin/activate && pytest -x", "pytest"],
    ["(cd sub; make -j4)", "make"],
    ["export CI=1; cd x && ./build.sh --fast", "build.sh"],
    ["cd /tmp", "cd"],
    ["cat file | grep x", "cat file"],
    ["env -i PATH=/bin nohup stdbuf -oL claude -p hi", "claude"],
    ["  echo   hi  ", "echo hi"],
    ["'my prog' arg", "my prog arg"],
    ['"$HOME/bin/tool" --flag', "tool"],
    ["", ""],
  ];
  for (const [command, shape] of cases) assert.equal(commandShape(command), shape, command);
});

Deno.test("shape: percentile is nearest-rank", () => {
  assert.equal(percentile([], 50), NaN);
  assert.equal(percentile([5], 95), 5);
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(hundred, 50), 50);
  assert.equal(percentile(hundred, 95), 95);
  assert.equal(percentile([3, 1, 2], 50), 2);
});

const policy: TimeoutPolicy = {
  adaptive: true,
  defaultSeconds: 600,
  floorSeconds: 30,
  ceilingSeconds: 3600,
  multiplier: 3,
  minSamples: 3,
};

Deno.test("shape: the timeout estimate is 3 x p95, clamped, or the default without history", () => {
  assert.deepEqual(estimateTimeout([], policy), {
    seconds: 600,
    source: "default",
    samples: 0,
    p95_ms: null,
  });
  assert.equal(estimateTimeout([1000, 2000], policy).source, "default", "too few samples");
  assert.deepEqual(estimateTimeout([100, 200, 300], policy), {
    seconds: 30,
    source: "history",
    samples: 3,
    p95_ms: 300,
  });
  const long = Array.from({ length: 20 }, (_, i) => (i + 1) * 10_000); // p95 190 s
  assert.equal(estimateTimeout(long, policy).seconds, 570);
  assert.equal(estimateTimeout([4e6, 4e6, 4e6], policy).seconds, 3600, "the ceiling");
  assert.deepEqual(estimateTimeout([100, 200, 300], { ...policy, adaptive: false }), {
    seconds: null,
    source: "none",
    samples: 0,
    p95_ms: null,
  });
});
