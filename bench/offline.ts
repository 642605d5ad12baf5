/**
 * (a′) The offline pipeline in one process, no HTTP: JPEG bytes → prepareImage
 * (sharp decode + letterbox) → OnnxRunner.run → postprocess + verdict, at a given
 * layout and batch size. Each instance keeps `prefetch` batches decoding while it
 * infers, so decode overlaps inference. This is the most any server can serve on
 * this machine with this model.
 */
import { performance } from 'node:perf_hooks';
import { prepareImage, type PreparedImage } from '../src/inference/preprocess.js';
import { postprocess, verdictOf } from '../src/inference/detector.js';
import type { ReadyModel } from '../src/inference/repository.js';
import { startInstances, type Layout } from './raw.js';
import type { PreparedModel } from './models.js';
import { epochMs, summarize, type Summary } from './stats.js';

export interface OfflineResult extends Layout {
  batch: number;
  prefetch: number;
  seconds: number;
  images: number;
  imagesPerSec: number;
  decodeMs: Summary;
  runMs: Summary;
  postprocessMs: Summary;
  detectionsPerImage: number;
  startedMs: number;
  endedMs: number;
  /** Cores other processes used meanwhile (filled in by the harness). */
  foreignCores?: number;
}

export interface OfflineOptions {
  model: PreparedModel;
  jpegs: Buffer[];
  layout: Layout;
  batch: number;
  seconds: number;
  /** Batches decoding ahead per instance (default 2). */
  prefetch?: number;
}

export async function offlinePipeline(o: OfflineOptions): Promise<OfflineResult> {
  const { model, jpegs, layout, batch } = o;
  const prefetch = o.prefetch ?? 2;
  const runners = await startInstances(model.modelPath, layout, model.inputName);
  const decodeMs: number[] = [];
  const runMs: number[] = [];
  const postMs: number[] = [];
  let next = 0;
  const prepareOne = async (): Promise<PreparedImage> => {
    const bytes = jpegs[next++ % jpegs.length]!;
    const t = performance.now();
    const prepared = await prepareImage(bytes, { inputWidth: model.inputWidth, inputHeight: model.inputHeight, maxPixels: 40_000_000 });
    decodeMs.push(performance.now() - t);
    return prepared;
  };
  const prepareBatch = () => Promise.all(Array.from({ length: batch }, prepareOne));
  try {
    // postprocess() and verdictOf() read only the manifest and the format of a ReadyModel;
    // the rest of it (runners, batcher) belongs to the server and is not built here.
    const view = { manifest: model.manifest, format: model.format } satisfies Pick<ReadyModel, 'manifest' | 'format'> as ReadyModel;
    const ready = runners.map((runner) => ({ runner, view }));
    // Warm-up: one full pass per instance.
    await Promise.all(
      ready.map(async (m) =>
        m.runner.run(
          (await prepareBatch()).map((p) => p.pixels),
          model.inputWidth,
          model.inputHeight,
        ),
      ),
    );
    decodeMs.length = 0;
    let images = 0;
    let detections = 0;
    const startedMs = epochMs();
    const t0 = performance.now();
    const deadline = t0 + o.seconds * 1000;
    let lastDone = t0;
    await Promise.all(
      ready.map(async (m) => {
        const queue: Promise<PreparedImage[]>[] = Array.from({ length: prefetch }, prepareBatch);
        while (performance.now() < deadline) {
          const current = await queue.shift()!;
          queue.push(prepareBatch());
          const t1 = performance.now();
          const out = await m.runner.run(
            current.map((p) => p.pixels),
            model.inputWidth,
            model.inputHeight,
          );
          const t2 = performance.now();
          current.forEach((p, i) => {
            const found = postprocess(m.view, out.output, out.dims, i, p.letterbox, {});
            verdictOf(m.view, found);
            detections += found.length;
          });
          postMs.push((performance.now() - t2) / current.length);
          runMs.push(t2 - t1);
          images += current.length;
          lastDone = performance.now();
        }
        await Promise.allSettled(queue);
      }),
    );
    // Until the last batch finished: prefetched decodes left over at the end do not count.
    const seconds = (lastDone - t0) / 1000;
    return {
      ...layout,
      batch,
      prefetch,
      seconds,
      images,
      imagesPerSec: images / seconds,
      decodeMs: summarize(decodeMs),
      runMs: summarize(runMs),
      postprocessMs: summarize(postMs),
      detectionsPerImage: detections / Math.max(1, images),
      startedMs,
      endedMs: startedMs + (lastDone - t0),
    };
  } finally {
    await Promise.all(runners.map((r) => r.close()));
  }
}
