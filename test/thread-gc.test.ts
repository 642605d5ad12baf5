/**
 * The model threads' collector (src/inference/thread-gc.ts): dropped buffers are
 * counted and collected once they add up to the limit, and not before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PerformanceObserver, constants, type PerformanceEntry } from 'node:perf_hooks';
import { garbageCounter } from '../src/inference/thread-gc.js';

const MiB = 1024 * 1024;

/** Collections forced by a call (not V8's own) seen while `during` runs. */
async function forcedCollections(during: () => void): Promise<number> {
  const seen: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => seen.push(...list.getEntries()));
  observer.observe({ entryTypes: ['gc'] });
  during();
  // gc entries are delivered asynchronously.
  await new Promise((r) => setTimeout(r, 50));
  observer.disconnect();
  return seen.filter((e) => ((e as PerformanceEntry & { detail?: { flags?: number } }).detail?.flags ?? 0) & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED).length;
}

test('a model thread collects dropped buffers once they add up to the limit, and not before', async () => {
  const dropped = garbageCounter(4 * MiB);
  const threeMiB = () => {
    for (let i = 0; i < 3; i++) dropped(MiB);
  };
  assert.equal(await forcedCollections(threeMiB), 0, 'below the limit: no collection');
  assert.equal(await forcedCollections(() => dropped(MiB)), 1, 'at the limit: one collection');
  assert.equal(await forcedCollections(threeMiB), 0, 'the count starts again');
});

/** Allocates `n` buffers of 1 MiB and drops them (on return); answers the bytes held while they lived. */
function allocateAndDrop(n: number): number {
  const held = Array.from({ length: n }, () => new ArrayBuffer(MiB));
  const bytes = process.memoryUsage().arrayBuffers;
  assert.equal(held.length, n);
  return bytes;
}

test('the collection frees the dropped buffers', async () => {
  const dropped = garbageCounter(8 * MiB);
  const before = allocateAndDrop(16);
  dropped(16 * MiB);
  // V8 frees the buffers' memory just after the collection, off this thread.
  await new Promise((r) => setTimeout(r, 50));
  const after = process.memoryUsage().arrayBuffers;
  assert.ok(before - after >= 12 * MiB, `arrayBuffers ${(before / MiB).toFixed(1)} → ${(after / MiB).toFixed(1)} MiB`);
});
