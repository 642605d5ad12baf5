import { Errors } from '../errors.js';
import { unletterboxBox, type Letterbox } from './letterbox.js';
import type { ReadyModel } from './repository.js';
import { extraOutputsOf } from './extra-outputs.js';
import { classProbabilities, DEFAULT_TOP_K, MAX_TOP_K, rankedClasses } from './postprocess/classify.js';
import { nonMaxSuppression } from './postprocess/nms.js';
import { decodeSegment, detectionMask, encodeRle, maskCoefficients, type SegmentCandidate } from './postprocess/segment.js';
import type { CandidateOptions } from './postprocess/candidates.js';
import type { MaskEncoding } from '../protocol/options.js';
import type { ClassScore, Detection } from '../protocol/results.js';

// The classification and segmentation halves of the pipeline (docs/models.md#task-types);
// detector.ts calls them in place of the box decoder for those tasks.

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

export interface Classified {
  /** The `top_k` most probable classes, answered as `classes`. */
  top: ClassScore[];
  /**
   * Every class as a detection over the whole image, for the verdict rule: a class
   * named in `verdict.ng` makes the image `ng` when its probability reaches the threshold,
   * whether or not it is among the top k.
   */
  forVerdict: Detection[];
}

/** One image of a classification output `[N, C]`. */
export function classifyImage(
  model: ReadyModel,
  output: Float32Array,
  dims: readonly number[],
  batchIndex: number,
  letterbox: Letterbox,
  topK?: number,
): Classified {
  const ranked = rankedClasses(classProbabilities(output, dims, batchIndex), model.manifest.labels);
  const k = Math.min(Math.max(1, topK ?? DEFAULT_TOP_K), MAX_TOP_K);
  const box = { x1: 0, y1: 0, x2: letterbox.width, y2: letterbox.height };
  return { top: ranked.slice(0, k), forVerdict: ranked.map((c) => ({ ...c, box })) };
}

/**
 * One image of a YOLOv8-seg output: boxes as the yolov8 decoder reads them, NMS, then
 * per kept detection its mask in original image pixels (`area_px` always, `mask` as
 * RLE unless `masks` is `none`). At most `max_det` detections, so at most that many masks.
 */
export function segmentImage(
  model: ReadyModel,
  output: Float32Array,
  dims: readonly number[],
  batchIndex: number,
  letterbox: Letterbox,
  options: CandidateOptions & { masks?: MaskEncoding | undefined },
): Detection[] {
  const { manifest } = model;
  const numClasses = manifest.labels.length;
  const protoOut = extraOutputsOf(output)[0];
  if (!protoOut) throw new Errors.INFERENCE_FAILED('the segmentation model returned no mask prototypes');
  const [, channels = 0, height = 0, width = 0] = protoOut.dims;
  const protos = { data: protoOut.data, offset: batchIndex * channels * height * width, channels, height, width };
  const offset = batchIndex * dims.slice(1).reduce((a, b) => a * b, 1);
  const candidates = decodeSegment(output, offset, dims, numClasses, options.conf ?? manifest.conf);
  const kept = nonMaxSuppression(candidates, {
    iouThreshold: options.iou ?? manifest.iou,
    maxDetections: options.maxDetections ?? manifest.max_detections,
    agnostic: options.agnostic ?? manifest.agnostic_nms,
  }) as SegmentCandidate[];
  const detections: Detection[] = [];
  for (const c of kept) {
    const box = unletterboxBox(c, letterbox);
    if (box.x2 - box.x1 <= 0 || box.y2 - box.y1 <= 0) continue;
    const pixels = detectionMask(maskCoefficients(output, offset, dims, numClasses, c.anchor), protos, box, letterbox);
    detections.push({
      label: manifest.labels[c.classId]!,
      class_id: c.classId,
      score: round(c.score, 4),
      box: { x1: round(box.x1, 2), y1: round(box.y1, 2), x2: round(box.x2, 2), y2: round(box.y2, 2) },
      ...(options.masks === 'none' ? {} : { mask: encodeRle(pixels) }),
      area_px: pixels.area,
    });
  }
  return detections;
}
