import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { HistoryStore, historySettings, type BucketRows } from '../src/history/index.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { createLogger } from '../src/logger.js';
import { FORECAST_STEP_MS, FORECAST_STEPS, ProfileSource, Scaler, forecast, scalingSettings, type Role, type ScalingSettings } from '../src/scaling/index.js';
import { tempDir } from './helpers/fixtures.js';
import { POSTGRES_URL, POSTGRES_WHAT, postgresSchemas } from './helpers/postgres-schemas.js';
import { requireOrSkip } from './helpers/requirements.js';
import { historyConfig, seeded } from './history-helpers.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const WEEK = 7 * 24 * HOUR;
/** Coarse buckets of five minutes keep four weeks of rows to a few thousand per process. */
const RESOLUTION = 5 * MINUTE;
const WEEKS = 4;

/**
 * The synthetic weekly pattern in the process's local time, as a factory runs:
 * two shifts on weekdays with a ramp over the hours, a quiet night, little at
 * the weekend. Results per second of the API processes; workers see half.
 */
function pattern(t: number): number {
  const d = new Date(t);
  const day = d.getDay();
  const hour = d.getHours();
  if (day === 0 || day === 6) return 0.5;
  if (hour >= 6 && hour < 14) return 8 + (hour - 6) * 0.5;
  if (hour >= 14 && hour < 22) return 5;
  return 1;
}
const ROLE_SHARE: Record<Role, number> = { api: 1, worker: 0.5 };
const pgs = postgresSchemas('sightline_scaling');

/** The mean of the pattern over [from, to), sampled every 10 s: independent of how the forecast samples it. */
function patternMean(from: number, to: number, share: number): number {
  let sum = 0;
  let n = 0;
  for (let t = from; t < to; t += 10_000, n++) sum += pattern(t) * share;
  return sum / n;
}

/** A Wednesday 13:40 local time, five weeks after a Monday: the forecast runs across the 14:00 shift change. */
function wednesdayAt1340(): number {
  const d = new Date(2025, 5, 4, 13, 40, 0, 0);
  assert.equal(d.getDay(), 3);
  return d.getTime();
}

/** One coarse bucket of an API process (it samples the job queue) and one of a worker (it does not), with noisy counts around the pattern. */
function bucketRows(bucket: number, random: () => number): BucketRows[] {
  const rows: BucketRows[] = [];
  for (const role of ['api', 'worker'] as const) {
    const processId = `${role}-1`;
    const expected = pattern(bucket) * ROLE_SHARE[role] * (RESOLUTION / 1000);
    const count = Math.round(expected * (0.8 + 0.4 * random()));
    const gauges = role === 'api' ? { cpu: [0.4, 1, 0.4], jobs_queue_depth: [0, 1, 0] } : { cpu: [0.4, 1, 0.4] };
    rows.push({
      process: {
        resolution_ms: RESOLUTION,
        bucket_ms: bucket,
        process_id: processId,
        errors: 0,
        client_errors: 0,
        rejected: 0,
        gauges: JSON.stringify(gauges),
      },
      lines:
        count > 0
          ? [
              {
                resolution_ms: RESOLUTION,
                bucket_ms: bucket,
                process_id: processId,
                line: 'press-1',
                ok: count,
                ng: 0,
                latency_sum: count * 20,
                latency_max: 30,
                latency_hist: '[]',
              },
            ]
          : [],
    });
  }
  return rows;
}

/**
 * A real history store (a SQLite file, or a PostgreSQL schema) holding WEEKS
 * weeks of coarse rows before `now`, less the buckets `skip` names (outages).
 */
async function historyWithPattern(t: TestContext, now: number, skip: (bucket: number) => boolean = () => false, backend: 'sqlite' | 'postgres' = 'sqlite') {
  let location: { store_url: string; store_schema?: string };
  if (backend === 'postgres') {
    location = { store_url: POSTGRES_URL, store_schema: pgs.schema() };
  } else {
    const tmp = tempDir('sightline-scaling-');
    t.after(() => tmp.cleanup());
    location = { store_url: `sqlite:${join(tmp.dir, 'results.db')}` };
  }
  const config = historyConfig({ ...location, history_rollup_resolution_ms: RESOLUTION, scaling_target_utilization: 0.5, scaling_max_replicas: 20 });
  const store = new HistoryStore(location.store_url, location.store_schema ? { schema: location.store_schema } : {});
  t.after(() => store.close());
  const random = seeded(17);
  const end = Math.floor(now / RESOLUTION) * RESOLUTION;
  const rows: BucketRows[] = [];
  for (let bucket = end - WEEKS * WEEK; bucket < end; bucket += RESOLUTION) if (!skip(bucket)) rows.push(...bucketRows(bucket, random));
  await store.write(rows);
  return { store, config, end };
}

const SETTINGS: ScalingSettings = {
  targetQueuePerWorker: 20,
  targetLatencyMs: 1000,
  targetUtilization: 0.5,
  minReplicas: 1,
  maxReplicas: 20,
  stabilizationWindowMs: 0,
};
const TOLERANCE = 0.08;

function assertRecovers(steps: ReturnType<typeof forecast>, now: number) {
  assert.equal(steps.length, FORECAST_STEPS);
  steps.forEach((step, i) => {
    assert.equal(step.from, now + i * FORECAST_STEP_MS);
    assert.equal(step.to - step.from, FORECAST_STEP_MS);
    for (const role of ['api', 'worker'] as const) {
      const want = patternMean(step.from, step.to, ROLE_SHARE[role]);
      const got = step.rate[role];
      assert.ok(got !== null && Math.abs(got - want) <= TOLERANCE * want, `${role} step ${i}: ${got}/s, pattern ${want}/s`);
    }
  });
}

describe('forecast from the hour-of-week profile', () => {
  test('recovers a synthetic weekly pattern from four weeks of stored history, across a shift change', async (t) => {
    const now = wednesdayAt1340();
    const { store } = await historyWithPattern(t, now);
    const profile = await new ProfileSource({ store, resolutionMs: RESOLUTION, retentionMs: 30 * 24 * HOUR }).profile(now);
    assert.equal(profile.coveredSlots, 168);
    assert.ok(profile.weeks >= WEEKS);
    // The recent level agrees with the pattern: the forecast is the profile.
    const recent = { api: pattern(now), worker: pattern(now) * 0.5 };
    const steps = forecast({ now, profile, recent, throughputPerReplica: { api: 2, worker: 1 }, settings: SETTINGS });
    assertRecovers(steps, now);
    // 13:40–14:00 is the end of the early shift (11/s), 14:00–14:10 the late one (5/s): the steps follow it.
    assert.ok((steps[0]?.rate.api ?? 0) > 10 && (steps[5]?.rate.api ?? 99) < 6, JSON.stringify(steps.map((s) => s.rate.api)));
    // Desired replicas per step: the throughput signal at the expected rate (2/s per replica at 50 %: 1/s each).
    for (const step of steps) {
      assert.equal(step.desired.api, Math.ceil((step.rate.api ?? 0) / (2 * 0.5) - 1e-9));
      assert.equal(step.desired.worker, Math.ceil((step.rate.worker ?? 0) / (1 * 0.5) - 1e-9));
    }
    // About 11/s and 5/s, within the noise of the counts: 11 or 12 replicas, then 5 or 6.
    assert.ok([11, 12].includes(steps[0]?.desired.api ?? 0), `first step: ${steps[0]?.desired.api}`);
    assert.ok([5, 6].includes(steps[5]?.desired.api ?? 0), `last step: ${steps[5]?.desired.api}`);
  });

  test('the same from PostgreSQL (bucket starts come back as strings there)', async (t) => {
    if (!requireOrSkip(t, pgs.available, POSTGRES_WHAT)) return;
    const now = wednesdayAt1340();
    const { store } = await historyWithPattern(t, now, undefined, 'postgres');
    const profile = await new ProfileSource({ store, resolutionMs: RESOLUTION, retentionMs: 30 * 24 * HOUR }).profile(now);
    assert.equal(profile.coveredSlots, 168);
    assertRecovers(forecast({ now, profile, recent: { api: null, worker: null }, throughputPerReplica: { api: 2, worker: 1 }, settings: SETTINGS }), now);
  });

  test('an outage is a gap, not a quiet hour; a recent level above the profile lifts the near steps and fades', async (t) => {
    const now = wednesdayAt1340();
    // The service was down on Wednesdays 14:00–15:00 in two of the four weeks.
    const down = (bucket: number) => {
      const d = new Date(bucket);
      return d.getDay() === 3 && d.getHours() === 14 && bucket < now - 2 * WEEK;
    };
    const { store } = await historyWithPattern(t, now, down);
    const profile = await new ProfileSource({ store, resolutionMs: RESOLUTION, retentionMs: 30 * 24 * HOUR }).profile(now);
    assertRecovers(forecast({ now, profile, recent: { api: null, worker: null }, throughputPerReplica: { api: 2, worker: 1 }, settings: SETTINGS }), now);

    // 6/s more than usual right now: the first step carries most of it, the gap shrinks step by step.
    const lifted = forecast({ now, profile, recent: { api: pattern(now) + 6, worker: null }, throughputPerReplica: { api: 2, worker: 1 }, settings: SETTINGS });
    const excess = lifted.map((s) => (s.rate.api ?? 0) - patternMean(s.from, s.to, 1));
    assert.ok((excess[0] ?? 0) > 4.5 && (excess[0] ?? 0) < 6.5, `first step +${excess[0]}`);
    for (let i = 1; i < excess.length; i++) assert.ok((excess[i] ?? 0) < (excess[i - 1] ?? 0), `fading: ${excess.join(', ')}`);
    assert.ok((excess[5] ?? 0) < 3.5, `last step +${excess[5]}`);
  });

  test('the scaler serves the same forecast from the configured store, refreshes incrementally and sets the forecast gauge', async (t) => {
    const now = wednesdayAt1340();
    const { store, config, end } = await historyWithPattern(t, now);
    let clock = now;
    const metrics = createMetrics();
    const scaler = new Scaler({
      settings: scalingSettings(config),
      intervalMs: config.scaling_interval_ms,
      history: { store, settings: historySettings(config) },
      queueDepth: async () => 0,
      registry: metrics.registry,
      logger: createLogger('silent'),
      now: () => clock,
    });
    await scaler.evaluate();
    const first = await scaler.forecast();
    assert.equal(first.coveredSlots, 168);
    // No fine rows: no recent level, no measured throughput; the profile alone gives the rates.
    assertRecovers(first.steps, now);
    assert.deepEqual(
      first.steps.map((s) => s.desired.api),
      first.steps.map(() => null),
    );

    // A week later, a bucket of a new pattern (ten times the usual) is written: the next evaluation reads it without rereading the rest.
    clock = now + RESOLUTION;
    await store.write(bucketRows(end, () => 0.5).map((r) => ({ ...r, lines: r.lines.map((l) => ({ ...l, ok: l.ok * 10 * WEEKS })) })));
    await scaler.evaluate();
    const second = await scaler.forecast();
    const sameSlot = second.steps.find((s) => new Date(s.from + FORECAST_STEP_MS / 2).getHours() === 13);
    assert.ok(sameSlot && (sameSlot.rate.api ?? 0) > patternMean(sameSlot.from, sameSlot.to, 1) * 1.3, JSON.stringify(sameSlot));
    const text = await metrics.registry.metrics();
    assert.match(text, /sightline_desired_replicas\{role="api"\} 1/);
  });
});
