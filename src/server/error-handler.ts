import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Errors, RETRYABLE_CODES } from '../errors.js';
import { installBodyGuards } from './image-body.js';

export interface ApiError {
  statusCode: number;
  code: string;
  message: string;
}

const OWN_CODES = new Set(Object.keys(Errors));

/** Fastify's and its plugins' error codes, translated to Sightline's stable codes. */
function translate(err: FastifyError, bodyLimit: number): ApiError {
  if (err.code && OWN_CODES.has(err.code)) {
    return { statusCode: err.statusCode ?? 500, code: err.code, message: err.message };
  }
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
    // Raised by the router (frameworkErrors): a path that is not valid percent-encoded UTF-8, or a segment past maxParamLength.
    case 'FST_ERR_BAD_URL':
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return { statusCode: 400, code: 'INVALID_REQUEST', message: new Errors.INVALID_REQUEST(err.message.slice(0, 300)).message };
  }
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) return { statusCode: status, code: 'INVALID_REQUEST', message: err.message };
  return { statusCode: 500, code: 'INTERNAL_ERROR', message: 'Internal error' };
}

/** Every error leaves as `{error: {code, message}}` with a stable code; 5xx are logged with their stack. */
export function installErrorHandler(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const api = translate(err, bodyLimit);
    request.failure = { code: api.code, err };
    if (api.statusCode === 503 || RETRYABLE_CODES.has(api.code)) reply.header('retry-after', '1');
    // tus answers carry Tus-Resumable, also when refused before tus saw the request (a bad query).
    if (request.routeOptions.url?.startsWith('/v1/uploads') && request.method !== 'GET') reply.header('tus-resumable', '1.0.0');
    return reply.status(api.statusCode).send({ error: { code: api.code, message: api.message } });
  });
  // Installed with the error handler because it belongs to answering bad input and must be
  // in place on the root instance before any route registers (routes inherit parsers).
  installBodyGuards(app);
  app.setNotFoundHandler((request, reply) => {
    const err = new Errors.NOT_FOUND(`${request.method} ${request.url.split('?')[0]}`);
    request.failure = { code: err.code, err };
    return reply.status(404).send({ error: { code: err.code, message: err.message } });
  });
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
  const upload = request.url.startsWith('/v1/uploads/');
  const api = upload
    ? { statusCode: 404, code: 'UPLOAD_NOT_FOUND', message: new Errors.UPLOAD_NOT_FOUND('at this URL').message }
    : translate(err, 0);
  request.failure = { code: api.code, err };
  reply.header('x-request-id', request.id);
  if (upload && request.method !== 'GET') reply.header('tus-resumable', '1.0.0');
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
