import { Counter, Gauge, type Registry } from 'prom-client';

/** The history's own health metrics (docs/metrics.md), on the process's registry. */
export function historyMetrics(registry: Registry) {
  // One set per registry: two recorders on one registry (tests) share them.
  const counter = (name: string, help: string) => (registry.getSingleMetric(name) as Counter | undefined) ?? new Counter({ name, help, registers: [registry] });
  const gauge = (name: string, help: string) => (registry.getSingleMetric(name) as Gauge | undefined) ?? new Gauge({ name, help, registers: [registry] });
  return {
    flushFailures: counter(
      'sightline_history_flush_failures_total',
      'History flushes that failed (the store could not be written); their buckets are retried at the next flush.',
    ),
    droppedBuckets: counter(
      'sightline_history_dropped_buckets_total',
      'History buckets dropped unwritten because the backlog of unflushed buckets reached its bound.',
    ),
    pendingBuckets: gauge('sightline_history_pending_buckets', 'History buckets of this process waiting to be written to the store.'),
  };
}

export type HistoryMetrics = ReturnType<typeof historyMetrics>;
