import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { solidImage, tempDir, writeDecoderModels } from './helpers/fixtures.js';

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
