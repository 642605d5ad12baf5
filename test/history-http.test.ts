import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { defaultConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { startWorkerRuntime } from '../src/runtime.js';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';

type Series = Record<string, unknown> & {
  results: (number | null)[];
  client_errors: (number | null)[];
  verdicts: Record<string, { ok: (number | null)[]; ng: (number | null)[]; check: (number | null)[] }>;
  latency_ms: { p50: (number | null)[]; p99: (number | null)[] };
  rss_bytes: { avg: (number | null)[] };
};

const sum = (values: (number | null)[] | undefined) => (values ?? []).reduce<number>((a, v) => a + (v ?? 0), 0);

describe('GET /v1/stats/history', () => {
  const tmp = tempDir();
  let app: FastifyInstance;
  let image: Buffer;
  const started = Date.now();

  before(async () => {
    writeDecoderModels(tmp.dir);
    // One-second buckets, so that the first ones are written within a second or two. On press-3 no image is
    // sharp enough for the image-quality gate: its results are check.
    app = await startApp({
      models_dir: tmp.dir,
      default_model: 'v8',
      history_resolution_ms: 1000,
      history_rollup_resolution_ms: 5000,
      quality_overrides: 'press-3=sharpness_min:100000000',
    });
    image = await solidImage(320, 240, 'jpeg');
  });
  after(async () => {
    await app.close();
    tmp.cleanup();
  });

  const get = (query: string) => app.inject(`/v1/stats/history${query}`);

  test('real detections through the server show up in the series: counts, verdicts by line (check apart), latency, client errors, system gauges', async () => {
    const detect = (query: string) => app.inject({ method: 'POST', url: `/v1/detect?${query}`, headers: { 'content-type': 'image/jpeg' }, payload: image });
    for (let i = 0; i < 5; i++) assert.equal((await detect('line=press-1')).statusCode, 200);
    // conf 0.95 leaves no detection: OK.
    for (let i = 0; i < 3; i++) assert.equal((await detect('line=press-2&conf=0.95')).statusCode, 200);
    // Outside the image-quality envelope: check, whatever the model saw.
    for (let i = 0; i < 2; i++) {
      const res = await detect('line=press-3');
      assert.equal(res.statusCode, 200);
      assert.equal(res.json().verdict, 'check');
    }
    const empty = await app.inject({ method: 'POST', url: '/v1/detect?line=press-2', headers: { 'content-type': 'image/jpeg' }, payload: Buffer.alloc(0) });
    assert.equal(empty.statusCode, 400);

    const from = new Date(started - 5000).toISOString();
    let series: Series | undefined;
    for (let i = 0; i < 100; i++) {
      const res = await get(`?from=${from}&step=1s`);
      assert.equal(res.statusCode, 200, res.body);
      series = res.json().series as Series;
      if (sum(series.results) === 10 && sum(series.client_errors) >= 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(series);
    assert.equal(sum(series.results), 10);
    assert.equal(sum(series.verdicts['press-1']?.ng), 5);
    assert.equal(sum(series.verdicts['press-1']?.ok), 0);
    assert.equal(sum(series.verdicts['press-1']?.check), 0);
    assert.equal(sum(series.verdicts['press-2']?.ok), 3);
    assert.deepEqual(
      ['ok', 'ng', 'check'].map((v) => sum(series?.verdicts['press-3']?.[v as 'ok' | 'ng' | 'check'])),
      [0, 0, 2],
      'check is counted as check, not ok',
    );
    assert.equal(sum(series.client_errors), 1, 'the empty body');
    assert.ok(series.latency_ms.p50.some((v) => v !== null && v > 0));
    assert.ok(
      series.rss_bytes.avg.some((v) => v !== null && v > 1_000_000),
      'the sampler feeds the memory series',
    );

    // The default: the last hour (fewer points when the cap needs it) at the fine resolution.
    const plain = await get('');
    assert.equal(plain.statusCode, 200, plain.body);
    const body = plain.json();
    assert.equal(body.resolution, 'fine');
    assert.equal(body.step_ms, 1000);
    assert.ok(body.timestamps.length <= 2000 && body.timestamps.length >= 1999, `${body.timestamps.length} points`);
    assert.equal(sum(body.series.results), 10);
    assert.equal(sum(body.series.verdicts['press-3']?.check), 2);
  });

  test('the route needs the viewer role and is in the OpenAPI document with its 400s', async () => {
    const route = app.routeAccess.find((r) => r.method === 'GET' && r.url === '/v1/stats/history');
    assert.equal(route?.role, 'viewer');
    const doc = (await app.inject('/openapi.json')).json();
    const op = doc.paths['/v1/stats/history']?.get;
    assert.ok(op, 'in /openapi.json');
    assert.ok(op.responses['200'] && op.responses['400'] && op.responses['503']);
    assert.deepEqual(op.parameters.map((p: { name: string }) => p.name).sort(), ['from', 'line', 'step', 'to']);
  });

  test('bad input is refused with 400 and a stable code', async () => {
    const now = Date.now();
    const iso = (ms: number) => new Date(ms).toISOString();
    const cases: [string, string][] = [
      ['?step=abc', 'INVALID_REQUEST'],
      ['?step=0s', 'INVALID_REQUEST'],
      ['?step=-5s', 'INVALID_REQUEST'],
      ['?from=yesterday', 'INVALID_REQUEST'],
      ['?line=bad%20line', 'INVALID_REQUEST'],
      ['?window=1h', 'INVALID_REQUEST'],
      [`?from=${iso(now)}&to=${iso(now - 60_000)}`, 'INVALID_REQUEST'],
      [`?from=${iso(now - 31 * 86_400_000)}&to=${iso(now)}`, 'HISTORY_RANGE_TOO_LONG'],
      [`?from=${iso(now - 3 * 3_600_000)}&to=${iso(now)}&step=1s`, 'HISTORY_TOO_MANY_POINTS'],
    ];
    for (const [query, code] of cases) {
      const res = await get(query);
      assert.equal(res.statusCode, 400, `${query}: ${res.body}`);
      assert.equal(res.json().error.code, code, query);
    }
    // The refusal names a step that fits, and that step is answered.
    const refused = await get(`?from=${iso(now - 3 * 3_600_000)}&to=${iso(now)}&step=1s`);
    const step = /use step=(\w+)/.exec(refused.json().error.message)?.[1];
    assert.ok(step, refused.json().error.message);
    const fits = await get(`?from=${iso(now - 3 * 3_600_000)}&to=${iso(now)}&step=${step}`);
    assert.equal(fits.statusCode, 200, fits.body);
    assert.ok(fits.json().timestamps.length <= 2000);
  });

  test('a step is rounded up to whole buckets; a step of at least the coarse resolution, or an old range, reads the coarse series', async () => {
    const to = Date.now();
    const iso = (ms: number) => new Date(ms).toISOString();
    const rounded = (await get(`?from=${iso(to - 60_000)}&to=${iso(to)}&step=1500ms`)).json();
    assert.equal(rounded.step_ms, 2000);
    assert.equal(rounded.resolution, 'fine');
    const coarse = (await get(`?from=${iso(to - 60_000)}&to=${iso(to)}&step=5s`)).json();
    assert.equal(coarse.resolution, 'coarse');
    assert.equal(coarse.resolution_ms, 5000);
    // Older than the fine retention (24 h): coarse whatever the step asked.
    const old = (await get(`?from=${iso(to - 2 * 86_400_000)}&to=${iso(to - 2 * 86_400_000 + 60_000)}&step=1s`)).json();
    assert.equal(old.resolution, 'coarse');
    assert.ok(
      old.series.results.every((v: number | null) => v === null),
      'nothing recorded then: gaps',
    );
  });
});

describe('history in the distributed shape: an API process and a worker on one store', () => {
  test('results of the API process and of the worker merge, and both answer the same series', async (t) => {
    const tmp = tempDir();
    writeDecoderModels(tmp.dir);
    const shared = {
      models_dir: tmp.dir,
      default_model: 'v8',
      store_url: `sqlite:${join(tmp.dir, 'results.db')}`,
      queue_url: `sqlite:${join(tmp.dir, 'queue.db')}`,
      history_resolution_ms: 1000,
      history_rollup_resolution_ms: 5000,
    };
    const api = await startApp({ ...shared, worker: false });
    const worker = await startWorkerRuntime(defaultConfig({ intra_op_threads: 1, ...shared }), { logger: createLogger('silent') });
    t.after(async () => {
      await api.close();
      await worker.close();
      tmp.cleanup();
    });
    const image = await solidImage(320, 240, 'jpeg');
    const from = new Date(Date.now() - 5000).toISOString();
    for (let i = 0; i < 3; i++) {
      const res = await api.inject({ method: 'POST', url: '/v1/detect?line=sync-line', headers: { 'content-type': 'image/jpeg' }, payload: image });
      assert.equal(res.statusCode, 200);
    }
    for (let i = 0; i < 2; i++) {
      const res = await api.inject({ method: 'POST', url: '/v1/jobs?line=job-line', headers: { 'content-type': 'image/jpeg' }, payload: image });
      assert.equal(res.statusCode, 202);
    }
    let series: Series | undefined;
    for (let i = 0; i < 150 && sum(series?.results) < 5; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const res = await api.inject(`/v1/stats/history?from=${from}&step=1s`);
      assert.equal(res.statusCode, 200, res.body);
      series = res.json().series as Series;
    }
    assert.ok(series);
    assert.equal(sum(series.verdicts['sync-line']?.ng), 3);
    assert.equal(sum(series.verdicts['job-line']?.ng), 2, 'the worker wrote its own rows');
    const processes = series.processes as (number | null)[];
    assert.ok(
      processes.some((n) => n === 2),
      `both processes recorded: ${JSON.stringify(processes)}`,
    );
    // The worker's reader sees the same rows (its buckets may have grown since: compare what both have written).
    const to = new Date(Math.floor(Date.now() / 1000) * 1000 - 2000).toISOString();
    const viaApi = (await api.inject(`/v1/stats/history?from=${from}&to=${to}&step=1s`)).json();
    const viaWorker = await worker.history.query({ from: Date.parse(from), to: Date.parse(to), stepMs: 1000 });
    assert.deepEqual(viaWorker, viaApi);
  });
});
