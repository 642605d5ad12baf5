import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';

const NoQuery = Type.Object({}, { additionalProperties: false });

export async function metricsRoutes(app: FastifyInstance): Promise<void> {
  const { registry } = app.sightline.metrics;
  app.get(
    '/metrics',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Prometheus metrics',
        description: 'Every series in the Prometheus text format (docs/metrics.md). Not rate limited.',
        tags: ['monitoring'],
        querystring: NoQuery,
        response: { 200: { description: 'The metrics', content: { [registry.contentType]: { schema: { type: 'string' } } } } },
      },
    },
    async function scrapeMetrics(_request, reply) {
      reply.header('content-type', registry.contentType);
      return registry.metrics();
    },
  );
}
