/**
 * What a model does, read from its outputs (docs/models.md#task-types): `detect`
 * (boxes: yolov8, yolov5, end2end), `classify` (one `[N, C]` output of class scores,
 * e.g. YOLOv8-cls) or `segment` (YOLOv8-seg: `[N, 4+C+M, A]` boxes with M mask
 * coefficients, and `[N, M, H/4, W/4]` mask prototypes). model.json `task` overrides it.
 */
export const MODEL_TASKS = ['detect', 'classify', 'segment'] as const;
export type ModelTask = (typeof MODEL_TASKS)[number];

/** The rank of each declared output is enough: a dynamic axis is a string but still an axis. */
export interface OutputShape {
  shape: readonly (number | string)[];
}

/**
 * Exactly one output, 2-D: classification; exactly two, 3-D then 4-D (as YOLOv8-seg
 * exports them): segmentation; anything else: detection from the first output.
 */
export function taskFromOutputs(outputs: readonly OutputShape[]): ModelTask {
  if (outputs.length === 1 && outputs[0]!.shape.length === 2) return 'classify';
  if (outputs.length === 2 && outputs[0]!.shape.length === 3 && outputs[1]!.shape.length === 4) return 'segment';
  return 'detect';
}

/** How many outputs a run must return for the task: only segmentation needs more than the first. */
export function outputsNeeded(task: ModelTask): number {
  return task === 'segment' ? 2 : 1;
}
