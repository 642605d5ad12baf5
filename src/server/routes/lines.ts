import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import { LINE_PATTERN } from '../../protocol/options.js';
import { errorResponse, LineListSchema, LineStatusSchema } from '../api-schemas.js';

const LineParams = Type.Object({ line: Type.String({ pattern: LINE_PATTERN }) });
const NoQuery = Type.Object({}, { additionalProperties: false });
const StoreDown = errorResponse('STORE_UNAVAILABLE: the store that holds the line registry cannot be reached (Retry-After)');

/** Lines and cameras: their state (online, stale, offline) and recent figures, the same on every replica. */
export async function lineRoutes(app: FastifyInstance): Promise<void> {
  const { lines } = app.sightline;

  app.get(
    '/v1/lines',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List lines and cameras',
        description:
          'Every line/camera pair that has sent a frame, with its state (`online`: a frame within camera_stale_after_ms; `stale`; `offline`: none for camera_offline_after_ms), last frame time, frames per second received/processed/dropped and p95 latency over the last minute, OK/NG counts over the last hour and review counts. Read from the shared store: every replica answers the same.',
        tags: ['lines'],
        querystring: NoQuery,
        response: { 200: LineListSchema, 503: StoreDown },
      },
    },
    async function listLines() {
      return lines.list();
    },
  );

  app.get<{ Params: Static<typeof LineParams> }>(
    '/v1/lines/:line',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Get one line and its cameras',
        tags: ['lines'],
        params: LineParams,
        querystring: NoQuery,
        response: { 200: LineStatusSchema, 404: errorResponse('LINE_NOT_FOUND: no frame of that line has arrived yet'), 503: StoreDown },
      },
    },
    async function getLine(request) {
      const { lines: found } = await lines.list(request.params.line);
      const line = found[0];
      if (!line) throw new Errors.LINE_NOT_FOUND(JSON.stringify(request.params.line));
      return line;
    },
  );
}
