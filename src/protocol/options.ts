/**
 * The wire contract of request options: what a caller may put in the query of
 * POST /v1/detect and POST /v1/jobs, in a stream frame's header and in a tus
 * upload's metadata, and the rules each value must follow. Routes, the stream,
 * uploads and the queue read these from here, so one change reaches them all.
 */
import { Type, type Static } from '@sinclair/typebox';

/** A line name: what results, metrics and subscriptions are grouped by. */
export const LINE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
/** `name` or `name:version`. */
export const MODEL_REF_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$';
/** The line of a request that names none. */
export const DEFAULT_LINE = 'default';
/** A camera name (a line's station or sensor): the same characters as a line. */
export const CAMERA_PATTERN = LINE_PATTERN;
/** The camera of a request that names none. */
export const DEFAULT_CAMERA = 'default';

/** Admission order, first to last: under overload lower priorities wait or are refused first. */
export const PRIORITIES = ['high', 'normal', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];

/**
 * Tiled inference of a large image: `auto` tiles when the image is much larger than
 * the model input (the model's `tiling` rule), `on` always, `off` never (one
 * letterboxed view, the behaviour without tiling).
 */
export const TILING_MODES = ['auto', 'on', 'off'] as const;
export type TilingMode = (typeof TILING_MODES)[number];

/**
 * How a segmentation model's masks are answered (docs/models.md#task-types): `rle`
 * (run-length encoded over the box, the default) or `none` (only `area_px`).
 */
export const MASK_ENCODINGS = ['rle', 'none'] as const;
export type MaskEncoding = (typeof MASK_ENCODINGS)[number];
/** Largest `top_k`: a classification model answers at most this many classes. */
export const MAX_TOP_K = 100;

/** Largest source_width / source_height: libvips' own limit on an image side. */
export const MAX_SOURCE_SIDE = 65_535;

/** Detection options, as the query of /v1/detect and /v1/jobs (and the keys of a frame header or upload metadata). */
export function detectQuerySchema(maxDetectionsLimit: number) {
  return Type.Object(
    {
      line: Type.Optional(Type.String({ pattern: LINE_PATTERN })),
      camera: Type.Optional(Type.String({ pattern: CAMERA_PATTERN })),
      model: Type.Optional(Type.String({ pattern: MODEL_REF_PATTERN })),
      conf: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
      iou: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
      max_det: Type.Optional(Type.Integer({ minimum: 1, maximum: maxDetectionsLimit })),
      agnostic: Type.Optional(Type.Boolean()),
      priority: Type.Optional(Type.Union(PRIORITIES.map((p) => Type.Literal(p)))),
      source_width: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_SOURCE_SIDE })),
      source_height: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_SOURCE_SIDE })),
      tiling: Type.Optional(Type.Union(TILING_MODES.map((m) => Type.Literal(m)))),
      top_k: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TOP_K })),
      masks: Type.Optional(Type.Union(MASK_ENCODINGS.map((m) => Type.Literal(m)))),
    },
    { additionalProperties: false },
  );
}
export type DetectQuery = Static<ReturnType<typeof detectQuerySchema>>;

/**
 * The inference options of POST /v1/detect, POST /v1/jobs, uploads and stream frames,
 * spelled as on the wire (the query parameters): detectQuerySchema's fields, documented.
 */
export interface InferenceOptions {
  /** Production line id (1–64 of `A–Z a–z 0–9 . _ -`); default `default`. */
  line?: string;
  /** Camera of that line (same characters as a line); default `default`. */
  camera?: string;
  /** `name` or `name:version`; default: the server's default model. */
  model?: string;
  /** Lowest score kept, in [0, 1]; default: the model's. */
  conf?: number;
  /** NMS IoU threshold, in [0, 1]; default: the model's. */
  iou?: number;
  /** At most this many detections (up to the server's `max_detections_limit`). */
  max_det?: number;
  /** Class-agnostic NMS. */
  agnostic?: boolean;
  /** Admission order under load; default `normal`. */
  priority?: Priority;
  /**
   * The size of the original image when the body is a copy scaled down at the edge
   * (same aspect ratio; both or neither): boxes and `image` are answered in the
   * original's pixels (docs/sdk.md#edge-resize).
   */
  source_width?: number;
  source_height?: number;
  /**
   * Tiled inference of a large image (docs/models.md#tiled-inference): `auto`, `on` or
   * `off`; default: the model's `tiling` (off for a model without one).
   */
  tiling?: TilingMode;
  /** Classification models: the classes answered, most probable first (1–100); default 5. */
  top_k?: number;
  /** Segmentation models: `rle` (default) answers each detection's mask, `none` only its `area_px`. */
  masks?: MaskEncoding;
}

type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;
/** Compile-time check: the schema and the documented interface name the same fields with the same types (the build fails when they drift). */
export type InferenceOptionsMatchSchema = Assert<Same<DetectQuery, InferenceOptions>>;

/** Every inference option's name: what the SDK sends as query parameters and an upload as metadata keys. */
export const INFERENCE_OPTION_KEYS = [
  'line',
  'camera',
  'model',
  'conf',
  'iou',
  'max_det',
  'agnostic',
  'priority',
  'source_width',
  'source_height',
  'tiling',
  'top_k',
  'masks',
] as const;
/** Compile-time check: the list names every option, and only options. */
export type InferenceOptionKeysComplete = Assert<Same<(typeof INFERENCE_OPTION_KEYS)[number], keyof InferenceOptions>>;

/** Upper bound of a request's own deadline (X-Request-Timeout-Ms, a frame's timeout_ms). */
export const MAX_REQUEST_TIMEOUT_MS = 3_600_000;
/** Headers are open (clients send many); only the deadline header is checked. */
export const DetectHeadersSchema = Type.Object({
  'x-request-timeout-ms': Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_REQUEST_TIMEOUT_MS })),
});
export type DetectHeaders = Static<typeof DetectHeadersSchema>;
