/**
 * The latency histogram of the history series: fixed, log-spaced bucket bounds,
 * the same in every process and every release, so that rows written by any
 * replica merge by adding counts and percentiles are computed on read.
 *
 * Bucket 0 holds [0, HISTOGRAM_MIN_MS]; bucket i holds (bound(i-1), bound(i)]
 * with bound(i) = HISTOGRAM_MIN_MS · 2^(i/8); the last bucket holds everything
 * above the last bound. Eight buckets per doubling put an interpolated
 * percentile within one bucket of the true one: at most 2^(1/8) − 1 ≈ 9 % off.
 * The bounds are part of the stored format: changing them needs a migration.
 */

/** Upper bound of bucket 0, in ms. */
export const HISTOGRAM_MIN_MS = 0.1;
/** Buckets per doubling of the latency. */
export const BUCKETS_PER_DOUBLING = 8;
/** Finite bounds: 0.1 ms up to about 192 s; one more bucket holds what is above. */
const FINITE_BOUNDS = 168;
export const HISTOGRAM_BUCKETS = FINITE_BOUNDS + 1;

/** Relative width of a bucket: the worst-case relative error of an interpolated percentile. */
export const HISTOGRAM_RELATIVE_ERROR = 2 ** (1 / BUCKETS_PER_DOUBLING) - 1;

/** Upper bound of bucket i in ms (Infinity for the last one). */
export function bucketUpperBound(i: number): number {
  return i >= FINITE_BOUNDS ? Number.POSITIVE_INFINITY : HISTOGRAM_MIN_MS * 2 ** (i / BUCKETS_PER_DOUBLING);
}

/** Lower bound of bucket i in ms. */
export function bucketLowerBound(i: number): number {
  return i <= 0 ? 0 : bucketUpperBound(i - 1);
}

/** The bucket a latency (ms) falls in. */
export function bucketIndex(ms: number): number {
  if (!(ms > HISTOGRAM_MIN_MS)) return 0;
  let i = Math.ceil(Math.log2(ms / HISTOGRAM_MIN_MS) * BUCKETS_PER_DOUBLING);
  // Floating point can land one off at an exact bound: (lower, upper] decides.
  if (i > 0 && ms <= bucketUpperBound(i - 1)) i--;
  else if (ms > bucketUpperBound(i)) i++;
  return Math.min(i, FINITE_BOUNDS);
}

/** A dense histogram: counts per bucket index. */
export type Histogram = number[];

export function emptyHistogram(): Histogram {
  return new Array<number>(HISTOGRAM_BUCKETS).fill(0);
}

/** Stored form: [index, count] pairs of the non-empty buckets (most rows use a handful). */
export function encodeHistogram(hist: Histogram): string {
  const pairs: [number, number][] = [];
  hist.forEach((count, i) => {
    if (count > 0) pairs.push([i, count]);
  });
  return JSON.stringify(pairs);
}

/** Adds a stored histogram into `into`; ignores what it cannot read rather than failing a whole answer. */
export function addEncodedHistogram(into: Histogram, text: string): void {
  let pairs: unknown;
  try {
    pairs = JSON.parse(text);
  } catch {
    return;
  }
  if (!Array.isArray(pairs)) return;
  for (const pair of pairs) {
    if (!Array.isArray(pair)) continue;
    const [i, count] = pair as [unknown, unknown];
    if (Number.isInteger(i) && (i as number) >= 0 && (i as number) < HISTOGRAM_BUCKETS && typeof count === 'number' && count > 0) {
      into[i as number] = (into[i as number] ?? 0) + count;
    }
  }
}

/**
 * The q-quantile (0 < q ≤ 1) by linear interpolation inside the bucket that holds
 * the rank-q·n observation, capped by the largest latency seen (which also closes
 * the open last bucket); undefined for an empty histogram.
 */
export function histogramQuantile(hist: Histogram, q: number, maxMs: number): number | undefined {
  let total = 0;
  for (const count of hist) total += count;
  if (total === 0) return undefined;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < hist.length; i++) {
    const count = hist[i] ?? 0;
    if (count === 0) continue;
    if (below + count >= rank) {
      const lower = bucketLowerBound(i);
      const upper = Math.min(bucketUpperBound(i), Math.max(maxMs, lower));
      return Math.min(maxMs, lower + (upper - lower) * ((rank - below) / count));
    }
    below += count;
  }
  return maxMs;
}
