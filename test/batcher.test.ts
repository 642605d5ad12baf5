import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Batcher, type BatcherOptions } from '../src/inference/batcher.js';
import type { ModelRunner, RunHow, RunOutput } from '../src/inference/runner.js';

/**
 * A ModelRunner whose runs finish when the test says so. Each image is 1×1 and its
 * output is its own pixel value, so every caller can check it got its own row.
 */
class HeldRunner implements ModelRunner {
  readonly info = { inputName: 'images', outputName: 'output0', inputShape: ['batch', 3, 1, 1], outputShape: ['batch', 1] };
  readonly batches: number[][] = [];
  private releases: (() => void)[] = [];
  run(images: Uint8Array[]): Promise<RunOutput> {
    const values = images.map((img) => img[0]!);
    this.batches.push(values);
    return new Promise((resolve) => {
      this.releases.push(() => resolve({ output: Float32Array.from(values), dims: [values.length, 1], preprocessMs: 0, inferMs: 0 }));
    });
  }
  releaseOne(): void {
    this.releases.shift()?.();
  }
  async close(): Promise<void> {}
}

const pixel = (v: number) => Uint8Array.of(v, v, v);
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

function batcher(runner: ModelRunner, options: Partial<BatcherOptions> = {}) {
  return new Batcher([runner], { width: 1, height: 1, maxBatch: 4, maxDelayMs: 0, maxQueue: 100, ...options });
}

test('batches are assembled up to the max and every caller gets its own row', async () => {
  const runner = new HeldRunner();
  const b = batcher(runner, { maxBatch: 4 });
  const first = b.enqueue(pixel(1), 'normal');
  await tick();
  const rest = [2, 3, 4, 5, 6, 7].map((v) => b.enqueue(pixel(v), 'normal'));
  runner.releaseOne();
  await tick();
  runner.releaseOne();
  await tick();
  runner.releaseOne();
  const results = await Promise.all([first, ...rest]);
  assert.deepEqual(runner.batches, [[1], [2, 3, 4, 5], [6, 7]]);
  for (const [i, r] of results.entries()) assert.equal(r.output[r.index], i + 1);
  assert.deepEqual(
    results.map((r) => r.batchSize),
    [1, 4, 4, 4, 4, 2, 2],
  );
});

test('a partial batch waits for requests still decoding, and is flushed at the max delay', async () => {
  const runner = new HeldRunner();
  const b = batcher(runner, { maxBatch: 8, maxDelayMs: 40 });
  const decoding = b.admit('normal'); // admitted, still "decoding": worth waiting for
  const started = performance.now();
  const queued = [b.enqueue(pixel(1), 'normal'), b.enqueue(pixel(2), 'normal')];
  await tick(10);
  assert.equal(runner.batches.length, 0, 'dispatched before the delay');
  await tick(60);
  assert.deepEqual(runner.batches, [[1, 2]]);
  runner.releaseOne();
  await Promise.all(queued);
  assert.ok(performance.now() - started >= 35);
  decoding.release();
});

test('nobody else coming: a lone request is dispatched at once', async () => {
  const runner = new HeldRunner();
  const b = batcher(runner, { maxBatch: 8, maxDelayMs: 1000 });
  const one = b.enqueue(pixel(9), 'normal');
  await tick();
  assert.deepEqual(runner.batches, [[9]]);
  runner.releaseOne();
  await one;
});

test('priority order: high, then normal, then low', async () => {
  const runner = new HeldRunner();
  const b = batcher(runner, { maxBatch: 1 });
  const busy = b.enqueue(pixel(0), 'normal');
  await tick();
  const waiting = [b.enqueue(pixel(3), 'low'), b.enqueue(pixel(2), 'normal'), b.enqueue(pixel(1), 'high'), b.enqueue(pixel(4), 'low')];
  for (let i = 0; i < 5; i++) {
    runner.releaseOne();
    await tick();
  }
  await Promise.all([busy, ...waiting]);
  assert.deepEqual(runner.batches, [[0], [1], [2], [3], [4]]);
});

test('expired requests are answered DEADLINE_EXCEEDED and never reach the model', async () => {
  const runner = new HeldRunner();
  let expired = 0;
  const b = batcher(runner, { maxBatch: 1, onExpired: () => expired++ });
  const busy = b.enqueue(pixel(0), 'normal');
  await tick();
  const late = b.enqueue(pixel(7), 'normal', performance.now() + 20).catch((err: unknown) => err);
  const onTime = b.enqueue(pixel(8), 'normal', performance.now() + 10_000);
  await tick(40); // the batcher's deadline timers are unref'd: keep the loop alive meanwhile
  const lateError = (await late) as { code: string; statusCode: number };
  assert.equal(lateError.code, 'DEADLINE_EXCEEDED');
  assert.equal(lateError.statusCode, 504);
  runner.releaseOne();
  await tick();
  runner.releaseOne();
  await Promise.all([busy, onTime]);
  assert.deepEqual(runner.batches, [[0], [8]]);
  assert.equal(expired, 1);
  await assert.rejects(b.enqueue(pixel(1), 'normal', performance.now() - 1), /deadline/);
});

test('a full queue rejects with OVERLOADED; a higher priority displaces the newest lower one', async () => {
  const runner = new HeldRunner();
  const shed: string[] = [];
  const b = batcher(runner, { maxBatch: 1, maxQueue: 3, onShed: (r) => shed.push(r) });
  const busy = b.enqueue(pixel(0), 'normal');
  await tick();
  const lowOld = b
    .admit('low')
    .submit(pixel(1))
    .catch((err: { code: string }) => err.code);
  const normal = b.admit('normal').submit(pixel(2));
  const lowNew = b
    .admit('low')
    .submit(pixel(3))
    .catch((err: { code: string }) => err.code);
  assert.equal(b.depth, 3);
  // Nothing ranks below low: refused.
  assert.throws(
    () => b.admit('low'),
    (err: { code: string; statusCode: number }) => err.code === 'OVERLOADED' && err.statusCode === 503,
  );
  const normal2 = b.admit('normal').submit(pixel(4)); // displaces the newest low (3)
  const high = b.admit('high').submit(pixel(5)); // displaces the remaining low (1)
  assert.throws(
    () => b.admit('normal'),
    (err: { code: string }) => err.code === 'OVERLOADED',
  );
  assert.equal(await lowNew, 'OVERLOADED');
  assert.equal(await lowOld, 'OVERLOADED');
  for (let i = 0; i < 4; i++) {
    runner.releaseOne();
    await tick();
  }
  await Promise.all([busy, normal, normal2, high]);
  assert.deepEqual(runner.batches, [[0], [5], [2], [4]]);
  assert.deepEqual(shed, ['queue_full', 'displaced', 'displaced', 'queue_full']);
});

test('a released admission frees its place', () => {
  const b = batcher(new HeldRunner(), { maxQueue: 1 });
  const a = b.admit('normal');
  assert.throws(() => b.admit('normal'));
  a.release();
  a.release();
  assert.equal(b.depth, 0);
  assert.doesNotThrow(() => b.admit('normal').release());
});

test('close answers queued requests with SHUTTING_DOWN', async () => {
  const runner = new HeldRunner();
  const b = batcher(runner, { maxBatch: 1 });
  void b.enqueue(pixel(0), 'normal');
  await tick();
  const queued = b.enqueue(pixel(1), 'normal');
  b.close();
  await assert.rejects(queued, (err: { code: string }) => err.code === 'SHUTTING_DOWN');
  assert.throws(
    () => b.admit('normal'),
    (err: { code: string }) => err.code === 'SHUTTING_DOWN',
  );
});

test('hasRoomFor tells in advance whether admit would succeed', async () => {
  const runner = new HeldRunner();
  const b = batcher(runner, { maxBatch: 1, maxQueue: 1 });
  assert.equal(b.hasRoomFor('low'), true);
  const busy = b.enqueue(pixel(0), 'normal');
  await tick();
  const queued = b.admit('normal').submit(pixel(1));
  assert.equal(b.hasRoomFor('normal'), false);
  assert.equal(b.hasRoomFor('high'), true, 'high can displace the queued normal request');
  runner.releaseOne();
  await tick();
  runner.releaseOne();
  await Promise.all([busy, queued]);
  assert.equal(b.hasRoomFor('low'), true);
});

/** A HeldRunner that has a lone-request session: it records which runs were asked to go wide. */
class WideRunner extends HeldRunner {
  readonly wideRuns: boolean[] = [];
  readonly prepared: [number, number][] = [];
  readonly prepareWide = (width: number, height: number) => void this.prepared.push([width, height]);
  override run(images: Uint8Array[], _w?: number, _h?: number, how: RunHow = {}): Promise<RunOutput> {
    this.wideRuns.push(how.wide === true);
    return super.run(images);
  }
}

test('a lone request at an idle model runs on the lone-request session; company goes to the instances, never beside it', async () => {
  const wide = new WideRunner();
  const other = new WideRunner();
  const b = new Batcher([wide, other], { width: 1, height: 1, maxBatch: 1, maxDelayMs: 0, maxQueue: 100 });
  // Only the first instance with a lone-request session prepares it.
  assert.deepEqual(wide.prepared, [[1, 1]]);
  assert.deepEqual(other.prepared, []);
  const lone = b.enqueue(pixel(1), 'normal');
  await tick();
  assert.deepEqual(wide.wideRuns, [true]);
  // While the lone run holds every core, newcomers wait even though an instance is idle.
  const a = b.enqueue(pixel(2), 'normal');
  const c = b.enqueue(pixel(3), 'normal');
  await tick();
  assert.deepEqual(other.wideRuns, []);
  wide.releaseOne();
  await lone;
  await tick();
  // Two queued: both single-threaded instances, neither wide.
  assert.deepEqual(wide.wideRuns, [true, false]);
  assert.deepEqual(other.wideRuns, [false]);
  wide.releaseOne();
  other.releaseOne();
  assert.equal((await a).output[0], 2);
  assert.equal((await c).output[0], 3);
  // A request that has company on its way (still decoding) does not take the lone session.
  const decoding = b.admit('normal');
  const next = b.enqueue(pixel(4), 'normal');
  await tick();
  assert.deepEqual([...wide.wideRuns, ...other.wideRuns].filter(Boolean), [true]);
  wide.releaseOne();
  other.releaseOne();
  assert.equal((await next).wide, false);
  decoding.release();
});

test('with several instances, each idle one takes a request of its own before any batch forms', async () => {
  const [one, two] = [new HeldRunner(), new HeldRunner()];
  const b = new Batcher([one, two], { width: 1, height: 1, maxBatch: 2, maxDelayMs: 1000, maxQueue: 100 });
  // One request queued, one still decoding: waiting for it would hand both to one instance while the other idles.
  const decoding = b.admit('normal');
  const first = b.enqueue(pixel(1), 'normal');
  await tick(20);
  assert.equal(one.batches.length + two.batches.length, 1, 'the queued request went at once, without waiting for company');
  const second = decoding.submit(pixel(2));
  await tick();
  assert.deepEqual([...one.batches, ...two.batches].sort(), [[1], [2]]);
  // Both busy: what queues meanwhile is the surplus, and a freed instance batches it.
  const rest = [3, 4, 5].map((v) => b.enqueue(pixel(v), 'normal'));
  one.releaseOne();
  await tick();
  assert.deepEqual(one.batches.at(-1), [3, 4]);
  two.releaseOne();
  await tick();
  assert.deepEqual(two.batches.at(-1), [5]);
  one.releaseOne();
  two.releaseOne();
  const results = await Promise.all([first, second, ...rest]);
  assert.deepEqual(
    results.map((r) => r.batchSize),
    [1, 1, 2, 2, 1],
  );
});
