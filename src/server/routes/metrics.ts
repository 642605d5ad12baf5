import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';

const NoQuery = Type.Object({}, { additionalProperties: false });

export async function metricsRoutes(app: FastifyInstance): Promise<void> {
  const { registry } = app.sightline.metrics;
  app.get('/metrics', { config: { role: 'viewer' }, schema: { querystring: NoQuery } }, async (_request, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
}
