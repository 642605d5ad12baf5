/**
 * The detection result on the wire: what POST /v1/detect answers, what a done
 * job, a stream frame and a result event carry. Defined here, not derived from
 * the store's row, so that the SDK and the server share one shape and the store
 * is free to keep more (StoredResult adds `source` and `created_at`).
 */

/** A box in original image pixels (top-left x1,y1; bottom-right x2,y2). */
export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export interface Detection {
  label: string;
  class_id: number;
  /** In [0, 1], 4 decimals. */
  score: number;
  box: Box;
  /** Segmentation models: the detection's mask (left out with `masks=none`; docs/models.md#task-types). */
  mask?: Mask;
  /** Segmentation models: mask pixels, in original image pixels. */
  area_px?: number;
}

/**
 * A segmentation mask in original image pixels: uncompressed run-length encoding
 * over the region x, y, width × height (whole pixels holding the box), row-major,
 * runs alternating background / mask and starting with background (first count 0
 * when the region starts with a mask pixel); the counts sum to width × height.
 */
export interface Mask {
  x: number;
  y: number;
  width: number;
  height: number;
  counts: number[];
}

/** A classification model's class and its probability. */
export interface ClassScore {
  label: string;
  class_id: number;
  /** Probability in [0, 1], 4 decimals. */
  score: number;
}

export const VERDICTS = ['ok', 'ng', 'check'] as const;
/**
 * `check` when the image lies outside the model's image-quality envelope
 * (blurred, badly exposed, noisy: see `quality`), whatever the model saw, so a
 * person or a new picture must decide; else `ng` when a verdict rule of the
 * model fires (by label and score, size, count, region: docs/models.md#verdict-rules),
 * `check` when one that could have fired cannot be evaluated; `ok` otherwise.
 */
export type Verdict = (typeof VERDICTS)[number];

/**
 * The image-quality measures of the model input (the letterboxed image, padding
 * aside) and why they lie outside the model's envelope; present when the model
 * has a `quality` envelope (docs/models.md#image-quality-gate).
 */
export interface ImageQuality {
  /** Variance of the Laplacian of the grey image: low is blurred, very high is noise. */
  sharpness: number;
  /** Mean grey level, 0–255. */
  brightness: number;
  /** Standard deviation of the grey level. */
  contrast: number;
  /** Share of pixels at grey ≤ 5 (clipped dark). */
  dark_fraction: number;
  /** Share of pixels at grey ≥ 250 (clipped bright). */
  bright_fraction: number;
  /** One per bound crossed, e.g. `blurred: sharpness 12.3 < 40`; empty inside the envelope. */
  reasons: string[];
}

/** The pipeline's stages, in order; `timings_ms` has one key per stage plus `total`. */
export const STAGES = ['queue', 'decode', 'preprocess', 'infer', 'postprocess'] as const;
export type Stage = (typeof STAGES)[number];
/** Milliseconds per stage and in all. */
export type StageTimings = Record<Stage | 'total', number>;

/** One inference of a tiled request: a tile at (up to) native resolution, or the downscaled full view. */
export interface TileRun {
  /** The region of the image it covers, in original image pixels (the full view covers all of it). */
  x: number;
  y: number;
  width: number;
  height: number;
  /** The downscaled view of the whole image, run beside the tiles. */
  full_view: boolean;
  /** Inference time of the batch the tile ran in: tiles batched together share it. */
  infer_ms: number;
  /** Images in that batch. */
  batch_size: number;
}

/** How a request was tiled (docs/models.md#tiled-inference); absent when it was not. */
export interface TilingSummary {
  /** Inferences run: the tiles plus the full view, if any. */
  count: number;
  /** Image pixels per model-input pixel in the tiles: 1 is native resolution. */
  scale: number;
  tiles: TileRun[];
}

export interface DetectionResult {
  /** The request's X-Request-Id; a job's result carries its job id, a stream frame's its connection and frame id. */
  request_id: string;
  line: string;
  /** The camera of that line that sent the image (`default` when the request named none). */
  camera: string;
  model: { name: string; version: string };
  image: { width: number; height: number };
  detections: Detection[];
  /** Classification models: the top classes, most probable first (`top_k`, default 5); `detections` is empty. */
  classes?: ClassScore[];
  verdict: Verdict;
  timings_ms: StageTimings;
  /** Image-quality measures and reasons; left out when the model has no quality envelope (or the line's override is `off`). */
  quality?: ImageQuality;
  /** Present only when the image was run as tiles; not kept in the result store. */
  tiles?: TilingSummary;
  /**
   * Which verdict rules made the verdict `ng` (or `check`, when a rule could not be
   * evaluated), one entry per rule (docs/models.md#verdict-rules); left out when no rule
   * fired. Not kept in the result store.
   */
  verdict_reasons?: VerdictReason[];
}

/** One verdict rule that fired (`ng`) or could not be evaluated (`check`) on a result. */
export interface VerdictReason {
  /** The rule's `name` in model.json (or the line's override); `verdict.ng` for the plain label-and-score rule. */
  rule: string;
  outcome: 'ng' | 'check';
  /** Detections that met the rule (for `check`: those whose outcome was unknown). */
  count: number;
  /** Their indices in `detections`. */
  detections: number[];
  /** For people: what was measured against what, e.g. `1 scratch: length 2.5 mm ≥ 2 mm`. */
  detail: string;
}

export const RESULT_SOURCES = ['sync', 'job', 'stream'] as const;
/** How a result came in: POST /v1/detect, a job (or upload), a /v1/stream frame. */
export type ResultSource = (typeof RESULT_SOURCES)[number];

/**
 * What a person decided about a result: `confirmed` (the detections are right),
 * `false_call` (the model flagged something that is no defect), `missed` (the
 * model missed a defect; `boxes` say where).
 */
export const REVIEW_STATUSES = ['confirmed', 'false_call', 'missed'] as const;
export type ReviewStatus = (typeof REVIEW_STATUSES)[number];

/** A box a reviewer drew or corrected: a detection without a score, in original image pixels. */
export interface ReviewBox {
  label: string;
  /** The model's class index when the label is one of its labels; left out for a new label. */
  class_id?: number;
  box: Box;
}

/** What `POST /v1/results/:id/review` takes. */
export interface ReviewInput {
  status: ReviewStatus;
  note?: string;
  /** The right boxes, when the detections were not. */
  boxes?: ReviewBox[];
}

/** A result's review as answered: the latest review replaces the one before. */
export interface Review {
  status: ReviewStatus;
  note: string | null;
  boxes: ReviewBox[] | null;
  /** The reviewer's API key name or JWT subject (`loopback` / `anonymous` without credentials). */
  reviewer: string;
  /** ISO 8601. */
  reviewed_at: string;
}

/** Limits of a review. */
export const REVIEW_MAX_BOXES = 1000;
export const REVIEW_MAX_NOTE = 2000;
export const REVIEW_MAX_LABEL = 128;
