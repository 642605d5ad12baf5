import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { ModelRunner, NamedTensor, RunHow, RunnerInfo, RunnerOptions, RunOutput, TensorRunOutput } from './runner.js';
import type { OnnxThreadData, OnnxThreadReply, OnnxThreadRequest } from './onnx-protocol.js';
import { attachExtraOutputs } from './extra-outputs.js';

// Under tsx (tests, dev) this module is .ts and so is its thread module; built, both are .js.
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const THREAD_URL = new URL(FROM_SOURCE ? './onnx-thread.ts' : './onnx-thread.js', import.meta.url);

function startThread(workerData: OnnxThreadData): Worker {
  if (!FROM_SOURCE) return new Worker(THREAD_URL, { workerData });
  // A worker does not inherit tsx's loader hooks: register them before importing.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(THREAD_URL.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}

interface Pending {
  resolve: (out: RunOutput) => void;
  reject: (err: Error) => void;
}

/** ONNX Runtime session living in a worker thread of its own. */
/** How long close() waits for the thread to end (its current native call to return). */
const CLOSE_WAIT_MS = 30_000;
/** When close() terminates a thread that has not ended and holds none of our runs. */
const TERMINATE_AFTER_MS = 10_000;

export class OnnxRunner implements ModelRunner {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private exitError: Error | undefined;

  /** Only on an instance with a lone-request session (RunnerOptions.loneRequestThreads): the batcher looks for it. */
  readonly prepareWide: ((width: number, height: number) => void) | undefined;
  /**
   * Resolves once the thread has ended (closed, abandoned and out of its native call, or
   * crashed). Whoever ends the process on purpose waits for it first: exiting while the
   * thread is inside session.run aborts the process (see abandon()).
   */
  readonly ended: Promise<void>;

  private constructor(
    private readonly thread: Worker,
    readonly info: RunnerInfo,
    loneRequestThreads: number,
  ) {
    this.prepareWide =
      loneRequestThreads > 0
        ? (width, height) => {
            if (!this.closed && !this.exitError) this.thread.postMessage({ type: 'prepareWide', width, height } satisfies OnnxThreadRequest);
          }
        : undefined;
    thread.on('message', (msg: OnnxThreadReply) => this.onMessage(msg));
    thread.on('error', (err) => this.failAll(err));
    thread.on('exit', (code) => this.failAll(new Error(`inference worker exited with code ${code}`)));
    this.ended = new Promise((resolve) => thread.once('exit', () => resolve()));
  }

  /** Starts the thread and resolves once the session is created; rejects with ORT's reason. */
  static async create(modelPath: string, options: RunnerOptions): Promise<OnnxRunner> {
    const resolved: RunnerOptions = {
      ...options,
      intraOpThreads: options.intraOpThreads > 0 ? options.intraOpThreads : availableParallelism(),
    };
    const thread = startThread({ modelPath, options: resolved });
    // Only our own listeners may be removed: Worker keeps internal ones that start its port.
    let cleanup = () => {};
    const info = await new Promise<RunnerInfo>((resolve, reject) => {
      const onMessage = (msg: OnnxThreadReply) => {
        if (msg.type === 'ready') resolve(msg.info);
        else if (msg.type === 'failed') reject(new Error(msg.message));
      };
      const onExit = (code: number) => reject(new Error(`inference worker exited with code ${code} while loading`));
      thread.on('message', onMessage);
      thread.on('error', reject);
      thread.on('exit', onExit);
      cleanup = () => {
        thread.off('message', onMessage);
        thread.off('error', reject);
        thread.off('exit', onExit);
      };
    })
      .catch(async (err: Error) => {
        await thread.terminate();
        throw err;
      })
      .finally(() => cleanup());
    return new OnnxRunner(thread, info, resolved.loneRequestThreads ?? 0);
  }

  run(images: Uint8Array[], width: number, height: number, how: RunHow = {}): Promise<RunOutput> {
    if (this.closed) return Promise.reject(new Error('model instance is closed'));
    if (this.exitError) return Promise.reject(this.exitError);
    const id = this.nextId++;
    return new Promise<RunOutput>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: OnnxThreadRequest = {
        type: 'run',
        id,
        images,
        width,
        height,
        ...(how.wide ? { wide: true } : {}),
        ...(how.candidates ? { candidates: how.candidates } : {}),
      };
      // Transferred, a 1.2 MB image (640²×3) crosses to the thread without a copy; a buffer
      // listed twice (the batcher's grey padding) or a view of a larger one cannot be.
      this.thread.postMessage(request, how.transfer ? transferable(images) : undefined);
    });
  }

  /** Raw tensors through the same thread and pending map as run() (the Open Inference Protocol's raw path). */
  runTensors(inputs: NamedTensor[], outputNames: string[]): Promise<TensorRunOutput> {
    if (this.closed) return Promise.reject(new Error('model instance is closed'));
    if (this.exitError) return Promise.reject(this.exitError);
    const id = this.nextId++;
    return new Promise<TensorRunOutput>((resolve, reject) => {
      // onMessage resolves a 'tensors' reply with a TensorRunOutput.
      this.pending.set(id, { resolve: resolve as unknown as Pending['resolve'], reject });
      this.thread.postMessage({ type: 'runTensors', id, inputs, outputNames } satisfies OnnxThreadRequest);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A thread that already died (crash, terminate) emits no second 'exit' to wait for.
    if (this.exitError) return;
    const exited = new Promise<void>((resolve) => this.thread.once('exit', () => resolve()));
    this.thread.postMessage({ type: 'close' } satisfies OnnxThreadRequest);
    // A thread that does not end: terminated after TERMINATE_AFTER_MS, but only while no
    // run of ours is in flight there. Terminating a thread inside a native call (a
    // slow run) aborts the whole process (see abandon()); a thread with nothing in
    // flight is at most finishing its lone-request session's warm-up, which
    // TERMINATE_AFTER_MS leaves time for. Past CLOSE_WAIT_MS close() stops waiting.
    const timers: NodeJS.Timeout[] = [];
    const gaveUp = new Promise<void>((resolve) => {
      timers.push(
        setTimeout(() => {
          if (this.pending.size === 0) void this.thread.terminate();
        }, TERMINATE_AFTER_MS),
        setTimeout(resolve, CLOSE_WAIT_MS),
      );
    });
    await Promise.race([exited, gaveUp]);
    for (const t of timers) clearTimeout(t);
  }

  /**
   * Rejects every pending run with `err` and asks the thread to end, without
   * waiting. A thread busy in session.run (native code) cannot be stopped from
   * outside: it takes the `close` message, releases its session and exits once
   * the call returns, and keeps its core until then. Deliberately no
   * worker.terminate(): ONNX Runtime's binding aborts the whole process when the
   * call returns into a terminated thread (measured with onnxruntime-node 1.30,
   * "terminate called after throwing an instance of 'Napi::Error'"), and the same
   * happens when the process exits while such a thread runs, so the thread stays
   * referenced and the process waits for it on exit.
   */
  abandon(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.exitError = err;
    for (const pending of this.pending.values()) pending.reject(err);
    this.pending.clear();
    this.thread.postMessage({ type: 'close' } satisfies OnnxThreadRequest);
  }

  private onMessage(msg: OnnxThreadReply): void {
    if (msg.type !== 'result' && msg.type !== 'error' && msg.type !== 'tensors') return;
    const pending = this.pending.get(msg.id);
    if (!pending) return;
    this.pending.delete(msg.id);
    if (msg.type === 'error') pending.reject(new Error(msg.message));
    else if (msg.type === 'tensors') (pending.resolve as unknown as (out: TensorRunOutput) => void)({ outputs: msg.outputs, inferMs: msg.inferMs });
    else {
      // A segmentation model's prototypes ride with the first output (extra-outputs.ts).
      if (msg.extra) attachExtraOutputs(msg.output, msg.extra);
      pending.resolve({
        output: msg.output,
        dims: msg.dims,
        preprocessMs: msg.preprocessMs,
        inferMs: msg.inferMs,
        wide: msg.wide,
        ...(msg.candidates ? { candidates: msg.candidates, postprocessMs: msg.postprocessMs ?? 0 } : {}),
      });
    }
  }

  private failAll(err: Error): void {
    if (!this.closed) this.exitError = err;
    for (const pending of this.pending.values()) pending.reject(err);
    this.pending.clear();
  }
}

/** The distinct whole ArrayBuffers behind `images` (a view of part of a buffer stays a copy). */
function transferable(images: readonly Uint8Array[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const image of images) {
    const buffer = image.buffer as ArrayBuffer;
    if (image.byteOffset === 0 && image.byteLength === buffer.byteLength && !(buffer instanceof SharedArrayBuffer)) buffers.add(buffer);
  }
  return [...buffers];
}
