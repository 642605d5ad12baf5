import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { snapshotsDir, storeUrl } from '../config/locations.js';
import type { Config } from '../config/schema.js';
import { openDatabase } from '../store/open-database.js';
import { FileSnapshotStore, type SnapshotsTable } from './file-snapshot-store.js';
import { snapshotMetrics } from './metrics.js';
import { SnapshotService } from './snapshot-service.js';
import type { SnapshotStore } from './snapshot-store.js';

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * The snapshot store a config names: files in snapshotsDir(config), the index in
 * the result store's database (and PostgreSQL schema). For readers such as
 * `sightline export`: `get(requestId)` gives `{ bytes, contentType, record }`,
 * `'gone'` when the image was pruned, undefined when none was kept. Nothing is
 * opened before first use; close() it when done.
 */
export function openSnapshotStore(config: Config, options: { poolSize?: number } = {}): SnapshotStore {
  const { kind, db, schema, lockRetry } = openDatabase<SnapshotsTable>(storeUrl(config), {
    poolSize: options.poolSize ?? 2,
    ...(config.store_schema ? { schema: config.store_schema } : {}),
  });
  return new FileSnapshotStore({ dir: snapshotsDir(config), kind, db, ...(schema ? { schema } : {}), ...(lockRetry ? { lockRetry } : {}) });
}

/** The snapshot service of a server or worker: an observer of every inspection, with its metrics on `registry`. */
export function createSnapshotService(config: Config, deps: { logger: Logger; registry: Registry }): SnapshotService {
  return new SnapshotService(
    openSnapshotStore(config),
    {
      enabled: config.snapshots,
      okSampleRate: config.snapshot_ok_sample_rate,
      maxBytes: config.snapshot_max_bytes,
      retentionMs: config.snapshot_retention_days * DAY_MS,
      maxPending: config.snapshot_max_pending,
      latestIntervalMs: config.snapshot_latest_interval_ms,
      maxPixels: config.max_image_pixels,
    },
    { logger: deps.logger, metrics: snapshotMetrics(deps.registry) },
  );
}
