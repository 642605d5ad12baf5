import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DECODERS, formatsMatchingShape, resolveFormat } from '../src/inference/postprocess/decoders.js';
import { letterboxGeometry, unletterboxBox } from '../src/inference/letterbox.js';

test('format detection from output shape', () => {
  assert.deepEqual(formatsMatchingShape([1, 84, 8400], 80), ['yolov8']);
  assert.deepEqual(formatsMatchingShape([1, 25200, 85], 80), ['yolov5']);
  assert.deepEqual(formatsMatchingShape([1, 300, 6], 80), ['end2end']);
  assert.deepEqual(resolveFormat(undefined, [1, 84, 8400], 80), { format: 'yolov8', detected: true });
  // One class: yolov5 rows are 6 wide, exactly like end2end.
  assert.throws(() => resolveFormat(undefined, [1, 100, 6], 1), /ambiguous/);
  assert.deepEqual(resolveFormat('end2end', [1, 100, 6], 1), { format: 'end2end', detected: false });
  assert.throws(() => resolveFormat('yolov8', [1, 300, 6], 80), /does not fit format "yolov8"/);
  assert.throws(() => resolveFormat(undefined, [1, 2, 3, 4], 80), /fits no known format/);
});

test('yolov8 decoder reads the second batch item from its own offset', () => {
  // [2, 4+1, 2]: item 1 has a box at anchor 1.
  const dims = [2, 5, 2];
  const data = new Float32Array(20);
  data.set([0, 50, 0, 60, 0, 10, 0, 20, 0, 0.8], 10);
  const out = DECODERS.yolov8(data, 10, dims, 1, 0.25);
  assert.deepEqual(out, [{ x1: 45, y1: 50, x2: 55, y2: 70, score: Math.fround(0.8), classId: 0 }]);
});

test('yolov5 decoder multiplies objectness and class score', () => {
  const data = new Float32Array([10, 10, 4, 4, 0.5, 0.2, 0.9]);
  const out = DECODERS.yolov5(data, 0, [1, 1, 7], 2, 0.25);
  assert.equal(out.length, 1);
  assert.equal(out[0]!.classId, 1);
  assert.ok(Math.abs(out[0]!.score - 0.45) < 1e-6);
  assert.equal(DECODERS.yolov5(data, 0, [1, 1, 7], 2, 0.5).length, 0);
});

test('letterbox geometry and the inverse mapping with clipping', () => {
  const lb = letterboxGeometry(1280, 720, 640, 640);
  assert.deepEqual([lb.scaledWidth, lb.scaledHeight, lb.padLeft, lb.padTop], [640, 360, 0, 140]);
  assert.deepEqual(unletterboxBox({ x1: 270, y1: 295, x2: 370, y2: 345 }, lb), { x1: 540, y1: 310, x2: 740, y2: 410 });
  assert.deepEqual(unletterboxBox({ x1: -5, y1: 100, x2: 700, y2: 600 }, lb), { x1: 0, y1: 0, x2: 1280, y2: 720 });
  const portrait = letterboxGeometry(600, 900, 640, 640);
  assert.deepEqual([portrait.scaledWidth, portrait.scaledHeight, portrait.padLeft, portrait.padTop], [427, 640, 106, 0]);
});
