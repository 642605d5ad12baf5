export type { SnapshotStore, SnapshotRecord, SnapshotImage, LatestFrame, NewSnapshot, PruneOutcome } from './snapshot-store.js';
export { FileSnapshotStore, type SnapshotsTable } from './file-snapshot-store.js';
export { SnapshotService, type SnapshotPolicy, type SnapshotServiceDeps } from './snapshot-service.js';
export { openSnapshotStore, createSnapshotService } from './from-config.js';
export { snapshotMetrics, SKIP_REASONS, PRUNE_REASONS, type SnapshotMetrics, type SkipReason, type PruneReason } from './metrics.js';
export { renderJpeg, toJpeg, NG_COLOUR, OTHER_COLOUR, type RenderOptions } from './render.js';
export { sniffImage } from './content-type.js';
