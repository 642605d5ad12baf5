/**
 * Percentiles by the nearest-rank method: for n values sorted ascending, the
 * p-th percentile (0 < p ≤ 100) is the value at 1-based rank ⌈p·n/100⌉.
 * It is always one of the observed values (no interpolation): for the values
 * 1..100, p50 = 50, p95 = 95, p99 = 99; for 1..20, p95 = 19 (rank ⌈19⌉).
 */
export function nearestRank(n: number, p: number): number {
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} outside (0, 100]`);
  // (p·n)/100 is exact whenever it is a whole number (integer p and n); rank ≥ 1.
  return Math.max(1, Math.ceil((p * n) / 100));
}

/** The p-th nearest-rank percentile of values sorted ascending; undefined when empty. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[nearestRank(sorted.length, p) - 1];
}

export interface LatencySummary {
  count: number;
  mean: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

const round3 = (v: number) => Math.round(v * 1000) / 1000;

/** Mean (rounded to 0.001 ms) and nearest-rank p50/p95/p99 and max of the values. */
export function summarizeLatency(values: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  if (n === 0) return { count: 0, mean: null, p50: null, p95: null, p99: null, max: null };
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: n,
    mean: round3(sum / n),
    p50: percentileSorted(sorted, 50)!,
    p95: percentileSorted(sorted, 95)!,
    p99: percentileSorted(sorted, 99)!,
    max: sorted[n - 1]!,
  };
}

/**
 * A multiset of values from a known universe with insert, remove and k-th
 * smallest in O(log n) (a Fenwick tree over the sorted distinct values), for
 * percentiles over a sliding window.
 */
export class OrderStatistics {
  private readonly values: Float64Array;
  private readonly tree: Int32Array;
  private readonly top: number;
  size = 0;

  constructor(universe: ArrayLike<number>) {
    const sorted = Float64Array.from(universe).sort();
    let distinct = 0;
    for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) sorted[distinct++] = sorted[i]!;
    this.values = sorted.slice(0, distinct);
    this.tree = new Int32Array(distinct + 1);
    this.top = distinct === 0 ? 0 : 2 ** Math.floor(Math.log2(distinct));
  }

  private index(value: number): number {
    let lo = 0;
    let hi = this.values.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.values[mid]! < value) lo = mid + 1;
      else hi = mid;
    }
    if (this.values[lo] !== value) throw new RangeError(`${value} is not in the universe`);
    return lo + 1;
  }

  private update(value: number, delta: number): void {
    for (let i = this.index(value); i < this.tree.length; i += i & -i) this.tree[i]! += delta;
    this.size += delta;
  }

  add(value: number): void {
    this.update(value, 1);
  }

  remove(value: number): void {
    this.update(value, -1);
  }

  /** The k-th smallest value held (1-based). */
  kth(k: number): number {
    if (k < 1 || k > this.size) throw new RangeError(`rank ${k} outside 1..${this.size}`);
    let pos = 0;
    let rest = k;
    for (let step = this.top; step > 0; step >>= 1) {
      const next = pos + step;
      if (next < this.tree.length && this.tree[next]! < rest) {
        pos = next;
        rest -= this.tree[next]!;
      }
    }
    return this.values[pos]!;
  }

  percentile(p: number): number {
    return this.kth(nearestRank(this.size, p));
  }
}
