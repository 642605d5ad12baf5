import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { INPUT, LABELS, manifest, solidImage, startApp, tempDir, yolov8Output, RAW_BOXES } from './helpers/fixtures.js';

const v8Model = (slow = false) =>
  buildConstantModel({ output: yolov8Output(), outputShape: [4 + LABELS.length, RAW_BOXES.length + 1], inputWidth: INPUT, inputHeight: INPUT, slow });

test('a corrupt model.onnx beside a good model: the bad one is FAILED with its reason, the good one serves', async () => {
  const tmp = tempDir();
  writeModel(tmp.dir, 'good', '1', v8Model(), manifest({ format: 'yolov8' }));
  const badDir = join(tmp.dir, 'broken', '1');
  mkdirSync(badDir, { recursive: true });
  writeFileSync(join(badDir, 'model.onnx'), Buffer.from('this is not a protobuf at all'));
  writeFileSync(join(badDir, 'model.json'), JSON.stringify(manifest()));
  // A model.json that names a verdict label the model does not have.
  writeModel(tmp.dir, 'misdeclared', '1', v8Model(), manifest({ format: 'yolov8', verdict: { ng: { rust: 0.5 } } }));
  // A 1-class model whose [N, K, 6] output could be yolov5 or end2end.
  writeModel(tmp.dir, 'ambiguous', '1', buildConstantModel({ output: new Float32Array(12), outputShape: [2, 6], inputWidth: 32, inputHeight: 32 }), {
    labels: ['x'],
  });
  const app = await startApp({ models_dir: tmp.dir, default_model: 'good' });
  try {
    const models = (await app.inject('/v1/models')).json().models as { name: string; state: string; reason?: string }[];
    const byName = Object.fromEntries(models.map((m) => [m.name, m]));
    assert.equal(byName.good!.state, 'READY');
    assert.equal(byName.broken!.state, 'FAILED');
    assert.match(byName.broken!.reason!, /protobuf|parse|load/i);
    assert.equal(byName.misdeclared!.state, 'FAILED');
    assert.match(byName.misdeclared!.reason!, /verdict\.ng names "rust"/);
    assert.equal(byName.ambiguous!.state, 'FAILED');
    assert.match(byName.ambiguous!.reason!, /ambiguous.*set "format"/);

    const ok = await app.inject({ method: 'POST', url: '/v1/detect', headers: { 'content-type': 'image/jpeg' }, payload: await solidImage(320, 240, 'jpeg') });
    assert.equal(ok.statusCode, 200);
    const bad = await app.inject({
      method: 'POST',
      url: '/v1/detect?model=broken',
      headers: { 'content-type': 'image/jpeg' },
      payload: await solidImage(32, 32, 'jpeg'),
    });
    assert.equal(bad.statusCode, 503);
    assert.equal(bad.json().error.code, 'MODEL_NOT_READY');
    assert.equal(bad.headers['retry-after'], '1');
    const ready = await app.inject('/readyz');
    assert.equal(ready.statusCode, 200);
    const checks = ready.json().checks as { name: string; status: string; critical: boolean }[];
    assert.deepEqual(
      checks.find((c) => c.name === 'model:broken:1'),
      { ...checks.find((c) => c.name === 'model:broken:1'), status: 'fail', critical: false },
    );
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('/readyz is 503 during warm-up and 200 after', async () => {
  const tmp = tempDir();
  writeModel(tmp.dir, 'slow', '1', v8Model(true), manifest({ format: 'yolov8' }));
  const app = await startApp({ models_dir: tmp.dir, warmup_runs: 2 }, { wait: false });
  try {
    const during = await app.inject('/readyz');
    assert.equal(during.statusCode, 503);
    assert.equal(during.headers['retry-after'], '1');
    const check = during.json().checks.find((c: { name: string }) => c.name === 'model:slow:1');
    assert.equal(check.state, 'LOADING');
    const detect = await app.inject({
      method: 'POST',
      url: '/v1/detect',
      headers: { 'content-type': 'image/jpeg' },
      payload: await solidImage(32, 32, 'jpeg'),
    });
    assert.equal(detect.statusCode, 503);
    assert.equal(detect.json().error.code, 'MODEL_NOT_READY');
    await app.sightline.models.loadAll();
    const afterwards = await app.inject('/readyz');
    assert.equal(afterwards.statusCode, 200, afterwards.body);
    assert.equal(afterwards.json().status, 'ready');
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('several models and no default: requests naming none get NO_DEFAULT_MODEL, readyz says why', async () => {
  const tmp = tempDir();
  writeModel(tmp.dir, 'a', '1', v8Model(), manifest({ format: 'yolov8' }));
  writeModel(tmp.dir, 'b', '1', v8Model(), manifest({ format: 'yolov8' }));
  writeModel(tmp.dir, 'b', '2', v8Model(), manifest({ format: 'yolov8' }));
  const app = await startApp({ models_dir: tmp.dir });
  try {
    const res = await app.inject({ method: 'POST', url: '/v1/detect', headers: { 'content-type': 'image/jpeg' }, payload: await solidImage(32, 32, 'jpeg') });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error.code, 'NO_DEFAULT_MODEL');
    const ready = await app.inject('/readyz');
    assert.equal(ready.statusCode, 503);
    assert.match(JSON.stringify(ready.json().checks), /no default_model configured/);
    // A bare name picks the newest version.
    const latest = await app.inject({
      method: 'POST',
      url: '/v1/detect?model=b',
      headers: { 'content-type': 'image/jpeg' },
      payload: await solidImage(32, 32, 'jpeg'),
    });
    assert.deepEqual(latest.json().model, { name: 'b', version: '2' });
  } finally {
    await app.close();
    tmp.cleanup();
  }
});
