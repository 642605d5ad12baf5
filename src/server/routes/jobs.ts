import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import { inspectImage } from '../../inference/preprocess.js';
import { readImage } from '../image-body.js';
import { DeadLettersSchema, errorResponse, IMAGE_BODY_TYPES, JobStatusSchema, PurgedSchema, RequeuedJobSchema, SubmittedJobSchema } from '../api-schemas.js';
import { DEFAULT_CAMERA, DEFAULT_LINE, DetectHeadersSchema, detectQuerySchema, type DetectQuery } from '../../protocol/options.js';
import type { JobOptions } from '../../jobs/processor.js';

const JobHeaders = Type.Composite([
  DetectHeadersSchema,
  Type.Object({ 'idempotency-key': Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' })) }),
]);
const JobParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' }) });
const NoQuery = Type.Object({}, { additionalProperties: false });
const DeadQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }, { additionalProperties: false });
const JobLocation = { location: { type: 'string', description: 'Where to follow the job: /v1/jobs/<id>' } };
const QueueDown = 'QUEUE_UNAVAILABLE: the broker cannot be reached (Retry-After)';

export async function jobRoutes(app: FastifyInstance): Promise<void> {
  const { config, queue, store, metrics } = app.sightline;

  app.post<{ Querystring: DetectQuery; Headers: Static<typeof JobHeaders> }>(
    '/v1/jobs',
    {
      config: { role: 'ingest' },
      schema: {
        summary: 'Submit a job',
        description:
          "The input and query of POST /v1/detect, inspected later by a worker. Answers once the job is durable. A repeated Idempotency-Key returns the first job; X-Request-Timeout-Ms is the job's time to live.",
        tags: ['jobs'],
        consumes: IMAGE_BODY_TYPES,
        querystring: detectQuerySchema(config.max_detections_limit),
        headers: JobHeaders,
        response: {
          202: { ...SubmittedJobSchema, headers: JobLocation },
          400: errorResponse(
            'EMPTY_BODY: no image; INVALID_IMAGE: not a readable image; NO_DEFAULT_MODEL: no model named and no default; INVALID_JOB: cannot be queued as given',
          ),
          404: errorResponse('MODEL_NOT_FOUND: no such model or version'),
          413: errorResponse('BODY_TOO_LARGE: over body_limit_bytes; IMAGE_TOO_LARGE: over max_image_pixels'),
          415: errorResponse('UNSUPPORTED_MEDIA_TYPE: not JPEG, PNG, WebP or multipart'),
          503: errorResponse(`QUEUE_FULL: queue_max_length jobs are waiting; ${QueueDown}; QUEUE_CLOSED: the queue is closing (Retry-After)`),
        },
      },
    },
    async function submitJob(request, reply) {
      const { line = DEFAULT_LINE, camera, priority, model, conf, iou, max_det, agnostic, tiling, source_width, source_height, top_k, masks } = request.query;
      request.line = line;
      // A model that does not exist is refused now, not dead-lettered by a worker later.
      app.sightline.models.find(model);
      const image = await readImage(request);
      // Refuse what is not an image now; what fails to decode later ends in the dead letters.
      const header = await inspectImage(image, config.max_image_pixels);
      const options: JobOptions = { camera, model, conf, iou, max_det, agnostic, tiling, source_width, source_height, top_k, masks };
      const timeout = request.headers['x-request-timeout-ms'];
      const { job_id, duplicate } = await queue.enqueue({
        line,
        priority: priority ?? 'normal',
        image,
        contentType: `image/${header.format}`,
        options: options as Record<string, unknown>,
        idempotencyKey: request.headers['idempotency-key'],
        ...(timeout ? { ttlMs: timeout } : {}),
      });
      if (!duplicate) {
        metrics.jobs.inc({ state: 'enqueued' });
        app.sightline.lines.received(line, camera ?? DEFAULT_CAMERA);
      }
      request.log.info({ event: 'job_enqueued', job_id, line, camera: camera ?? DEFAULT_CAMERA, duplicate }, 'job enqueued');
      return reply.status(202).header('location', `/v1/jobs/${job_id}`).send({ job_id, status: 'queued', duplicate });
    },
  );

  app.get<{ Params: Static<typeof JobParams> }>(
    '/v1/jobs/:id',
    {
      config: { role: ['ingest', 'viewer'] },
      schema: {
        summary: 'Get a job',
        description: 'Its state (queued, running, done, dead), attempts, last error, and the stored result once done.',
        tags: ['jobs'],
        params: JobParams,
        querystring: NoQuery,
        response: {
          200: JobStatusSchema,
          404: errorResponse('JOB_NOT_FOUND: no such job'),
          503: errorResponse(`${QueueDown}; STORE_UNAVAILABLE: the result store cannot be reached (Retry-After)`),
        },
      },
    },
    async function getJob(request) {
      const job = await queue.getJob(request.params.id);
      if (!job) throw new Errors.JOB_NOT_FOUND(JSON.stringify(request.params.id));
      const result = job.state === 'done' ? await store.get(job.id) : undefined;
      return {
        job_id: job.id,
        state: job.state,
        line: job.line,
        priority: job.priority,
        attempts: job.attempts,
        created_at: new Date(job.createdAt).toISOString(),
        updated_at: new Date(job.updatedAt).toISOString(),
        ...(job.lastError ? { last_error: job.lastError } : {}),
        ...(job.deadReason ? { dead_reason: job.deadReason } : {}),
        ...(result ? { result } : {}),
      };
    },
  );

  app.get<{ Querystring: Static<typeof DeadQuery> }>(
    '/v1/dead-letters',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List dead letters',
        description: 'Jobs that failed job_max_attempts times or expired, with their last error (`limit`, default 100).',
        tags: ['jobs'],
        querystring: DeadQuery,
        response: { 200: DeadLettersSchema, 503: errorResponse(QueueDown) },
      },
    },
    async function listDeadLetters(request) {
      return { jobs: await queue.listDead({ limit: request.query.limit ?? 100 }) };
    },
  );

  app.post<{ Params: Static<typeof JobParams> }>(
    '/v1/dead-letters/:id/retry',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Retry a dead letter',
        description: 'Puts a dead job back in the queue.',
        tags: ['jobs'],
        params: JobParams,
        querystring: NoQuery,
        response: {
          202: { ...RequeuedJobSchema, headers: JobLocation },
          404: errorResponse('JOB_NOT_FOUND: no such job in the dead letters'),
          503: errorResponse(QueueDown),
        },
      },
    },
    async function retryDeadLetter(request, reply) {
      if (!(await queue.retryDead(request.params.id))) throw new Errors.JOB_NOT_FOUND(`${JSON.stringify(request.params.id)} in the dead letters`);
      return reply.status(202).header('location', `/v1/jobs/${request.params.id}`).send({ job_id: request.params.id, status: 'queued' });
    },
  );

  app.delete(
    '/v1/dead-letters',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Purge the dead letters',
        tags: ['jobs'],
        querystring: NoQuery,
        response: { 200: PurgedSchema, 503: errorResponse(QueueDown) },
      },
    },
    async function purgeDeadLetters() {
      return { purged: await queue.purgeDead() };
    },
  );
}
