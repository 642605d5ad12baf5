import { test } from 'node:test';
import assert from 'node:assert/strict';
import { axisStarts, DEFAULT_TILING, mergeTiled, planTiles, shouldTile, tilingFor, type PlacedCandidate } from '../src/inference/tiling.js';

// The numbers of tiled inference: where tiles lie, when to tile, how boxes merge.

test('a 2448 × 2048 frame for a 416 input: 8 × 6 tiles at native resolution, edge to edge, overlapping', () => {
  const plan = planTiles(2448, 2048, 416, 416, DEFAULT_TILING);
  assert.equal(plan.scale, 1);
  assert.equal(plan.fullView, true);
  assert.equal(plan.tiles.length, 48);
  const xs = [...new Set(plan.tiles.map((t) => t.x))];
  const ys = [...new Set(plan.tiles.map((t) => t.y))];
  assert.deepEqual(xs, axisStarts(2448, 416, 0.2));
  assert.equal(xs.length, 8);
  assert.equal(ys.length, 6);
  for (const starts of [xs, ys]) assert.equal(starts[0], 0);
  assert.equal(xs.at(-1)! + 416, 2448, 'the last column is flush with the right edge');
  assert.equal(ys.at(-1)! + 416, 2048, 'the last row is flush with the bottom');
  for (const starts of [xs, ys]) {
    for (let i = 1; i < starts.length; i++) {
      const shared = starts[i - 1]! + 416 - starts[i]!;
      assert.ok(shared >= Math.ceil(416 * 0.2) - 1 && shared < 416, `overlap ${shared}`);
    }
  }
  for (const t of plan.tiles) assert.deepEqual([t.width, t.height], [416, 416]);
});

test('axis starts: one tile when the axis fits, no overlap asked means tiles that touch', () => {
  assert.deepEqual(axisStarts(300, 416, 0.2), [0]);
  assert.deepEqual(axisStarts(416, 416, 0.2), [0]);
  assert.deepEqual(axisStarts(200, 100, 0), [0, 100]);
  assert.deepEqual(axisStarts(500, 100, 0.2), [0, 80, 160, 240, 320, 400]);
});

test('a side smaller than the input gives tiles cut to the image; max_tiles raises the scale instead', () => {
  const strip = planTiles(3000, 300, 416, 416, DEFAULT_TILING);
  assert.ok(strip.tiles.every((t) => t.height === 300 && t.y === 0 && t.width === 416));
  const capped = planTiles(8000, 6000, 416, 416, { ...DEFAULT_TILING, max_tiles: 12 });
  assert.ok(capped.tiles.length <= 12, String(capped.tiles.length));
  assert.ok(capped.scale > 1);
  for (const t of capped.tiles) {
    assert.ok(t.x + t.width <= 8000 && t.y + t.height <= 6000);
    assert.equal(t.width, Math.round(416 * capped.scale));
  }
  const scaled = planTiles(2448, 2048, 416, 416, { ...DEFAULT_TILING, scale: 2 });
  assert.equal(scaled.tiles[0]!.width, 832);
  assert.equal(scaled.tiles.length, 4 * 3);
});

test('the mode: the request over the model, off for a model without tiling, auto by the short side', () => {
  assert.equal(tilingFor(undefined, undefined).mode, 'off');
  assert.equal(tilingFor(undefined, 'auto').mode, 'auto');
  assert.equal(tilingFor({ ...DEFAULT_TILING, mode: 'on' }, undefined).mode, 'on');
  assert.equal(tilingFor({ ...DEFAULT_TILING, mode: 'on' }, 'off').mode, 'off');
  const auto = tilingFor(DEFAULT_TILING, undefined);
  assert.equal(shouldTile(auto, 2448, 2048, 416, 416), true);
  assert.equal(shouldTile(auto, 1280, 720, 416, 416), false, 'short side 1.7 × the input');
  assert.equal(shouldTile(auto, 4000, 800, 416, 416), false, 'only the long side is large');
  assert.equal(shouldTile({ ...auto, min_ratio: 1.5 }, 1280, 720, 416, 416), true);
  assert.equal(shouldTile({ ...auto, mode: 'on' }, 100, 100, 416, 416), true);
});

const box = (tile: number, x1: number, y1: number, x2: number, y2: number, score = 0.9, classId = 0): PlacedCandidate => ({
  tile,
  x1,
  y1,
  x2,
  y2,
  score,
  classId,
});
const nms = { iouThreshold: 0.45, maxDetections: 100, agnostic: false, edgeTolerance: 2 };
const plain = (c: { x1: number; y1: number; x2: number; y2: number }) => [c.x1, c.y1, c.x2, c.y2];

test('an object over a tile corner, in four pieces, becomes one box', () => {
  // 2 × 2 tiles of 100 on a 200 × 200 image, touching (no overlap).
  const tiles = [
    { x: 0, y: 0, width: 100, height: 100 },
    { x: 100, y: 0, width: 100, height: 100 },
    { x: 0, y: 100, width: 100, height: 100 },
    { x: 100, y: 100, width: 100, height: 100 },
  ];
  const merged = mergeTiled(
    [box(0, 80, 85, 100, 100, 0.6), box(1, 100, 82, 130, 100, 0.9), box(2, 79, 100, 100, 120, 0.5), box(3, 100, 100, 131, 121, 0.7)],
    tiles,
    200,
    200,
    nms,
  );
  assert.equal(merged.length, 1);
  assert.deepEqual(plain(merged[0]!), [79, 82, 131, 121]);
  assert.equal(merged[0]!.score, 0.9);
});

test('what is not cut by a tile edge is not joined: other labels, the image border, other rows, far boxes', () => {
  const tiles = [
    { x: 0, y: 0, width: 100, height: 100 },
    { x: 100, y: 0, width: 100, height: 100 },
  ];
  // Cut at x = 100, but the right piece is another label.
  assert.equal(mergeTiled([box(0, 80, 10, 100, 30), box(1, 100, 10, 120, 30, 0.9, 1)], tiles, 200, 100, nms).length, 2);
  // Same label, both at x = 100, but on different rows (no shared span across the edge).
  assert.equal(mergeTiled([box(0, 80, 10, 100, 30), box(1, 100, 50, 120, 70)], tiles, 200, 100, nms).length, 2);
  // The left piece ends before the edge: not cut.
  assert.equal(mergeTiled([box(0, 60, 10, 90, 30), box(1, 100, 10, 120, 30)], tiles, 200, 100, nms).length, 2);
  // Touching the image's own border is no cut: the box at 0 is left alone.
  assert.equal(mergeTiled([box(0, 0, 10, 20, 30), box(1, 180, 10, 200, 30)], tiles, 200, 100, nms).length, 2);
  // The same object found whole by two overlapping runs: NMS keeps the better one.
  const both = mergeTiled([box(0, 40, 10, 60, 30, 0.8), box(-1, 41, 11, 61, 31, 0.95)], tiles, 200, 100, nms);
  assert.deepEqual(
    both.map((c) => c.score),
    [0.95],
  );
});

test('a piece is joined with the whole object the full view found', () => {
  const tiles = [
    { x: 0, y: 0, width: 100, height: 100 },
    { x: 80, y: 0, width: 100, height: 100 },
  ];
  // Tile 0 cut the object at its right edge; the full view (-1) saw it whole, 60–140.
  const merged = mergeTiled([box(0, 60, 20, 100, 40, 0.7), box(-1, 60, 19, 140, 41, 0.6)], tiles, 180, 100, nms);
  assert.equal(merged.length, 1);
  assert.deepEqual(plain(merged[0]!), [60, 19, 140, 41]);
  assert.equal(merged[0]!.score, 0.7);
});
