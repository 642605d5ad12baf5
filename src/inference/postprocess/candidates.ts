import type { ModelManifest, OutputFormat } from '../model-manifest.js';
import { DECODERS, NMS_IN_MODEL } from './decoders.js';
import { nonMaxSuppression, type Candidate } from './nms.js';

/** Per-request overrides of the model's post-processing settings. */
export interface CandidateOptions {
  conf?: number | undefined;
  iou?: number | undefined;
  maxDetections?: number | undefined;
  agnostic?: boolean | undefined;
}

/** Post-processing settings with the model's defaults filled in: what a worker thread needs to decode. */
export interface CandidateSettings {
  conf: number;
  iou: number;
  maxDetections: number;
  agnostic: boolean;
}

/** The request's overrides over the model's model.json settings. */
export function candidateSettings(
  manifest: Pick<ModelManifest, 'conf' | 'iou' | 'max_detections' | 'agnostic_nms'>,
  options: CandidateOptions,
): CandidateSettings {
  return {
    conf: options.conf ?? manifest.conf,
    iou: options.iou ?? manifest.iou,
    maxDetections: options.maxDetections ?? manifest.max_detections,
    agnostic: options.agnostic ?? manifest.agnostic_nms,
  };
}

/**
 * The boxes one image of a batch output keeps, in letterboxed input pixels: decoded
 * at the confidence threshold, then NMS (unless the model ran it), highest score
 * first, at most maxDetections. Shared by the single view and by each tile, and run
 * either here or in the model's worker thread (candidatesOf).
 */
export function imageCandidates(
  model: { manifest: ModelManifest; format: OutputFormat },
  output: Float32Array,
  dims: readonly number[],
  batchIndex: number,
  options: CandidateOptions,
): Candidate[] {
  return candidatesOf(model.format, model.manifest.labels.length, output, dims, batchIndex, candidateSettings(model.manifest, options));
}

/** imageCandidates on plain values: what the worker thread runs on its own output. */
export function candidatesOf(
  format: OutputFormat,
  numClasses: number,
  output: Float32Array,
  dims: readonly number[],
  batchIndex: number,
  settings: CandidateSettings,
): Candidate[] {
  const perImage = dims.slice(1).reduce((a, b) => a * b, 1);
  const candidates = DECODERS[format](output, batchIndex * perImage, dims, numClasses, settings.conf);
  return NMS_IN_MODEL[format]
    ? candidates.sort((a, b) => b.score - a.score).slice(0, settings.maxDetections)
    : nonMaxSuppression(candidates, { iouThreshold: settings.iou, maxDetections: settings.maxDetections, agnostic: settings.agnostic });
}
