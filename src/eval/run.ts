import { readFile } from 'node:fs/promises';
import { detect, type DetectOptions } from '../inference/detector.js';
import type { ReadyModel } from '../inference/repository.js';
import type { Dataset } from './dataset.js';
import { evaluateDetections, type DetectionMetrics, type ImageEvaluation } from './metrics.js';

export interface EvalOptions {
  /** Lowest score kept for the AP curves. */
  conf: number;
  /** NMS IoU threshold. */
  iou: number;
  maxPixels: number;
  /** Images in flight: decoding one overlaps inference of another, as in the server. */
  concurrency?: number;
  /** Tiled inference (docs/models.md#tiled-inference); default: the model's `tiling`, as the server does. */
  tiling?: DetectOptions['tiling'];
}

export interface EvalRun {
  metrics: DetectionMetrics;
  seconds: number;
  /** Mean inference time per image (every tile's batch counted once, when tiled). */
  inferMs: number;
  /** Mean end-to-end time per image, decode to answer (timings_ms.total). */
  totalMs: number;
  /** Mean inferences per image: 1 untiled, the tiles plus the full view when tiled. */
  runsPerImage: number;
}

/**
 * Runs every dataset image through the serving path (`detect`: the same decode,
 * letterbox, batcher and post-processing as /v1/detect) and scores the result.
 * Dataset classes map to model labels by name when the dataset names them.
 */
export async function evaluateModel(model: ReadyModel, dataset: Dataset, options: EvalOptions): Promise<EvalRun> {
  const labels = model.manifest.labels;
  const classMap = dataset.names?.map((n) => labels.indexOf(n)) ?? labels.map((_, i) => i);
  const evaluations: ImageEvaluation[] = new Array(dataset.images.length);
  const started = performance.now();
  let next = 0;
  let inferMs = 0;
  let totalMs = 0;
  let runs = 0;
  const lanes = Array.from({ length: options.concurrency ?? 2 }, async () => {
    while (next < dataset.images.length) {
      const index = next++;
      const item = dataset.images[index]!;
      const outcome = await detect(model, await readFile(item.path), {
        conf: options.conf,
        iou: options.iou,
        maxDetections: 300,
        maxPixels: options.maxPixels,
        tiling: options.tiling,
      });
      inferMs += outcome.timings_ms.infer;
      totalMs += outcome.timings_ms.total;
      runs += outcome.tiles?.count ?? 1;
      const { width, height } = outcome.image;
      evaluations[index] = {
        truths: item.labels
          .map((l) => ({
            classId: classMap[l.classId] ?? -1,
            x1: (l.cx - l.w / 2) * width,
            y1: (l.cy - l.h / 2) * height,
            x2: (l.cx + l.w / 2) * width,
            y2: (l.cy + l.h / 2) * height,
          }))
          .filter((t) => t.classId >= 0),
        predictions: outcome.detections.map((d) => ({ ...d.box, score: d.score, classId: d.class_id })),
      };
    }
  });
  await Promise.all(lanes);
  const count = Math.max(1, dataset.images.length);
  return {
    metrics: evaluateDetections(evaluations, labels, model.manifest.conf),
    seconds: (performance.now() - started) / 1000,
    inferMs: inferMs / count,
    totalMs: totalMs / count,
    runsPerImage: runs / count,
  };
}
