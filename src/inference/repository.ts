import { readdirSync, existsSync, statSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { Errors } from '../errors.js';
import { readModelManifest, type ModelManifest, type OutputFormat } from './model-manifest.js';
import { resolveLayout } from './postprocess/layout.js';
import { extraOutputsOf } from './extra-outputs.js';
import type { ModelTask } from './task.js';
import { LETTERBOX_PAD_VALUE } from './letterbox.js';
import type { ModelRunner, RunnerOptions } from './runner.js';
import { OnnxRunner } from './onnx-runner.js';
import { Batcher, type BatcherOptions } from './batcher.js';
import { SupervisedRunner, withinLimit, type RestartReason } from './watchdog.js';
import { formatVersionPolicy, selectVersions, type VersionPolicies, type VersionPolicy } from '../config/version-policy.js';
import { pickVersion, shadowVersion, type RouteRole, type TrafficSplit } from './traffic.js';

/**
 * LOADING and UNLOADING are passing states; UNAVAILABLE is a version on disk that
 * is not loaded (left out by the version policy, unloaded, or not yet complete).
 */
export type ModelState = 'LOADING' | 'READY' | 'FAILED' | 'UNLOADING' | 'UNAVAILABLE';

/** One version of one model in the repository and where its loading stands. */
export interface ModelEntry {
  name: string;
  version: string;
  dir: string;
  state: ModelState;
  /** Why the model FAILED, or why it is UNAVAILABLE. */
  reason?: string;
  stateSince: Date;
  manifest?: ModelManifest;
  format?: OutputFormat;
  /** True when the format came from the output shape, not from model.json. */
  formatDetected?: boolean;
  /** detect (also when absent), classify or segment (docs/models.md#task-types). */
  task?: ModelTask;
  inputWidth?: number;
  inputHeight?: number;
  /** One per instance, each in its own worker thread. */
  runners?: ModelRunner[];
  batcher?: Batcher;
  /** Sizes and mtimes of model.onnx and model.json when last scanned. */
  fingerprint: string;
  /** The files are complete: the fingerprint held still across two scans (or the version was there at start). */
  complete: boolean;
  /** The fingerprint the last failed load read: a FAILED version is tried again only once its files change. */
  failedFingerprint?: string;
  /** The model.json (size and mtime) that `manifest` was read from: a READY version re-reads it when it changes (refresh). */
  manifestStamp?: string;
  /** Requests holding this version (route leases); unloading waits for none. */
  inflight: number;
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
  /** Which versions load (model_version_policy); default `latest:1`. */
  versionPolicies?: VersionPolicies;
  /** How long an unloading version waits for its requests before it is closed anyway (model_drain_timeout_ms). */
  drainTimeoutMs?: number;
  /** A version was released (unloaded, or gone from disk). */
  onReleased?: (entry: ModelEntry) => void;
}

/** What the control API or table asks beyond the version policy (src/models/). */
export interface VersionOverrides {
  /** Every version unloaded until the next load. */
  unloaded?: boolean;
  /** Versions loaded besides those the policy picks. */
  extra?: string[];
  /** Versions the policy must skip. */
  excluded?: string[];
}

/** A READY version picked for one request, held until release() so that unloading waits for it. */
export interface RoutedModel {
  model: ReadyModel;
  /** requested: the request named the version; else how the traffic split chose it. */
  role: RouteRole | 'requested';
  /** A version to run the same image on for comparison, never returned. */
  shadow?: ReadyModel;
  release(): void;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function compareVersions(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  return a.localeCompare(b);
}

/** Sizes and mtimes of the two files: what changes while a copy is under way. */
function fingerprintOf(dir: string): string | undefined {
  try {
    const onnx = statSync(join(dir, 'model.onnx'));
    const json = existsSync(join(dir, 'model.json')) ? statSync(join(dir, 'model.json')) : undefined;
    return `${onnx.size}:${onnx.mtimeMs}|${json ? `${json.size}:${json.mtimeMs}` : '-'}`;
  } catch {
    return undefined;
  }
}

const DEFAULT_POLICY: VersionPolicy = { kind: 'latest', count: 1 };

/**
 * The model repository: `<dir>/<name>/<version>/model.onnx` + `model.json`, as
 * Triton lays it out. Every version loads independently, so one broken model is
 * reported as FAILED and never stops the others. Which versions are loaded follows
 * the version policy plus what model control asks (overrides, traffic split); a
 * new version is loaded and warmed up before it takes traffic, and a version that
 * leaves drains its requests before its instances are closed.
 */
export class ModelRepository {
  private entries: ModelEntry[] = [];
  private loading: Promise<void> | undefined;
  private readonly overrides = new Map<string, VersionOverrides>();
  private readonly traffic = new Map<string, TrafficSplit>();
  /** Per model: the reconciliation under way, so that loads and unloads of one model never overlap. */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly drained = new Map<ModelEntry, () => void>();
  private closed = false;

  constructor(private readonly options: RepositoryOptions) {
    this.entries = this.scan([], true).entries;
    for (const name of this.names()) {
      const desired = this.desiredVersions(name);
      for (const e of this.versionsOf(name)) {
        // Shown as LOADING from the start: loadAll() follows at once.
        if (desired.has(e.version)) e.state = 'LOADING';
      }
    }
  }

  /** Reads the directory: entries kept as they are, new versions added, vanished ones reported. */
  private scan(known: readonly ModelEntry[], atStart = false): { entries: ModelEntry[]; gone: ModelEntry[] } {
    const root = resolve(this.options.dir);
    const found: ModelEntry[] = [];
    if (!existsSync(root)) {
      if (atStart) this.options.logger.warn({ event: 'model_repository_missing', dir: root }, `model repository ${root} does not exist`);
      return { entries: found, gone: [...known] };
    }
    for (const name of readdirSync(root).sort()) {
      const modelDir = join(root, name);
      if (!SAFE_NAME.test(name) || !isDirectory(modelDir)) continue;
      for (const version of readdirSync(modelDir).sort(compareVersions)) {
        const dir = join(modelDir, version);
        if (!SAFE_NAME.test(version) || !isDirectory(dir)) continue;
        const fingerprint = fingerprintOf(dir);
        if (fingerprint === undefined) continue;
        if (this.options.include && !this.options.include(name, version)) continue;
        const old = known.find((e) => e.name === name && e.version === version);
        // After start, a version needs both files, holding still between two scans (a copy may be under way).
        const hasManifest = !fingerprint.endsWith('|-');
        if (old) {
          // A loaded version's files are read once: later changes wait for a new version (or a load call).
          old.complete = old.complete || (hasManifest && old.fingerprint === fingerprint);
          old.fingerprint = fingerprint;
          found.push(old);
        } else {
          found.push({
            name,
            version,
            dir,
            state: 'UNAVAILABLE',
            reason: atStart ? 'not loaded' : hasManifest ? 'new: waiting for its files to hold still' : 'new: waiting for model.json',
            stateSince: new Date(),
            fingerprint,
            complete: atStart,
            inflight: 0,
          });
        }
      }
    }
    return { entries: found, gone: known.filter((e) => !found.includes(e)) };
  }

  /**
   * Scans the directory again (model_control: poll, or a load call) and brings
   * every model in line with it; resolves when loads and unloads are done.
   */
  async refresh(only?: string, how: { trustFiles?: boolean; retry?: true | string } = {}): Promise<void> {
    if (this.closed) return;
    const { entries, gone } = this.scan(this.entries);
    this.entries = entries;
    for (const e of entries) {
      if (e.name !== only) continue;
      // A load call vouches for the files, and tries a FAILED version again.
      if (how.trustFiles) e.complete = true;
      if (how.retry === true || how.retry === e.version) e.failedFingerprint = undefined;
    }
    for (const e of gone) {
      this.options.logger.info({ event: 'model_version_removed', model: e.name, version: e.version }, `model ${e.name}:${e.version} left the repository`);
      if (e.runners) await this.unload(e, 'its directory was removed');
      else this.options.onReleased?.(e);
    }
    // Hot reload: a READY version whose model.json changed re-reads it (verdict rules, thresholds).
    await Promise.all(entries.filter((e) => (!only || e.name === only) && e.state === 'READY').map((e) => this.rereadManifest(e)));
    await Promise.all((only ? [only] : this.names()).map((name) => this.reconcile(name)));
  }

  /** Model instances each version runs. */
  get instances(): number {
    return this.options.instances;
  }

  list(): readonly ModelEntry[] {
    return this.entries;
  }

  /** Every model name in the repository. */
  names(): string[] {
    return [...new Set(this.entries.map((e) => e.name))];
  }

  private versionsOf(name: string): ModelEntry[] {
    return this.entries.filter((e) => e.name === name);
  }

  policyOf(name: string): VersionPolicy {
    const policies = this.options.versionPolicies;
    return policies?.perModel[name] ?? policies?.default ?? DEFAULT_POLICY;
  }

  overridesOf(name: string): VersionOverrides {
    return this.overrides.get(name) ?? {};
  }

  trafficOf(name: string): TrafficSplit | undefined {
    return this.traffic.get(name);
  }

  /** Sets what model control asks of a model; reconcile(name) applies it. */
  setControl(name: string, overrides: VersionOverrides, traffic: TrafficSplit | undefined): void {
    this.overrides.set(name, overrides);
    if (traffic) this.traffic.set(name, traffic);
    else this.traffic.delete(name);
  }

  /** The versions that should be loaded now: the policy over those that can load, plus overrides and the traffic split's versions. */
  desiredVersions(name: string): Set<string> {
    const o = this.overridesOf(name);
    if (o.unloaded) return new Set();
    const usable = (e: ModelEntry) => e.complete && !(e.state === 'FAILED' && e.failedFingerprint === e.fingerprint);
    const versions = this.versionsOf(name);
    const candidates = versions.filter((e) => usable(e) && !o.excluded?.includes(e.version)).map((e) => e.version);
    const desired = new Set(selectVersions(this.policyOf(name), candidates));
    const split = this.traffic.get(name);
    const asked = [...(o.extra ?? []), split?.primary, split?.canary?.version, split?.shadow?.version, ...Object.values(split?.pins ?? {})];
    for (const v of asked) {
      const e = versions.find((x) => x.version === v);
      if (e && usable(e)) desired.add(e.version);
    }
    return desired;
  }

  /**
   * Loads what is wanted and not loaded (each warmed up before it is READY and
   * takes traffic), then drains and releases what is loaded and no longer wanted.
   * Runs one at a time per model.
   */
  reconcile(name: string): Promise<void> {
    const previous = this.chains.get(name) ?? Promise.resolve();
    const next = previous.then(() => this.reconcileNow(name));
    const settled = next.catch((err: Error) => {
      this.options.logger.error({ event: 'model_reconcile_failed', model: name, err }, `model ${name}: ${err.message}`);
    });
    this.chains.set(name, settled);
    return settled;
  }

  private async reconcileNow(name: string): Promise<void> {
    if (this.closed) return;
    // A failed load changes what the policy picks (latest:1 falls back to the one before), hence the rounds.
    for (let round = 0; round < 8; round++) {
      const desired = this.desiredVersions(name);
      // A version with instances is loaded, even LOADING while the watchdog replaces every
      // instance: loading it again would orphan the replacement (its thread never ended).
      const missing = this.versionsOf(name).filter((e) => desired.has(e.version) && e.state !== 'READY' && !e.runners);
      if (missing.length === 0) break;
      for (const e of missing) {
        if (this.closed) return;
        await this.load(e);
      }
    }
    const desired = this.desiredVersions(name);
    const o = this.overridesOf(name);
    for (const e of this.versionsOf(name)) {
      if (desired.has(e.version) || e.state === 'FAILED') continue;
      const why = o.unloaded || o.excluded?.includes(e.version) ? 'unloaded' : `not selected by the version policy ${formatVersionPolicy(this.policyOf(name))}`;
      // READY, or LOADING while the watchdog replaces its instances: either way it has instances to release.
      if (e.runners) await this.unload(e, why);
      else if (e.state === 'UNAVAILABLE' && e.complete && e.reason !== why) this.setState(e, 'UNAVAILABLE', why);
    }
  }

  /**
   * Takes the version out of traffic, waits until the requests holding it are
   * done (at most drainTimeoutMs), then closes its batcher and instances: the
   * worker threads end and their sessions' memory goes back.
   */
  private async unload(entry: ModelEntry, why: string): Promise<void> {
    const { logger } = this.options;
    const id = `${entry.name}:${entry.version}`;
    this.setState(entry, 'UNLOADING', why);
    const started = Date.now();
    if (entry.inflight > 0) {
      const done = new Promise<void>((r) => this.drained.set(entry, r));
      const timeout = this.options.drainTimeoutMs ?? 30_000;
      await Promise.race([done, delay(timeout)]);
      this.drained.delete(entry);
    }
    const abandoned = entry.inflight;
    entry.batcher?.close();
    await Promise.all((entry.runners ?? []).map((r) => r.close().catch(() => undefined)));
    entry.runners = undefined;
    entry.batcher = undefined;
    this.setState(entry, 'UNAVAILABLE', why);
    this.options.onReleased?.(entry);
    logger.info(
      { event: 'model_unloaded', model: entry.name, version: entry.version, reason: why, drain_ms: Date.now() - started, abandoned },
      `model ${id} unloaded (${why}) after ${Date.now() - started} ms of draining${abandoned ? `; ${abandoned} request(s) still running got SHUTTING_DOWN` : ''}`,
    );
  }

  /** Loads every model; resolves when each is READY or FAILED. Idempotent. */
  loadAll(): Promise<void> {
    this.loading ??= this.gate.then(() => Promise.all(this.names().map((name) => this.reconcile(name)))).then(() => undefined);
    return this.loading;
  }

  private gate: Promise<unknown> = Promise.resolve();

  /** Makes the first loadAll() wait for `ready` (model control reads its table first, so that the first load follows it). */
  holdLoadingUntil(ready: Promise<unknown>): void {
    this.gate = ready.catch(() => undefined);
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
    this.setState(entry, 'LOADING');
    const fingerprint = entry.fingerprint;
    const runners: ModelRunner[] = [];
    try {
      const manifest = await readModelManifest(join(entry.dir, 'model.json'));
      entry.manifestStamp = manifestStampOf(fingerprint);
      const create = this.options.createRunner ?? ((path, opts) => OnnxRunner.create(path, opts));
      const runnerOptions = {
        ...this.options.runner,
        ...(manifest.input?.name ? { inputName: manifest.input.name } : {}),
        ...(manifest.task ? { task: manifest.task } : {}),
      };
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
      let warmOutput: Float32Array = new Float32Array(0);
      for (const runner of runners) {
        for (let i = 0; i < Math.max(1, this.options.warmupRuns); i++) {
          ({ dims, output: warmOutput } = await runner.run(warmBatch, width, height));
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
      const declared = first.info.outputs ?? [{ shape: first.info.outputShape }];
      const { task, format, formatDetected: detected } = resolveLayout(manifest, declared, [1, ...dims.slice(1)], extraOutputsOf(warmOutput));
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
        // Box models decode in the instances' threads (labels and format are fixed while loaded).
        ...(task === 'detect' && format ? { decode: { format, numClasses: manifest.labels.length } } : {}),
      };
      const batcher = new Batcher(runners, batcherOptions);
      Object.assign(entry, { manifest, format, formatDetected: detected, task, inputWidth: width, inputHeight: height, runners, batcher });
      this.setState(entry, 'READY');
      logger.info(
        {
          event: 'model_ready',
          model: entry.name,
          version: entry.version,
          format,
          format_detected: detected,
          task,
          input: `${width}x${height}`,
          output_shape: dims,
          instances: runners.length,
          max_batch: batcherOptions.maxBatch,
          max_queue: batcherOptions.maxQueue,
        },
        `model ${id} READY (${task === 'detect' ? format : task}${detected ? ', detected from output shape' : ''}, input ${width}x${height}, ${runners.length} instance(s))`,
      );
    } catch (err) {
      await Promise.all(runners.map((r) => r.close().catch(() => undefined)));
      const reason = (err as Error).message;
      entry.failedFingerprint = fingerprint;
      this.setState(entry, 'FAILED', reason);
      logger.error({ event: 'model_failed', model: entry.name, version: entry.version, reason }, `model ${id} FAILED: ${reason}`);
    }
  }

  /**
   * Hot reload of a READY version's model.json (on refresh: model_control poll or a
   * load call), once per change of its size or mtime. A valid file that changes only
   * HOT_FIELDS (verdict rules, thresholds) serves from the next request on; anything
   * else is refused, logged (`model_config_rejected`) and shown as the version's
   * `reason`, and the model.json read before keeps serving
   * (docs/models.md#verdict-rules).
   */
  private async rereadManifest(entry: ModelEntry): Promise<void> {
    const stamp = manifestStampOf(entry.fingerprint);
    if (!entry.manifest || entry.manifestStamp === undefined || stamp === entry.manifestStamp || stamp === '-') return;
    entry.manifestStamp = stamp;
    const { logger } = this.options;
    const id = `${entry.name}:${entry.version}`;
    let why: string;
    try {
      const next = await readModelManifest(join(entry.dir, 'model.json'));
      const cold = coldChanges(entry.manifest, next);
      if (cold.length === 0) {
        if (entry.state !== 'READY') return;
        entry.manifest = next;
        entry.reason = undefined;
        logger.info({ event: 'model_config_reloaded', model: entry.name, version: entry.version }, `model ${id}: model.json reloaded`);
        return;
      }
      why = `it changes ${cold.join(', ')}, which take effect only when the version is loaded again`;
    } catch (err) {
      why = (err as Error).message;
    }
    if (entry.state !== 'READY') return;
    entry.reason = `model.json change not applied (the previous one still serves): ${why}`;
    logger.error({ event: 'model_config_rejected', model: entry.name, version: entry.version, reason: why }, `model ${id}: ${entry.reason}`);
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

  /** The default model's name (or name:version), or throws NO_DEFAULT_MODEL. */
  private resolveRef(ref: string | undefined): { name: string; version: string | undefined; wanted: string } {
    let wanted = ref;
    if (!wanted) {
      const def = this.defaultModel();
      if ('error' in def) throw new Errors.NO_DEFAULT_MODEL(def.error);
      wanted = def.ref;
    }
    const [name, version] = wanted.split(':', 2);
    return { name: name!, version, wanted };
  }

  /**
   * Finds the entry for `name` or `name:version` (the default model when absent).
   * A bare name means the traffic split's primary when READY, else the newest
   * READY version, else the newest version (to say why it is not ready).
   */
  find(ref: string | undefined): ModelEntry {
    const { name, version, wanted } = this.resolveRef(ref);
    const versions = this.versionsOf(name);
    if (version !== undefined) {
      const entry = versions.find((e) => e.version === version);
      if (!entry) throw new Errors.MODEL_NOT_FOUND(JSON.stringify(wanted));
      return entry;
    }
    const primary = this.traffic.get(name)?.primary;
    const ready = versions.filter((e) => e.state === 'READY');
    const chosen = (primary !== undefined ? ready.find((e) => e.version === primary) : undefined) ?? ready.at(-1) ?? versions.at(-1);
    if (!chosen) throw new Errors.MODEL_NOT_FOUND(JSON.stringify(wanted));
    return chosen;
  }

  /** Like find(), but the model must be READY. */
  findReady(ref: string | undefined): ReadyModel {
    const entry = this.find(ref);
    if (entry.state !== 'READY') {
      const detail = entry.state === 'FAILED' ? `FAILED: ${entry.reason ?? ''}` : `${entry.state}${entry.reason ? ` (${entry.reason})` : ''}`;
      throw new Errors.MODEL_NOT_READY(`${entry.name}:${entry.version}`, detail);
    }
    return entry as ReadyModel;
  }

  /**
   * The version that serves one request, held until release(): a named version
   * as asked; a bare name through the model's traffic split (pinned line, canary
   * share, else the primary), falling back to the primary when the version the
   * split names is not READY. Unloading a version waits for its holders.
   */
  route(ref: string | undefined, key: { requestId: string; line?: string }): RoutedModel {
    const { name, version } = this.resolveRef(ref);
    const split = version === undefined ? this.traffic.get(name) : undefined;
    let model: ReadyModel;
    let role: RoutedModel['role'] = 'requested';
    if (version !== undefined) {
      model = this.findReady(ref);
    } else {
      const pick = pickVersion(split, key);
      const picked = pick.version !== undefined ? this.readyVersion(name, pick.version) : undefined;
      model = picked ?? this.findReady(name);
      role = picked ? pick.role : 'primary';
    }
    const shadowOf = shadowVersion(split, key.requestId);
    const shadow = shadowOf !== undefined && shadowOf !== model.version ? this.readyVersion(name, shadowOf) : undefined;
    const release = this.lease(model);
    return { model, role, ...(shadow ? { shadow } : {}), release };
  }

  /** Holds a READY version until the returned function is called (once). */
  lease(entry: ModelEntry): () => void {
    entry.inflight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.inflight--;
      if (entry.inflight === 0) this.drained.get(entry)?.();
    };
  }

  private readyVersion(name: string, version: string): ReadyModel | undefined {
    const e = this.entries.find((x) => x.name === name && x.version === version);
    return e?.state === 'READY' ? (e as ReadyModel) : undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.loading?.catch(() => undefined);
    await Promise.all([...this.chains.values()]);
    for (const e of this.entries) e.batcher?.close();
    await Promise.all(this.entries.flatMap((e) => (e.runners ?? []).map((r) => r.close())));
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The model.json part of a fingerprint. */
function manifestStampOf(fingerprint: string): string {
  return fingerprint.slice(fingerprint.indexOf('|') + 1);
}

/**
 * Fields of model.json that a READY version takes over without loading again: what
 * postprocessing and the verdict read per request. Any other change (labels, input,
 * format, task…) needs the version loaded again (a load call or a new version).
 */
const HOT_FIELDS = ['description', 'conf', 'iou', 'max_detections', 'agnostic_nms', 'tiling', 'verdict', 'quality'] as const;

/** The fields of `next` outside HOT_FIELDS that differ from `current`. */
function coldChanges(current: ModelManifest, next: ModelManifest): string[] {
  const keys = new Set([...Object.keys(current), ...Object.keys(next)]);
  const hot: readonly string[] = HOT_FIELDS;
  return [...keys].filter(
    (k) => !hot.includes(k) && JSON.stringify((current as Record<string, unknown>)[k]) !== JSON.stringify((next as Record<string, unknown>)[k]),
  );
}

function inputSize(manifest: ModelManifest, shape: (number | string)[]): [number, number] {
  const width = manifest.input?.width ?? (typeof shape[3] === 'number' ? shape[3] : undefined);
  const height = manifest.input?.height ?? (typeof shape[2] === 'number' ? shape[2] : undefined);
  if (!width || !height) {
    throw new Error(`input size unknown (input shape [${shape.join(', ')}]): set input.width and input.height in model.json`);
  }
  return [width, height];
}
