/** A candidate box in letterboxed input pixels (x1, y1, x2, y2). */
export interface Candidate {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
  classId: number;
}

export function iou(a: Candidate, b: Candidate): number {
  const iw = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const ih = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return union > 0 ? inter / union : 0;
}

export interface NmsOptions {
  iouThreshold: number;
  maxDetections: number;
  /** Suppress across classes, not only within one. */
  agnostic: boolean;
}

/**
 * Greedy non-maximum suppression, highest score first. Class-wise unless
 * agnostic: a box only suppresses boxes of its own class. Candidate counts after
 * the confidence filter are small (tens to a few thousand), so the quadratic
 * worst case costs far less than a tensor op would; no library does this for
 * plain JS arrays.
 */
export function nonMaxSuppression(candidates: Candidate[], options: NmsOptions): Candidate[] {
  const sorted = [...candidates].sort((a, b) => b.score - a.score);
  const kept: Candidate[] = [];
  const suppressed = new Uint8Array(sorted.length);
  for (let i = 0; i < sorted.length && kept.length < options.maxDetections; i++) {
    if (suppressed[i]) continue;
    const box = sorted[i]!;
    kept.push(box);
    for (let j = i + 1; j < sorted.length; j++) {
      if (suppressed[j]) continue;
      const other = sorted[j]!;
      if (!options.agnostic && other.classId !== box.classId) continue;
      if (iou(box, other) > options.iouThreshold) suppressed[j] = 1;
    }
  }
  return kept;
}
