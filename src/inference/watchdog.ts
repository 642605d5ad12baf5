import { Errors } from '../errors.js';
import type { ModelRunner, NamedTensor, RunHow, RunnerInfo, RunOutput, TensorRunOutput } from './runner.js';

/** Why an instance was replaced: the label of sightline_model_instance_restarts_total. */
export type RestartReason = 'stalled';

/** The stall limit is at least this many times the instance's p99 inference time. */
export const STALL_P99_FACTOR = 20;
/** Infer times kept for the p99 estimate, and how many it needs before it counts. */
const P99_WINDOW = 256;
const P99_MIN_SAMPLES = 20;

export interface WatchdogOptions {
  /** inference_stall_ms; 0 turns the watchdog off. */
  stallMs: number;
  /** Starts and warms up a fresh instance; rejects when it cannot. */
  start: () => Promise<ModelRunner>;
  /** Backoff between failed restarts: base × 2^(attempt-1), at most max. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** An inference ran past the limit: its requests got INFERENCE_STALLED, the replacement is starting. */
  onStalled?: (runner: SupervisedRunner, elapsedMs: number, limitMs: number) => void;
  /** The replacement is up and warm; `attempts` counts the tries it took. */
  onRestarted?: (runner: SupervisedRunner, attempts: number) => void;
  /** A replacement failed to start; the next try follows after `retryInMs`. */
  onRestartFailed?: (runner: SupervisedRunner, err: Error, attempt: number, retryInMs: number) => void;
}

/** Rolling p99 of the last P99_WINDOW inference times (ms); undefined until enough are in. */
export class P99Estimate {
  private readonly samples: number[] = [];
  private next = 0;
  private cached: number | undefined;

  add(ms: number): void {
    if (this.samples.length < P99_WINDOW) this.samples.push(ms);
    else this.samples[this.next] = ms;
    this.next = (this.next + 1) % P99_WINDOW;
    this.cached = undefined;
  }

  get value(): number | undefined {
    if (this.samples.length < P99_MIN_SAMPLES) return undefined;
    if (this.cached === undefined) {
      const sorted = [...this.samples].sort((a, b) => a - b);
      this.cached = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
    }
    return this.cached;
  }
}

/** The stall limit for a configured inference_stall_ms and a p99 estimate: the larger of the two rules; 0 when off. */
export function stallLimitMs(stallMs: number, p99: number | undefined): number {
  if (stallMs <= 0) return 0;
  return Math.max(stallMs, p99 === undefined ? 0 : STALL_P99_FACTOR * p99);
}

/** Gives up on an instance whose run cannot be waited for: ends its thread as far as it can be ended, without waiting. */
export function abandon(runner: ModelRunner, err: Error): void {
  if (runner.abandon) runner.abandon(err);
  else void runner.close().catch(() => undefined);
}

/**
 * One model instance under a watchdog: every run gets a timer of stallLimitMs();
 * a run past it answers its requests with 503 INFERENCE_STALLED, the instance
 * (its worker thread) is abandoned and a fresh one started and warmed up, retried
 * with backoff until one starts. Meanwhile `replacing` is set; the batcher hands
 * the instance no batch until it settles, and run() waits for it.
 */
export class SupervisedRunner implements ModelRunner {
  private current: ModelRunner;
  private replacement: Promise<void> | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeRetry: (() => void) | undefined;
  readonly p99 = new P99Estimate();
  /** Replacements started, for logs and tests. */
  restarts = 0;

  /** The current instance's, when the first one has a lone-request session; a replacement starts its own on its first wide run. */
  readonly prepareWide: ((width: number, height: number) => void) | undefined;

  constructor(
    initial: ModelRunner,
    private readonly options: WatchdogOptions,
  ) {
    this.current = initial;
    this.prepareWide = initial.prepareWide ? (width, height) => this.current.prepareWide?.(width, height) : undefined;
  }

  get info(): RunnerInfo {
    return this.current.info;
  }

  /** Set while the instance is being replaced; settles once a fresh one serves (or the runner closes). */
  get replacing(): Promise<void> | undefined {
    return this.replacement;
  }

  /** The limit a run started now gets (0: none). */
  get limitMs(): number {
    return stallLimitMs(this.options.stallMs, this.p99.value);
  }

  run(images: Uint8Array[], width: number, height: number, how?: RunHow): Promise<RunOutput> {
    return this.guarded((runner) => runner.run(images, width, height, how));
  }

  /** Raw tensors (the Open Inference Protocol) under the same stall limit as images. */
  runTensors(inputs: NamedTensor[], outputNames: string[]): Promise<TensorRunOutput> {
    return this.guarded((runner) => {
      if (!runner.runTensors) throw new Error('this back end takes images only');
      return runner.runTensors(inputs, outputNames);
    });
  }

  /** Runs `call` on the current instance once no replacement is under way, failing it with INFERENCE_STALLED past the limit. */
  private async guarded<T extends { inferMs: number }>(call: (runner: ModelRunner) => Promise<T>): Promise<T> {
    while (this.replacement) await this.replacement;
    if (this.closed) throw new Error('model instance is closed');
    const runner = this.current;
    const limit = this.limitMs;
    if (limit <= 0) return this.record(await call(runner));
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        const elapsed = performance.now() - started;
        const err = new Errors.INFERENCE_STALLED(
          `no result after ${Math.round(elapsed)} ms (limit ${Math.round(limit)} ms); the model instance is being replaced`,
        );
        reject(err);
        this.replace(runner, err, elapsed, limit);
      }, limit);
      timer.unref();
    });
    try {
      return this.record(await Promise.race([call(runner), stalled]));
    } finally {
      clearTimeout(timer);
    }
  }

  private record<T extends { inferMs: number }>(out: T): T {
    this.p99.add(out.inferMs);
    return out;
  }

  private replace(stuck: ModelRunner, err: Error, elapsedMs: number, limitMs: number): void {
    if (this.closed || stuck !== this.current || this.replacement) return;
    this.restarts++;
    abandon(stuck, err);
    this.replacement = this.restart().finally(() => {
      this.replacement = undefined;
    });
    this.options.onStalled?.(this, elapsedMs, limitMs);
  }

  private async restart(): Promise<void> {
    const base = this.options.retryBaseMs ?? 500;
    const max = this.options.retryMaxMs ?? 30_000;
    for (let attempt = 1; !this.closed; attempt++) {
      try {
        const fresh = await this.options.start();
        if (this.closed) {
          await fresh.close().catch(() => undefined);
          return;
        }
        this.current = fresh;
        // The stuck run says nothing about the fresh instance's speed.
        this.options.onRestarted?.(this, attempt);
        return;
      } catch (e) {
        const delay = Math.min(max, base * 2 ** (attempt - 1));
        this.options.onRestartFailed?.(this, e as Error, attempt, delay);
        await new Promise<void>((resolve) => {
          this.wakeRetry = resolve;
          this.retryTimer = setTimeout(resolve, delay);
          this.retryTimer.unref();
        });
      }
    }
  }

  abandon(err: Error): void {
    this.closed = true;
    abandon(this.current, err);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.wakeRetry?.();
    await this.replacement?.catch(() => undefined);
    await this.current.close();
  }
}

/**
 * Runs `promise` (a warm-up run of `runner`) under a stall limit: past it the
 * runner is abandoned and the promise rejects, so a replacement that hangs in
 * its warm-up counts as a failed start rather than hanging the restart.
 */
export async function withinLimit<T>(runner: ModelRunner, promise: Promise<T>, limitMs: number): Promise<T> {
  if (limitMs <= 0) return promise;
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const err = new Error(`warm-up inference gave no result within ${limitMs} ms`);
      abandon(runner, err);
      reject(err);
    }, limitMs);
    timer.unref();
  });
  try {
    return await Promise.race([promise, stalled]);
  } finally {
    clearTimeout(timer);
  }
}
