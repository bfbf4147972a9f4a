import assert from "node:assert/strict";
import {
  eligibleTemplates,
  sampleBeta,
  sampleGamma,
  selectTemplate,
  successRate,
  type TemplateTally,
} from "./select.ts";

/** mulberry32: a small seeded generator, so every run draws the same numbers. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const t = (name: string, order: number) => ({ name, order });

/** How often each candidate is chosen over `draws` selections. */
function counts(
  candidates: { name: string }[],
  stats: TemplateTally[],
  draws: number,
  seed = 1,
): Record<string, number> {
  const random = seeded(seed);
  const chosen: Record<string, number> = Object.fromEntries(candidates.map((c) => [c.name, 0]));
  for (let i = 0; i < draws; i++) chosen[selectTemplate(candidates, stats, { random })!.name]!++;
  return chosen;
}

Deno.test("select: over many draws the template with the better success rate is chosen most", () => {
  // The better one is listed last, so a selection that ignored the statistics (first wins) fails.
  const candidates = [t("worse", 1), t("better", 2)];
  const stats = [
    { template: "worse", uses: 20, successes: 6 },
    { template: "better", uses: 20, successes: 15 },
  ];
  const chosen = counts(candidates, stats, 2000);
  assert.ok(chosen.better! > 1800, JSON.stringify(chosen));
  // Twenty uses each still leaves some doubt: the worse one gets the occasional try.
  assert.ok(chosen.worse! > 0, JSON.stringify(chosen));
});

Deno.test("select: a template never tried still gets picked sometimes", () => {
  const candidates = [t("proven", 1), t("new", 2)];
  const stats = [{ template: "proven", uses: 50, successes: 40 }];
  const chosen = counts(candidates, stats, 4000);
  // Beta(1, 1) beats Beta(41, 11) with probability 1 - 41/52, about 21%.
  const share = chosen.new! / 4000;
  assert.ok(share > 0.15 && share < 0.28, `new chosen ${share}`);
  assert.ok(chosen.proven! > chosen.new!, JSON.stringify(chosen));
});

Deno.test("select: with no statistics every candidate is about equally likely", () => {
  const candidates = [t("a", 1), t("b", 2), t("c", 3)];
  const chosen = counts(candidates, [], 3000);
  for (const name of ["a", "b", "c"]) {
    assert.ok(chosen[name]! > 850 && chosen[name]! < 1150, JSON.stringify(chosen));
  }
});

Deno.test("select: failures count against a template as much as successes count for it", () => {
  // Same rate (50%), very different certainty: both are still chosen, about equally.
  const candidates = [t("few", 1), t("many", 2)];
  const stats = [
    { template: "few", uses: 2, successes: 1 },
    { template: "many", uses: 200, successes: 100 },
  ];
  const chosen = counts(candidates, stats, 2000);
  assert.ok(chosen.few! > 800 && chosen.many! > 800, JSON.stringify(chosen));
  // A template that always fails loses to one that is unknown.
  const failing = counts(
    [t("failing", 1), t("unknown", 2)],
    [{ template: "failing", uses: 30, successes: 0 }],
    1000,
  );
  assert.ok(failing.unknown! > 930, JSON.stringify(failing));
});

Deno.test("select: the same random source gives the same choices; none for no candidates", () => {
  const candidates = [t("a", 1), t("b", 2), t("c", 3)];
  const stats = [{ template: "a", uses: 3, successes: 2 }];
  const run = (seed: number) => {
    const random = seeded(seed);
    return Array.from({ length: 50 }, () => selectTemplate(candidates, stats, { random })!.name);
  };
  assert.deepStrictEqual(run(7), run(7));
  assert.notDeepStrictEqual(run(7), run(8));
  assert.equal(selectTemplate([], stats), undefined);
  // Odd tallies (more successes than uses, negative counts) are clamped, never a NaN draw.
  const odd = [{ template: "a", uses: -1, successes: 5 }];
  assert.ok(["a", "b"].includes(selectTemplate([t("a", 1), t("b", 1)], odd)!.name));
});

Deno.test("select: eligible templates are the terser ones, or all on the first retry", () => {
  const all = [t("concise", 1), t("summary", 2), t("also-2", 2), t("outline", 4)];
  assert.deepStrictEqual(eligibleTemplates(all, null), all);
  assert.deepStrictEqual(eligibleTemplates(all), all);
  assert.deepStrictEqual(eligibleTemplates(all, { order: 1 }).map((x) => x.name), [
    "summary",
    "also-2",
    "outline",
  ]);
  assert.deepStrictEqual(eligibleTemplates(all, { order: 2 }).map((x) => x.name), ["outline"]);
  assert.deepStrictEqual(eligibleTemplates(all, { order: 4 }), []);
});

Deno.test("select: sampleBeta draws have the mean and spread of Beta(a, b)", () => {
  const random = seeded(42);
  for (const [a, b] of [[1, 1], [3, 7], [41, 11], [0.5, 0.5]] as const) {
    const n = 20_000;
    const draws = Array.from({ length: n }, () => sampleBeta(a, b, random));
    assert.ok(draws.every((x) => x >= 0 && x <= 1), `Beta(${a}, ${b}) outside [0, 1]`);
    const mean = draws.reduce((s, x) => s + x, 0) / n;
    const variance = draws.reduce((s, x) => s + (x - mean) ** 2, 0) / n;
    const wantMean = a / (a + b);
    const wantVariance = (a * b) / ((a + b) ** 2 * (a + b + 1));
    assert.ok(Math.abs(mean - wantMean) < 0.01, `Beta(${a}, ${b}) mean ${mean}, want ${wantMean}`);
    assert.ok(
      Math.abs(variance - wantVariance) < wantVariance * 0.1,
      `Beta(${a}, ${b}) variance ${variance}, want ${wantVariance}`,
    );
  }
  assert.throws(() => sampleGamma(0), RangeError);
  assert.throws(() => sampleBeta(1, NaN), RangeError);
});

Deno.test("select: successRate is null for a template never used", () => {
  assert.equal(successRate(0, 0), null);
  assert.equal(successRate(4, 3), 0.75);
});
