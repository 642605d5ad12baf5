import type { ExtraOutput } from '../extra-outputs.js';
import type { ModelManifest, OutputFormat } from '../model-manifest.js';
import { taskFromOutputs, type ModelTask, type OutputShape } from '../task.js';
import { resolveFormat } from './decoders.js';

/** What a loaded model's outputs hold and how to read them. */
export interface ModelLayout {
  task: ModelTask;
  /** True when the task came from the outputs, not from model.json. */
  taskDetected: boolean;
  /** The box layout: `yolov8` for segmentation (its first rows), unused by classification. */
  format: OutputFormat;
  formatDetected: boolean;
}

/**
 * The task (model.json `task`, else the declared outputs) and, for boxes, the format,
 * checked against the shapes a warm-up run returned. Throws a reason a user can act on.
 */
export function resolveLayout(
  manifest: Pick<ModelManifest, 'task' | 'format' | 'labels'>,
  declared: readonly OutputShape[],
  dims: readonly number[],
  extra: readonly ExtraOutput[],
): ModelLayout {
  const task = manifest.task ?? taskFromOutputs(declared);
  const taskDetected = manifest.task === undefined;
  const classes = manifest.labels.length;
  const shape = `[${dims.join(', ')}]`;
  if (task === 'classify') {
    if (dims.length !== 2 || dims[1] !== classes)
      throw new Error(`output shape ${shape} does not fit a classifier with ${classes} labels (expected [N, ${classes}])`);
    return { task, taskDetected, format: 'yolov8', formatDetected: false };
  }
  if (task === 'segment') {
    if (manifest.format !== undefined && manifest.format !== 'yolov8') throw new Error(`a segment model has the yolov8 layout, not "${manifest.format}"`);
    const channels = dims.length === 3 ? dims[1]! - 4 - classes : 0;
    const protos = extra[0]?.dims ?? [];
    if (channels < 1) throw new Error(`output shape ${shape} does not fit a segmentation model with ${classes} labels (expected [N, 4+${classes}+M, A])`);
    if (protos.length !== 4 || protos[1] !== channels) {
      throw new Error(`second output [${protos.join(', ')}] does not hold ${channels} mask prototypes (expected [N, ${channels}, H, W])`);
    }
    return { task, taskDetected, format: 'yolov8', formatDetected: false };
  }
  const { format, detected } = resolveFormat(manifest.format, dims, classes);
  return { task, taskDetected, format, formatDetected: detected };
}
