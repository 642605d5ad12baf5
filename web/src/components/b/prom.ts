// Helpers for the System and Jobs pages: a small Prometheus text-format reader and
// histogram arithmetic (GET /metrics, docs/metrics.md). Only what the pages need.

import { ApiError, apiUrl, authHeaders } from '../../api';
import { auth } from '../../auth';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses the Prometheus text exposition (comments and types are skipped). */
export function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    if (!raw || raw.startsWith('#')) continue;
    const m = LINE.exec(raw);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[3]) {
      for (const l of m[3].matchAll(LABEL)) labels[l[1] ?? ''] = (l[2] ?? '').replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    const raw4 = m[4] ?? '';
    const v = raw4 === '+Inf' ? Number.POSITIVE_INFINITY : raw4 === '-Inf' ? Number.NEGATIVE_INFINITY : Number(raw4);
    out.push({ name: m[1] ?? '', labels, value: v });
  }
  return out;
}

/** Samples of one metric, optionally matching some labels. */
export function select(samples: Sample[], name: string, match: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** Sum of a metric's samples grouped by one label: `{reason: value}`. */
export function sumBy(samples: Sample[], name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of select(samples, name)) {
    const k = s.labels[label] ?? '';
    out[k] = (out[k] ?? 0) + s.value;
  }
  return out;
}

/** One histogram, its cumulative buckets summed over every other label. */
export interface Hist {
  bounds: number[]; // upper bounds, ascending, +Inf last
  counts: number[]; // cumulative counts per bound
  sum: number;
  count: number;
}

/** Histograms of `name` grouped by `label` (e.g. stage), summed over the other labels. */
export function histogramsBy(samples: Sample[], name: string, label: string): Record<string, Hist> {
  const acc: Record<string, { buckets: Map<number, number>; sum: number; count: number }> = {};
  const get = (k: string) => {
    let h = acc[k];
    if (!h) acc[k] = h = { buckets: new Map(), sum: 0, count: 0 };
    return h;
  };
  for (const s of samples) {
    if (s.name === `${name}_bucket`) {
      const le = s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels.le);
      const h = get(s.labels[label] ?? '');
      h.buckets.set(le, (h.buckets.get(le) ?? 0) + s.value);
    } else if (s.name === `${name}_sum`) get(s.labels[label] ?? '').sum += s.value;
    else if (s.name === `${name}_count`) get(s.labels[label] ?? '').count += s.value;
  }
  const out: Record<string, Hist> = {};
  for (const [k, h] of Object.entries(acc)) {
    const bounds = [...h.buckets.keys()].sort((a, b) => a - b);
    out[k] = { bounds, counts: bounds.map((b) => h.buckets.get(b) ?? 0), sum: h.sum, count: h.count };
  }
  return out;
}

/** `now − before` (the observations between two scrapes); `now` when before is missing or the process restarted. */
export function histDelta(now: Hist, before: Hist | undefined): Hist {
  if (!before || before.count > now.count || before.bounds.length !== now.bounds.length) return now;
  return {
    bounds: now.bounds,
    counts: now.counts.map((c, i) => c - (before.counts[i] ?? 0)),
    sum: now.sum - before.sum,
    count: now.count - before.count,
  };
}

/** Like PromQL's histogram_quantile: linear interpolation inside the bucket holding the rank. null without observations. */
export function quantile(h: Hist, q: number, interpolate = true): number | null {
  const total = h.counts[h.counts.length - 1] ?? 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (let i = 0; i < h.bounds.length; i++) {
    const bound = h.bounds[i] ?? Number.POSITIVE_INFINITY;
    const c = h.counts[i] ?? 0;
    if (c >= rank) {
      if (!Number.isFinite(bound)) return prevBound; // in the +Inf bucket: the largest finite bound
      if (!interpolate) return bound; // the bucket's upper bound (discrete values: batch sizes)
      const inBucket = c - prevCount;
      return inBucket > 0 ? prevBound + ((bound - prevBound) * (rank - prevCount)) / inBucket : bound;
    }
    prevBound = bound;
    prevCount = c;
  }
  return prevBound;
}

export function mean(h: Hist): number | null {
  return h.count > 0 ? h.sum / h.count : null;
}

/** GET /metrics (role viewer) parsed. Throws ApiError like api.get. */
export async function fetchMetrics(signal?: AbortSignal): Promise<Sample[]> {
  let res: Response;
  try {
    res = await fetch(apiUrl('/metrics'), { headers: { accept: 'text/plain', ...authHeaders() }, signal, cache: 'no-store' });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', (err as Error).message || 'The server cannot be reached');
  }
  if (res.status === 401) auth.requireLogin();
  if (!res.ok) {
    let code = `HTTP_${res.status}`;
    let message = res.statusText || code;
    try {
      const body = (await res.json()) as { error?: { code?: string; message?: string } };
      code = body.error?.code ?? code;
      message = body.error?.message ?? message;
    } catch {
      // not JSON
    }
    throw new ApiError(res.status, code, message);
  }
  return parseProm(await res.text());
}
