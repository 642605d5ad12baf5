import { test } from 'node:test';
import assert from 'node:assert/strict';
import { averagePrecision, evaluateDetections, type ImageEvaluation } from '../src/eval/metrics.js';

const LABELS = ['a', 'b'];
const truth = (x1: number, y1: number, x2: number, y2: number, classId = 0) => ({ x1, y1, x2, y2, classId });
const pred = (x1: number, y1: number, x2: number, y2: number, score: number, classId = 0) => ({ x1, y1, x2, y2, score, classId });
const close = (actual: number, expected: number) => assert.ok(Math.abs(actual - expected) < 1e-9, `${actual} ≠ ${expected}`);

test('perfect predictions give 1.0 everywhere', () => {
  const images: ImageEvaluation[] = [
    { truths: [truth(0, 0, 10, 10), truth(20, 20, 40, 40, 1)], predictions: [pred(0, 0, 10, 10, 0.9), pred(20, 20, 40, 40, 0.8, 1)] },
    { truths: [], predictions: [] },
  ];
  const m = evaluateDetections(images, LABELS, 0.25);
  assert.deepEqual(m.mean, { precision: 1, recall: 1, map50: 1, map50_95: 1 });
});

test('a false positive scored above the true one halves AP; below it, AP stays 1', () => {
  const above = evaluateDetections([{ truths: [truth(0, 0, 10, 10)], predictions: [pred(50, 50, 60, 60, 0.9), pred(0, 0, 10, 10, 0.8)] }], LABELS, 0.25);
  close(above.classes[0]!.ap50, 0.5);
  close(above.classes[0]!.precision, 0.5);
  close(above.classes[0]!.recall, 1);
  const below = evaluateDetections([{ truths: [truth(0, 0, 10, 10)], predictions: [pred(50, 50, 60, 60, 0.3), pred(0, 0, 10, 10, 0.8)] }], LABELS, 0.25);
  close(below.classes[0]!.ap50, 1);
});

test('a miss caps recall: one of two found gives AP 51/101', () => {
  const m = evaluateDetections([{ truths: [truth(0, 0, 10, 10), truth(30, 30, 40, 40)], predictions: [pred(0, 0, 10, 10, 0.9)] }], LABELS, 0.25);
  close(m.classes[0]!.recall, 0.5);
  close(m.classes[0]!.ap50, 51 / 101);
  close(averagePrecision([true], 2), 51 / 101);
});

test('a wrong class is a miss for the true class and a false positive for the other', () => {
  const m = evaluateDetections([{ truths: [truth(0, 0, 10, 10, 0)], predictions: [pred(0, 0, 10, 10, 0.9, 1)] }], LABELS, 0.25);
  assert.equal(m.classes[0]!.ap50, 0);
  assert.equal(m.classes[1]!.instances, 0);
  // Only classes with ground truth enter the mean.
  assert.equal(m.mean.map50, 0);
});

test('IoU at the edges: exactly 0.5 counts at 0.50; 0.74 counts at 0.50…0.70 only', () => {
  const half = evaluateDetections([{ truths: [truth(0, 0, 100, 100)], predictions: [pred(0, 0, 100, 50, 0.9)] }], LABELS, 0.25);
  close(half.classes[0]!.ap50, 1);
  close(half.classes[0]!.ap50_95, 0.1);
  const most = evaluateDetections([{ truths: [truth(0, 0, 100, 100)], predictions: [pred(0, 0, 100, 74, 0.9)] }], LABELS, 0.25);
  close(most.classes[0]!.ap50_95, 0.5);
  const under = evaluateDetections([{ truths: [truth(0, 0, 100, 100)], predictions: [pred(0, 0, 100, 49, 0.9)] }], LABELS, 0.25);
  assert.equal(under.classes[0]!.ap50, 0);
});

test('one truth is matched once: a duplicate is a false positive', () => {
  const m = evaluateDetections([{ truths: [truth(0, 0, 10, 10)], predictions: [pred(0, 0, 10, 10, 0.9), pred(0, 0, 10, 10, 0.8)] }], LABELS, 0.25);
  close(m.classes[0]!.ap50, 1);
  close(m.classes[0]!.precision, 0.5);
});

test('precision and recall use the operating score', () => {
  const m = evaluateDetections([{ truths: [truth(0, 0, 10, 10)], predictions: [pred(0, 0, 10, 10, 0.2)] }], LABELS, 0.25);
  assert.equal(m.classes[0]!.recall, 0);
  close(m.classes[0]!.ap50, 1);
});
