import { Counter, Gauge, type Registry } from 'prom-client';

/** Why an image was not kept; every reason is exported as 0 from the start, so rate() and alerts work from the first one. */
export const SKIP_REASONS = ['sampled_out', 'queue_full', 'disk_full', 'write_failed', 'too_large', 'disabled'] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

/** Why a kept image was deleted: over snapshot_max_bytes, or older than snapshot_retention_days. */
export const PRUNE_REASONS = ['bytes', 'age'] as const;
export type PruneReason = (typeof PRUNE_REASONS)[number];

export interface SnapshotMetrics {
  written: Counter;
  skipped: Counter<'reason'>;
  pruned: Counter<'reason'>;
  bytes: Gauge;
}

const NAMES = {
  written: 'sightline_snapshots_written_total',
  skipped: 'sightline_snapshots_skipped_total',
  pruned: 'sightline_snapshots_pruned_total',
  bytes: 'sightline_snapshot_bytes',
} as const;

/**
 * The snapshot metrics on a registry (docs/metrics.md). Registered here rather
 * than in createMetrics so that snapshots stay one module; idempotent, because a
 * registry refuses a name twice and tests build several parts on one registry.
 */
export function snapshotMetrics(registry: Registry): SnapshotMetrics {
  const existing = registry.getSingleMetric(NAMES.written);
  if (existing) {
    return {
      written: existing as Counter,
      skipped: registry.getSingleMetric(NAMES.skipped) as Counter<'reason'>,
      pruned: registry.getSingleMetric(NAMES.pruned) as Counter<'reason'>,
      bytes: registry.getSingleMetric(NAMES.bytes) as Gauge,
    };
  }
  const registers = [registry];
  const metrics: SnapshotMetrics = {
    written: new Counter({ name: NAMES.written, help: 'Result images kept as snapshots (file and index row written).', registers }),
    skipped: new Counter({
      name: NAMES.skipped,
      help: 'Result images not kept, by reason: sampled_out, queue_full, disk_full, write_failed, too_large, disabled.',
      labelNames: ['reason'] as const,
      registers,
    }),
    pruned: new Counter({
      name: NAMES.pruned,
      help: 'Snapshots deleted by this process, by reason: bytes (over snapshot_max_bytes) or age (snapshot_retention_days).',
      labelNames: ['reason'] as const,
      registers,
    }),
    bytes: new Gauge({ name: NAMES.bytes, help: 'Bytes of the snapshots kept (all processes sharing the directory), as last seen by this one.', registers }),
  };
  for (const reason of SKIP_REASONS) metrics.skipped.inc({ reason }, 0);
  for (const reason of PRUNE_REASONS) metrics.pruned.inc({ reason }, 0);
  return metrics;
}
