import type { FastifyInstance } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import type { History, HistoryAnswer } from '../../history/index.js';
import { LINE_PATTERN } from '../../protocol/options.js';
import { errorResponse } from '../api-schemas.js';

/** A step: a whole number with a unit (ms, s, m, h), or bare milliseconds. */
const STEP_PATTERN = '^([1-9][0-9]{0,9})(ms|s|m|h)?$';
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

const HistoryQuerySchema = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Start (ISO 8601); default `to` − 1 h (fewer when the points would exceed the cap)' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'End (ISO 8601); default now' })),
    step: Type.Optional(
      Type.String({
        pattern: STEP_PATTERN,
        description: 'Width of a point: `10s`, `1m`, `5m`, `1h`, or bare milliseconds; rounded up to whole stored buckets; default the fine resolution',
      }),
    ),
    line: Type.Optional(Type.String({ pattern: LINE_PATTERN, description: 'Only this line in results, throughput, latency and verdicts' })),
  },
  { additionalProperties: false },
);

const points = (description: string) => Type.Array(Type.Union([Type.Number(), Type.Null()]), { description });
const gauge = (description: string) =>
  Type.Object(
    {
      avg: points('Mean of every sample of every process'),
      max: points('Largest sample of any process'),
      sum: points("Sum of the processes' means (for additive gauges)"),
    },
    { description },
  );

export const HistorySchema = Type.Object(
  {
    from: Type.String({ format: 'date-time', description: 'Start of the first point (the range aligned to the step)' }),
    to: Type.String({ format: 'date-time', description: 'End of the last point' }),
    step_ms: Type.Integer({ description: 'Width of each point' }),
    resolution: Type.Unsafe<'fine' | 'coarse'>({ type: 'string', enum: ['fine', 'coarse'], description: 'The stored series read' }),
    resolution_ms: Type.Integer({ description: 'Its bucket width' }),
    line: Type.Union([Type.String(), Type.Null()], { description: 'The line asked for; null: all lines' }),
    timestamps: Type.Array(Type.Integer(), { description: 'Start of each point, epoch ms' }),
    series: Type.Object(
      {
        processes: points('Processes that recorded in the point; null: none (a gap)'),
        results: points('Results in the point'),
        throughput: points('Results per second'),
        latency_ms: Type.Object(
          {
            p50: points('Median server time (timings_ms.total)'),
            p95: points('95th percentile'),
            p99: points('99th percentile'),
            avg: points('Mean'),
            max: points('Largest'),
          },
          { description: 'From merged histograms; null where there were no results' },
        ),
        errors: points('HTTP answers with status ≥ 500 (probes left out) and stream frames answered with an error'),
        client_errors: points('HTTP answers with status 4xx (probes left out)'),
        rejected: points('Refusals by admission control (sightline_rejected_total)'),
        queue_depth: Type.Object({
          jobs: gauge('Jobs waiting in the job queue (the shared queue: read avg or max)'),
          inference: gauge("Requests waiting in a process's inference queues (all models)"),
        }),
        cpu: gauge("A process's CPU use, 0..1 of its machine's CPUs"),
        rss_bytes: gauge('Resident memory of a process'),
        event_loop_lag_ms: gauge('p99 event-loop lag of a process'),
        gpu_utilization: Type.Optional(gauge('Mean GPU utilization of a machine, 0..1; absent when no process saw a GPU')),
        gpu_memory_bytes: Type.Optional(gauge('GPU memory in use on a machine; absent when no process saw a GPU')),
        verdicts: Type.Record(
          Type.String(),
          Type.Object({ ok: points('OK results'), ng: points('NG results'), check: points('CHECK results: outside the image-quality envelope') }),
          {
            description: 'By line; `_other` holds lines beyond history_max_lines',
          },
        ),
      },
      { description: 'One value per timestamp; null where no process recorded' },
    ),
  },
  { description: 'Throughput, latency, errors, queues, system gauges and verdicts by line over time (docs/history.md)' },
);

// The documented shape and the answer's type must not drift apart.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameShape: Same<Static<typeof HistorySchema>, HistoryAnswer> = true;
void sameShape;

export interface HistoryRouteOptions {
  history: History;
}

function parseStep(step: string | undefined): number | undefined {
  if (step === undefined) return undefined;
  const match = new RegExp(STEP_PATTERN).exec(step);
  if (!match) throw new Errors.INVALID_REQUEST(`step ${JSON.stringify(step)}: a whole number with ms, s, m or h`);
  return Number(match[1]) * (UNIT_MS[match[2] ?? 'ms'] ?? 1);
}

const time = (iso: string | undefined) => (iso === undefined ? undefined : new Date(iso).getTime());

export async function historyRoutes(app: FastifyInstance, options: HistoryRouteOptions): Promise<void> {
  const { history } = options;
  const response: Record<number, TSchema> = {
    200: HistorySchema,
    400: errorResponse(
      'INVALID_REQUEST: a malformed parameter or from ≥ to; HISTORY_RANGE_TOO_LONG: longer than the coarse retention; HISTORY_TOO_MANY_POINTS: the step is too small for the range',
    ),
    503: errorResponse('STORE_UNAVAILABLE: the database cannot be reached (Retry-After)'),
  };

  app.get<{ Querystring: Static<typeof HistoryQuerySchema> }>(
    '/v1/stats/history',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Service history',
        description:
          'Series over time, merged over every API replica and worker: results, throughput, latency p50/p95/p99, errors, rejections, queue depths, CPU, memory, event-loop lag, GPU and verdicts by line. Kept at `history_resolution_ms` (10 s) for `history_retention_ms` (24 h) and at `history_rollup_resolution_ms` (1 min) for `history_rollup_retention_ms` (30 days); the coarse series answers a step of at least its resolution and a range that starts before the fine retention. Default: the last hour at the fine resolution.',
        tags: ['monitoring'],
        querystring: HistoryQuerySchema,
        response,
      },
    },
    async function getHistory(request) {
      const q = request.query;
      if (q.line !== undefined) request.line = q.line;
      return history.query({ from: time(q.from), to: time(q.to), stepMs: parseStep(q.step), line: q.line });
    },
  );
}
