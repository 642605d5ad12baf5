/**
 * Anomaly rules over a sliding time window.
 *
 * Windows are half-open, [start, start + window), and anchored at events: a
 * count rule looks at the window starting at each matching request (the
 * busiest window of any length-`window` interval always starts at one), the
 * p95 rule at the window starting at each completed request. A window whose
 * value crosses the threshold "breaches"; breaching windows that overlap or
 * touch are merged into one finding, so one burst gives one finding. A
 * finding names its peak window (the first window with the highest value),
 * the observed peak, the threshold, and the span of all the windows merged.
 */
import { formatDuration } from './duration.js';
import { OrderStatistics } from './percentile.js';

export interface AnomalySettings {
  /** Window length in ms. */
  window_ms: number;
  /** errors: failed requests (request_failure, any status) in a window ≥ this; 0 turns the rule off. */
  error_threshold: number;
  /** A request slower than this (duration_ms > slow_ms) is slow. */
  slow_ms: number;
  /** slow_requests: slow requests in a window ≥ this; 0 turns the rule off. */
  slow_threshold: number;
  /** p95_latency: nearest-rank p95 of the window's durations > this (ms); 0 turns the rule off. */
  p95_ms: number;
  /** p95_latency: windows with fewer completed requests are not judged. */
  p95_min_samples: number;
  /** saturation: requests refused with error_code OVERLOADED or QUEUE_FULL in a window ≥ this; 0 turns the rule off. */
  saturation_threshold: number;
}

export const DEFAULT_ANOMALY_SETTINGS: AnomalySettings = {
  window_ms: 5 * 60_000,
  error_threshold: 10,
  slow_ms: 1000,
  slow_threshold: 10,
  p95_ms: 500,
  p95_min_samples: 20,
  saturation_threshold: 5,
};

export type RuleName = 'errors' | 'slow_requests' | 'p95_latency' | 'saturation';

export interface Finding {
  rule: RuleName;
  /** The peak window, ISO 8601 UTC; the end is exclusive. */
  window_start: string;
  window_end: string;
  observed: number;
  threshold: number;
  message: string;
  /** From the first breaching window's start to the last one's end. */
  span_start: string;
  span_end: string;
  /** How many breaching windows (anchors) were merged into this finding. */
  windows: number;
}

/** Completed requests in time order. */
export interface RequestSeries {
  times: ArrayLike<number>;
  /** NaN where the line had no duration_ms. */
  durations: ArrayLike<number>;
  failed: ArrayLike<number>;
  saturated: ArrayLike<number>;
}

interface Breach {
  start: number;
  value: number;
}

interface Episode {
  start: number;
  end: number;
  peakStart: number;
  peak: number;
  windows: number;
}

/** Windows anchored at each of the sorted times whose event count reaches the threshold. */
export function countBreaches(times: ArrayLike<number>, windowMs: number, threshold: number): Breach[] {
  const out: Breach[] = [];
  let j = 0;
  for (let i = 0; i < times.length; i++) {
    const end = times[i]! + windowMs;
    if (j < i) j = i;
    while (j < times.length && times[j]! < end) j++;
    const count = j - i;
    if (count >= threshold) out.push({ start: times[i]!, value: count });
  }
  return out;
}

/** Windows anchored at each sorted time with ≥ minSamples values whose nearest-rank p95 exceeds the threshold. */
export function p95Breaches(times: ArrayLike<number>, values: ArrayLike<number>, windowMs: number, threshold: number, minSamples: number): Breach[] {
  const out: Breach[] = [];
  const held = new OrderStatistics(values);
  let j = 0;
  for (let i = 0; i < times.length; i++) {
    const end = times[i]! + windowMs;
    while (j < times.length && times[j]! < end) held.add(values[j++]!);
    if (held.size >= Math.max(1, minSamples)) {
      const p95 = held.percentile(95);
      if (p95 > threshold) out.push({ start: times[i]!, value: p95 });
    }
    held.remove(values[i]!);
  }
  return out;
}

/** Merges breaches (in start order) whose windows overlap or touch. */
export function mergeBreaches(breaches: Breach[], windowMs: number): Episode[] {
  const episodes: Episode[] = [];
  let current: Episode | undefined;
  for (const b of breaches) {
    if (current && b.start <= current.end) {
      current.end = Math.max(current.end, b.start + windowMs);
      current.windows += 1;
      if (b.value > current.peak) {
        current.peak = b.value;
        current.peakStart = b.start;
      }
    } else {
      current = { start: b.start, end: b.start + windowMs, peakStart: b.start, peak: b.value, windows: 1 };
      episodes.push(current);
    }
  }
  return episodes;
}

const iso = (ms: number) => new Date(ms).toISOString();

function findings(rule: RuleName, episodes: Episode[], threshold: number, windowMs: number, describe: (e: Episode, window: string) => string): Finding[] {
  const window = formatDuration(windowMs);
  return episodes.map((e) => ({
    rule,
    window_start: iso(e.peakStart),
    window_end: iso(e.peakStart + windowMs),
    observed: e.peak,
    threshold,
    message: describe(e, window),
    span_start: iso(e.start),
    span_end: iso(e.end),
    windows: e.windows,
  }));
}

function select(series: RequestSeries, keep: (i: number) => boolean): { times: number[]; values: number[] } {
  const times: number[] = [];
  const values: number[] = [];
  for (let i = 0; i < series.times.length; i++) {
    if (keep(i)) {
      times.push(series.times[i]!);
      values.push(series.durations[i]!);
    }
  }
  return { times, values };
}

const RULE_ORDER: RuleName[] = ['errors', 'slow_requests', 'p95_latency', 'saturation'];

/** Every finding of every rule, in order of span start, then rule. */
export function detectAnomalies(series: RequestSeries, s: AnomalySettings): Finding[] {
  const W = s.window_ms;
  const out: Finding[] = [];
  if (s.error_threshold > 0) {
    const { times } = select(series, (i) => series.failed[i] === 1);
    out.push(
      ...findings(
        'errors',
        mergeBreaches(countBreaches(times, W, s.error_threshold), W),
        s.error_threshold,
        W,
        (e, w) => `${e.peak} failed requests within ${w} (threshold ${s.error_threshold})`,
      ),
    );
  }
  if (s.slow_threshold > 0) {
    const { times } = select(series, (i) => series.durations[i]! > s.slow_ms);
    out.push(
      ...findings(
        'slow_requests',
        mergeBreaches(countBreaches(times, W, s.slow_threshold), W),
        s.slow_threshold,
        W,
        (e, w) => `${e.peak} requests slower than ${s.slow_ms} ms within ${w} (threshold ${s.slow_threshold})`,
      ),
    );
  }
  if (s.p95_ms > 0) {
    const { times, values } = select(series, (i) => Number.isFinite(series.durations[i]!));
    out.push(
      ...findings(
        'p95_latency',
        mergeBreaches(p95Breaches(times, values, W, s.p95_ms, s.p95_min_samples), W),
        s.p95_ms,
        W,
        (e, w) => `p95 latency ${e.peak} ms over ${w} is above ${s.p95_ms} ms`,
      ),
    );
  }
  if (s.saturation_threshold > 0) {
    const { times } = select(series, (i) => series.saturated[i] === 1);
    out.push(
      ...findings(
        'saturation',
        mergeBreaches(countBreaches(times, W, s.saturation_threshold), W),
        s.saturation_threshold,
        W,
        (e, w) => `${e.peak} requests refused as OVERLOADED/QUEUE_FULL within ${w} (threshold ${s.saturation_threshold})`,
      ),
    );
  }
  return out.sort((a, b) => (a.span_start < b.span_start ? -1 : a.span_start > b.span_start ? 1 : RULE_ORDER.indexOf(a.rule) - RULE_ORDER.indexOf(b.rule)));
}
