/**
 * Boxes decoded in the instance's thread (RunHow.candidates, BatcherOptions.decode)
 * must be exactly the boxes the event loop decodes from the output tensor, and a
 * batch with a request that brings no settings must still get the tensor.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { OnnxRunner } from '../src/inference/onnx-runner.js';
import { Batcher } from '../src/inference/batcher.js';
import { prepareImage } from '../src/inference/preprocess.js';
import { candidateSettings, candidatesOf } from '../src/inference/postprocess/candidates.js';
import { readModelManifest } from '../src/inference/model-manifest.js';

const MODEL_DIR = 'models/defects/1';

test('boxes decoded in the worker thread equal those decoded from the output tensor; the tensor stays there', async (t) => {
  const manifest = await readModelManifest(`${MODEL_DIR}/model.json`);
  const runner = await OnnxRunner.create(`${MODEL_DIR}/model.onnx`, { intraOpThreads: 1, interOpThreads: 1 });
  t.after(() => runner.close());
  const width = manifest.input?.width ?? 416;
  const height = manifest.input?.height ?? 416;
  const images = await Promise.all(
    ['ng-01.jpg', 'ng-02.jpg', 'ng-03.jpg'].map((f) => prepareImage(readFileSync(`samples/${f}`), { inputWidth: width, inputHeight: height, maxPixels: 40e6 })),
  );
  const format = manifest.format ?? 'yolov8';
  const numClasses = manifest.labels.length;
  // Settings that differ per image: the default, a low threshold with class-agnostic NMS, a cap of one box.
  const perImage = [
    candidateSettings(manifest, {}),
    candidateSettings(manifest, { conf: 0.05, agnostic: true }),
    candidateSettings(manifest, { maxDetections: 1 }),
  ];

  const raw = await runner.run(
    images.map((i) => i.pixels),
    width,
    height,
  );
  assert.equal(raw.candidates, undefined);
  const expected = perImage.map((settings, i) => candidatesOf(format, numClasses, raw.output, raw.dims, i, settings));
  assert.ok(expected[0]!.length > 0, 'an NG sample has boxes');
  assert.ok(expected[1]!.length >= expected[0]!.length, 'a lower threshold keeps at least as many');
  assert.equal(expected[2]!.length, 1);

  const decoded = await runner.run(
    images.map((i) => i.pixels),
    width,
    height,
    { candidates: { format, numClasses, perImage } },
  );
  assert.deepEqual(decoded.candidates, expected);
  assert.equal(decoded.output.length, 0, 'the output tensor did not cross to the event loop');
  assert.deepEqual(decoded.dims, raw.dims);
  assert.ok((decoded.postprocessMs ?? -1) >= 0);

  // Through the batcher: a request with settings gets its boxes; one without gets the tensor,
  // and so does every request batched with it.
  const batcher = new Batcher([runner], { width: width, height: height, maxBatch: 2, maxDelayMs: 0, maxQueue: 10, decode: { format, numClasses } });
  const alone = await batcher.enqueue(images[0]!.pixels.slice(), 'normal', Infinity, perImage[0]);
  assert.deepEqual(alone.candidates, expected[0]);
  assert.equal(alone.output.length, 0);
  const plain = await batcher.enqueue(images[0]!.pixels.slice(), 'normal');
  assert.equal(plain.candidates, undefined);
  assert.deepEqual(candidatesOf(format, numClasses, plain.output, plain.dims, plain.index, perImage[0]!), expected[0]);
});
