import type { FastifyRequest } from 'fastify';

/** The `request_start` line (path only: the query may carry `access_token`). */
export function logRequestStart(request: FastifyRequest): void {
  request.log.info({ event: 'request_start', method: request.method, url: request.url.split('?')[0] }, 'request start');
}

/**
 * The `request_success` / `request_failure` line and the request metrics of one
 * answer. Called from the onResponse hook, and by the answers that no route's
 * hooks see (the router's own errors).
 */
export function logResponse(request: FastifyRequest, status: number, durationMs: number): void {
  const route = request.routeOptions.url ?? 'unmatched';
  const line = request.line ?? 'none';
  const metrics = request.server.sightline?.metrics;
  metrics?.requests.inc({ route, line, status: String(status) });
  if (route !== '/v1/stream') metrics?.requestDuration.observe({ route }, durationMs / 1000);
  const fields = { route, line, status, duration_ms: Math.round(durationMs * 1000) / 1000 };
  if (status < 400) {
    request.log.info({ event: 'request_success', ...fields }, 'request success');
  } else {
    const failure = request.failure;
    // Load shedding is the server working as designed: counted in metrics, logged
    // without a stack so that a flood of 503s stays cheap.
    const shed = failure?.code === 'OVERLOADED' || failure?.code === 'TOO_MANY_CONNECTIONS';
    const level = status >= 500 && status !== 503 ? 'error' : shed ? 'info' : 'warn';
    const error = shed ? { error_message: failure?.err.message } : { err: failure?.err };
    request.log[level]({ event: 'request_failure', ...fields, error_code: failure?.code, ...error }, 'request failure');
  }
}
