import type { OutputFormat } from '../model-manifest.js';
import type { Candidate } from './nms.js';

/**
 * Decoders turn one image's slice of a raw detector output into candidate boxes in
 * letterboxed input pixels, keeping those whose score reaches `conf`.
 */
export type Decoder = (data: Float32Array, offset: number, dims: readonly number[], numClasses: number, conf: number) => Candidate[];

/** Ultralytics v8/v11: [N, 4+C, A]; rows cx, cy, w, h, then C sigmoid class scores. */
const decodeYolov8: Decoder = (data, offset, dims, numClasses, conf) => {
  const anchors = dims[2]!;
  const bestScore = new Float32Array(anchors);
  const bestClass = new Int32Array(anchors);
  // Row-major walk (one class row at a time) keeps memory access sequential.
  for (let c = 0; c < numClasses; c++) {
    const row = offset + (4 + c) * anchors;
    for (let a = 0; a < anchors; a++) {
      const score = data[row + a]!;
      if (score > bestScore[a]!) {
        bestScore[a] = score;
        bestClass[a] = c;
      }
    }
  }
  const out: Candidate[] = [];
  for (let a = 0; a < anchors; a++) {
    const score = bestScore[a]!;
    if (score < conf || score <= 0) continue;
    const cx = data[offset + a]!;
    const cy = data[offset + anchors + a]!;
    const w = data[offset + 2 * anchors + a]!;
    const h = data[offset + 3 * anchors + a]!;
    out.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score, classId: bestClass[a]! });
  }
  return out;
};

/** YOLOv5 family: [N, A, 5+C]; cx, cy, w, h, objectness, then C class scores. */
const decodeYolov5: Decoder = (data, offset, dims, numClasses, conf) => {
  const anchors = dims[1]!;
  const stride = dims[2]!;
  const out: Candidate[] = [];
  for (let a = 0; a < anchors; a++) {
    const base = offset + a * stride;
    const objectness = data[base + 4]!;
    if (objectness < conf) continue;
    let best = -1;
    let bestClass = 0;
    for (let c = 0; c < numClasses; c++) {
      const s = data[base + 5 + c]!;
      if (s > best) {
        best = s;
        bestClass = c;
      }
    }
    const score = objectness * best;
    if (score < conf || score <= 0) continue;
    const cx = data[base]!;
    const cy = data[base + 1]!;
    const w = data[base + 2]!;
    const h = data[base + 3]!;
    out.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score, classId: bestClass });
  }
  return out;
};

/** Models with NMS inside: [N, K, 6]; x1, y1, x2, y2, score, class. */
const decodeEnd2end: Decoder = (data, offset, dims, numClasses, conf) => {
  const rows = dims[1]!;
  const out: Candidate[] = [];
  for (let k = 0; k < rows; k++) {
    const base = offset + k * 6;
    const score = data[base + 4]!;
    const classId = Math.round(data[base + 5]!);
    if (score < conf || score <= 0 || classId < 0 || classId >= numClasses) continue;
    out.push({ x1: data[base]!, y1: data[base + 1]!, x2: data[base + 2]!, y2: data[base + 3]!, score, classId });
  }
  return out;
};

export const DECODERS: Record<OutputFormat, Decoder> = {
  yolov8: decodeYolov8,
  yolov5: decodeYolov5,
  end2end: decodeEnd2end,
};

/** Whether the model already ran NMS, so the server must not run it again. */
export const NMS_IN_MODEL: Record<OutputFormat, boolean> = { yolov8: false, yolov5: false, end2end: true };

/** Formats whose layout fits an output shape, for a model with `numClasses` labels. */
export function formatsMatchingShape(dims: readonly number[], numClasses: number): OutputFormat[] {
  if (dims.length !== 3) return [];
  const [, d1, d2] = dims as [number, number, number];
  const matches: OutputFormat[] = [];
  if (d1 === 4 + numClasses) matches.push('yolov8');
  if (d2 === 5 + numClasses) matches.push('yolov5');
  if (d2 === 6) matches.push('end2end');
  return matches;
}

/**
 * Picks the output format: the declared one if the shape fits it, else the only
 * format the shape fits. Throws with a reason a user can act on.
 */
export function resolveFormat(declared: OutputFormat | undefined, dims: readonly number[], numClasses: number): { format: OutputFormat; detected: boolean } {
  const matches = formatsMatchingShape(dims, numClasses);
  const shape = `[${dims.join(', ')}]`;
  if (declared) {
    if (!matches.includes(declared)) {
      throw new Error(`output shape ${shape} does not fit format "${declared}" with ${numClasses} labels`);
    }
    return { format: declared, detected: false };
  }
  if (matches.length === 1) return { format: matches[0]!, detected: true };
  if (matches.length === 0) {
    throw new Error(`output shape ${shape} fits no known format (yolov8, yolov5, end2end) with ${numClasses} labels`);
  }
  throw new Error(`output shape ${shape} is ambiguous (${matches.join(' or ')}): set "format" in model.json`);
}
