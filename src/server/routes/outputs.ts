import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import type { Output } from '../../outputs/index.js';
import { DeadLetterListSchema, errorResponse, OutputListSchema, ReplayInputSchema, ReplayResultSchema } from '../api-schemas.js';

const NameParams = Type.Object({ name: Type.String({ maxLength: 64 }) });
const NoQuery = Type.Object({}, { additionalProperties: false });
const NotFound = errorResponse('OUTPUT_NOT_FOUND: no such output runs in this process; OUTPUT_HAS_NO_OUTBOX: it keeps none');
const StoreDown = errorResponse('STORE_UNAVAILABLE: the outbox (in the result store) cannot be reached (Retry-After)');

function describe(output: Output, payload: string): unknown {
  try {
    return output.describe ? output.describe(payload) : JSON.parse(payload);
  } catch {
    return null; // not a message this output wrote: shown as null rather than leaking what it holds
  }
}

/** GET /v1/outputs, dead letters of the outputs with an outbox and their replay (docs/outputs/README.md). */
export async function outputRoutes(app: FastifyInstance): Promise<void> {
  const hub = app.sightline.outputs;

  function withOutbox(name: string): Output & Required<Pick<Output, 'outbox'>> {
    const output = hub.get(name);
    if (!output) throw new Errors.OUTPUT_NOT_FOUND(JSON.stringify(name));
    if (!output.outbox) throw new Errors.OUTPUT_HAS_NO_OUTBOX(name);
    return output as Output & Required<Pick<Output, 'outbox'>>;
  }

  app.get(
    '/v1/outputs',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List outputs',
        description: "The factory outputs this process runs (none unless configured), each with its peer's state and, for MQTT and webhooks, its outbox.",
        tags: ['outputs'],
        querystring: NoQuery,
        response: { 200: OutputListSchema, 503: StoreDown },
      },
    },
    async function listOutputs() {
      const outputs = await Promise.all(
        hub.outputs.map(async (output) => {
          const health = output.health();
          return {
            name: output.name,
            scope: output.scope,
            connected: health.connected,
            detail: health.detail,
            outbox_depth: output.outbox ? await output.outbox.depth() : null,
            dead_letters: output.outbox ? await output.outbox.deadLetterCount() : null,
          };
        }),
      );
      return { outputs };
    },
  );

  app.get<{ Params: Static<typeof NameParams>; Querystring: { limit?: number } }>(
    '/v1/outputs/:name/dead-letters',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List dead letters',
        description: 'Messages that used up their attempts (webhook_max_attempts), newest first; kept up to output_dead_letters_max.',
        tags: ['outputs'],
        params: NameParams,
        querystring: {
          type: 'object',
          properties: { limit: { type: 'integer', minimum: 1, maximum: 10_000, default: 100 } },
          additionalProperties: false,
        },
        response: { 200: DeadLetterListSchema, 404: NotFound, 503: StoreDown },
      },
    },
    async function listDeadLetters(request) {
      const output = withOutbox(request.params.name);
      const entries = await output.outbox.deadLetters(request.query.limit ?? 100);
      return {
        dead_letters: entries.map((e) => ({
          seq: e.seq,
          key: e.key,
          attempts: e.attempts,
          created_at: new Date(e.createdAt).toISOString(),
          dead_at: new Date(e.deadAt ?? e.createdAt).toISOString(),
          last_error: e.lastError,
          payload: describe(output, e.payload),
        })),
      };
    },
  );

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof ReplayInputSchema> }>(
    '/v1/outputs/:name/dead-letters/replay',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Replay dead letters',
        description: 'Puts one dead letter (`seq`) or all of them back in the outbox with fresh attempts; they are sent again in their original order.',
        tags: ['outputs'],
        params: NameParams,
        querystring: NoQuery,
        body: ReplayInputSchema,
        response: {
          200: ReplayResultSchema,
          404: errorResponse(
            'OUTPUT_NOT_FOUND, OUTPUT_HAS_NO_OUTBOX: no such output, or it keeps no outbox; DEAD_LETTER_NOT_FOUND: no dead letter with that seq',
          ),
          503: StoreDown,
        },
      },
    },
    async function replayDeadLetters(request) {
      const output = withOutbox(request.params.name);
      const seq = request.body?.seq;
      const replayed = await output.outbox.replay(seq);
      if (seq !== undefined && replayed === 0) throw new Errors.DEAD_LETTER_NOT_FOUND(String(seq), output.name);
      return { replayed };
    },
  );
}
