import type { Box } from '../inference/letterbox.js';
import { iou } from '../inference/postprocess/nms.js';

export interface LabeledBox extends Box {
  classId: number;
}
export interface ScoredBox extends LabeledBox {
  score: number;
}
export interface ImageEvaluation {
  truths: LabeledBox[];
  predictions: ScoredBox[];
  /**
   * The overlap of each prediction with each truth ([prediction][truth]) when it is not
   * the boxes' IoU: mask IoU for segmentation (src/eval/masks.ts).
   */
  overlaps?: number[][];
}

/** COCO's IoU thresholds 0.50:0.05:0.95 (computed from integers to avoid drift). */
export const IOU_THRESHOLDS = Array.from({ length: 10 }, (_, i) => (50 + 5 * i) / 100);
const RECALL_POINTS = Array.from({ length: 101 }, (_, i) => i / 100);

export interface ClassMetrics {
  class_id: number;
  label: string;
  /** Ground-truth boxes of this class. */
  instances: number;
  /** At IoU 0.5, counting predictions whose score reaches the operating threshold. */
  precision: number;
  recall: number;
  ap50: number;
  ap50_95: number;
}

export interface DetectionMetrics {
  classes: ClassMetrics[];
  /** Means over classes that have ground truth (as COCO does). */
  mean: { precision: number; recall: number; map50: number; map50_95: number };
  images: number;
}

/**
 * Greedy COCO matching at one IoU threshold: predictions in falling score order
 * take the best-overlapping unmatched truth of their class in their image.
 * Returns, per prediction (in that order), whether it is a true positive.
 */
function matchAtThreshold(images: ImageEvaluation[], classId: number, threshold: number, minScore: number) {
  const preds: { image: number; box: ScoredBox; index: number }[] = [];
  images.forEach((img, image) => {
    for (const [index, box] of img.predictions.entries()) if (box.classId === classId && box.score >= minScore) preds.push({ image, box, index });
  });
  preds.sort((a, b) => b.box.score - a.box.score);
  const used = images.map((img) => img.truths.map(() => false));
  const truePositive = preds.map(({ image, box, index }) => {
    const { truths, overlaps } = images[image]!;
    let best = -1;
    let bestIou = threshold;
    truths.forEach((t, j) => {
      if (t.classId !== classId || used[image]![j]) return;
      const overlap = overlaps ? (overlaps[index]?.[j] ?? 0) : iou({ ...box }, { ...t, score: 0 });
      if (overlap >= bestIou) {
        bestIou = overlap;
        best = j;
      }
    });
    if (best >= 0) used[image]![best] = true;
    return best >= 0;
  });
  return truePositive;
}

/** 101-point interpolated average precision from TP flags in score order. */
export function averagePrecision(truePositive: boolean[], instances: number): number {
  if (instances === 0) return 0;
  const precision: number[] = [];
  const recall: number[] = [];
  let tp = 0;
  truePositive.forEach((hit, i) => {
    if (hit) tp++;
    precision.push(tp / (i + 1));
    recall.push(tp / instances);
  });
  // Precision envelope: the best precision at any recall to the right.
  for (let i = precision.length - 2; i >= 0; i--) precision[i] = Math.max(precision[i]!, precision[i + 1]!);
  let sum = 0;
  let k = 0;
  for (const r of RECALL_POINTS) {
    while (k < recall.length && recall[k]! < r) k++;
    sum += k < recall.length ? precision[k]! : 0;
  }
  return sum / RECALL_POINTS.length;
}

/**
 * Per-class precision, recall, AP50 and AP50-95 and their means. `operatingScore`
 * is the confidence at which precision and recall are reported (the model's conf).
 */
export function evaluateDetections(images: ImageEvaluation[], labels: string[], operatingScore: number): DetectionMetrics {
  const classes: ClassMetrics[] = labels.map((label, classId) => {
    const instances = images.reduce((n, img) => n + img.truths.filter((t) => t.classId === classId).length, 0);
    const aps = IOU_THRESHOLDS.map((t) => averagePrecision(matchAtThreshold(images, classId, t, -Infinity), instances));
    const atOperating = matchAtThreshold(images, classId, 0.5, operatingScore);
    const tp = atOperating.filter(Boolean).length;
    return {
      class_id: classId,
      label,
      instances,
      precision: atOperating.length ? tp / atOperating.length : 0,
      recall: instances ? tp / instances : 0,
      ap50: aps[0]!,
      ap50_95: aps.reduce((a, b) => a + b, 0) / aps.length,
    };
  });
  const present = classes.filter((c) => c.instances > 0);
  const mean = (pick: (c: ClassMetrics) => number) => (present.length ? present.reduce((s, c) => s + pick(c), 0) / present.length : 0);
  return {
    classes,
    mean: { precision: mean((c) => c.precision), recall: mean((c) => c.recall), map50: mean((c) => c.ap50), map50_95: mean((c) => c.ap50_95) },
    images: images.length,
  };
}
