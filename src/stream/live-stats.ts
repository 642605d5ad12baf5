import { performance } from 'node:perf_hooks';
import type { EventBus, EventHandler, SightlineEvent } from '../events/event-bus.js';
import type { ResultSource } from '../store/index.js';

export interface LiveSnapshot {
  /** Window the figures cover, in milliseconds. */
  window_ms: number;
  /** Results in the window. */
  count: number;
  /** Results per second over the window. */
  throughput_fps: number;
  /** Latency percentiles (nearest rank) of the window's results, null when there were none. */
  latency_ms: { p50: number | null; p99: number | null };
  /** Results in the window by source. */
  by_source: Record<ResultSource, number>;
}

export interface LiveStatsOptions {
  /** Oldest sample kept, in ms (the widest window a snapshot can cover). */
  horizonMs?: number;
  /** Samples kept at most; beyond it the oldest are overwritten (memory stays fixed). */
  capacity?: number;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

const SOURCE_INDEX: Record<ResultSource, number> = { sync: 0, job: 1, stream: 2 };
const SOURCES: readonly ResultSource[] = ['sync', 'job', 'stream'];

const round = (v: number) => Math.round(v * 1000) / 1000;

/**
 * A sliding window of this server's results, of every source (sync, jobs run in
 * this process, stream frames): throughput and latency percentiles for the live
 * status the stream and the dashboard show. A fixed ring buffer, so memory does
 * not grow with the load; snapshots are cached briefly because every stream
 * connection asks for the same figures.
 */
export class LiveStats {
  private readonly times: Float64Array;
  private readonly latencies: Float64Array;
  private readonly sources: Uint8Array;
  /** Next slot to write. */
  private head = 0;
  private size = 0;
  private readonly horizonMs: number;
  private readonly now: () => number;
  private cache: { at: number; windowMs: number; snapshot: LiveSnapshot } | undefined;

  constructor(options: LiveStatsOptions = {}) {
    const capacity = Math.max(16, options.capacity ?? 65_536);
    this.times = new Float64Array(capacity);
    this.latencies = new Float64Array(capacity);
    this.sources = new Uint8Array(capacity);
    this.horizonMs = options.horizonMs ?? 300_000;
    this.now = options.now ?? (() => performance.now());
  }

  /** Records one result with its end-to-end latency in milliseconds. */
  record(source: ResultSource, latencyMs: number): void {
    const capacity = this.times.length;
    this.times[this.head] = this.now();
    this.latencies[this.head] = Number.isFinite(latencyMs) && latencyMs >= 0 ? latencyMs : 0;
    this.sources[this.head] = SOURCE_INDEX[source] ?? 0;
    this.head = (this.head + 1) % capacity;
    if (this.size < capacity) this.size++;
    this.cache = undefined;
  }

  /** Figures over the last `windowMs` (capped at the horizon). */
  snapshot(windowMs: number): LiveSnapshot {
    const window = Math.max(1, Math.min(windowMs, this.horizonMs));
    const now = this.now();
    // Every connection's status timer asks within the same few milliseconds.
    if (this.cache && this.cache.windowMs === window && now - this.cache.at < 100) return this.cache.snapshot;
    const from = now - window;
    const capacity = this.times.length;
    const values: number[] = [];
    const bySource: Record<ResultSource, number> = { sync: 0, job: 0, stream: 0 };
    for (let i = 1; i <= this.size; i++) {
      const slot = (this.head - i + capacity) % capacity;
      if (this.times[slot]! < from) break; // written in time order: everything older follows
      values.push(this.latencies[slot]!);
      bySource[SOURCES[this.sources[slot]!]!]++;
    }
    values.sort((a, b) => a - b);
    const snapshot: LiveSnapshot = {
      window_ms: window,
      count: values.length,
      throughput_fps: round((values.length * 1000) / window),
      latency_ms: { p50: percentile(values, 0.5), p99: percentile(values, 0.99) },
      by_source: bySource,
    };
    this.cache = { at: now, windowMs: window, snapshot };
    return snapshot;
  }
}

/** Nearest-rank percentile of sorted values; null for none. */
export function percentile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return round(sorted[rank - 1]!);
}

/**
 * The bus every result of this process is published on, recording each result
 * in `stats` as it goes out: sync, job and stream results all pass through
 * publish(), so no producer has to know about live statistics. Events received
 * from other replicas (a shared bus) are not recorded: they are not this server's.
 */
export class RecordingEventBus implements EventBus {
  constructor(
    private readonly inner: EventBus,
    private readonly stats: LiveStats,
  ) {}

  publish(event: SightlineEvent): void {
    if (event.type === 'result') this.stats.record(event.source, event.result.timings_ms.total);
    this.inner.publish(event);
  }

  subscribe(line: string, handler: EventHandler): Promise<() => Promise<void>> {
    return this.inner.subscribe(line, handler);
  }

  get connected(): boolean {
    return this.inner.connected;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
