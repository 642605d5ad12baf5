import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Migrator } from 'kysely';
import {
  HISTOGRAM_RELATIVE_ERROR,
  HistoryStore,
  bucketIndex,
  bucketLowerBound,
  bucketUpperBound,
  emptyHistogram,
  histogramQuantile,
  type BucketRows,
} from '../src/history/index.js';
import type { Config } from '../src/config/schema.js';
import type { HistoryTables } from '../src/history/history-store.js';
import { historyMigrations } from '../src/history/migrations.js';
import { openDatabase } from '../src/store/open-database.js';
import { tempDir } from './helpers/fixtures.js';
import { POSTGRES_URL, POSTGRES_WHAT, postgresSchemas } from './helpers/postgres-schemas.js';
import { requireOrSkip } from './helpers/requirements.js';
import { TestClock, exactQuantile, historyConfig, inBucketOf, testProcess } from './history-helpers.js';

const pgs = postgresSchemas('sightline_history');
const T0 = Date.UTC(2025, 0, 6, 8, 0, 0);

describe('latency histogram', () => {
  test('bucket bounds: (lower, upper], 8 per doubling, everything above the last bound in the last bucket', () => {
    assert.equal(bucketIndex(0), 0);
    assert.equal(bucketIndex(0.1), 0);
    assert.equal(bucketIndex(0.1000001), 1);
    assert.equal(bucketIndex(0.2), 8);
    assert.equal(bucketIndex(0.2000001), 9);
    for (const ms of [0.37, 1, 3.3, 10, 99.9, 1000, 12_345, 150_000]) {
      const i = bucketIndex(ms);
      assert.ok(ms > bucketLowerBound(i) && ms <= bucketUpperBound(i), `${ms} in bucket ${i}`);
    }
    assert.equal(bucketUpperBound(bucketIndex(1e9)), Number.POSITIVE_INFINITY);
  });

  test('quantiles of a known distribution are within one bucket (≈9 %) of the exact ones', () => {
    const values = Array.from({ length: 10_000 }, (_, i) => 1 + (i % 1000) * 0.5 + (i % 7) * 0.01);
    const hist = emptyHistogram();
    for (const v of values) hist[bucketIndex(v)]! += 1;
    const max = Math.max(...values);
    for (const q of [0.5, 0.95, 0.99]) {
      const estimate = histogramQuantile(hist, q, max)!;
      const exact = exactQuantile(values, q);
      assert.ok(inBucketOf(estimate, exact), `p${q * 100}: ${estimate} vs ${exact}`);
      assert.ok(Math.abs(estimate - exact) / exact <= HISTOGRAM_RELATIVE_ERROR, `p${q * 100}: ${estimate} vs ${exact}`);
    }
    assert.equal(histogramQuantile(emptyHistogram(), 0.5, 0), undefined);
    // The open last bucket is closed by the largest latency seen.
    const slow = emptyHistogram();
    slow[bucketIndex(500_000)] = 10;
    assert.equal(histogramQuantile(slow, 0.99, 500_000)! <= 500_000, true);
  });
});

interface Backend {
  config(overrides: Partial<Config>): Config;
  ok: boolean;
}

function backends(): [string, (t: TestContext) => Backend][] {
  return [
    [
      'sqlite',
      (t) => {
        const tmp = tempDir('sightline-history-');
        t.after(() => tmp.cleanup());
        return { ok: true, config: (o) => historyConfig({ store_url: `sqlite:${join(tmp.dir, 'results.db')}`, ...o }) };
      },
    ],
    [
      'postgres',
      (t) => {
        if (!requireOrSkip(t, pgs.available, POSTGRES_WHAT)) return { ok: false, config: () => historyConfig({}) };
        const schema = pgs.schema();
        return { ok: true, config: (o) => historyConfig({ store_url: POSTGRES_URL, store_schema: schema, ...o }) };
      },
    ],
  ];
}

for (const [name, backend] of backends()) {
  describe(`history store: ${name}`, () => {
    test('two processes writing the same buckets merge: counts add, percentiles from the merged histograms, gauges avg/max/sum', async (t) => {
      const b = backend(t);
      if (!b.ok) return;
      const config = b.config({});
      const clock = new TestClock(T0);
      const a = testProcess(t, config, clock, 'host-a:1:x');
      const c = testProcess(t, config, clock, 'host-b:2:y');
      const latencies: number[] = [];
      clock.t = T0 + 1000;
      // A: 100 results on press-1, 1..100 ms, every 10th NG, and 5 CHECK on press-2 at 300 ms;
      // C: 50 on press-1 at 101..150 ms and 20 on press-2 at 400 ms.
      for (let i = 1; i <= 100; i++) {
        a.result('press-1', i % 10 === 0 ? 'ng' : 'ok', i);
        latencies.push(i);
      }
      for (let i = 0; i < 5; i++) {
        a.result('press-2', 'check', 300);
        latencies.push(300);
      }
      for (let i = 101; i <= 150; i++) {
        c.result('press-1', 'ok', i);
        latencies.push(i);
      }
      for (let i = 0; i < 20; i++) {
        c.result('press-2', 'ng', 400);
        latencies.push(400);
      }
      for (let i = 0; i < 3; i++) a.metrics.requests.inc({ route: '/v1/detect', line: 'press-1', status: '500' });
      c.metrics.requests.inc({ route: '/v1/detect', line: 'press-1', status: '503' }, 2);
      c.metrics.requests.inc({ route: '/v1/detect', line: 'press-2', status: '415' });
      // Probes answering 503 while a dependency is down are not service errors.
      c.metrics.requests.inc({ route: '/readyz', line: 'none', status: '503' }, 5);
      c.metrics.rejected.inc({ reason: 'queue_full' }, 2);
      a.metrics.queueDepth.set({ queue: 'infer:m:1' }, 4);
      c.metrics.queueDepth.set({ queue: 'infer:m:1' }, 6);
      c.metrics.queueDepth.set({ queue: 'infer:n:1' }, 2);
      c.metrics.queueDepth.set({ queue: 'jobs' }, 30);
      a.metrics.memoryRss.set(100);
      c.metrics.memoryRss.set(300);

      clock.t = T0 + 10_000;
      await Promise.all([a.history.recorder.tick(), c.history.recorder.tick()]);

      const answer = await a.history.query({ from: T0, to: T0 + 10_000 });
      assert.equal(answer.resolution, 'fine');
      assert.equal(answer.step_ms, 10_000);
      assert.deepEqual(answer.timestamps, [T0]);
      const s = answer.series;
      assert.deepEqual(s.processes, [2]);
      assert.deepEqual(s.results, [175]);
      assert.deepEqual(s.throughput, [17.5]);
      // check is its own count, not ok, after the round trip through the store.
      assert.deepEqual(s.verdicts, { 'press-1': { ok: [140], ng: [10], check: [0] }, 'press-2': { ok: [0], ng: [20], check: [5] } });
      assert.deepEqual(s.errors, [5]);
      assert.deepEqual(s.client_errors, [1]);
      assert.deepEqual(s.rejected, [2]);
      for (const [q, key] of [
        [0.5, 'p50'],
        [0.95, 'p95'],
        [0.99, 'p99'],
      ] as const) {
        const estimate = s.latency_ms[key][0]!;
        assert.ok(inBucketOf(estimate, exactQuantile(latencies, q)), `${key}: ${estimate} vs ${exactQuantile(latencies, q)}`);
      }
      assert.deepEqual(s.latency_ms.max, [400]);
      assert.equal(s.latency_ms.avg[0], Math.round((latencies.reduce((x, y) => x + y, 0) / latencies.length) * 1000) / 1000);
      // Inference queues add within a process (6 + 2) and per process; the shared job queue is read as avg/max.
      assert.deepEqual(s.queue_depth.inference, { avg: [6], max: [8], sum: [12] });
      assert.deepEqual(s.queue_depth.jobs, { avg: [30], max: [30], sum: [30] });
      assert.deepEqual(s.rss_bytes, { avg: [200], max: [300], sum: [400] });
      assert.equal(s.gpu_utilization, undefined, 'no GPU gauge was ever set');
      // The other process answers the same.
      assert.deepEqual(await c.history.query({ from: T0, to: T0 + 10_000 }), answer);
      // The coarse rows (rewritten with their running totals) count check apart too.
      const rollup = config.history_rollup_resolution_ms;
      const coarse = await a.history.query({ from: T0, to: T0 + rollup, stepMs: rollup });
      assert.equal(coarse.resolution, 'coarse');
      assert.deepEqual(coarse.series.results, [175]);
      assert.deepEqual(coarse.series.verdicts, s.verdicts);
    });

    test('a bucket written again is replaced, not added; prune removes only older rows of its resolution', async (t) => {
      const b = backend(t);
      if (!b.ok) return;
      const config = b.config({});
      const store = new HistoryStore(config.store_url, config.store_schema ? { schema: config.store_schema } : {});
      t.after(() => store.close());
      const rows = (res: number, bucket: number, ok: number, check?: number): BucketRows => ({
        process: { resolution_ms: res, bucket_ms: bucket, process_id: 'p', errors: ok, client_errors: 0, rejected: 0, gauges: '{}' },
        lines: [
          {
            resolution_ms: res,
            bucket_ms: bucket,
            process_id: 'p',
            line: 'l',
            ok,
            ng: 0,
            ...(check === undefined ? {} : { check_count: check }),
            latency_sum: ok,
            latency_max: 1,
            latency_hist: '[[80,1]]',
          },
        ],
      });
      await store.write([rows(10_000, T0, 1, 4)]);
      // The check count is replaced with the rest; a row written without one has 0.
      await store.write([rows(10_000, T0, 5, 3), rows(10_000, T0 + 10_000, 2), rows(60_000, T0 - 60_000, 7, 1)]);
      const read = await store.read(10_000, T0, T0 + 20_000);
      assert.deepEqual(
        read.lines.map((r) => [r.bucket_ms, r.ok, r.check_count]),
        [
          [T0, 5, 3],
          [T0 + 10_000, 2, 0],
        ],
      );
      assert.deepEqual(
        (await store.read(60_000, T0 - 60_000, T0)).lines.map((r) => [r.ok, r.check_count]),
        [[7, 1]],
      );
      assert.equal(typeof read.processes[0]?.bucket_ms, 'number');
      assert.equal(await store.prune(10_000, T0 + 10_000), 2, 'one process row and one line row');
      assert.deepEqual([...(await store.rowCounts())].sort(), [
        [10_000, { processes: 1, lines: 1 }],
        [60_000, { processes: 1, lines: 1 }],
      ]);
    });

    test('a database from before check was counted apart: the new migration adds check_count, 0 in the rows already there', async (t) => {
      const b = backend(t);
      if (!b.ok) return;
      const config = b.config({});
      // The tables as the first migration made them (the same bookkeeping tables as HistoryStore's), with a row of then.
      const open = openDatabase<HistoryTables>(config.store_url, config.store_schema ? { schema: config.store_schema } : {});
      const migrator = new Migrator({
        db: open.db,
        provider: historyMigrations(open.kind, open.schema),
        ...(open.schema ? { migrationTableSchema: open.schema } : {}),
        migrationTableName: 'sightline_history_migration',
        migrationLockTableName: 'sightline_history_migration_lock',
      });
      const { error } = await migrator.migrateTo('0001_history');
      assert.ifError(error);
      const old = open.schema ? open.db.withSchema(open.schema) : open.db;
      const base = { resolution_ms: 10_000, bucket_ms: T0, line: 'l', latency_sum: 10, latency_max: 2, latency_hist: '[[80,10]]' };
      await old
        .insertInto('history_lines')
        .values({ ...base, process_id: 'before', ok: 9, ng: 1 })
        .execute();
      await open.db.destroy();

      const store = new HistoryStore(config.store_url, config.store_schema ? { schema: config.store_schema } : {});
      t.after(() => store.close());
      await store.write([
        {
          process: { resolution_ms: 10_000, bucket_ms: T0, process_id: 'after', errors: 0, client_errors: 0, rejected: 0, gauges: '{}' },
          lines: [{ ...base, process_id: 'after', ok: 3, ng: 1, check_count: 6 }],
        },
      ]);
      const read = await store.read(10_000, T0, T0 + 10_000);
      assert.deepEqual(read.lines.map((r) => [r.process_id, r.ok, r.ng, r.check_count]).sort(), [
        ['after', 3, 1, 6],
        ['before', 9, 1, 0],
      ]);
    });
  });
}
