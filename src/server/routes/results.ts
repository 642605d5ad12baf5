import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import { errorResponse, LineStatsSchema, ResultPageSchema, ReviewInputSchema, StoredResultSchema } from '../api-schemas.js';
import { MAX_LIST_LIMIT, REVIEW_FILTERS } from '../../store/index.js';
import type { ReviewInput } from '../../protocol/results.js';
import { CAMERA_PATTERN, LINE_PATTERN } from '../../protocol/options.js';

const DAY_MS = 24 * 60 * 60 * 1000;
const StoreDown = errorResponse('STORE_UNAVAILABLE: the result store cannot be reached (Retry-After)');

const ResultsQuery = Type.Object(
  {
    line: Type.Optional(Type.String({ pattern: LINE_PATTERN })),
    camera: Type.Optional(Type.String({ pattern: CAMERA_PATTERN })),
    from: Type.Optional(Type.String({ format: 'date-time' })),
    to: Type.Optional(Type.String({ format: 'date-time' })),
    verdict: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('ng'), Type.Literal('check')])),
    // Any text but control characters; a %XX left in the value is an escape that was not valid UTF-8.
    label: Type.Optional(Type.String({ pattern: '^(?!.*%[0-9A-Fa-f]{2})[^\\u0000-\\u001f\\u007f]{1,128}$' })),
    review: Type.Optional(
      Type.Unsafe<(typeof REVIEW_FILTERS)[number]>({
        type: 'string',
        enum: [...REVIEW_FILTERS],
        description: 'A review status, `none` (not reviewed) or `any` (reviewed)',
      }),
    ),
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

  app.get<{ Querystring: Static<typeof ResultsQuery> }>(
    '/v1/results',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List stored results',
        description:
          'Newest first, filtered by line, camera, time range (from ≤ created_at < to), verdict, label and review; pages of `limit` (default 50), the next one at `cursor` = next_cursor.',
        tags: ['results'],
        querystring: ResultsQuery,
        response: { 200: ResultPageSchema, 503: StoreDown },
      },
    },
    async function listResults(request) {
      const q = request.query;
      return store.list({
        line: q.line,
        camera: q.camera,
        from: date(q.from),
        to: date(q.to),
        verdict: q.verdict,
        label: q.label,
        review: q.review,
        limit: q.limit,
        cursor: q.cursor,
      });
    },
  );

  app.get<{ Params: Static<typeof IdParams> }>(
    '/v1/results/:id',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Get a stored result',
        description: "By request id (a job's result: by job id).",
        tags: ['results'],
        params: IdParams,
        querystring: NoQuery,
        response: { 200: StoredResultSchema, 404: errorResponse('RESULT_NOT_FOUND: no stored result with that id'), 503: StoreDown },
      },
    },
    async function getResult(request) {
      const result = await store.get(request.params.id);
      if (!result) throw new Errors.RESULT_NOT_FOUND(JSON.stringify(request.params.id));
      return result;
    },
  );

  app.post<{ Params: Static<typeof IdParams>; Body: ReviewInput }>(
    '/v1/results/:id/review',
    {
      // reviewer holds viewer (it reads what it reviews); admin holds every role.
      config: { role: 'reviewer' },
      schema: {
        summary: 'Review a stored result',
        description:
          "Sets the result's review: `confirmed`, `false_call` or `missed`, with an optional note and the right boxes (original image pixels, inside the image). A later review replaces it. Answers the result with its review.",
        tags: ['results'],
        params: IdParams,
        querystring: NoQuery,
        body: ReviewInputSchema,
        response: {
          200: StoredResultSchema,
          400: errorResponse(
            'INVALID_REQUEST: the body is not {status, note?, boxes?} (an unknown status or field, a missing coordinate, a note or label too long); INVALID_REVIEW: a box reaches outside the image, has x1 ≥ x2 or y1 ≥ y2, or a label of control characters or spaces only',
          ),
          404: errorResponse('RESULT_NOT_FOUND: no stored result with that id'),
          415: errorResponse('UNSUPPORTED_MEDIA_TYPE: the body is not application/json'),
          503: StoreDown,
        },
      },
    },
    async function reviewResult(request) {
      const { id } = request.params;
      const identity = request.identity;
      const review = await store.review(id, { ...request.body, reviewer: identity?.name ?? 'anonymous' });
      if (!review) throw new Errors.RESULT_NOT_FOUND(JSON.stringify(id));
      const result = await store.get(id);
      if (!result) throw new Errors.RESULT_NOT_FOUND(JSON.stringify(id));
      request.line = result.line;
      request.log.info(
        {
          event: 'result_reviewed',
          result_id: id,
          line: result.line,
          camera: result.camera,
          status: review.status,
          boxes: review.boxes?.length ?? null,
          reviewer: review.reviewer,
        },
        'result reviewed',
      );
      return result;
    },
  );

  // Counts by verdict and label over a window; the last 24 hours unless told otherwise.
  app.get<{ Params: Static<typeof LineParams>; Querystring: Static<typeof StatsQuery> }>(
    '/v1/lines/:line/stats',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Counts for a line',
        description: 'Results by verdict and by label over a window (from ≤ created_at < to; default the last 24 hours).',
        tags: ['results'],
        params: LineParams,
        querystring: StatsQuery,
        response: { 200: LineStatsSchema, 503: StoreDown },
      },
    },
    async function lineStats(request) {
      const to = date(request.query.to) ?? new Date();
      const from = date(request.query.from) ?? new Date(to.getTime() - DAY_MS);
      request.line = request.params.line;
      return store.lineStats(request.params.line, { from, to });
    },
  );
}
