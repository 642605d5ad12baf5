import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';

describe('stored results over HTTP', () => {
  const tmp = tempDir();
  let app: FastifyInstance;
  let image: Buffer;

  before(async () => {
    writeDecoderModels(tmp.dir);
    app = await startApp({ models_dir: tmp.dir, default_model: 'v8' });
    image = await solidImage(1280, 720, 'jpeg');
  });
  after(async () => {
    await app.close();
    tmp.cleanup();
  });

  const detect = (query: string, id: string) =>
    app.inject({ method: 'POST', url: `/v1/detect?${query}`, headers: { 'content-type': 'image/jpeg', 'x-request-id': id }, payload: image });

  async function waitForResult(id: string) {
    for (let i = 0; i < 50; i++) {
      const res = await app.inject(`/v1/results/${id}`);
      if (res.statusCode === 200) return res.json();
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`result ${id} never stored`);
  }

  test('synchronous results are stored and filtered by line, verdict and label, with cursor paging', async () => {
    await detect('line=press-1', 'r-ng-1');
    await detect('line=press-1&conf=0.95', 'r-ok-1');
    await detect('line=press-2&model=v8&max_det=1', 'r-ng-2');
    const stored = await waitForResult('r-ng-2');
    assert.equal(stored.source, 'sync');
    assert.equal(stored.verdict, 'ng');
    assert.deepEqual(
      stored.detections.map((d: { label: string }) => d.label),
      ['scratch'],
    );
    await waitForResult('r-ok-1');
    await waitForResult('r-ng-1');

    const press1 = (await app.inject('/v1/results?line=press-1')).json();
    assert.deepEqual(press1.results.map((r: { request_id: string }) => r.request_id).sort(), ['r-ng-1', 'r-ok-1']);
    const ok = (await app.inject('/v1/results?verdict=ok')).json();
    assert.deepEqual(
      ok.results.map((r: { request_id: string }) => r.request_id),
      ['r-ok-1'],
    );
    const cracks = (await app.inject('/v1/results?label=crack')).json();
    assert.deepEqual(
      cracks.results.map((r: { request_id: string }) => r.request_id),
      ['r-ng-1'],
    );

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { results: { request_id: string }[]; next_cursor: string | null } = (
        await app.inject(`/v1/results?limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      ).json();
      assert.ok(page.results.length <= 1);
      seen.push(...page.results.map((r: { request_id: string }) => r.request_id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual([...seen].sort(), ['r-ng-1', 'r-ng-2', 'r-ok-1']);

    const stats = (await app.inject('/v1/lines/press-1/stats')).json();
    assert.equal(stats.total, 2);
    assert.deepEqual(stats.verdicts, { ok: 1, ng: 1, check: 0 });
    assert.equal(stats.labels.scratch.results, 1);
  });

  test('bad filters are refused with codes; unknown ids are 404', async () => {
    assert.equal((await app.inject('/v1/results?verdict=maybe')).json().error.code, 'INVALID_REQUEST');
    assert.equal((await app.inject('/v1/results?from=yesterday')).json().error.code, 'INVALID_REQUEST');
    assert.equal((await app.inject('/v1/results?limit=100000')).statusCode, 400);
    assert.equal((await app.inject('/v1/results?cursor=garbage')).json().error.code, 'INVALID_REQUEST');
    const missing = await app.inject('/v1/results/nope');
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, 'RESULT_NOT_FOUND');
  });

  test('readyz reports the store', async () => {
    const checks = (await app.inject('/readyz')).json().checks as { name: string; status: string }[];
    assert.deepEqual(checks.find((c) => c.name === 'store:sqlite')?.status, 'pass');
  });
});

test('store_sync_results=false keeps synchronous results out of the store', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', store_sync_results: false });
  try {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/detect',
      headers: { 'content-type': 'image/jpeg', 'x-request-id': 'not-kept' },
      payload: await solidImage(64, 64, 'jpeg'),
    });
    assert.equal(res.statusCode, 200);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await app.inject('/v1/results/not-kept')).statusCode, 404);
    assert.deepEqual((await app.inject('/v1/results')).json().results, []);
  } finally {
    await app.close();
    tmp.cleanup();
  }
});
