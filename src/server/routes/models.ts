import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { errorResponse, ModelListSchema, ModelVersionInputSchema, TrafficPatchSchema, TrafficResultSchema } from '../api-schemas.js';
import type { ModelEntry } from '../../inference/repository.js';

export function describeModel(entry: ModelEntry, isDefault: boolean, serving: boolean) {
  return {
    name: entry.name,
    version: entry.version,
    state: entry.state,
    ...(entry.reason ? { reason: entry.reason } : {}),
    since: entry.stateSince.toISOString(),
    default: isDefault,
    serving,
    in_flight: entry.inflight,
    description: entry.manifest?.description,
    // A classifier has no box layout.
    format: entry.task === 'classify' ? undefined : entry.format,
    format_detected: entry.task === 'classify' ? undefined : entry.formatDetected,
    task: entry.task,
    input: entry.inputWidth ? { width: entry.inputWidth, height: entry.inputHeight } : undefined,
    labels: entry.manifest?.labels,
    thresholds: entry.manifest ? { conf: entry.manifest.conf, iou: entry.manifest.iou, max_detections: entry.manifest.max_detections } : undefined,
    verdict: entry.manifest?.verdict,
  };
}

const NameParams = Type.Object({ name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', description: 'Model name' }) });
const ModelVersions = Type.Object(
  { models: Type.Index(ModelListSchema, ['models']) },
  { description: "The model's versions after the call, with their states (a version that failed says why)" },
);
const Disabled = errorResponse('MODEL_CONTROL_DISABLED: model_control is none');
const NotFound = errorResponse('MODEL_NOT_FOUND: no such model or version');
const StoreDown = errorResponse('STORE_UNAVAILABLE: the model control table (in the result store) is out of reach');

export async function modelRoutes(app: FastifyInstance): Promise<void> {
  const { models, modelControl } = app.sightline;

  const describeAll = (only?: string) => {
    const def = models.defaultModel();
    let defaultEntry: ModelEntry | undefined;
    try {
      defaultEntry = 'ref' in def ? models.find(def.ref) : undefined;
    } catch {
      defaultEntry = undefined;
    }
    const serving = new Set<ModelEntry>();
    for (const name of models.names()) {
      try {
        const e = models.find(name);
        if (e.state === 'READY') serving.add(e);
      } catch {
        // a model with no version: nothing serves
      }
    }
    return models
      .list()
      .filter((e) => only === undefined || e.name === only)
      .map((e) => describeModel(e, e === defaultEntry, serving.has(e)));
  };

  app.get(
    '/v1/models',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'List models',
        description:
          'Every model version with its state (LOADING, READY, FAILED with reason, UNLOADING, UNAVAILABLE with reason), the one serving, format, input size, labels, thresholds and verdict rule; and model control: mode, and per model its version policy, overrides and traffic split.',
        tags: ['models'],
        querystring: Type.Object({}, { additionalProperties: false }),
        response: { 200: ModelListSchema },
      },
    },
    async function listModels() {
      return { models: describeAll(), control: modelControl.describe() };
    },
  );

  for (const action of ['load', 'unload'] as const) {
    app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof ModelVersionInputSchema> | undefined }>(
      `/v1/models/:name/${action}`,
      {
        config: { role: 'admin' },
        // The body is optional: no body means the whole model.
        preValidation: async (request) => {
          request.body ??= {};
        },
        schema: {
          summary: action === 'load' ? 'Load a model or one version' : 'Unload a model or one version',
          description:
            action === 'load'
              ? 'Reads the model directory again and loads the versions its policy picks, or (body `{"version": "3"}`) one version besides them, trying a FAILED one again. Answers when loaded and warmed up; a version that fails leaves what served before serving (422 with the reason). Every process follows within model_sync_interval_ms.'
              : 'Takes the model (every version) or one version out of traffic, lets its requests finish (model_drain_timeout_ms), closes its instances and releases their memory. An unloaded version stays unloaded, across restarts, until loaded again. Every process follows within model_sync_interval_ms.',
          tags: ['models'],
          params: NameParams,
          body: Type.Optional(ModelVersionInputSchema),
          response: {
            200: ModelVersions,
            404: NotFound,
            409: Disabled,
            ...(action === 'load' ? { 422: errorResponse('MODEL_LOAD_FAILED: the version failed to load; the reason is in the message') } : {}),
            503: StoreDown,
          },
        },
      },
      async (request) => {
        const { name } = request.params;
        const version = request.body?.version;
        await (action === 'load' ? modelControl.load(name, version) : modelControl.unload(name, version));
        return { models: describeAll(name) };
      },
    );
  }

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof TrafficPatchSchema> }>(
    '/v1/models/:name/traffic',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Change the traffic split',
        description:
          'Canary (`{"canary": {"version": "2", "percent": 10, "by": "request"}}`: a stable hash of the request id, or of the line with `by: line`), shadow (`{"shadow": {"version": "2", "percent": 100}}`: also run, compared, never returned), pinned lines (`{"pins": {"line-3": "2"}}`) and the primary. A key replaces, null clears, absent keeps. Versions named are loaded and warmed up before the answer; every process follows within model_sync_interval_ms.',
        tags: ['models'],
        params: NameParams,
        body: TrafficPatchSchema,
        response: {
          200: TrafficResultSchema,
          400: errorResponse('INVALID_TRAFFIC_SPLIT: a version not in the repository, a percent outside 0..100'),
          404: NotFound,
          409: Disabled,
          503: StoreDown,
        },
      },
    },
    async (request) => {
      const { name } = request.params;
      const traffic = await modelControl.setTraffic(name, request.body);
      return { model: name, ...servingOf(name), traffic };
    },
  );

  app.post<{ Params: Static<typeof NameParams> }>(
    '/v1/models/:name/rollback',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Roll back',
        description:
          'All traffic back to the previous version in one call: a canary and pinned lines are dropped, so the primary answers everything; without a canary, the version before the one serving becomes the primary (loaded and warmed up first if it was released).',
        tags: ['models'],
        params: NameParams,
        response: {
          200: TrafficResultSchema,
          400: errorResponse('INVALID_TRAFFIC_SPLIT: no older version to roll back to'),
          404: NotFound,
          409: Disabled,
          422: errorResponse('MODEL_LOAD_FAILED: the previous version failed to load'),
          503: StoreDown,
        },
      },
    },
    async (request) => {
      const { name } = request.params;
      const { serving, traffic } = await modelControl.rollback(name);
      return { model: name, serving, traffic };
    },
  );

  function servingOf(name: string): { serving?: string } {
    try {
      const e = models.find(name);
      return e.state === 'READY' ? { serving: e.version } : {};
    } catch {
      return {};
    }
  }
}
