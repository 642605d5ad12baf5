import { Value } from '@sinclair/typebox/value';
import { DEFAULT_LINE, INFERENCE_OPTION_KEYS, detectQuerySchema, type DetectQuery, type Priority } from '../protocol/options.js';
import type { JobOptions } from '../jobs/processor.js';

/** Upload-Metadata keys that carry job options; the rules are those of /v1/detect's query. */
export const JOB_METADATA_KEYS = INFERENCE_OPTION_KEYS;
/** Informative keys: kept with the upload, never used for detection. `name`, `type` and `relativePath` are what Uppy sends. */
export const INFO_METADATA_KEYS = ['filename', 'filetype', 'name', 'type', 'relativePath'] as const;
const MAX_INFO_LENGTH = 255;
/** Strings must look like what they convert to: TypeBox would turn '1.5' into the integer 1, 'yes' into nothing. */
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const SHAPES: Record<string, { re: RegExp; what: string }> = {
  conf: { re: NUMBER, what: 'a number' },
  iou: { re: NUMBER, what: 'a number' },
  max_det: { re: /^[+-]?\d+$/, what: 'an integer' },
  agnostic: { re: /^(true|false|1|0)$/, what: 'true or false' },
};

export interface UploadJobRequest {
  line: string;
  priority: Priority;
  options: JobOptions;
}

/** A metadata problem, with the key it concerns (answered as 400 INVALID_UPLOAD). */
export class MetadataError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Checks an upload's metadata (tus values are strings, or null for a key sent
 * without a value) and returns the job it asks for. Unknown keys are refused,
 * like unknown query parameters on /v1/detect, so that a typo never goes unnoticed.
 */
export function jobRequestFromMetadata(metadata: Record<string, string | null> | undefined, maxDetectionsLimit: number): UploadJobRequest {
  const query: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(metadata ?? {})) {
    if ((INFO_METADATA_KEYS as readonly string[]).includes(key)) {
      // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point.
      if (value !== null && (value.length > MAX_INFO_LENGTH || /[\u0000-\u001f\u007f]/.test(value))) {
        throw new MetadataError(key, `Upload-Metadata "${key}" must be at most ${MAX_INFO_LENGTH} characters without control characters`);
      }
      continue;
    }
    if (!(JOB_METADATA_KEYS as readonly string[]).includes(key)) {
      throw new MetadataError(key, `unknown Upload-Metadata key "${key}" (known: ${[...JOB_METADATA_KEYS, 'filename', 'filetype'].join(', ')})`);
    }
    if (value === null || value === '') throw new MetadataError(key, `Upload-Metadata "${key}" needs a value`);
    const shape = SHAPES[key];
    if (shape && !shape.re.test(value)) throw new MetadataError(key, `Upload-Metadata "${key}" must be ${shape.what} (got ${JSON.stringify(value)})`);
    // The shapes allow exponents, and Number('1e999') is Infinity: say so rather than "out of range".
    if (shape?.re === NUMBER && !Number.isFinite(Number(value)))
      throw new MetadataError(key, `Upload-Metadata "${key}" must be a finite number (got ${JSON.stringify(value)})`);
    query[key] = value;
  }
  const schema = detectQuerySchema(maxDetectionsLimit);
  const converted = Value.Convert(schema, query) as Record<string, unknown>;
  // Value.Convert turns '1.5' into 1.5 for a number but leaves '1.5' alone for an integer.
  const error = Value.Errors(schema, converted).First();
  if (error) {
    const field = error.path.replace(/^\//, '') || 'metadata';
    throw new MetadataError(field, `Upload-Metadata "${field}": ${error.message}${field in query ? ` (got ${JSON.stringify(query[field])})` : ''}`);
  }
  const q = converted as DetectQuery;
  return {
    line: q.line ?? DEFAULT_LINE,
    priority: q.priority ?? 'normal',
    options: {
      camera: q.camera,
      model: q.model,
      conf: q.conf,
      iou: q.iou,
      max_det: q.max_det,
      agnostic: q.agnostic,
      tiling: q.tiling,
      top_k: q.top_k,
      masks: q.masks,
      source_width: q.source_width,
      source_height: q.source_height,
    },
  };
}

/**
 * Every Upload-Metadata value must be UTF-8 once base64-decoded. tus decodes
 * leniently (invalid bytes become U+FFFD, which no later check can tell from a
 * real one), so the raw header is checked here, at creation.
 */
export function checkMetadataEncoding(header: string | null | undefined): void {
  if (!header) return;
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  for (const pair of header.split(',')) {
    const [key = '', value] = pair.trim().split(' ');
    if (!value) continue;
    try {
      utf8.decode(Buffer.from(value, 'base64'));
    } catch {
      throw new MetadataError(key, `Upload-Metadata "${key.slice(0, 64)}" is not UTF-8 once base64-decoded`);
    }
  }
}

/** Upload-Metadata's wire form: `key base64(value)` pairs joined by commas. */
export function stringifyMetadata(metadata: Record<string, string | null> | undefined): string | undefined {
  if (!metadata || Object.keys(metadata).length === 0) return undefined;
  return Object.entries(metadata)
    .map(([key, value]) => (value === null ? key : `${key} ${Buffer.from(value, 'utf8').toString('base64')}`))
    .join(',');
}
