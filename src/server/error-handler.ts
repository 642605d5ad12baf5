import type { FastifyError, FastifyInstance } from 'fastify';
import { Errors, RETRYABLE_CODES } from '../errors.js';

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
    return reply.status(api.statusCode).send({ error: { code: api.code, message: api.message } });
  });
  app.setNotFoundHandler((request, reply) => {
    const err = new Errors.NOT_FOUND(`${request.method} ${request.url.split('?')[0]}`);
    request.failure = { code: err.code, err };
    return reply.status(404).send({ error: { code: err.code, message: err.message } });
  });
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the error handler, read by the request log and metrics hooks. */
    failure?: { code: string; err: Error };
    /** Production line named by the request, once validated. */
    line?: string;
  }
}
