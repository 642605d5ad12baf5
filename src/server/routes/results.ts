import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import { MAX_LIST_LIMIT } from '../../store/index.js';
import { LINE_PATTERN } from './detect.js';

const DAY_MS = 24 * 60 * 60 * 1000;

const ResultsQuery = Type.Object(
  {
    line: Type.Optional(Type.String({ pattern: LINE_PATTERN })),
    from: Type.Optional(Type.String({ format: 'date-time' })),
    to: Type.Optional(Type.String({ format: 'date-time' })),
    verdict: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('ng')])),
    // Any text but control characters; a %XX left in the value is an escape that was not valid UTF-8.
    label: Type.Optional(Type.String({ pattern: '^(?!.*%[0-9A-Fa-f]{2})[^\\u0000-\\u001f\\u007f]{1,128}$' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIST_LIMIT })),
    cursor: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,512}$' })),
  },
  { additionalProperties: false },
);
const StatsQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time' })),
    to: Type.Optional(Type.String({ format: 'date-time' })),
  },
  { additionalProperties: false },
);
const LineParams = Type.Object({ line: Type.String({ pattern: LINE_PATTERN }) });
const NoQuery = Type.Object({}, { additionalProperties: false });
const IdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' }) });

const date = (iso: string | undefined) => (iso === undefined ? undefined : new Date(iso));

export async function resultRoutes(app: FastifyInstance): Promise<void> {
  const { store } = app.sightline;

  app.get<{ Querystring: Static<typeof ResultsQuery> }>('/v1/results', { config: { role: 'viewer' }, schema: { querystring: ResultsQuery } }, async (request) => {
    const q = request.query;
    return store.list({ line: q.line, from: date(q.from), to: date(q.to), verdict: q.verdict, label: q.label, limit: q.limit, cursor: q.cursor });
  });

  app.get<{ Params: Static<typeof IdParams> }>('/v1/results/:id', { config: { role: 'viewer' }, schema: { params: IdParams, querystring: NoQuery } }, async (request) => {
    const result = await store.get(request.params.id);
    if (!result) throw new Errors.RESULT_NOT_FOUND(JSON.stringify(request.params.id));
    return result;
  });

  // Counts by verdict and label over a window; the last 24 hours unless told otherwise.
  app.get<{ Params: Static<typeof LineParams>; Querystring: Static<typeof StatsQuery> }>(
    '/v1/lines/:line/stats',
    { config: { role: 'viewer' }, schema: { params: LineParams, querystring: StatsQuery } },
    async (request) => {
      const to = date(request.query.to) ?? new Date();
      const from = date(request.query.from) ?? new Date(to.getTime() - DAY_MS);
      request.line = request.params.line;
      return store.lineStats(request.params.line, { from, to });
    },
  );
}
