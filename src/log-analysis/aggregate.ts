/**
 * Folds log records into counters as they stream by. Per request it keeps only
 * a time, a duration and two flags in typed columns (for percentiles and the
 * sliding-window rules); everything else is a counter.
 */
import { detectAnomalies, type AnomalySettings } from './anomalies.js';
import { formatDuration } from './duration.js';
import type { LogRecord } from './parse.js';
import { summarizeLatency } from './percentile.js';
import type { LogReport } from './report.js';

/** A growable Float64Array. */
class Column {
  data = new Float64Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  view(): Float64Array {
    return this.data.subarray(0, this.length);
  }
}

interface LineCounts {
  requests: number;
  failures: number;
  ok: number;
  ng: number;
}

type Slow = LogReport['slowest'][number] & { ms: number };

const HOUR_MS = 3_600_000;
const FLAG_FAILED = 1;
const FLAG_SATURATED = 2;
const SATURATION_CODES = new Set(['OVERLOADED', 'QUEUE_FULL']);

/**
 * A failure's code: its error_code, else one named after its status (http_426),
 * so that failures logged without a code (older servers, answers made outside
 * the error handler) still group by what happened; "unknown" only without either.
 */
export function errorCodeOf(r: Pick<LogRecord, 'error_code' | 'status'>): string {
  return r.error_code ?? (r.status !== undefined ? `http_${r.status}` : 'unknown');
}

function bump<K>(map: Map<K, number>, key: K, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

function byCountThenKey<K extends string | number>(map: Map<K, number>): [K, number][] {
  return [...map].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** Slower first; equal durations: earlier first, then request id. */
function slowerFirst(a: Slow, b: Slow): number {
  return b.duration_ms - a.duration_ms || a.ms - b.ms || String(a.request_id).localeCompare(String(b.request_id));
}

export class LogAggregator {
  private first = Infinity;
  private last = -Infinity;
  private started = 0;
  private succeeded = 0;
  private failed = 0;
  private readonly times = new Column();
  private readonly durations = new Column();
  private readonly flags = new Column();
  private readonly lines = new Map<string, LineCounts>();
  private readonly routes = new Map<string, { requests: number; failures: number }>();
  private readonly labels = new Map<string, number>();
  private readonly codes = new Map<string, number>();
  private readonly statuses = new Map<number, number>();
  private readonly hours = new Map<number, number>();
  private readonly events = new Map<string, number>();
  private slowest: Slow[] = [];
  private readonly jobs = { enqueued: 0, replayed: 0, done: 0, dead: 0, duplicates: 0 };
  private verdicts = { ok: 0, ng: 0 };

  constructor(private readonly top: number) {}

  private line(name: string | undefined): LineCounts {
    const key = name ?? 'none';
    let counts = this.lines.get(key);
    if (!counts) {
      counts = { requests: 0, failures: 0, ok: 0, ng: 0 };
      this.lines.set(key, counts);
    }
    return counts;
  }

  private verdict(line: string | undefined, verdict: string | undefined): void {
    if (verdict !== 'ok' && verdict !== 'ng') return;
    this.line(line)[verdict] += 1;
    this.verdicts[verdict] += 1;
  }

  add(r: LogRecord): void {
    if (r.time < this.first) this.first = r.time;
    if (r.time > this.last) this.last = r.time;
    if (r.event === undefined) return;
    bump(this.events, r.event);
    switch (r.event) {
      case 'request_start':
        this.started += 1;
        return;
      case 'request_success':
      case 'request_failure':
        this.request(r, r.event === 'request_failure');
        return;
      case 'detection_result':
        this.verdict(r.line, r.verdict);
        for (const label of r.labels ?? []) bump(this.labels, label);
        return;
      case 'job_enqueued':
        // An Idempotency-Key (or upload) seen before answers with the job it already made.
        if (r.duplicate === true) this.jobs.replayed += 1;
        else this.jobs.enqueued += 1;
        return;
      case 'job_done':
        if (r.duplicate === true) {
          this.jobs.duplicates += 1;
        } else {
          this.jobs.done += 1;
          this.verdict(r.line, r.verdict);
        }
        return;
      case 'job_dead':
        this.jobs.dead += 1;
        return;
    }
  }

  private request(r: LogRecord, failed: boolean): void {
    if (failed) this.failed += 1;
    else this.succeeded += 1;
    const line = this.line(r.line);
    line.requests += 1;
    const route = r.route ?? 'unknown';
    const routeCounts = this.routes.get(route) ?? { requests: 0, failures: 0 };
    routeCounts.requests += 1;
    if (failed) {
      line.failures += 1;
      routeCounts.failures += 1;
      bump(this.codes, errorCodeOf(r));
      if (r.status !== undefined) bump(this.statuses, r.status);
    }
    this.routes.set(route, routeCounts);
    bump(this.hours, Math.floor(r.time / HOUR_MS));
    const duration = r.duration_ms ?? NaN;
    this.times.push(r.time);
    this.durations.push(duration);
    const saturated = failed && r.error_code !== undefined && SATURATION_CODES.has(r.error_code);
    this.flags.push((failed ? FLAG_FAILED : 0) | (saturated ? FLAG_SATURATED : 0));
    if (Number.isFinite(duration) && this.top > 0) this.considerSlow(r, duration);
  }

  private considerSlow(r: LogRecord, duration: number): void {
    const candidate: Slow = {
      request_id: r.request_id ?? null,
      route: r.route ?? null,
      line: r.line ?? null,
      status: r.status ?? null,
      duration_ms: duration,
      time: '',
      ms: r.time,
    };
    const list = this.slowest;
    if (list.length >= this.top && slowerFirst(candidate, list[list.length - 1]!) >= 0) return;
    let at = list.length;
    while (at > 0 && slowerFirst(candidate, list[at - 1]!) < 0) at--;
    list.splice(at, 0, candidate);
    if (list.length > this.top) list.pop();
  }

  /** The report's figures (sources, filter and input are filled in by the caller). */
  finish(settings: AnomalySettings): Omit<LogReport, 'report_version' | 'sources' | 'filter' | 'input' | 'malformed_lines'> {
    const n = this.times.length;
    const times = this.times.view();
    const durations = this.durations.view();
    const flags = this.flags.view();
    // Rotated files arrive in any order: the window rules need time order.
    const order = Uint32Array.from({ length: n }, (_, i) => i).sort((a, b) => times[a]! - times[b]! || a - b);
    const series = {
      times: Float64Array.from(order, (i) => times[i]!),
      durations: Float64Array.from(order, (i) => durations[i]!),
      failed: Uint8Array.from(order, (i) => flags[i]! & FLAG_FAILED),
      saturated: Uint8Array.from(order, (i) => (flags[i]! & FLAG_SATURATED ? 1 : 0)),
    };
    const total = this.succeeded + this.failed;
    const hasRange = Number.isFinite(this.first);
    return {
      time_range: {
        first: hasRange ? new Date(this.first).toISOString() : null,
        last: hasRange ? new Date(this.last).toISOString() : null,
        duration_ms: hasRange ? this.last - this.first : null,
      },
      requests: {
        started: this.started,
        total,
        succeeded: this.succeeded,
        failed: this.failed,
        success_rate: total === 0 ? null : Math.round((this.succeeded / total) * 1e6) / 1e6,
      },
      latency_ms: { ...summarizeLatency(durations.filter(Number.isFinite)), method: 'nearest-rank' },
      by_route: [...this.routes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([route, c]) => ({ route, ...c })),
      by_line: [...this.lines].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([line, c]) => ({ line, ...c })),
      verdicts: { ...this.verdicts },
      by_label: byCountThenKey(this.labels).map(([label, count]) => ({ label, count })),
      errors: {
        by_code: byCountThenKey(this.codes).map(([code, count]) => ({ code, count })),
        by_status: byCountThenKey(this.statuses).map(([status, count]) => ({ status, count })),
      },
      busiest_hours: byCountThenKey(this.hours)
        .slice(0, 5)
        .map(([hour, requests]) => ({ hour: new Date(hour * HOUR_MS).toISOString(), requests })),
      slowest: this.slowest.map(({ ms, ...s }) => ({ ...s, time: new Date(ms).toISOString() })),
      jobs: { ...this.jobs },
      anomalies: {
        settings: {
          window: formatDuration(settings.window_ms),
          window_ms: settings.window_ms,
          error_threshold: settings.error_threshold,
          slow_ms: settings.slow_ms,
          slow_threshold: settings.slow_threshold,
          p95_ms: settings.p95_ms,
          p95_min_samples: settings.p95_min_samples,
          saturation_threshold: settings.saturation_threshold,
        },
        findings: detectAnomalies(series, settings),
      },
      event_counts: Object.fromEntries([...this.events].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    };
  }
}
