/**
 * A model instance's memory is set by its first run (src/inference/onnx-thread.ts turns
 * ONNX Runtime's memory pattern off): with the pattern on, the second run plans every
 * activation as one more block beside the chunks the first run left in the arena, and
 * a server's memory grew when an instance took its second request.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGraphModel, ONNX_ELEM } from './helpers/onnx-builder.js';
import { OnnxRunner } from '../src/inference/onnx-runner.js';

const SIZE = 1024;
const MiB = 1024 * 1024;
/** One activation of the model below: 1 × 3 × SIZE × SIZE floats. */
const ACTIVATION_MIB = (3 * SIZE * SIZE * 4) / MiB;

/** Elementwise steps that keep several full-size activations alive at once, then a small output. */
function activationHeavyModel(): Uint8Array {
  return buildGraphModel({
    nodes: [
      { op_type: 'Mul', input: ['images', 'two'], output: ['a'] },
      { op_type: 'Sin', input: ['a'], output: ['b'] },
      { op_type: 'Add', input: ['a', 'b'], output: ['c'] },
      { op_type: 'Cos', input: ['c'], output: ['d'] },
      { op_type: 'Mul', input: ['d', 'b'], output: ['e'] },
      { op_type: 'Add', input: ['e', 'a'], output: ['f'] },
      // ReduceMean over the width (opset 13: axes as an attribute, type 7 = INTS): [1, 3, SIZE].
      {
        op_type: 'ReduceMean',
        input: ['f'],
        output: ['out'],
        attribute: [
          { name: 'axes', type: 7, ints: [3] },
          { name: 'keepdims', type: 2, i: 0 },
        ],
      },
    ],
    floats: { two: { dims: [], values: [2] } },
    inputs: [{ name: 'images', elemType: ONNX_ELEM.FLOAT, dims: [1, 3, SIZE, SIZE] }],
    outputs: [{ name: 'out', elemType: ONNX_ELEM.FLOAT, dims: [1, 3, SIZE] }],
  });
}

const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? Number.NaN) / 1024;

test("an instance's later runs take no more memory than its first did", { skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-onnx-memory-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'model.onnx'), activationHeavyModel());
  const runner = await OnnxRunner.create(join(dir, 'model.onnx'), { intraOpThreads: 1, interOpThreads: 1 });
  t.after(() => runner.close());
  const pixels = new Uint8Array(SIZE * SIZE * 3).fill(100);
  await runner.run([pixels], SIZE, SIZE);
  const afterFirst = rssMiB();
  for (let i = 0; i < 3; i++) await runner.run([pixels], SIZE, SIZE);
  const grew = rssMiB() - afterFirst;
  // With the memory pattern on, the second run alone added 59 MiB here (about 5 activations); without it, 10–20 MiB
  // of pixel copies in flight. Two activations' worth sits between the two.
  assert.ok(grew < 2 * ACTIVATION_MIB, `RSS grew ${grew.toFixed(1)} MiB over runs 2–4 (one activation is ${ACTIVATION_MIB} MiB)`);
});
