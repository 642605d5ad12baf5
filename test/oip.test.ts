// The Open Inference Protocol (KServe v2 / Triton HTTP, docs/oip.md), tested from the
// specification: health, metadata, JSON and binary inference round trips with exact
// shapes and datatypes, the repository extension, every error with its status, and
// the same answers as /v1 on the same model.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import sharp from 'sharp';
import { buildConstantModel, buildGraphModel, ONNX_ELEM, writeModel } from './helpers/onnx-builder.js';
import { startApp, tempDir } from './helpers/fixtures.js';
import { prepareImage, hwcToChwFloat } from '../src/inference/preprocess.js';
import { DATATYPES, decodeInput, fromHalf, toBinary, toHalf, toJsonData, type Datatype } from '../src/server/routes/v2/tensors.js';

const { FLOAT, INT32, INT64, BOOL, FLOAT16, DOUBLE } = ONNX_ELEM;

/**
 * images [N,3,2,2] → output0 = Reshape to [N,6,2] (a yolov8 layout for 2 labels, so the repository loads it),
 * doubled = 2·x, half = FP16(x), positive = x > 0.5, quarters = INT32(4·x), wide = FP64(x), shape = Shape(x).
 */
function mirrorModel(): Uint8Array {
  const toType = (to: number) => [{ name: 'to', i: to, type: 2 }];
  return buildGraphModel({
    nodes: [
      { op_type: 'Reshape', input: ['images', 'target'], output: ['output0'] },
      { op_type: 'Mul', input: ['images', 'two'], output: ['doubled'] },
      { op_type: 'Cast', input: ['images'], output: ['half'], attribute: toType(FLOAT16) },
      { op_type: 'Greater', input: ['images', 'point5'], output: ['positive'] },
      { op_type: 'Mul', input: ['images', 'four'], output: ['times4'] },
      { op_type: 'Cast', input: ['times4'], output: ['quarters'], attribute: toType(INT32) },
      { op_type: 'Cast', input: ['images'], output: ['wide'], attribute: toType(DOUBLE) },
      { op_type: 'Shape', input: ['images'], output: ['shape'] },
    ],
    floats: { two: { dims: [], values: [2] }, four: { dims: [], values: [4] }, point5: { dims: [], values: [0.5] } },
    int64s: { target: [0, 6, 2] },
    inputs: [{ name: 'images', elemType: FLOAT, dims: ['batch', 3, 2, 2] }],
    outputs: [
      { name: 'output0', elemType: FLOAT, dims: ['batch', 6, 2] },
      { name: 'doubled', elemType: FLOAT, dims: ['batch', 3, 2, 2] },
      { name: 'half', elemType: FLOAT16, dims: ['batch', 3, 2, 2] },
      { name: 'positive', elemType: BOOL, dims: ['batch', 3, 2, 2] },
      { name: 'quarters', elemType: INT32, dims: ['batch', 3, 2, 2] },
      { name: 'wide', elemType: DOUBLE, dims: ['batch', 3, 2, 2] },
      { name: 'shape', elemType: INT64, dims: [4] },
    ],
  });
}

const MIRROR_MANIFEST = {
  labels: ['a', 'b'],
  format: 'yolov8',
  input: { width: 2, height: 2 },
  conf: 0.25,
  iou: 0.45,
  max_detections: 100,
  verdict: { ng: { a: 0.5 } },
};

// Exact binary fractions, so every derived output is exact.
const X = [0.25, 0.5, 0.75, 1, -1.5, 2, 0, 0.125, 3, -0.25, 0.625, 1.5];

let app: FastifyInstance;
let repo: ReturnType<typeof tempDir>;
const sample = readFileSync(new URL('../samples/ng-03.jpg', import.meta.url));

before(async () => {
  repo = tempDir('sightline-oip-');
  writeModel(repo.dir, 'mirror', '1', mirrorModel(), MIRROR_MANIFEST);
  writeModel(repo.dir, 'mirror', '2', mirrorModel(), MIRROR_MANIFEST);
  // Not an ONNX model: FAILED, so UNAVAILABLE with its reason.
  mkdirSync(join(repo.dir, 'broken', '1'), { recursive: true });
  writeFileSync(join(repo.dir, 'broken', '1', 'model.onnx'), 'not onnx');
  writeFileSync(join(repo.dir, 'broken', '1', 'model.json'), JSON.stringify(MIRROR_MANIFEST));
  // Version 1 alone: the expectations below name one defects version.
  cpSync(new URL('../models/defects/1', import.meta.url), join(repo.dir, 'defects', '1'), { recursive: true });
  // With the watchdog on (the default): raw tensors run under its stall limit too.
  app = await startApp({
    models_dir: repo.dir,
    default_model: 'defects',
    body_limit_bytes: 4 * 1024 * 1024,
    // Both mirror versions stay loaded (the default policy, latest:1, would release version 1).
    model_version_policy: 'latest:1; mirror=all',
  });
});

after(async () => {
  await app?.close();
  repo?.cleanup();
});

const post = (url: string, payload: unknown, headers: Record<string, string> = {}) =>
  app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json', ...headers },
    payload: Buffer.isBuffer(payload) ? payload : JSON.stringify(payload),
  });

/** The protocol's error: `{"error": "<message>"}`, the given status, the code in X-Error-Code. */
function assertError(res: LightMyRequestResponse, status: number, code: string, message?: RegExp): void {
  assert.equal(res.statusCode, status, res.body);
  const body = res.json() as { error: unknown };
  assert.deepEqual(Object.keys(body), ['error'], res.body);
  assert.equal(typeof body.error, 'string', res.body);
  assert.equal(res.headers['x-error-code'], code);
  if (message) assert.match(body.error as string, message);
  if (status === 503) assert.equal(res.headers['retry-after'], '1');
}

/** Splits a binary-extension body into its JSON header and its binary section. */
function splitBinary(res: LightMyRequestResponse): {
  header: { outputs: { name: string; datatype: string; shape: number[]; parameters?: { binary_data_size: number }; data?: unknown[] }[] };
  blobs: Record<string, Buffer>;
} {
  const length = Number(res.headers['inference-header-content-length']);
  const raw = res.rawPayload;
  const header = JSON.parse(raw.subarray(0, length).toString('utf8'));
  const blobs: Record<string, Buffer> = {};
  let at = length;
  for (const o of header.outputs) {
    if (!o.parameters?.binary_data_size) continue;
    blobs[o.name] = raw.subarray(at, at + o.parameters.binary_data_size);
    at += o.parameters.binary_data_size;
  }
  assert.equal(at, raw.length, 'the binary section holds exactly the binary outputs');
  return { header, blobs };
}

const f32 = (values: number[]) => Buffer.from(new Float32Array(values).buffer);

test('health: live and ready, public', async () => {
  const live = await app.inject({ url: '/v2/health/live' });
  assert.equal(live.statusCode, 200);
  assert.deepEqual(live.json(), { live: true });
  const ready = await app.inject({ url: '/v2/health/ready' });
  assert.equal(ready.statusCode, 200, ready.body);
  assert.deepEqual(ready.json(), { ready: true });
});

test('server metadata names the server and its extensions', async () => {
  const res = await app.inject({ url: '/v2' });
  assert.equal(res.statusCode, 200);
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.deepEqual(res.json(), { name: 'sightline', version, extensions: ['binary_tensor_data', 'model_repository'] });
});

test('model metadata: every input and output with datatype and shape from the ONNX session (-1 dynamic)', async () => {
  const expected = {
    name: 'mirror',
    versions: ['1', '2'],
    platform: 'onnxruntime_onnx',
    inputs: [{ name: 'images', datatype: 'FP32', shape: [-1, 3, 2, 2] }],
    outputs: [
      { name: 'output0', datatype: 'FP32', shape: [-1, 6, 2] },
      { name: 'doubled', datatype: 'FP32', shape: [-1, 3, 2, 2] },
      { name: 'half', datatype: 'FP16', shape: [-1, 3, 2, 2] },
      { name: 'positive', datatype: 'BOOL', shape: [-1, 3, 2, 2] },
      { name: 'quarters', datatype: 'INT32', shape: [-1, 3, 2, 2] },
      { name: 'wide', datatype: 'FP64', shape: [-1, 3, 2, 2] },
      { name: 'shape', datatype: 'INT64', shape: [4] },
    ],
  };
  for (const url of ['/v2/models/mirror', '/v2/models/mirror/versions/1', '/v2/models/mirror/versions/2']) {
    const res = await app.inject({ url });
    assert.equal(res.statusCode, 200, `${url}: ${res.body}`);
    assert.deepEqual(res.json(), expected, url);
  }
  const defects = (await app.inject({ url: '/v2/models/defects' })).json();
  assert.deepEqual(defects.inputs, [{ name: 'images', datatype: 'FP32', shape: defects.inputs[0].shape }]);
  assert.equal(defects.inputs[0].shape.length, 4);
  assertError(await app.inject({ url: '/v2/models/nope' }), 404, 'MODEL_NOT_FOUND');
  assertError(await app.inject({ url: '/v2/models/mirror/versions/9' }), 404, 'MODEL_NOT_FOUND');
  assertError(await app.inject({ url: '/v2/models/broken' }), 503, 'MODEL_NOT_READY');
});

test('model ready: 200 ready, 503 not ready, 404 unknown', async () => {
  const ready = await app.inject({ url: '/v2/models/mirror/ready' });
  assert.equal(ready.statusCode, 200);
  assert.deepEqual(ready.json(), { name: 'mirror', version: '2', ready: true });
  assert.deepEqual((await app.inject({ url: '/v2/models/mirror/versions/1/ready' })).json(), { name: 'mirror', version: '1', ready: true });
  const broken = await app.inject({ url: '/v2/models/broken/ready' });
  assert.equal(broken.statusCode, 503);
  assert.equal(broken.headers['retry-after'], '1');
  assert.deepEqual(broken.json(), { name: 'broken', version: '1', ready: false });
  assertError(await app.inject({ url: '/v2/models/nope/ready' }), 404, 'MODEL_NOT_FOUND');
});

const mirrorExpected = (x: number[], batch: number) => ({
  output0: { datatype: 'FP32', shape: [batch, 6, 2], data: x },
  doubled: { datatype: 'FP32', shape: [batch, 3, 2, 2], data: x.map((v) => 2 * v) },
  half: { datatype: 'FP16', shape: [batch, 3, 2, 2], data: x },
  positive: { datatype: 'BOOL', shape: [batch, 3, 2, 2], data: x.map((v) => v > 0.5) },
  quarters: { datatype: 'INT32', shape: [batch, 3, 2, 2], data: x.map((v) => Math.trunc(4 * v)) },
  wide: { datatype: 'FP64', shape: [batch, 3, 2, 2], data: x },
  shape: { datatype: 'INT64', shape: [4], data: [batch, 3, 2, 2] },
});

test('JSON infer: flat and nested data give every output with its exact datatype, shape and values', async () => {
  const nested = [
    [
      [X.slice(0, 2), X.slice(2, 4)],
      [X.slice(4, 6), X.slice(6, 8)],
      [X.slice(8, 10), X.slice(10, 12)],
    ],
  ];
  for (const data of [X, nested]) {
    const res = await post('/v2/models/mirror/infer', { id: 'req-1', inputs: [{ name: 'images', shape: [1, 3, 2, 2], datatype: 'FP32', data }] });
    assert.equal(res.statusCode, 200, res.body);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const body = res.json();
    assert.equal(body.model_name, 'mirror');
    assert.equal(body.model_version, '2');
    assert.equal(body.id, 'req-1');
    const expected = mirrorExpected(X, 1);
    assert.deepEqual(
      body.outputs.map((o: { name: string }) => o.name),
      Object.keys(expected),
      'all outputs, in the model order',
    );
    for (const o of body.outputs) assert.deepEqual({ datatype: o.datatype, shape: o.shape, data: o.data }, expected[o.name as keyof typeof expected], o.name);
  }
  // A batch of two, a version named, and two outputs asked for in this order.
  const two = [...X, ...X.map((v) => -v || 0)]; // (JSON has no -0)
  const res = await post('/v2/models/mirror/versions/1/infer', {
    inputs: [{ name: 'images', shape: [2, 3, 2, 2], datatype: 'FP32', data: two }],
    outputs: [{ name: 'shape' }, { name: 'doubled' }],
  });
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json();
  assert.equal(body.model_version, '1');
  assert.equal(body.id, undefined);
  assert.deepEqual(body.outputs, [
    { name: 'shape', datatype: 'INT64', shape: [4], data: [2, 3, 2, 2] },
    { name: 'doubled', datatype: 'FP32', shape: [2, 3, 2, 2], data: two.map((v) => 2 * v) },
  ]);
});

test('binary infer: binary input, binary and JSON outputs in the order of the header', async () => {
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'images', shape: [1, 3, 2, 2], datatype: 'FP32', parameters: { binary_data_size: 48 } }],
      outputs: [
        { name: 'half', parameters: { binary_data: true } },
        { name: 'positive' },
        { name: 'quarters', parameters: { binary_data: true } },
        { name: 'shape', parameters: { binary_data: true } },
      ],
    }),
  );
  const res = await post('/v2/models/mirror/infer', Buffer.concat([header, f32(X)]), {
    'content-type': 'application/octet-stream',
    'inference-header-content-length': String(header.length),
  });
  assert.equal(res.statusCode, 200, res.body);
  assert.match(String(res.headers['content-type']), /^application\/octet-stream/);
  const { header: out, blobs } = splitBinary(res);
  assert.deepEqual(
    out.outputs.map((o) => [o.name, o.datatype, o.shape, o.parameters?.binary_data_size]),
    [
      ['half', 'FP16', [1, 3, 2, 2], 24],
      ['positive', 'BOOL', [1, 3, 2, 2], undefined],
      ['quarters', 'INT32', [1, 3, 2, 2], 48],
      ['shape', 'INT64', [4], 32],
    ],
  );
  assert.deepEqual(
    out.outputs[1]!.data,
    X.map((v) => v > 0.5),
  );
  const half = blobs.half!;
  assert.deepEqual(
    Array.from({ length: 12 }, (_, i) => fromHalf(half.readUInt16LE(i * 2))),
    X,
  );
  assert.deepEqual(
    Array.from({ length: 12 }, (_, i) => blobs.quarters!.readInt32LE(i * 4)),
    X.map((v) => Math.trunc(4 * v)),
  );
  assert.deepEqual(
    Array.from({ length: 4 }, (_, i) => Number(blobs.shape!.readBigInt64LE(i * 8))),
    [1, 3, 2, 2],
  );

  // binary_data_output: every output binary; a JSON request (no header length) may ask for it too.
  const all = await post('/v2/models/mirror/infer', {
    inputs: [{ name: 'images', shape: [1, 3, 2, 2], datatype: 'FP32', data: X }],
    parameters: { binary_data_output: true },
  });
  assert.equal(all.statusCode, 200, all.body);
  const split = splitBinary(all);
  assert.deepEqual(Object.keys(split.blobs), Object.keys(mirrorExpected(X, 1)));
  assert.deepEqual(Array.from(new Float32Array(new Uint8Array(split.blobs.output0!).buffer)), X);
  assert.deepEqual(Array.from(new Float64Array(new Uint8Array(split.blobs.wide!).buffer)), X);
  assert.deepEqual(
    [...split.blobs.positive!],
    X.map((v) => (v > 0.5 ? 1 : 0)),
  );
});

test('the tensor codec round-trips every datatype in JSON and binary form', () => {
  const samples: Record<Datatype, unknown[]> = {
    BOOL: [true, false, true],
    UINT8: [0, 255, 7],
    UINT16: [0, 65535, 7],
    UINT32: [0, 4294967295, 7],
    UINT64: [0, 2 ** 53 - 1, 7],
    INT8: [-128, 127, 0],
    INT16: [-32768, 32767, 0],
    INT32: [-2147483648, 2147483647, 0],
    INT64: [-(2 ** 53 - 1), 2 ** 53 - 1, 0],
    FP16: [0.5, -2, 65504],
    FP32: [0.1, -3.5, 1e30],
    FP64: [0.1, -3.5, 1e300],
    BYTES: ['', 'abc', 'ünï'],
  };
  const noBinary = () => assert.fail('no binary section');
  for (const [datatype, values] of Object.entries(samples) as [Datatype, unknown[]][]) {
    const decoded = decodeInput({ name: 't', shape: [3], datatype, data: values }, noBinary);
    const expected = datatype === 'FP32' ? values.map((v) => Math.fround(v as number)) : values;
    assert.deepEqual(toJsonData(datatype, decoded.data), expected, `${datatype} JSON`);
    const bytes = toBinary(datatype, decoded.data);
    if (datatype !== 'BYTES') assert.equal(bytes.length, 3 * DATATYPES[datatype].size, `${datatype} size`);
    const back = decodeInput({ name: 't', shape: [3], datatype, parameters: { binary_data_size: bytes.length } }, () => bytes);
    assert.deepEqual(toJsonData(datatype, back.data), expected, `${datatype} binary`);
  }
  // Out of range or of the wrong kind: refused.
  for (const [datatype, value] of [
    ['UINT8', 256],
    ['INT8', -129],
    ['INT32', 1.5],
    ['UINT64', -1],
    ['INT64', 2 ** 53],
    ['BOOL', 1],
    ['FP32', 'x'],
    ['BYTES', 3],
  ] as const) {
    assert.throws(() => decodeInput({ name: 't', shape: [1], datatype, data: [value] }, noBinary), { code: 'INVALID_REQUEST' }, `${datatype} ${value}`);
  }
  assert.equal(fromHalf(toHalf(1 / 3)), 0.333251953125, 'FP16 rounds to nearest');
  assert.equal(fromHalf(toHalf(1e6)), Number.POSITIVE_INFINITY);
});

test('BYTES image input: decoded by Sightline, the same detections as /v1/detect and the raw output of the model', async () => {
  const v1 = await app.inject({ method: 'POST', url: '/v1/detect?model=defects', headers: { 'content-type': 'image/jpeg' }, payload: sample });
  assert.equal(v1.statusCode, 200, v1.body);
  const want = v1.json();
  assert.equal(want.verdict, 'ng', 'the sample has defects');

  // JSON: the image base64-encoded.
  const json = await post('/v2/models/defects/infer', { inputs: [{ name: 'images', shape: [1], datatype: 'BYTES', data: [sample.toString('base64')] }] });
  assert.equal(json.statusCode, 200, json.body);
  const outputs = json.json().outputs as { name: string; datatype: string; shape: number[]; data: unknown[] }[];
  assert.deepEqual(
    outputs.map((o) => [o.name, o.datatype]),
    [
      ['detections', 'BYTES'],
      ['output0', 'FP32'],
    ],
  );
  assert.deepEqual(outputs[0]!.shape, [1]);
  const doc = JSON.parse(outputs[0]!.data[0] as string);
  assert.ok(want.quality, 'the built-in model has a quality envelope');
  assert.deepEqual(doc, { image: want.image, detections: want.detections, verdict: want.verdict, quality: want.quality });

  // The raw output is the model's own output on the letterboxed image, as the runner /v1 uses gives it.
  const model = app.sightline.models.findReady('defects');
  const prepared = await prepareImage(sample, { inputWidth: model.inputWidth, inputHeight: model.inputHeight, maxPixels: 1e9 });
  const direct = await model.runners[0]!.run([prepared.pixels], model.inputWidth, model.inputHeight);
  assert.deepEqual(outputs[1]!.shape, direct.dims);
  assert.deepEqual(outputs[1]!.data, Array.from(direct.output));

  // Binary: two images raw in the binary section, detections asked for in binary.
  const ok = await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 120, g: 120, b: 120 } } })
    .png()
    .toBuffer();
  const element = (b: Buffer) => Buffer.concat([Buffer.from(new Uint32Array([b.length]).buffer), b]);
  const blob = Buffer.concat([element(sample), element(ok)]);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'images', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: blob.length } }],
      outputs: [{ name: 'detections', parameters: { binary_data: true } }],
    }),
  );
  const bin = await post('/v2/models/defects/infer', Buffer.concat([header, blob]), {
    'content-type': 'application/octet-stream',
    'inference-header-content-length': String(header.length),
  });
  assert.equal(bin.statusCode, 200, bin.body);
  const { header: out, blobs } = splitBinary(bin);
  assert.deepEqual(
    out.outputs.map((o) => [o.name, o.shape]),
    [['detections', [2]]],
  );
  const docs = decodeInput({ name: 'd', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: blobs.detections!.length } }, () => blobs.detections!);
  const [first, second] = (docs.data as Buffer[]).map((b) => JSON.parse(b.toString('utf8')));
  assert.deepEqual(first, doc);
  // A flat grey frame has no contrast: outside the model's envelope, so `check` with the reason, as on /v1.
  assert.equal(second.verdict, 'check');
  assert.ok(
    second.quality.reasons.some((r: string) => r.startsWith('low contrast:')),
    JSON.stringify(second.quality),
  );
  assert.deepEqual(second.image, { width: 320, height: 240 });
});

test('raw tensors: the same tensor gives the same raw output as the runner /v1 uses', async () => {
  const model = app.sightline.models.findReady('defects');
  const prepared = await prepareImage(sample, { inputWidth: model.inputWidth, inputHeight: model.inputHeight, maxPixels: 1e9 });
  const direct = await model.runners[0]!.run([prepared.pixels], model.inputWidth, model.inputHeight);
  const tensor = new Float32Array(3 * model.inputWidth * model.inputHeight);
  hwcToChwFloat(prepared.pixels, model.inputWidth, model.inputHeight, tensor, 0);
  const body = Buffer.from(tensor.buffer);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'images', shape: [1, 3, model.inputHeight, model.inputWidth], datatype: 'FP32', parameters: { binary_data_size: body.length } }],
      parameters: { binary_data_output: true },
    }),
  );
  const res = await post('/v2/models/defects/infer', Buffer.concat([header, body]), {
    'content-type': 'application/octet-stream',
    'inference-header-content-length': String(header.length),
  });
  assert.equal(res.statusCode, 200, res.body);
  const { header: out, blobs } = splitBinary(res);
  assert.deepEqual(out.outputs[0]!.shape, direct.dims);
  assert.ok(Buffer.from(direct.output.buffer, direct.output.byteOffset, direct.output.byteLength).equals(blobs.output0!), 'bit for bit');
});

test('repository extension: index with states and reasons; load and unload answer with documented errors', async () => {
  const index = await post('/v2/repository/index', {});
  assert.equal(index.statusCode, 200, index.body);
  const entries = index.json() as { name: string; version: string; state: string; reason: string }[];
  assert.deepEqual(
    entries.map((e) => [e.name, e.version, e.state]),
    [
      ['broken', '1', 'UNAVAILABLE'],
      ['defects', '1', 'READY'],
      ['mirror', '1', 'READY'],
      ['mirror', '2', 'READY'],
    ],
  );
  assert.ok(entries[0]!.reason.length > 0, 'a FAILED model says why');
  assert.equal(entries[1]!.reason, '');
  const readyOnly = await post('/v2/repository/index', { ready: true });
  assert.deepEqual(
    readyOnly.json().map((e: { name: string }) => e.name),
    ['defects', 'mirror', 'mirror'],
  );
  assert.equal((await app.inject({ method: 'POST', url: '/v2/repository/index' })).statusCode, 200, 'no body');
  assertError(await post('/v2/repository/index', Buffer.from('{nope')), 400, 'INVALID_REQUEST');
  assertError(await post('/v2/repository/index', { ready: 'yes' }), 400, 'INVALID_REQUEST');
  for (const action of ['load', 'unload']) {
    assertError(await post(`/v2/repository/models/nope/${action}`, {}), 404, 'MODEL_NOT_FOUND');
    assertError(await post(`/v2/repository/models/mirror/${action}`, { parameters: { version: '9' } }), 404, 'MODEL_NOT_FOUND');
    assertError(await post(`/v2/repository/models/mirror/${action}`, { parameters: { version: 2 } }), 400, 'INVALID_REQUEST');
    assertError(await post(`/v2/repository/models/mirror/${action}`, Buffer.from('{nope')), 400, 'INVALID_REQUEST');
  }
  // Unload one version: drained, released, UNAVAILABLE with the reason; its endpoints answer not ready.
  const unloaded = await post('/v2/repository/models/mirror/unload', { parameters: { version: '1' } });
  assert.equal(unloaded.statusCode, 200, unloaded.body);
  assert.deepEqual(unloaded.json(), {});
  const after = (await post('/v2/repository/index', {})).json() as { name: string; version: string; state: string; reason: string }[];
  const v1 = after.find((e) => e.name === 'mirror' && e.version === '1')!;
  assert.equal(v1.state, 'UNAVAILABLE');
  assert.match(v1.reason, /unloaded/);
  assert.equal((await app.inject('/v2/models/mirror/versions/1/ready')).statusCode, 503);
  assert.equal((await app.inject('/v2/models/mirror/ready')).statusCode, 200, 'version 2 still serves');
  // Load it back: READY again, and it answers.
  const loaded = await post('/v2/repository/models/mirror/load', { parameters: { version: '1' } });
  assert.equal(loaded.statusCode, 200, loaded.body);
  assert.equal((await app.inject('/v2/models/mirror/versions/1/ready')).statusCode, 200);
  // A model whose files cannot load: 422 with the reason, still UNAVAILABLE in the index.
  assertError(await post('/v2/repository/models/broken/load', {}), 422, 'MODEL_LOAD_FAILED', /broken:1/);
});

test('every error case answers {"error": "…"} with its documented status', async () => {
  const infer = (payload: unknown, headers: Record<string, string> = {}, url = '/v2/models/mirror/infer') => post(url, payload, headers);
  const input = (over: object = {}) => ({ name: 'images', shape: [1, 3, 2, 2], datatype: 'FP32', data: X, ...over });
  const cases: [string, Promise<LightMyRequestResponse>, number, string][] = [
    ['not JSON', infer(Buffer.from('{"inputs": [')), 400, 'INVALID_REQUEST'],
    ['not an object', infer([1]), 400, 'INVALID_REQUEST'],
    ['no inputs', infer({ inputs: [] }), 400, 'INVALID_REQUEST'],
    ['an unknown datatype', infer({ inputs: [input({ datatype: 'FP8' })] }), 400, 'INVALID_REQUEST'],
    ['a datatype the model does not take', infer({ inputs: [input({ datatype: 'FP64' })] }), 400, 'INVALID_REQUEST'],
    ['a shape the model does not take', infer({ inputs: [input({ shape: [1, 3, 4], data: X })] }), 400, 'INVALID_REQUEST'],
    ['a negative dimension', infer({ inputs: [input({ shape: [-1, 3, 2, 2] })] }), 400, 'INVALID_REQUEST'],
    ['data that does not fill the shape', infer({ inputs: [input({ data: X.slice(1) })] }), 400, 'INVALID_REQUEST'],
    ['a value of the wrong kind', infer({ inputs: [input({ data: [...X.slice(1), 'x'] })] }), 400, 'INVALID_REQUEST'],
    ['an unknown input', infer({ inputs: [input({ name: 'pixels' })] }), 400, 'INVALID_REQUEST'],
    ['an input given twice', infer({ inputs: [input(), input()] }), 400, 'INVALID_REQUEST'],
    ['an unknown output', infer({ inputs: [input()], outputs: [{ name: 'nope' }] }), 400, 'INVALID_REQUEST'],
    ['no data', infer({ inputs: [input({ data: undefined })] }), 400, 'INVALID_REQUEST'],
    ['a header length past the body', infer(Buffer.from('{}'), { 'inference-header-content-length': '99' }), 400, 'INVALID_REQUEST'],
    ['a header length that is no number', infer(Buffer.from('{}'), { 'inference-header-content-length': 'x' }), 400, 'INVALID_REQUEST'],
    [
      'binary_data_size that does not fit the shape',
      (() => {
        const h = Buffer.from(JSON.stringify({ inputs: [input({ data: undefined, parameters: { binary_data_size: 44 } })] }));
        return infer(Buffer.concat([h, f32(X).subarray(0, 44)]), { 'inference-header-content-length': String(h.length) });
      })(),
      400,
      'INVALID_REQUEST',
    ],
    [
      'binary_data_size past the body',
      (() => {
        const h = Buffer.from(JSON.stringify({ inputs: [input({ data: undefined, parameters: { binary_data_size: 48 } })] }));
        return infer(Buffer.concat([h, f32(X).subarray(0, 40)]), { 'inference-header-content-length': String(h.length) });
      })(),
      400,
      'INVALID_REQUEST',
    ],
    [
      'bytes after the last input',
      (() => {
        const h = Buffer.from(JSON.stringify({ inputs: [input({ data: undefined, parameters: { binary_data_size: 48 } })] }));
        return infer(Buffer.concat([h, f32(X), Buffer.alloc(4)]), { 'inference-header-content-length': String(h.length) });
      })(),
      400,
      'INVALID_REQUEST',
    ],
    [
      'a BYTES image that is no image',
      infer({ inputs: [{ name: 'images', shape: [1], datatype: 'BYTES', data: [Buffer.from('hello').toString('base64')] }] }, {}, '/v2/models/defects/infer'),
      400,
      'INVALID_IMAGE',
    ],
    [
      'an empty BYTES image',
      infer({ inputs: [{ name: 'images', shape: [1], datatype: 'BYTES', data: [''] }] }, {}, '/v2/models/defects/infer'),
      400,
      'EMPTY_BODY',
    ],
    [
      'a GIF',
      infer(
        { inputs: [{ name: 'images', shape: [1], datatype: 'BYTES', data: [Buffer.from('GIF89a0000000000').toString('base64')] }] },
        {},
        '/v2/models/defects/infer',
      ),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
    [
      'an image input of the wrong shape',
      infer({ inputs: [{ name: 'images', shape: [1, 1], datatype: 'BYTES', data: [['']] }] }, {}, '/v2/models/defects/infer'),
      400,
      'INVALID_REQUEST',
    ],
    ['an unknown query parameter', infer({ inputs: [input()] }, {}, '/v2/models/mirror/infer?x=1'), 400, 'INVALID_REQUEST'],
    ['a malformed model name', infer({ inputs: [input()] }, {}, '/v2/models/..bad/infer'), 400, 'INVALID_REQUEST'],
    ['an unknown model', infer({ inputs: [input()] }, {}, '/v2/models/nope/infer'), 404, 'MODEL_NOT_FOUND'],
    ['an unknown version', infer({ inputs: [input()] }, {}, '/v2/models/mirror/versions/7/infer'), 404, 'MODEL_NOT_FOUND'],
    ['a model that FAILED', infer({ inputs: [input()] }, {}, '/v2/models/broken/infer'), 503, 'MODEL_NOT_READY'],
    ['a body over body_limit_bytes', infer(Buffer.alloc(5 * 1024 * 1024, 32)), 413, 'BODY_TOO_LARGE'],
    ['an unknown /v2 route', app.inject({ url: '/v2/models/mirror/stats' }), 404, 'NOT_FOUND'],
  ];
  for (const [what, res, status, code] of cases) {
    const r = await res;
    assert.equal(r.statusCode, status, `${what}: ${r.body}`);
    assertError(r, status, code);
  }
});

test('an image over max_image_pixels is 413 IMAGE_TOO_LARGE', async () => {
  const big = await sharp({ create: { width: 200, height: 200, channels: 3, background: { r: 1, g: 2, b: 3 } } })
    .jpeg()
    .toBuffer();
  const small = await startApp({ models_dir: repo.dir, default_model: 'defects', max_image_pixels: 100 * 100 });
  try {
    const res = await small.inject({
      method: 'POST',
      url: '/v2/models/defects/infer',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ inputs: [{ name: 'images', shape: [1], datatype: 'BYTES', data: [big.toString('base64')] }] }),
    });
    assertError(res, 413, 'IMAGE_TOO_LARGE');
  } finally {
    await small.close();
  }
});

test('with auth on: health is public, metadata needs viewer, errors keep the protocol shape', async () => {
  const secured = await startApp({ models_dir: repo.dir, default_model: 'defects', auth: 'on' }, { wait: false });
  try {
    assert.equal((await secured.inject({ url: '/v2/health/live' })).statusCode, 200);
    assertError(await secured.inject({ url: '/v2/models/mirror' }), 401, 'UNAUTHORIZED');
    assertError(
      await secured.inject({ method: 'POST', url: '/v2/models/mirror/infer', payload: '{}', headers: { 'content-type': 'application/json' } }),
      401,
      'UNAUTHORIZED',
    );
    assertError(await secured.inject({ method: 'POST', url: '/v2/repository/index' }), 401, 'UNAUTHORIZED');
  } finally {
    await secured.close();
  }
});

test('overload: raw tensors hold admission places, so a full model queue answers 503 OVERLOADED with Retry-After', async () => {
  const slowRepo = tempDir('sightline-oip-slow-');
  const size = 160;
  writeModel(
    slowRepo.dir,
    'slow',
    '1',
    buildConstantModel({ output: new Float32Array(6 * 2), outputShape: [6, 2], inputWidth: size, inputHeight: size, slow: true }),
    { ...MIRROR_MANIFEST, input: { width: size, height: size } },
  );
  const busy = await startApp({ models_dir: slowRepo.dir, instances: 1, max_batch_size: 1, max_queue: 1, inference_stall_ms: 0 });
  try {
    const tensor = Buffer.alloc(3 * size * size * 4);
    const header = Buffer.from(
      JSON.stringify({ inputs: [{ name: 'images', shape: [1, 3, size, size], datatype: 'FP32', parameters: { binary_data_size: tensor.length } }] }),
    );
    const send = () =>
      busy.inject({
        method: 'POST',
        url: '/v2/models/slow/infer',
        headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
        payload: Buffer.concat([header, tensor]),
      });
    const answers = await Promise.all([send(), send(), send()]);
    const statuses = answers.map((r) => r.statusCode).sort();
    assert.equal(statuses[0], 200, answers.map((r) => r.body).join('\n'));
    const refused = answers.filter((r) => r.statusCode === 503);
    assert.ok(refused.length >= 1, `statuses ${statuses.join(', ')}`);
    for (const r of refused) assertError(r, 503, 'OVERLOADED');
    const ok = answers.find((r) => r.statusCode === 200)!.json();
    assert.deepEqual(ok.outputs[0].shape, [1, 6, 2]);
    assert.deepEqual(ok.outputs[0].data, new Array(12).fill(0));
  } finally {
    await busy.close();
    slowRepo.cleanup();
  }
});
