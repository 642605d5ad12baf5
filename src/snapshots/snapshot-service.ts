import type { Logger } from 'pino';
import type { InspectedFrame, InspectionObserver } from '../inspection/observers.js';
import type { SkipReason, SnapshotMetrics } from './metrics.js';
import { toJpeg } from './render.js';
import type { NewSnapshot, SnapshotStore } from './snapshot-store.js';

/** What is kept and for how long (the snapshot_* settings). */
export interface SnapshotPolicy {
  enabled: boolean;
  /** Share of OK results whose image is kept; every NG image is. */
  okSampleRate: number;
  /** Bytes kept in all; the oldest go first. */
  maxBytes: number;
  /** Age beyond which a snapshot is deleted. */
  retentionMs: number;
  /** Writes waiting for the disk beyond which new ones are skipped. */
  maxPending: number;
  /** Least time between two writes of one camera's latest frame. */
  latestIntervalMs: number;
  /** After a failed write, new snapshots are skipped this long before the next try (default 5 s). */
  retryAfterMs?: number;
  /** How often age and byte pruning run besides after writes (default: a tenth of the retention, 1 s to 1 min). */
  pruneIntervalMs?: number;
  /** Decoding limit for converting latest frames to JPEG (max_image_pixels). */
  maxPixels?: number;
}

export interface SnapshotServiceDeps {
  logger: Logger;
  metrics: SnapshotMetrics;
  /** Uniform in [0, 1): the OK sample (tests may fix it). */
  random?: () => number;
  now?: () => number;
}

/** ENOSPC and its kin: the disk (or quota, or SQLite's file) is full. */
const FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);
const CLOSE_DRAIN_MS = 10_000;

interface LatestSlot {
  last: number;
  pending?: InspectedFrame;
  timer?: NodeJS.Timeout;
  writing?: Promise<void>;
}

/**
 * Keeps result images by policy: follows every inspection (an InspectionObserver),
 * decides at once (every NG, a sample of OK) and queues the image; one background
 * writer writes files and index rows, making room first so that the bytes kept
 * stay within maxBytes, and prunes by age after writes and on a timer.
 * Nothing here can slow or fail a detection: onInspected only decides and
 * queues, a full queue skips, and a failing disk (full, read-only) turns
 * snapshots off for retryAfterMs at a time with one log line per episode,
 * counted in sightline_snapshots_skipped_total.
 *
 * It also keeps the newest frame of each line and camera (latest.jpg), at most
 * one write per latestIntervalMs per camera: a frame arriving sooner waits and
 * is written when the interval is over, replaced by any newer one meanwhile.
 */
export class SnapshotService implements InspectionObserver {
  readonly store: SnapshotStore;
  readonly policy: Readonly<SnapshotPolicy>;
  readonly #logger: Logger;
  readonly #metrics: SnapshotMetrics;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #retryAfterMs: number;
  readonly #queue: NewSnapshot[] = [];
  #writing = 0;
  #draining: Promise<void> | undefined;
  readonly #latest = new Map<string, LatestSlot>();
  #failure: { reason: 'disk_full' | 'write_failed'; until: number } | undefined;
  /** Bytes kept as this process last knew them (other processes write too: re-read at each drain). */
  #kept: number | undefined;
  #lastAgePrune = 0;
  readonly #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(store: SnapshotStore, policy: SnapshotPolicy, deps: SnapshotServiceDeps) {
    this.store = store;
    this.policy = policy;
    this.#logger = deps.logger;
    this.#metrics = deps.metrics;
    this.#random = deps.random ?? Math.random;
    this.#now = deps.now ?? Date.now;
    this.#retryAfterMs = policy.retryAfterMs ?? 5_000;
    if (policy.enabled) {
      const every = policy.pruneIntervalMs ?? Math.min(60_000, Math.max(1_000, policy.retentionMs / 10));
      this.#timer = setInterval(() => void this.#pruneQuietly(), every);
      this.#timer.unref();
    }
  }

  onInspected(frame: InspectedFrame): void {
    try {
      this.#observe(frame);
    } catch (err) {
      // An observer never throws into the inspection path.
      this.#logger.error({ event: 'snapshot_observer_failed', err }, 'snapshot observer failed');
    }
  }

  #observe(frame: InspectedFrame): void {
    if (this.#closed) return;
    const skipped = this.#enqueue(frame);
    if (skipped) this.#skip(skipped);
  }

  /** Queues the frame's image when the policy keeps it; else says why not. */
  #enqueue(frame: InspectedFrame): SkipReason | undefined {
    if (!this.policy.enabled) return 'disabled';
    this.#offerLatest(frame);
    // A check (image outside the quality envelope) is for a person to decide: kept like an NG.
    const keep = frame.result.verdict !== 'ok' || this.#random() < this.policy.okSampleRate;
    if (!keep) return 'sampled_out';
    if (frame.image.length > this.policy.maxBytes) return 'too_large';
    if (this.#failure && this.#failing()) return this.#failure.reason;
    if (this.#queue.length + this.#writing >= this.policy.maxPending) return 'queue_full';
    this.#queue.push({ result: frame.result, source: frame.source, image: frame.image, at: frame.at });
    this.#kick();
    return undefined;
  }

  #skip(reason: SkipReason): void {
    this.#metrics.skipped.inc({ reason });
  }

  #failing(): boolean {
    return this.#failure !== undefined && this.#now() < this.#failure.until;
  }

  #kick(): void {
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
      if (this.#queue.length > 0) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    this.#kept = undefined;
    while (this.#queue.length > 0) {
      const item = this.#queue.shift()!;
      // Queued before the disk failed: not worth a try until the pause is over.
      if (this.#failure && this.#failing()) {
        this.#skip(this.#failure.reason);
        continue;
      }
      this.#writing = 1;
      try {
        await this.#makeRoom(item.image.length);
        if (await this.store.put(item)) {
          this.#metrics.written.inc();
          this.#kept = (this.#kept ?? 0) + item.image.length;
          this.#metrics.bytes.set(this.#kept);
        }
        this.#recovered();
      } catch (err) {
        this.#failed(err, true);
      } finally {
        this.#writing = 0;
      }
    }
    if (this.#now() - this.#lastAgePrune >= 1_000) await this.#pruneAge().catch((err: unknown) => this.#pruneFailed(err));
  }

  /** Prunes the oldest before a write that would take the bytes kept past maxBytes, so the cap holds at every moment. */
  async #makeRoom(incoming: number): Promise<void> {
    this.#kept ??= await this.store.liveBytes();
    if (this.#kept + incoming <= this.policy.maxBytes) return;
    const { count } = await this.store.pruneToBytes(this.policy.maxBytes - incoming, this.#now());
    this.#metrics.pruned.inc({ reason: 'bytes' }, count);
    this.#kept = await this.store.liveBytes();
    this.#metrics.bytes.set(this.#kept);
  }

  async #pruneAge(now = this.#now()): Promise<void> {
    this.#lastAgePrune = now;
    const { count } = await this.store.pruneOlderThan(now - this.policy.retentionMs, now);
    this.#metrics.pruned.inc({ reason: 'age' }, count);
    if (count > 0) this.#kept = undefined;
  }

  /**
   * Age and byte pruning now (the timer's work; also for tests and tools). `now`
   * stands for the current time in the age rule, so a test can look days ahead.
   */
  async prune(now = this.#now()): Promise<void> {
    await this.#pruneAge(now);
    // Other processes write too: their overshoot, if any, is taken back here.
    const { count } = await this.store.pruneToBytes(this.policy.maxBytes, now);
    this.#metrics.pruned.inc({ reason: 'bytes' }, count);
    this.#kept = await this.store.liveBytes();
    this.#metrics.bytes.set(this.#kept);
  }

  async #pruneQuietly(): Promise<void> {
    await this.prune().catch((err: unknown) => this.#pruneFailed(err));
    const stale = this.#now() - this.policy.latestIntervalMs;
    for (const [key, slot] of this.#latest) if (!slot.pending && !slot.writing && !slot.timer && slot.last < stale) this.#latest.delete(key);
  }

  #pruneFailed(err: unknown): void {
    this.#logger.warn({ event: 'snapshot_prune_failed', err }, `snapshot pruning failed: ${(err as Error).message}`);
  }

  #failed(err: unknown, counted: boolean): void {
    const code = errorCode(err);
    const reason = code !== undefined && FULL_CODES.has(code) ? 'disk_full' : 'write_failed';
    if (counted) this.#skip(reason);
    if (!this.#failure) {
      this.#logger.warn(
        { event: 'snapshot_write_failed', reason, code, dir: this.store.dir, err },
        `snapshots stopped (${reason}): ${(err as Error).message}; detection goes on, next try in ${this.#retryAfterMs} ms`,
      );
    }
    this.#failure = { reason, until: this.#now() + this.#retryAfterMs };
  }

  #recovered(): void {
    if (!this.#failure) return;
    this.#logger.info({ event: 'snapshot_write_recovered', dir: this.store.dir }, 'snapshots are written again');
    this.#failure = undefined;
  }

  #offerLatest(frame: InspectedFrame): void {
    const key = `${frame.result.line}\u0000${frame.result.camera}`;
    let slot = this.#latest.get(key);
    if (!slot) this.#latest.set(key, (slot = { last: Number.NEGATIVE_INFINITY }));
    slot.pending = frame;
    this.#scheduleLatest(slot);
  }

  #scheduleLatest(slot: LatestSlot): void {
    if (slot.writing || slot.timer || !slot.pending) return;
    const wait = slot.last + this.policy.latestIntervalMs - this.#now();
    if (wait <= 0 || this.#closed) {
      this.#writeLatest(slot);
      return;
    }
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      this.#writeLatest(slot);
    }, wait);
    slot.timer.unref();
  }

  #writeLatest(slot: LatestSlot): void {
    const frame = slot.pending;
    slot.pending = undefined;
    if (!frame) return;
    if (this.#failing()) return;
    slot.last = this.#now();
    slot.writing = (async () => {
      const jpeg = await toJpeg(frame.image, this.policy.maxPixels);
      await this.store.putLatest(frame.result, jpeg, frame.at);
    })()
      .then(
        () => this.#recovered(),
        (err: unknown) => this.#failed(err, false),
      )
      .finally(() => {
        slot.writing = undefined;
        this.#scheduleLatest(slot);
      });
  }

  /** Resolves once every queued snapshot and latest frame is written (or failed): for tests and close. */
  async idle(): Promise<void> {
    for (;;) {
      const busy = [this.#draining, ...[...this.#latest.values()].map((s) => s.writing)].filter((p) => p !== undefined);
      if (busy.length === 0) return;
      await Promise.allSettled(busy);
    }
  }

  /** Writes what is queued (for at most 10 s) and every camera's newest frame, then closes the store. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    // The newest frames waiting for their interval are written now: after a restart latest.jpg shows the last one.
    for (const slot of this.#latest.values()) {
      if (slot.timer) clearTimeout(slot.timer);
      slot.timer = undefined;
      this.#scheduleLatest(slot);
    }
    let timer: NodeJS.Timeout | undefined;
    const giveUp = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_DRAIN_MS);
      timer.unref();
    });
    await Promise.race([this.idle(), giveUp]);
    clearTimeout(timer);
    const left = this.#queue.splice(0);
    if (left.length > 0) this.#logger.warn({ event: 'snapshots_dropped', count: left.length }, `${left.length} snapshots not written at shutdown`);
    await this.store.close();
  }
}

/** The system or database code of an error, or of the error it wraps (STORE_UNAVAILABLE keeps its cause). */
function errorCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 3; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && e.code !== 'STORE_UNAVAILABLE') return e.code;
  }
  return undefined;
}
