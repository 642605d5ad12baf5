import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { Errors } from '../errors.js';
import { notFound } from './error-handler.js';
import { UPLOADS_PATH } from '../uploads/service.js';

const expecting = new WeakSet<IncomingMessage>();

/**
 * `Expect: 100-continue`. Left to Node, 100 Continue goes out before any route,
 * auth or size check has seen the request, inviting a body that is then refused
 * (a 30 MB upload sent only to get 413). Here the request goes through the app
 * like any other, and 100 Continue is written only when something starts reading
 * the body: every answer given before that (401, 404, 415, a Content-Length over
 * the limit: 413) is the final one, and the client never sends the body. Node
 * does not keep such a connection alive (the client may still send the body).
 */
export function installExpectContinue(app: FastifyInstance, uploadMaxBytes: number): void {
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    expecting.add(req);
    continueOnRead(req, res);
    app.server.emit('request', req, res);
  });
  // Runs once auth and the connection limits (onRequest) have passed. The not-found
  // handler would read the body first (its parsers are the root's); the body parsers
  // check a declared length before they read (Fastify's, the multipart reader), but
  // tus reads at once, so its limit is checked here.
  app.addHook('preParsing', async (request) => {
    if (!expecting.has(request.raw)) return;
    if (request.is404) throw notFound(request);
    const declared = Number(request.headers['content-length']);
    if (request.routeOptions.url?.startsWith(UPLOADS_PATH)) {
      if (declared > uploadMaxBytes) throw new Errors.UPLOAD_TOO_LARGE(uploadMaxBytes);
    } else if (declared > request.routeOptions.bodyLimit) {
      throw new Errors.BODY_TOO_LARGE(request.routeOptions.bodyLimit);
    }
  });
}

/** Writes 100 Continue when the body is first read: a 'data' or 'readable' listener, or resume(). */
function continueOnRead(req: IncomingMessage, res: ServerResponse): void {
  const onListener = (event: string | symbol) => {
    if (event === 'data' || event === 'readable') go();
  };
  const go = () => {
    req.off('newListener', onListener);
    req.off('resume', go);
    // Once the answer is under way (or the body is dumped after it), 100 Continue is no longer due.
    if (!res.headersSent && !res.writableEnded && !res.destroyed) res.writeContinue();
  };
  req.on('newListener', onListener);
  req.once('resume', go);
}
