import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { authApp, bearer, hsToken } from './auth-helpers.js';

interface RoleInputs {
  replicas: number;
  rate: number | null;
  throughput_per_replica: number | null;
  p95_latency_ms: number | null;
}
interface Answer {
  evaluated_at: string;
  interval_ms: number;
  settings: Record<string, number>;
  inputs: { queue_depth: number | null; roles: { api: RoleInputs; worker: RoleInputs } };
  desired: Record<'api' | 'worker', { replicas: number; reason: string; recommended: number; signals: Record<string, number | null> }>;
  forecast: {
    weeks: number;
    covered_slots: number;
    steps: { from: string; to: string; rate: Record<string, number | null>; desired_replicas: Record<string, number | null> }[];
  };
}

describe('GET /v1/scaling', () => {
  const tmp = tempDir();
  let app: FastifyInstance;
  let image: Buffer;

  before(async () => {
    writeDecoderModels(tmp.dir);
    // One-second history buckets and a fast scaler, so real traffic shows up within seconds.
    app = await startApp({
      models_dir: tmp.dir,
      default_model: 'v8',
      history_resolution_ms: 1000,
      scaling_interval_ms: 200,
      scaling_target_queue_per_worker: 2,
      scaling_max_replicas: 7,
      scaling_stabilization_window_ms: 60_000,
    });
    image = await solidImage(320, 240, 'jpeg');
  });
  after(async () => {
    await app.close();
    tmp.cleanup();
  });

  const get = async () => {
    const res = await app.inject('/v1/scaling');
    assert.equal(res.statusCode, 200, res.body);
    return res.json() as Answer;
  };

  test('real detections show up as inputs of the api role, with the desired counts, their reasons, the gauge and a six-step forecast', async () => {
    const idle = await get();
    assert.equal(idle.interval_ms, 200);
    assert.deepEqual(idle.settings, {
      target_queue_per_worker: 2,
      target_latency_ms: 1000,
      target_utilization: 0.7,
      min_replicas: 1,
      max_replicas: 7,
      stabilization_window_ms: 60_000,
    });
    assert.equal(idle.forecast.steps.length, 6);
    for (const [i, step] of idle.forecast.steps.entries()) assert.equal(Date.parse(step.to) - Date.parse(step.from), 300_000, `step ${i}`);

    for (let i = 0; i < 10; i++) {
      const res = await app.inject({ method: 'POST', url: '/v1/detect?line=press-1', headers: { 'content-type': 'image/jpeg' }, payload: image });
      assert.equal(res.statusCode, 200);
    }
    // This process (an API process: it samples the job queue) with its results, once its buckets are written and read.
    let answer = idle;
    for (let i = 0; i < 200 && !(answer.inputs.roles.api.rate && answer.inputs.roles.api.rate > 0); i++) {
      await new Promise((r) => setTimeout(r, 100));
      answer = await get();
    }
    const apiInputs = answer.inputs.roles.api;
    assert.equal(apiInputs.replicas, 1);
    assert.ok((apiInputs.rate ?? 0) > 0, JSON.stringify(apiInputs));
    assert.ok((apiInputs.throughput_per_replica ?? 0) >= 1, JSON.stringify(apiInputs));
    assert.ok((apiInputs.p95_latency_ms ?? 0) > 0, JSON.stringify(apiInputs));
    assert.equal(answer.inputs.roles.worker.replicas, 0);
    assert.equal(answer.inputs.roles.worker.rate, null);
    assert.ok(answer.desired.api.replicas >= 1 && answer.desired.api.replicas <= 7);
    assert.ok(['throughput', 'min_replicas', 'latency'].includes(answer.desired.api.reason), answer.desired.api.reason);
    // A rate measured here now also gives the forecast a level: rates for every step.
    assert.ok(answer.forecast.steps.every((s) => s.rate.api !== null));

    const metrics = await app.inject('/metrics');
    assert.match(metrics.body, new RegExp(`sightline_desired_replicas\\{role="api"\\} ${answer.desired.api.replicas}\\n`));
    assert.match(metrics.body, /sightline_desired_replicas\{role="worker"\} \d+\n/);
  });

  test('the job queue: jobs waiting raise the desired workers (depth ÷ scaling_target_queue_per_worker)', async () => {
    const app2 = await startApp({
      models_dir: tmp.dir,
      default_model: 'v8',
      worker: false,
      scaling_interval_ms: 200,
      scaling_target_queue_per_worker: 2,
      scaling_max_replicas: 7,
    });
    try {
      for (let i = 0; i < 9; i++) {
        const res = await app2.inject({ method: 'POST', url: '/v1/jobs?line=press-1', headers: { 'content-type': 'image/jpeg' }, payload: image });
        assert.equal(res.statusCode, 202, res.body);
      }
      let answer: Answer | undefined;
      for (let i = 0; i < 100; i++) {
        answer = (await app2.inject('/v1/scaling')).json() as Answer;
        if (answer.inputs.queue_depth === 9) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(answer?.inputs.queue_depth, 9);
      // 9 jobs ÷ 2 per worker: 5 workers, the queue signal decides (nothing else asks for as many).
      const worker = answer?.desired.worker;
      assert.equal(worker?.signals.queue, 5);
      assert.equal(worker?.recommended, 5);
      assert.equal(worker?.replicas, 5);
      assert.equal(worker?.reason, 'queue');
      const metrics = await app2.inject('/metrics');
      assert.match(metrics.body, /sightline_scaling_signal_replicas\{role="worker",signal="queue"\} 5\n/);
    } finally {
      await app2.close();
    }
  });

  test('an unknown parameter is 400 INVALID_REQUEST; a database out of reach is 503 STORE_UNAVAILABLE with Retry-After', async () => {
    const bad = await app.inject('/v1/scaling?window=5m');
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, 'INVALID_REQUEST');
    const away = await startApp({ models_dir: tmp.dir, store_url: 'postgres://127.0.0.1:1/nothing' }, { wait: false });
    try {
      const res = await away.inject('/v1/scaling');
      assert.equal(res.statusCode, 503);
      assert.equal(res.json().error.code, 'STORE_UNAVAILABLE');
      assert.ok(Number(res.headers['retry-after']) >= 1);
    } finally {
      await away.close();
    }
  });

  test('viewer role: refused without a credential, refused to ingest, answered to a viewer', async () => {
    const { app: secured, close } = await authApp();
    try {
      const remote = { remoteAddress: '203.0.113.9' };
      assert.equal((await secured.inject({ url: '/v1/scaling', ...remote })).statusCode, 401);
      const ingest = await hsToken({ roles: ['ingest'] });
      const ingestRes = await secured.inject({ url: '/v1/scaling', headers: bearer(ingest), ...remote });
      assert.equal(ingestRes.statusCode, 403);
      const viewer = await hsToken({ roles: ['viewer'] });
      const res = await secured.inject({ url: '/v1/scaling', headers: bearer(viewer), ...remote });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal((res.json() as Answer).desired.api.replicas, 1);
    } finally {
      await close();
    }
  });
});
