import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { storeUrl } from '../config/locations.js';
import type { Config } from '../config/schema.js';
import type { Metrics } from '../metrics/metrics.js';
import { HistoryStore } from './history-store.js';
import { historyMetrics } from './metrics.js';
import { buildSeries, planHistory, type HistoryAnswer, type HistoryQuery, type HistorySettings } from './query.js';
import { HistoryRecorder } from './recorder.js';

/** How often the recorder samples gauges and counters (and closes a bucket whose time is up). */
export const SAMPLE_INTERVAL_MS = 1000;

/** A process's history: the recorder of its own rows and the reader of everyone's. */
export interface History {
  readonly processId: string;
  readonly recorder: HistoryRecorder;
  readonly store: HistoryStore;
  readonly settings: HistorySettings;
  /** The answer of GET /v1/stats/history; throws registry errors (400) for a query it refuses, STORE_UNAVAILABLE (503). */
  query(query: HistoryQuery): Promise<HistoryAnswer>;
  /** Stops the timer, writes the current buckets and closes the history's database connection. */
  close(): Promise<void>;
}

export interface HistoryOptions {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  /** The clock (epoch ms); tests drive their own. */
  now?: () => number;
  /** This process in the shared tables; default host, pid, start time and a random part. */
  processId?: string;
  /** Sample and flush on a timer (default true); tests call recorder.tick() themselves. */
  timer?: boolean;
}

/** Host, pid and start time name a process for people; the random part keeps two runtimes of one process apart. */
export function defaultProcessId(now: number): string {
  return `${hostname().slice(0, 64)}:${process.pid}:${now.toString(36)}:${randomBytes(3).toString('hex')}`;
}

export function historySettings(config: Config): HistorySettings {
  return {
    resolutionMs: config.history_resolution_ms,
    retentionMs: config.history_retention_ms,
    rollupResolutionMs: config.history_rollup_resolution_ms,
    rollupRetentionMs: config.history_rollup_retention_ms,
    maxPoints: config.history_max_points,
  };
}

/**
 * Starts recording this process's history into the result store's database and
 * returns the reader of every process's. Nothing connects before the first flush
 * (after one resolution) or the first query; a database that is down is retried.
 */
export function startHistory(options: HistoryOptions): History {
  const { config, logger, metrics } = options;
  const now = options.now ?? Date.now;
  const processId = options.processId ?? defaultProcessId(now());
  const settings = historySettings(config);
  const store = new HistoryStore(storeUrl(config), config.store_schema ? { schema: config.store_schema } : {});
  const recorder = new HistoryRecorder({
    store,
    metrics,
    historyMetrics: historyMetrics(metrics.registry),
    logger,
    processId,
    resolutionMs: settings.resolutionMs,
    retentionMs: settings.retentionMs,
    rollupResolutionMs: settings.rollupResolutionMs,
    rollupRetentionMs: settings.rollupRetentionMs,
    maxLines: config.history_max_lines,
    now,
  });
  let timer: NodeJS.Timeout | undefined;
  if (options.timer ?? true) {
    let busy = false;
    timer = setInterval(
      () => {
        // A tick that waits for a slow store is not stacked on: the next one catches up.
        if (busy) return;
        busy = true;
        recorder
          .tick()
          .catch((err: Error) => logger.warn({ event: 'history_tick_failed', err }, `history: ${err.message}`))
          .finally(() => {
            busy = false;
          });
      },
      Math.min(SAMPLE_INTERVAL_MS, settings.resolutionMs),
    );
    timer.unref();
  }
  let closing: Promise<void> | undefined;
  return {
    processId,
    recorder,
    store,
    settings,
    async query(query) {
      const plan = planHistory(query, settings, now());
      return buildSeries(plan, await store.read(plan.resolutionMs, plan.start, plan.end, plan.line));
    },
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        try {
          await recorder.close();
        } finally {
          await store.close();
        }
      })();
      return closing;
    },
  };
}
