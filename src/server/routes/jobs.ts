import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import { inspectImage } from '../../inference/preprocess.js';
import { readImage } from '../image-body.js';
import { DEFAULT_LINE, DetectHeadersSchema, detectQuerySchema, type DetectQuery } from './detect.js';
import type { JobOptions } from '../../jobs/processor.js';

const JobHeaders = Type.Composite([
  DetectHeadersSchema,
  Type.Object({ 'idempotency-key': Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' })) }),
]);
const JobParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' }) });
const NoQuery = Type.Object({}, { additionalProperties: false });
const DeadQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }, { additionalProperties: false });

export async function jobRoutes(app: FastifyInstance): Promise<void> {
  const { config, queue, store, metrics } = app.sightline;

  app.post<{ Querystring: DetectQuery; Headers: Static<typeof JobHeaders> }>(
    '/v1/jobs',
    { config: { role: 'ingest' }, schema: { querystring: detectQuerySchema(config.max_detections_limit), headers: JobHeaders } },
    async (request, reply) => {
      const { line = DEFAULT_LINE, priority, model, conf, iou, max_det, agnostic } = request.query;
      request.line = line;
      // A model that does not exist is refused now, not dead-lettered by a worker later.
      app.sightline.models.find(model);
      const image = await readImage(request);
      // Refuse what is not an image now; what fails to decode later ends in the dead letters.
      const header = await inspectImage(image, config.max_image_pixels);
      const options: JobOptions = { model, conf, iou, max_det, agnostic };
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
      if (!duplicate) metrics.jobs.inc({ state: 'enqueued' });
      request.log.info({ event: 'job_enqueued', job_id, line, duplicate }, 'job enqueued');
      return reply
        .status(202)
        .header('location', `/v1/jobs/${job_id}`)
        .send({ job_id, status: 'queued', duplicate });
    },
  );

  app.get<{ Params: Static<typeof JobParams> }>('/v1/jobs/:id', { config: { role: ['ingest', 'viewer'] }, schema: { params: JobParams, querystring: NoQuery } }, async (request) => {
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
  });

  app.get<{ Querystring: Static<typeof DeadQuery> }>('/v1/dead-letters', { config: { role: 'viewer' }, schema: { querystring: DeadQuery } }, async (request) => ({
    jobs: await queue.listDead({ limit: request.query.limit ?? 100 }),
  }));

  app.post<{ Params: Static<typeof JobParams> }>('/v1/dead-letters/:id/retry', { config: { role: 'admin' }, schema: { params: JobParams, querystring: NoQuery } }, async (request, reply) => {
    if (!(await queue.retryDead(request.params.id))) throw new Errors.JOB_NOT_FOUND(`${JSON.stringify(request.params.id)} in the dead letters`);
    return reply.status(202).header('location', `/v1/jobs/${request.params.id}`).send({ job_id: request.params.id, status: 'queued' });
  });

  app.delete('/v1/dead-letters', { config: { role: 'admin' }, schema: { querystring: NoQuery } }, async () => ({ purged: await queue.purgeDead() }));
}
