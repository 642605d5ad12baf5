import type { MetricObjectWithValues, MetricValueWithName, Registry } from 'prom-client';

type Labels = Record<string, string | number | undefined>;
export type LabelFilter = Record<string, string | ((value: string) => boolean)>;

interface Series {
  labels: Labels;
  value: number;
  metricName?: string;
}

function matches(labels: Labels, filter: LabelFilter | undefined): boolean {
  if (!filter) return true;
  for (const [name, want] of Object.entries(filter)) {
    const have = labels[name] === undefined ? '' : String(labels[name]);
    if (typeof want === 'string' ? have !== want : !want(have)) return false;
  }
  return true;
}

/**
 * One reading of the metrics the alert rules need, taken from the live registry
 * (prom-client's `get()` of each metric, which runs its collect function, as a
 * scrape would). Missing metrics read as no series, like an absent metric in PromQL.
 */
export class MetricsView {
  private constructor(private readonly byName: Map<string, Series[]>) {}

  static async read(registry: Registry, names: Iterable<string>): Promise<MetricsView> {
    const byName = new Map<string, Series[]>();
    // In order: a metric's collect may update others (prom-client's event-loop lag gauges).
    for (const name of new Set(names)) {
      const metric = registry.getSingleMetric(name);
      if (!metric) continue;
      const data = (await metric.get()) as MetricObjectWithValues<MetricValueWithName<string>>;
      byName.set(name, data.values as Series[]);
    }
    return new MetricsView(byName);
  }

  /** A view over given series (tests and tools). */
  static of(data: Record<string, Series[]>): MetricsView {
    return new MetricsView(new Map(Object.entries(data)));
  }

  /** Plain series (counters, gauges) of a metric matching the filter. */
  series(name: string, filter?: LabelFilter): Series[] {
    return (this.byName.get(name) ?? []).filter((s) => (s.metricName === undefined || s.metricName === name) && matches(s.labels, filter));
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** Sum of the matching series; 0 when there are none. */
  sum(name: string, filter?: LabelFilter): number {
    return this.series(name, filter).reduce((acc, s) => acc + s.value, 0);
  }

  /** Largest matching value, or null when there is no series. */
  max(name: string, filter?: LabelFilter): number | null {
    const values = this.series(name, filter).map((s) => s.value);
    return values.length ? Math.max(...values) : null;
  }

  /**
   * Cumulative bucket counts of a histogram summed over the matching series, by
   * upper bound (ascending, +Inf last), like `sum by (le) (x_bucket)`.
   */
  buckets(name: string, bounds: readonly number[], filter?: LabelFilter): number[] {
    const out = new Array<number>(bounds.length).fill(0);
    const index = new Map(bounds.map((b, i) => [b, i]));
    for (const s of this.byName.get(name) ?? []) {
      if (s.metricName !== `${name}_bucket` || !matches(s.labels, filter)) continue;
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      const i = index.get(le);
      if (i !== undefined) out[i]! += s.value;
    }
    return out;
  }

  /** Upper bounds of a histogram's buckets as present in the reading (ascending, +Inf last). */
  bucketBounds(name: string): number[] {
    const bounds = new Set<number>();
    for (const s of this.byName.get(name) ?? []) {
      if (s.metricName === `${name}_bucket`) bounds.add(s.labels.le === '+Inf' ? Infinity : Number(s.labels.le));
    }
    return [...bounds].sort((a, b) => a - b);
  }
}

/**
 * Prometheus' `histogram_quantile`: the bucket holding rank q × total, linear
 * interpolation inside it (from 0 for the first bucket), the highest finite
 * bound when the rank falls in +Inf. Null when there were no observations.
 */
export function histogramQuantile(q: number, bounds: readonly number[], cumulative: readonly number[]): number | null {
  const total = cumulative[cumulative.length - 1] ?? 0;
  if (!(total > 0) || bounds[bounds.length - 1] !== Infinity) return null;
  const rank = q * total;
  let i = cumulative.findIndex((c) => c >= rank);
  if (i < 0) i = cumulative.length - 1;
  if (bounds[i] === Infinity) return bounds.length >= 2 ? bounds[bounds.length - 2]! : null;
  const lower = i === 0 ? 0 : bounds[i - 1]!;
  const below = i === 0 ? 0 : cumulative[i - 1]!;
  const inBucket = cumulative[i]! - below;
  if (inBucket <= 0) return bounds[i]!;
  return lower + (bounds[i]! - lower) * ((rank - below) / inBucket);
}
