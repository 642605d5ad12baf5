import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { apiErrorOf, Errors, toApiError, type ApiError } from '../errors.js';
import { carriesRetryAfter } from '../protocol/errors.js';
import { installBodyGuards } from './image-body.js';
import { logRequestStart, logResponse } from './request-log.js';
import { lingerOnClose } from '../connections/server.js';

/** Sightline's own errors as they are; Fastify's and its plugins' translated to Sightline's stable codes. */
function translate(err: FastifyError, bodyLimit: number): ApiError {
  const own = apiErrorOf(err);
  if (own) return own;
  if (err.validation) {
    const context = err.validationContext ?? 'request';
    return { statusCode: 400, code: 'INVALID_REQUEST', message: `Invalid ${context}: ${err.message}` };
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
      return { statusCode: 413, code: 'BODY_TOO_LARGE', message: new Errors.BODY_TOO_LARGE(bodyLimit).message };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return { statusCode: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: err.message };
    // @fastify/multipart's part-count limits (413): a body with too many parts is too large.
    case 'FST_FILES_LIMIT':
    case 'FST_FIELDS_LIMIT':
    case 'FST_PARTS_LIMIT':
      return { statusCode: 413, code: 'BODY_TOO_LARGE', message: `The multipart body has too many parts (${err.message})` };
    // Raised by the router (frameworkErrors). Fastify's messages quote the whole URL, query and
    // access_token included: these name the fault without echoing a byte of it.
    case 'FST_ERR_BAD_URL':
      return { statusCode: 400, code: 'INVALID_REQUEST', message: new Errors.INVALID_REQUEST('the path is not valid percent-encoded UTF-8').message };
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return {
        statusCode: 400,
        code: 'INVALID_REQUEST',
        message: new Errors.INVALID_REQUEST(`a path segment is longer than ${MAX_PARAM_LENGTH} characters`).message,
      };
  }
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) return { statusCode: status, code: 'INVALID_REQUEST', message: err.message };
  return toApiError(err);
}

/** Every error leaves as `{error: {code, message}}` with a stable code; 5xx are logged with their stack. */
export function installErrorHandler(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const api = translate(err, bodyLimit);
    request.failure = { code: api.code, err };
    if (carriesRetryAfter(api.statusCode, api.code)) reply.header('retry-after', '1');
    // tus answers carry Tus-Resumable, also when refused before tus saw the request (a bad query).
    if (request.routeOptions.url?.startsWith('/v1/uploads') && request.method !== 'GET') reply.header('tus-resumable', '1.0.0');
    closeIfBodyPending(request, reply);
    return reply.status(api.statusCode).send({ error: { code: api.code, message: api.message } });
  });
  // Installed with the error handler because it belongs to answering bad input and must be
  // in place on the root instance before any route registers (routes inherit parsers).
  installBodyGuards(app);
  app.setNotFoundHandler((request, reply) => {
    const err = notFound(request);
    request.failure = { code: err.code, err };
    closeIfBodyPending(request, reply);
    return reply.status(404).send({ error: { code: err.code, message: err.message } });
  });
}

/** Longest path a 404 message repeats. */
const MAX_ECHOED_PATH = 256;

/** NOT_FOUND for the request's method and path. */
export function notFound(request: FastifyRequest): Error & { code: string } {
  // The path only: credentials travel in headers or the query (access_token), never in the path.
  const path = request.url.split('?')[0]!;
  return new Errors.NOT_FOUND(`${request.method} ${path.length > MAX_ECHOED_PATH ? `${path.slice(0, MAX_ECHOED_PATH)}…` : path}`);
}

/**
 * An error answered while the body is still arriving (a multipart body refused
 * past the limit, a 404 for a large upload) closes the connection: keeping it
 * would mean reading the rest of a body nobody wants. Fastify does the same for
 * its own body parsers' errors.
 */
function closeIfBodyPending(request: FastifyRequest, reply: FastifyReply): void {
  // Strictly false: inject()'s requests have no `complete` and no body in flight.
  if (request.raw.complete !== false) return;
  reply.header('connection', 'close');
  lingerOnClose(request.raw.socket);
}

/** Longest path segment (route parameter) the router takes; ids are at most 128 characters. */
export const MAX_PARAM_LENGTH = 256;

/**
 * For Fastify's `frameworkErrors` option: errors the router raises before any
 * hook or the error handler runs (a path segment that is not valid
 * percent-encoded UTF-8 such as `/v1/jobs/%FF`, or one longer than
 * MAX_PARAM_LENGTH). Without it Fastify answers them with its own JSON shape
 * and no X-Request-Id. Under /v1/uploads such an id is no upload of ours: 404.
 */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  // No route, so no hooks: the request log and metrics are written here (route `unmatched`).
  const started = performance.now();
  logRequestStart(request);
  reply.raw.once('finish', () => logResponse(request, reply.raw.statusCode, performance.now() - started));
  const upload = request.url.startsWith('/v1/uploads/');
  const api = upload ? { statusCode: 404, code: 'UPLOAD_NOT_FOUND', message: new Errors.UPLOAD_NOT_FOUND('at this URL').message } : translate(err, 0);
  // The error keeps Fastify's code for the log, not its message (which quotes the whole URL).
  request.failure = { code: api.code, err: Object.assign(new Error(api.message), { code: err.code }) };
  reply.header('x-request-id', request.id);
  if (upload && request.method !== 'GET') reply.header('tus-resumable', '1.0.0');
  closeIfBodyPending(request, reply);
  void reply.status(api.statusCode).send({ error: { code: api.code, message: api.message } });
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the error handler, read by the request log and metrics hooks. */
    failure?: { code: string; err: Error };
    /** Production line named by the request, once validated. */
    line?: string;
  }
}
