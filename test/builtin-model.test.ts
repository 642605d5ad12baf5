import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startApp, tempDir } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { evaluateModel } from '../src/eval/run.js';
import { readDataset } from '../src/eval/dataset.js';

interface SampleLabel {
  verdict: 'ok' | 'ng';
  boxes: { label: string; x1: number; y1: number; x2: number; y2: number }[];
}

test('the built-in model is served by default: NG samples return their defects and "ng", OK samples "ok"', async () => {
  const samples = JSON.parse(readFileSync('samples/labels.json', 'utf8')) as Record<string, SampleLabel>;
  const app = await startApp({ models_dir: './models' });
  try {
    const models = (await app.inject('/v1/models')).json().models as { name: string; state: string; default: boolean }[];
    assert.deepEqual(
      models.map((m) => [m.name, m.state, m.default]),
      [['defects', 'READY', true]],
    );
    let ng = 0;
    for (const [file, expected] of Object.entries(samples)) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/detect?line=samples',
        headers: { 'content-type': 'image/jpeg' },
        payload: await readFile(join('samples', file)),
      });
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json() as { verdict: string; detections: { label: string }[] };
      assert.equal(body.verdict, expected.verdict, `${file}: ${JSON.stringify(body.detections)}`);
      if (expected.verdict === 'ng') {
        ng++;
        const found = new Set(body.detections.map((d) => d.label));
        assert.ok(
          expected.boxes.some((b) => found.has(b.label)),
          `${file}: none of its defects found`,
        );
      }
    }
    assert.ok(ng > 0 && ng < Object.keys(samples).length, 'samples hold both verdicts');
  } finally {
    await app.close();
  }
});

// Debian's interpreter: it has python3-numpy and python3-pil; a pyenv `python3` earlier in PATH may not.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

test('accuracy guard: on 50 freshly generated held-out images the serving pipeline reaches mAP50 ≥ 0.80', async (t) => {
  const probe = spawnSync(PYTHON, ['-c', 'import numpy, PIL'], { encoding: 'utf8' });
  if (!requireOrSkip(t, probe.status === 0, 'python3 with numpy and Pillow (Debian python3-numpy, python3-pil)')) return;
  const tmp = tempDir();
  try {
    const gen = spawnSync(PYTHON, ['training/generate.py', '--out', tmp.dir, '--count', '50', '--seed', '4242'], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(gen.status, 0, gen.stderr);
    const app = await startApp({ models_dir: './models' });
    try {
      const model = app.sightline.models.findReady('defects');
      const dataset = readDataset(tmp.dir);
      assert.equal(dataset.images.length, 50);
      const { metrics } = await evaluateModel(model, dataset, { conf: 0.001, iou: 0.7, maxPixels: 40_000_000 });
      t.diagnostic(`mAP50 ${metrics.mean.map50.toFixed(3)} mAP50-95 ${metrics.mean.map50_95.toFixed(3)}`);
      assert.ok(metrics.mean.map50 >= 0.8, `mAP50 ${metrics.mean.map50}`);
    } finally {
      await app.close();
    }
  } finally {
    tmp.cleanup();
  }
});
