import type { FastifyInstance, FastifyReply } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import { errorResponse } from '../api-schemas.js';
import { CAMERA_PATTERN, LINE_PATTERN } from '../../protocol/options.js';
import type { Detection, DetectionResult } from '../../protocol/results.js';
import { renderJpeg } from '../../snapshots/index.js';
import type { ModelRepository } from '../../inference/repository.js';

const StoreDown = errorResponse('STORE_UNAVAILABLE: the result store cannot be reached (Retry-After)');
const binary = { schema: { type: 'string', format: 'binary' } };

/** `?boxes` and `?w`, shared by both image routes. */
const imageOptions = {
  boxes: Type.Optional(
    Type.Unsafe<'0' | '1' | 'true' | 'false'>({
      type: 'string',
      enum: ['0', '1', 'true', 'false'],
      description: '1: draw the boxes and labels (NG detections red, others amber); the answer is then JPEG',
    }),
  ),
  w: Type.Optional(Type.Integer({ minimum: 16, maximum: 4096, description: 'Width of a thumbnail (aspect kept, never enlarged); the answer is then JPEG' })),
};
const ImageQuery = Type.Object(imageOptions, { additionalProperties: false });
const LatestQuery = Type.Object(
  { ...imageOptions, camera: Type.Optional(Type.String({ pattern: CAMERA_PATTERN, description: 'That camera of the line; else whichever sent last' })) },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' }) });
const LineParams = Type.Object({ line: Type.String({ pattern: LINE_PATTERN }) });

type ImageQueryType = Static<typeof ImageQuery>;

/** Whether a detection makes the verdict NG: the model's rule when the model is still there, else the result's verdict. */
function ngRule(models: ModelRepository, result: DetectionResult): (d: Detection) => boolean {
  const entry = models.list().find((e) => e.name === result.model.name && e.version === result.model.version);
  const rule = entry?.manifest?.verdict.ng;
  if (!rule) return () => result.verdict === 'ng';
  return (d) => rule[d.label] !== undefined && d.score >= rule[d.label]!;
}

export async function snapshotRoutes(app: FastifyInstance): Promise<void> {
  const { store, snapshots, models, config } = app.sightline;

  /** The image as kept, or as JPEG with boxes or at a thumbnail's width. */
  async function answerImage(reply: FastifyReply, image: Buffer, contentType: string, result: DetectionResult, query: ImageQueryType) {
    const boxes = query.boxes === '1' || query.boxes === 'true';
    if (!boxes && query.w === undefined) return reply.type(contentType).send(image);
    const jpeg = await renderJpeg(image, {
      maxPixels: config.max_image_pixels,
      ...(query.w !== undefined ? { width: query.w } : {}),
      ...(boxes ? { boxes: { detections: result.detections, isNg: ngRule(models, result) } } : {}),
    });
    return reply.type('image/jpeg').send(jpeg);
  }

  app.get<{ Params: Static<typeof IdParams>; Querystring: ImageQueryType }>(
    '/v1/results/:id/image',
    {
      config: { role: 'viewer' },
      schema: {
        summary: "A result's image",
        description:
          'The image the result came from, as received (its own content type), when it was kept: every NG result, a sample of OK ones (docs/snapshots.md). `boxes=1` draws the boxes, `w` makes a thumbnail; both answer JPEG.',
        tags: ['results'],
        params: IdParams,
        querystring: ImageQuery,
        response: {
          200: { description: 'The image', content: { 'image/jpeg': binary, 'image/png': binary, 'image/webp': binary } },
          404: errorResponse('RESULT_NOT_FOUND: no stored result with that id; SNAPSHOT_NOT_FOUND: no image of that result was kept'),
          410: errorResponse('SNAPSHOT_GONE: the image was deleted by the size or age limit; the result is kept'),
          503: StoreDown,
        },
      },
    },
    async function resultImage(request, reply) {
      const { id } = request.params;
      const found = await snapshots.store.get(id);
      if (found === 'gone') {
        const info = await snapshots.store.info(id);
        const why =
          info?.prune_reason === 'age'
            ? 'older than snapshot_retention_days'
            : info?.prune_reason === 'bytes'
              ? 'over snapshot_max_bytes'
              : 'its file is missing';
        throw new Errors.SNAPSHOT_GONE(JSON.stringify(id), why);
      }
      if (!found) {
        if (await store.get(id)) throw new Errors.SNAPSHOT_NOT_FOUND(JSON.stringify(id));
        throw new Errors.RESULT_NOT_FOUND(JSON.stringify(id));
      }
      request.line = found.record.line;
      // The same id always names the same image, until it is pruned.
      reply.header('cache-control', 'private, max-age=300');
      return answerImage(reply, found.bytes, found.contentType, found.record.result, request.query);
    },
  );

  app.get<{ Params: Static<typeof LineParams>; Querystring: Static<typeof LatestQuery> }>(
    '/v1/lines/:line/latest.jpg',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'The newest frame of a line',
        description:
          "The newest image of the line (of `camera`, or of whichever camera sent last), as JPEG, written at most once per snapshot_latest_interval_ms per camera; `boxes=1` draws its result's boxes. X-Result-Id names the result. Never cached (Cache-Control: no-store).",
        tags: ['results'],
        params: LineParams,
        querystring: LatestQuery,
        response: {
          200: { description: 'The frame', content: { 'image/jpeg': binary } },
          404: errorResponse('LATEST_FRAME_NOT_FOUND: no frame of that line (or camera) yet'),
        },
      },
    },
    async function latestFrame(request, reply) {
      const { line } = request.params;
      request.line = line;
      const { camera, ...query } = request.query;
      const frame = await snapshots.store.latest(line, camera);
      if (!frame) throw new Errors.LATEST_FRAME_NOT_FOUND(JSON.stringify(camera === undefined ? line : `${line}/${camera}`));
      reply.header('cache-control', 'no-store');
      reply.header('x-result-id', frame.result.request_id);
      reply.header('last-modified', new Date(frame.at).toUTCString());
      return answerImage(reply, frame.jpeg, 'image/jpeg', frame.result, query);
    },
  );
}
