import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iou, nonMaxSuppression, type Candidate } from '../src/inference/postprocess/nms.js';

const box = (x1: number, y1: number, x2: number, y2: number, score: number, classId = 0): Candidate => ({ x1, y1, x2, y2, score, classId });

test('iou of identical, disjoint, touching and half-overlapping boxes', () => {
  assert.equal(iou(box(0, 0, 10, 10, 1), box(0, 0, 10, 10, 1)), 1);
  assert.equal(iou(box(0, 0, 10, 10, 1), box(20, 20, 30, 30, 1)), 0);
  assert.equal(iou(box(0, 0, 10, 10, 1), box(10, 0, 20, 10, 1)), 0);
  assert.equal(iou(box(0, 0, 10, 10, 1), box(5, 0, 15, 10, 1)), 50 / 150);
});

test('overlapping boxes of one class: only the highest score survives', () => {
  const kept = nonMaxSuppression([box(1, 1, 11, 11, 0.6), box(0, 0, 10, 10, 0.9), box(2, 0, 12, 10, 0.7)], {
    iouThreshold: 0.45,
    maxDetections: 10,
    agnostic: false,
  });
  assert.deepEqual(
    kept.map((k) => k.score),
    [0.9],
  );
});

test('overlapping boxes of two classes are both kept class-wise', () => {
  const kept = nonMaxSuppression([box(0, 0, 10, 10, 0.9, 0), box(1, 0, 11, 10, 0.8, 1)], { iouThreshold: 0.45, maxDetections: 10, agnostic: false });
  assert.deepEqual(
    kept.map((k) => k.classId),
    [0, 1],
  );
});

test('agnostic mode suppresses across classes', () => {
  const kept = nonMaxSuppression([box(0, 0, 10, 10, 0.9, 0), box(1, 0, 11, 10, 0.8, 1)], { iouThreshold: 0.45, maxDetections: 10, agnostic: true });
  assert.deepEqual(
    kept.map((k) => k.classId),
    [0],
  );
});

test('boxes overlapping below the IoU threshold are kept', () => {
  // IoU = 50/150 ≈ 0.33 < 0.45
  const kept = nonMaxSuppression([box(0, 0, 10, 10, 0.9), box(5, 0, 15, 10, 0.8)], { iouThreshold: 0.45, maxDetections: 10, agnostic: false });
  assert.equal(kept.length, 2);
});

test('max detections keeps the best N', () => {
  const many = Array.from({ length: 20 }, (_, i) => box(i * 20, 0, i * 20 + 10, 10, i / 20));
  const kept = nonMaxSuppression(many, { iouThreshold: 0.45, maxDetections: 3, agnostic: false });
  assert.deepEqual(
    kept.map((k) => k.score),
    [0.95, 0.9, 0.85],
  );
});
