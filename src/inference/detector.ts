import { performance } from 'node:perf_hooks';
import { Errors } from '../errors.js';
import { openImage, prepareOpened, type OpenedImage } from './preprocess.js';
import { letterboxGeometry, unletterboxBox, type Letterbox } from './letterbox.js';
import { candidateSettings, imageCandidates } from './postprocess/candidates.js';
import type { Candidate } from './postprocess/nms.js';
import { planTiles, shouldTile, tilingFor, type TilePlan } from './tiling.js';
import { detectTiled } from './tiled-detect.js';
import type { ReadyModel } from './repository.js';
import type { MaskEncoding, Priority, TilingMode } from '../protocol/options.js';
import { classifyImage, segmentImage } from './task-postprocess.js';
import type { Detection, DetectionResult, StageTimings, Verdict } from '../protocol/results.js';
import { evaluateVerdict, rulesInForce } from '../verdict/evaluate.js';

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
  /** Classification models: classes answered (default 5, at most MAX_TOP_K; docs/models.md#task-types). */
  topK?: number | undefined;
  /** Segmentation models: `rle` (default) or `none` (only `area_px`). */
  masks?: MaskEncoding | undefined;
}

/** What the pipeline knows of a result; the caller adds request id, line and model. */
export type DetectionOutcome = Pick<DetectionResult, 'image' | 'detections' | 'verdict' | 'timings_ms' | 'tiles'> & Pick<Partial<DetectionResult>, 'classes'>;

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

/** Detections of one image from a raw output tensor slice, in original image pixels. */
export function postprocess(
  model: ReadyModel,
  output: Float32Array,
  dims: readonly number[],
  batchIndex: number,
  letterbox: Letterbox,
  options: Pick<DetectOptions, 'conf' | 'iou' | 'maxDetections' | 'agnostic'>,
  decoded?: readonly Candidate[],
): Detection[] {
  const { manifest } = model;
  // Decoded already in the instance's thread, or here from the output tensor.
  const kept = decoded ?? imageCandidates(model, output, dims, batchIndex, options);
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

/**
 * The model's own verdict, from model.json alone (docs/models.md#verdict-rules): `verdict.ng`
 * and `verdict.rules` without any line's scale, polygons or changes, so a rule in mm or with
 * a region that could fire is `check` here. inspect() judges again where the image came from.
 */
export function verdictOf(model: ReadyModel, detections: readonly Detection[]): Verdict {
  return evaluateVerdict(rulesInForce(model.manifest.verdict, model.manifest.labels, { overrides: [] }), detections).verdict;
}

/**
 * One image of a batch output as the model's task reads it (docs/models.md#task-types):
 * boxes (detect), boxes with masks (segment), or classes and no boxes (classify), and
 * the model's verdict. A classifier's verdict rule sees every class as a whole-image detection.
 */
export function imageOutcome(
  model: ReadyModel,
  output: Float32Array,
  dims: readonly number[],
  batchIndex: number,
  letterbox: Letterbox,
  options: Pick<DetectOptions, 'conf' | 'iou' | 'maxDetections' | 'agnostic' | 'topK' | 'masks'>,
  decoded?: readonly Candidate[],
): Pick<DetectionOutcome, 'detections' | 'classes' | 'verdict'> {
  if (model.task === 'classify') {
    const classified = classifyImage(model, output, dims, batchIndex, letterbox, options.topK);
    return { detections: [], classes: classified.top, verdict: verdictOf(model, classified.forVerdict) };
  }
  const detections =
    model.task === 'segment'
      ? segmentImage(model, output, dims, batchIndex, letterbox, options)
      : postprocess(model, output, dims, batchIndex, letterbox, options, decoded);
  return { detections, verdict: verdictOf(model, detections) };
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
  // Classes and masks of tiles do not merge: only box models are tiled.
  if ((model.task ?? 'detect') !== 'detect') return undefined;
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
  // A box model's boxes are decoded in the instance's thread (BatcherOptions.decode).
  const run = await admission.submit(prepared.pixels, (model.task ?? 'detect') === 'detect' ? candidateSettings(model.manifest, options) : undefined);
  const t2 = performance.now();
  const { detections, classes, verdict } = imageOutcome(model, run.output, run.dims, run.index, letterbox, options, run.candidates);
  const t3 = performance.now();
  const timings: StageTimings = {
    queue: round(run.queueMs, 3),
    decode: round(t1 - t0, 3),
    preprocess: round(run.preprocessMs, 3),
    infer: round(run.inferMs, 3),
    // Where the boxes were decoded in the instance's thread, that time counts here too.
    postprocess: round(t3 - t2 + (run.postprocessMs ?? 0), 3),
    total: round(t3 - t0, 3),
  };
  return {
    image: { width: letterbox.width, height: letterbox.height },
    detections,
    ...(classes ? { classes } : {}),
    verdict,
    timings_ms: timings,
  };
}
