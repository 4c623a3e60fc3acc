/**
 * Summaries of measured samples: percentiles, means, and whether a series grows over time (memory
 * per round). Pure functions, unit-tested in bench/test/stats.test.ts.
 */

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  max: number;
}

/**
 * The q-quantile (0 <= q <= 1) of `values`, interpolating linearly between the two nearest ranks
 * (numpy's default, "type 7"). NaN for no values.
 */
export function percentile(values: readonly number[], q: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile ${q} outside 0..1`);
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}

export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) return { n: 0, min: NaN, p50: NaN, p90: NaN, p99: NaN, mean: NaN, max: NaN };
  return {
    n: values.length,
    min: Math.min(...values),
    p50: percentile(values, 0.5),
    p90: percentile(values, 0.9),
    p99: percentile(values, 0.99),
    mean: mean(values),
    max: Math.max(...values),
  };
}

/** Least-squares slope of y over x (units of y per unit of x); NaN with fewer than two distinct x. */
export function slope(points: readonly { x: number; y: number }[]): number {
  if (points.length < 2) return NaN;
  const mx = mean(points.map((p) => p.x));
  const my = mean(points.map((p) => p.y));
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/**
 * Growth of a sawtooth series (RSS under a garbage collector): the peak of its second half minus the
 * peak of its first half. Peaks, not means, because a collector's cycle makes means noisy; a bounded
 * process has the same peak in both halves, a leaking one a higher second peak. NaN with fewer than
 * four points.
 */
export function peakGrowth(series: readonly number[]): number {
  if (series.length < 4) return NaN;
  const half = Math.floor(series.length / 2);
  return Math.max(...series.slice(half)) - Math.max(...series.slice(0, half));
}

/** a / b, or null when either is missing or b is zero (JSON has no NaN). */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return a / b;
}

/** Rounds to `digits` significant decimals for reports; non-finite values become null. */
export function round(v: number | null | undefined, digits = 3): number | null {
  if (v == null || !Number.isFinite(v)) return null;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** Summary with every field rounded (milliseconds to 0.01 ms, for JSON). */
export function roundedSummary(values: readonly number[], digits = 2): Record<keyof Summary, number | null> {
  const s = summarize(values);
  return {
    n: s.n,
    min: round(s.min, digits),
    p50: round(s.p50, digits),
    p90: round(s.p90, digits),
    p99: round(s.p99, digits),
    mean: round(s.mean, digits),
    max: round(s.max, digits),
  };
}
