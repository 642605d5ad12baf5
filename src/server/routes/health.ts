import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { LivenessSchema, ReadinessSchema } from '../api-schemas.js';
import { readiness } from '../readiness.js';
import { httpDrainOf } from '../drain.js';

/** No query parameters: unknown ones are refused (400 INVALID_REQUEST), as on every route. */
const NoQuery = Type.Object({}, { additionalProperties: false });

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const { models, health } = app.sightline;

  // Liveness only says the event loop answers; it must stay cheap.
  app.get(
    '/livez',
    {
      config: { role: 'public' },
      schema: {
        summary: 'Liveness',
        description: 'The process answers; nothing else is checked, so it stays cheap. Not rate limited.',
        tags: ['health'],
        querystring: NoQuery,
        response: { 200: LivenessSchema },
      },
    },
    async function livez() {
      return { status: 'ok' };
    },
  );

  // Reads states the dependency monitor and the model repository keep current: no
  // probe runs here, so a black-holed database cannot make the probe itself hang.
  app.get(
    '/readyz',
    {
      config: { role: 'public' },
      schema: {
        summary: 'Readiness',
        description:
          'Ready when the default model is READY and passes its test inference and every critical dependency (store, queue broker, free disk) is up. Reads states kept current in the background: no probe runs on the request. Not rate limited.',
        tags: ['health'],
        querystring: NoQuery,
        response: {
          200: { ...ReadinessSchema, description: 'Ready; every check with its state' },
          503: { ...ReadinessSchema, description: 'Not ready (Retry-After): waiting_for and reason name the failing critical checks' },
        },
      },
    },
    async function readyz(_request, reply) {
      // A server shutting down (SIGTERM) leaves load balancers' rotation at once, whatever its dependencies say.
      const draining = httpDrainOf(app)?.active === true;
      const extra = draining
        ? [{ name: 'draining', status: 'fail' as const, critical: true, reason: 'shutting down (SIGTERM): finishing the requests in flight' }]
        : [];
      const { ready, body } = readiness(models, health, extra);
      if (!ready) reply.status(503).header('retry-after', '1');
      return body;
    },
  );
}
