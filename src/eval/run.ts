import { readFile } from 'node:fs/promises';
import { detect, verdictOf, type DetectOptions } from '../inference/detector.js';
import { evaluateVerdict, rulesInForce } from '../verdict/evaluate.js';
import type { ReadyModel } from '../inference/repository.js';
import type { Dataset } from './dataset.js';
import { evaluateDetections, type DetectionMetrics, type ImageEvaluation } from './metrics.js';
import { fromRle, maskIou, rasterizePolygon } from './masks.js';

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
  /**
   * A segmentation model on a dataset with polygon labels (YOLO-seg): the same metrics
   * with mask IoU in place of box IoU (docs/models.md#task-types).
   */
  maskMetrics?: DetectionMetrics;
  seconds: number;
  /** Mean inference time per image (every tile's batch counted once, when tiled). */
  inferMs: number;
  /** Mean end-to-end time per image, decode to answer (timings_ms.total). */
  totalMs: number;
  /** Mean inferences per image: 1 untiled, the tiles plus the full view when tiled. */
  runsPerImage: number;
  verdicts: VerdictCounts;
  /** The verdicts again with every NG label at one threshold from SWEEP_THRESHOLDS. */
  verdictCurve: SweepPoint[];
}

/**
 * NG thresholds the verdict sweep tries: each in place of every label's `ng` score,
 * with detections kept from that score (a threshold below the model's `conf` means
 * lowering `conf` with it). Where to set model.json's thresholds is read off it:
 * escapes fall and false rejects rise as the threshold goes down.
 */
export const SWEEP_THRESHOLDS: readonly number[] = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5];

export interface SweepPoint extends VerdictCounts {
  threshold: number;
}

/**
 * Image verdicts at the model's own thresholds (model.json `conf` and `verdict`, no
 * line's rules, no image-quality gate): what a line would see from the model alone.
 * An escape is an image with a labelled defect that the model calls OK; a false
 * reject, a defect-free image it calls NG.
 */
export interface VerdictCounts {
  with_defects: number;
  escapes: number;
  defect_free: number;
  false_rejects: number;
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
  // Mask mAP needs a segmentation model and polygons on every labelled object.
  const masks = model.task === 'segment' && dataset.images.some((i) => i.labels.length > 0) && dataset.images.every((i) => i.labels.every((l) => l.polygon));
  const maskEvaluations: ImageEvaluation[] = new Array(dataset.images.length);
  const started = performance.now();
  let next = 0;
  let inferMs = 0;
  let totalMs = 0;
  let runs = 0;
  const verdicts: VerdictCounts = { with_defects: 0, escapes: 0, defect_free: 0, false_rejects: 0 };
  const { verdict: modelVerdict } = model.manifest;
  const sweep = SWEEP_THRESHOLDS.map((threshold) => ({
    threshold,
    rules: rulesInForce({ ...modelVerdict, ng: Object.fromEntries(Object.keys(modelVerdict.ng).map((label) => [label, threshold])) }, labels, {
      overrides: [],
    }),
    counts: { with_defects: 0, escapes: 0, defect_free: 0, false_rejects: 0 } satisfies VerdictCounts,
  }));
  const count = (counts: VerdictCounts, defects: boolean, verdict: string): void => {
    if (defects) {
      counts.with_defects++;
      if (verdict === 'ok') counts.escapes++;
    } else {
      counts.defect_free++;
      if (verdict === 'ng') counts.false_rejects++;
    }
  };
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
      // The AP curves need every score down to --conf; the verdict sees what the server
      // would answer, the detections at the model's conf.
      const verdict = verdictOf(
        model,
        outcome.detections.filter((d) => d.score >= model.manifest.conf),
      );
      const defects = evaluations[index]!.truths.length > 0;
      count(verdicts, defects, verdict);
      for (const point of sweep) {
        count(
          point.counts,
          defects,
          evaluateVerdict(
            point.rules,
            outcome.detections.filter((d) => d.score >= point.threshold),
          ).verdict,
        );
      }
      if (masks) {
        const kept = item.labels.filter((l) => (classMap[l.classId] ?? -1) >= 0);
        const truthMasks = kept.map((l) =>
          rasterizePolygon(
            l.polygon!.map((v, i) => v * (i % 2 === 0 ? width : height)),
            width,
            height,
          ),
        );
        const predMasks = outcome.detections.map((d) => (d.mask ? fromRle(d.mask) : undefined));
        const evaluation = evaluations[index]!;
        maskEvaluations[index] = {
          ...evaluation,
          overlaps: outcome.detections.map((d, p) =>
            evaluation.truths.map((t, j) => (t.classId === d.class_id && predMasks[p] ? maskIou(predMasks[p]!, truthMasks[j]!) : 0)),
          ),
        };
      }
    }
  });
  await Promise.all(lanes);
  const images = Math.max(1, dataset.images.length);
  return {
    metrics: evaluateDetections(evaluations, labels, model.manifest.conf),
    ...(masks ? { maskMetrics: evaluateDetections(maskEvaluations, labels, model.manifest.conf) } : {}),
    seconds: (performance.now() - started) / 1000,
    inferMs: inferMs / images,
    totalMs: totalMs / images,
    runsPerImage: runs / images,
    verdicts,
    verdictCurve: sweep.map((p) => ({ threshold: p.threshold, ...p.counts })),
  };
}
