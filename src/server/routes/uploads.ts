import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { UploadService, UPLOADS_PATH } from '../../uploads/service.js';

/** tus takes no query; ids are not checked here but by the service (any other id: 404 UPLOAD_NOT_FOUND, as documented). */
const NoQuery = Type.Object({}, { additionalProperties: false });

/**
 * /v1/uploads: tus 1.0.0 resumable uploads (@tus/server with a FileStore); a
 * finished upload becomes a job. This plugin is encapsulated: its catch-all
 * content-type parser leaves the body (`application/offset+octet-stream`) unread
 * for tus, and Fastify's body limit does not apply (uploads have `upload_max_bytes`).
 */
export async function uploadRoutes(app: FastifyInstance): Promise<void> {
  const { config, queue, metrics, models } = app.sightline;
  const service = new UploadService({ config, queue, metrics, logger: app.log, checkModel: (model) => void models.find(model) });
  service.start();
  app.addHook('onClose', async () => service.close());

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));

  const tus = async (request: FastifyRequest<{ Params: { id?: string } }>, reply: FastifyReply) => {
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
  };

  app.route({ method: ['POST', 'OPTIONS'], url: UPLOADS_PATH, config: { role: 'ingest' }, schema: { querystring: NoQuery }, handler: tus });
  app.route({ method: ['HEAD', 'PATCH', 'DELETE', 'OPTIONS'], url: `${UPLOADS_PATH}/:id`, config: { role: 'ingest' }, schema: { querystring: NoQuery }, handler: tus });

  // Not tus: where an upload stands, as JSON (job id included once it is a job).
  app.get<{ Params: { id: string } }>(`${UPLOADS_PATH}/:id`, { exposeHeadRoute: false, config: { role: 'ingest' }, schema: { querystring: NoQuery } }, async (request) => service.status(request.params.id));
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
    (raw.method === 'POST' || raw.method === 'PATCH') &&
    (raw.headers['transfer-encoding'] !== undefined || Number(raw.headers['content-length'] ?? 0) > 0);
  const init: RequestInit & { duplex?: 'half' } = { method: raw.method, headers };
  if (hasBody) {
    init.body = Readable.toWeb(raw) as unknown as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  // Only the path matters to tus (Location is relative): a fixed origin avoids trusting Host.
  return new Request(new URL(raw.url ?? '/', 'http://sightline.local'), init);
}
