import type { ClassScore } from '../../protocol/results.js';
import { MAX_TOP_K } from '../../protocol/options.js';

export { MAX_TOP_K };
/** Classes answered when the request names no `top_k`. */
export const DEFAULT_TOP_K = 5;

/**
 * One image's class probabilities from a classification output `[N, C]`.
 * The rule for softmax: an output whose every value lies in [0, 1] is taken as
 * probabilities already (YOLOv8-cls exports its softmax; a multi-label model its
 * sigmoids); any value outside [0, 1] marks raw logits, which get a softmax.
 */
export function classProbabilities(data: Float32Array, dims: readonly number[], batchIndex: number): Float64Array {
  const classes = dims[1]!;
  const offset = batchIndex * classes;
  const probs = new Float64Array(classes);
  let logits = false;
  let max = Number.NEGATIVE_INFINITY;
  for (let c = 0; c < classes; c++) {
    const v = data[offset + c]!;
    probs[c] = v;
    if (!(v >= 0 && v <= 1)) logits = true;
    if (v > max) max = v;
  }
  if (!logits) return probs;
  let sum = 0;
  for (let c = 0; c < classes; c++) {
    probs[c] = Math.exp(probs[c]! - max);
    sum += probs[c]!;
  }
  for (let c = 0; c < classes; c++) probs[c] = probs[c]! / sum;
  return probs;
}

const round4 = (v: number) => Math.round(v * 1e4) / 1e4;

/** Every class with its probability (4 decimals), highest first; ties keep the class order. */
export function rankedClasses(probs: Float64Array, labels: readonly string[]): ClassScore[] {
  const order = Array.from(probs.keys()).sort((a, b) => probs[b]! - probs[a]! || a - b);
  return order.map((c) => ({ label: labels[c]!, class_id: c, score: round4(probs[c]!) }));
}
