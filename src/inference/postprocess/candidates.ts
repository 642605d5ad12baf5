import type { ReadyModel } from '../repository.js';
import { DECODERS, NMS_IN_MODEL } from './decoders.js';
import { nonMaxSuppression, type Candidate } from './nms.js';

/** Per-request overrides of the model's post-processing settings. */
export interface CandidateOptions {
  conf?: number | undefined;
  iou?: number | undefined;
  maxDetections?: number | undefined;
  agnostic?: boolean | undefined;
}

/**
 * The boxes one image of a batch output keeps, in letterboxed input pixels: decoded
 * at the confidence threshold, then NMS (unless the model ran it), highest score
 * first, at most maxDetections. Shared by the single view and by each tile.
 */
export function imageCandidates(
  model: Pick<ReadyModel, 'manifest' | 'format'>,
  output: Float32Array,
  dims: readonly number[],
  batchIndex: number,
  options: CandidateOptions,
): Candidate[] {
  const { manifest } = model;
  const conf = options.conf ?? manifest.conf;
  const maxDetections = options.maxDetections ?? manifest.max_detections;
  const perImage = dims.slice(1).reduce((a, b) => a * b, 1);
  const candidates = DECODERS[model.format](output, batchIndex * perImage, dims, manifest.labels.length, conf);
  return NMS_IN_MODEL[model.format]
    ? candidates.sort((a, b) => b.score - a.score).slice(0, maxDetections)
    : nonMaxSuppression(candidates, {
        iouThreshold: options.iou ?? manifest.iou,
        maxDetections,
        agnostic: options.agnostic ?? manifest.agnostic_nms,
      });
}
