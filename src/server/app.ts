import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import multipart from '@fastify/multipart';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { createLogger } from '../logger.js';
import type { RepositoryOptions } from '../inference/repository.js';
import { startServerRuntime, type ServerRuntime } from '../runtime.js';
import { MAX_PARAM_LENGTH, frameworkErrors, installErrorHandler } from './error-handler.js';
import { requestIdFor } from './request-id.js';
import { logRequestStart, logResponse } from './request-log.js';
import { installExpectContinue } from './expect-continue.js';
import { finiteNumbers } from './finite-numbers.js';
import { httpsOption, security } from '../auth/index.js';
import { corsSupport } from './cors.js';
import { openapi } from './openapi.js';
import { detectRoutes } from './routes/detect.js';
import { modelRoutes } from './routes/models.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { resultRoutes } from './routes/results.js';
import { lineRoutes } from './routes/lines.js';
import { historyRoutes } from './routes/history.js';
import { snapshotRoutes } from './routes/snapshots.js';
import { jobRoutes } from './routes/jobs.js';
import { streamRoutes } from '../stream/route.js';
import { alertRoutes } from './routes/alerts.js';
import { uploadRoutes } from './routes/uploads.js';
import { adminConnectionRoutes } from './routes/admin-connections.js';
import { outputRoutes } from './routes/outputs.js';
import { sourceRoutes } from './routes/sources.js';
import { scalingRoutes } from './routes/scaling.js';
import { oipRoutes } from './routes/v2/index.js';
import { webRoutes } from './web.js';
import { installHttpDrain } from './drain.js';
import { connectionServerOptions, connectionsPlugin } from '../connections/index.js';

/** What routes and plugins reach as `app.sightline`: the server runtime's parts (src/runtime.ts). */
export type Sightline = Pick<
  ServerRuntime,
  'config' | 'models' | 'modelControl' | 'metrics' | 'store' | 'queue' | 'events' | 'observers' | 'lines' | 'snapshots' | 'live' | 'health' | 'outputs'
>;

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
    // Our own hooks log request_start/success/failure with the fields docs/logging.md names.
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

  // Models, store, queue, events, health and metrics; the job runner when `worker` is on.
  const runtime = await startServerRuntime(config, { logger, createRunner: options.createRunner });
  const { models, metrics, store, queue, events, live, health } = runtime;
  try {
    app.decorate('sightline', {
      config,
      models,
      modelControl: runtime.modelControl,
      metrics,
      store,
      queue,
      events,
      observers: runtime.observers,
      lines: runtime.lines,
      snapshots: runtime.snapshots,
      outputs: runtime.outputs,
      live,
      health,
    });

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
    // The OpenAPI document (/openapi.json, /docs): before the routes, which it collects as they register.
    await app.register(openapi);

    await app.register(healthRoutes);
    await app.register(metricsRoutes);
    await app.register(alertRoutes);
    await app.register(modelRoutes);
    await app.register(detectRoutes);
    await app.register(resultRoutes);
    await app.register(lineRoutes);
    await app.register(historyRoutes, { history: runtime.history });
    await app.register(scalingRoutes, { history: runtime.history });
    await app.register(snapshotRoutes);
    await app.register(jobRoutes);
    await app.register(uploadRoutes);
    await app.register(streamRoutes);
    await app.register(adminConnectionRoutes);
    await app.register(outputRoutes);
    await app.register(sourceRoutes, { sources: runtime.sources });
    await app.register(oipRoutes, { prefix: '/v2' });
    // The operator dashboard at / (dist/web, built from web/), after the API routes.
    await app.register(webRoutes);

    // Responses that finish while the server drains or closes carry `Connection: close`:
    // no keep-alive socket is left behind for server.close() to wait on, and none is
    // cut under a client's next request (src/server/drain.ts; `serve` drains on SIGTERM).
    const drain = installHttpDrain(app);
    app.addHook('preClose', async () => drain.mark());

    // In the runtime's order: jobs in hand finish while their models still run, then queue, models, store, events.
    app.addHook('onClose', async () => runtime.close());

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
  } catch (err) {
    // A plugin that refuses the config (an unreadable JWT key file, a route without a role)
    // must not leave the models' threads, the job runner and the timers running: nobody
    // holds the app to close it.
    await runtime.close();
    throw err;
  }
}
