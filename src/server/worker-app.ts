import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { WorkerRuntime } from '../runtime.js';
import { LivenessSchema, ReadinessSchema } from './api-schemas.js';
import { installErrorHandler } from './error-handler.js';
import { readiness, type ReadinessCheck } from './readiness.js';

export interface WorkerAppOptions {
  runtime: Pick<WorkerRuntime, 'models' | 'health' | 'metrics'>;
  logger: Logger;
  /** Why the worker takes no more jobs (e.g. "SIGTERM: finishing the jobs in hand"), or undefined while it takes them. */
  draining: () => string | undefined;
}

/** No query parameters: unknown ones are refused (400 INVALID_REQUEST), as on the server. */
const NoQuery = Type.Object({}, { additionalProperties: false });

/** Probes carry no body; anything bigger than this is not a probe. */
const BODY_LIMIT = 1024;

/**
 * The small HTTP port of `sightline worker`: /livez, /readyz and /metrics, the
 * same answers as the server's for the same questions, so one probe and one
 * scrape config fit both. It opens no API and has no auth: it tells what the
 * worker is doing, never what it has processed, and belongs on the cluster's
 * network only (docs/workers.md).
 */
export function buildWorkerApp(options: WorkerAppOptions): FastifyInstance {
  const { runtime, draining } = options;
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // A probe every few seconds per pod would drown the log.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    bodyLimit: BODY_LIMIT,
    // As on the server: an unknown query parameter is refused, not silently dropped.
    ajv: { customOptions: { removeAdditional: false } },
  });
  installErrorHandler(app, BODY_LIMIT);

  // Liveness only says the event loop answers; a worker busy with jobs or draining is alive.
  app.get('/livez', { schema: { querystring: NoQuery, response: { 200: LivenessSchema } } }, async function livez() {
    return { status: 'ok' as const };
  });

  app.get('/readyz', { schema: { querystring: NoQuery, response: { 200: ReadinessSchema, 503: ReadinessSchema } } }, async function readyz(_request, reply) {
    const reason = draining();
    // Critical: a draining worker takes no jobs, whatever its broker and models say.
    const extra: ReadinessCheck[] = reason === undefined ? [] : [{ name: 'draining', status: 'fail', critical: true, reason }];
    const { ready, body } = readiness(runtime.models, runtime.health, extra);
    if (!ready) reply.status(503).header('retry-after', '1');
    return body;
  });

  const { registry } = runtime.metrics;
  app.get('/metrics', { schema: { querystring: NoQuery } }, async function scrapeMetrics(_request, reply) {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
  return app;
}
