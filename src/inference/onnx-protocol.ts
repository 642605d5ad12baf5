import type { RunnerInfo, RunnerOptions } from './runner.js';

/** Messages between OnnxRunner (main thread) and onnx-thread (the worker thread that runs the session). */
export interface OnnxThreadData {
  modelPath: string;
  options: RunnerOptions;
}

export type OnnxThreadRequest = { type: 'run'; id: number; images: Uint8Array[]; width: number; height: number } | { type: 'close' };

export type OnnxThreadReply =
  | { type: 'ready'; info: RunnerInfo }
  | { type: 'failed'; message: string }
  | { type: 'result'; id: number; output: Float32Array; dims: number[]; preprocessMs: number; inferMs: number }
  | { type: 'error'; id: number; message: string };
