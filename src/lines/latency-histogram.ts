/**
 * Result latencies as counts over fixed bounds, so that the rows several
 * processes write for one camera merge by adding counts and still give a
 * percentile (a list of samples would grow with the frame rate; a percentile
 * per process cannot be merged). Hand-written: prom-client's histograms cannot
 * be serialised, merged and read back from a database row.
 */

/** Upper bounds in ms; a last bucket holds everything above. */
export const LATENCY_BOUNDS_MS = [1, 2, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10_000, 30_000] as const;

export function emptyHistogram(): number[] {
  return new Array(LATENCY_BOUNDS_MS.length + 1).fill(0);
}

export function observe(counts: number[], ms: number): void {
  let i = LATENCY_BOUNDS_MS.findIndex((bound) => ms <= bound);
  if (i < 0) i = LATENCY_BOUNDS_MS.length;
  counts[i] = (counts[i] ?? 0) + 1;
}

/** Adds `from` into `into` (a row read back may be shorter or malformed: extra buckets are ignored). */
export function mergeInto(into: number[], from: unknown): void {
  if (!Array.isArray(from)) return;
  for (let i = 0; i < into.length && i < from.length; i++) {
    const n = Number(from[i]);
    if (Number.isFinite(n) && n > 0) into[i] = (into[i] ?? 0) + n;
  }
}

/**
 * The q-quantile by linear interpolation inside its bucket (as Prometheus'
 * histogram_quantile does); null without observations. Values in the last,
 * open bucket are reported as its lower bound.
 */
export function quantile(counts: readonly number[], q: number): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i] ?? 0;
    if (n > 0 && seen + n >= rank) {
      const lower = i === 0 ? 0 : LATENCY_BOUNDS_MS[i - 1]!;
      if (i >= LATENCY_BOUNDS_MS.length) return lower;
      const upper = LATENCY_BOUNDS_MS[i]!;
      return lower + (upper - lower) * ((rank - seen) / n);
    }
    seen += n;
  }
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1]!;
}
