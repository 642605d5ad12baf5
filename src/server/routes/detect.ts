import type { FastifyInstance } from 'fastify';
import { readImage } from '../image-body.js';
import { DetectionResultSchema, errorResponse, IMAGE_BODY_TYPES } from '../api-schemas.js';
import { Errors } from '../../errors.js';
import { performance } from 'node:perf_hooks';
import underPressure from '@fastify/under-pressure';
import { inspect } from '../../inspection/inspect.js';
import { dropReason } from '../../lines/drop-reason.js';
import { defaultMaxRssBytes } from '../../metrics/cgroup.js';
import {
  DEFAULT_CAMERA,
  DEFAULT_LINE,
  DetectHeadersSchema,
  detectQuerySchema,
  LINE_PATTERN,
  PRIORITIES,
  type DetectHeaders,
  type DetectQuery,
} from '../../protocol/options.js';

const LINE_REGEX = new RegExp(LINE_PATTERN);

export async function detectRoutes(app: FastifyInstance): Promise<void> {
  const { config, models, metrics, lines } = app.sightline;

  // Scoped to the inference routes: /livez, /readyz and /metrics keep answering under pressure.
  await app.register(underPressure, {
    maxEventLoopDelay: config.max_event_loop_delay_ms,
    maxRssBytes: config.max_rss_bytes > 0 ? config.max_rss_bytes : defaultMaxRssBytes(),
    pressureHandler: async function refuseUnderPressure(_request, _reply, type) {
      metrics.rejected.inc({ reason: type === 'eventLoopDelay' ? 'event_loop_delay' : 'memory' });
      throw new Errors.OVERLOADED(type === 'eventLoopDelay' ? 'event-loop delay over the limit' : 'memory over the limit');
    },
  });

  // A full model queue is answered before the body is read: under overload the
  // server must not spend its CPU receiving images it is going to refuse.
  app.addHook('onRequest', async function refuseWhenQueueFull(request) {
    const query = request.query as { model?: unknown; priority?: unknown; line?: unknown; camera?: unknown };
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
      // A refused frame still tells that its camera is sending.
      const camera = typeof query.camera === 'string' && LINE_REGEX.test(query.camera) ? query.camera : DEFAULT_CAMERA;
      lines.received(request.line ?? DEFAULT_LINE, camera);
      lines.dropped(request.line ?? DEFAULT_LINE, camera, 'queue_full');
      throw new Errors.OVERLOADED(`the inference queue of ${entry.name}:${entry.version} is full`);
    }
  });

  app.post<{ Querystring: DetectQuery; Headers: DetectHeaders }>(
    '/v1/detect',
    {
      config: { role: 'ingest' },
      schema: {
        summary: 'Inspect one image',
        description:
          'Runs the model on one image and answers with its detections and OK/NG verdict. Body: a raw JPEG, PNG or WebP (application/octet-stream: the content is sniffed), or multipart/form-data with the file in field `image`. X-Request-Timeout-Ms sets the deadline (default request_timeout_ms). A full model queue is refused before the body is read.',
        tags: ['inspection'],
        consumes: IMAGE_BODY_TYPES,
        querystring: detectQuerySchema(config.max_detections_limit),
        headers: DetectHeadersSchema,
        response: {
          200: DetectionResultSchema,
          400: errorResponse('EMPTY_BODY: no image; INVALID_IMAGE: not a decodable image; NO_DEFAULT_MODEL: no model named and no default'),
          404: errorResponse('MODEL_NOT_FOUND: no such model or version'),
          413: errorResponse('BODY_TOO_LARGE: over body_limit_bytes; IMAGE_TOO_LARGE: over max_image_pixels'),
          415: errorResponse('UNSUPPORTED_MEDIA_TYPE: not JPEG, PNG, WebP or multipart'),
          500: errorResponse('INFERENCE_FAILED: the runtime failed on this input'),
          503: errorResponse(
            'OVERLOADED: the model queue is full, or event-loop delay or memory is over its limit; MODEL_NOT_READY: the model is LOADING or FAILED (Retry-After)',
          ),
          504: errorResponse('DEADLINE_EXCEEDED: the deadline passed before inference'),
        },
      },
    },
    async function detectHandler(request, reply) {
      const query = request.query;
      // The deadline runs from the request's arrival, not from the end of its upload.
      const timeoutMs = request.headers['x-request-timeout-ms'] ?? config.request_timeout_ms;
      const deadline = performance.now() - reply.elapsedTime + timeoutMs;
      const line = query.line ?? DEFAULT_LINE;
      const camera = query.camera ?? DEFAULT_CAMERA;
      request.line = line;
      lines.received(line, camera);
      try {
        const image = await readImage(request);
        const { result } = await inspect(app.sightline, {
          source: 'sync',
          requestId: request.id,
          line,
          camera,
          image,
          options: query,
          deadline,
          logger: request.log,
        });
        return result;
      } catch (err) {
        lines.dropped(line, camera, dropReason(err));
        throw err;
      }
    },
  );
}
