import { performance } from 'node:perf_hooks';
import { Errors } from '../errors.js';
import { openImage, prepareOpened, type OpenedImage } from './preprocess.js';
import { letterboxGeometry, unletterboxBox, type Letterbox } from './letterbox.js';
import { imageCandidates } from './postprocess/candidates.js';
import { planTiles, shouldTile, tilingFor, type TilePlan } from './tiling.js';
import { detectTiled } from './tiled-detect.js';
import type { ReadyModel } from './repository.js';
import type { Priority, TilingMode } from '../protocol/options.js';
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
  /** The original's size when `bytes` is a copy scaled down at the edge: boxes are mapped to it. */
  sourceSize?: { width: number; height: number } | undefined;
  /** Sees the letterboxed input before it goes to the worker thread (the image-quality gate measures it; the buffer is transferred at submit). */
  onPrepared?: ((pixels: Uint8Array, letterbox: Letterbox) => void) | undefined;
  /** Tiled inference of a large image (docs/models.md#tiled-inference); default: the model's `tiling`. */
  tiling?: TilingMode | undefined;
}

/** What the pipeline knows of a result; the caller adds request id, line and model. */
export type DetectionOutcome = Pick<DetectionResult, 'image' | 'detections' | 'verdict' | 'timings_ms' | 'tiles'>;

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
  const kept = imageCandidates(model, output, dims, batchIndex, options);
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
 * The letterbox of an image scaled down from `source` at the edge, as if the
 * original had been sent: unletterboxBox scales by scaled ÷ original size, so
 * with the original's size in place boxes come out in the original's pixels.
 * The received image must have the source's aspect ratio, within the one pixel
 * its rounding may cost, and must not be larger than it.
 */
export function fromSource(lb: Letterbox, source: { width: number; height: number }): Letterbox {
  const { width, height } = source;
  const slack = Math.max(width / lb.width, height / lb.height);
  if (width < lb.width || height < lb.height || Math.abs(width * lb.height - height * lb.width) > slack * Math.max(lb.width, lb.height)) {
    throw new Errors.INVALID_REQUEST(
      `source_width × source_height ${width}×${height} is not the original of a ${lb.width}×${lb.height} image (same aspect ratio, not smaller)`,
    );
  }
  return { ...lb, width, height };
}

/**
 * The tiles of this request, or undefined for one letterboxed view: decided on the
 * header alone, before any pixel is decoded. `off` (the default of a model without a
 * `tiling` block) never tiles, so such a request takes exactly the one-view path.
 */
function tilePlanOf(model: ReadyModel, opened: OpenedImage, options: DetectOptions): TilePlan | undefined {
  const settings = tilingFor(model.manifest.tiling, options.tiling);
  const { width, height } = opened.header;
  if (!shouldTile(settings, width, height, model.inputWidth, model.inputHeight)) return undefined;
  // Edge resize: refused here as on the one-view path when the source is not this image's original.
  if (options.sourceSize) fromSource(letterboxGeometry(width, height, model.inputWidth, model.inputHeight), options.sourceSize);
  return planTiles(width, height, model.inputWidth, model.inputHeight, settings);
}

/**
 * The whole single-image path: admission (before any decoding), decode +
 * letterbox, the model's batcher, decode + NMS, verdict. A large image whose
 * request or model asks for tiling takes the tiled path instead (tiled-detect.ts).
 */
export async function detect(model: ReadyModel, bytes: Buffer, options: DetectOptions): Promise<DetectionOutcome> {
  const t0 = performance.now();
  if (bytes.length === 0) throw new Errors.EMPTY_BODY();
  const admission = model.batcher.admit(options.priority ?? 'normal', options.deadline);
  let opened: OpenedImage;
  let plan: TilePlan | undefined;
  try {
    opened = await openImage(bytes, options.maxPixels);
    plan = tilePlanOf(model, opened, options);
  } catch (err) {
    admission.release();
    throw err;
  }
  if (plan) {
    const tiled = await detectTiled(model, opened, plan, admission, options, t0);
    return { ...tiled, verdict: verdictOf(model, tiled.detections) };
  }
  let prepared;
  let letterbox;
  try {
    prepared = await prepareOpened(opened, { inputWidth: model.inputWidth, inputHeight: model.inputHeight });
    letterbox = options.sourceSize ? fromSource(prepared.letterbox, options.sourceSize) : prepared.letterbox;
    options.onPrepared?.(prepared.pixels, prepared.letterbox);
  } catch (err) {
    admission.release();
    throw err;
  }
  const t1 = performance.now();
  const run = await admission.submit(prepared.pixels);
  const t2 = performance.now();
  const detections = postprocess(model, run.output, run.dims, run.index, letterbox, options);
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
    image: { width: letterbox.width, height: letterbox.height },
    detections,
    verdict,
    timings_ms: timings,
  };
}
