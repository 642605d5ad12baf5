/**
 * A loaded model instance that turns letterboxed images into raw output tensors.
 * The ONNX back end runs each instance in its own worker thread; other back ends
 * (a remote Triton, a GPU provider) plug in behind the same interface.
 */
export interface ModelRunner {
  readonly info: RunnerInfo;
  /** Runs one batch of uint8 HWC RGB images of the model's input size. */
  run(images: Uint8Array[], width: number, height: number): Promise<RunOutput>;
  /** Releases the session; idempotent. */
  close(): Promise<void>;
}

export interface RunnerInfo {
  inputName: string;
  outputName: string;
  /** Declared input shape; strings are symbolic (dynamic) dimensions. */
  inputShape: (number | string)[];
  outputShape: (number | string)[];
}

export interface RunOutput {
  output: Float32Array;
  dims: number[];
  /** Time spent turning pixels into the float tensor. */
  preprocessMs: number;
  /** Time spent in session.run. */
  inferMs: number;
}

export interface RunnerOptions {
  intraOpThreads: number;
  interOpThreads: number;
  /** Input tensor name; defaults to the model's first input. */
  inputName?: string;
}
