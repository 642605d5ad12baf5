// The worker-thread side of OnnxRunner: session.run() blocks the thread that calls it
// for the whole inference, so each model instance gets a thread of its own and
// the event loop only routes (see docs/architecture.md).
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import ort from 'onnxruntime-node';
import { hwcToChwFloat } from './preprocess.js';
import { candidatesOf } from './postprocess/candidates.js';
import { LETTERBOX_PAD_VALUE } from './letterbox.js';
import type { OnnxThreadData, OnnxThreadReply, OnnxThreadRequest } from './onnx-protocol.js';
import type { NamedTensor, TensorData, TensorMetadata } from './runner.js';
import type { ExtraOutput } from './extra-outputs.js';
import { outputsNeeded, taskFromOutputs } from './task.js';
import { garbageCounter } from './thread-gc.js';

const port = parentPort!;
const { modelPath, options } = workerData as OnnxThreadData;

function shapeOf(meta: ort.InferenceSession.ValueMetadata | undefined): (number | string)[] {
  return meta?.isTensor ? [...meta.shape] : [];
}

/** Every declared input or output, for the Open Inference Protocol's model metadata. */
function metadataOf(meta: ort.InferenceSession.ValueMetadata): TensorMetadata {
  return meta.isTensor ? { name: meta.name, type: meta.type, shape: [...meta.shape] } : { name: meta.name, type: 'unknown', shape: [] };
}

function createSession(intraOpThreads: number, spinning: boolean | undefined, memPattern: boolean): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: intraOpThreads,
    interOpNumThreads: options.interOpThreads,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    enableMemPattern: memPattern,
    // Flattened by the binding into ONNX Runtime's session config key session.intra_op.allow_spinning.
    ...(spinning === false ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
  });
}

async function main(): Promise<void> {
  // ONNX Runtime's memory pattern plans a run's activations as one block from the second run
  // on, beside the per-tensor chunks the first run left in its arena (which stay): a session
  // then holds both, and one more block per batch size. An instance's runs take the same time
  // without it, and a 640 session holds 134 rather than 156–161 MiB, none of it added by its
  // second request (docs/batching.md#memory). The lone-request session keeps it: it is one
  // session, there for latency, and warms up twice so that its block is planned before traffic.
  const session = await createSession(options.intraOpThreads, options.intraOpSpinning, false);
  const inputName = options.inputName ?? session.inputNames[0];
  const outputName = session.outputNames[0];
  if (!inputName || !session.inputNames.includes(inputName)) {
    throw new Error(`model has no input "${inputName ?? ''}" (inputs: ${session.inputNames.join(', ')})`);
  }
  if (!outputName) throw new Error('model has no outputs');
  const inputIndex = session.inputNames.indexOf(inputName);
  // A segmentation model's runs also return its prototypes; every other task reads the first output alone.
  const task = options.task ?? taskFromOutputs(session.outputMetadata.map((m) => ({ shape: shapeOf(m) })));
  const runOutputs = session.outputNames.slice(0, outputsNeeded(task));
  if (runOutputs.length < outputsNeeded(task)) throw new Error(`a ${task} model needs ${outputsNeeded(task)} outputs, this one has ${runOutputs.length}`);
  port.postMessage({
    type: 'ready',
    info: {
      inputName,
      outputName,
      inputShape: shapeOf(session.inputMetadata[inputIndex]),
      outputShape: shapeOf(session.outputMetadata[0]),
      inputs: session.inputMetadata.map(metadataOf),
      outputs: session.outputMetadata.map(metadataOf),
    },
  } satisfies OnnxThreadReply);

  // One input buffer per batch size, reused: a fresh multi-megabyte allocation per
  // run fragments the heap and keeps resident memory growing under load.
  // The batcher sends one batch at a time; a caller that overlaps runs gets fresh buffers.
  const inputs = new Map<number, Float32Array>();
  let running = 0;
  const inputBuffer = (length: number) => {
    if (running > 1) return new Float32Array(length);
    let buffer = inputs.get(length);
    if (!buffer) inputs.set(length, (buffer = new Float32Array(length)));
    return buffer;
  };

  // The lone-request session: created on the first prepareWide or wide run, so that only
  // the instance the batcher picks for lone requests holds a second session. It runs only
  // while every other instance is idle (the batcher's rule).
  let wide: Promise<ort.InferenceSession> | undefined;
  const wideSession = (width: number, height: number): Promise<ort.InferenceSession> | undefined => {
    if (!options.loneRequestThreads || options.loneRequestThreads <= 0) return undefined;
    wide ??= createSession(options.loneRequestThreads, options.loneRequestSpinning, true).then(async (s) => {
      // Two warm-up runs: the first allocates the arena and picks kernels, the second plans the memory pattern.
      const grey = new Float32Array(3 * width * height).fill(LETTERBOX_PAD_VALUE / 255);
      for (let run = 0; run < 2; run++) await s.run({ [inputName]: new ort.Tensor('float32', grey, [1, 3, height, width]) }, [outputName]);
      return s;
    });
    return wide;
  };

  const dropped = garbageCounter();

  port.on('message', async (msg: OnnxThreadRequest) => {
    if (msg.type === 'prepareWide') {
      await wideSession(msg.width, msg.height)?.catch(() => undefined);
      return;
    }
    if (msg.type === 'close') {
      await session.release().catch(() => undefined);
      await (await wide?.catch(() => undefined))?.release().catch(() => undefined);
      // ONNX Runtime's thread pool keeps the thread alive after release; in a
      // worker, process.exit ends only this thread.
      process.exit(0);
    }
    if (msg.type === 'runTensors') {
      await runTensors(session, msg);
      return;
    }
    running++;
    try {
      // Asked for, but failing to start, the lone-request session falls back to the instance's own.
      const lone = msg.wide ? await wideSession(msg.width, msg.height)?.catch(() => undefined) : undefined;
      const t0 = performance.now();
      const plane = msg.width * msg.height * 3;
      const input = inputBuffer(plane * msg.images.length);
      for (const [i, pixels] of msg.images.entries()) hwcToChwFloat(pixels, msg.width, msg.height, input, i * plane);
      const tensor = new ort.Tensor('float32', input, [msg.images.length, 3, msg.height, msg.width]);
      const t1 = performance.now();
      const result = await (lone ?? session).run({ [inputName]: tensor }, runOutputs);
      const t2 = performance.now();
      const out = result[outputName] as ort.Tensor;
      if (out.type !== 'float32') throw new Error(`output "${outputName}" is ${out.type}, expected float32`);
      const dims = out.dims.map(Number);
      if (msg.candidates && runOutputs.length === 1) {
        // Boxes decoded here: only they cross to the event loop, the output tensor stays in this thread.
        const { format, numClasses, perImage } = msg.candidates;
        const output = out.data as Float32Array;
        const candidates = perImage.map((settings, i) => (settings ? candidatesOf(format, numClasses, output, dims, i, settings) : []));
        port.postMessage({
          type: 'result',
          id: msg.id,
          output: new Float32Array(0),
          dims,
          preprocessMs: t1 - t0,
          inferMs: t2 - t1,
          wide: lone !== undefined,
          candidates,
          postprocessMs: performance.now() - t2,
        } satisfies OnnxThreadReply);
        // After the reply, so that a collection never delays it: the pixels and the output die here.
        dropped(pixelBytes(msg.images) + output.byteLength);
        return;
      }
      // The binding hands each output over in an ArrayBuffer of its own: transferred as it
      // is, it reaches the event loop with no copy; a view of a larger buffer is copied first.
      const data = ownBuffer(out.data as Float32Array);
      // ownBuffer never returns a view of a SharedArrayBuffer.
      const transfer: ArrayBuffer[] = [data.buffer as ArrayBuffer];
      // Only a segmentation model has more outputs to return; the detection path stays one copy.
      const extra = runOutputs.length > 1 ? runOutputs.slice(1).map((name) => ownedOutput(result, name, transfer)) : undefined;
      const reply: OnnxThreadReply = {
        type: 'result',
        id: msg.id,
        output: data,
        dims,
        preprocessMs: t1 - t0,
        inferMs: t2 - t1,
        wide: lone !== undefined,
        ...(extra ? { extra } : {}),
      };
      port.postMessage(reply, transfer);
      // The outputs went to the event loop; the pixels die here.
      dropped(pixelBytes(msg.images));
    } catch (err) {
      port.postMessage({ type: 'error', id: msg.id, message: (err as Error).message } satisfies OnnxThreadReply);
    } finally {
      running--;
    }
  });
}

function pixelBytes(images: readonly Uint8Array[]): number {
  return images.reduce((sum, p) => sum + p.byteLength, 0);
}

/** A further float32 output in a buffer of its own (ownBuffer), listed for transfer. */
function ownedOutput(result: ort.InferenceSession.OnnxValueMapType, name: string, transfer: ArrayBuffer[]): ExtraOutput {
  const out = result[name] as ort.Tensor;
  if (out.type !== 'float32') throw new Error(`output "${name}" is ${out.type}, expected float32`);
  const data = ownBuffer(out.data as Float32Array);
  transfer.push(data.buffer as ArrayBuffer);
  return { dims: out.dims.map(Number), data };
}

/** The array itself when it spans its whole buffer (then transferable alone), else a copy that does. */
function ownBuffer(data: Float32Array): Float32Array {
  return data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && !(data.buffer instanceof SharedArrayBuffer) ? data : new Float32Array(data);
}

/** Raw tensors in, the named outputs out, nothing converted (the Open Inference Protocol's raw path). */
async function runTensors(session: ort.InferenceSession, msg: Extract<OnnxThreadRequest, { type: 'runTensors' }>): Promise<void> {
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const input of msg.inputs) {
      feeds[input.name] = new ort.Tensor(input.type as ort.Tensor.Type, input.data as ort.Tensor.DataType, input.dims);
    }
    const t0 = performance.now();
    const result = await session.run(feeds, msg.outputNames);
    const inferMs = performance.now() - t0;
    const transfer: ArrayBuffer[] = [];
    const outputs: NamedTensor[] = msg.outputNames.map((name) => {
      const out = result[name] as ort.Tensor;
      // Copies we own, so they can be transferred rather than cloned.
      const data = (Array.isArray(out.data) ? [...out.data] : (out.data as Exclude<TensorData, string[]>).slice()) as TensorData;
      if (!Array.isArray(data)) transfer.push(data.buffer as ArrayBuffer);
      return { name, type: out.type, dims: out.dims.map(Number), data };
    });
    port.postMessage({ type: 'tensors', id: msg.id, outputs, inferMs } satisfies OnnxThreadReply, transfer);
  } catch (err) {
    port.postMessage({ type: 'error', id: msg.id, message: (err as Error).message } satisfies OnnxThreadReply);
  }
}

main().catch((err: Error) => {
  port.postMessage({ type: 'failed', message: err.message } satisfies OnnxThreadReply);
});
