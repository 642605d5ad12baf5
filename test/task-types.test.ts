import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { defaultConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { ModelRepository, type ReadyModel } from '../src/inference/repository.js';
import { repositoryOptions } from '../src/inference/from-config.js';
import { detect, type DetectOptions } from '../src/inference/detector.js';
import { taskFromOutputs } from '../src/inference/task.js';
import { classProbabilities } from '../src/inference/postprocess/classify.js';
import { decodeRle, encodeRle } from '../src/inference/postprocess/segment.js';
import type { Detection, Mask } from '../src/protocol/results.js';
import { evaluateClassifier, readClassDataset } from '../src/eval/classify.js';
import { readDataset } from '../src/eval/dataset.js';
import { evaluateModel } from '../src/eval/run.js';
import { maskIou, rasterizePolygon } from '../src/eval/masks.js';
import { buildGraphModel, ONNX_ELEM, writeModel } from './helpers/onnx-builder.js';
import { solidImage, startApp, tempDir } from './helpers/fixtures.js';
import { StreamClient, type Of } from './helpers/stream-client.js';

// Classification and segmentation models end to end (docs/models.md#task-types): tiny
// ONNX models whose outputs are constants (every image gets the same), through the model
// repository, its worker threads and batcher, sharp, and the HTTP server. The outputs are
// chosen so that the classes, boxes and mask areas are known exactly.

/** images [N,3,H,W] → each named output [N, ...shape] holding `values` for every image. */
function constantOutputsModel(inputWidth: number, inputHeight: number, outputs: { name: string; shape: number[]; values: Float32Array }[]): Uint8Array {
  const nodes: object[] = [
    { op_type: 'Shape', input: ['images'], output: ['shape'] },
    { op_type: 'Slice', input: ['shape', 'zero', 'one'], output: ['batch'] },
  ];
  const floats: Record<string, { dims: number[]; values: number[] }> = {};
  const int64s: Record<string, number[]> = { zero: [0], one: [1] };
  for (const o of outputs) {
    nodes.push(
      { op_type: 'Concat', input: ['batch', `${o.name}_rest`], output: [`${o.name}_target`], attribute: [{ name: 'axis', i: 0, type: 2 }] },
      { op_type: 'Expand', input: [`${o.name}_constant`, `${o.name}_target`], output: [o.name] },
    );
    int64s[`${o.name}_rest`] = o.shape;
    floats[`${o.name}_constant`] = { dims: [1, ...o.shape], values: [...o.values] };
  }
  return buildGraphModel({
    nodes,
    floats,
    int64s,
    inputs: [{ name: 'images', elemType: ONNX_ELEM.FLOAT, dims: ['batch', 3, inputHeight, inputWidth] }],
    outputs: outputs.map((o) => ({ name: o.name, elemType: ONNX_ELEM.FLOAT, dims: ['batch', ...o.shape] })),
  });
}

// --- classification: [N, C] ---

const CLS_LABELS = ['ok', 'scratch', 'dent', 'crack'];
/** Probabilities already (YOLOv8-cls exports its softmax): answered as they are. */
const PROBS = [0.1, 0.6, 0.05, 0.25];
/** Raw logits (a value outside [0, 1]): softmax applied. */
const LOGITS = [2, 0, 1, -1];

// --- segmentation: YOLOv8-seg, [N, 4+C+M, A] and [N, M, 80, 80] for a 320 × 320 input ---

const SEG_INPUT = 320;
const SEG_LABELS = ['part', 'hole'];
const M = 2;
const PROTO = 80;
/**
 * Prototype 0 is +1 on the columns 10–29 of the 80 × 80 grid and −1 elsewhere;
 * prototype 1 is +1 on the rows 30–39 and −1 elsewhere. Each varies along one axis
 * only, so the mask (logit > 0, bilinear) is a band with edges half way between cell
 * centres: columns 10–29 are input x 40–120, rows 30–39 input y 120–160.
 */
function prototypes(): Float32Array {
  const out = new Float32Array(M * PROTO * PROTO);
  for (let v = 0; v < PROTO; v++) {
    for (let u = 0; u < PROTO; u++) {
      out[v * PROTO + u] = u >= 10 && u < 30 ? 1 : -1;
      out[PROTO * PROTO + v * PROTO + u] = v >= 30 && v < 40 ? 1 : -1;
    }
  }
  return out;
}

/** Anchors in input pixels: a (part, prototype 0), b (hole, prototype 1), c below conf, and an empty one. */
const SEG_ANCHORS = [
  { cx: 130, cy: 125, w: 140, h: 50, classId: 0, score: 0.9, coeffs: [1, 0] }, // a: input x 60–200, y 100–150
  { cx: 120, cy: 130, w: 40, h: 40, classId: 1, score: 0.8, coeffs: [0, 1] }, // b: input x 100–140, y 110–150
  { cx: 50, cy: 50, w: 10, h: 10, classId: 0, score: 0.1, coeffs: [1, 1] }, // c: below conf 0.25
];

function segBoxes(): Float32Array {
  const A = SEG_ANCHORS.length + 1;
  const rows = 4 + SEG_LABELS.length + M;
  const out = new Float32Array(rows * A);
  SEG_ANCHORS.forEach((b, a) => {
    out[a] = b.cx;
    out[A + a] = b.cy;
    out[2 * A + a] = b.w;
    out[3 * A + a] = b.h;
    out[(4 + b.classId) * A + a] = b.score;
    for (let k = 0; k < M; k++) out[(4 + SEG_LABELS.length + k) * A + a] = b.coeffs[k]!;
  });
  return out;
}

/**
 * A 640 × 360 image in the 320 × 320 input: scale 0.5, 320 × 180 at y 70 (padding
 * 70 above and below). Original = (input − pad) × 2.
 *  a: box input x 60–200, y 100–150 → x 120–400, y 60–160. Band of prototype 0:
 *     input x 40–120 → x 80–240. Mask: x 120–240 (120 px) × y 60–160 (100 px) = 12 000.
 *  b: box input x 100–140, y 110–150 → x 200–280, y 80–160. Band of prototype 1:
 *     input y 120–160 → y 100–180. Mask: x 200–280 (80 px) × y 100–160 (60 px) = 4 800.
 */
const EXPECTED_SEG = [
  { label: 'part', class_id: 0, score: 0.9, box: { x1: 120, y1: 60, x2: 400, y2: 160 }, area_px: 12_000 },
  { label: 'hole', class_id: 1, score: 0.8, box: { x1: 200, y1: 80, x2: 280, y2: 160 }, area_px: 4_800 },
];

/** The mask as a rectangle of its pixels [x1, y1, x2, y2] in the image, or null when not one rectangle. */
function maskRectangle(mask: Mask): [number, number, number, number] | null {
  const bits = decodeRle(mask);
  let x1 = Number.POSITIVE_INFINITY;
  let y1 = Number.POSITIVE_INFINITY;
  let x2 = -1;
  let y2 = -1;
  let count = 0;
  for (let j = 0; j < mask.height; j++) {
    for (let i = 0; i < mask.width; i++) {
      if (!bits[j * mask.width + i]) continue;
      count++;
      x1 = Math.min(x1, i);
      y1 = Math.min(y1, j);
      x2 = Math.max(x2, i + 1);
      y2 = Math.max(y2, j + 1);
    }
  }
  if (count !== (x2 - x1) * (y2 - y1)) return null;
  return [mask.x + x1, mask.y + y1, mask.x + x2, mask.y + y2];
}

function checkSegmentation(detections: readonly Detection[], where: string): void {
  assert.deepEqual(
    detections.map(({ mask: _, ...d }) => d),
    EXPECTED_SEG,
    where,
  );
  const [a, b] = detections;
  // The RLE covers the whole pixels holding the box and sums to its area.
  assert.deepEqual([a!.mask!.x, a!.mask!.y, a!.mask!.width, a!.mask!.height], [120, 60, 280, 100], where);
  assert.equal(
    a!.mask!.counts.reduce((s, c) => s + c, 0),
    280 * 100,
    where,
  );
  assert.equal(
    a!.mask!.counts.filter((_, i) => i % 2 === 1).reduce((s, c) => s + c, 0),
    12_000,
    where,
  );
  // Row-major runs: each of the 100 rows is 120 mask pixels then 160 background; the first run (background) is empty.
  assert.deepEqual(a!.mask!.counts.slice(0, 5), [0, 120, 160, 120, 160], where);
  assert.equal(a!.mask!.counts.length, 201, where);
  assert.deepEqual(maskRectangle(a!.mask!), [120, 60, 240, 160], where);
  assert.deepEqual(maskRectangle(b!.mask!), [200, 100, 280, 160], where);
}

const repo = tempDir('sightline-tasks-');
let models: ModelRepository;
const model = (ref: string): ReadyModel => models.findReady(ref);
const run = (ref: string, image: Buffer, options: Partial<DetectOptions> = {}) => detect(model(ref), image, { maxPixels: 50_000_000, ...options });

before(async () => {
  const cls = (values: number[]) => constantOutputsModel(64, 64, [{ name: 'output0', shape: [CLS_LABELS.length], values: new Float32Array(values) }]);
  const clsManifest = { labels: CLS_LABELS, verdict: { ng: { crack: 0.2 } } };
  writeModel(repo.dir, 'cls', '1', cls(PROBS), clsManifest);
  writeModel(repo.dir, 'cls-logits', '1', cls(LOGITS), { ...clsManifest, task: 'classify', verdict: { ng: { crack: 0.2 } } });
  const seg = constantOutputsModel(SEG_INPUT, SEG_INPUT, [
    { name: 'output0', shape: [4 + SEG_LABELS.length + M, SEG_ANCHORS.length + 1], values: segBoxes() },
    { name: 'output1', shape: [M, PROTO, PROTO], values: prototypes() },
  ]);
  writeModel(repo.dir, 'seg', '1', seg, { labels: SEG_LABELS, conf: 0.25, verdict: { ng: { hole: 0.5 } } });
  // The same graph declared a classifier: its outputs do not fit, and the load says why.
  writeModel(repo.dir, 'seg-as-cls', '1', seg, { labels: SEG_LABELS, task: 'classify' });
  const config = defaultConfig({ models_dir: repo.dir, intra_op_threads: 1, instances: 1 });
  models = new ModelRepository(repositoryOptions(config, createLogger('silent')));
  await models.loadAll();
});

after(async () => {
  await models.close();
  repo.cleanup();
});

test('the task is read from the outputs', () => {
  assert.equal(taskFromOutputs([{ shape: ['batch', 4] }]), 'classify');
  assert.equal(taskFromOutputs([{ shape: ['batch', 38, 8400] }, { shape: ['batch', 32, 160, 160] }]), 'segment');
  assert.equal(taskFromOutputs([{ shape: ['batch', 84, 8400] }]), 'detect');
  // More outputs than YOLOv8-seg's two: a detector with extra outputs, not a segmentation model.
  assert.equal(taskFromOutputs([{ shape: [1, 6, 2] }, { shape: [1, 3, 2, 2] }, { shape: [4] }]), 'detect');
  assert.equal(model('cls').task, 'classify');
  assert.equal(model('seg').task, 'segment');
  const failed = models.list().find((e) => e.name === 'seg-as-cls');
  assert.equal(failed?.state, 'FAILED');
  assert.match(failed?.reason ?? '', /does not fit a classifier with 2 labels/);
});

test('a classifier answers its classes, most probable first, and no boxes', async () => {
  const outcome = await run('cls', await solidImage(640, 360, 'png'));
  assert.deepEqual(outcome.detections, []);
  assert.deepEqual(outcome.classes, [
    { label: 'scratch', class_id: 1, score: 0.6 },
    { label: 'crack', class_id: 3, score: 0.25 },
    { label: 'ok', class_id: 0, score: 0.1 },
    { label: 'dent', class_id: 2, score: 0.05 },
  ]);
  // crack is not the top class, but it reaches its verdict threshold (0.2).
  assert.equal(outcome.verdict, 'ng');
  const top2 = await run('cls', await solidImage(100, 100, 'jpeg'), { topK: 2 });
  assert.deepEqual(
    top2.classes?.map((c) => c.label),
    ['scratch', 'crack'],
  );
});

test('logits get a softmax; probabilities are taken as they are', async () => {
  const exps = LOGITS.map((v) => Math.exp(v - 2));
  const sum = exps.reduce((a, b) => a + b, 0);
  const expected = exps.map((e) => Math.round((e / sum) * 1e4) / 1e4);
  const outcome = await run('cls-logits', await solidImage(64, 64, 'png'));
  assert.deepEqual(
    outcome.classes?.map((c) => [c.label, c.score]),
    [
      ['ok', expected[0]],
      ['dent', expected[2]],
      ['scratch', expected[1]],
      ['crack', expected[3]],
    ],
  );
  // crack: 0.032 < 0.2.
  assert.equal(outcome.verdict, 'ok');
  assert.deepEqual([...classProbabilities(new Float32Array([0, 1, 0.5]), [1, 3], 0)], [0, 1, 0.5]);
});

test('a segmentation model answers boxes and exact masks in original pixels of a non-square image', async () => {
  const outcome = await run('seg', await solidImage(640, 360, 'png'));
  assert.deepEqual(outcome.image, { width: 640, height: 360 });
  assert.equal(outcome.classes, undefined);
  checkSegmentation(outcome.detections, 'seg');
  assert.equal(outcome.verdict, 'ng');
  const bare = await run('seg', await solidImage(640, 360, 'png'), { masks: 'none' });
  assert.deepEqual(bare.detections, EXPECTED_SEG);
  // max_det bounds the masks computed as it bounds the boxes.
  const one = await run('seg', await solidImage(640, 360, 'png'), { maxDetections: 1 });
  assert.deepEqual(
    one.detections.map((d) => d.area_px),
    [12_000],
  );
});

test('sightline eval of a classifier: accuracy and per-class precision and recall on class folders', async () => {
  // The model always answers scratch (0.6), then crack, ok, dent.
  const data = tempDir('sightline-cls-eval-');
  try {
    const png = await solidImage(48, 32, 'png');
    for (const [label, count] of [
      ['scratch', 2],
      ['crack', 1],
      ['ok', 1],
    ] as const) {
      mkdirSync(join(data.dir, label));
      for (let i = 0; i < count; i++) writeFileSync(join(data.dir, label, `${i}.png`), png);
    }
    const dataset = readClassDataset(data.dir);
    assert.deepEqual(dataset.classes, ['crack', 'ok', 'scratch']);
    const { metrics } = await evaluateClassifier(model('cls'), dataset, { maxPixels: 50_000_000 });
    assert.equal(metrics.images, 4);
    assert.equal(metrics.accuracy, 0.5);
    assert.equal(metrics.top5_accuracy, 1);
    assert.deepEqual(
      metrics.classes.map((c) => [c.label, c.instances, c.precision, c.recall]),
      [
        ['ok', 1, 0, 0],
        ['scratch', 2, 0.5, 1],
        ['dent', 0, 0, 0],
        ['crack', 1, 0, 0],
      ],
    );
    // Means over the classes that have images (ok, scratch, crack).
    assert.deepEqual(metrics.mean, { precision: 0.5 / 3, recall: 1 / 3 });
    mkdirSync(join(data.dir, 'rust'));
    await assert.rejects(evaluateClassifier(model('cls'), readClassDataset(data.dir), { maxPixels: 50_000_000 }), /"rust" name no label/);
  } finally {
    data.cleanup();
  }
});

test('sightline eval of a segmentation model: mask mAP from YOLO-seg polygons beside box mAP', async () => {
  const data = tempDir('sightline-seg-eval-');
  try {
    mkdirSync(join(data.dir, 'images'));
    mkdirSync(join(data.dir, 'labels'));
    writeFileSync(join(data.dir, 'images', 'a.png'), await solidImage(640, 360, 'png'));
    const poly = (pts: number[]) => pts.map((v, i) => v / (i % 2 === 0 ? 640 : 360)).join(' ');
    writeFileSync(
      join(data.dir, 'labels', 'a.txt'),
      [
        // part: exactly the mask of detection a (its box is wider: box IoU 12 000 / 28 000 < 0.5).
        `0 ${poly([120, 60, 240, 60, 240, 160, 120, 160])}`,
        // hole: the box of detection b (its mask is the lower 60 of 80 rows: mask IoU 0.75).
        `1 ${poly([200, 80, 280, 80, 280, 160, 200, 160])}`,
      ].join('\n'),
    );
    const dataset = readDataset(data.dir);
    assert.deepEqual(
      dataset.images[0]!.labels.map((l) => [l.classId, Math.round(l.cx * 640), Math.round(l.w * 640), Math.round(l.h * 360)]),
      [
        [0, 180, 120, 100],
        [1, 240, 80, 80],
      ],
    );
    const run = await evaluateModel(model('seg'), dataset, { conf: 0.001, iou: 0.7, maxPixels: 50_000_000 });
    assert.deepEqual(
      run.metrics.classes.map((c) => [c.label, c.ap50, c.ap50_95]),
      [
        ['part', 0, 0],
        ['hole', 1, 1],
      ],
    );
    const masks = run.maskMetrics;
    assert.ok(masks, 'mask metrics for a segmentation model with polygon labels');
    assert.deepEqual(
      masks.classes.map((c) => [c.label, c.ap50, Math.round(c.ap50_95 * 1000) / 1000]),
      [
        ['part', 1, 1],
        ['hole', 1, 0.6],
      ],
    );
  } finally {
    data.cleanup();
  }
});

test('polygon rasterisation counts the pixels whose centre lies inside', () => {
  const square = rasterizePolygon([1, 1, 4, 1, 4, 3, 1, 3], 10, 10);
  assert.deepEqual([square.x, square.y, square.width, square.height, square.area], [1, 1, 3, 2, 6]);
  // A right triangle over 4 × 4 pixels: centres with x + y < 4, 3 + 2 + 1 (those on the diagonal lie on the edge: out).
  const triangle = rasterizePolygon([0, 0, 4, 0, 0, 4], 10, 10);
  assert.equal(triangle.area, 3 + 2 + 1);
  assert.equal(maskIou(square, square), 1);
  assert.equal(maskIou(square, rasterizePolygon([1, 1, 4, 1, 4, 2, 1, 2], 10, 10)), 0.5);
  // Clipped to the image.
  assert.equal(rasterizePolygon([-5, -5, 20, -5, 20, 20, -5, 20], 10, 10).area, 100);
});

test('RLE round trip, starting with a mask pixel', () => {
  const bits = new Uint8Array([1, 1, 0, 0, 0, 1, 0, 1]);
  const rle = encodeRle({ x: 3, y: 4, width: 4, height: 2, bits, area: 4 });
  assert.deepEqual(rle, { x: 3, y: 4, width: 4, height: 2, counts: [0, 2, 3, 1, 1, 1] });
  assert.deepEqual(decodeRle(rle), bits);
});

test('over HTTP: /v1/detect, jobs, GET /v1/models and the v2 raw path carry classes and masks', async () => {
  const app = await startApp({ models_dir: repo.dir, default_model: 'seg', instances: 1 });
  try {
    const headers = { 'content-type': 'image/png' };
    const image = await solidImage(640, 360, 'png');
    // A real socket for the sync route.
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const res = await fetch(`http://127.0.0.1:${port}/v1/detect?model=seg`, { method: 'POST', headers, body: new Uint8Array(image) });
    assert.equal(res.status, 200);
    const seg = (await res.json()) as { detections: Detection[]; verdict: string };
    checkSegmentation(seg.detections, 'POST /v1/detect');
    const bare = await app.inject({ method: 'POST', url: '/v1/detect?model=seg&masks=none', headers, payload: image });
    assert.deepEqual(bare.json().detections, EXPECTED_SEG);

    const cls = await app.inject({ method: 'POST', url: '/v1/detect?model=cls&top_k=2', headers, payload: image });
    assert.equal(cls.statusCode, 200, cls.body);
    assert.deepEqual(cls.json().classes, [
      { label: 'scratch', class_id: 1, score: 0.6 },
      { label: 'crack', class_id: 3, score: 0.25 },
    ]);
    assert.deepEqual(cls.json().detections, []);
    assert.equal(cls.json().verdict, 'ng');
    for (const bad of ['top_k=0', 'top_k=101', 'masks=polygons']) {
      const refused = await app.inject({ method: 'POST', url: `/v1/detect?model=cls&${bad}`, headers, payload: image });
      assert.equal(refused.statusCode, 400, bad);
    }

    // A job: the classes and masks are kept by the result store.
    for (const [query, check] of [
      ['model=cls&top_k=1', (r: { classes?: unknown }) => assert.deepEqual(r.classes, [{ label: 'scratch', class_id: 1, score: 0.6 }])],
      ['model=seg', (r: { detections: Detection[] }) => checkSegmentation(r.detections, 'job')],
    ] as const) {
      const submitted = await app.inject({ method: 'POST', url: `/v1/jobs?${query}`, headers, payload: image });
      assert.equal(submitted.statusCode, 202, submitted.body);
      const { job_id } = submitted.json();
      let job: { state: string; result?: never } = { state: 'queued' };
      for (let i = 0; i < 200 && job.state !== 'done'; i++) {
        await new Promise((r) => setTimeout(r, 25));
        job = (await app.inject(`/v1/jobs/${job_id}`)).json();
      }
      assert.equal(job.state, 'done', JSON.stringify(job));
      (check as (r: never) => void)(job.result!);
      (check as (r: never) => void)((await app.inject(`/v1/results/${job_id}`)).json());
    }

    // A stream frame's header takes the same options.
    const client = await StreamClient.open(app, '?line=cell-1');
    try {
      client.sendFrame({ id: 'c-1', model: 'cls', top_k: 1 }, image);
      client.sendFrame({ id: 's-1', model: 'seg' }, image);
      await client.until(() => client.answerFor('c-1') && client.answerFor('s-1'), 15_000, 'both answers');
      const c1 = client.answerFor('c-1') as Of<'result'>;
      assert.equal(c1.type, 'result', JSON.stringify(c1));
      assert.deepEqual(c1.result.classes, [{ label: 'scratch', class_id: 1, score: 0.6 }]);
      const s1 = client.answerFor('s-1') as Of<'result'>;
      assert.equal(s1.type, 'result', JSON.stringify(s1));
      checkSegmentation(s1.result.detections, 'stream');
    } finally {
      client.ws.close();
    }

    const listed = (await app.inject('/v1/models')).json().models as { name: string; task: string; format?: string }[];
    assert.deepEqual(
      listed.filter((m) => m.name === 'cls' || m.name === 'seg').map((m) => [m.name, m.task, m.format]),
      [
        ['cls', 'classify', undefined],
        ['seg', 'segment', 'yolov8'],
      ],
    );

    // Open Inference Protocol, raw tensors: both outputs of the segmentation model come back by name.
    const infer = await app.inject({
      method: 'POST',
      url: '/v2/models/seg/infer',
      payload: { inputs: [{ name: 'images', shape: [1, 3, SEG_INPUT, SEG_INPUT], datatype: 'FP32', data: new Array(3 * SEG_INPUT * SEG_INPUT).fill(0) }] },
    });
    assert.equal(infer.statusCode, 200, infer.body.slice(0, 500));
    const outputs = infer.json().outputs as { name: string; shape: number[]; data: number[] }[];
    assert.deepEqual(
      outputs.map((o) => [o.name, o.shape]),
      [
        ['output0', [1, 4 + SEG_LABELS.length + M, SEG_ANCHORS.length + 1]],
        ['output1', [1, M, PROTO, PROTO]],
      ],
    );
    assert.deepEqual(outputs[1]!.data.slice(0, 12), [...prototypes().slice(0, 12)]);
    // An encoded image through v2: the detections document carries the masks, or the classes.
    const doc = async (name: string) => {
      const r = await app.inject({
        method: 'POST',
        url: `/v2/models/${name}/infer`,
        payload: { inputs: [{ name: 'images', shape: [1], datatype: 'BYTES', data: [image.toString('base64')] }], outputs: [{ name: 'detections' }] },
      });
      assert.equal(r.statusCode, 200, r.body.slice(0, 500));
      return JSON.parse(r.json().outputs[0].data[0]);
    };
    checkSegmentation((await doc('seg')).detections, 'v2 image');
    assert.equal((await doc('cls')).classes[0].label, 'scratch');
  } finally {
    await app.close();
  }
});
