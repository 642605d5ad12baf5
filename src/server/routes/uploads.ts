import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { UploadService, UPLOADS_PATH } from '../../uploads/service.js';
import { emptyResponse, errorResponse, UploadStatusSchema } from '../api-schemas.js';

/** tus takes no query; ids are not checked here but by the service (any other id: 404 UPLOAD_NOT_FOUND, as documented). */
const NoQuery = Type.Object({}, { additionalProperties: false });

const header = (description: string) => ({ type: 'string', description });
const UPLOAD_ERRORS = {
  400: errorResponse(
    'INVALID_UPLOAD: a malformed tus request or Upload-Metadata; EMPTY_BODY, INVALID_IMAGE: the finished upload is not an image (no job is made)',
  ),
  404: errorResponse('UPLOAD_NOT_FOUND: no such upload (any id that is not 32 hex digits); MODEL_NOT_FOUND: Upload-Metadata names no such model'),
  403: errorResponse('INVALID_UPLOAD: a header the tus request needs is missing'),
  409: errorResponse("UPLOAD_CONFLICT: Upload-Offset is not the server's offset (HEAD, then resume), or the upload is locked"),
  410: errorResponse('UPLOAD_NOT_FOUND: the upload expired or was deleted'),
  412: errorResponse('INVALID_UPLOAD: Tus-Resumable is missing or not 1.0.0'),
  413: errorResponse('UPLOAD_TOO_LARGE: over upload_max_bytes or past Upload-Length; IMAGE_TOO_LARGE: over max_image_pixels'),
  415: errorResponse('UNSUPPORTED_MEDIA_TYPE: the finished upload is not JPEG, PNG or WebP; INVALID_UPLOAD: a PATCH without application/offset+octet-stream'),
  503: errorResponse('QUEUE_FULL, QUEUE_UNAVAILABLE: the complete upload is kept; send HEAD or the final PATCH again to make the job (Retry-After)'),
};
const JobHeaders = {
  'sightline-job-id': header('Once the upload is complete: the job made from it'),
  'sightline-job-location': header('Once the upload is complete: /v1/jobs/<id>'),
};

/**
 * /v1/uploads: tus 1.0.0 resumable uploads (@tus/server with a FileStore); a
 * finished upload becomes a job. This plugin is encapsulated: its catch-all
 * content-type parser leaves the body (`application/offset+octet-stream`) unread
 * for tus, and Fastify's body limit does not apply (uploads have `upload_max_bytes`).
 */
export async function uploadRoutes(app: FastifyInstance): Promise<void> {
  const { config, queue, metrics, models } = app.sightline;
  const service = new UploadService({
    config,
    queue,
    metrics,
    logger: app.log,
    checkModel: (model) => void models.find(model),
    onJob: (line, camera) => app.sightline.lines.received(line, camera),
  });
  service.start();
  app.addHook('onClose', async () => service.close());

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));

  async function tus(request: FastifyRequest<{ Params: { id?: string } }>, reply: FastifyReply): Promise<void> {
    reply.hijack();
    const res = reply.raw;
    let response: Response;
    try {
      response = await service.handle(toWebRequest(request), request.params.id);
    } catch (err) {
      request.log.error({ event: 'upload_error', err }, 'upload request failed');
      response = new Response(JSON.stringify({ error: { code: 'INTERNAL_ERROR', message: 'Internal error' } }), {
        status: 500,
        headers: { 'Content-Type': 'application/json; charset=utf-8', 'Tus-Resumable': '1.0.0' },
      });
    }
    const failure = service.errorOf(response);
    if (failure) request.failure = { code: failure.code, err: Object.assign(new Error(failure.message), { code: failure.code }) };
    // The client may be gone (a cut PATCH): nothing to answer then.
    if (res.destroyed || res.writableEnded) return;
    const body = response.body ? Buffer.from(await response.arrayBuffer()) : undefined;
    res.statusCode = response.status;
    for (const [name, value] of response.headers) res.setHeader(name, value);
    res.setHeader('x-request-id', request.id);
    // An empty Web Response body still gets text/plain: tus answers carry no body.
    if (body && body.length > 0) res.setHeader('content-length', body.length);
    else res.removeHeader('content-type');
    res.end(body && body.length > 0 ? body : undefined);
  }

  app.route({
    method: ['POST', 'OPTIONS'],
    url: UPLOADS_PATH,
    config: { role: 'ingest' },
    schema: {
      summary: "tus: create an upload (POST) or read the server's tus capabilities (OPTIONS)",
      description:
        'tus 1.0.0 (docs/uploads.md). POST with Tus-Resumable: 1.0.0, Upload-Length (or Upload-Defer-Length: 1) and Upload-Metadata (the options of POST /v1/jobs: line, model, priority, conf, iou, max_det, agnostic) creates an upload; with bytes in an application/offset+octet-stream body it stores them too, and when they are the whole upload it makes the job. OPTIONS answers Tus-Version, Tus-Extension and Tus-Max-Size.',
      tags: ['uploads'],
      querystring: NoQuery,
      response: {
        201: {
          ...emptyResponse('POST: the upload is created'),
          headers: {
            location: header('/v1/uploads/<id>'),
            'upload-offset': header('Bytes stored (creation-with-upload)'),
            'upload-expires': header('When an unfinished upload is deleted'),
            ...JobHeaders,
          },
        },
        204: {
          ...emptyResponse('OPTIONS: the tus capabilities'),
          headers: { 'tus-version': header('1.0.0'), 'tus-extension': header('Supported extensions'), 'tus-max-size': header('upload_max_bytes') },
        },
        ...UPLOAD_ERRORS,
      },
    },
    handler: tus,
  });
  app.route({
    method: ['HEAD', 'PATCH', 'DELETE', 'OPTIONS'],
    url: `${UPLOADS_PATH}/:id`,
    config: { role: 'ingest' },
    schema: {
      summary: 'tus: read the offset (HEAD), append bytes (PATCH) or delete (DELETE) an upload',
      description:
        'tus 1.0.0 (docs/uploads.md); every request but OPTIONS sends Tus-Resumable: 1.0.0. HEAD answers Upload-Offset: resume from there (on a complete upload whose job could not be made yet, it makes the job). PATCH with Upload-Offset and an application/offset+octet-stream body appends bytes; the PATCH that completes the upload makes the job. DELETE removes an unfinished upload.',
      tags: ['uploads'],
      querystring: NoQuery,
      response: {
        200: {
          ...emptyResponse('HEAD: where the upload stands'),
          headers: { 'upload-offset': header('Bytes the server has'), 'upload-length': header('The declared length'), ...JobHeaders },
        },
        204: {
          ...emptyResponse('PATCH: bytes appended (Upload-Offset; the job headers once complete); DELETE: removed; OPTIONS: the tus capabilities'),
          headers: { 'upload-offset': header('Bytes the server has now'), ...JobHeaders },
        },
        ...UPLOAD_ERRORS,
      },
    },
    handler: tus,
  });

  // Not tus: where an upload stands, as JSON (job id included once it is a job).
  app.get<{ Params: { id: string } }>(
    `${UPLOADS_PATH}/:id`,
    {
      exposeHeadRoute: false,
      config: { role: 'ingest' },
      schema: {
        summary: 'Where an upload stands',
        description:
          'Not tus: the upload as JSON (state uploading, complete or finished; offset, length, metadata, expires_at), with job_id and job_location once it is a job.',
        tags: ['uploads'],
        querystring: NoQuery,
        response: { 200: UploadStatusSchema, 404: errorResponse('UPLOAD_NOT_FOUND: no such upload, or it expired') },
      },
    },
    async function uploadStatus(request) {
      return service.status(request.params.id);
    },
  );
}

/** The Node request as a Web Request for tus (the body streams through, unread until tus reads it). */
function toWebRequest(request: FastifyRequest): Request {
  const raw = request.raw;
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw.headers)) {
    if (value === undefined) continue;
    headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  const hasBody =
    (raw.method === 'POST' || raw.method === 'PATCH') && (raw.headers['transfer-encoding'] !== undefined || Number(raw.headers['content-length'] ?? 0) > 0);
  const init: RequestInit & { duplex?: 'half' } = { method: raw.method, headers };
  if (hasBody) {
    init.body = Readable.toWeb(raw) as unknown as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  // Only the path matters to tus (Location is relative): a fixed origin avoids trusting Host.
  return new Request(new URL(raw.url ?? '/', 'http://sightline.local'), init);
}
