import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { EventBus } from '../events/index.js';
import type { InspectedFrame, InspectionObserver } from '../inspection/observers.js';
import type { Metrics } from '../metrics/metrics.js';
import { CAMERA_STATES, type CameraState, type CameraStatus, type LineList, type LineStatus, type ReviewCounts } from '../protocol/lines.js';
import { bestState, cameraStateAt, type StateThresholds } from './camera-state.js';
import { emptyHistogram, mergeInto, observe, quantile } from './latency-histogram.js';
import { NEW_CAMERA, type ActivityRow, type CameraRow, type LineStore } from './line-store.js';

/** Activity is counted in buckets of this size (each process writes one row per camera and bucket). */
export const ACTIVITY_BUCKET_MS = 10_000;
/** `fps` and `latency_p95_ms` are over the last minute. */
export const RECENT_WINDOW_MS = 60_000;
const HOUR_MS = 3_600_000;
/** Unwritten buckets older than this are given up while the store is down (bounded memory). */
const MAX_BACKLOG_MS = HOUR_MS;

export interface LineRegistryOptions {
  store: LineStore;
  events: EventBus;
  metrics: Metrics;
  logger: Pick<Logger, 'info' | 'warn'>;
  thresholds: StateThresholds;
  /** How often counts are written and states checked. */
  flushIntervalMs: number;
  /** Review counts of a line's results since a time (the result store's); left out: `reviews` is null. */
  reviewCounts?: (line: string, since: Date) => Promise<ReviewCounts>;
  /** For tests: the clock (epoch ms). */
  now?: () => number;
  /** Identifies this process's activity rows; unique per process start. */
  processId?: string;
}

interface Bucket {
  received: number;
  processed: number;
  dropped: number;
  ok: number;
  ng: number;
  latency: number[];
}

interface Pending {
  line: string;
  camera: string;
  /** Newest frame not yet written (0: none since the last write). */
  lastFrameAt: number;
  buckets: Map<number, Bucket>;
}

const key = (line: string, camera: string) => `${line}\u0000${camera}`;
const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Lines and cameras as the server knows them: every frame that arrives, is
 * inspected or is dropped is counted here by line and camera (Prometheus
 * counters at once; the shared store once per flush interval), and each
 * camera's state (online, stale, offline) follows from its last frame.
 *
 * Replicas agree because everything is derived from the shared store: each
 * process writes its own counts and the newest frame time; a state change is
 * a compare-and-set on the camera's row, so exactly one process announces it
 * (one event on the bus, one log line) however many run.
 */
export class LineRegistry implements InspectionObserver {
  readonly #o: LineRegistryOptions;
  readonly #now: () => number;
  readonly #processId: string;
  readonly #pending = new Map<string, Pending>();
  /** States this process last exported, to zero the other states' gauges. */
  readonly #exported = new Map<string, CameraState>();
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<void> = Promise.resolve();
  #busy = 0;
  #failing = false;
  #lastPrune = 0;
  #closed = false;

  constructor(options: LineRegistryOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#processId = options.processId ?? `${hostname()}-${process.pid}-${Date.now().toString(36)}`;
  }

  start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => {
      if (this.#busy === 0) void this.tick();
    }, this.#o.flushIntervalMs);
    this.#timer.unref();
  }

  /** A frame of this line and camera arrived (a request, a job, a stream frame). */
  received(line: string, camera: string): void {
    const now = this.#now();
    this.#o.metrics.framesReceived.inc({ line, camera });
    const p = this.#entry(line, camera);
    p.lastFrameAt = Math.max(p.lastFrameAt, now);
    this.#bucket(p, now).received++;
  }

  /** A frame that arrived was refused, dropped or failed; `reason` is a short snake_case word (an error code in lower case). */
  dropped(line: string, camera: string, reason: string): void {
    this.#o.metrics.framesDropped.inc({ line, camera, reason });
    this.#bucket(this.#entry(line, camera), this.#now()).dropped++;
  }

  onInspected(frame: InspectedFrame): void {
    const { line, camera, verdict, timings_ms } = frame.result;
    this.#o.metrics.framesProcessed.inc({ line, camera });
    const b = this.#bucket(this.#entry(line, camera), frame.at);
    b.processed++;
    // A `check` (image outside the quality envelope) is processed but neither OK nor NG.
    if (verdict === 'ng') b.ng++;
    else if (verdict === 'ok') b.ok++;
    observe(b.latency, timings_ms.total);
  }

  #entry(line: string, camera: string): Pending {
    const k = key(line, camera);
    let p = this.#pending.get(k);
    if (!p) this.#pending.set(k, (p = { line, camera, lastFrameAt: 0, buckets: new Map() }));
    return p;
  }

  #bucket(p: Pending, at: number): Bucket {
    const start = Math.floor(at / ACTIVITY_BUCKET_MS) * ACTIVITY_BUCKET_MS;
    let b = p.buckets.get(start);
    if (!b) p.buckets.set(start, (b = { received: 0, processed: 0, dropped: 0, ok: 0, ng: 0, latency: emptyHistogram() }));
    return b;
  }

  /**
   * Writes what was counted so far and checks every camera's state. Ticks run one
   * after another, so a caller (a test, close) always gets one that starts after
   * its call; the timer skips its turn while one is under way.
   */
  tick(): Promise<void> {
    const next = this.#chain.then(() => this.#tick());
    this.#chain = next;
    this.#busy++;
    return next.finally(() => this.#busy--);
  }

  async #tick(): Promise<void> {
    try {
      await this.#flush();
      await this.#checkStates();
      if (this.#failing) this.#o.logger.info({ event: 'line_registry_recovered' }, 'line registry: the store is reachable again');
      this.#failing = false;
    } catch (err) {
      // Counting and states wait for the store; detections never do.
      if (!this.#failing) this.#o.logger.warn({ event: 'line_registry_failed', err }, `line registry: ${(err as Error).message}`);
      this.#failing = true;
    }
  }

  async #flush(): Promise<void> {
    const now = this.#now();
    const current = Math.floor(now / ACTIVITY_BUCKET_MS) * ACTIVITY_BUCKET_MS;
    const frames: { line: string; camera: string; lastFrameAt: number }[] = [];
    const rows: ActivityRow[] = [];
    for (const p of this.#pending.values()) {
      if (p.lastFrameAt > 0) frames.push({ line: p.line, camera: p.camera, lastFrameAt: p.lastFrameAt });
      for (const [start, b] of p.buckets) {
        if (start < now - MAX_BACKLOG_MS) p.buckets.delete(start);
        else rows.push({ bucketStart: start, processId: this.#processId, line: p.line, camera: p.camera, ...b, latency: [...b.latency] });
      }
    }
    await this.#o.store.recordFrames(frames);
    for (const f of frames) {
      const p = this.#pending.get(key(f.line, f.camera));
      if (p && p.lastFrameAt === f.lastFrameAt) p.lastFrameAt = 0;
    }
    await this.#o.store.writeActivity(rows);
    // Finished buckets are written for good; the current one is written again next time.
    for (const [k, p] of this.#pending) {
      for (const start of p.buckets.keys()) if (start < current) p.buckets.delete(start);
      if (p.buckets.size === 0 && p.lastFrameAt === 0) this.#pending.delete(k);
    }
    if (now - this.#lastPrune >= RECENT_WINDOW_MS) {
      await this.#o.store.prune(now - HOUR_MS - ACTIVITY_BUCKET_MS);
      this.#lastPrune = now;
    }
  }

  async #checkStates(): Promise<void> {
    const now = this.#now();
    for (const row of await this.#o.store.cameras()) {
      const due = cameraStateAt(row.lastFrameAt, now, this.#o.thresholds);
      if (due !== row.state && (await this.#o.store.transition(row.line, row.camera, row.state, due, now))) {
        this.#announce(row.line, row.camera, due, row.state === NEW_CAMERA ? null : row.state, row.lastFrameAt, now);
      }
      // Another process may have made the change: either way the camera is now `due`.
      this.#export(row, due);
    }
  }

  #export(row: CameraRow, state: CameraState): void {
    const labels = { line: row.line, camera: row.camera };
    const k = key(row.line, row.camera);
    if (this.#exported.get(k) !== state) {
      for (const s of CAMERA_STATES) this.#o.metrics.cameraState.set({ ...labels, state: s }, s === state ? 1 : 0);
      this.#exported.set(k, state);
    }
    this.#o.metrics.cameraLastFrame.set(labels, row.lastFrameAt / 1000);
  }

  #announce(line: string, camera: string, state: CameraState, previous: CameraState | null, lastFrameAt: number, now: number): void {
    this.#o.events.publish({ type: 'camera', line, camera, state, previous, at: iso(now), last_frame_at: iso(lastFrameAt) });
    const fields = { event: 'camera_state', line, camera, state, previous, last_frame_at: iso(lastFrameAt) };
    const message = previous === null ? `camera ${line}/${camera} appeared` : `camera ${line}/${camera} is ${state} (was ${previous})`;
    if (state === 'online') this.#o.logger.info(fields, message);
    else this.#o.logger.warn(fields, message);
  }

  /** Every line with its cameras (or one line; undefined when unknown), from the shared store. */
  async list(line?: string): Promise<LineList> {
    const now = this.#now();
    const cameras = await this.#o.store.cameras(line);
    const activity = await this.#o.store.activitySince(now - HOUR_MS, line);
    const windowStart = Math.floor((now - RECENT_WINDOW_MS) / ACTIVITY_BUCKET_MS) * ACTIVITY_BUCKET_MS;
    const byCamera = new Map<string, ActivityRow[]>();
    for (const row of activity) {
      const k = key(row.line, row.camera);
      byCamera.get(k)?.push(row) ?? byCamera.set(k, [row]);
    }
    const lines = new Map<string, CameraStatus[]>();
    const recent = new Map<string, ActivityRow[]>();
    for (const c of cameras) {
      const rows = byCamera.get(key(c.line, c.camera)) ?? [];
      const status = cameraStatus(c, rows, windowStart, now);
      lines.get(c.line)?.push(status) ?? lines.set(c.line, [status]);
      const recentRows = rows.filter((r) => r.bucketStart >= windowStart);
      recent.get(c.line)?.push(...recentRows) ?? recent.set(c.line, recentRows);
    }
    const since = new Date(now - HOUR_MS);
    const list: LineStatus[] = [];
    for (const [name, cams] of lines) {
      let reviews: ReviewCounts | null = null;
      try {
        reviews = this.#o.reviewCounts ? await this.#o.reviewCounts(name, since) : null;
      } catch {
        reviews = null; // the line state is still worth answering without them
      }
      list.push(lineStatus(name, cams, recent.get(name) ?? [], windowStart, now, reviews));
    }
    return { at: iso(now), window_s: RECENT_WINDOW_MS / 1000, lines: list };
  }

  /** Writes what is pending once more and stops. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.tick();
    await this.#o.store.close();
  }
}

function sums(rows: readonly ActivityRow[]) {
  const total = { received: 0, processed: 0, dropped: 0, ok: 0, ng: 0, latency: emptyHistogram() };
  for (const r of rows) {
    total.received += r.received;
    total.processed += r.processed;
    total.dropped += r.dropped;
    total.ok += r.ok;
    total.ng += r.ng;
    mergeInto(total.latency, r.latency);
  }
  return total;
}

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

function figures(hour: readonly ActivityRow[], recent: readonly ActivityRow[], windowStart: number, firstSeenAt: number, now: number) {
  const h = sums(hour);
  const r = sums(recent);
  const seconds = Math.max(1, (now - Math.max(windowStart, firstSeenAt)) / 1000);
  const p95 = quantile(r.latency, 0.95);
  return {
    fps: { received: round(r.received / seconds), processed: round(r.processed / seconds), dropped: round(r.dropped / seconds) },
    latency_p95_ms: p95 === null ? null : round(p95, 1),
    last_hour: { ok: h.ok, ng: h.ng, ng_rate: h.ok + h.ng > 0 ? round(h.ng / (h.ok + h.ng), 4) : null },
  };
}

function cameraStatus(c: CameraRow, rows: readonly ActivityRow[], windowStart: number, now: number): CameraStatus {
  return {
    line: c.line,
    camera: c.camera,
    // A camera whose first frame is not announced yet is what its last frame makes it.
    state: c.state === NEW_CAMERA ? 'online' : c.state,
    since: iso(c.stateChangedAt),
    last_frame_at: iso(c.lastFrameAt),
    first_seen_at: iso(c.firstSeenAt),
    ...figures(
      rows,
      rows.filter((r) => r.bucketStart >= windowStart),
      windowStart,
      c.firstSeenAt,
      now,
    ),
  };
}

function lineStatus(
  line: string,
  cameras: CameraStatus[],
  recent: readonly ActivityRow[],
  windowStart: number,
  now: number,
  reviews: ReviewCounts | null,
): LineStatus {
  const lastFrame = Math.max(...cameras.map((c) => (c.last_frame_at ? Date.parse(c.last_frame_at) : 0)));
  const firstSeen = Math.min(...cameras.map((c) => Date.parse(c.first_seen_at)));
  const recentFigures = figures([], recent, windowStart, firstSeen, now);
  const ok = cameras.reduce((n, c) => n + c.last_hour.ok, 0);
  const ng = cameras.reduce((n, c) => n + c.last_hour.ng, 0);
  return {
    line,
    state: bestState(cameras.map((c) => c.state)),
    last_frame_at: lastFrame > 0 ? iso(lastFrame) : null,
    fps: recentFigures.fps,
    latency_p95_ms: recentFigures.latency_p95_ms,
    last_hour: { ok, ng, ng_rate: ok + ng > 0 ? round(ng / (ok + ng), 4) : null },
    reviews,
    cameras,
  };
}
