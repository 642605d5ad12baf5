import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultConfig } from '../src/config/load.js';
import { Stabilizer, recommend, scalingSettings, stabilized, type Role, type RoleInputs, type ScalingSettings } from '../src/scaling/index.js';

const SETTINGS: ScalingSettings = {
  targetQueuePerWorker: 20,
  targetLatencyMs: 1000,
  targetUtilization: 0.5,
  minReplicas: 1,
  maxReplicas: 10,
  stabilizationWindowMs: 300_000,
};

const inputs = (o: Partial<RoleInputs>): RoleInputs => ({ replicas: 2, rate: null, throughputPerReplica: null, p95LatencyMs: null, queueDepth: null, ...o });

describe('scaling signals', () => {
  test('queue: depth ÷ target per worker, rounded up; only workers read it', () => {
    assert.equal(recommend('worker', inputs({ queueDepth: 41 }), SETTINGS).signals.queue, 3);
    assert.equal(recommend('worker', inputs({ queueDepth: 40 }), SETTINGS).signals.queue, 2);
    assert.equal(recommend('api', inputs({ queueDepth: 400 }), SETTINGS).signals.queue, null);
  });

  test('throughput: rate ÷ (throughput per replica × target utilization); no load asks for none', () => {
    // 30/s at 10/s per replica, planned at half of it: 6.
    assert.equal(recommend('api', inputs({ rate: 30, throughputPerReplica: 10 }), SETTINGS).signals.throughput, 6);
    assert.equal(recommend('api', inputs({ rate: 31, throughputPerReplica: 10 }), SETTINGS).signals.throughput, 7);
    assert.equal(recommend('api', inputs({ rate: 0, throughputPerReplica: null }), SETTINGS).signals.throughput, 0);
    // A rate without a measured throughput cannot be turned into replicas: no vote.
    assert.equal(recommend('api', inputs({ rate: 5, throughputPerReplica: null }), SETTINGS).signals.throughput, null);
  });

  test('latency: replicas × p95 ÷ target above the target, no vote at or below it', () => {
    assert.equal(recommend('api', inputs({ replicas: 2, p95LatencyMs: 2500 }), SETTINGS).signals.latency, 5);
    assert.equal(recommend('api', inputs({ replicas: 2, p95LatencyMs: 1000 }), SETTINGS).signals.latency, null);
    assert.equal(recommend('api', inputs({ replicas: 0, p95LatencyMs: 1500 }), SETTINGS).signals.latency, 2);
  });

  test('the largest signal wins and is named; the bounds clamp it', () => {
    const r = recommend('worker', inputs({ queueDepth: 60, rate: 30, throughputPerReplica: 10, p95LatencyMs: 2000 }), SETTINGS);
    assert.deepEqual(r, { replicas: 6, reason: 'throughput', signals: { queue: 3, throughput: 6, latency: 4 } });
    assert.equal(recommend('worker', inputs({ queueDepth: 200 }), SETTINGS).reason, 'queue');
    assert.equal(recommend('api', inputs({ p95LatencyMs: 4000 }), SETTINGS).reason, 'latency');
    assert.deepEqual(recommend('worker', inputs({ queueDepth: 10_000 }), SETTINGS).replicas, 10);
    assert.equal(recommend('worker', inputs({ queueDepth: 10_000 }), SETTINGS).reason, 'max_replicas');
    assert.deepEqual(recommend('api', inputs({ rate: 0 }), SETTINGS), {
      replicas: 1,
      reason: 'min_replicas',
      signals: { queue: null, throughput: 0, latency: null },
    });
    assert.equal(recommend('api', inputs({}), { ...SETTINGS, minReplicas: 0 }).replicas, 0);
  });

  test('the settings come from the config keys; a max below the min yields the min', () => {
    const s = scalingSettings(defaultConfig({ scaling_min_replicas: 4, scaling_max_replicas: 2, scaling_target_utilization: 0.6 }));
    assert.equal(s.minReplicas, 4);
    assert.equal(s.maxReplicas, 4);
    assert.equal(s.targetUtilization, 0.6);
  });
});

describe('desired replicas over a scripted load', () => {
  const INTERVAL = 15_000;
  const WINDOW = SETTINGS.stabilizationWindowMs;

  /** One tick of the scaler: the calculator's recommendation through the stabiliser. */
  function run(role: Role, script: { at: number; inputs: RoleInputs }[]) {
    const stabilizer = new Stabilizer(WINDOW);
    return script.map(({ at, inputs: i }) => ({
      at,
      ...stabilized(recommend(role, i, SETTINGS), stabilizer, at),
      recommended: recommend(role, i, SETTINGS).replicas,
    }));
  }

  test('workers: up at the first interval the queue grows, down only after the stabilisation window, step by step', () => {
    // Depth by minute: idle, a burst of 150 jobs for 3 minutes, then drained.
    const depthAt = (t: number) => (t >= 120_000 && t < 300_000 ? 150 : t >= 300_000 && t < 360_000 ? 50 : 0);
    const script = Array.from({ length: 80 }, (_, k) => ({ at: k * INTERVAL, inputs: inputs({ queueDepth: depthAt(k * INTERVAL) }) }));
    const out = run('worker', script);
    const at = (t: number) => out.find((o) => o.at === t)!;

    assert.equal(at(105_000).replicas, 1);
    // The first evaluation that sees the load asks for all of it at once.
    assert.equal(at(120_000).replicas, 8);
    assert.equal(at(120_000).reason, 'queue');
    // The load falls at 300 s (to 3 workers' worth) and to nothing at 360 s; 8 is held for a window after its last recommendation (285 s).
    for (const o of out) if (o.at >= 120_000 && o.at < 285_000 + WINDOW) assert.equal(o.replicas, 8, `at ${o.at}`);
    assert.equal(at(585_000).reason, 'stabilization');
    // Then down to the highest recommendation still in the window: 3 (last at 345 s) until 645 s, then the minimum.
    assert.equal(at(285_000 + WINDOW).replicas, 3);
    assert.equal(at(345_000 + WINDOW - INTERVAL).replicas, 3);
    assert.equal(at(345_000 + WINDOW).replicas, 1);
    assert.equal(at(345_000 + WINDOW).reason, 'min_replicas');
    // Never below what the load asks for at that moment, never a step up while the load only falls.
    for (let k = 1; k < out.length; k++) {
      const o = out[k]!;
      assert.ok(o.replicas >= o.recommended);
      if (o.at > 120_000) assert.ok(o.replicas <= out[k - 1]!.replicas, `no rise at ${o.at}`);
    }
  });

  test('api: a second rise during the window goes up at once; a flapping load does not flap the count', () => {
    // Throughput 10/s per replica at 50 %: 20/s → 4, 40/s → 8; the load flaps between 20 and 40 every interval for 2 minutes.
    const rateAt = (t: number) => (t < 60_000 ? 5 : t < 180_000 ? ((t / INTERVAL) % 2 === 0 ? 40 : 20) : t < 240_000 ? 60 : 5);
    const script = Array.from({ length: 60 }, (_, k) => ({ at: k * INTERVAL, inputs: inputs({ rate: rateAt(k * INTERVAL), throughputPerReplica: 10 }) }));
    const out = run('api', script);
    const at = (t: number) => out.find((o) => o.at === t)!;
    assert.equal(at(45_000).replicas, 1);
    assert.equal(at(60_000).replicas, 8);
    for (const o of out) if (o.at >= 60_000 && o.at < 180_000) assert.equal(o.replicas, 8, `flapping load, steady count at ${o.at}`);
    assert.equal(at(180_000).replicas, 10);
    assert.equal(at(180_000).reason, 'max_replicas');
    assert.equal(at(225_000 + WINDOW - INTERVAL).replicas, 10);
    assert.equal(at(225_000 + WINDOW).replicas, 1);
  });

  test('a zero window follows the recommendation both ways', () => {
    const stabilizer = new Stabilizer(0);
    assert.deepEqual(
      [5, 2, 7, 1].map((r, k) => stabilizer.next(k * INTERVAL, r)),
      [5, 2, 7, 1],
    );
  });
});
