import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { applyHeapGrowth } from '../src/cli/heap-growth.js';

/**
 * heap_growing_percent reaches V8: a child process sets it as the server does at
 * startup, keeps a heap, collects it fully, then allocates until V8 starts marking
 * again. V8's trace says where that next collection was due.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const CHILD = `
const { applyHeapGrowth } = await import('./src/cli/heap-growth.ts');
applyHeapGrowth(Number(process.argv[1]), []);
globalThis.kept = Array.from({ length: 400000 }, (_, i) => ({ i, s: 'item ' + i, a: [i, i + 1] }));
globalThis.gc();
console.log('collected');
const more = [];
for (let k = 0; k < 1500; k++) more.push(Array.from({ length: 5000 }, (_, i) => ({ i })));
`;

/** What the full collection kept, and the old-generation limit at which V8 next started marking, in MB. */
async function nextLimit(percent: number): Promise<{ kept: number; limit: number }> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--expose-gc', '--trace-gc', '--trace-incremental-marking', '--input-type=module', '-e', CHILD, String(percent)],
    { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 },
  );
  const lines = stdout.split('\n');
  const at = lines.indexOf('collected');
  assert.ok(at > 0, stdout.slice(0, 2000));
  const kept = /Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \(/.exec(lines[at - 1] ?? '');
  const start = lines
    .slice(at)
    .map((l) => /Start \(allocation limit\).* v8: \d+MB \/ (\d+)MB/.exec(l))
    .find(Boolean);
  assert.ok(kept && start, `no full collection before, or no marking after:\n${lines.slice(Math.max(0, at - 3), at + 12).join('\n')}`);
  return { kept: Number(kept[1]), limit: Number(start[1]) };
}

describe('V8 heap growth (config heap_growing_percent)', () => {
  test('the percentage sets how far the heap grows past what a full collection kept', async () => {
    const low = await nextLimit(50);
    const high = await nextLimit(200);
    // The same heap kept (within a few MB); the next collection due at about 1.5 against
    // 3 times the old generation: twice as far. Were the setting lost, both would be V8's own choice.
    assert.ok(Math.abs(high.kept - low.kept) < 10, `kept ${low.kept} and ${high.kept} MB`);
    const ratio = high.limit / low.limit;
    assert.ok(ratio > 1.6 && ratio < 2.3, `next collection due at ${low.limit} MB with 50 %, ${high.limit} MB with 200 % (× ${ratio.toFixed(2)})`);
  });

  test('node started with its own --heap-growing-percent keeps it; 0 leaves V8 its own choice', () => {
    assert.equal(applyHeapGrowth(200, ['--heap-growing-percent=50']), 'node-flag');
    assert.equal(applyHeapGrowth(200, ['--heap_growing_percent', '50']), 'node-flag');
    assert.equal(applyHeapGrowth(0, []), 'v8-default');
  });
});
