import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { ModelRunner, RunnerInfo, RunnerOptions, RunOutput } from './runner.js';
import type { WorkerData, WorkerReply, WorkerRequest } from './onnx-protocol.js';

// Under tsx (tests, dev) this module is .ts and so is its worker; built, both are .js.
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const WORKER_URL = new URL(FROM_SOURCE ? './onnx-worker.ts' : './onnx-worker.js', import.meta.url);

function startWorker(workerData: WorkerData): Worker {
  if (!FROM_SOURCE) return new Worker(WORKER_URL, { workerData });
  // A worker does not inherit tsx's loader hooks: register them before importing.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}

interface Pending {
  resolve: (out: RunOutput) => void;
  reject: (err: Error) => void;
}

/** ONNX Runtime session living in a worker thread of its own. */
export class OnnxRunner implements ModelRunner {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private exitError: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly info: RunnerInfo,
  ) {
    worker.on('message', (msg: WorkerReply) => this.onMessage(msg));
    worker.on('error', (err) => this.failAll(err));
    worker.on('exit', (code) => this.failAll(new Error(`inference worker exited with code ${code}`)));
  }

  /** Starts the worker and resolves once the session is created; rejects with ORT's reason. */
  static async create(modelPath: string, options: RunnerOptions): Promise<OnnxRunner> {
    const resolved: RunnerOptions = {
      ...options,
      intraOpThreads: options.intraOpThreads > 0 ? options.intraOpThreads : availableParallelism(),
    };
    const worker = startWorker({ modelPath, options: resolved });
    // Only our own listeners may be removed: Worker keeps internal ones that start its port.
    let cleanup = () => {};
    const info = await new Promise<RunnerInfo>((resolve, reject) => {
      const onMessage = (msg: WorkerReply) => {
        if (msg.type === 'ready') resolve(msg.info);
        else if (msg.type === 'failed') reject(new Error(msg.message));
      };
      const onExit = (code: number) => reject(new Error(`inference worker exited with code ${code} while loading`));
      worker.on('message', onMessage);
      worker.on('error', reject);
      worker.on('exit', onExit);
      cleanup = () => {
        worker.off('message', onMessage);
        worker.off('error', reject);
        worker.off('exit', onExit);
      };
    })
      .catch(async (err: Error) => {
        await worker.terminate();
        throw err;
      })
      .finally(() => cleanup());
    return new OnnxRunner(worker, info);
  }

  run(images: Uint8Array[], width: number, height: number): Promise<RunOutput> {
    if (this.closed) return Promise.reject(new Error('model instance is closed'));
    if (this.exitError) return Promise.reject(this.exitError);
    const id = this.nextId++;
    return new Promise<RunOutput>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: WorkerRequest = { type: 'run', id, images, width, height };
      this.worker.postMessage(request);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A worker that already died (crash, terminate) emits no second 'exit' to wait for.
    if (this.exitError) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage({ type: 'close' } satisfies WorkerRequest);
    const timeout = setTimeout(() => void this.worker.terminate(), 2000);
    timeout.unref();
    await exited;
    clearTimeout(timeout);
  }

  private onMessage(msg: WorkerReply): void {
    if (msg.type !== 'result' && msg.type !== 'error') return;
    const pending = this.pending.get(msg.id);
    if (!pending) return;
    this.pending.delete(msg.id);
    if (msg.type === 'error') pending.reject(new Error(msg.message));
    else pending.resolve({ output: msg.output, dims: msg.dims, preprocessMs: msg.preprocessMs, inferMs: msg.inferMs });
  }

  private failAll(err: Error): void {
    if (!this.closed) this.exitError = err;
    for (const pending of this.pending.values()) pending.reject(err);
    this.pending.clear();
  }
}
