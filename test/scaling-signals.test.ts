import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics/metrics.js';
import type { LineRow, ProcessRow } from '../src/history/index.js';
import { Scaler, SignalReader, scalingSettings, type ScalingState, type SignalWindow } from '../src/scaling/index.js';
import { tempDir } from './helpers/fixtures.js';
import { TestClock, historyConfig, testProcess, type TestProcess } from './history-helpers.js';

/**
 * The scaler against real history rows: three processes of the history (two API
 * processes, which sample the job queue's depth like `sightline serve`, and a
 * worker) record results into one SQLite file through their own recorders, as
 * they would in a deployment, and the scaler reads them.
 */
describe('signal reader', () => {
  const RES = 10_000;
  const processRow = (bucket: number, id: string, api: boolean): ProcessRow => ({
    resolution_ms: RES,
    bucket_ms: bucket,
    process_id: id,
    errors: 0,
    client_errors: 0,
    rejected: 0,
    gauges: JSON.stringify(api ? { cpu: [0.1, 1, 0.1], jobs_queue_depth: [0, 1, 0] } : { cpu: [0.1, 1, 0.1] }),
  });
  const lineRow = (bucket: number, id: string, line: string, n: number): LineRow => ({
    resolution_ms: RES,
    bucket_ms: bucket,
    process_id: id,
    line,
    ok: n,
    ng: 0,
    latency_sum: n * 10,
    latency_max: 10,
    latency_hist: '[]',
  });
  const windowAt = (end: number): SignalWindow => ({ resolutionMs: RES, currentFrom: end - 60_000, capacityFrom: end - 3_600_000, end });

  test('the throughput per replica is the best bucket of one process in the last hour, kept across incremental reads', () => {
    const reader = new SignalReader();
    const T = 10 * 3_600_000;
    // An API process whose first bucket has no queue gauge yet (it is still an API process), 300 results over two lines in one bucket.
    let w = windowAt(T);
    assert.equal(reader.readFrom(w), T - 3_600_000);
    const first = reader.figures(
      {
        processes: [processRow(T - 30 * 60_000, 'a', false), processRow(T - 20 * 60_000, 'a', true), processRow(T - 50_000, 'a', true)],
        lines: [lineRow(T - 30 * 60_000, 'a', 'l1', 200), lineRow(T - 30 * 60_000, 'a', 'l2', 100), lineRow(T - 50_000, 'a', 'l1', 60)],
      },
      w,
    );
    assert.equal(first.api.throughputPerReplica, 30);
    assert.equal(first.api.replicas, 1);
    assert.equal(first.api.rate, 1);
    assert.equal(first.worker.replicas, 0);
    assert.equal(first.worker.rate, null);

    // 15 s later only the current window is read again; the peak of 30 min ago is still known.
    w = windowAt(T + 15_000);
    assert.equal(reader.readFrom(w), w.currentFrom);
    const second = reader.figures({ processes: [processRow(T, 'a', true), processRow(T, 'w', false)], lines: [lineRow(T, 'w', 'l1', 20)] }, w);
    assert.equal(second.api.throughputPerReplica, 30);
    assert.equal(second.worker.throughputPerReplica, 2);
    assert.equal(second.worker.replicas, 1);

    // An hour after it, the peak is gone.
    w = windowAt(T + 31 * 60_000);
    const later = reader.figures({ processes: [processRow(T + 30 * 60_000, 'a', true)], lines: [lineRow(T + 30 * 60_000, 'a', 'l1', 50)] }, w);
    assert.equal(later.api.throughputPerReplica, 6);
  });
});

describe('scaler on real history rows', () => {
  test('inputs per role from the rows of every process, and desired replicas that follow a scripted load', async (t) => {
    const tmp = tempDir('sightline-scaling-');
    t.after(() => tmp.cleanup());
    const WINDOW = 120_000;
    const INTERVAL = 15_000;
    const config = historyConfig({
      store_url: `sqlite:${join(tmp.dir, 'results.db')}`,
      history_resolution_ms: 1000,
      scaling_interval_ms: INTERVAL,
      scaling_stabilization_window_ms: WINDOW,
      scaling_target_latency_ms: 1000,
      scaling_target_utilization: 0.5,
      scaling_target_queue_per_worker: 10,
      scaling_max_replicas: 20,
    });
    const T0 = Date.UTC(2025, 0, 6, 8, 0, 0);
    const clock = new TestClock(T0);
    const api = [testProcess(t, config, clock, 'api-a'), testProcess(t, config, clock, 'api-b')];
    const worker = testProcess(t, config, clock, 'worker-a');
    for (const p of api) p.metrics.queueDepth.set({ queue: 'jobs' }, 0);
    let depth = 0;
    const metrics = createMetrics();
    const scaler = new Scaler({
      settings: scalingSettings(config),
      intervalMs: INTERVAL,
      history: api[0]!.history,
      queueDepth: async () => depth,
      registry: metrics.registry,
      logger: createLogger('silent'),
      now: clock.now,
    });

    /** One simulated second: results of each process, then every recorder's tick (which writes the bucket that ended). */
    async function second(apiPerProcess: number, apiLatencyMs: number, workerResults: number) {
      const each = (p: TestProcess, n: number, latency: number) => {
        for (let i = 0; i < n; i++) p.result('press-1', 'ok', latency);
      };
      for (const p of api) each(p, apiPerProcess, apiLatencyMs);
      each(worker, workerResults, 40);
      clock.t += 1000;
      for (const p of [...api, worker]) await p.history.recorder.tick();
    }

    // A steady minute and a half: 5/s per API process at 50 ms, 2 jobs/s on the worker.
    for (let s = 0; s < 90; s++) await second(5, 50, 2);
    const steady = await scaler.evaluate();
    assert.equal(steady.roles.api.inputs.replicas, 2);
    assert.equal(steady.roles.worker.inputs.replicas, 1);
    assert.ok(Math.abs((steady.roles.api.inputs.rate ?? 0) - 10) < 0.5, `api rate ${steady.roles.api.inputs.rate}`);
    assert.ok(Math.abs((steady.roles.worker.inputs.rate ?? 0) - 2) < 0.2, `worker rate ${steady.roles.worker.inputs.rate}`);
    assert.equal(steady.roles.api.inputs.throughputPerReplica, 5);
    assert.equal(steady.roles.worker.inputs.throughputPerReplica, 2);
    const p95 = steady.roles.api.inputs.p95LatencyMs ?? 0;
    assert.ok(p95 > 45 && p95 <= 50, `api p95 ${p95}`);
    // 10/s at 5/s per replica, planned at half of it: 4; 2/s at 2/s: 2; the queue is empty.
    assert.deepEqual(steady.roles.api.recommendation.signals, { queue: null, throughput: 4, latency: null });
    assert.deepEqual(steady.roles.worker.recommendation.signals, { queue: 0, throughput: 2, latency: null });
    assert.equal(steady.roles.api.desired, 4);
    assert.match(await metrics.registry.metrics(), /sightline_desired_replicas\{role="api"\} 4\n/);

    // Scripted from here, evaluated every interval: the API slows to 3 s for two minutes; the job queue fills for one.
    const states: ScalingState[] = [];
    const start = clock.t;
    for (let s = 1; s <= 480; s++) {
      const slow = s > 60 && s <= 180;
      depth = s > 60 && s <= 120 ? 75 : 0;
      await second(5, slow ? 3000 : 50, 2);
      if (s % (INTERVAL / 1000) === 0) states.push(await scaler.evaluate());
    }
    const at = (s: ScalingState) => (s.at - start) / 1000;

    // API: the latency signal (2 replicas × 3 s ÷ 1 s = 6) wins within one interval of the slowdown.
    const firstUp = states.find((s) => s.roles.api.desired >= 6);
    assert.ok(firstUp && at(firstUp) > 60 && at(firstUp) <= 60 + INTERVAL / 1000, `api up at ${firstUp && at(firstUp)} s`);
    assert.equal(firstUp.roles.api.reason, 'latency');
    assert.equal(firstUp.roles.api.recommendation.signals.latency, 6);
    // Held while any recommendation of 6 is within the window, then down to what the load asks for.
    const lastHigh = states.filter((s) => s.roles.api.recommendation.replicas >= 6).at(-1)!;
    for (const s of states) {
      if (s.at >= firstUp.at && s.at < lastHigh.at + WINDOW) assert.equal(s.roles.api.desired, 6, `api held at ${at(s)} s`);
      if (s.at > lastHigh.at && s.at < lastHigh.at + WINDOW) assert.equal(s.roles.api.reason, 'stabilization');
    }
    const down = states.find((s) => s.at >= lastHigh.at + WINDOW)!;
    assert.equal(down.roles.api.desired, 4);
    assert.equal(down.roles.api.reason, 'throughput');
    // The slow minutes lie within the window until a minute after they end (p95 of the last minute).
    assert.ok(at(lastHigh) >= 180 && at(lastHigh) <= 180 + 60, `last high recommendation at ${at(lastHigh)} s`);

    // Workers: 75 jobs waiting ÷ 10 per worker = 8 at the first evaluation that sees the queue, held for the window after it empties.
    const workersUp = states.find((s) => s.roles.worker.desired === 8)!;
    assert.equal(at(workersUp), 75);
    assert.equal(workersUp.roles.worker.reason, 'queue');
    for (const s of states) if (at(s) >= 75 && at(s) < 120 + WINDOW / 1000) assert.equal(s.roles.worker.desired, 8, `workers held at ${at(s)} s`);
    assert.equal(states.find((s) => at(s) === 120 + WINDOW / 1000)?.roles.worker.desired, 2);
    assert.match(await metrics.registry.metrics(), /sightline_desired_replicas\{role="worker"\} 2\n/);
  });
});
