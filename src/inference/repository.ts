import { readdirSync, existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { Errors } from '../errors.js';
import { readModelManifest, type ModelManifest, type OutputFormat } from './model-manifest.js';
import { resolveFormat } from './postprocess/decoders.js';
import { LETTERBOX_PAD_VALUE } from './letterbox.js';
import type { ModelRunner, RunnerOptions } from './runner.js';
import { OnnxRunner } from './onnx-runner.js';
import { Batcher, type BatcherOptions } from './batcher.js';
import { SupervisedRunner, withinLimit, type RestartReason } from './watchdog.js';

export type ModelState = 'LOADING' | 'READY' | 'FAILED';

/** One version of one model in the repository and where its loading stands. */
export interface ModelEntry {
  name: string;
  version: string;
  dir: string;
  state: ModelState;
  /** Why the model FAILED. */
  reason?: string;
  stateSince: Date;
  manifest?: ModelManifest;
  format?: OutputFormat;
  /** True when the format came from the output shape, not from model.json. */
  formatDetected?: boolean;
  inputWidth?: number;
  inputHeight?: number;
  /** One per instance, each in its own worker thread. */
  runners?: ModelRunner[];
  batcher?: Batcher;
}

/** A READY entry, with everything inference needs filled in. */
export type ReadyModel = ModelEntry & Required<Pick<ModelEntry, 'manifest' | 'format' | 'inputWidth' | 'inputHeight' | 'runners' | 'batcher'>>;

/** Batching settings shared by every model; callbacks receive the model they concern. */
export interface BatchingOptions {
  maxBatch: number;
  maxDelayMs: number;
  /** Admitted requests per model; 0 means 8 × instances. */
  maxQueue: number;
  onBatch?: (entry: ModelEntry, size: number) => void;
  onExpired?: (entry: ModelEntry) => void;
  onShed?: (entry: ModelEntry, reason: 'queue_full' | 'displaced') => void;
  onDepthChange?: (entry: ModelEntry, depth: number) => void;
}

export interface RepositoryOptions {
  dir: string;
  /** `name` or `name:version`; empty picks the only model. */
  defaultModel: string;
  runner: RunnerOptions;
  /** Model instances per model version. */
  instances: number;
  batching: BatchingOptions;
  warmupRuns: number;
  /** inference_stall_ms: the watchdog's limit (at least 20 × the instance's p99); 0 or absent: no watchdog. */
  stallMs?: number;
  /** Backoff of failed instance restarts (tests shorten it). */
  restartRetryBaseMs?: number;
  restartRetryMaxMs?: number;
  logger: Logger;
  onStateChange?: (entry: ModelEntry) => void;
  /** An instance is being replaced (sightline_model_instance_restarts_total). */
  onInstanceRestart?: (entry: ModelEntry, reason: RestartReason) => void;
  /** A replacement instance failed to start; it is retried with backoff. */
  onInstanceRestartFailed?: (entry: ModelEntry, err: Error, attempt: number) => void;
  /** Loads only the versions this accepts (e.g. the one model `sightline eval` measures). */
  include?: (name: string, version: string) => boolean;
  /** Creates model instances; the ONNX worker-thread runner unless a test or back end says otherwise. */
  createRunner?: (modelPath: string, options: RunnerOptions) => Promise<ModelRunner>;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function compareVersions(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  return a.localeCompare(b);
}

/**
 * The model repository: `<dir>/<name>/<version>/model.onnx` + `model.json`, as
 * Triton lays it out. Every version loads independently, so one broken model is
 * reported as FAILED and never stops the others.
 */
export class ModelRepository {
  private readonly entries: ModelEntry[] = [];
  private loading: Promise<void> | undefined;

  constructor(private readonly options: RepositoryOptions) {
    this.entries = this.discover();
  }

  private discover(): ModelEntry[] {
    const root = resolve(this.options.dir);
    const found: ModelEntry[] = [];
    if (!existsSync(root)) {
      this.options.logger.warn({ event: 'model_repository_missing', dir: root }, `model repository ${root} does not exist`);
      return found;
    }
    for (const name of readdirSync(root).sort()) {
      const modelDir = join(root, name);
      if (!SAFE_NAME.test(name) || !statSync(modelDir).isDirectory()) continue;
      for (const version of readdirSync(modelDir).sort(compareVersions)) {
        const dir = join(modelDir, version);
        if (!SAFE_NAME.test(version) || !statSync(dir).isDirectory()) continue;
        if (!existsSync(join(dir, 'model.onnx'))) continue;
        if (this.options.include && !this.options.include(name, version)) continue;
        found.push({ name, version, dir, state: 'LOADING', stateSince: new Date() });
      }
    }
    return found;
  }

  /** Model instances each version runs. */
  get instances(): number {
    return this.options.instances;
  }

  list(): readonly ModelEntry[] {
    return this.entries;
  }

  /** Loads every model; resolves when each is READY or FAILED. Idempotent. */
  loadAll(): Promise<void> {
    this.loading ??= Promise.all(this.entries.map((entry) => this.load(entry))).then(() => undefined);
    return this.loading;
  }

  private setState(entry: ModelEntry, state: ModelState, reason?: string): void {
    entry.state = state;
    entry.reason = reason;
    entry.stateSince = new Date();
    this.options.onStateChange?.(entry);
  }

  private async load(entry: ModelEntry): Promise<void> {
    const { logger } = this.options;
    const id = `${entry.name}:${entry.version}`;
    logger.info({ event: 'model_loading', model: entry.name, version: entry.version }, `loading model ${id}`);
    this.options.onStateChange?.(entry);
    const runners: ModelRunner[] = [];
    try {
      const manifest = await readModelManifest(join(entry.dir, 'model.json'));
      const create = this.options.createRunner ?? ((path, opts) => OnnxRunner.create(path, opts));
      const runnerOptions = { ...this.options.runner, ...(manifest.input?.name ? { inputName: manifest.input.name } : {}) };
      for (let i = 0; i < Math.max(1, this.options.instances); i++) {
        runners.push(await create(join(entry.dir, 'model.onnx'), runnerOptions));
      }
      const first = runners[0]!;
      const [width, height] = inputSize(manifest, first.info.inputShape);
      // A static batch axis (e.g. an export with batch=4) must always get that many images.
      const batchAxis = first.info.inputShape[0];
      const fixedBatch = typeof batchAxis === 'number' && batchAxis > 0 ? batchAxis : undefined;
      // Warm-up doubles as a check: the output shape must fit a known format.
      const grey = new Uint8Array(width * height * 3).fill(LETTERBOX_PAD_VALUE);
      const warmBatch = Array.from({ length: fixedBatch ?? 1 }, () => grey);
      let dims: number[] = [];
      for (const runner of runners) {
        for (let i = 0; i < Math.max(1, this.options.warmupRuns); i++) {
          ({ dims } = await runner.run(warmBatch, width, height));
        }
      }
      if ((this.options.stallMs ?? 0) > 0) {
        const startInstance = async (limitMs: number): Promise<ModelRunner> => {
          const runner = await create(join(entry.dir, 'model.onnx'), runnerOptions);
          try {
            for (let i = 0; i < Math.max(1, this.options.warmupRuns); i++) {
              await withinLimit(runner, runner.run(warmBatch, width, height), limitMs);
            }
          } catch (err) {
            await runner.close().catch(() => undefined);
            throw err;
          }
          return runner;
        };
        for (const [i, runner] of runners.entries()) runners[i] = this.supervise(entry, runner, i, startInstance);
      }
      const { format, detected } = resolveFormat(manifest.format, [1, ...dims.slice(1)], manifest.labels.length);
      const { batching } = this.options;
      const batcherOptions: BatcherOptions = {
        width,
        height,
        maxBatch: fixedBatch ?? batching.maxBatch,
        ...(fixedBatch ? { fixedBatch } : {}),
        maxDelayMs: batching.maxDelayMs,
        maxQueue: batching.maxQueue > 0 ? batching.maxQueue : 8 * runners.length,
        onBatch: (size) => batching.onBatch?.(entry, size),
        onExpired: () => batching.onExpired?.(entry),
        onShed: (reason) => batching.onShed?.(entry, reason),
        onDepthChange: (depth) => batching.onDepthChange?.(entry, depth),
      };
      const batcher = new Batcher(runners, batcherOptions);
      Object.assign(entry, { manifest, format, formatDetected: detected, inputWidth: width, inputHeight: height, runners, batcher });
      this.setState(entry, 'READY');
      logger.info(
        {
          event: 'model_ready',
          model: entry.name,
          version: entry.version,
          format,
          format_detected: detected,
          input: `${width}x${height}`,
          output_shape: dims,
          instances: runners.length,
          max_batch: batcherOptions.maxBatch,
          max_queue: batcherOptions.maxQueue,
        },
        `model ${id} READY (${format}${detected ? ', detected from output shape' : ''}, input ${width}x${height}, ${runners.length} instance(s))`,
      );
    } catch (err) {
      await Promise.all(runners.map((r) => r.close().catch(() => undefined)));
      const reason = (err as Error).message;
      this.setState(entry, 'FAILED', reason);
      logger.error({ event: 'model_failed', model: entry.name, version: entry.version, reason }, `model ${id} FAILED: ${reason}`);
    }
  }

  /** Instances of each entry being replaced by the watchdog. */
  private readonly replacing = new Map<ModelEntry, Set<number>>();

  private supervise(entry: ModelEntry, runner: ModelRunner, index: number, start: (limitMs: number) => Promise<ModelRunner>): SupervisedRunner {
    const { logger } = this.options;
    const id = `${entry.name}:${entry.version}`;
    const instance = `${index + 1}/${Math.max(1, this.options.instances)}`;
    const supervised: SupervisedRunner = new SupervisedRunner(runner, {
      stallMs: this.options.stallMs ?? 0,
      start: () => start(supervised.limitMs),
      ...(this.options.restartRetryBaseMs !== undefined ? { retryBaseMs: this.options.restartRetryBaseMs } : {}),
      ...(this.options.restartRetryMaxMs !== undefined ? { retryMaxMs: this.options.restartRetryMaxMs } : {}),
      onStalled: (_r, elapsedMs, limitMs) => {
        logger.error(
          {
            event: 'model_instance_stalled',
            model: entry.name,
            version: entry.version,
            instance,
            elapsed_ms: Math.round(elapsedMs),
            limit_ms: Math.round(limitMs),
          },
          `model ${id} instance ${instance}: an inference ran past the stall limit of ${Math.round(limitMs)} ms; its requests got INFERENCE_STALLED, replacing the instance`,
        );
        this.options.onInstanceRestart?.(entry, 'stalled');
        this.markReplacing(entry, index, true);
      },
      onRestarted: (_r, attempts) => {
        logger.info(
          { event: 'model_instance_restarted', model: entry.name, version: entry.version, instance, attempts },
          `model ${id} instance ${instance} replaced and warmed up${attempts > 1 ? ` after ${attempts} attempts` : ''}`,
        );
        this.markReplacing(entry, index, false);
      },
      onRestartFailed: (_r, err, attempt, retryInMs) => {
        logger.error(
          { event: 'model_instance_restart_failed', model: entry.name, version: entry.version, instance, attempt, retry_in_ms: retryInMs, reason: err.message },
          `model ${id} instance ${instance}: restart attempt ${attempt} failed (${err.message}); retrying in ${retryInMs} ms`,
        );
        this.markReplacing(entry, index, true, `restart attempt ${attempt} failed: ${err.message}; retrying in ${retryInMs} ms`);
        this.options.onInstanceRestartFailed?.(entry, err, attempt);
      },
    });
    return supervised;
  }

  /** Keeps the entry's state in step with its instances: READY with a reason while some are replaced, LOADING while all are. */
  private markReplacing(entry: ModelEntry, index: number, replacing: boolean, note?: string): void {
    let set = this.replacing.get(entry);
    if (!set) this.replacing.set(entry, (set = new Set()));
    if (replacing) set.add(index);
    else set.delete(index);
    const total = entry.runners?.length ?? Math.max(1, this.options.instances);
    const why = note ? ` (${note})` : '';
    if (set.size === 0) this.setState(entry, 'READY');
    else if (set.size < total) {
      this.setState(entry, 'READY', `${set.size} of ${total} instances being replaced after a stalled inference${why}; ${total - set.size} serving`);
    } else {
      this.setState(entry, 'LOADING', `every instance (${total}) is being replaced after a stalled inference${why}`);
    }
  }

  /** The default model reference, or why there is none. */
  defaultModel(): { ref: string } | { error: string } {
    if (this.options.defaultModel) return { ref: this.options.defaultModel };
    const names = [...new Set(this.entries.map((e) => e.name))];
    if (names.length === 1) return { ref: names[0]! };
    if (names.length === 0) return { error: `the model repository ${resolve(this.options.dir)} holds no model` };
    return { error: `${names.length} models (${names.join(', ')}) and no default_model configured` };
  }

  /**
   * Finds the entry for `name` or `name:version` (the default model when absent).
   * A bare name means its newest READY version, else its newest version.
   */
  find(ref: string | undefined): ModelEntry {
    let wanted = ref;
    if (!wanted) {
      const def = this.defaultModel();
      if ('error' in def) throw new Errors.NO_DEFAULT_MODEL(def.error);
      wanted = def.ref;
    }
    const [name, version] = wanted.split(':', 2);
    const versions = this.entries.filter((e) => e.name === name);
    if (version !== undefined) {
      const entry = versions.find((e) => e.version === version);
      if (!entry) throw new Errors.MODEL_NOT_FOUND(JSON.stringify(wanted));
      return entry;
    }
    const newest = versions.filter((e) => e.state === 'READY').at(-1) ?? versions.at(-1);
    if (!newest) throw new Errors.MODEL_NOT_FOUND(JSON.stringify(wanted));
    return newest;
  }

  /** Like find(), but the model must be READY. */
  findReady(ref: string | undefined): ReadyModel {
    const entry = this.find(ref);
    if (entry.state !== 'READY') {
      const detail = entry.state === 'FAILED' ? `FAILED: ${entry.reason ?? ''}` : entry.state;
      throw new Errors.MODEL_NOT_READY(`${entry.name}:${entry.version}`, detail);
    }
    return entry as ReadyModel;
  }

  async close(): Promise<void> {
    await this.loading?.catch(() => undefined);
    for (const e of this.entries) e.batcher?.close();
    await Promise.all(this.entries.flatMap((e) => (e.runners ?? []).map((r) => r.close())));
  }
}

function inputSize(manifest: ModelManifest, shape: (number | string)[]): [number, number] {
  const width = manifest.input?.width ?? (typeof shape[3] === 'number' ? shape[3] : undefined);
  const height = manifest.input?.height ?? (typeof shape[2] === 'number' ? shape[2] : undefined);
  if (!width || !height) {
    throw new Error(`input size unknown (input shape [${shape.join(', ')}]): set input.width and input.height in model.json`);
  }
  return [width, height];
}
