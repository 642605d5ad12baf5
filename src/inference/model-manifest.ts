import { readFile } from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

export const OUTPUT_FORMATS = ['yolov8', 'yolov5', 'end2end'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The schema of `models/<name>/<version>/model.json`. */
export const ModelManifestSchema = Type.Object(
  {
    description: Type.Optional(Type.String()),
    /** Output layout; omitted means "detect from the output shape". */
    format: Type.Optional(Type.Union(OUTPUT_FORMATS.map((f) => Type.Literal(f)))),
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
    /** NG when any detection of a listed label reaches that label's score threshold. */
    verdict: Type.Object({ ng: Type.Record(Type.String(), Type.Number({ minimum: 0, maximum: 1 })) }, { additionalProperties: false, default: { ng: {} } }),
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
  return checked;
}
