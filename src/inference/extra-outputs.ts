/**
 * The outputs of a run beyond the first (a segmentation model's mask prototypes),
 * kept beside the first output's buffer. The batcher hands every request of a batch
 * the first output's Float32Array as it came from the runner; these ride along
 * with that same object, so the detection path (one output) carries nothing extra
 * and no layer between the runner and the decoder needs to know about them.
 */
export interface ExtraOutput {
  dims: number[];
  data: Float32Array;
}

const extras = new WeakMap<Float32Array, ExtraOutput[]>();

/** Called by a runner when a run returned more than one output. */
export function attachExtraOutputs(first: Float32Array, rest: ExtraOutput[]): void {
  if (rest.length > 0) extras.set(first, rest);
}

/** The outputs after the first that came with this run's first output (empty when none). */
export function extraOutputsOf(first: Float32Array): readonly ExtraOutput[] {
  return extras.get(first) ?? [];
}
