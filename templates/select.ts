/**
 * Choosing the template for a retry by how often each one's retries have
 * succeeded, with exploration: Thompson sampling. Each template's success
 * rate is uncertain, Beta(successes + 1, failures + 1) given what was seen;
 * one value is drawn from each and the highest draw wins. A template that
 * does well wins most of the time, one with few uses has a wide distribution
 * and still wins sometimes, and the balance shifts by itself as outcomes come
 * in, without a tuning knob.
 *
 * @module
 */

/** How often a template has been used for a retry, and how many of those retries succeeded. */
export interface TemplateTally {
  template: string;
  uses: number;
  successes: number;
}

export interface SelectOptions {
  /** Uniform numbers in [0, 1); inject a seeded one for repeatable choices. @default Math.random */
  random?: () => number;
}

/**
 * The templates a retry may use: those more concise (a higher `order`) than the one the previous
 * attempt used, or all of them for the first retry (`previous` null or undefined). Empty when no
 * template is terser than the previous one: the caller decides whether to reuse it or stop.
 *
 * @example
 * ```ts
 * const candidates = eligibleTemplates(set.templates, set.get(previousName));
 * ```
 */
export function eligibleTemplates<T extends { order: number }>(
  templates: readonly T[],
  previous?: { order: number } | null,
): T[] {
  if (previous === null || previous === undefined) return [...templates];
  return templates.filter((template) => template.order > previous.order);
}

/**
 * Picks one of `candidates` by Thompson sampling over their tallies (a template without one counts
 * as never used). Undefined when there are no candidates.
 *
 * @example
 * ```ts
 * const stats = await store.templateStats();
 * const next = selectTemplate(eligibleTemplates(set.templates, previous), stats);
 * ```
 */
export function selectTemplate<T extends { name: string }>(
  candidates: readonly T[],
  stats: Iterable<TemplateTally>,
  options: SelectOptions = {},
): T | undefined {
  const random = options.random ?? Math.random;
  const tallies = new Map<string, TemplateTally>();
  for (const tally of stats) tallies.set(tally.template, tally);
  let best: T | undefined;
  let bestDraw = -Infinity;
  for (const candidate of candidates) {
    const tally = tallies.get(candidate.name);
    const uses = Math.max(0, tally?.uses ?? 0);
    const successes = Math.min(uses, Math.max(0, tally?.successes ?? 0));
    const draw = sampleBeta(successes + 1, uses - successes + 1, random);
    if (draw > bestDraw) {
      best = candidate;
      bestDraw = draw;
    }
  }
  return best;
}

/** Successes per use, or null for a template never used (no rate to speak of). */
export function successRate(uses: number, successes: number): number | null {
  return uses > 0 ? successes / uses : null;
}

/**
 * A draw from Beta(a, b) (a, b > 0): X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
 * @throws {RangeError} for a shape that is not a finite number above 0.
 */
export function sampleBeta(a: number, b: number, random: () => number = Math.random): number {
  const x = sampleGamma(a, random);
  const y = sampleGamma(b, random);
  return x + y === 0 ? 0.5 : x / (x + y);
}

/**
 * A draw from Gamma(shape, 1): Marsaglia and Tsang's method ("A simple method for generating gamma
 * variables", 2000), which needs only uniform and normal draws; shapes below 1 are boosted by
 * Gamma(shape + 1) * U^(1/shape).
 */
export function sampleGamma(shape: number, random: () => number = Math.random): number {
  if (!Number.isFinite(shape) || shape <= 0) {
    throw new RangeError(`Gamma shape must be a finite number above 0, got ${shape}`);
  }
  if (shape < 1) return sampleGamma(shape + 1, random) * Math.pow(uniformOpen(random), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  while (true) {
    const x = sampleNormal(random);
    const t = 1 + c * x;
    if (t <= 0) continue;
    const v = t * t * t;
    const u = uniformOpen(random);
    if (u < 1 - 0.0331 * x ** 4) return d * v;
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** A standard normal draw (Box-Muller). */
function sampleNormal(random: () => number): number {
  return Math.sqrt(-2 * Math.log(uniformOpen(random))) * Math.cos(2 * Math.PI * random());
}

/** A uniform draw in (0, 1]: never 0, whose logarithm is -Infinity. */
function uniformOpen(random: () => number): number {
  return 1 - random();
}
