import { performance } from 'node:perf_hooks';
import { Errors } from '../errors.js';
import { prepareImage } from './preprocess.js';
import { unletterboxBox, type Letterbox } from './letterbox.js';
import { DECODERS, NMS_IN_MODEL } from './postprocess/decoders.js';
import { nonMaxSuppression } from './postprocess/nms.js';
import type { ReadyModel } from './repository.js';
import type { Priority } from '../protocol/options.js';
import type { Detection, DetectionResult, StageTimings, Verdict } from '../protocol/results.js';

// The result's wire types live in src/protocol/results.ts; re-exported for the pipeline's users.
export { STAGES, type Detection, type Stage, type StageTimings, type Verdict } from '../protocol/results.js';

export interface DetectOptions {
  conf?: number;
  iou?: number;
  maxDetections?: number;
  agnostic?: boolean;
  maxPixels: number;
  priority?: Priority;
  /** Absolute deadline in performance.now() milliseconds. */
  deadline?: number;
}

/** What the pipeline knows of a result; the caller adds request id, line and model. */
export type DetectionOutcome = Pick<DetectionResult, 'image' | 'detections' | 'verdict' | 'timings_ms'>;

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

/** Detections of one image from a raw output tensor slice, in original image pixels. */
export function postprocess(
  model: ReadyModel,
  output: Float32Array,
  dims: readonly number[],
  batchIndex: number,
  letterbox: Letterbox,
  options: Pick<DetectOptions, 'conf' | 'iou' | 'maxDetections' | 'agnostic'>,
): Detection[] {
  const { manifest } = model;
  const conf = options.conf ?? manifest.conf;
  const maxDetections = options.maxDetections ?? manifest.max_detections;
  const perImage = dims.slice(1).reduce((a, b) => a * b, 1);
  const candidates = DECODERS[model.format](output, batchIndex * perImage, dims, manifest.labels.length, conf);
  const kept = NMS_IN_MODEL[model.format]
    ? candidates.sort((a, b) => b.score - a.score).slice(0, maxDetections)
    : nonMaxSuppression(candidates, {
        iouThreshold: options.iou ?? manifest.iou,
        maxDetections,
        agnostic: options.agnostic ?? manifest.agnostic_nms,
      });
  const detections: Detection[] = [];
  for (const c of kept) {
    const box = unletterboxBox(c, letterbox);
    // A box that lies wholly in the letterbox padding has no area left in the image.
    if (box.x2 - box.x1 <= 0 || box.y2 - box.y1 <= 0) continue;
    detections.push({
      label: manifest.labels[c.classId]!,
      class_id: c.classId,
      score: round(c.score, 4),
      box: { x1: round(box.x1, 2), y1: round(box.y1, 2), x2: round(box.x2, 2), y2: round(box.y2, 2) },
    });
  }
  return detections;
}

/** NG when any detection of a label listed in the verdict rule reaches that label's threshold. */
export function verdictOf(model: ReadyModel, detections: readonly Detection[]): Verdict {
  const rule = model.manifest.verdict.ng;
  return detections.some((d) => rule[d.label] !== undefined && d.score >= rule[d.label]!) ? 'ng' : 'ok';
}

/**
 * The whole single-image path: admission (before any decoding), decode +
 * letterbox, the model's batcher, decode + NMS, verdict.
 */
export async function detect(model: ReadyModel, bytes: Buffer, options: DetectOptions): Promise<DetectionOutcome> {
  const t0 = performance.now();
  if (bytes.length === 0) throw new Errors.EMPTY_BODY();
  const admission = model.batcher.admit(options.priority ?? 'normal', options.deadline);
  let prepared;
  try {
    prepared = await prepareImage(bytes, {
      inputWidth: model.inputWidth,
      inputHeight: model.inputHeight,
      maxPixels: options.maxPixels,
    });
  } catch (err) {
    admission.release();
    throw err;
  }
  const t1 = performance.now();
  const run = await admission.submit(prepared.pixels);
  const t2 = performance.now();
  const detections = postprocess(model, run.output, run.dims, run.index, prepared.letterbox, options);
  const verdict = verdictOf(model, detections);
  const t3 = performance.now();
  const timings: StageTimings = {
    queue: round(run.queueMs, 3),
    decode: round(t1 - t0, 3),
    preprocess: round(run.preprocessMs, 3),
    infer: round(run.inferMs, 3),
    postprocess: round(t3 - t2, 3),
    total: round(t3 - t0, 3),
  };
  return {
    image: { width: prepared.letterbox.width, height: prepared.letterbox.height },
    detections,
    verdict,
    timings_ms: timings,
  };
}
