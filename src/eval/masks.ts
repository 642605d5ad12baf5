import { decodeRle, type PixelMask } from '../inference/postprocess/segment.js';

/** A detection's `mask` as answered (src/protocol/results.ts): RLE over a region. */
type Rle = Parameters<typeof decodeRle>[0];

// Mask IoU for `sightline eval` of segmentation models (docs/models.md#task-types):
// ground-truth polygons (YOLO-seg labels) and predicted masks as pixel sets.

/** A mask as whole pixels over a region of the image, row-major: the shape the segment decoder gives. */
export type RegionMask = PixelMask;

/**
 * The pixels of a polygon (points in image pixels, x0 y0 x1 y1 …) whose centre lies
 * inside it (even-odd rule), as a region mask clipped to the image.
 */
export function rasterizePolygon(points: readonly number[], imageWidth: number, imageHeight: number): RegionMask {
  const n = Math.floor(points.length / 2);
  let minX = Number.POSITIVE_INFINITY;
  let minY = Number.POSITIVE_INFINITY;
  let maxX = Number.NEGATIVE_INFINITY;
  let maxY = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    minX = Math.min(minX, points[2 * i]!);
    maxX = Math.max(maxX, points[2 * i]!);
    minY = Math.min(minY, points[2 * i + 1]!);
    maxY = Math.max(maxY, points[2 * i + 1]!);
  }
  const x = Math.max(0, Math.floor(minX));
  const y = Math.max(0, Math.floor(minY));
  const width = n < 3 ? 0 : Math.max(0, Math.min(imageWidth, Math.ceil(maxX)) - x);
  const height = n < 3 ? 0 : Math.max(0, Math.min(imageHeight, Math.ceil(maxY)) - y);
  const bits = new Uint8Array(width * height);
  let area = 0;
  const crossings: number[] = [];
  for (let j = 0; j < height; j++) {
    const cy = y + j + 0.5;
    crossings.length = 0;
    for (let i = 0; i < n; i++) {
      const x1 = points[2 * i]!;
      const y1 = points[2 * i + 1]!;
      const x2 = points[(2 * i + 2) % (2 * n)]!;
      const y2 = points[(2 * i + 3) % (2 * n)]!;
      // Half-open in y, so a vertex shared by two edges counts once.
      if (y1 <= cy !== y2 <= cy) crossings.push(x1 + ((cy - y1) / (y2 - y1)) * (x2 - x1));
    }
    crossings.sort((a, b) => a - b);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      // Pixels whose centre x + 0.5 lies in [from, to).
      const from = Math.max(0, Math.ceil(crossings[k]! - 0.5) - x);
      const to = Math.min(width, Math.ceil(crossings[k + 1]! - 0.5) - x);
      for (let i = from; i < to; i++) {
        if (!bits[j * width + i]) area++;
        bits[j * width + i] = 1;
      }
    }
  }
  return { x, y, width, height, bits, area };
}

/** A predicted mask (RLE over its region) as a region mask. */
export function fromRle(rle: Rle): RegionMask {
  const bits = decodeRle(rle);
  let area = 0;
  for (const b of bits) area += b;
  return { x: rle.x, y: rle.y, width: rle.width, height: rle.height, bits, area };
}

/** Intersection over union of two region masks. */
export function maskIou(a: RegionMask, b: RegionMask): number {
  const x1 = Math.max(a.x, b.x);
  const y1 = Math.max(a.y, b.y);
  const x2 = Math.min(a.x + a.width, b.x + b.width);
  const y2 = Math.min(a.y + a.height, b.y + b.height);
  let inter = 0;
  for (let y = y1; y < y2; y++) {
    const ra = (y - a.y) * a.width - a.x;
    const rb = (y - b.y) * b.width - b.x;
    for (let x = x1; x < x2; x++) if (a.bits[ra + x] && b.bits[rb + x]) inter++;
  }
  const union = a.area + b.area - inter;
  return union > 0 ? inter / union : 0;
}
