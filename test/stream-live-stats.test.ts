import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveStats, RecordingEventBus, percentile } from '../src/stream/live-stats.js';
import { InProcessEventBus, resultEvent, type SightlineEvent } from '../src/events/index.js';

test('live stats: throughput and nearest-rank latency percentiles over a sliding window, by source', () => {
  let now = 0;
  const stats = new LiveStats({ now: () => now, horizonMs: 10_000 });
  assert.deepEqual(stats.snapshot(1000), {
    window_ms: 1000,
    count: 0,
    throughput_fps: 0,
    latency_ms: { p50: null, p99: null },
    by_source: { sync: 0, job: 0, stream: 0 },
  });
  // 100 results at t = 0 … 990 ms with latencies 1 … 100 ms.
  for (let i = 0; i < 100; i++) {
    now = i * 10;
    stats.record(i % 2 === 0 ? 'stream' : 'sync', i + 1);
  }
  now = 1000;
  const all = stats.snapshot(2000);
  assert.equal(all.count, 100);
  assert.equal(all.throughput_fps, 50); // 100 results over a 2 s window
  assert.deepEqual(all.latency_ms, { p50: 50, p99: 99 });
  assert.deepEqual(all.by_source, { sync: 50, job: 0, stream: 50 });
  // The last 500 ms hold results 50 … 99 (t = 500 … 990).
  now = 1200; // past the snapshot cache
  const recent = stats.snapshot(700);
  assert.equal(recent.count, 50);
  assert.deepEqual(recent.latency_ms, { p50: 75, p99: 100 });
  // Nothing recent: empty window.
  now = 5000;
  assert.equal(stats.snapshot(1000).count, 0);
  // Windows are capped at the horizon.
  assert.equal(stats.snapshot(60_000).window_ms, 10_000);
});

test('live stats: a fixed ring buffer keeps the newest samples', () => {
  let now = 0;
  const stats = new LiveStats({ now: () => now, capacity: 16 });
  for (let i = 0; i < 40; i++) {
    now = i;
    stats.record('job', i);
  }
  now = 200;
  const s = stats.snapshot(1000);
  assert.equal(s.count, 16);
  assert.deepEqual(s.latency_ms, { p50: 31, p99: 39 });
  assert.equal(percentile([], 0.5), null);
  assert.equal(percentile([3], 0.99), 3);
});

test('the recording bus records every published result of this process and delegates everything', async () => {
  const stats = new LiveStats();
  const bus = new RecordingEventBus(new InProcessEventBus(), stats);
  const seen: SightlineEvent[] = [];
  const unsubscribe = await bus.subscribe('l1', (e) => seen.push(e));
  const result = {
    request_id: 'r1',
    line: 'l1',
    camera: 'default',
    model: { name: 'm', version: '1' },
    image: { width: 1, height: 1 },
    detections: [],
    verdict: 'ok' as const,
    timings_ms: { queue: 0, decode: 1, preprocess: 1, infer: 5, postprocess: 1, total: 12 },
  };
  bus.publish(resultEvent('job', result));
  bus.publish({ type: 'job', line: 'l1', at: new Date().toISOString(), job_id: 'j', state: 'dead' });
  assert.equal(seen.length, 2);
  const snapshot = stats.snapshot(60_000);
  assert.equal(snapshot.count, 1);
  assert.deepEqual(snapshot.by_source, { sync: 0, job: 1, stream: 0 });
  assert.deepEqual(snapshot.latency_ms, { p50: 12, p99: 12 });
  assert.equal(bus.connected, true);
  await unsubscribe();
  await bus.close();
});
