import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import { LINE_PATTERN } from '../../protocol/options.js';
import { errorResponse, LineListSchema, LineStatusSchema } from '../api-schemas.js';
import { VerdictRuleSchema } from '../../verdict/rules.js';
import { recheckVerdictSettings, scopeOf, verdictSettings, verdictSettingsError } from '../../verdict/settings.js';
import { inForceAt } from '../../verdict/judge.js';

const LineParams = Type.Object({ line: Type.String({ pattern: LINE_PATTERN }) });
const NoQuery = Type.Object({}, { additionalProperties: false });
const StoreDown = errorResponse('STORE_UNAVAILABLE: the store that holds the line registry cannot be reached (Retry-After)');

/** Any camera of a line that verdict_rules_file does not list. */
const OTHER_CAMERAS = '*';

const LineRulesSchema = Type.Object(
  {
    line: Type.String(),
    file_error: Type.Union([Type.String(), Type.Null()], {
      description: "Why verdict_rules_file's last change was not applied (the settings before it still serve); null when it was",
    }),
    cameras: Type.Array(
      Type.Object({
        camera: Type.String({ description: 'A camera verdict_rules_file lists for the line, or `*`: any other camera' }),
        mm_per_px: Type.Union([Type.Number(), Type.Null()], { description: 'Millimetres per pixel; null: rules in mm cannot be evaluated here' }),
        regions: Type.Array(Type.String(), { description: 'Names of the polygons defined here' }),
        models: Type.Array(
          Type.Object({
            name: Type.String(),
            version: Type.String(),
            ng: Type.Record(Type.String(), Type.Number(), { description: 'verdict.ng: label → score that makes a result NG' }),
            rules: Type.Array(
              Type.Object({
                ...VerdictRuleSchema.properties,
                origin: Type.Unsafe<'model' | 'line' | 'camera'>({
                  type: 'string',
                  enum: ['model', 'line', 'camera'],
                  description: 'Where its last change came from',
                }),
              }),
            ),
            disabled: Type.Array(Type.String(), { description: "The model's rules turned off here" }),
            problems: Type.Array(Type.Object({ rule: Type.String(), detail: Type.String() }), {
              description: 'Changes that do not make a valid rule: results here are `check` until the file is fixed',
            }),
          }),
        ),
      }),
    ),
  },
  { description: 'The verdict rules in force on a line, per camera and per READY model version (docs/models.md#verdict-rules)' },
);

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

  app.get<{ Params: Static<typeof LineParams> }>(
    '/v1/lines/:line/rules',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Get the verdict rules in force on a line',
        description:
          "Per camera that verdict_rules_file lists for the line (and `*` for any other camera) and per READY model version: the model's verdict rules with the line's and camera's changes, the scale and the polygons. Any line name is answered, whether or not it has sent a frame.",
        tags: ['lines'],
        params: LineParams,
        querystring: NoQuery,
        response: { 200: LineRulesSchema },
      },
    },
    async function getLineRules(request): Promise<Static<typeof LineRulesSchema>> {
      const { line } = request.params;
      const file = app.sightline.config.verdict_rules_file;
      const change = recheckVerdictSettings(file);
      if (change && 'rejected' in change)
        request.log.error({ event: 'verdict_rules_file_rejected', reason: change.rejected }, 'verdict_rules_file change not applied');
      const settings = verdictSettings(file);
      const listed = Object.keys(settings.lines[line]?.cameras ?? {}).sort();
      const ready = app.sightline.models.list().filter((e) => e.state === 'READY' && e.manifest);
      const cameras = [...listed, OTHER_CAMERAS].map((camera) => {
        // Scale and polygons are the camera's, whatever the model.
        const scope = scopeOf(settings, '', line, camera);
        return {
          camera,
          mm_per_px: scope.mm_per_px ?? null,
          regions: Object.keys(scope.regions).sort(),
          models: ready.map((e) => {
            const { inForce } = inForceAt({ name: e.name, manifest: e.manifest! }, { file, line, camera });
            return {
              name: e.name,
              version: e.version,
              ng: inForce.ng,
              rules: inForce.rules,
              disabled: inForce.disabled,
              problems: inForce.problems,
            };
          }),
        };
      });
      return { line, file_error: verdictSettingsError(file) ?? null, cameras };
    },
  );
}
