import type { FastifyInstance, FastifyRequest, HTTPMethods } from 'fastify';
import fp from 'fastify-plugin';
import cors from '@fastify/cors';
import type { Config } from '../config/schema.js';
import { corsOrigins, originAllowed } from '../config/cors-origins.js';

export { corsOrigins, originAllowed };

/** Headers of Sightline's own answers that browser code may read (tus answers name theirs themselves). */
const EXPOSED_HEADERS = ['X-Request-Id', 'Retry-After', 'Location', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'];

const isPreflight = (request: FastifyRequest) =>
  request.method === 'OPTIONS' && request.headers.origin !== undefined && request.headers['access-control-request-method'] !== undefined;

/**
 * CORS for browser clients on other origins (a dashboard on another port), off unless
 * `cors_origins` names some. Register it before the security plugin: @fastify/cors adds an
 * `OPTIONS *` route that states no role (access control refuses routes registered after
 * it without one), and preflights, which never carry credentials, are answered before
 * authentication. A disallowed origin gets no CORS header at all, and its preflight the
 * 404 it gets with CORS off.
 */
async function corsPlugin(app: FastifyInstance, { config }: { config: Config }): Promise<void> {
  const origins = corsOrigins(config.cors_origins);
  if (origins.length === 0) return;

  // A preflight asks for one method on one path: when no route serves that, CORS grants
  // nothing and the answer is the 404 the request itself would get. Only the catch-all
  // OPTIONS route of @fastify/cors matches such a path, with a wildcard parameter.
  app.addHook('onRequest', async (request, reply) => {
    if (request.method !== 'OPTIONS' || request.headers.origin === undefined) return;
    let known = false;
    if (isPreflight(request)) {
      const method = String(request.headers['access-control-request-method']).toUpperCase() as HTTPMethods;
      const route = app.findRoute({ method, url: request.url });
      known = route !== null && !('*' in (route.params as object));
    } else {
      // Not a preflight: a real OPTIONS request goes to its route, if there is one.
      known = !('*' in (request.params as object));
    }
    if (!known) {
      reply.callNotFound();
      return reply;
    }
  });

  await app.register(cors, {
    origin: (origin, callback) => callback(null, originAllowed(origins, origin)),
    methods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'],
    exposedHeaders: EXPOSED_HEADERS,
    maxAge: 600,
  });
}

export const corsSupport = fp(corsPlugin, { name: 'sightline-cors', fastify: '5.x' });
