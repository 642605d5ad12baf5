import type { FastifyInstance } from 'fastify';
import { readImage } from '../image-body.js';
import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import { performance } from 'node:perf_hooks';
import underPressure from '@fastify/under-pressure';
import { totalmem } from 'node:os';
import { detect, STAGES } from '../../inference/detector.js';
import { PRIORITIES } from '../../inference/batcher.js';
import { resultEvent } from '../../events/index.js';

export const LINE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
export const MODEL_REF_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$';
export const DEFAULT_LINE = 'default';
const LINE_REGEX = new RegExp(LINE_PATTERN);

export function detectQuerySchema(maxDetectionsLimit: number) {
  return Type.Object(
    {
      line: Type.Optional(Type.String({ pattern: LINE_PATTERN })),
      model: Type.Optional(Type.String({ pattern: MODEL_REF_PATTERN })),
      conf: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
      iou: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
      max_det: Type.Optional(Type.Integer({ minimum: 1, maximum: maxDetectionsLimit })),
      agnostic: Type.Optional(Type.Boolean()),
      priority: Type.Optional(Type.Union(PRIORITIES.map((p) => Type.Literal(p)))),
    },
    { additionalProperties: false },
  );
}
export type DetectQuery = Static<ReturnType<typeof detectQuerySchema>>;

export const MAX_REQUEST_TIMEOUT_MS = 3_600_000;
/** Headers are open (clients send many); only the deadline header is checked. */
export const DetectHeadersSchema = Type.Object({
  'x-request-timeout-ms': Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_REQUEST_TIMEOUT_MS })),
});
export type DetectHeaders = Static<typeof DetectHeadersSchema>;

export async function detectRoutes(app: FastifyInstance): Promise<void> {
  const { config, models, metrics, store, events } = app.sightline;

  // Scoped to the inference routes: /livez, /readyz and /metrics keep answering under pressure.
  await app.register(underPressure, {
    maxEventLoopDelay: config.max_event_loop_delay_ms,
    maxRssBytes: config.max_rss_bytes > 0 ? config.max_rss_bytes : Math.floor(totalmem() * 0.75),
    pressureHandler: async (_request, _reply, type) => {
      metrics.rejected.inc({ reason: type === 'eventLoopDelay' ? 'event_loop_delay' : 'memory' });
      throw new Errors.OVERLOADED(type === 'eventLoopDelay' ? 'event-loop delay over the limit' : 'memory over the limit');
    },
  });

  // A full model queue is answered before the body is read: under overload the
  // server must not spend its CPU receiving images it is going to refuse.
  app.addHook('onRequest', async (request) => {
    const query = request.query as { model?: unknown; priority?: unknown; line?: unknown };
    // Early answers still count under their line in the metrics.
    if (typeof query.line === 'string' && LINE_REGEX.test(query.line)) request.line = query.line;
    const priority = PRIORITIES.find((p) => p === query.priority) ?? 'normal';
    let entry;
    try {
      entry = models.find(typeof query.model === 'string' ? query.model : undefined);
    } catch {
      return; // unknown model: the handler answers with the precise error
    }
    if (entry.batcher && !entry.batcher.hasRoomFor(priority)) {
      metrics.rejected.inc({ reason: 'queue_full' });
      throw new Errors.OVERLOADED(`the inference queue of ${entry.name}:${entry.version} is full`);
    }
  });

  app.post<{ Querystring: DetectQuery; Headers: DetectHeaders }>(
    '/v1/detect',
    { config: { role: 'ingest' }, schema: { querystring: detectQuerySchema(config.max_detections_limit), headers: DetectHeadersSchema } },
    async (request, reply) => {
      const query = request.query;
      // The deadline runs from the request's arrival, not from the end of its upload.
      const timeoutMs = request.headers['x-request-timeout-ms'] ?? config.request_timeout_ms;
      const deadline = performance.now() - reply.elapsedTime + timeoutMs;
      const line = query.line ?? DEFAULT_LINE;
      request.line = line;
      const image = await readImage(request);
      const model = models.findReady(query.model);
      const outcome = await detect(model, image, {
        conf: query.conf,
        iou: query.iou,
        maxDetections: query.max_det,
        agnostic: query.agnostic,
        maxPixels: config.max_image_pixels,
        priority: query.priority,
        deadline,
      });
      for (const stage of STAGES) {
        metrics.stageDuration.observe({ model: model.name, stage }, outcome.timings_ms[stage] / 1000);
      }
      metrics.verdicts.inc({ line, verdict: outcome.verdict });
      for (const d of outcome.detections) metrics.detections.inc({ line, label: d.label });
      const result = { request_id: request.id, line, model: { name: model.name, version: model.version }, ...outcome };
      if (config.store_sync_results) {
        // The caller already has its answer: a store hiccup is logged, never turned into a failed detection.
        store.save({ ...result, source: 'sync' }).catch((err: Error) => {
          metrics.rejected.inc({ reason: 'store_write_failed' });
          request.log.error({ event: 'result_store_failed', err }, 'could not store the result');
        });
      }
      events.publish(resultEvent('sync', result));
      request.log.info(
        { event: 'detection_result', line, model: model.name, version: model.version, verdict: outcome.verdict, detections: outcome.detections.length, labels: outcome.detections.map((d) => d.label) },
        'detection result',
      );
      return result;
    },
  );
}
