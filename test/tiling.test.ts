import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { ModelRepository, type ReadyModel } from '../src/inference/repository.js';
import { repositoryOptions } from '../src/inference/from-config.js';
import { detect, type DetectOptions, type DetectionOutcome } from '../src/inference/detector.js';
import { letterboxGeometry, unletterboxBox } from '../src/inference/letterbox.js';
import { evaluateModel } from '../src/eval/run.js';
import { readDataset } from '../src/eval/dataset.js';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { solidImage, startApp, tempDir } from './helpers/fixtures.js';

// Tiled inference end to end with real parts: tiny constant ONNX models (every input
// gets the same boxes, in input pixels), the model repository, its batcher and worker
// threads, sharp. Because each tile gets the same local boxes, where every box must
// land in the image is known exactly.

const INPUT = 100;
const LABELS = ['scratch', 'dent'];
const FORMATS = ['yolov8', 'yolov5', 'end2end'] as const;
type Format = (typeof FORMATS)[number];

/** A box in model-input pixels. */
interface Raw {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  classId: number;
  score: number;
}

/** One image's constant output in a format's layout, with one empty slot besides the boxes. */
function outputOf(format: Format, boxes: readonly Raw[]): { output: Float32Array; outputShape: number[] } {
  const A = boxes.length + 1;
  const C = LABELS.length;
  if (format === 'yolov8') {
    const out = new Float32Array((4 + C) * A);
    boxes.forEach((b, a) => {
      out[a] = (b.x1 + b.x2) / 2;
      out[A + a] = (b.y1 + b.y2) / 2;
      out[2 * A + a] = b.x2 - b.x1;
      out[3 * A + a] = b.y2 - b.y1;
      out[(4 + b.classId) * A + a] = b.score;
    });
    return { output: out, outputShape: [4 + C, A] };
  }
  if (format === 'yolov5') {
    const stride = 5 + C;
    const out = new Float32Array(A * stride);
    boxes.forEach((b, a) => {
      out.set([(b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2, b.x2 - b.x1, b.y2 - b.y1, 1], a * stride);
      out[a * stride + 5 + b.classId] = b.score;
    });
    return { output: out, outputShape: [A, stride] };
  }
  const out = new Float32Array(A * 6);
  for (const [k, b] of boxes.entries()) out.set([b.x1, b.y1, b.x2, b.y2, b.score, b.classId], k * 6);
  return { output: out, outputShape: [A, 6] };
}

/** One box well inside every tile. */
const CENTRED: Raw[] = [{ x1: 40, y1: 45, x2: 60, y2: 55, classId: 0, score: 0.9 }];
/**
 * Two pieces of one object on a 180-wide image cut into tiles [0, 100) and [80, 180):
 * tile 0 sees it from x 70 to its right edge, tile 1 from its left edge to local x 50.
 */
const CUT: Raw[] = [
  { x1: 70, y1: 30, x2: 100, y2: 60, classId: 1, score: 0.8 },
  { x1: 0, y1: 30, x2: 50, y2: 60, classId: 1, score: 0.7 },
];

const repo = tempDir('sightline-tiling-');
let models: ModelRepository;
const model = (ref: string): ReadyModel => models.findReady(ref);

before(async () => {
  for (const format of FORMATS) {
    const spec = outputOf(format, CENTRED);
    const onnx = buildConstantModel({ ...spec, inputWidth: INPUT, inputHeight: INPUT });
    const base = { labels: LABELS, format, input: { width: INPUT, height: INPUT }, conf: 0.25, iou: 0.45, verdict: { ng: { scratch: 0.5 } } };
    writeModel(repo.dir, `plain-${format}`, '1', onnx, base);
    writeModel(repo.dir, `tiled-${format}`, '1', onnx, { ...base, tiling: { full_view: false } });
    writeModel(repo.dir, `full-${format}`, '1', onnx, { ...base, tiling: {} });
    const cut = outputOf(format, CUT);
    writeModel(repo.dir, `cut-${format}`, '1', buildConstantModel({ ...cut, inputWidth: INPUT, inputHeight: INPUT }), {
      ...base,
      tiling: { mode: 'on', full_view: false },
    });
  }
  // A queue of 4 admitted requests: a tiled request of 24 tiles still gets in (it is admitted once).
  const config = defaultConfig({ models_dir: repo.dir, intra_op_threads: 1, instances: 2, max_queue: 4 });
  models = new ModelRepository(repositoryOptions(config, createLogger('silent')));
  await models.loadAll();
});

after(async () => {
  await models.close();
  repo.cleanup();
});

const run = (ref: string, image: Buffer, options: Partial<DetectOptions> = {}): Promise<DetectionOutcome> =>
  detect(model(ref), image, { maxPixels: 50_000_000, ...options });

const r2 = (v: number) => Math.round(v * 100) / 100;

const boxesOf = (o: DetectionOutcome) =>
  o.detections
    .map((d) => [d.label, d.box.x1, d.box.y1, d.box.x2, d.box.y2])
    .sort((a, b) => (a[1] as number) - (b[1] as number) || (a[2] as number) - (b[2] as number));

test('tiles at native resolution map every box back to its place on a large non-square image, for every format', async () => {
  // 500 × 300 for a 100 × 100 input: the short side is 3 × the input, so `auto` tiles.
  // Tiles of 100 with at least 20 % overlap: x at 0, 80, …, 400 (6), y at 0, 67, 133, 200 (4).
  const image = await solidImage(500, 300, 'png');
  const xs = [0, 80, 160, 240, 320, 400];
  const ys = [0, 67, 133, 200];
  const expected = ys
    .flatMap((y) => xs.map((x) => ['scratch', x + 40, y + 45, x + 60, y + 55]))
    .sort((a, b) => (a[1] as number) - (b[1] as number) || (a[2] as number) - (b[2] as number));
  for (const format of FORMATS) {
    const outcome = await run(`tiled-${format}`, image);
    assert.deepEqual(outcome.image, { width: 500, height: 300 });
    assert.deepEqual(boxesOf(outcome), expected, format);
    assert.equal(outcome.verdict, 'ng');
    const tiles = outcome.tiles;
    assert.ok(tiles, `${format}: tiled`);
    assert.equal(tiles.count, 24);
    assert.equal(tiles.scale, 1);
    assert.deepEqual(
      tiles.tiles.map((t) => [t.x, t.y, t.width, t.height, t.full_view]),
      ys.flatMap((y) => xs.map((x) => [x, y, 100, 100, false])),
    );
    for (const t of tiles.tiles) {
      assert.ok(t.infer_ms >= 0 && t.batch_size >= 1, JSON.stringify(t));
    }
    assert.ok(outcome.timings_ms.infer > 0);
    assert.equal(model(`tiled-${format}`).batcher.depth, 0, 'every tile left the queue');
  }
});

test('the full view runs beside the tiles and its boxes come back through its own letterbox', async () => {
  const image = await solidImage(500, 300, 'jpeg');
  for (const format of FORMATS) {
    const outcome = await run(`full-${format}`, image);
    assert.equal(outcome.tiles?.count, 25);
    const full = outcome.tiles!.tiles.at(-1)!;
    assert.deepEqual([full.x, full.y, full.width, full.height, full.full_view], [0, 0, 500, 300, true]);
    // 500 × 300 letterboxed into 100 × 100: scale 0.2, 20 px of padding at the top, so
    // the box at 40–60 × 45–55 of the input is 200–300 × 125–175 of the image.
    const boxes = boxesOf(outcome);
    assert.equal(boxes.length, 25, format);
    assert.ok(
      boxes.some((b) => b[1] === 200 && b[2] === 125 && b[3] === 300 && b[4] === 175),
      `${format}: the full view's box: ${JSON.stringify(boxes)}`,
    );
  }
});

test('pieces of one box cut at a tile border are merged into their union, for every format', async () => {
  // 180 × 100 with tiling on: tiles [0, 100) and [80, 180), sharing 20 px.
  const image = await solidImage(180, 100, 'png');
  for (const format of FORMATS) {
    const outcome = await run(`cut-${format}`, image);
    assert.equal(outcome.tiles?.count, 2);
    // Tile 0: the piece 70–100 ends on its inner edge; tile 1: the piece 80–130 starts on
    // its inner edge. They are one object, 70–130. The other two boxes (tile 0's 0–50 and
    // tile 1's 150–180) touch only the image's own border and stay as they are.
    assert.deepEqual(
      boxesOf(outcome),
      [
        ['dent', 0, 30, 50, 60],
        ['dent', 70, 30, 130, 60],
        ['dent', 150, 30, 180, 60],
      ],
      format,
    );
    assert.equal(outcome.detections.find((d) => d.box.x1 === 70)?.score, 0.8, 'the best piece scores the union');
  }
});

test('auto tiles only an image much larger than the input; a model without tiling stays untiled unless asked', async () => {
  const small = await solidImage(200, 150, 'png'); // short side 1.5 × the input
  const large = await solidImage(250, 250, 'png'); // 2.5 ×
  assert.equal((await run('full-yolov8', small)).tiles, undefined);
  const tiled = await run('full-yolov8', large);
  assert.equal(tiled.tiles?.count, 9 + 1); // 3 × 3 tiles (0, 75, 150) and the full view
  // No `tiling` block: never tiled by itself, tiled when the request asks.
  assert.equal((await run('plain-yolov8', large)).tiles, undefined);
  assert.equal((await run('plain-yolov8', large, { tiling: 'auto' })).tiles?.count, 10);
  assert.equal((await run('plain-yolov8', small, { tiling: 'auto' })).tiles, undefined);
  // 200 × 150: x at 0, 50, 100 and y at 0, 50.
  assert.equal((await run('plain-yolov8', small, { tiling: 'on' })).tiles?.count, 6 + 1);
  // A request's `off` wins over the model's `auto`.
  assert.equal((await run('full-yolov8', large, { tiling: 'off' })).tiles, undefined);
});

test('tiling=off answers exactly what the one letterboxed view answers', async () => {
  const image = await solidImage(500, 300, 'jpeg');
  for (const format of FORMATS) {
    const off = await run(`tiled-${format}`, image, { tiling: 'off' });
    const plain = await run(`plain-${format}`, image);
    assert.equal('tiles' in off, false);
    assert.deepEqual(Object.keys(off).sort(), ['detections', 'image', 'timings_ms', 'verdict']);
    assert.deepEqual(off.detections, plain.detections);
    assert.deepEqual([off.image, off.verdict], [plain.image, plain.verdict]);
    // The one view's box, through the letterbox of the whole image.
    const exact = unletterboxBox(CENTRED[0]!, letterboxGeometry(500, 300, INPUT, INPUT));
    const box = { x1: r2(exact.x1), y1: r2(exact.y1), x2: r2(exact.x2), y2: r2(exact.y2) };
    assert.deepEqual(off.detections, [{ label: 'scratch', class_id: 0, score: 0.9, box }]);
  }
});

test('edge resize: tiles of the received copy answer in the original pixels', async () => {
  const image = await solidImage(500, 300, 'png');
  const outcome = await run('tiled-yolov8', image, { sourceSize: { width: 1000, height: 600 } });
  assert.deepEqual(outcome.image, { width: 1000, height: 600 });
  assert.ok(outcome.detections.some((d) => d.box.x1 === 80 && d.box.y1 === 90 && d.box.x2 === 120 && d.box.y2 === 110));
  assert.deepEqual(outcome.tiles?.tiles[1], { ...outcome.tiles!.tiles[1]!, x: 160, y: 0, width: 200, height: 200 });
});

test('sightline eval follows the model tiling, and a request option overrides it', async () => {
  const tmp = tempDir('sightline-tiling-eval-');
  try {
    mkdirSync(join(tmp.dir, 'images'));
    mkdirSync(join(tmp.dir, 'labels'));
    writeFileSync(join(tmp.dir, 'data.yaml'), 'names:\n  0: scratch\n  1: dent\n');
    writeFileSync(join(tmp.dir, 'images', 'frame.png'), await solidImage(500, 300, 'png'));
    // The truth: the 24 boxes the tiles find.
    const rows = [0, 67, 133, 200].flatMap((y) => [0, 80, 160, 240, 320, 400].map((x) => `0 ${(x + 50) / 500} ${(y + 50) / 300} ${20 / 500} ${10 / 300}`));
    writeFileSync(join(tmp.dir, 'labels', 'frame.txt'), rows.join('\n'));
    const dataset = readDataset(tmp.dir);
    const tiled = await evaluateModel(model('tiled-yolov8'), dataset, { conf: 0.001, iou: 0.7, maxPixels: 50_000_000 });
    assert.equal(tiled.metrics.mean.map50, 1);
    assert.equal(tiled.runsPerImage, 24);
    const off = await evaluateModel(model('tiled-yolov8'), dataset, { conf: 0.001, iou: 0.7, maxPixels: 50_000_000, tiling: 'off' });
    assert.equal(off.runsPerImage, 1);
    assert.ok(off.metrics.mean.map50 < 0.1, String(off.metrics.mean.map50));
  } finally {
    tmp.cleanup();
  }
});

test('POST /v1/detect takes tiling=auto|on|off and answers the tiles with their timings', async () => {
  const app = await startApp({ models_dir: repo.dir, default_model: 'plain-end2end', instances: 1 });
  try {
    const payload = await solidImage(500, 300, 'jpeg');
    const headers = { 'content-type': 'image/jpeg' };
    const on = await app.inject({ method: 'POST', url: '/v1/detect?tiling=on', headers, payload });
    assert.equal(on.statusCode, 200, on.body);
    const body = on.json();
    assert.equal(body.tiles.count, 25);
    assert.equal(body.detections.length, 25);
    assert.equal(typeof body.tiles.tiles[0].infer_ms, 'number');
    const off = await app.inject({ method: 'POST', url: '/v1/detect?tiling=off', headers, payload });
    assert.equal(off.statusCode, 200, off.body);
    assert.equal(off.json().tiles, undefined);
    assert.equal(off.json().detections.length, 1);
    const bad = await app.inject({ method: 'POST', url: '/v1/detect?tiling=always', headers, payload });
    assert.equal(bad.statusCode, 400, bad.body);
  } finally {
    await app.close();
  }
});
