import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import multipart from '@fastify/multipart';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { createLogger } from '../log.js';
import { createMetrics, recordModelInfo, type Metrics } from '../ops/metrics.js';
import { startSystemSampler } from '../ops/system-sampler.js';
import { ModelRepository, type ModelEntry, type RepositoryOptions } from '../inference/repository.js';
import { repositoryOptions } from '../inference/from-config.js';
import { MAX_PARAM_LENGTH, frameworkErrors, installErrorHandler } from './error-handler.js';
import { requestIdFor } from './request-id.js';
import { logRequestStart, logResponse } from './request-log.js';
import { installExpectContinue } from './expect-continue.js';
import { finiteNumbers } from './finite-numbers.js';
import { httpsOption, security } from '../auth/index.js';
import { corsSupport } from './cors.js';
import { detectRoutes } from './routes/detect.js';
import { modelRoutes } from './routes/models.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { resultRoutes } from './routes/results.js';
import { createResultStore, type ResultStore } from '../store/index.js';
import { storeUrl } from './store-url.js';
import { jobRoutes } from './routes/jobs.js';
import { streamRoutes } from './routes/stream.js';
import { alertRoutes } from './routes/alerts.js';
import { uploadRoutes } from './routes/uploads.js';
import { adminConnectionRoutes } from './routes/admin-connections.js';
import { connectionServerOptions, connectionsPlugin } from '../connections/index.js';
import { queueFromConfig } from '../jobs/queue-from-config.js';
import { jobProcessor } from '../jobs/processor.js';
import { startWorker } from '../jobs/worker.js';
import type { JobQueue } from '../queue/index.js';
import { eventBusFromConfig, type EventBus } from '../events/index.js';
import { LiveStats, RecordingEventBus } from '../ops/live-stats.js';
import { DependencyMonitor } from '../ops/health/dependency-monitor.js';
import { dependenciesOf } from '../ops/health/dependencies.js';
import { TestInference } from '../ops/health/test-inference.js';
import { dependencyGauge } from '../ops/health/gauge.js';

export interface Sightline {
  config: Config;
  models: ModelRepository;
  metrics: Metrics;
  store: ResultStore;
  queue: JobQueue;
  /** Live result and status events by line (in-process or RabbitMQ). */
  events: EventBus;
  /** Sliding window of this process's results (all sources): throughput and latency for live status. */
  live: LiveStats;
  /** Dependency states for /readyz (store, queue, broker, disk) and the models' periodic test inference. */
  health: { monitor: DependencyMonitor; testInference: TestInference };
}

declare module 'fastify' {
  interface FastifyInstance {
    sightline: Sightline;
  }
}

export interface BuildOptions {
  logger?: Logger;
  /** Passed to the model repository (e.g. another runner back end). */
  createRunner?: RepositoryOptions['createRunner'];
  /** Wait until every model is READY or FAILED before returning (default: load in the background). */
  waitForModels?: boolean;
}

export const IMAGE_CONTENT_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'application/octet-stream'];

/**
 * Builds the HTTP API without listening, so tests drive it with inject() and the
 * CLI with listen(). Models load in the background; /readyz says when they are in.
 */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const logger = options.logger ?? createLogger(config.log_level);
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps the instance's default generics.
    loggerInstance: logger as FastifyBaseLogger,
    // Our own hooks log request_start/success/failure with the fields DESIGN.md names.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: requestIdFor,
    bodyLimit: config.body_limit_bytes,
    return503OnClosing: true,
    // finiteNumbers: coerced "Infinity"/"1e999" would otherwise pass every type and range check (see the module).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: true, allErrors: false }, plugins: [finiteNumbers] },
    // Bad URL encoding and over-long path parameters answer in Sightline's error format, with a code.
    frameworkErrors,
    // Request ids may be 128 characters (X-Request-Id); Fastify's default cap on a path parameter is 100.
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Idle, header, body timeouts and the header size limit; JSON 408/431 for clients that break them (src/connections).
    ...connectionServerOptions(config),
    // HTTPS (and WSS) when tls_cert_file and tls_key_file are set.
    ...httpsOption(config),
  });

  const metrics = createMetrics();
  const queueLabel = (entry: ModelEntry) => ({ queue: `infer:${entry.name}:${entry.version}` });
  const models = new ModelRepository(
    repositoryOptions(config, logger, {
      createRunner: options.createRunner,
      onStateChange: (entry) => {
        metrics.modelReady.set({ model: entry.name, version: entry.version }, entry.state === 'READY' ? 1 : 0);
        recordModelInfo(metrics, entry);
      },
      batching: {
        onBatch: (entry, size) => metrics.batchSize.observe({ model: entry.name }, size),
        onExpired: () => metrics.rejected.inc({ reason: 'deadline_exceeded' }),
        onShed: (_entry, reason) => metrics.rejected.inc({ reason }),
        onDepthChange: (entry, depth) => metrics.queueDepth.set(queueLabel(entry), depth),
      },
    }),
  );
  const store = createResultStore(storeUrl(config), config.store_schema ? { schema: config.store_schema } : {});
  const jobs = await queueFromConfig(config);
  const { queue } = jobs;
  // A lost broker connection is logged, never fatal: the queue reconnects by itself.
  queue.on('error', (err) => logger.warn({ event: 'queue_error', err }, `job queue: ${err.message}`));
  queue.on('completed', () => metrics.jobs.inc({ state: 'done' }));
  queue.on('retrying', () => metrics.jobs.inc({ state: 'retrying' }));
  queue.on('dead', (id, reason, message) => {
    metrics.jobs.inc({ state: 'dead' });
    logger.warn({ event: 'job_dead', job_id: id, reason, error: message }, `job ${id} dead: ${reason}`);
  });
  const live = new LiveStats();
  // Every result this process produces is published: recording there covers sync, job and stream results.
  const events = new RecordingEventBus(await eventBusFromConfig(config, logger), live);
  // Nothing here waits for a dependency: the server listens at once and answers 503 with the
  // reason (/readyz lists what it waits for) until they are up; the monitor keeps retrying.
  const monitor = new DependencyMonitor({
    dependencies: dependenciesOf({ config, store, queue, events }),
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
  app.decorate('sightline', { config, models, metrics, store, queue, events, live, health: { monitor, testInference } });

  installErrorHandler(app, config.body_limit_bytes);
  app.addContentTypeParser(IMAGE_CONTENT_TYPES, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  await app.register(multipart, {
    limits: { fileSize: config.body_limit_bytes, files: 4, fields: 16, parts: 20 },
    throwFileSizeLimit: true,
  });

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    logRequestStart(request);
  });
  app.addHook('onResponse', async (request, reply) => logResponse(request, reply.statusCode, reply.elapsedTime));
  // Expect: 100-continue is answered by the app, not by Node before any check (src/server/expect-continue.ts).
  installExpectContinue(app, config.upload_max_bytes);

  // CORS (cors_origins; off by default): before security, see src/server/cors.ts.
  await app.register(corsSupport, { config });
  // Security headers, identity and roles (401/403), rate limits (429): before any route,
  // as it refuses a route that states no role.
  await app.register(security, { config });
  // Connection registry and limits: after security, so that its hooks see request.identity.
  await app.register(connectionsPlugin);

  await app.register(healthRoutes);
  await app.register(metricsRoutes);
  await app.register(alertRoutes);
  await app.register(modelRoutes);
  await app.register(detectRoutes);
  await app.register(resultRoutes);
  await app.register(jobRoutes);
  await app.register(uploadRoutes);
  await app.register(streamRoutes);
  await app.register(adminConnectionRoutes);

  // Responses that finish while the server closes must not leave keep-alive
  // sockets behind: server.close() would wait for them until they time out.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });

  const worker = config.worker
    ? startWorker(
        queue,
        jobProcessor({ config, models, store, metrics, logger, events }),
        config.worker_concurrency > 0 ? config.worker_concurrency : 2 * Math.max(1, models.instances),
        logger,
        models.loadAll(),
      )
    : undefined;
  const depthTimer = setInterval(() => {
    queue.depth().then((depth) => metrics.queueDepth.set({ queue: 'jobs' }, depth), () => undefined);
  }, 2000);
  depthTimer.unref();
  const sampler = startSystemSampler({ metrics, logger, intervalMs: config.system_sample_interval_ms, nvidiaSmiPath: config.nvidia_smi_path });
  void queue.waitUntilReady().catch((err: Error) => logger.warn({ event: 'queue_unavailable', err }, `job queue not reachable yet: ${err.message}`));

  app.addHook('onClose', async () => {
    clearInterval(depthTimer);
    monitor.stop();
    testInference.stop();
    await sampler.stop();
    // Jobs in hand finish first (or go back to the queue) while their models still run.
    await worker?.stop(config.shutdown_timeout_ms);
    await jobs.close();
    await models.close();
    await store.close();
    await events.close();
  });

  const loading = models.loadAll().then(() => {
    const list = models.list();
    const ready = list.filter((e) => e.state === 'READY').map((e) => `${e.name}:${e.version}`);
    const failed = list.filter((e) => e.state === 'FAILED').map((e) => `${e.name}:${e.version}`);
    logger.info(
      { event: 'models_loaded', ready, failed },
      `serving ${ready.length ? ready.join(', ') : 'no model'}${failed.length ? `; failed: ${failed.join(', ')}` : ''}`,
    );
  });
  if (options.waitForModels) await loading;
  return app;
}
