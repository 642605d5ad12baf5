import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { storeUrl } from './config/locations.js';
import { createMetrics, recordModelInfo, type Metrics } from './metrics/metrics.js';
import { startSystemSampler } from './metrics/system-sampler.js';
import { effectiveLimits, type EffectiveLimits } from './metrics/cgroup.js';
import { ModelRepository, type ModelEntry, type RepositoryOptions } from './inference/repository.js';
import { repositoryOptions } from './inference/from-config.js';
import { imageDecodeCounts } from './inference/preprocess.js';
import { ModelControl, ModelControlStore } from './models/index.js';
import { createResultStore, type ResultStore } from './store/index.js';
import type { JobQueue } from './queue/index.js';
import { eventBusFromConfig, type EventBus } from './events/index.js';
import { queueFromConfig } from './jobs/queue-from-config.js';
import { jobProcessor } from './jobs/processor.js';
import { startJobRunner, type JobRunner } from './jobs/job-runner.js';
import { LiveStats, RecordingEventBus } from './stream/live-stats.js';
import { DependencyMonitor, type Dependency } from './health/dependency-monitor.js';
import { dependenciesOf } from './health/dependencies.js';
import { TestInference } from './health/test-inference.js';
import { dependencyGauge } from './health/gauge.js';
import type { InspectionObserver } from './inspection/observers.js';
import { LineRegistry } from './lines/registry.js';
import { LineStore } from './lines/line-store.js';
import { createSnapshotService, type SnapshotService } from './snapshots/index.js';
import { startHistory, type History } from './history/index.js';
import { outputsFromConfig, type OutputHub } from './outputs/index.js';
import { redisProbe } from './auth/rate-limit/index.js';
import { parseSources, SourceManager, type SourceContext } from './sources/index.js';
import { verdictSettings } from './verdict/settings.js';
import type { Gauge } from 'prom-client';

/**
 * What a Sightline process runs on, built from the config in one place for
 * `sightline serve` (buildApp) and `sightline worker`, and closed in one order.
 */
export interface Runtime {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  models: ModelRepository;
  /** Loads, unloads and traffic splits while serving (model_control); the control table is shared by every process. */
  modelControl: ModelControl;
  store: ResultStore;
  queue: JobQueue;
  /** Live result and status events by line (in-process or RabbitMQ). */
  events: EventBus;
  /**
   * Told of every result of this process with its image. Parts that follow
   * results (snapshots, the line registry, history) add themselves here while the
   * runtime is built, before the job runner starts.
   */
  observers: InspectionObserver[];
  /** Lines and cameras: frame counts and states, shared by every process through the store. */
  lines: LineRegistry;
  /** Result images kept by policy (every NG, a sample of OK) and each camera's newest frame; an observer. */
  snapshots: SnapshotService;
  /** This process's history rows (an observer and the metrics registry) and the reader of every process's (GET /v1/stats/history). */
  history: History;
  /** Factory outputs (MQTT, webhooks, OPC UA, Modbus): sinks of this process's events, or of the bus's. */
  outputs: OutputHub;
  /** CPUs and memory this process may use: the container's cgroup limits where lower than the host's. Read once at start. */
  limits: EffectiveLimits;
  /** The job consumer: always in a worker, in a server when `worker` is on. */
  jobRunner: JobRunner | undefined;
  /**
   * Stops taking jobs (those in hand finish, or go back to the queue after
   * shutdown_timeout_ms, while their models still run), then closes the queue,
   * the models, the store and the event bus, in that order.
   */
  close(): Promise<void>;
}

/** Dependency states for /readyz (store, queue, broker, disk) and the models' periodic test inference. */
export interface Health {
  monitor: DependencyMonitor;
  testInference: TestInference;
}

/** A worker's runtime: also what its /readyz reports. */
export interface WorkerRuntime extends Runtime {
  health: Health;
}

/** A server's runtime: also what /readyz, /metrics and the stream's status report. */
export interface ServerRuntime extends Runtime {
  /** Sliding window of this process's results (all sources): throughput and latency for live status. */
  live: LiveStats;
  health: Health;
  /** Pulled sources (hot folders, camera URLs) this server reads itself: `sources` and /v1/sources. */
  sources: SourceManager;
}

export interface RuntimeOptions {
  logger: Logger;
  /** Passed to the model repository (e.g. another runner back end). */
  createRunner?: RepositoryOptions['createRunner'];
}

type Parts = Omit<Runtime, 'jobRunner' | 'close'> & { closeQueue: () => Promise<void> };

/**
 * The shared parts: metrics, models, result store, job queue, event bus. Nothing
 * here waits for a dependency: the process starts at once and each part retries
 * on its own.
 */
async function buildParts(config: Config, options: RuntimeOptions, wrapEvents: (bus: EventBus) => EventBus): Promise<Parts> {
  const { logger } = options;
  // verdict_rules_file is first read and checked here: a bad file stops the start with its reason (later changes: src/verdict/settings.ts).
  verdictSettings(config.verdict_rules_file);
  const metrics = createMetrics({ imageDecodes: imageDecodeCounts });
  const limits = effectiveLimits();
  const queueLabel = (entry: ModelEntry) => ({ queue: `infer:${entry.name}:${entry.version}` });
  const models = new ModelRepository(
    repositoryOptions(
      config,
      logger,
      {
        createRunner: options.createRunner,
        onStateChange: (entry) => {
          metrics.modelReady.set({ model: entry.name, version: entry.version }, entry.state === 'READY' ? 1 : 0);
          // Exported as 0 from the first READY, so increase() sees the first restart.
          if (entry.state === 'READY') metrics.instanceRestarts.inc({ model: entry.name, version: entry.version, reason: 'stalled' }, 0);
          recordModelInfo(metrics, entry);
        },
        onInstanceRestart: (entry, reason) => metrics.instanceRestarts.inc({ model: entry.name, version: entry.version, reason }),
        batching: {
          onBatch: (entry, size) => metrics.batchSize.observe({ model: entry.name }, size),
          onExpired: () => metrics.rejected.inc({ reason: 'deadline_exceeded' }),
          onShed: (_entry, reason) => metrics.rejected.inc({ reason }),
          onDepthChange: (entry, depth) => metrics.queueDepth.set(queueLabel(entry), depth),
        },
      },
      limits.cpus,
    ),
  );
  const store = createResultStore(storeUrl(config), config.store_schema ? { schema: config.store_schema } : {});
  const modelControl = new ModelControl({
    mode: config.model_control,
    pollIntervalMs: config.model_poll_interval_ms,
    syncIntervalMs: config.model_sync_interval_ms,
    repository: models,
    ...(config.model_control !== 'none' ? { store: new ModelControlStore(storeUrl(config), config.store_schema ? { schema: config.store_schema } : {}) } : {}),
    logger,
  });
  // The first load waits (briefly) for the control table, so that a rollback or unload made before a restart holds.
  models.holdLoadingUntil(modelControl.start());
  const { queue, close: closeQueue } = await queueFromConfig(config);
  // A lost broker connection is logged, never fatal: the queue reconnects by itself.
  queue.on('error', (err) => logger.warn({ event: 'queue_error', err }, `job queue: ${err.message}`));
  // Outputs see what this process publishes (results, camera changes) through the wrapped bus.
  const outputs = await outputsFromConfig(config, { logger, registry: metrics.registry, lines: () => lines.list() });
  const events = outputs.wrap(wrapEvents(await eventBusFromConfig(config, logger)));
  const lines = new LineRegistry({
    store: new LineStore(storeUrl(config), config.store_schema ? { schema: config.store_schema } : {}),
    events,
    metrics,
    logger,
    thresholds: { staleAfterMs: config.camera_stale_after_ms, offlineAfterMs: config.camera_offline_after_ms },
    flushIntervalMs: config.line_registry_flush_ms,
    reviewCounts: (line, since) => store.reviewCounts(line, { from: since }),
  });
  lines.start();
  // Both servers and workers keep snapshots of what they inspect, in the one shared directory.
  const snapshots = createSnapshotService(config, { logger, registry: metrics.registry });
  // History rows live beside the results too: every process writes its own, any process answers for all.
  const history = startHistory({ config, logger, metrics });
  const observers: InspectionObserver[] = [lines, snapshots, history.recorder];
  // A port in use or a bad certificate stops the process here; an absent peer does not.
  await outputs.start(events);
  return { config, logger, metrics, models, modelControl, store, queue, events, observers, lines, snapshots, history, outputs, limits, closeQueue };
}

/**
 * What /readyz reads, for servers and workers alike: the dependency monitor
 * (with `sightline_dependency_up`) and the models' test inference, both started.
 */
function startHealth(parts: Parts, extra: readonly Dependency[] = []): Health & { stop(): void } {
  const { config, logger, metrics, models, store, queue, events } = parts;
  // The process answers at once with 503 and the reason (/readyz lists what it
  // waits for) until its dependencies are up; the monitor keeps retrying.
  const monitor = new DependencyMonitor({
    dependencies: [...dependenciesOf({ config, store, queue, events }), ...parts.outputs.dependencies(), ...extra],
    intervalMs: config.dependency_check_interval_ms,
    retryBaseMs: config.dependency_retry_base_ms,
    retryMaxMs: config.dependency_retry_max_ms,
    logger,
  });
  const upGauge = dependencyGauge(metrics.registry);
  monitor.on('change', (status) => upGauge.set({ dependency: status.name }, status.state === 'up' ? 1 : 0));
  monitor.start();
  const testInference = new TestInference(models, { intervalMs: config.test_inference_interval_ms, maxPixels: config.max_image_pixels, logger });
  testInference.start();
  return {
    monitor,
    testInference,
    stop() {
      monitor.stop();
      testInference.stop();
    },
  };
}

/**
 * `sightline_jobs_total` and the job_dead log line. With RabbitMQ the queue of the
 * process that runs a job reports its outcome, so workers count their own jobs
 * (an API replica with --no-worker counts none).
 */
function countJobs(parts: Parts): void {
  const { queue, metrics, logger } = parts;
  queue.on('completed', () => metrics.jobs.inc({ state: 'done' }));
  queue.on('retrying', () => metrics.jobs.inc({ state: 'retrying' }));
  queue.on('dead', (id, reason, message) => {
    metrics.jobs.inc({ state: 'dead' });
    logger.warn({ event: 'job_dead', job_id: id, reason, error: message }, `job ${id} dead: ${reason}`);
  });
}

/** What pulled sources run on: the inspection path, the line registry, metrics. */
function sourceContext(parts: Parts): SourceContext {
  const { config, models, store, metrics, logger, events, observers, lines } = parts;
  return {
    deps: { config, models, store, metrics, events, observers },
    lines,
    metrics,
    logger,
    settings: {
      pollIntervalMs: config.source_poll_interval_ms,
      snapshotIntervalMs: config.source_snapshot_interval_ms,
      backoffMs: config.source_backoff_ms,
      backoffMaxMs: Math.max(config.source_backoff_ms, config.source_backoff_max_ms),
      timeoutMs: config.source_timeout_ms,
      maxBytes: config.body_limit_bytes,
      requestTimeoutMs: config.request_timeout_ms,
      ffmpegPath: config.source_ffmpeg_path,
    },
  };
}

function startSampler(parts: Parts) {
  const { config, metrics, logger, limits } = parts;
  return startSystemSampler({ metrics, logger, intervalMs: config.system_sample_interval_ms, nvidiaSmiPath: config.nvidia_smi_path, limits });
}

/** Starts consuming jobs when `runJobs`, last, once everything a job touches is in place. */
function withJobRunner(parts: Parts, runJobs: boolean): Runtime {
  const { closeQueue, ...shared } = parts;
  const { config, logger, metrics, models, store, events, queue, observers } = shared;
  const jobRunner = runJobs
    ? startJobRunner(
        queue,
        jobProcessor({ config, models, store, metrics, logger, events, observers }),
        config.worker_concurrency > 0 ? config.worker_concurrency : 2 * Math.max(1, models.instances),
        logger,
        models.loadAll(),
      )
    : undefined;
  return {
    ...shared,
    jobRunner,
    async close() {
      // Jobs in hand finish first (or go back to the queue) while their models still run.
      await jobRunner?.stop(config.shutdown_timeout_ms);
      await closeQueue();
      await shared.modelControl.stop();
      await models.close();
      // Images still queued are written (their index beside the results) before the store goes.
      await shared.snapshots.close();
      // Its last counts go out while the store and the bus are still there.
      await shared.lines.close();
      // After every result and camera change above: what is in their outboxes waits there for the next start.
      await shared.outputs.close();
      // The last (partial) buckets, with every job result that finished above.
      await shared.history.close();
      await store.close();
      await events.close();
    },
  };
}

/**
 * `sightline worker`: consumes jobs. Its small HTTP port (src/server/worker-app.ts)
 * serves /readyz from `health` and /metrics from the registry, which the sampler
 * keeps current (the history records them too).
 */
export async function startWorkerRuntime(config: Config, options: RuntimeOptions): Promise<WorkerRuntime> {
  const parts = await buildParts(config, options, (bus) => bus);
  countJobs(parts);
  const health = startHealth(parts);
  const sampler = startSampler(parts);
  const runtime = withJobRunner(parts, true);
  return {
    ...runtime,
    health: { monitor: health.monitor, testInference: health.testInference },
    async close() {
      // Probing stops first, so the store and the queue closing below read as no outage;
      // /readyz says "draining" meanwhile (worker-app), whatever the last states were.
      health.stop();
      await runtime.close();
      await sampler.stop();
    },
  };
}

/**
 * `sightline serve` (and buildApp in tests): the shared parts plus what the
 * server reports (job counts, queue depth, system metrics, dependency states,
 * test inference, live stream figures); jobs are consumed here when `worker` is on.
 */
export async function startServerRuntime(config: Config, options: RuntimeOptions): Promise<ServerRuntime> {
  const { logger } = options;
  // A bad `sources` value stops the start here, like any bad setting, before anything is opened.
  const configuredSources = parseSources(config.sources);
  const live = new LiveStats();
  // Every result this process produces is published: recording there covers sync, job and stream results.
  const parts = await buildParts(config, options, (bus) => new RecordingEventBus(bus, live));
  const { metrics, queue } = parts;
  countJobs(parts);
  // Shared rate-limit buckets: reported, never a reason to refuse traffic (the limiter falls back to this process's buckets).
  const rateLimitRedis = config.rate_limit_url ? redisProbe(config.rate_limit_url) : undefined;
  const sources = new SourceManager(sourceContext(parts), configuredSources);
  const health = startHealth(parts, [
    ...(rateLimitRedis ? [{ name: 'ratelimit:redis', critical: false, probe: () => rateLimitRedis.probe() }] : []),
    ...sources.dependencies(),
  ]);
  const depthTimer = setInterval(() => {
    queue.depth().then(
      (depth) => metrics.queueDepth.set({ queue: 'jobs' }, depth),
      () => undefined,
    );
  }, 2000);
  depthTimer.unref();
  const sampler = startSampler(parts);
  void queue.waitUntilReady().catch((err: Error) => logger.warn({ event: 'queue_unavailable', err }, `job queue not reachable yet: ${err.message}`));
  const runtime = withJobRunner(parts, config.worker);
  // Sources read only once everything a frame touches is in place; checks of sources added later join /readyz.
  const upGauge = metrics.registry.getSingleMetric('sightline_dependency_up') as Gauge<'dependency'> | undefined;
  sources.start({
    add: (dependency) => health.monitor.add(dependency),
    remove: (name) => {
      health.monitor.remove(name);
      upGauge?.remove({ dependency: name });
    },
  });
  return {
    ...runtime,
    live,
    health: { monitor: health.monitor, testInference: health.testInference },
    sources,
    async close() {
      // First: frames in hand finish (a hot folder's files are moved) while models, store and bus are all there.
      await sources.close();
      clearInterval(depthTimer);
      health.stop();
      await rateLimitRedis?.close();
      await sampler.stop();
      await runtime.close();
    },
  };
}
