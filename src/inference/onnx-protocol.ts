import type { ExtraOutput } from './extra-outputs.js';
import type { NamedTensor, RunCandidates, RunnerInfo, RunnerOptions } from './runner.js';
import type { Candidate } from './postprocess/nms.js';

/** Messages between OnnxRunner (main thread) and onnx-thread (the worker thread that runs the session). */
export interface OnnxThreadData {
  modelPath: string;
  options: RunnerOptions;
}

export type OnnxThreadRequest =
  | { type: 'run'; id: number; images: Uint8Array[]; width: number; height: number; wide?: boolean; candidates?: RunCandidates }
  // Starts and warms up the lone-request session ahead of its first run.
  | { type: 'prepareWide'; width: number; height: number }
  // Raw tensors (the Open Inference Protocol): fed as they are, the named outputs returned.
  | { type: 'runTensors'; id: number; inputs: NamedTensor[]; outputNames: string[] }
  | { type: 'close' };

export type OnnxThreadReply =
  | { type: 'ready'; info: RunnerInfo }
  | { type: 'failed'; message: string }
  | {
      type: 'result';
      id: number;
      output: Float32Array;
      dims: number[];
      preprocessMs: number;
      inferMs: number;
      wide: boolean;
      /** The outputs after the first, when the model's task needs them (segmentation's prototypes). */
      extra?: ExtraOutput[];
      /** Boxes decoded in the thread when the run asked (`output` is then empty). */
      candidates?: Candidate[][];
      postprocessMs?: number;
    }
  | { type: 'tensors'; id: number; outputs: NamedTensor[]; inferMs: number }
  | { type: 'error'; id: number; message: string };
