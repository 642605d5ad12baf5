import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { ModelListSchema } from '../api-schemas.js';
import type { ModelEntry } from '../../inference/repository.js';

export function describeModel(entry: ModelEntry, isDefault: boolean) {
  return {
    name: entry.name,
    version: entry.version,
    state: entry.state,
    ...(entry.reason ? { reason: entry.reason } : {}),
    since: entry.stateSince.toISOString(),
    default: isDefault,
    description: entry.manifest?.description,
    format: entry.format,
    format_detected: entry.formatDetected,
    input: entry.inputWidth ? { width: entry.inputWidth, height: entry.inputHeight } : undefined,
    labels: entry.manifest?.labels,
    thresholds: entry.manifest ? { conf: entry.manifest.conf, iou: entry.manifest.iou, max_detections: entry.manifest.max_detections } : undefined,
    verdict: entry.manifest?.verdict,
  };
}

export async function modelRoutes(app: FastifyInstance): Promise<void> {
  const { models } = app.sightline;
  app.get(
    '/v1/models',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List models',
        description: 'Every model version with its state (LOADING, READY, FAILED with reason), format, input size, labels, thresholds and verdict rule.',
        tags: ['models'],
        querystring: Type.Object({}, { additionalProperties: false }),
        response: { 200: ModelListSchema },
      },
    },
    async function listModels() {
      const def = models.defaultModel();
      let defaultEntry: ModelEntry | undefined;
      try {
        defaultEntry = 'ref' in def ? models.find(def.ref) : undefined;
      } catch {
        defaultEntry = undefined;
      }
      return { models: models.list().map((e) => describeModel(e, e === defaultEntry)) };
    },
  );
}
