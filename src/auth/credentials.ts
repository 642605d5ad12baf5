import type { FastifyRequest } from 'fastify';

/** The query parameter that carries a token on WebSocket routes, where browsers cannot set headers. */
export const QUERY_TOKEN = 'access_token';

export type Presented =
  | { kind: 'none' }
  | { kind: 'token'; token: string; from: 'authorization' | 'x-api-key' | 'query' }
  | { kind: 'malformed'; reason: string };

const first = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

/**
 * The credential a request presents: `Authorization: Bearer <key or JWT>`, or
 * `X-API-Key: <key>`, or (WebSocket routes only, `queryToken`) `?access_token=`.
 * Two different credentials in one request are refused rather than guessed between.
 */
export function presentedCredential(request: FastifyRequest, queryToken: boolean): Presented {
  const found: { token: string; from: 'authorization' | 'x-api-key' | 'query' }[] = [];
  const authorization = first(request.headers.authorization)?.trim();
  if (authorization) {
    const m = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!m) return { kind: 'malformed', reason: 'the Authorization header must be "Bearer <API key or JWT>"' };
    found.push({ token: m[1]!, from: 'authorization' });
  }
  const apiKey = first(request.headers['x-api-key'])?.trim();
  if (apiKey) found.push({ token: apiKey, from: 'x-api-key' });
  if (queryToken) {
    const value = (request.query as Record<string, unknown> | undefined)?.[QUERY_TOKEN];
    const token = Array.isArray(value) ? value[0] : value;
    if (typeof token === 'string' && token !== '') found.push({ token, from: 'query' });
  }
  if (found.length === 0) return { kind: 'none' };
  if (found.some((f) => f.token !== found[0]!.token)) return { kind: 'malformed', reason: 'the request carries two different credentials' };
  return { kind: 'token', ...found[0]! };
}

/**
 * Removes `access_token` from the request's URL and parsed query, so that no
 * log line, error message or handler sees the token after the auth hook.
 */
export function stripQueryToken(request: FastifyRequest): void {
  const query = request.query as Record<string, unknown> | undefined;
  if (query && QUERY_TOKEN in query) delete query[QUERY_TOKEN];
  const url = request.raw.url;
  if (!url?.includes(`${QUERY_TOKEN}=`)) return;
  const q = url.indexOf('?');
  const params = new URLSearchParams(url.slice(q + 1));
  params.delete(QUERY_TOKEN);
  const rest = params.toString();
  request.raw.url = url.slice(0, q) + (rest ? `?${rest}` : '');
}

/**
 * Loopback addresses: 127.0.0.0/8, ::1 and IPv4-mapped 127.x. Always the
 * socket's own peer address, never X-Forwarded-For: a header is the client's
 * to choose.
 */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4)) return true;
  return address === '::1' || address === '0:0:0:0:0:0:0:1';
}
