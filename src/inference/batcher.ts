import { performance } from 'node:perf_hooks';
import { Errors } from '../errors.js';
import { PRIORITIES, type Priority } from '../protocol/options.js';
import type { ModelRunner, RunCandidates } from './runner.js';
import type { CandidateSettings } from './postprocess/candidates.js';
import type { Candidate } from './postprocess/nms.js';

export interface BatcherOptions {
  width: number;
  height: number;
  /** Largest batch handed to one instance. */
  maxBatch: number;
  /** A model with a fixed batch axis runs at exactly this size (padded with grey images). */
  fixedBatch?: number;
  /** How long the oldest request may wait for a batch to fill while more are on their way. */
  maxDelayMs: number;
  /** Admitted requests (queued or still decoding) before new ones are refused. */
  maxQueue: number;
  onBatch?: (size: number) => void;
  onExpired?: () => void;
  /** A request refused because the queue was full, or displaced by a higher priority. */
  onShed?: (reason: 'queue_full' | 'displaced') => void;
  onDepthChange?: (depth: number) => void;
  /**
   * A box model's output layout: requests that bring their settings get their boxes
   * decoded in the instance's thread (RunHow.candidates); without it, or for a batch
   * with a request that brings none, the output tensor comes back as it is.
   */
  decode?: Omit<RunCandidates, 'perImage'>;
}

export interface BatchedOutput {
  output: Float32Array;
  dims: number[];
  /** This request's index in the batch output. */
  index: number;
  batchSize: number;
  queueMs: number;
  preprocessMs: number;
  inferMs: number;
  /** Run by the lone-request session. */
  wide: boolean;
  /** This request's boxes, in letterboxed input pixels, when they were decoded in the instance's thread (`output` is then empty). */
  candidates?: Candidate[];
  /** Time that decoding took there. */
  postprocessMs?: number;
}

interface Queued {
  pixels: Uint8Array;
  candidates: CandidateSettings | undefined;
  priority: Priority;
  enqueuedAt: number;
  deadline: number;
  timer: NodeJS.Timeout | undefined;
  resolve: (out: BatchedOutput) => void;
  reject: (err: Error) => void;
}

/** A place in the queue, taken before the image is decoded so that overload costs no decode. */
export interface Admission {
  /**
   * Queues the decoded image; rejects with DEADLINE_EXCEEDED if the admission's deadline
   * passes first. With `candidates`, a box model decodes its boxes in the instance's thread.
   */
  submit(pixels: Uint8Array, candidates?: CandidateSettings): Promise<BatchedOutput>;
  /** Gives the place back when the request fails before reaching the queue. */
  release(): void;
}

const PAD_VALUE = 114;

/**
 * Per-model dynamic batcher in front of N model instances (Triton-style): one lane
 * per priority, a bounded admission count, deadlines enforced while queued and
 * again just before inference, and batches of up to maxBatch. It waits up to
 * maxDelayMs for a batch to fill only while admitted requests are still being
 * decoded, so a lone request is never delayed for company that is not coming.
 */
export class Batcher {
  private readonly lanes: Record<Priority, Queued[]> = { high: [], normal: [], low: [] };
  private readonly idle: ModelRunner[];
  /** Admitted requests that have not reached the queue yet (decoding). */
  private decoding = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The instance with a lone-request session (one that uses every core), if any. */
  private readonly wideRunner: ModelRunner | undefined;
  /** Runs under way, and whether one of them is on the lone-request session. */
  private busy = 0;
  private wideBusy = false;

  constructor(
    runners: ModelRunner[],
    private readonly options: BatcherOptions,
  ) {
    this.idle = [...runners];
    this.wideRunner = runners.find((r) => r.prepareWide);
    this.wideRunner?.prepareWide?.(options.width, options.height);
  }

  get queued(): number {
    return this.lanes.high.length + this.lanes.normal.length + this.lanes.low.length;
  }

  /** Queued plus decoding: what the queue bound counts. */
  get depth(): number {
    return this.queued + this.decoding;
  }

  private get batchLimit(): number {
    return this.options.fixedBatch ?? this.options.maxBatch;
  }

  /** Whether admit(priority) would succeed now; lets the server refuse before reading a body. */
  hasRoomFor(priority: Priority): boolean {
    if (this.depth < this.options.maxQueue) return true;
    return PRIORITIES.slice(PRIORITIES.indexOf(priority) + 1).some((p) => this.lanes[p].length > 0);
  }

  /**
   * Takes a place for a request of this priority, or throws OVERLOADED. When the
   * queue is full, a higher-priority request evicts the newest queued request of
   * the lowest priority below its own, so high is never stuck behind low.
   * `deadline` is in performance.now() milliseconds.
   */
  admit(priority: Priority, deadline = Infinity): Admission {
    if (this.closed) throw new Errors.SHUTTING_DOWN();
    if (this.depth >= this.options.maxQueue && !this.evictBelow(priority)) {
      this.options.onShed?.('queue_full');
      throw new Errors.OVERLOADED(`the inference queue is full (${this.options.maxQueue})`);
    }
    this.decoding++;
    this.changed();
    let done = false;
    const release = () => {
      if (done) return;
      done = true;
      this.decoding--;
      this.changed();
    };
    return {
      release,
      submit: (pixels, candidates) => {
        release();
        return this.enqueue(pixels, priority, deadline, candidates);
      },
    };
  }

  /** Queues decoded pixels; rejects with DEADLINE_EXCEEDED if the deadline (performance.now() ms) passes first. */
  enqueue(pixels: Uint8Array, priority: Priority, deadline = Infinity, candidates?: CandidateSettings): Promise<BatchedOutput> {
    if (this.closed) return Promise.reject(new Errors.SHUTTING_DOWN());
    return new Promise<BatchedOutput>((resolve, reject) => {
      const item: Queued = { pixels, candidates, priority, enqueuedAt: performance.now(), deadline, timer: undefined, resolve, reject };
      const remaining = deadline - item.enqueuedAt;
      if (remaining <= 0) {
        this.options.onExpired?.();
        reject(new Errors.DEADLINE_EXCEEDED('before inference'));
        return;
      }
      if (Number.isFinite(remaining)) {
        item.timer = setTimeout(() => this.expire(item), remaining);
        item.timer.unref();
      }
      this.lanes[priority].push(item);
      this.changed();
      this.pump();
    });
  }

  private evictBelow(priority: Priority): boolean {
    for (let p = PRIORITIES.length - 1; p > PRIORITIES.indexOf(priority); p--) {
      const lane = this.lanes[PRIORITIES[p]!];
      const victim = lane.pop();
      if (victim) {
        if (victim.timer) clearTimeout(victim.timer);
        this.options.onShed?.('displaced');
        victim.reject(new Errors.OVERLOADED(`displaced by a ${priority}-priority request`));
        this.changed();
        return true;
      }
    }
    return false;
  }

  private expire(item: Queued): void {
    const lane = this.lanes[item.priority];
    const at = lane.indexOf(item);
    if (at < 0) return;
    lane.splice(at, 1);
    this.options.onExpired?.();
    item.reject(new Errors.DEADLINE_EXCEEDED('while queued'));
    this.changed();
  }

  private changed(): void {
    this.options.onDepthChange?.(this.depth);
  }

  private oldestWait(now: number): number {
    let oldest = now;
    for (const p of PRIORITIES) {
      const head = this.lanes[p][0];
      if (head && head.enqueuedAt < oldest) oldest = head.enqueuedAt;
    }
    return now - oldest;
  }

  /**
   * A request alone in an idle model, with no other on its way (none decoding), runs
   * on the lone-request session: every core on one image, the lowest latency. Any
   * company sends work to the single-threaded instances instead, which give the most
   * throughput; the two never overlap, so neither takes cores from the other.
   */
  private lone(): ModelRunner | undefined {
    const wide = this.wideRunner;
    if (!wide || this.busy > 0 || this.queued !== 1 || this.decoding > 0) return undefined;
    return this.idle.includes(wide) ? wide : undefined;
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queued > 0) {
      // The lone-request session holds every core until it is done.
      if (this.wideBusy) return;
      const now = performance.now();
      const wide = this.lone();
      if (wide) {
        const batch = this.take(now);
        if (batch.length === 0) continue;
        this.idle.splice(this.idle.indexOf(wide), 1);
        void this.dispatch(wide, batch, now, true);
        continue;
      }
      // Batch only what the idle instances cannot take one each: on a CPU two instances
      // running one image each beat one running both, and a batch that waits for company
      // while another instance idles only adds latency.
      const share = Math.min(this.batchLimit, Math.ceil(this.queued / this.idle.length));
      if (share < this.batchLimit && this.queued + this.decoding > this.idle.length && this.decoding > 0 && this.options.maxDelayMs > 0) {
        const wait = this.options.maxDelayMs - this.oldestWait(now);
        if (wait > 0) {
          if (!this.flushTimer) {
            this.flushTimer = setTimeout(() => {
              this.flushTimer = undefined;
              this.pump();
            }, wait);
            this.flushTimer.unref();
          }
          return;
        }
      }
      const batch = this.take(now, share);
      if (batch.length === 0) continue;
      void this.dispatch(this.idle.pop()!, batch, now);
    }
  }

  /** Up to `limit` live requests, high priority first; expired ones are answered, never run. */
  private take(now: number, limit = this.batchLimit): Queued[] {
    const batch: Queued[] = [];
    for (const p of PRIORITIES) {
      const lane = this.lanes[p];
      while (lane.length > 0 && batch.length < limit) {
        const item = lane.shift()!;
        if (item.timer) clearTimeout(item.timer);
        if (item.deadline <= now) {
          this.options.onExpired?.();
          item.reject(new Errors.DEADLINE_EXCEEDED('before inference'));
          continue;
        }
        batch.push(item);
      }
    }
    this.changed();
    return batch;
  }

  private async dispatch(runner: ModelRunner, batch: Queued[], now: number, wide = false): Promise<void> {
    const images = batch.map((b) => b.pixels);
    const fixed = this.options.fixedBatch;
    if (fixed && images.length < fixed) {
      const grey = new Uint8Array(this.options.width * this.options.height * 3).fill(PAD_VALUE);
      while (images.length < fixed) images.push(grey);
    }
    this.options.onBatch?.(batch.length);
    this.busy++;
    this.wideBusy = wide;
    try {
      // The decoded pixels belong to their requests alone and are not read again: handed over, not copied.
      const { decode } = this.options;
      const candidates: RunCandidates | undefined =
        decode && batch.every((b) => b.candidates) ? { ...decode, perImage: images.map((_, i) => batch[i]?.candidates ?? null) } : undefined;
      const out = await runner.run(images, this.options.width, this.options.height, { transfer: true, wide, ...(candidates ? { candidates } : {}) });
      for (const [index, item] of batch.entries()) {
        const boxes = out.candidates?.[index];
        item.resolve({
          output: out.output,
          dims: out.dims,
          index,
          batchSize: batch.length,
          queueMs: now - item.enqueuedAt,
          preprocessMs: out.preprocessMs,
          inferMs: out.inferMs,
          wide: out.wide ?? false,
          ...(boxes ? { candidates: boxes, postprocessMs: out.postprocessMs ?? 0 } : {}),
        });
      }
    } catch (err) {
      // A stalled run keeps its retryable 503; anything else is a 500.
      const failure = (err as { code?: unknown }).code === 'INFERENCE_STALLED' ? (err as Error) : new Errors.INFERENCE_FAILED((err as Error).message);
      for (const item of batch) item.reject(failure);
    } finally {
      this.busy--;
      if (wide) this.wideBusy = false;
      const replacing = runner.replacing;
      if (replacing) {
        // An instance being replaced (watchdog) takes batches again once its replacement serves.
        void replacing.then(() => {
          if (this.closed) return;
          this.idle.push(runner);
          this.pump();
        });
      } else {
        this.idle.push(runner);
        this.pump();
      }
    }
  }

  /** Refuses new work and answers everything still queued. */
  close(): void {
    this.closed = true;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    for (const p of PRIORITIES) {
      for (const item of this.lanes[p].splice(0)) {
        if (item.timer) clearTimeout(item.timer);
        item.reject(new Errors.SHUTTING_DOWN());
      }
    }
    this.changed();
  }
}
