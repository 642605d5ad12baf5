import type { Letterbox } from '../letterbox.js';
import type { Box, Mask } from '../../protocol/results.js';
import type { Candidate } from './nms.js';

/** A box candidate of a segmentation model, with the anchor its mask coefficients are read from. */
export interface SegmentCandidate extends Candidate {
  anchor: number;
}

/**
 * YOLOv8-seg boxes `[N, 4+C+M, A]`: the yolov8 rows (cx, cy, w, h, C class scores)
 * then M mask coefficients per anchor. Like the yolov8 decoder, plus the anchor.
 */
export function decodeSegment(data: Float32Array, offset: number, dims: readonly number[], numClasses: number, conf: number): SegmentCandidate[] {
  const anchors = dims[2]!;
  const out: SegmentCandidate[] = [];
  for (let a = 0; a < anchors; a++) {
    let score = 0;
    let classId = 0;
    for (let c = 0; c < numClasses; c++) {
      const s = data[offset + (4 + c) * anchors + a]!;
      if (s > score) {
        score = s;
        classId = c;
      }
    }
    if (score < conf || score <= 0) continue;
    const cx = data[offset + a]!;
    const cy = data[offset + anchors + a]!;
    const w = data[offset + 2 * anchors + a]!;
    const h = data[offset + 3 * anchors + a]!;
    out.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score, classId, anchor: a });
  }
  return out;
}

/** One image's mask prototypes: M planes of height × width, at (usually) a quarter of the input size. */
export interface Prototypes {
  data: Float32Array;
  offset: number;
  channels: number;
  height: number;
  width: number;
}

/** The mask coefficients of one anchor (the M rows after the class scores). */
export function maskCoefficients(data: Float32Array, offset: number, dims: readonly number[], numClasses: number, anchor: number): Float32Array {
  const anchors = dims[2]!;
  const channels = dims[1]! - 4 - numClasses;
  const coeffs = new Float32Array(channels);
  for (let k = 0; k < channels; k++) coeffs[k] = data[offset + (4 + numClasses + k) * anchors + anchor]!;
  return coeffs;
}

export interface PixelMask {
  /** The region of whole original-image pixels that holds the box. */
  x: number;
  y: number;
  width: number;
  height: number;
  /** 1 per mask pixel, row-major over the region. */
  bits: Uint8Array;
  /** Mask pixels. */
  area: number;
}

/** Where each pixel column (or row) of the region samples the prototype grid: bilinear cells and weight. */
function axisSamples(start: number, count: number, lo: number, hi: number, scale: number, pad: number, toProto: number, cells: number) {
  const inside = new Uint8Array(count);
  const c0 = new Int32Array(count);
  const c1 = new Int32Array(count);
  const frac = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const centre = start + i + 0.5;
    inside[i] = centre >= lo && centre < hi ? 1 : 0;
    // Original pixel centre → letterboxed input → prototype grid (cell centres at +0.5).
    const p = Math.min(Math.max((pad + centre * scale) * toProto - 0.5, 0), cells - 1);
    const f = Math.floor(p);
    c0[i] = f;
    c1[i] = Math.min(f + 1, cells - 1);
    frac[i] = p - f;
  }
  return { inside, c0, c1, frac };
}

/**
 * The mask of one detection in original image pixels: the prototypes weighted by
 * its coefficients (the mask logit, at prototype resolution), sampled bilinearly
 * at each original pixel's centre through the letterbox (so only the image's own
 * area of the input is read, the padding never), kept where the logit is above 0
 * (sigmoid above 0.5) and the pixel's centre lies in the box. As Ultralytics'
 * process_mask, but in the original's pixels rather than the input's. Cost: M
 * multiply-adds per prototype cell under the box, plus one bilinear read per
 * original pixel of the box.
 */
export function detectionMask(coeffs: Float32Array, protos: Prototypes, box: Box, lb: Letterbox): PixelMask {
  const x = Math.max(0, Math.floor(box.x1));
  const y = Math.max(0, Math.floor(box.y1));
  const width = Math.max(0, Math.min(lb.width, Math.ceil(box.x2)) - x);
  const height = Math.max(0, Math.min(lb.height, Math.ceil(box.y2)) - y);
  const bits = new Uint8Array(width * height);
  if (width === 0 || height === 0) return { x, y, width, height, bits, area: 0 };
  const cols = axisSamples(x, width, box.x1, box.x2, lb.scaledWidth / lb.width, lb.padLeft, protos.width / lb.inputWidth, protos.width);
  const rows = axisSamples(y, height, box.y1, box.y2, lb.scaledHeight / lb.height, lb.padTop, protos.height / lb.inputHeight, protos.height);
  // The logit over the prototype cells the region reads, and no more.
  const u0 = cols.c0[0]!;
  const u1 = cols.c1[width - 1]!;
  const v0 = rows.c0[0]!;
  const v1 = rows.c1[height - 1]!;
  const gw = u1 - u0 + 1;
  const logit = new Float32Array(gw * (v1 - v0 + 1));
  const plane = protos.width * protos.height;
  for (let k = 0; k < protos.channels; k++) {
    const w = coeffs[k]!;
    if (w === 0) continue;
    const base = protos.offset + k * plane;
    for (let v = v0; v <= v1; v++) {
      const row = base + v * protos.width;
      const g = (v - v0) * gw - u0;
      for (let u = u0; u <= u1; u++) logit[g + u] = logit[g + u]! + w * protos.data[row + u]!;
    }
  }
  let area = 0;
  for (let j = 0; j < height; j++) {
    if (!rows.inside[j]) continue;
    const fv = rows.frac[j]!;
    const top = (rows.c0[j]! - v0) * gw - u0;
    const bottom = (rows.c1[j]! - v0) * gw - u0;
    for (let i = 0; i < width; i++) {
      if (!cols.inside[i]) continue;
      const fu = cols.frac[i]!;
      const a = cols.c0[i]!;
      const b = cols.c1[i]!;
      const t = logit[top + a]! * (1 - fu) + logit[top + b]! * fu;
      const d = logit[bottom + a]! * (1 - fu) + logit[bottom + b]! * fu;
      if (t * (1 - fv) + d * fv > 0) {
        bits[j * width + i] = 1;
        area++;
      }
    }
  }
  return { x, y, width, height, bits, area };
}

/**
 * Uncompressed run-length encoding of a mask over its region, row-major: `counts`
 * alternates runs of background and mask pixels, starting with background (a first
 * count of 0 when the region starts with a mask pixel); they sum to width × height.
 */
export function encodeRle(mask: PixelMask): Mask {
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (const bit of mask.bits) {
    if (bit === current) {
      run++;
    } else {
      counts.push(run);
      current = bit;
      run = 1;
    }
  }
  counts.push(run);
  return { x: mask.x, y: mask.y, width: mask.width, height: mask.height, counts };
}

/** The mask pixels of an RLE (for tests and clients: the inverse of encodeRle). */
export function decodeRle(rle: Mask): Uint8Array {
  const bits = new Uint8Array(rle.width * rle.height);
  let at = 0;
  for (const [i, run] of rle.counts.entries()) {
    if (i % 2 === 1) bits.fill(1, at, at + run);
    at += run;
  }
  return bits;
}
