import type { ModelTask } from './task.js';
import type { OutputFormat } from './model-manifest.js';
import type { CandidateSettings } from './postprocess/candidates.js';
import type { Candidate } from './postprocess/nms.js';

/**
 * A loaded model instance that turns letterboxed images into raw output tensors.
 * The ONNX back end runs each instance in its own worker thread; other back ends
 * (a remote Triton, a GPU provider) plug in behind the same interface.
 */
export interface ModelRunner {
  readonly info: RunnerInfo;
  /** Runs one batch of uint8 HWC RGB images of the model's input size. */
  run(images: Uint8Array[], width: number, height: number, how?: RunHow): Promise<RunOutput>;
  /**
   * Present when the instance has a lone-request session (RunnerOptions.loneRequestThreads):
   * starts it and warms it up in the background, so that the first `wide` run finds it ready.
   */
  prepareWide?(width: number, height: number): void;
  /** Releases the session; idempotent. */
  close(): Promise<void>;
  /**
   * Gives up on the instance without waiting (the watchdog, on a stalled run):
   * its pending runs reject with `err` and its thread is ended as soon as it can be.
   */
  abandon?(err: Error): void;
  /** Set while the instance is being replaced; the batcher hands it no batch until this settles. */
  readonly replacing?: Promise<void> | undefined;
  /**
   * Runs named tensors as they are (no image preprocessing) and returns the
   * outputs asked for (the Open Inference Protocol's raw path). Optional: a
   * back end without it serves images only.
   */
  runTensors?(inputs: NamedTensor[], outputNames: string[]): Promise<TensorRunOutput>;
}

/** An input or output as the session declares it: ONNX Runtime's element type name and shape (strings are dynamic dimensions). */
export interface TensorMetadata {
  name: string;
  /** ONNX Runtime's tensor type (`float32`, `int64`, `bool`, `string`, …); `unknown` for a non-tensor value. */
  type: string;
  shape: (number | string)[];
}

/** Tensor data as ONNX Runtime takes and gives it, per type (strings for `string`, BigInt64Array for `int64`, Uint16Array bits for `float16`). */
export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array
  | string[];

export interface NamedTensor {
  name: string;
  /** ONNX Runtime's tensor type name, as in TensorMetadata. */
  type: string;
  dims: number[];
  data: TensorData;
}

export interface TensorRunOutput {
  outputs: NamedTensor[];
  /** Time spent in session.run. */
  inferMs: number;
}

export interface RunnerInfo {
  inputName: string;
  outputName: string;
  /** Declared input shape; strings are symbolic (dynamic) dimensions. */
  inputShape: (number | string)[];
  outputShape: (number | string)[];
  /** Every input and output the session declares (absent from back ends that do not say). */
  inputs?: TensorMetadata[];
  outputs?: TensorMetadata[];
}

/** How one run is made. */
export interface RunHow {
  /**
   * The images' buffers are handed to the instance's thread instead of copied
   * (transferred: the caller's views become empty). Only for buffers the caller
   * owns alone and never reads again.
   */
  transfer?: boolean;
  /** On the lone-request session, which uses every core (only while no other run is under way). */
  wide?: boolean;
  /**
   * Decode the boxes where the run was made (a worker thread) and return them instead
   * of the output tensor: a 640 model's output is 2.7 MB per image that the event loop
   * would otherwise receive, scan and leave to its garbage collector. A back end that
   * ignores this returns the output, and the caller decodes it.
   */
  candidates?: RunCandidates;
}

/** What decoding boxes in the run's thread needs: the model's layout and each image's settings. */
export interface RunCandidates {
  format: OutputFormat;
  numClasses: number;
  /** One per image of the batch; null for padding images (nothing decoded). */
  perImage: (CandidateSettings | null)[];
}

export interface RunOutput {
  output: Float32Array;
  dims: number[];
  /** Time spent turning pixels into the float tensor. */
  preprocessMs: number;
  /** Time spent in session.run. */
  inferMs: number;
  /** True when the lone-request session ran it. */
  wide?: boolean;
  /** Present when RunHow.candidates was honoured: each image's boxes (`output` is then empty). */
  candidates?: Candidate[][];
  /** Time spent decoding them. */
  postprocessMs?: number;
}

export interface RunnerOptions {
  intraOpThreads: number;
  interOpThreads: number;
  /**
   * Whether ONNX Runtime's intra-op threads busy-wait for work between operators
   * (its default). Off, an idle pool sleeps: several multi-threaded instances then
   * share the cores instead of spinning against each other (docs/batching.md).
   */
  intraOpSpinning?: boolean;
  /**
   * Intra-op threads of a second, lone-request session in the same thread, run
   * for `wide` runs: a request that finds every instance idle uses all cores
   * instead of one (docs/batching.md). 0 or absent: none.
   */
  loneRequestThreads?: number;
  /** Whether the lone-request session's threads spin (ONNX Runtime's default, and absent here); intraOpSpinning is the instances'. */
  loneRequestSpinning?: boolean;
  /** Input tensor name; defaults to the model's first input. */
  inputName?: string;
  /**
   * The model's task when model.json sets it; else read from the declared outputs
   * (task.ts). A `segment` model's runs return its second output too.
   */
  task?: ModelTask;
}
