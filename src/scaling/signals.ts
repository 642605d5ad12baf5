import { addEncodedHistogram, emptyHistogram, histogramQuantile, type Histogram } from '../history/histogram.js';
import { lineResults, type LineRow, type ProcessRow } from '../history/history-store.js';
import type { Role } from './calculator.js';

/**
 * Whether a history row is an API process's. Only `sightline serve` samples the
 * job queue's depth (src/runtime.ts, every 2 s), so a row with that gauge is an
 * API process's (the one process of the embedded shape too). The rows have no
 * role column; this is the one place that guesses it.
 */
export function isApiRow(row: Pick<ProcessRow, 'gauges'>): boolean {
  try {
    const gauges = JSON.parse(row.gauges) as Record<string, unknown> | null;
    return gauges !== null && typeof gauges === 'object' && 'jobs_queue_depth' in gauges;
  } catch {
    return false;
  }
}

/**
 * The role of each process in a set of rows: API when any of its rows is an
 * API row (its first buckets, before the first depth sample, are not), else
 * worker. `known` carries what earlier reads learned.
 */
export function processRoles(processes: readonly ProcessRow[], known: Map<string, Role> = new Map()): Map<string, Role> {
  for (const p of processes) {
    if (isApiRow(p)) known.set(p.process_id, 'api');
    else if (!known.has(p.process_id)) known.set(p.process_id, 'worker');
  }
  return known;
}

/** The figures of one role read from history rows. */
export interface RoleFigures {
  replicas: number;
  rate: number | null;
  throughputPerReplica: number | null;
  p95LatencyMs: number | null;
}

export interface SignalWindow {
  /** The fine resolution of the rows. */
  resolutionMs: number;
  /** The current figures cover buckets starting in [currentFrom, end). */
  currentFrom: number;
  /** The measured throughput per replica covers buckets starting in [capacityFrom, end). */
  capacityFrom: number;
  end: number;
}

type Rows = { processes: readonly ProcessRow[]; lines: readonly LineRow[] };

/**
 * Reads the figures of each role from the fine history rows of every process,
 * every evaluation. The throughput per replica looks back an hour; so as not to
 * read an hour of rows each time, the most results one process of a role
 * produced per bucket are kept here, and only the buckets since the last read
 * (and the current window, which late writes may still change) are read again.
 */
export class SignalReader {
  /** Most results of one process of the role, per fine bucket start. */
  readonly #peaks = new Map<number, Record<Role, number>>();
  /** Roles learned so far, by process id. */
  readonly #roles = new Map<string, Role>();
  #readUpTo: number | undefined;

  /** Where the rows for `window` must start: the capacity window the first time, later the older of the current window and the last read's end. */
  readFrom(window: SignalWindow): number {
    if (this.#readUpTo === undefined) return window.capacityFrom;
    return Math.max(window.capacityFrom, Math.min(window.currentFrom, this.#readUpTo));
  }

  /**
   * The figures of each role from the rows of [readFrom(window), window.end):
   * replicas, rate and p95 of the current window, and the throughput per
   * replica: the most results one process of the role produced in one fine
   * bucket of the capacity window, per second.
   */
  figures(rows: Rows, window: SignalWindow): Record<Role, RoleFigures> {
    const roles = processRoles(rows.processes, this.#roles);
    const roleOf = (processId: string): Role => roles.get(processId) ?? 'worker';
    // The buckets read are replaced as a whole: their rows are the newest content.
    const counts = new Map<number, Map<string, number>>();
    for (const p of rows.processes) if (!counts.has(p.bucket_ms)) counts.set(p.bucket_ms, new Map());
    const acc = {
      api: { processes: new Set<string>(), results: 0, hist: emptyHistogram(), max: 0 },
      worker: { processes: new Set<string>(), results: 0, hist: emptyHistogram(), max: 0 },
    };
    const current = (bucket: number) => bucket >= window.currentFrom && bucket < window.end;
    for (const p of rows.processes) if (current(p.bucket_ms)) acc[roleOf(p.process_id)].processes.add(p.process_id);
    for (const l of rows.lines) {
      if (l.bucket_ms >= window.end) continue;
      let byProcess = counts.get(l.bucket_ms);
      if (!byProcess) counts.set(l.bucket_ms, (byProcess = new Map()));
      byProcess.set(l.process_id, (byProcess.get(l.process_id) ?? 0) + lineResults(l));
      if (!current(l.bucket_ms)) continue;
      // A line row without a process row of its process: a worker's, as a worker writes no queue gauge.
      const a = acc[roleOf(l.process_id)];
      a.results += lineResults(l);
      addEncodedHistogram(a.hist, l.latency_hist);
      a.max = Math.max(a.max, l.latency_max);
    }
    for (const [bucket, byProcess] of counts) {
      const peak = { api: 0, worker: 0 };
      for (const [processId, n] of byProcess) peak[roleOf(processId)] = Math.max(peak[roleOf(processId)], n);
      this.#peaks.set(bucket, peak);
    }
    for (const bucket of this.#peaks.keys()) if (bucket < window.capacityFrom) this.#peaks.delete(bucket);
    this.#readUpTo = window.end;

    const seconds = (window.end - window.currentFrom) / 1000;
    const figures = (role: Role): RoleFigures => {
      const a = acc[role];
      let peak = 0;
      for (const [bucket, p] of this.#peaks) if (bucket < window.end) peak = Math.max(peak, p[role]);
      return {
        replicas: a.processes.size,
        // No process of the role: nothing measured, rather than a rate of 0.
        rate: a.processes.size > 0 || a.results > 0 ? a.results / seconds : null,
        throughputPerReplica: peak > 0 ? peak / (window.resolutionMs / 1000) : null,
        p95LatencyMs: quantile(a.hist, a.max),
      };
    };
    return { api: figures('api'), worker: figures('worker') };
  }
}

function quantile(hist: Histogram, max: number): number | null {
  const q = histogramQuantile(hist, 0.95, max);
  return q === undefined ? null : Math.round(q * 1000) / 1000;
}
