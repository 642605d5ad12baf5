import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Fastify from 'fastify';
import { HistoryRecorder, HistoryStore, MAX_PENDING_BUCKETS, historyMetrics, type BucketRows } from '../src/history/index.js';
import { Errors } from '../src/errors.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { historyRoutes } from '../src/server/routes/history.js';
import { tempDir } from './helpers/fixtures.js';
import { TestClock, exactQuantile, historyConfig, inBucketOf, seeded, testProcess } from './history-helpers.js';

const T0 = Date.UTC(2025, 0, 6, 8, 0, 0);
const LINES = ['press-1', 'press-2', 'weld-3'];

/** What the test sent, per fine bucket (10 s) and per minute. */
class Sent {
  readonly byBucket = new Map<number, { latencies: number[]; lines: Map<string, { ok: number; ng: number }>; errors: number; rejected: number }>();
  at(bucket: number) {
    let e = this.byBucket.get(bucket);
    if (!e) this.byBucket.set(bucket, (e = { latencies: [], lines: new Map(), errors: 0, rejected: 0 }));
    return e;
  }
  /** The buckets [from, to) merged. */
  span(from: number, to: number) {
    const out = { latencies: [] as number[], lines: new Map<string, { ok: number; ng: number }>(), errors: 0, rejected: 0 };
    for (const [start, e] of this.byBucket) {
      if (start < from || start >= to) continue;
      out.latencies.push(...e.latencies);
      out.errors += e.errors;
      out.rejected += e.rejected;
      for (const [line, v] of e.lines) {
        const o = out.lines.get(line) ?? { ok: 0, ng: 0 };
        o.ok += v.ok;
        o.ng += v.ng;
        out.lines.set(line, o);
      }
    }
    return out;
  }
}

test('after 2 minutes of traffic from two processes the series have the counts and percentiles that were sent', async (t) => {
  const tmp = tempDir('sightline-history-');
  t.after(() => tmp.cleanup());
  const config = historyConfig({ store_url: `sqlite:${join(tmp.dir, 'results.db')}` });
  const clock = new TestClock(T0);
  const processes = [testProcess(t, config, clock, 'api-1:10:a'), testProcess(t, config, clock, 'worker-1:20:b')];
  const random = seeded(42);
  const sent = new Sent();
  const depthSamples = new Map<number, number[]>();

  // 120 s at 50 ms per step: each step one result per process (≈40 results/s in all),
  // latencies log-normal-ish around 20 ms with a slow tail; errors and rejections now and then.
  for (let ms = 0; ms < 120_000; ms += 50) {
    clock.t = T0 + ms;
    const bucket = T0 + Math.floor(ms / 10_000) * 10_000;
    const e = sent.at(bucket);
    for (const [i, p] of processes.entries()) {
      const line = LINES[Math.floor(random() * LINES.length)] as string;
      const latency = Math.round(20 * Math.exp(random() * 1.5) * (random() < 0.02 ? 8 : 1) * 1000) / 1000;
      const verdict = random() < 0.15 ? 'ng' : 'ok';
      p.result(line, verdict, latency);
      e.latencies.push(latency);
      const counts = e.lines.get(line) ?? { ok: 0, ng: 0 };
      counts[verdict]++;
      e.lines.set(line, counts);
      if (random() < 0.01) {
        p.metrics.requests.inc({ route: '/v1/detect', line, status: '500' });
        e.errors++;
      }
      if (random() < 0.01) {
        p.metrics.rejected.inc({ reason: 'queue_full' });
        e.rejected++;
      }
      if (i === 0 && random() < 0.05) p.metrics.requests.inc({ route: '/readyz', line: 'none', status: '503' });
    }
    // Once a simulated second: the gauges move and the recorders sample (closing a bucket when its time is up).
    if (ms % 1000 === 950) {
      clock.t = T0 + ms + 50;
      const depth = Math.floor(ms / 1000) % 7;
      processes[0]!.metrics.queueDepth.set({ queue: 'infer:defects:1' }, depth);
      const samples = depthSamples.get(bucket) ?? [];
      samples.push(depth);
      depthSamples.set(bucket, samples);
      await Promise.all(processes.map((p) => p.history.recorder.tick()));
    }
  }

  // Fine: 12 points of 10 s, each exactly what was sent in it.
  const fine = await processes[1]!.history.query({ from: T0, to: T0 + 120_000 });
  assert.equal(fine.resolution, 'fine');
  assert.equal(fine.timestamps.length, 12);
  let total = 0;
  for (const [i, start] of fine.timestamps.entries()) {
    const e = sent.span(start, start + 10_000);
    total += e.latencies.length;
    assert.equal(fine.series.results[i], e.latencies.length, `results at ${i}`);
    assert.equal(fine.series.throughput[i], e.latencies.length / 10);
    assert.equal(fine.series.processes[i], 2);
    assert.equal(fine.series.errors[i], e.errors, `errors at ${i}`);
    assert.equal(fine.series.rejected[i], e.rejected, `rejected at ${i}`);
    for (const line of LINES) {
      assert.equal(fine.series.verdicts[line]?.ok[i], e.lines.get(line)?.ok ?? 0, `${line} ok at ${i}`);
      assert.equal(fine.series.verdicts[line]?.ng[i], e.lines.get(line)?.ng ?? 0, `${line} ng at ${i}`);
    }
    for (const [q, key] of [
      [0.5, 'p50'],
      [0.95, 'p95'],
      [0.99, 'p99'],
    ] as const) {
      const estimate = fine.series.latency_ms[key][i]!;
      const exact = exactQuantile(e.latencies, q);
      assert.ok(inBucketOf(estimate, exact), `${key} at ${i}: ${estimate} vs ${exact}`);
    }
    assert.equal(fine.series.latency_ms.max[i], Math.max(...e.latencies));
    const depths = depthSamples.get(start)!;
    assert.equal(fine.series.queue_depth.inference.max[i], Math.max(...depths));
    assert.equal(fine.series.queue_depth.inference.avg[i], Math.round((depths.reduce((a, b) => a + b, 0) / depths.length) * 1000) / 1000);
  }
  assert.equal(total, 4800);

  // A step of 30 s aggregates three fine buckets; a step of 1 min reads the coarse series.
  for (const [step, resolution] of [
    [30_000, 'fine'],
    [60_000, 'coarse'],
  ] as const) {
    const answer = await processes[0]!.history.query({ from: T0, to: T0 + 120_000, stepMs: step });
    assert.equal(answer.resolution, resolution);
    assert.equal(answer.step_ms, step);
    assert.equal(answer.timestamps.length, 120_000 / step);
    for (const [i, start] of answer.timestamps.entries()) {
      const e = sent.span(start, start + step);
      assert.equal(answer.series.results[i], e.latencies.length, `${step}: results at ${i}`);
      assert.equal(answer.series.errors[i], e.errors, `${step}: errors at ${i}`);
      for (const line of LINES) assert.equal(answer.series.verdicts[line]?.ng[i], e.lines.get(line)?.ng ?? 0);
      for (const q of [0.5, 0.95, 0.99] as const) {
        const key = `p${Math.round(q * 100)}` as 'p50' | 'p95' | 'p99';
        const estimate = answer.series.latency_ms[key][i]!;
        assert.ok(inBucketOf(estimate, exactQuantile(e.latencies, q)), `${step} ${key} at ${i}: ${estimate} vs ${exactQuantile(e.latencies, q)}`);
      }
    }
  }

  // One line only: its results and verdicts; the process gauges and errors stay.
  const one = await processes[0]!.history.query({ from: T0, to: T0 + 60_000, stepMs: 60_000, line: 'weld-3' });
  const weld = sent.span(T0, T0 + 60_000).lines.get('weld-3')!;
  assert.deepEqual(Object.keys(one.series.verdicts), ['weld-3']);
  assert.deepEqual(one.series.results, [weld.ok + weld.ng]);
  assert.deepEqual(one.series.errors, [sent.span(T0, T0 + 60_000).errors]);

  // The route answers from the same clock: its default range (the last hour up to the simulated now) holds all of it.
  const app = Fastify();
  await app.register(historyRoutes, { history: processes[0]!.history });
  t.after(() => app.close());
  const viaRoute = await app.inject('/v1/stats/history');
  assert.equal(viaRoute.statusCode, 200, viaRoute.body);
  assert.equal(viaRoute.json().to, new Date(clock.t).toISOString());
  assert.equal(
    viaRoute.json().series.results.reduce((a: number, v: number | null) => a + (v ?? 0), 0),
    4800,
  );
  const isoRange = `from=${new Date(T0).toISOString()}&to=${new Date(T0 + 120_000).toISOString()}&step=30s`;
  assert.deepEqual(
    (await app.inject(`/v1/stats/history?${isoRange}`)).json(),
    await processes[1]!.history.query({ from: T0, to: T0 + 120_000, stepMs: 30_000 }),
  );

  // Before any traffic: a gap (null), not zero.
  const before = await processes[0]!.history.query({ from: T0 - 60_000, to: T0 });
  assert.ok(before.series.results.every((v) => v === null));
  assert.ok(before.series.latency_ms.p99.every((v) => v === null));
});

/** The real store, with an outage the test switches on and off. */
class FlakyStore extends HistoryStore {
  down = false;
  override async write(buckets: readonly BucketRows[]): Promise<void> {
    if (this.down) throw new Errors.STORE_UNAVAILABLE('test outage');
    return super.write(buckets);
  }
}

test('a store outage never fails recording: flushes fail and are counted, the backlog is written once it is back, and stays bounded', async (t) => {
  const tmp = tempDir('sightline-history-');
  t.after(() => tmp.cleanup());
  const store = new FlakyStore(`sqlite:${join(tmp.dir, 'results.db')}`);
  t.after(() => store.close());
  const metrics = createMetrics();
  const hm = historyMetrics(metrics.registry);
  const clock = new TestClock(T0);
  const recorder = new HistoryRecorder({
    store,
    metrics,
    historyMetrics: hm,
    logger: createLogger('silent'),
    processId: 'p',
    resolutionMs: 10_000,
    retentionMs: 86_400_000,
    rollupResolutionMs: 60_000,
    rollupRetentionMs: 30 * 86_400_000,
    maxLines: 100,
    now: clock.now,
  });
  const frame = (line: string) =>
    recorder.onInspected({
      source: 'job',
      at: clock.t,
      image: Buffer.alloc(0),
      result: {
        request_id: 'x',
        line,
        camera: 'default',
        model: { name: 'm', version: '1' },
        image: { width: 1, height: 1 },
        detections: [],
        verdict: 'ok',
        timings_ms: { queue: 0, decode: 0, preprocess: 0, infer: 5, postprocess: 0, total: 5 },
      },
    });
  const exported = async (name: string) => (await metrics.registry.metrics()).match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1];
  assert.equal(await exported('sightline_history_flush_failures_total'), '0', 'exported as 0 from the start');

  store.down = true;
  for (let i = 0; i < 3; i++) {
    clock.t = T0 + i * 10_000 + 5000;
    frame('press-1');
    clock.t = T0 + (i + 1) * 10_000;
    await recorder.tick();
  }
  assert.equal(await exported('sightline_history_flush_failures_total'), '3');
  assert.equal(await exported('sightline_history_pending_buckets'), '4', 'three fine buckets and the coarse one');

  store.down = false;
  clock.t = T0 + 40_000;
  await recorder.tick();
  assert.equal(await exported('sightline_history_pending_buckets'), '0');
  const rows = await store.read(10_000, T0, T0 + 40_000);
  assert.deepEqual(
    rows.lines.map((r) => [r.bucket_ms - T0, r.ok]),
    [
      [0, 1],
      [10_000, 1],
      [20_000, 1],
    ],
  );
  assert.deepEqual(
    (await store.read(60_000, T0, T0 + 60_000)).lines.map((r) => r.ok),
    [3],
    'the coarse bucket holds all three',
  );

  // A long outage: the backlog stops at its bound and the oldest buckets are dropped and counted.
  store.down = true;
  const buckets = MAX_PENDING_BUCKETS + 50;
  for (let i = 5; i < 5 + buckets; i++) {
    clock.t = T0 + i * 10_000;
    frame('press-1');
    await recorder.tick();
  }
  const pending = Number(await exported('sightline_history_pending_buckets'));
  assert.equal(pending, MAX_PENDING_BUCKETS);
  assert.ok(Number(await exported('sightline_history_dropped_buckets_total')) > 0);
  store.down = false;
  await recorder.close();
  const newest = await store.read(10_000, T0 + (5 + buckets - 10) * 10_000, T0 + (5 + buckets) * 10_000);
  assert.equal(newest.lines.length, 10, 'the newest buckets survived the outage');
});
