import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { INPUT, LABELS, manifest, solidImage, tempDir, writeDecoderModels, yolov8Output, RAW_BOXES } from './helpers/fixtures.js';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';

/** YOLO txt row for a pixel box on a 1280×720 image. */
const row = (classId: number, x1: number, y1: number, x2: number, y2: number) =>
  `${classId} ${(x1 + x2) / 2 / 1280} ${(y1 + y2) / 2 / 720} ${(x2 - x1) / 1280} ${(y2 - y1) / 720}`;

test('sightline eval reports per-class AP through the serving pipeline and writes JSON', async () => {
  const tmp = tempDir();
  try {
    const repo = join(tmp.dir, 'models');
    writeDecoderModels(repo);
    const data = join(tmp.dir, 'data');
    mkdirSync(join(data, 'images'), { recursive: true });
    mkdirSync(join(data, 'labels'), { recursive: true });
    // data.yaml orders classes differently from the model: mapping is by name.
    writeFileSync(join(data, 'data.yaml'), 'path: .\nval: images\nnames:\n  0: dent\n  1: scratch\n  2: crack\n');
    const image = await solidImage(1280, 720, 'jpeg');
    // The constant model finds scratch, dent and crack at fixed places on every 1280×720 image.
    writeFileSync(join(data, 'images', 'exact.jpg'), image);
    writeFileSync(join(data, 'labels', 'exact.txt'), [row(1, 540, 310, 740, 410), row(0, 544, 306, 744, 406), row(2, 1100, 420, 1280, 620)].join('\n'));
    // Here the scratch truth is elsewhere: the scratch prediction is a false positive and the truth a miss.
    writeFileSync(join(data, 'images', 'moved.jpg'), image);
    writeFileSync(join(data, 'labels', 'moved.txt'), [row(1, 10, 10, 60, 60), row(0, 544, 306, 744, 406), row(2, 1100, 420, 1280, 620)].join('\n'));
    const out = join(tmp.dir, 'report.json');
    const res = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'eval', '--model', 'v8:1', '--data', data, '--models-dir', repo, '--json', out, '--intra-op-threads', '1'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /scratch/);
    const report = JSON.parse(readFileSync(out, 'utf8'));
    const byLabel = Object.fromEntries(report.classes.map((c: { label: string }) => [c.label, c]));
    assert.equal(byLabel.dent.ap50, 1);
    assert.equal(byLabel.crack.ap50_95, 1);
    assert.equal(byLabel.scratch.instances, 2);
    // Scratch: two predictions of equal score, one true: AP 51/101 at every IoU.
    assert.ok(Math.abs(byLabel.scratch.ap50 - 51 / 101) < 1e-9, String(byLabel.scratch.ap50));
    assert.equal(report.images, 2);
    const missing = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'eval', '--data', data], { encoding: 'utf8' });
    assert.equal(missing.status, 2);
  } finally {
    tmp.cleanup();
  }
});

test("sightline eval counts escapes and false rejects at the model's own verdict thresholds", async () => {
  const tmp = tempDir();
  try {
    const repo = join(tmp.dir, 'models');
    writeDecoderModels(repo);
    // The same constant detections (scratch at 0.9) under a verdict that needs 0.95: always OK.
    const onnx = buildConstantModel({ output: yolov8Output(), outputShape: [4 + LABELS.length, RAW_BOXES.length + 1], inputWidth: INPUT, inputHeight: INPUT });
    writeModel(repo, 'lenient', '1', onnx, manifest({ format: 'yolov8', verdict: { ng: { scratch: 0.95 } } }));
    // Every class score halved (4 box rows, then one row per class).
    const halved = yolov8Output();
    for (let i = 4 * (RAW_BOXES.length + 1); i < halved.length; i++) halved[i] = halved[i]! * 0.5;
    const dimOnnx = buildConstantModel({ output: halved, outputShape: [4 + LABELS.length, RAW_BOXES.length + 1], inputWidth: INPUT, inputHeight: INPUT });
    writeModel(repo, 'dim', '1', dimOnnx, manifest({ format: 'yolov8', verdict: { ng: { scratch: 0.95 } } }));
    const data = join(tmp.dir, 'data');
    mkdirSync(join(data, 'images'), { recursive: true });
    mkdirSync(join(data, 'labels'), { recursive: true });
    const image = await solidImage(1280, 720, 'jpeg');
    writeFileSync(join(data, 'images', 'defect.jpg'), image);
    writeFileSync(join(data, 'labels', 'defect.txt'), row(0, 544, 306, 744, 406));
    writeFileSync(join(data, 'images', 'clean.jpg'), image);
    writeFileSync(join(data, 'labels', 'clean.txt'), '');
    const verdicts = (model: string) => {
      const out = join(tmp.dir, `${model}.json`);
      const res = spawnSync(
        process.execPath,
        ['--import', 'tsx', 'src/cli/main.ts', 'eval', '--model', model, '--data', data, '--models-dir', repo, '--json', out, '--intra-op-threads', '1'],
        { encoding: 'utf8', timeout: 60_000 },
      );
      assert.equal(res.status, 0, res.stderr);
      return { stdout: res.stdout, counts: JSON.parse(readFileSync(out, 'utf8')).verdicts };
    };
    // Scratch 0.9 ≥ 0.5: NG everywhere, so the clean image is a false reject and nothing escapes.
    const strict = verdicts('v8:1');
    assert.deepEqual(strict.counts, { with_defects: 1, escapes: 0, defect_free: 1, false_rejects: 1 });
    assert.match(strict.stdout, /escapes 0\/1 \(0\.0 %\) of images with defects, false rejects 1\/1 \(100\.0 %\)/);
    // OK everywhere: the defect escapes, the clean image passes.
    assert.deepEqual(verdicts('lenient:1').counts, { with_defects: 1, escapes: 1, defect_free: 1, false_rejects: 0 });
    // The sweep puts every NG label (scratch) at each threshold in turn: the halved scores
    // (best scratch 0.45) are NG up to 0.4 and OK at 0.5, whatever model.json says (0.95).
    const dim = verdicts('dim:1');
    assert.deepEqual(dim.counts, { with_defects: 1, escapes: 1, defect_free: 1, false_rejects: 0 });
    const curve = JSON.parse(readFileSync(join(tmp.dir, 'dim:1.json'), 'utf8')).verdict_curve as {
      threshold: number;
      escapes: number;
      false_rejects: number;
    }[];
    assert.deepEqual(
      curve.map((p) => [p.threshold, p.escapes, p.false_rejects]),
      [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5].map((t) => (t < 0.45 ? [t, 0, 1] : [t, 1, 0])),
    );
    assert.match(dim.stdout, /\n {4}0\.40 +0\/1 \(0\.0 %\) +1\/1 \(100\.0 %\)\n {4}0\.50 +1\/1 \(100\.0 %\) +0\/1 \(0\.0 %\)\n/);
  } finally {
    tmp.cleanup();
  }
});

test('sightline eval on a missing or non-dataset folder exits 2 with one line, no stack trace', () => {
  const tmp = tempDir();
  try {
    for (const [data, why] of [
      [join(tmp.dir, 'no-such-folder'), /no such folder/],
      [tmp.dir, /has no images\/ folder/],
    ] as const) {
      const res = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'eval', '--model', 'defects', '--data', data], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(res.status, 2, res.stderr);
      assert.equal(res.stderr.split('\n').filter(Boolean).length, 1, res.stderr);
      assert.match(res.stderr, new RegExp(`^sightline eval: --data ${data.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
      assert.match(res.stderr, why);
      assert.doesNotMatch(res.stderr, /\n\s+at /);
    }
  } finally {
    tmp.cleanup();
  }
});

test('sightline eval shows its progress on stderr', async () => {
  const tmp = tempDir();
  try {
    const repo = join(tmp.dir, 'models');
    writeDecoderModels(repo);
    const data = join(tmp.dir, 'data');
    mkdirSync(join(data, 'images'), { recursive: true });
    const image = await solidImage(64, 64, 'jpeg');
    for (let i = 0; i < 3; i++) writeFileSync(join(data, 'images', `${i}.jpg`), image);
    const { Progress } = await import('../src/cli/eval.js');
    const { readDataset } = await import('../src/eval/dataset.js');
    let text = '';
    const write = (s: string) => {
      text += s;
      return true;
    };
    const out = { isTTY: false, write } as unknown as NodeJS.WriteStream;
    const progress = new Progress(3, out, 0);
    const tracked = progress.track(readDataset(data));
    assert.equal(tracked.images.length, 3);
    // Each image counts once, when its labels are read (after its detection).
    void tracked.images[0]!.labels;
    void tracked.images[1]!.labels;
    assert.match(text, /^eval: 1\/3 images \(33%, [\d.]+ img\/s, \d+ s left\)\neval: 2\/3 images \(66%, /);
  } finally {
    tmp.cleanup();
  }
});
