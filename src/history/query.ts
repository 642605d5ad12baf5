import { Errors } from '../errors.js';
import { addEncodedHistogram, emptyHistogram, histogramQuantile, type Histogram } from './histogram.js';
import { lineResults, type LineRow, type ProcessRow } from './history-store.js';
import { GAUGES, type GaugeName } from './recorder.js';

/** The settings a history query is planned with (from the config). */
export interface HistorySettings {
  resolutionMs: number;
  retentionMs: number;
  rollupResolutionMs: number;
  rollupRetentionMs: number;
  /** Most points one answer may hold. */
  maxPoints: number;
}

/** A history request as the route parsed it: epoch milliseconds; left out → defaults. */
export interface HistoryQuery {
  from?: number;
  to?: number;
  stepMs?: number;
  line?: string;
}

/** What a query reads: one resolution, whole steps from `start` (inclusive) to `end` (exclusive). */
export interface HistoryPlan {
  resolution: 'fine' | 'coarse';
  resolutionMs: number;
  stepMs: number;
  start: number;
  end: number;
  points: number;
  line: string | undefined;
}

const HOUR_MS = 3_600_000;

/** A duration in the words of docs/history.md: 10s, 5m, 2h, 1500ms. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/**
 * Chooses the resolution and the step of an answer, or refuses the query.
 * The coarse series serves a step of at least its resolution and any range that
 * starts before the fine retention; a step is rounded up to a whole number of
 * stored buckets (the answer says which step it used).
 */
export function planHistory(query: HistoryQuery, settings: HistorySettings, now: number): HistoryPlan {
  const to = query.to ?? now;
  const requested = query.stepMs;
  // One point less than the cap: an unaligned `to` adds one.
  const defaultSpan = Math.min(HOUR_MS, (settings.maxPoints - 1) * Math.max(requested ?? 0, settings.resolutionMs));
  const from = query.from ?? to - defaultSpan;
  if (from >= to) throw new Errors.INVALID_REQUEST(`from (${new Date(from).toISOString()}) must be before to (${new Date(to).toISOString()})`);
  if (to - from > settings.rollupRetentionMs) {
    throw new Errors.HISTORY_RANGE_TOO_LONG(formatDuration(to - from), formatDuration(settings.rollupRetentionMs));
  }
  const coarse = (requested ?? 0) >= settings.rollupResolutionMs || from < now - settings.retentionMs;
  const resolutionMs = coarse ? settings.rollupResolutionMs : settings.resolutionMs;
  const stepMs = Math.max(1, Math.ceil((requested ?? resolutionMs) / resolutionMs)) * resolutionMs;
  const start = Math.floor(from / stepMs) * stepMs;
  const end = Math.ceil(to / stepMs) * stepMs;
  const points = (end - start) / stepMs;
  if (points > settings.maxPoints) {
    // The smallest whole-bucket step that fits, allowing for the alignment of both ends.
    const fits = Math.ceil((to - from) / (settings.maxPoints - 1) / resolutionMs) * resolutionMs;
    throw new Errors.HISTORY_TOO_MANY_POINTS(String(points), String(settings.maxPoints), formatDuration(fits));
  }
  return { resolution: coarse ? 'coarse' : 'fine', resolutionMs, stepMs, start, end, points, line: query.line };
}

type Points = (number | null)[];

/** A gauge per step over every process: mean of all samples, largest sample, and the sum of the processes' means. */
export interface GaugeSeries {
  avg: Points;
  max: Points;
  sum: Points;
}

/** The answer of GET /v1/stats/history (docs/history.md). */
export interface HistoryAnswer {
  from: string;
  to: string;
  step_ms: number;
  resolution: 'fine' | 'coarse';
  resolution_ms: number;
  line: string | null;
  timestamps: number[];
  series: {
    processes: Points;
    results: Points;
    throughput: Points;
    latency_ms: { p50: Points; p95: Points; p99: Points; avg: Points; max: Points };
    errors: Points;
    client_errors: Points;
    rejected: Points;
    queue_depth: { jobs: GaugeSeries; inference: GaugeSeries };
    cpu: GaugeSeries;
    rss_bytes: GaugeSeries;
    event_loop_lag_ms: GaugeSeries;
    gpu_utilization?: GaugeSeries;
    gpu_memory_bytes?: GaugeSeries;
    verdicts: Record<string, { ok: Points; ng: Points; check: Points }>;
  };
}

interface StepAcc {
  processes: Map<string, { errors: number; clientErrors: number; rejected: number; gauges: Map<GaugeName, [number, number, number]> }>;
  lines: Map<string, { ok: number; ng: number; check: number }>;
  hist: Histogram;
  count: number;
  latencySum: number;
  latencyMax: number;
}

const round = (value: number, digits: number) => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

const GAUGE_DIGITS: Record<GaugeName, number> = {
  cpu: 4,
  rss_bytes: 0,
  event_loop_lag_ms: 3,
  jobs_queue_depth: 3,
  inference_queue_depth: 3,
  gpu_utilization: 4,
  gpu_memory_bytes: 0,
};

function parseGauges(text: string): [GaugeName, [number, number, number]][] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return [];
  }
  if (parsed === null || typeof parsed !== 'object') return [];
  const out: [GaugeName, [number, number, number]][] = [];
  for (const name of GAUGES) {
    const v = (parsed as Record<string, unknown>)[name];
    if (Array.isArray(v) && v.length === 3 && v.every((n) => typeof n === 'number' && Number.isFinite(n)) && (v[1] as number) > 0) {
      out.push([name, v as [number, number, number]]);
    }
  }
  return out;
}

/**
 * Merges the rows of every process into the steps of a plan: counts add, latency
 * histograms add (percentiles by interpolation), gauges merge their sums, counts
 * and maxima. A step with no row of any process is null everywhere (a gap: no
 * process was recording); a step with rows but no results has 0 results and null latencies.
 */
export function buildSeries(plan: HistoryPlan, rows: { processes: ProcessRow[]; lines: LineRow[] }): HistoryAnswer {
  const { points, start, stepMs } = plan;
  const steps: (StepAcc | undefined)[] = new Array(points).fill(undefined);
  const stepOf = (bucketMs: number) => {
    const i = Math.floor((bucketMs - start) / stepMs);
    if (i < 0 || i >= points) return undefined;
    let acc = steps[i];
    if (!acc) steps[i] = acc = { processes: new Map(), lines: new Map(), hist: emptyHistogram(), count: 0, latencySum: 0, latencyMax: 0 };
    return acc;
  };
  const processOf = (acc: StepAcc, id: string) => {
    let p = acc.processes.get(id);
    if (!p) acc.processes.set(id, (p = { errors: 0, clientErrors: 0, rejected: 0, gauges: new Map() }));
    return p;
  };

  for (const row of rows.processes) {
    const acc = stepOf(row.bucket_ms);
    if (!acc) continue;
    const p = processOf(acc, row.process_id);
    p.errors += row.errors;
    p.clientErrors += row.client_errors;
    p.rejected += row.rejected;
    for (const [name, [sum, count, max]] of parseGauges(row.gauges)) {
      const g = p.gauges.get(name);
      if (g) {
        g[0] += sum;
        g[1] += count;
        g[2] = Math.max(g[2], max);
      } else p.gauges.set(name, [sum, count, max]);
    }
  }
  const lineNames = new Set<string>();
  for (const row of rows.lines) {
    const acc = stepOf(row.bucket_ms);
    if (!acc) continue;
    processOf(acc, row.process_id);
    lineNames.add(row.line);
    const l = acc.lines.get(row.line) ?? { ok: 0, ng: 0, check: 0 };
    l.ok += row.ok;
    l.ng += row.ng;
    l.check += row.check_count ?? 0;
    acc.lines.set(row.line, l);
    acc.count += lineResults(row);
    acc.latencySum += row.latency_sum;
    acc.latencyMax = Math.max(acc.latencyMax, row.latency_max);
    addEncodedHistogram(acc.hist, row.latency_hist);
  }

  const perStep = (fn: (acc: StepAcc) => number | null): Points => steps.map((acc) => (acc ? fn(acc) : null));
  const quantile = (q: number) => perStep((a) => (a.count > 0 ? round(histogramQuantile(a.hist, q, a.latencyMax) ?? 0, 3) : null));
  const sumOf = (field: 'errors' | 'clientErrors' | 'rejected') =>
    perStep((a) => {
      let n = 0;
      for (const p of a.processes.values()) n += p[field];
      return n;
    });
  const gauge = (name: GaugeName): GaugeSeries | undefined => {
    const digits = GAUGE_DIGITS[name];
    const merged = steps.map((acc) => {
      if (!acc) return undefined;
      let sum = 0;
      let count = 0;
      let max = Number.NEGATIVE_INFINITY;
      let total = 0;
      for (const p of acc.processes.values()) {
        const g = p.gauges.get(name);
        if (!g) continue;
        sum += g[0];
        count += g[1];
        max = Math.max(max, g[2]);
        total += g[0] / g[1];
      }
      return count > 0 ? { avg: round(sum / count, digits), max: round(max, digits), sum: round(total, digits) } : undefined;
    });
    if (merged.every((m) => m === undefined)) return undefined;
    return { avg: merged.map((m) => m?.avg ?? null), max: merged.map((m) => m?.max ?? null), sum: merged.map((m) => m?.sum ?? null) };
  };
  const none = (): GaugeSeries => ({ avg: steps.map(() => null), max: steps.map(() => null), sum: steps.map(() => null) });

  const verdicts: HistoryAnswer['series']['verdicts'] = {};
  for (const line of [...lineNames].sort()) {
    verdicts[line] = {
      ok: perStep((a) => a.lines.get(line)?.ok ?? 0),
      ng: perStep((a) => a.lines.get(line)?.ng ?? 0),
      check: perStep((a) => a.lines.get(line)?.check ?? 0),
    };
  }
  const gpuUtilization = gauge('gpu_utilization');
  const gpuMemory = gauge('gpu_memory_bytes');
  return {
    from: new Date(plan.start).toISOString(),
    to: new Date(plan.end).toISOString(),
    step_ms: stepMs,
    resolution: plan.resolution,
    resolution_ms: plan.resolutionMs,
    line: plan.line ?? null,
    timestamps: steps.map((_, i) => start + i * stepMs),
    series: {
      processes: perStep((a) => a.processes.size),
      results: perStep((a) => a.count),
      throughput: perStep((a) => round(a.count / (stepMs / 1000), 3)),
      latency_ms: {
        p50: quantile(0.5),
        p95: quantile(0.95),
        p99: quantile(0.99),
        avg: perStep((a) => (a.count > 0 ? round(a.latencySum / a.count, 3) : null)),
        max: perStep((a) => (a.count > 0 ? round(a.latencyMax, 3) : null)),
      },
      errors: sumOf('errors'),
      client_errors: sumOf('clientErrors'),
      rejected: sumOf('rejected'),
      queue_depth: { jobs: gauge('jobs_queue_depth') ?? none(), inference: gauge('inference_queue_depth') ?? none() },
      cpu: gauge('cpu') ?? none(),
      rss_bytes: gauge('rss_bytes') ?? none(),
      event_loop_lag_ms: gauge('event_loop_lag_ms') ?? none(),
      ...(gpuUtilization ? { gpu_utilization: gpuUtilization } : {}),
      ...(gpuMemory ? { gpu_memory_bytes: gpuMemory } : {}),
      verdicts,
    },
  };
}
