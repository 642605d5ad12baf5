import type { FastifyInstance } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { LINE_PATTERN, MODEL_REF_PATTERN } from '../../protocol/options.js';
import { SOURCE_KINDS, type SourceInput, type SourceManager } from '../../sources/index.js';
import { emptyResponse, errorResponse } from '../api-schemas.js';

const nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const NameParams = Type.Object({ name: Type.String({ pattern: LINE_PATTERN }) });
const NoQuery = Type.Object({}, { additionalProperties: false });
const NotFound = errorResponse('SOURCE_NOT_FOUND: no source of that name in this process');
// Sources are cameras of lines: they share the `lines` tag (an OpenAPI tag of its own would need the document's tag list).
const TAGS = ['sources'];

const SourceKindSchema = Type.Union(
  SOURCE_KINDS.map((k) => Type.Literal(k)),
  {
    description:
      '`folder`: a hot folder; `snapshot`: an HTTP snapshot URL polled every interval; `mjpeg`: an MJPEG stream over HTTP; `ffmpeg`: RTSP, HTTP video or a video file decoded by ffmpeg',
  },
);

export const SourceInputSchema = Type.Object(
  {
    name: Type.String({ pattern: LINE_PATTERN, description: 'Names the source in metrics, /readyz (`source:<name>`) and this API' }),
    kind: SourceKindSchema,
    target: Type.String({
      minLength: 1,
      maxLength: 4096,
      description: 'folder: the directory watched; snapshot, mjpeg: the http(s) URL fetched; ffmpeg: an rtsp://, http(s):// URL or a file path',
    }),
    line: Type.Optional(Type.String({ pattern: LINE_PATTERN, description: 'The line its frames belong to; default `default`' })),
    camera: Type.Optional(Type.String({ pattern: LINE_PATTERN, description: 'The camera of that line; default: the source name' })),
    model: Type.Optional(Type.String({ pattern: MODEL_REF_PATTERN, description: '`name` or `name:version`; default: the default model' })),
    interval_ms: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 3_600_000,
        description:
          'Time between reads (mjpeg: least time between two frames taken; ffmpeg: the frame period, 1000 / fps); 0: the setting (source_poll_interval_ms, source_snapshot_interval_ms; mjpeg: every frame)',
      }),
    ),
    paused: Type.Optional(Type.Boolean({ description: 'Created paused: nothing is read until it is resumed' })),
  },
  { additionalProperties: false, description: 'A pulled source (docs/sources.md)' },
);

const FRAMES = Type.Object({
  processed: Type.Integer({ description: 'Frames inspected' }),
  failed: Type.Integer({ description: 'Frames refused (not an image, too large): a hot folder moves them to failed/' }),
  dropped: Type.Integer({ description: 'Frames not inspected now: model queue full, superseded by a newer frame' }),
  error: Type.Integer({ description: 'Reads that failed (folder missing, camera unreachable)' }),
});

export const SourceSchema = Type.Object(
  {
    name: Type.String(),
    kind: SourceKindSchema,
    target: Type.String(),
    line: Type.String(),
    camera: Type.String(),
    model: Type.Optional(Type.String()),
    interval_ms: Type.Integer({ description: '0: the config default' }),
    paused: Type.Boolean(),
    state: Type.Union([Type.Literal('starting'), Type.Literal('up'), Type.Literal('down'), Type.Literal('paused')], {
      description: '`up`: the last read worked; `down`: retried with exponential backoff; `paused`: by the API',
    }),
    since: Type.String({ format: 'date-time', description: 'When the state last changed' }),
    reason: nullable(Type.String({ description: 'Why it is down' })),
    failures: Type.Integer({ description: 'Failed reads in a row' }),
    last_frame_at: nullable(Type.String({ format: 'date-time' })),
    frames: FRAMES,
  },
  { description: 'A pulled source with its state and counts (since this process started)' },
);

const SourceListSchema = Type.Object({ sources: Type.Array(SourceSchema) }, { description: 'The pulled sources of this process' });

/** /v1/sources: the pulled sources of this server (docs/sources.md). */
export async function sourceRoutes(app: FastifyInstance, options: { sources: SourceManager }): Promise<void> {
  const { sources } = options;

  app.get(
    '/v1/sources',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List pulled sources',
        description:
          'Hot folders and camera URLs this process reads itself (the `sources` setting and those added here), each with its state and frame counts.',
        tags: TAGS,
        querystring: NoQuery,
        response: { 200: SourceListSchema },
      },
    },
    async function listSources() {
      return { sources: sources.list() };
    },
  );

  app.post<{ Body: Static<typeof SourceInputSchema> }>(
    '/v1/sources',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Add a pulled source',
        description:
          'Starts reading a hot folder or a snapshot URL at once (unless `paused`). Kept while this process runs: sources that must survive a restart belong in the `sources` setting.',
        tags: TAGS,
        querystring: NoQuery,
        body: SourceInputSchema,
        response: {
          201: { ...SourceSchema, description: 'Added; reading has started' },
          400: errorResponse('INVALID_SOURCE: a bad kind, target, line, camera or interval; INVALID_REQUEST: the body does not match the schema'),
          409: errorResponse('SOURCE_EXISTS: a source of that name already exists'),
        },
      },
    },
    async function addSource(request, reply) {
      const status = sources.add(request.body as SourceInput);
      reply.status(201);
      return status;
    },
  );

  for (const action of ['pause', 'resume'] as const) {
    app.post<{ Params: Static<typeof NameParams> }>(
      `/v1/sources/:name/${action}`,
      {
        config: { role: 'admin' },
        schema: {
          summary: action === 'pause' ? 'Pause a source' : 'Resume a source',
          description:
            action === 'pause'
              ? 'Stops reading (frames in hand finish; a hot folder keeps its files for later). Its /readyz check says `paused` and `sightline_source_up` has no series meanwhile. Kept while this process runs.'
              : 'Reads again from now on; a hot folder picks up what arrived meanwhile.',
          tags: TAGS,
          params: NameParams,
          querystring: NoQuery,
          response: { 200: SourceSchema, 404: NotFound },
        },
      },
      async function pauseOrResume(request) {
        const { name } = request.params;
        return action === 'pause' ? sources.pause(name) : sources.resume(name);
      },
    );
  }

  app.delete<{ Params: Static<typeof NameParams> }>(
    '/v1/sources/:name',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Delete a source',
        description:
          'Stops reading and forgets the source (its /readyz check and series go). A configured source comes back with the next start unless it is removed from `sources` too.',
        tags: TAGS,
        params: NameParams,
        querystring: NoQuery,
        response: { 204: emptyResponse('Deleted'), 404: NotFound },
      },
    },
    async function deleteSource(request, reply) {
      await sources.remove(request.params.name);
      return reply.status(204).send();
    },
  );
}
