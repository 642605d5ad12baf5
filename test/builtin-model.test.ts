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
    const models = (await app.inject('/v1/models')).json().models as { name: string; version: string; state: string; default: boolean }[];
    // The default policy (latest:1) serves the newest version: 2, the robust one; 1 is listed, not loaded.
    assert.deepEqual(
      models.map((m) => [m.name, m.version, m.state, m.default]),
      [
        ['defects', '1', 'UNAVAILABLE', false],
        ['defects', '2', 'READY', true],
      ],
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

/** `training/generate.py` into a temporary directory; answers the directory. */
function generate(t: { after: (fn: () => void) => void }, args: string[]): string {
  const tmp = tempDir();
  t.after(() => tmp.cleanup());
  const gen = spawnSync(PYTHON, ['training/generate.py', '--out', tmp.dir, ...args], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(gen.status, 0, gen.stderr);
  return tmp.dir;
}

test('accuracy guard: on 50 freshly generated held-out images each version reaches mAP50 ≥ 0.80 through the serving pipeline; on blurred images (r = 2) version 2 does too, and beats version 1', async (t) => {
  const probe = spawnSync(PYTHON, ['-c', 'import numpy, PIL'], { encoding: 'utf8' });
  if (!requireOrSkip(t, probe.status === 0, 'python3 with numpy and Pillow (Debian python3-numpy, python3-pil)')) return;
  // Seed 4242 is no training or card seed; --shift blur2 holds the same parts, blurred.
  const plain = readDataset(generate(t, ['--count', '50', '--seed', '4242']));
  const blurred = readDataset(generate(t, ['--count', '50', '--seed', '4242', '--shift', 'blur2']));
  assert.equal(plain.images.length, 50);
  assert.equal(blurred.images.length, 50);
  // Version 1 stays selectable: the policy `all` serves both.
  const app = await startApp({ models_dir: './models', model_version_policy: 'all' });
  t.after(() => app.close());
  const map50 = async (ref: string, dataset: typeof plain) => {
    const { metrics } = await evaluateModel(app.sightline.models.findReady(ref), dataset, { conf: 0.001, iou: 0.7, maxPixels: 40_000_000 });
    return metrics.mean.map50;
  };
  const v1 = await map50('defects:1', plain);
  const v2 = await map50('defects:2', plain);
  const v1Blur = await map50('defects:1', blurred);
  const v2Blur = await map50('defects:2', blurred);
  t.diagnostic(`mAP50 in distribution: v1 ${v1.toFixed(3)}, v2 ${v2.toFixed(3)}; blur r = 2: v1 ${v1Blur.toFixed(3)}, v2 ${v2Blur.toFixed(3)}`);
  assert.ok(v1 >= 0.8, `v1 mAP50 ${v1}`);
  assert.ok(v2 >= 0.8, `v2 mAP50 ${v2}`);
  assert.ok(v2Blur >= 0.8, `v2 mAP50 on blurred images ${v2Blur}`);
  assert.ok(v2Blur > v1Blur, `v2 (${v2Blur}) is the more robust to blur than v1 (${v1Blur})`);
});
