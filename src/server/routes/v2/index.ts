/**
 * The Open Inference Protocol (KServe v2 / Triton HTTP) under /v2: health,
 * server and model metadata, inference with JSON tensors and the binary tensor
 * data extension, and the model repository extension. Errors are the
 * protocol's `{"error": "<message>"}` (an X-Error-Code header carries
 * Sightline's code), never Sightline's `{error: {code, message}}`: this scope
 * has its own error and not-found handlers. docs/oip.md.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type TSchema } from '@sinclair/typebox';
import { apiErrorOf, Errors, toApiError, type ApiError } from '../../../errors.js';
import { carriesRetryAfter } from '../../../protocol/errors.js';
import type { ModelEntry, ReadyModel } from '../../../inference/repository.js';
import type { NamedTensor, TensorMetadata, TensorData } from '../../../inference/runner.js';
import { prepareImage } from '../../../inference/preprocess.js';
import { imageOutcome } from '../../../inference/detector.js';
import { effectiveEnvelope, gatedVerdict, measureLetterboxed, qualityReasons } from '../../../inference/quality.js';
import { readiness } from '../../readiness.js';
import { jsonDepth, MAX_JSON_DEPTH } from '../../image-body.js';
import { datatypeOf, decodeInput, elementCount, toBinary, toJsonData, toOrt, type Datatype, type DecodedTensor } from './tensors.js';

const { version: SERVER_VERSION } = JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string };

export const OIP_EXTENSIONS = ['binary_tensor_data', 'model_repository'];
/** The BYTES output an image input answers with: one JSON document of detections per image. */
export const DETECTIONS_OUTPUT = 'detections';
const HEADER_LENGTH = 'inference-header-content-length';
const NAME = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';

// ---- documentation ----------------------------------------------------------------

const OipError = (description: string) => Type.Object({ error: Type.String({ description: 'What went wrong' }) }, { description });
const NoQuery = Type.Object({}, { additionalProperties: false });
const ModelParams = Type.Object({ name: Type.String({ pattern: NAME, description: 'Model name' }) });
const VersionParams = Type.Object({
  name: Type.String({ pattern: NAME, description: 'Model name' }),
  version: Type.String({ pattern: NAME, description: 'Model version' }),
});
const TensorMeta = Type.Object({
  name: Type.String(),
  datatype: Type.String({ description: 'BOOL, UINT8…UINT64, INT8…INT64, FP16, FP32, FP64 or BYTES' }),
  shape: Type.Array(Type.Integer(), { description: '-1 for a dynamic dimension' }),
});
const ModelMetadata = Type.Object(
  {
    name: Type.String(),
    versions: Type.Array(Type.String()),
    platform: Type.Literal('onnxruntime_onnx'),
    inputs: Type.Array(TensorMeta),
    outputs: Type.Array(TensorMeta),
  },
  { description: 'The model version: its inputs and outputs as the ONNX session declares them' },
);
const OutputTensor = Type.Object({
  name: Type.String(),
  datatype: Type.String(),
  shape: Type.Array(Type.Integer()),
  parameters: Type.Optional(Type.Object({ binary_data_size: Type.Optional(Type.Integer()) })),
  data: Type.Optional(Type.Array(Type.Unknown(), { description: 'Row-major, flat; absent when the output is in the binary section' })),
});
const InferResponse = Type.Object(
  {
    model_name: Type.String(),
    model_version: Type.String(),
    id: Type.Optional(Type.String()),
    outputs: Type.Array(OutputTensor),
  },
  {
    description:
      'The outputs. JSON, or (when an output is asked for in binary) application/octet-stream: the JSON header of Inference-Header-Content-Length bytes, then each binary output in the order of the header',
  },
);
const ReadyBody = Type.Object({ ready: Type.Boolean() });
const ModelReadyBody = Type.Object({ name: Type.String(), version: Type.Optional(Type.String()), ready: Type.Boolean() });
const RepositoryIndex = Type.Array(
  Type.Object({
    name: Type.String(),
    version: Type.String(),
    state: Type.Union([Type.Literal('READY'), Type.Literal('UNAVAILABLE')]),
    reason: Type.String({ description: 'Why the model is UNAVAILABLE (LOADING, or why it FAILED); empty when READY' }),
  }),
  { description: 'Every model version with its state' },
);

const E400 =
  'INVALID_REQUEST: a malformed path or query, or (infer) bad JSON, an unknown or missing input or output, a wrong datatype or shape, data that does not fit its shape or datatype, a bad binary section';
const E404 = 'MODEL_NOT_FOUND: no such model or version; NOT_FOUND: no such /v2 route';
const E503 =
  'MODEL_NOT_READY: the model is LOADING or FAILED (Retry-After); OVERLOADED: the model queue is full, or event-loop delay or memory is over its limit (Retry-After)';
const common = (extra: Record<number, TSchema> = {}) => ({ 400: OipError(E400), 404: OipError(E404), ...extra });

// ---- errors ----------------------------------------------------------------------------

function translate(err: FastifyError): ApiError {
  const own = apiErrorOf(err);
  if (own) return own;
  if (err.validation) return { statusCode: 400, code: 'INVALID_REQUEST', message: `Invalid ${err.validationContext ?? 'request'}: ${err.message}` };
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return { statusCode: 413, code: 'BODY_TOO_LARGE', message: err.message };
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) return { statusCode: status, code: 'INVALID_REQUEST', message: err.message };
  return toApiError(err);
}

/** `{"error": "<message>"}` with the status of the error's code; the code in X-Error-Code. */
function sendError(request: FastifyRequest, reply: FastifyReply, api: ApiError, err: Error): FastifyReply {
  request.failure = { code: api.code, err };
  if (carriesRetryAfter(api.statusCode, api.code)) reply.header('retry-after', '1');
  return reply.status(api.statusCode).header('x-error-code', api.code).type('application/json').send({ error: api.message });
}

// ---- models --------------------------------------------------------------------------------

/** `name` or `name:version` (a version must exist); 404 MODEL_NOT_FOUND otherwise. */
function entryOf(app: FastifyInstance, params: { name: string; version?: string }): ModelEntry {
  return app.sightline.models.find(params.version === undefined ? params.name : `${params.name}:${params.version}`);
}

function readyEntry(app: FastifyInstance, params: { name: string; version?: string }): ReadyModel {
  return app.sightline.models.findReady(params.version === undefined ? params.name : `${params.name}:${params.version}`);
}

/** The session's declared inputs and outputs; a back end that does not declare them has its one image input and output. */
function tensorsOf(model: ReadyModel): { inputs: TensorMetadata[]; outputs: TensorMetadata[] } {
  const { info } = model.runners[0]!;
  return {
    inputs: info.inputs ?? [{ name: info.inputName, type: 'float32', shape: info.inputShape }],
    outputs: info.outputs ?? [{ name: info.outputName, type: 'float32', shape: info.outputShape }],
  };
}

const describeTensor = (t: TensorMetadata) => ({
  name: t.name,
  datatype: datatypeOf(t.type) ?? t.type.toUpperCase(),
  shape: t.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1)),
});

const nextRunner = new WeakMap<ModelEntry, number>();

// ---- inference -------------------------------------------------------------------------------

interface InferRequest {
  id?: string;
  inputs: DecodedTensor[];
  /** Outputs asked for, with whether each goes binary; undefined: all, binary per binary_data_output. */
  outputs: { name: string; binary: boolean }[] | undefined;
  binaryOutput: boolean;
}

/** The JSON header (the whole body, or its first Inference-Header-Content-Length bytes) and the binary section. */
export function parseInferBody(body: Buffer | undefined, headerLength: string | undefined): InferRequest {
  const bytes = body ?? Buffer.alloc(0);
  let jsonEnd = bytes.length;
  if (headerLength !== undefined) {
    const n = Number(headerLength);
    if (!/^\d+$/.test(headerLength) || n > bytes.length) {
      throw new Errors.INVALID_REQUEST(
        `Inference-Header-Content-Length ${JSON.stringify(headerLength)} is not a length within the body (${bytes.length} bytes)`,
      );
    }
    jsonEnd = n;
  }
  const text = bytes.toString('utf8', 0, jsonEnd);
  if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw new Errors.INVALID_REQUEST(`JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Errors.INVALID_REQUEST(`the inference request is not JSON: ${(err as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Errors.INVALID_REQUEST('the inference request must be a JSON object');
  const { id, inputs, outputs, parameters } = json as Record<string, unknown>;
  if (id !== undefined && typeof id !== 'string') throw new Errors.INVALID_REQUEST('"id" must be a string');
  if (!Array.isArray(inputs) || inputs.length === 0) throw new Errors.INVALID_REQUEST('"inputs" must be a non-empty array');
  const binaryOutput = (parameters as Record<string, unknown> | undefined)?.binary_data_output === true;
  let at = jsonEnd;
  const take = (size: number, name: string) => {
    if (at + size > bytes.length) throw new Errors.INVALID_REQUEST(`input "${name}": binary_data_size ${size} runs past the end of the body`);
    const slice = bytes.subarray(at, at + size);
    at += size;
    return slice;
  };
  const decoded = inputs.map((input) => decodeInput(input, take));
  if (at !== bytes.length) throw new Errors.INVALID_REQUEST(`${bytes.length - at} bytes after the last input's binary data`);
  const names = new Set<string>();
  for (const input of decoded) {
    if (names.has(input.name)) throw new Errors.INVALID_REQUEST(`input "${input.name}" is given twice`);
    names.add(input.name);
  }
  let wanted: InferRequest['outputs'];
  if (outputs !== undefined) {
    if (!Array.isArray(outputs)) throw new Errors.INVALID_REQUEST('"outputs" must be an array');
    wanted = outputs.map((o: unknown) => {
      const out = o as { name?: unknown; parameters?: { binary_data?: unknown } } | null;
      if (typeof out?.name !== 'string') throw new Errors.INVALID_REQUEST('every requested output needs a "name"');
      const flag = out.parameters?.binary_data;
      return { name: out.name, binary: typeof flag === 'boolean' ? flag : binaryOutput };
    });
  }
  return { ...(id !== undefined ? { id } : {}), inputs: decoded, outputs: wanted, binaryOutput };
}

interface OutputValue {
  name: string;
  datatype: Datatype;
  shape: number[];
  data: TensorData | Buffer[];
}

/** Which outputs go back, in the order asked for, and whether each is binary. */
function selectOutputs(available: string[], request: InferRequest): { name: string; binary: boolean }[] {
  const wanted = request.outputs ?? available.map((name) => ({ name, binary: request.binaryOutput }));
  for (const o of wanted) {
    if (!available.includes(o.name)) throw new Errors.INVALID_REQUEST(`no output "${o.name}" (outputs: ${available.join(', ')})`);
  }
  return wanted;
}

/** Raw tensors straight to the model: every declared input given, with its datatype and a shape that fits. */
async function runRaw(model: ReadyModel, request: InferRequest, deadline: number): Promise<OutputValue[]> {
  const { inputs, outputs } = tensorsOf(model);
  const runner0 = model.runners[0]!;
  if (!runner0.runTensors || !runner0.info.inputs) {
    throw new Errors.INVALID_REQUEST(`model ${model.name}:${model.version} takes images only here: send input "${runner0.info.inputName}" as BYTES`);
  }
  for (const given of request.inputs) {
    const declared = inputs.find((i) => i.name === given.name);
    if (!declared) throw new Errors.INVALID_REQUEST(`no input "${given.name}" (inputs: ${inputs.map((i) => i.name).join(', ')})`);
    const datatype = datatypeOf(declared.type);
    if (given.datatype !== datatype) throw new Errors.INVALID_REQUEST(`input "${given.name}" is ${datatype ?? declared.type}, not ${given.datatype}`);
    const fits = declared.shape.length === given.shape.length && declared.shape.every((d, i) => typeof d !== 'number' || d < 0 || d === given.shape[i]);
    if (!fits) {
      const expected = declared.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1));
      throw new Errors.INVALID_REQUEST(`input "${given.name}" has shape [${given.shape.join(', ')}]; the model takes [${expected.join(', ')}]`);
    }
  }
  for (const declared of inputs) {
    if (!request.inputs.some((i) => i.name === declared.name)) throw new Errors.INVALID_REQUEST(`input "${declared.name}" is missing`);
  }
  const selected = selectOutputs(
    outputs.map((o) => o.name),
    request,
  );
  // Raw tensors bypass the batcher's image batches, but hold one of its admission places while they run,
  // so they count against max_queue (503 OVERLOADED) like images do.
  const admission = model.batcher.admit('normal', deadline);
  try {
    if (performance.now() >= deadline) throw new Errors.DEADLINE_EXCEEDED('before inference');
    const index = nextRunner.get(model) ?? 0;
    nextRunner.set(model, index + 1);
    const runner = model.runners[index % model.runners.length]!;
    let result;
    try {
      result = await runner.runTensors!(
        request.inputs.map(toOrt),
        selected.map((o) => o.name),
      );
    } catch (err) {
      throw new Errors.INFERENCE_FAILED((err as Error).message);
    }
    return result.outputs.map((o: NamedTensor) => {
      const datatype = datatypeOf(o.type);
      if (!datatype) throw new Errors.INFERENCE_FAILED(`output "${o.name}" is ${o.type}, which the protocol cannot carry`);
      return { name: o.name, datatype, shape: o.dims, data: o.data };
    });
  } finally {
    admission.release();
  }
}

/** BYTES input of encoded images (OpenVINO Model Server style): Sightline's decode, letterbox, batcher and decoding. */
async function runImages(app: FastifyInstance, model: ReadyModel, input: DecodedTensor, request: InferRequest, deadline: number) {
  const { config } = app.sightline;
  // Raw bytes in the binary section; base64 in JSON (a JSON string cannot hold arbitrary bytes).
  const images = (input.data as Buffer[]).map((b) => (input.binary ? b : Buffer.from(b.toString('utf8'), 'base64')));
  const rawName = model.runners[0]!.info.outputName;
  const selected = selectOutputs([DETECTIONS_OUTPUT, rawName], request);
  const results = await Promise.all(
    images.map(async (bytes) => {
      if (bytes.length === 0) throw new Errors.EMPTY_BODY();
      const admission = model.batcher.admit('normal', deadline);
      let prepared;
      try {
        prepared = await prepareImage(bytes, { inputWidth: model.inputWidth, inputHeight: model.inputHeight, maxPixels: config.max_image_pixels });
      } catch (err) {
        admission.release();
        throw err;
      }
      // The model's image-quality gate as on /v1 (no line here, so no line's override): measured
      // before the pixels are handed to the worker thread.
      const envelope = effectiveEnvelope(model.manifest.quality, undefined);
      const measures = envelope ? measureLetterboxed(prepared.pixels, prepared.letterbox) : undefined;
      const run = await admission.submit(prepared.pixels);
      const perImage = elementCount(run.dims.slice(1));
      // Every task: boxes, boxes with masks, or a classifier's classes (docs/models.md#task-types).
      const outcome = imageOutcome(model, run.output, run.dims, run.index, prepared.letterbox, {});
      const quality = envelope && measures ? { ...measures, reasons: qualityReasons(measures, envelope) } : undefined;
      return {
        document: JSON.stringify({
          image: { width: prepared.letterbox.width, height: prepared.letterbox.height },
          ...outcome,
          verdict: gatedVerdict(outcome.verdict, quality?.reasons ?? []),
          ...(quality ? { quality } : {}),
        }),
        raw: run.output.slice(run.index * perImage, (run.index + 1) * perImage),
        dims: run.dims,
      };
    }),
  );
  const dims = results[0]!.dims;
  const raw = new Float32Array(results.length * elementCount(dims.slice(1)));
  for (const [i, r] of results.entries()) raw.set(r.raw, i * r.raw.length);
  const values: Record<string, OutputValue> = {
    [DETECTIONS_OUTPUT]: { name: DETECTIONS_OUTPUT, datatype: 'BYTES', shape: [results.length], data: results.map((r) => Buffer.from(r.document)) },
    [rawName]: { name: rawName, datatype: 'FP32', shape: [results.length, ...dims.slice(1)], data: raw },
  };
  return selected.map((o) => values[o.name]!);
}

/** The answer: JSON, or the JSON header plus the binary section when any output goes binary. */
function sendOutputs(reply: FastifyReply, model: ReadyModel, request: InferRequest, outputs: OutputValue[], binary: Set<string>) {
  const blobs: Buffer[] = [];
  const header = {
    model_name: model.name,
    model_version: model.version,
    ...(request.id !== undefined ? { id: request.id } : {}),
    outputs: outputs.map((o) => {
      if (!binary.has(o.name)) return { name: o.name, datatype: o.datatype, shape: o.shape, data: toJsonData(o.datatype, o.data) };
      const blob = toBinary(o.datatype, o.data);
      blobs.push(blob);
      return { name: o.name, datatype: o.datatype, shape: o.shape, parameters: { binary_data_size: blob.length } };
    }),
  };
  if (blobs.length === 0) return reply.type('application/json').send(header);
  const json = Buffer.from(JSON.stringify(header));
  reply.header('inference-header-content-length', String(json.length));
  return reply.type('application/octet-stream').send(Buffer.concat([json, ...blobs]));
}

// ---- routes ----------------------------------------------------------------------------------

export async function oipRoutes(app: FastifyInstance): Promise<void> {
  const { models, health, config, metrics } = app.sightline;

  // The protocol's error body in this scope, for every error (hooks' 401/403/429 included).
  app.setErrorHandler((err: FastifyError, request, reply) => sendError(request, reply, translate(err), err));
  app.setNotFoundHandler((request, reply) => {
    const err = new Errors.NOT_FOUND(`${request.method} ${request.url.split('?')[0]!.slice(0, 256)}`);
    return sendError(request, reply, { statusCode: 404, code: 'NOT_FOUND', message: err.message }, err);
  });
  // Bodies are read as bytes and parsed here: JSON, or JSON + binary tensors, whatever the content type says.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.get(
    '/health/live',
    {
      config: { role: 'public' },
      schema: {
        summary: 'OIP: server live',
        description: "The process answers (the protocol's liveness; as /livez).",
        tags: ['oip'],
        querystring: NoQuery,
        response: { 200: { ...Type.Object({ live: Type.Boolean() }), description: 'Live' } },
      },
    },
    async () => ({ live: true }),
  );

  app.get(
    '/health/ready',
    {
      config: { role: 'public' },
      schema: {
        summary: 'OIP: server ready',
        description: 'Ready when /readyz is: the default model READY and every critical dependency up.',
        tags: ['oip'],
        querystring: NoQuery,
        response: {
          200: { ...ReadyBody, description: 'Ready' },
          503: { ...ReadyBody, description: 'MODEL_NOT_READY: not ready, `{"ready": false}` (Retry-After; /readyz says why)' },
        },
      },
    },
    async (_request, reply) => {
      const { ready } = readiness(models, health, []);
      if (!ready) reply.status(503).header('retry-after', '1');
      return { ready };
    },
  );

  app.get(
    '',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'OIP: server metadata',
        description: 'Name, version and the protocol extensions served.',
        tags: ['oip'],
        querystring: NoQuery,
        response: {
          200: Type.Object({ name: Type.String(), version: Type.String(), extensions: Type.Array(Type.String()) }, { description: 'The server' }),
        },
      },
    },
    async () => ({ name: 'sightline', version: SERVER_VERSION, extensions: OIP_EXTENSIONS }),
  );

  const metadata = async (request: FastifyRequest<{ Params: { name: string; version?: string } }>) => {
    const model = readyEntry(app, request.params);
    const { inputs, outputs } = tensorsOf(model);
    return {
      name: model.name,
      versions: models
        .list()
        .filter((e) => e.name === model.name)
        .map((e) => e.version),
      platform: 'onnxruntime_onnx',
      inputs: inputs.map(describeTensor),
      outputs: outputs.map(describeTensor),
    };
  };
  for (const [url, params] of [
    ['/models/:name', ModelParams],
    ['/models/:name/versions/:version', VersionParams],
  ] as const) {
    app.get(
      url,
      {
        config: { role: 'viewer' },
        schema: {
          summary: `OIP: model metadata${params === VersionParams ? ' (one version)' : ''}`,
          description: 'Inputs and outputs with datatype and shape, read from the ONNX session (-1: dynamic). Without a version: the newest READY one.',
          tags: ['oip'],
          params,
          querystring: NoQuery,
          response: { 200: ModelMetadata, ...common({ 503: OipError('MODEL_NOT_READY: the model is LOADING or FAILED (Retry-After)') }) },
        },
      },
      metadata,
    );
  }

  for (const [url, params] of [
    ['/models/:name/ready', ModelParams],
    ['/models/:name/versions/:version/ready', VersionParams],
  ] as const) {
    app.get<{ Params: { name: string; version?: string } }>(
      url,
      {
        config: { role: 'public' },
        schema: {
          summary: `OIP: model ready${params === VersionParams ? ' (one version)' : ''}`,
          description: 'Whether the model (its newest READY version, or the one named) can take requests.',
          tags: ['oip'],
          params,
          querystring: NoQuery,
          response: {
            200: { ...ModelReadyBody, description: 'Ready' },
            404: OipError(E404),
            503: { ...ModelReadyBody, description: 'MODEL_NOT_READY: the model is LOADING or FAILED, `"ready": false` (Retry-After)' },
          },
        },
      },
      async (request, reply) => {
        const entry = entryOf(app, request.params);
        const ready = entry.state === 'READY';
        if (!ready) reply.status(503).header('retry-after', '1');
        return { name: entry.name, version: entry.version, ready };
      },
    );
  }

  // Inference: a full model queue is refused before the body is read, as on /v1/detect.
  await app.register(async function inference(scope) {
    scope.addHook('onRequest', async (request) => {
      const { name, version } = request.params as { name?: string; version?: string };
      let entry;
      try {
        entry = entryOf(app, { name: name ?? '', ...(version !== undefined ? { version } : {}) });
      } catch {
        return; // the handler answers with the precise error
      }
      if (entry.batcher && !entry.batcher.hasRoomFor('normal')) {
        metrics.rejected.inc({ reason: 'queue_full' });
        throw new Errors.OVERLOADED(`the inference queue of ${entry.name}:${entry.version} is full`);
      }
    });
    for (const [url, params] of [
      ['/models/:name/infer', ModelParams],
      ['/models/:name/versions/:version/infer', VersionParams],
    ] as const) {
      scope.post<{ Params: { name: string; version?: string } }>(
        url,
        {
          config: { role: 'ingest' },
          schema: {
            summary: `OIP: inference${params === VersionParams ? ' (one version)' : ''}`,
            description:
              'Body: the JSON inference request `{id?, inputs: [{name, shape, datatype, data | parameters.binary_data_size}], outputs?: [{name, parameters?: {binary_data}}], parameters?: {binary_data_output}}`, or (binary tensor data extension) that JSON in the first Inference-Header-Content-Length bytes followed by the binary inputs. Raw tensors go to the model as they are. An image input given as BYTES (JPEG, PNG or WebP; base64 in JSON, raw in the binary section) is decoded and letterboxed by Sightline and answered with the raw output and a `detections` BYTES output (one JSON document per image). docs/oip.md.',
            tags: ['oip'],
            params,
            querystring: NoQuery,
            consumes: ['application/json', 'application/octet-stream'],
            response: {
              200: InferResponse,
              ...common({
                413: OipError('BODY_TOO_LARGE: over body_limit_bytes; IMAGE_TOO_LARGE: an image over max_image_pixels'),
                415: OipError('UNSUPPORTED_MEDIA_TYPE: a BYTES image that is not JPEG, PNG or WebP'),
                500: OipError('INFERENCE_FAILED: the runtime failed on these tensors'),
                503: OipError(E503),
                504: OipError('DEADLINE_EXCEEDED: request_timeout_ms passed before inference'),
              }),
            },
          },
        },
        async (request, reply) => {
          const deadline = performance.now() - reply.elapsedTime + config.request_timeout_ms;
          // A bare name goes through the model's traffic split; the version is held until the answer is out (unloading waits).
          const { name, version } = request.params;
          const routed = app.sightline.models.route(version === undefined ? name : `${name}:${version}`, { requestId: request.id });
          const { model } = routed;
          try {
            const headerLength = request.headers[HEADER_LENGTH];
            const infer = parseInferBody(request.body as Buffer | undefined, typeof headerLength === 'string' ? headerLength : undefined);
            const imageInput = model.runners[0]!.info.inputName;
            const declared = tensorsOf(model).inputs.find((i) => i.name === imageInput);
            const [first] = infer.inputs;
            const isImage = infer.inputs.length === 1 && first!.name === imageInput && first!.datatype === 'BYTES' && declared?.type !== 'string';
            let outputs: OutputValue[];
            if (isImage) {
              if (first!.shape.length !== 1 || first!.shape[0] === 0) {
                throw new Errors.INVALID_REQUEST(`image input "${imageInput}" must have shape [N], one encoded image per element`);
              }
              outputs = await runImages(app, model, first!, infer, deadline);
            } else {
              outputs = await runRaw(model, infer, deadline);
            }
            const binary = new Set(
              selectOutputs(
                outputs.map((o) => o.name),
                infer,
              )
                .filter((o) => o.binary)
                .map((o) => o.name),
            );
            return sendOutputs(reply, model, infer, outputs, binary);
          } finally {
            routed.release();
          }
        },
      );
    }
  });

  const indexOf = () =>
    models.list().map((e) => ({
      name: e.name,
      version: e.version,
      state: e.state === 'READY' ? 'READY' : 'UNAVAILABLE',
      reason: e.state === 'READY' ? '' : e.state === 'FAILED' ? (e.reason ?? 'FAILED') : e.reason ? `${e.state}: ${e.reason}` : e.state,
    }));
  app.post(
    '/repository/index',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'OIP: repository index',
        description:
          'Every model version with its state: READY, or UNAVAILABLE with the reason (LOADING, or why it FAILED). Body (optional): `{"ready": true}` lists the READY ones only.',
        tags: ['oip'],
        querystring: NoQuery,
        consumes: ['application/json'],
        response: { 200: RepositoryIndex, 400: OipError(E400) },
      },
    },
    async (request) => {
      const body = request.body as Buffer | undefined;
      let readyOnly = false;
      if (body && body.length > 0) {
        let json: unknown;
        try {
          json = JSON.parse(body.toString('utf8'));
        } catch (err) {
          throw new Errors.INVALID_REQUEST(`the body is not JSON: ${(err as Error).message}`);
        }
        if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Errors.INVALID_REQUEST('the body must be a JSON object');
        const ready = (json as { ready?: unknown }).ready;
        if (ready !== undefined && typeof ready !== 'boolean') throw new Errors.INVALID_REQUEST('"ready" must be a boolean');
        readyOnly = ready === true;
      }
      return indexOf().filter((m) => !readyOnly || m.state === 'READY');
    },
  );

  for (const action of ['load', 'unload'] as const) {
    app.post<{ Params: { name: string } }>(
      `/repository/models/:name/${action}`,
      {
        config: { role: 'admin' },
        schema: {
          summary: `OIP: ${action} a model`,
          description:
            action === 'load'
              ? 'Loads the model as its version policy says (the directory is read again; a FAILED version is tried again) and answers when it is READY: POST /v1/models/:name/load. Body (optional): `{"parameters": {"version": "2"}}` loads one version besides. A failed load leaves what served before serving.'
              : 'Unloads every version of the model (drained, then released): POST /v1/models/:name/unload. Body (optional): `{"parameters": {"version": "2"}}` unloads one version.',
          tags: ['oip'],
          params: ModelParams,
          querystring: NoQuery,
          consumes: ['application/json'],
          response: {
            200: Type.Object({}, { description: 'Done: loaded and warmed up, or unloaded and released' }),
            400: OipError('INVALID_REQUEST: the body is not a JSON object with an optional parameters.version string'),
            404: OipError('MODEL_NOT_FOUND: no such model or version'),
            409: OipError('MODEL_CONTROL_DISABLED: model_control is none'),
            ...(action === 'load' ? { 422: OipError('MODEL_LOAD_FAILED: the model failed to load; the reason is in the message') } : {}),
            503: OipError('STORE_UNAVAILABLE: the model control table is out of reach'),
          },
        },
      },
      async (request) => {
        const version = repositoryVersion(request.body as Buffer | undefined);
        const { name } = request.params;
        await (action === 'load' ? app.sightline.modelControl.load(name, version) : app.sightline.modelControl.unload(name, version));
        return {};
      },
    );
  }
}

/** The optional body of repository load/unload: `{"parameters": {"version": "2"}}`. */
function repositoryVersion(body: Buffer | undefined): string | undefined {
  if (!body || body.length === 0) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new Errors.INVALID_REQUEST(`the body is not JSON: ${(err as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Errors.INVALID_REQUEST('the body must be a JSON object');
  const parameters = (json as { parameters?: unknown }).parameters;
  if (parameters === undefined) return undefined;
  if (!parameters || typeof parameters !== 'object' || Array.isArray(parameters)) throw new Errors.INVALID_REQUEST('"parameters" must be an object');
  const version = (parameters as { version?: unknown }).version;
  if (version !== undefined && typeof version !== 'string') throw new Errors.INVALID_REQUEST('"parameters.version" must be a string');
  return version;
}
