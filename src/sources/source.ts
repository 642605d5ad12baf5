import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { apiErrorOf, Errors } from '../errors.js';
import { inspect, type InspectionDeps } from '../inspection/inspect.js';
import { dropReason } from '../lines/drop-reason.js';
import type { Metrics } from '../metrics/metrics.js';
import type { DetectionResult } from '../protocol/results.js';
import { redactCredentials, type SourceSpec } from './spec.js';

/** What a frame of a source ended as: `sightline_source_frames_total{outcome}`. */
export const SOURCE_FRAME_OUTCOMES = ['processed', 'failed', 'dropped', 'error'] as const;
export type SourceFrameOutcome = (typeof SOURCE_FRAME_OUTCOMES)[number];

/** starting: first read under way; up: the last read worked; down: retrying with backoff; paused: by the API. */
export type SourceState = 'starting' | 'up' | 'down' | 'paused';

/** Settings every source shares (config keys `source_*`). */
export interface SourceSettings {
  pollIntervalMs: number;
  snapshotIntervalMs: number;
  backoffMs: number;
  backoffMaxMs: number;
  timeoutMs: number;
  maxBytes: number;
  requestTimeoutMs: number;
  /** The ffmpeg binary of `ffmpeg` sources. */
  ffmpegPath: string;
}

/** What a source needs from the process: the inspection path, the line registry, metrics, a logger. */
export interface SourceContext {
  deps: InspectionDeps;
  lines: { received(line: string, camera: string): void; dropped(line: string, camera: string, reason: string): void };
  metrics: Pick<Metrics, 'sourceFrames' | 'sourceUp'>;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  settings: SourceSettings;
}

/** A source as GET /v1/sources shows it. */
export interface SourceStatus extends SourceSpec {
  state: SourceState;
  since: string;
  reason: string | null;
  failures: number;
  last_frame_at: string | null;
  frames: Record<SourceFrameOutcome, number>;
}

/** Errors that say "not now" (admission, a model loading, the store away, shutting down): try the frame again later. */
export function isTransient(err: unknown): boolean {
  const status = apiErrorOf(err)?.statusCode;
  return status === 503 || status === 504;
}

/** A request id that is the same for the same bytes of the same source: a re-read after a crash stores nothing twice. */
export function stableRequestId(source: string, parts: readonly (string | number)[]): string {
  const hash = createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 24);
  return `src-${source}-${hash}`;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * The part every pulled source shares: one read loop (`step()` at its interval,
 * exponential backoff with jitter while reads fail, stopped at once by pause or
 * close), its state for /readyz and `sightline_source_up`, state-change log
 * events, and inspecting a frame through the one inspection path with the line
 * registry's counts. Each source has its own loop, so a slow or dead one never
 * holds up another.
 */
export abstract class PulledSource {
  readonly spec: SourceSpec;
  protected readonly ctx: SourceContext;
  #state: SourceState;
  #since = Date.now();
  #reason: string | null = null;
  #failures = 0;
  #lastFrameAt: number | null = null;
  readonly #frames: Record<SourceFrameOutcome, number> = { processed: 0, failed: 0, dropped: 0, error: 0 };
  #abort = new AbortController();
  #loop: Promise<void> | undefined;
  #closed = false;

  constructor(spec: SourceSpec, ctx: SourceContext) {
    this.spec = spec;
    this.ctx = ctx;
    this.#state = spec.paused ? 'paused' : 'starting';
    for (const outcome of SOURCE_FRAME_OUTCOMES) ctx.metrics.sourceFrames.inc({ source: spec.name, outcome }, 0);
  }

  get state(): SourceState {
    return this.#state;
  }

  /** One read: a folder scan, a snapshot fetch. Throws when the source cannot be read (the loop backs off). */
  protected abstract step(signal: AbortSignal): Promise<void>;
  /** Time between two reads while up. */
  protected abstract get intervalMs(): number;
  /** Reads start every intervalMs (a camera's rate) rather than intervalMs after the last one ended (a folder's scans). */
  protected readonly fixedRate: boolean = false;
  #pending: Buffer | undefined;
  #draining: Promise<void> | undefined;

  /** Waits for frames in hand to finish (close, pause). */
  protected async settle(): Promise<void> {
    await this.#draining;
  }

  /**
   * A camera frame, newest wins: it replaces a waiting one (counted as dropped)
   * and never waits behind more than one inspection, so a slow model makes the
   * source skip frames, never fall behind or pile them up.
   */
  protected offer(image: Buffer): void {
    if (this.#pending) {
      this.count('dropped');
      this.ctx.lines.received(this.spec.line, this.spec.camera);
      this.ctx.lines.dropped(this.spec.line, this.spec.camera, 'superseded');
    }
    this.#pending = image;
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
    });
  }

  async #drain(): Promise<void> {
    while (this.#pending) {
      const image = this.#pending;
      this.#pending = undefined;
      // Every frame is new: a fresh id (the same bytes twice are still two frames of a still scene).
      await this.inspectFrame(image, `src-${this.spec.name}-${randomUUID()}`, {}).catch(() => undefined);
    }
  }

  start(): void {
    if (this.#closed || this.#loop || this.#state === 'paused') return;
    this.#abort = new AbortController();
    const signal = this.#abort.signal;
    this.#setUp(this.#state === 'up' ? 1 : 0);
    this.#loop = this.#run(signal);
  }

  async #run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const started = performance.now();
      try {
        await this.step(signal);
        if (signal.aborted) break;
        this.markUp();
        await sleep(this.fixedRate ? Math.max(0, this.intervalMs - (performance.now() - started)) : this.intervalMs, signal);
      } catch (err) {
        if (signal.aborted) break;
        this.markDown(err instanceof Error ? err.message : String(err));
        await sleep(this.#backoff(), signal);
      }
    }
  }

  #backoff(): number {
    const { backoffMs, backoffMaxMs } = this.ctx.settings;
    const base = Math.min(backoffMaxMs, backoffMs * 2 ** Math.min(30, this.#failures - 1));
    return Math.round(base * (0.8 + 0.4 * Math.random()));
  }

  #setUp(value: 0 | 1): void {
    this.ctx.metrics.sourceUp.set({ source: this.spec.name }, value);
  }

  protected markUp(): void {
    this.#failures = 0;
    this.#reason = null;
    if (this.#state === 'up') return;
    const was = this.#state;
    this.#state = 'up';
    this.#since = Date.now();
    this.#setUp(1);
    if (was === 'down') this.ctx.logger.info({ event: 'source_up', source: this.spec.name }, `source ${this.spec.name} is back`);
  }

  protected markDown(failure: string): void {
    const reason = redactCredentials(failure);
    this.#failures += 1;
    this.#reason = reason;
    this.count('error');
    if (this.#state === 'down') return;
    this.#state = 'down';
    this.#since = Date.now();
    this.#setUp(0);
    this.ctx.logger.warn({ event: 'source_down', source: this.spec.name, kind: this.spec.kind, reason }, `source ${this.spec.name} is down: ${reason}`);
  }

  protected count(outcome: SourceFrameOutcome): void {
    this.#frames[outcome]++;
    this.ctx.metrics.sourceFrames.inc({ source: this.spec.name, outcome });
  }

  /** Stops reading (frames in hand finish); the source keeps its place and counts. */
  async pause(): Promise<void> {
    await this.#stopLoop();
    this.#state = 'paused';
    this.#since = Date.now();
    this.#reason = null;
    // Paused on purpose: no series, so SightlineSourceDown stays quiet.
    this.ctx.metrics.sourceUp.remove({ source: this.spec.name });
    this.ctx.logger.info({ event: 'source_paused', source: this.spec.name }, `source ${this.spec.name} paused`);
  }

  resume(): void {
    if (this.#state !== 'paused') return;
    this.#state = 'starting';
    this.#since = Date.now();
    this.ctx.logger.info({ event: 'source_resumed', source: this.spec.name }, `source ${this.spec.name} resumed`);
    this.start();
  }

  async #stopLoop(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
    this.#loop = undefined;
    await this.settle();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#stopLoop();
  }

  /** Drops the source's series (DELETE /v1/sources/:name). */
  forget(): void {
    this.ctx.metrics.sourceUp.remove({ source: this.spec.name });
    for (const outcome of SOURCE_FRAME_OUTCOMES) this.ctx.metrics.sourceFrames.remove({ source: this.spec.name, outcome });
  }

  /**
   * One frame through the inspection path, as a job (stored before it counts,
   * so a re-read with the same `requestId` is not stored twice). A full model
   * queue is checked before the image is decoded: a counted drop, not work.
   */
  protected async inspectFrame(image: Buffer, requestId: string, logFields: Record<string, unknown>): Promise<{ result: DetectionResult; stored?: boolean }> {
    const { deps, lines, settings } = this.ctx;
    const { line, camera, model } = this.spec;
    lines.received(line, camera);
    this.#lastFrameAt = Date.now();
    try {
      const entry = deps.models.find(model);
      // Pulled frames go in at low priority: pushed traffic (detect, stream, jobs) is admitted first.
      if (entry.batcher && !entry.batcher.hasRoomFor('low')) throw new Errors.OVERLOADED(`the inference queue of ${entry.name}:${entry.version} is full`);
      const inspected = await inspect(deps, {
        source: 'job',
        requestId,
        line,
        camera,
        image,
        options: { priority: 'low', ...(model !== undefined ? { model } : {}) },
        deadline: performance.now() + settings.requestTimeoutMs,
        logger: this.ctx.logger,
        logFields: { source_name: this.spec.name, ...logFields },
      });
      this.count('processed');
      return inspected;
    } catch (err) {
      lines.dropped(line, camera, apiErrorOf(err)?.code === 'OVERLOADED' ? 'queue_full' : dropReason(err));
      this.count(isTransient(err) ? 'dropped' : 'failed');
      throw err;
    }
  }

  status(): SourceStatus {
    return {
      ...this.spec,
      target: redactCredentials(this.spec.target),
      paused: this.#state === 'paused',
      state: this.#state,
      since: new Date(this.#since).toISOString(),
      reason: this.#reason,
      failures: this.#failures,
      last_frame_at: this.#lastFrameAt === null ? null : new Date(this.#lastFrameAt).toISOString(),
      frames: { ...this.#frames },
    };
  }
}
