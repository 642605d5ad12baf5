import { readFile } from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { TILING_MODES } from '../protocol/options.js';
import type { QualityMeasure } from '../config/quality-overrides.js';
import { MODEL_TASKS } from './task.js';
import { VerdictRuleSchema, checkRules } from '../verdict/rules.js';

export const OUTPUT_FORMATS = ['yolov8', 'yolov5', 'end2end'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Bounds of one image-quality measure (either may be left out). */
const QualityBoundsSchema = Type.Object({ min: Type.Optional(Type.Number()), max: Type.Optional(Type.Number()) }, { additionalProperties: false });

/** The `tiling` block of model.json; every field has a default. */
export const TilingSchema = Type.Object(
  {
    /** What a request that names no `tiling` gets. */
    mode: Type.Union(
      TILING_MODES.map((m) => Type.Literal(m)),
      { default: 'auto' },
    ),
    /** `auto` tiles when both image sides exceed this many times the input's (the short side decides). */
    min_ratio: Type.Number({ minimum: 1, maximum: 100, default: 2 }),
    /** Least share of a tile that its neighbour also covers, so that most objects lie whole in one tile. */
    overlap: Type.Number({ minimum: 0, maximum: 0.75, default: 0.2 }),
    /** Image pixels per model-input pixel in a tile: 1 is native resolution; larger covers more per tile, downscaled. */
    scale: Type.Number({ minimum: 1, maximum: 64, default: 1 }),
    /** Also run the whole image letterboxed to the input, for objects larger than a tile. */
    full_view: Type.Boolean({ default: true }),
    /** At most this many tiles (the full view aside): a larger image gets a larger scale instead. */
    max_tiles: Type.Integer({ minimum: 1, maximum: 256, default: 64 }),
  },
  { additionalProperties: false },
);
export type TilingSettings = Static<typeof TilingSchema>;

/** The schema of `models/<name>/<version>/model.json`. */
export const ModelManifestSchema = Type.Object(
  {
    description: Type.Optional(Type.String()),
    /** Output layout; omitted means "detect from the output shape". */
    format: Type.Optional(Type.Union(OUTPUT_FORMATS.map((f) => Type.Literal(f)))),
    /** detect, classify or segment; omitted means "read it from the outputs" (docs/models.md#task-types). */
    task: Type.Optional(Type.Union(MODEL_TASKS.map((t) => Type.Literal(t)))),
    input: Type.Optional(
      Type.Object(
        {
          name: Type.Optional(Type.String({ minLength: 1 })),
          width: Type.Optional(Type.Integer({ minimum: 1, maximum: 8192 })),
          height: Type.Optional(Type.Integer({ minimum: 1, maximum: 8192 })),
        },
        { additionalProperties: false },
      ),
    ),
    labels: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    conf: Type.Number({ minimum: 0, maximum: 1, default: 0.25 }),
    iou: Type.Number({ minimum: 0, maximum: 1, default: 0.45 }),
    max_detections: Type.Integer({ minimum: 1, default: 300 }),
    agnostic_nms: Type.Boolean({ default: false }),
    /**
     * Tiled inference of large images (docs/models.md#tiled-inference). Without this
     * block a model is not tiled unless a request asks (`tiling=auto|on`), with these defaults.
     */
    tiling: Type.Optional(TilingSchema),
    /**
     * `ng`: NG when any detection of a listed label reaches that label's score threshold.
     * `rules`: NG by label, score, size (px or mm), count and region (docs/models.md#verdict-rules).
     */
    verdict: Type.Object(
      {
        ng: Type.Record(Type.String(), Type.Number({ minimum: 0, maximum: 1 })),
        rules: Type.Optional(Type.Array(VerdictRuleSchema)),
      },
      { additionalProperties: false, default: { ng: {} } },
    ),
    /**
     * The image-quality envelope the model was trained in (scripts/quality-envelope.ts
     * measures it): an image outside it is never `ok`, it is `check`
     * (docs/models.md#image-quality-gate). Left out: no gate.
     */
    quality: Type.Optional(
      Type.Object(
        {
          sharpness: Type.Optional(QualityBoundsSchema),
          brightness: Type.Optional(QualityBoundsSchema),
          contrast: Type.Optional(QualityBoundsSchema),
          dark_fraction: Type.Optional(QualityBoundsSchema),
          bright_fraction: Type.Optional(QualityBoundsSchema),
        } satisfies Record<QualityMeasure, unknown>,
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type ModelManifest = Static<typeof ModelManifestSchema>;

/** Reads and validates a model.json; throws an Error naming the first bad field. */
export async function readModelManifest(path: string): Promise<ModelManifest> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  const manifest = Value.Default(ModelManifestSchema, raw);
  const firstError = Value.Errors(ModelManifestSchema, manifest).First();
  if (firstError) {
    throw new Error(`invalid model.json: ${firstError.path || '(root)'} ${firstError.message}`);
  }
  const checked = manifest as ModelManifest;
  for (const label of Object.keys(checked.verdict.ng)) {
    if (!checked.labels.includes(label)) {
      throw new Error(`invalid model.json: verdict.ng names "${label}", which is not among the labels`);
    }
  }
  try {
    checkRules(checked.verdict.rules ?? [], checked.labels);
  } catch (err) {
    throw new Error(`invalid model.json: ${(err as Error).message}`);
  }
  return checked;
}
