import type { Logger } from 'pino';
import type { InspectedFrame, InspectionObserver } from '../inspection/observers.js';
import type { Metrics } from '../metrics/metrics.js';
import { bucketIndex, emptyHistogram, encodeHistogram, type Histogram } from './histogram.js';
import type { BucketRows, HistoryStore, LineRow } from './history-store.js';
import type { HistoryMetrics } from './metrics.js';

/** The gauges kept per bucket as sum, count and max of their samples. */
export const GAUGES = ['cpu', 'rss_bytes', 'event_loop_lag_ms', 'jobs_queue_depth', 'inference_queue_depth', 'gpu_utilization', 'gpu_memory_bytes'] as const;
export type GaugeName = (typeof GAUGES)[number];

/** Where a bucket's results go once the line cap is reached: never a valid line name (LINE_PATTERN starts alphanumeric). */
export const OTHER_LINES = '_other';

/** Routes whose answers are not errors of the service (probes, the metrics scrape). */
const PROBE_ROUTES = new Set(['/livez', '/readyz', '/metrics']);

/**
 * Unwritten buckets kept while the store is out of reach: at the defaults about
 * an hour (360 fine and 60 coarse buckets); beyond it the oldest are dropped.
 */
export const MAX_PENDING_BUCKETS = 420;

export interface RecorderOptions {
  store: HistoryStore;
  metrics: Metrics;
  historyMetrics: HistoryMetrics;
  logger: Logger;
  /** This process in the shared tables. */
  processId: string;
  resolutionMs: number;
  retentionMs: number;
  rollupResolutionMs: number;
  rollupRetentionMs: number;
  /** Lines kept apart per bucket; results of further lines count under OTHER_LINES. */
  maxLines: number;
  now: () => number;
}

interface LineAcc {
  ok: number;
  ng: number;
  check: number;
  latencySum: number;
  latencyMax: number;
  hist: Histogram;
}

type GaugeAcc = [sum: number, count: number, max: number];

/** One bucket of one resolution, accumulating in memory until it is written. */
class Bucket {
  readonly lines = new Map<string, LineAcc>();
  readonly gauges = new Map<GaugeName, GaugeAcc>();
  errors = 0;
  clientErrors = 0;
  rejected = 0;

  constructor(
    readonly resolutionMs: number,
    readonly start: number,
  ) {}

  get end(): number {
    return this.start + this.resolutionMs;
  }

  addResult(line: string, verdict: string, latencyMs: number, maxLines: number): void {
    const key = this.lines.has(line) || this.lines.size < maxLines ? line : OTHER_LINES;
    let acc = this.lines.get(key);
    if (!acc) this.lines.set(key, (acc = { ok: 0, ng: 0, check: 0, latencySum: 0, latencyMax: 0, hist: emptyHistogram() }));
    // check (the image-quality gate) is its own verdict, never ok.
    if (verdict === 'ng') acc.ng++;
    else if (verdict === 'check') acc.check++;
    else acc.ok++;
    const ms = Number.isFinite(latencyMs) && latencyMs >= 0 ? latencyMs : 0;
    acc.latencySum += ms;
    acc.latencyMax = Math.max(acc.latencyMax, ms);
    const i = bucketIndex(ms);
    acc.hist[i] = (acc.hist[i] ?? 0) + 1;
  }

  addGauge(name: GaugeName, value: number): void {
    const acc = this.gauges.get(name);
    if (acc) {
      acc[0] += value;
      acc[1]++;
      acc[2] = Math.max(acc[2], value);
    } else this.gauges.set(name, [value, 1, value]);
  }

  rows(processId: string): BucketRows {
    const base = { resolution_ms: this.resolutionMs, bucket_ms: this.start, process_id: processId };
    const lines: LineRow[] = [...this.lines].map(([line, acc]) => ({
      ...base,
      line,
      ok: acc.ok,
      ng: acc.ng,
      check_count: acc.check,
      latency_sum: acc.latencySum,
      latency_max: acc.latencyMax,
      latency_hist: encodeHistogram(acc.hist),
    }));
    return {
      process: {
        ...base,
        errors: this.errors,
        client_errors: this.clientErrors,
        rejected: this.rejected,
        gauges: JSON.stringify(Object.fromEntries(this.gauges)),
      },
      lines,
    };
  }
}

const startOf = (t: number, resolutionMs: number) => Math.floor(t / resolutionMs) * resolutionMs;

/**
 * Follows this process's results (an InspectionObserver) and its metrics, and
 * writes them as history rows: a fine bucket every resolution, and the coarse
 * bucket it belongs to rewritten with its running totals at the same time (so a
 * coarse row is complete once its last fine bucket is written, and a crash loses
 * at most one fine bucket of either). Nothing here runs on the request path but
 * onInspected, which only adds to counters; writes and their failures stay here.
 */
export class HistoryRecorder implements InspectionObserver {
  readonly processId: string;
  readonly #o: RecorderOptions;
  #fine: Bucket;
  #coarse: Bucket;
  /** Unwritten buckets by resolution and start; a newer version of a bucket replaces the older. */
  readonly #pending = new Map<string, BucketRows>();
  #flushing: Promise<void> | undefined;
  #failing = false;
  #lastPrune = Number.NEGATIVE_INFINITY;
  #counters: { errors: number; clientErrors: number; rejected: number } | undefined;
  #closed = false;
  /** A bucket closed since the last flush (by a tick or by a result that came after its end). */
  #flushDue = false;

  constructor(options: RecorderOptions) {
    this.#o = options;
    this.processId = options.processId;
    const t = options.now();
    this.#fine = new Bucket(options.resolutionMs, startOf(t, options.resolutionMs));
    this.#coarse = new Bucket(options.rollupResolutionMs, startOf(t, options.rollupResolutionMs));
  }

  onInspected(frame: InspectedFrame): void {
    if (this.#closed) return;
    try {
      this.#advance(frame.at);
      const { line, verdict, timings_ms } = frame.result;
      for (const bucket of [this.#fine, this.#coarse]) bucket.addResult(line, verdict, timings_ms.total, this.#o.maxLines);
    } catch (err) {
      // An observer never fails an inspection.
      this.#o.logger.warn({ event: 'history_record_failed', err }, `history: ${(err as Error).message}`);
    }
  }

  /**
   * Samples the gauges and counters into the current buckets, closes the fine
   * bucket when its time is up (then writes it, prunes when due), and returns
   * once that write is done or failed. Called every second by the timer, or by
   * a test with its own clock.
   */
  async tick(): Promise<void> {
    if (this.#closed) return;
    await this.sample();
    this.#advance(this.#o.now());
    // Once per closed bucket, also during an outage: a retry per resolution, not per second.
    if (this.#flushDue) {
      this.#flushDue = false;
      await this.flush();
    }
    await this.#pruneIfDue();
  }

  /** Reads the gauges and the error counters' increase since the last sample from the metrics registry. */
  async sample(): Promise<void> {
    const { metrics } = this.#o;
    const gauges: [GaugeName, number | undefined][] = [];
    const single = async (gauge: { get(): Promise<{ values: { value: number }[] }> }, scale = 1) => {
      const { values } = await gauge.get();
      return values.length > 0 ? (values[0]?.value ?? 0) * scale : undefined;
    };
    gauges.push(['cpu', await single(metrics.cpuUtilization)]);
    gauges.push(['rss_bytes', await single(metrics.memoryRss)]);
    gauges.push(['event_loop_lag_ms', await single(metrics.eventLoopLag, 1000)]);
    const depth = (await metrics.queueDepth.get()).values;
    const jobs = depth.filter((v) => v.labels.queue === 'jobs');
    const inference = depth.filter((v) => String(v.labels.queue ?? '').startsWith('infer:'));
    gauges.push(['jobs_queue_depth', jobs.length > 0 ? jobs.reduce((s, v) => s + v.value, 0) : undefined]);
    gauges.push(['inference_queue_depth', inference.length > 0 ? inference.reduce((s, v) => s + v.value, 0) : undefined]);
    // Several GPUs: the mean utilization and the memory in use on all of them.
    const gpuUtil = (await metrics.gpuUtilization.get()).values;
    const gpuMem = (await metrics.gpuMemoryUsed.get()).values;
    gauges.push(['gpu_utilization', gpuUtil.length > 0 ? gpuUtil.reduce((s, v) => s + v.value, 0) / gpuUtil.length : undefined]);
    gauges.push(['gpu_memory_bytes', gpuMem.length > 0 ? gpuMem.reduce((s, v) => s + v.value, 0) : undefined]);

    let errors = 0;
    let clientErrors = 0;
    for (const { labels, value } of (await metrics.requests.get()).values) {
      if (PROBE_ROUTES.has(String(labels.route))) continue;
      const status = Number(labels.status);
      if (status >= 500) errors += value;
      else if (status >= 400) clientErrors += value;
    }
    for (const { labels, value } of (await metrics.streamFrames.get()).values) if (labels.outcome === 'failed') errors += value;
    let rejected = 0;
    for (const { value } of (await metrics.rejected.get()).values) rejected += value;

    // Counters only grow; a smaller value means a new registry, counted from zero.
    const last = this.#counters ?? { errors: 0, clientErrors: 0, rejected: 0 };
    const delta = (now: number, before: number) => (now >= before ? now - before : now);
    const increase = { errors: delta(errors, last.errors), clientErrors: delta(clientErrors, last.clientErrors), rejected: delta(rejected, last.rejected) };
    this.#counters = { errors, clientErrors, rejected };

    for (const bucket of [this.#fine, this.#coarse]) {
      for (const [name, value] of gauges) if (value !== undefined && Number.isFinite(value)) bucket.addGauge(name, value);
      bucket.errors += increase.errors;
      bucket.clientErrors += increase.clientErrors;
      bucket.rejected += increase.rejected;
    }
  }

  /** Moves to the buckets of time t, queueing the closed ones for the next tick to write. */
  #advance(t: number): void {
    const { resolutionMs, rollupResolutionMs, processId } = this.#o;
    if (t >= this.#fine.end) {
      this.#queue(this.#fine.rows(processId));
      // The coarse bucket so far, including the fine bucket just closed.
      this.#queue(this.#coarse.rows(processId));
      this.#fine = new Bucket(resolutionMs, startOf(t, resolutionMs));
      this.#flushDue = true;
    }
    if (t >= this.#coarse.end) {
      this.#queue(this.#coarse.rows(processId));
      this.#coarse = new Bucket(rollupResolutionMs, startOf(t, rollupResolutionMs));
      this.#flushDue = true;
    }
  }

  #queue(rows: BucketRows): void {
    const key = `${rows.process.resolution_ms}:${rows.process.bucket_ms}`;
    // Re-inserted so that the map's order stays oldest first.
    this.#pending.delete(key);
    this.#pending.set(key, rows);
    while (this.#pending.size > MAX_PENDING_BUCKETS) {
      const oldest = this.#pending.keys().next().value as string;
      this.#pending.delete(oldest);
      this.#o.historyMetrics.droppedBuckets.inc();
    }
    this.#o.historyMetrics.pendingBuckets.set(this.#pending.size);
  }

  /** Writes every queued bucket; on failure they stay queued for the next flush. One flush at a time. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flushOnce().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flushOnce(): Promise<void> {
    if (this.#pending.size === 0) return;
    const batch = [...this.#pending];
    try {
      await this.#o.store.write(batch.map(([, rows]) => rows));
      // Only what was written: a bucket queued again meanwhile (the coarse one) stays for the next flush.
      for (const [key, rows] of batch) if (this.#pending.get(key) === rows) this.#pending.delete(key);
      if (this.#failing) this.#o.logger.info({ event: 'history_flush_recovered' }, 'history: writing again');
      this.#failing = false;
    } catch (err) {
      this.#o.historyMetrics.flushFailures.inc();
      // One warning per outage, not one per bucket: the metric counts every failure.
      if (!this.#failing)
        this.#o.logger.warn({ event: 'history_flush_failed', err, pending: this.#pending.size }, `history: cannot write: ${(err as Error).message}`);
      this.#failing = true;
    } finally {
      this.#o.historyMetrics.pendingBuckets.set(this.#pending.size);
    }
  }

  /** Deletes rows past their retention, at most once per coarse resolution; any process may, all rows alike. */
  async #pruneIfDue(): Promise<void> {
    const now = this.#o.now();
    if (now - this.#lastPrune < this.#o.rollupResolutionMs) return;
    this.#lastPrune = now;
    await this.prune();
  }

  /** Deletes the rows of both resolutions older than their retention (of every process). */
  async prune(): Promise<void> {
    const { store, now, resolutionMs, retentionMs, rollupResolutionMs, rollupRetentionMs, logger } = this.#o;
    const t = now();
    try {
      await store.prune(resolutionMs, t - retentionMs);
      await store.prune(rollupResolutionMs, t - rollupRetentionMs);
    } catch (err) {
      // Retried at the next prune; a failed write is what the failure metric counts.
      logger.debug({ event: 'history_prune_failed', err }, `history: prune failed: ${(err as Error).message}`);
    }
  }

  /** Closes the current buckets (partial as they are), writes what is queued once, and stops recording. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.sample().catch(() => undefined);
    this.#closed = true;
    this.#queue(this.#fine.rows(this.#o.processId));
    this.#queue(this.#coarse.rows(this.#o.processId));
    await this.#flushing;
    await this.flush();
  }
}
