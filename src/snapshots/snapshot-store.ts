import type { DetectionResult, ResultSource } from '../protocol/results.js';
import type { PruneReason } from './metrics.js';

/** What the index knows of one result's snapshot, kept (also after its image is pruned) in the results' database. */
export interface SnapshotRecord {
  request_id: string;
  line: string;
  camera: string;
  source: ResultSource;
  /** The image's own type (image/jpeg, image/png, image/webp), as received. */
  content_type: string;
  bytes: number;
  created_at: Date;
  /** When the image was deleted; null while it is kept. */
  pruned_at: Date | null;
  prune_reason: PruneReason | null;
  /** The result as it was produced: boxes for `?boxes=1` and export even where the result store has no row. */
  result: DetectionResult;
}

/** A kept snapshot: its image bytes and what the index says of it. */
export interface SnapshotImage {
  record: SnapshotRecord;
  bytes: Buffer;
  contentType: string;
}

/** The newest frame of a line and camera (JPEG), with the result its boxes come from. */
export interface LatestFrame {
  line: string;
  camera: string;
  /** Epoch ms of the result. */
  at: number;
  result: DetectionResult;
  jpeg: Buffer;
}

export interface NewSnapshot {
  result: DetectionResult;
  source: ResultSource;
  image: Buffer;
  /** Epoch ms of the result. */
  at: number;
}

export interface PruneOutcome {
  count: number;
  bytes: number;
}

/**
 * Where result images are kept. Reads are what other modules use (the HTTP
 * routes, `sightline export`): `get(requestId)` answers the image, `'gone'` when
 * it was pruned (the result itself is untouched), undefined when none was kept.
 * Writes and pruning belong to the SnapshotService, which decides what is kept.
 */
export interface SnapshotStore {
  /** Absolute directory of the files (shared by every process that writes or serves them). */
  readonly dir: string;
  /** Creates the index table when missing; rejects while the database is out of reach. */
  waitUntilReady(): Promise<void>;
  /** Writes the image and its index row; false when the result already had one. Throws fs and database errors as they are (ENOSPC, EROFS, …). */
  put(snapshot: NewSnapshot): Promise<boolean>;
  get(requestId: string): Promise<SnapshotImage | 'gone' | undefined>;
  /** The index row, kept or pruned. */
  info(requestId: string): Promise<SnapshotRecord | undefined>;
  /** Bytes of the snapshots kept, over every process sharing the index. */
  liveBytes(): Promise<number>;
  /** Deletes the oldest snapshots until at most `maxBytes` are kept. */
  pruneToBytes(maxBytes: number, now?: number): Promise<PruneOutcome>;
  /** Deletes the snapshots created before `cutoffMs`. */
  pruneOlderThan(cutoffMs: number, now?: number): Promise<PruneOutcome>;
  /** Replaces the newest frame of the result's line and camera (atomically: readers see the old or the new one). */
  putLatest(result: DetectionResult, jpeg: Buffer, at: number): Promise<void>;
  /** The newest frame of a line: of that camera, or of whichever camera sent last. */
  latest(line: string, camera?: string): Promise<LatestFrame | undefined>;
  close(): Promise<void>;
}
