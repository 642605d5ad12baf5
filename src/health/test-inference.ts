import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import type { Logger } from 'pino';
import { detect } from '../inference/detector.js';
import type { ModelRepository, ModelEntry, ReadyModel } from '../inference/repository.js';

export interface TestInferenceResult {
  ok: boolean;
  at: Date;
  duration_ms: number;
  reason?: string;
}

/** How long a test inference may wait and run before it counts as failed. */
const DEADLINE_MS = 30_000;

const key = (entry: Pick<ModelEntry, 'name' | 'version'>) => `${entry.name}:${entry.version}`;

/**
 * Runs a small real image through every READY model's whole pipeline (decode,
 * batcher, session, post-processing) on a timer, so /readyz notices a model that
 * loaded fine and then stopped answering (a wedged worker thread, a broken
 * runtime). A model too busy to take it (OVERLOADED) is serving, not failing:
 * that round is skipped.
 */
export class TestInference {
  readonly #results = new Map<string, TestInferenceResult>();
  #timer: NodeJS.Timeout | undefined;
  #image: Promise<Buffer> | undefined;
  #running: Promise<void> | undefined;

  constructor(
    private readonly models: ModelRepository,
    private readonly o: { intervalMs: number; maxPixels: number; logger: Logger },
  ) {}

  start(): void {
    if (this.o.intervalMs <= 0) return;
    this.#timer = setInterval(() => void this.runOnce(), this.o.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** The last test inference of a model version, if one ran since it became READY. */
  resultFor(entry: Pick<ModelEntry, 'name' | 'version'>): TestInferenceResult | undefined {
    return this.#results.get(key(entry));
  }

  /** One round over every READY model (rounds never overlap). */
  runOnce(): Promise<void> {
    this.#running ??= this.#round().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #round(): Promise<void> {
    this.#image ??= sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 128, g: 128, b: 128 } } })
      .jpeg()
      .toBuffer();
    const image = await this.#image;
    for (const entry of this.models.list()) {
      if (entry.state !== 'READY') {
        // A reload starts from a clean slate.
        this.#results.delete(key(entry));
        continue;
      }
      const started = performance.now();
      let reason: string | undefined;
      let timer: NodeJS.Timeout | undefined;
      try {
        // The deadline bounds the wait in the queue; the timer bounds a worker that took the image and never answers.
        await Promise.race([
          detect(entry as ReadyModel, image, { maxPixels: this.o.maxPixels, priority: 'normal', deadline: started + DEADLINE_MS }),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${DEADLINE_MS / 1000} s`)), DEADLINE_MS);
          }),
        ]);
      } catch (err) {
        if ((err as { code?: string }).code === 'OVERLOADED') continue;
        reason = err instanceof Error ? err.message : String(err);
      } finally {
        clearTimeout(timer);
      }
      const result: TestInferenceResult = {
        ok: reason === undefined,
        at: new Date(),
        duration_ms: Math.round((performance.now() - started) * 10) / 10,
        ...(reason ? { reason } : {}),
      };
      const before = this.#results.get(key(entry));
      this.#results.set(key(entry), result);
      if (!result.ok && before?.ok !== false) {
        this.o.logger.warn(
          { event: 'test_inference_failed', model: entry.name, version: entry.version, reason },
          `test inference of ${key(entry)} failed: ${reason}`,
        );
      } else if (result.ok && before?.ok === false) {
        this.o.logger.info({ event: 'test_inference_passed', model: entry.name, version: entry.version }, `test inference of ${key(entry)} passes again`);
      }
    }
  }
}
