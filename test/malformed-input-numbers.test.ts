/**
 * Malformed-input corpus, numbers (issue 12): non-finite and non-decimal numbers
 * in every numeric query parameter, header and stream frame header, and forged
 * results cursors, sent over a real socket. Query coercion used to turn
 * "Infinity", "1e999" and "-1e999" into numbers that skipped every minimum and
 * maximum: `conf=-1e999&iou=1e999&max_det=1e999` returned (and stored) thousands
 * of detections, `limit=Infinity` and `X-Request-Timeout-Ms: Infinity` reached
 * SQL (500s), and a cursor holding a NUL made PostgreSQL fail (500). Each must
 * now be a 400 with its code, and nothing may be stored or enqueued. The cases
 * that reach the store or the queue run on SQLite and on PostgreSQL + RabbitMQ.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { errorOf, rawTarget, send, type RawRequest, type RawResponse } from './helpers/raw-http.js';
import { StreamClient, type Of } from './helpers/stream-client.js';
import { requireOrSkip } from './helpers/requirements.js';
import { POSTGRES_URL, POSTGRES_WHAT, postgresSchemas } from './helpers/postgres-schemas.js';
import { AMQP_URL } from './helpers/cli-process.js';
import { probeTcp, waitFor } from './queue/helpers.js';
import { deleteAmqpTopology } from '../src/queue/index.js';
import type { Config } from '../src/config/schema.js';

/** What a client may write where a number is expected and that must be refused. */
const NON_FINITE = ['Infinity', '-Infinity', '1e999', '-1e999', 'NaN'];
const NOT_DECIMAL = ['0x10', '0b1', '%205', ''];
const REFUSED = [...NON_FINITE, ...NOT_DECIMAL];

const cursorOf = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
/** Cursors this server never issued: a NUL in the id, non-finite or non-integer times, wrong shapes. */
const FORGED_CURSORS: Record<string, string> = {
  'id with a NUL': cursorOf([1_700_000_000_000, 'a\u0000b']),
  'id of a NUL only': cursorOf([1_700_000_000_000, '\u0000']),
  'time 1e999 (Infinity once parsed)': cursorOf('[1e999,"x"]'),
  'time -1e999': cursorOf('[-1e999,"x"]'),
  'time 2^53': cursorOf([2 ** 53, 'x']),
  'fractional time': cursorOf([1.5, 'x']),
  'time as text': cursorOf(['1700000000000', 'x']),
  'empty id': cursorOf([1, '']),
  'three items': cursorOf([1, 'x', 2]),
  'an object': cursorOf({ createdAt: 1, requestId: 'x' }),
  'not JSON': cursorOf('[1,'),
  'JSON null': cursorOf('null'),
};

let jpeg: Buffer;
const models = tempDir();
before(async () => {
  writeDecoderModels(models.dir);
  jpeg = await solidImage(64, 48, 'jpeg');
});
after(() => models.cleanup());

async function on(app: FastifyInstance, req: RawRequest): Promise<RawResponse> {
  rawTarget.port = (app.server.address() as { port: number }).port;
  return send(req);
}

async function expect400(app: FastifyInstance, req: RawRequest, code = 'INVALID_REQUEST'): Promise<void> {
  const res = await on(app, req);
  const what = `${req.method ?? 'GET'} ${req.path} ${JSON.stringify(req.headers ?? {})}`;
  assert.equal(res.status, 400, `${what}: ${res.body.toString().slice(0, 300)}`);
  assert.equal(errorOf(res).code, code, what);
  // The refusal is an error body, never a result (the conf=-1e999 answer was 330 KB of detections).
  assert.ok(res.body.length < 1000, `${what}: ${res.body.length}-byte answer`);
}

const detectReq = (query: string, headers: Record<string, string> = {}): RawRequest => ({
  method: 'POST',
  path: `/v1/detect?${query}`,
  headers: { 'content-type': 'image/jpeg', ...headers },
  body: jpeg,
});
const jobReq = (query: string, headers: Record<string, string> = {}): RawRequest => ({ ...detectReq(query, headers), path: `/v1/jobs?${query}` });

async function listen(overrides: Partial<Config>): Promise<FastifyInstance> {
  // The rate limit is off: the corpus sends a few hundred requests from one address.
  const app = await startApp({ models_dir: models.dir, default_model: 'v8', rate_limit_per_second: 0, worker: false, ...overrides });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return app;
}

/** Requests with a number the server must refuse on every numeric input of /v1/jobs, /v1/results and /v1/dead-letters. */
async function storeAndQueueCases(t: TestContext, app: FastifyInstance): Promise<void> {
  const { queue, store } = app.sightline;

  await t.test('POST /v1/jobs: non-finite or non-decimal query numbers and X-Request-Timeout-Ms are refused and nothing is enqueued', async () => {
    const ready = (await queue.stats()).ready;
    for (const v of REFUSED) {
      for (const name of ['conf', 'iou', 'max_det']) await expect400(app, jobReq(`${name}=${v}`));
      if (v !== '' && v !== '%205') await expect400(app, jobReq('', { 'x-request-timeout-ms': v }));
    }
    await expect400(app, jobReq('conf=-1e999&iou=1e999&max_det=1e999'));
    assert.equal((await queue.stats()).ready, ready, 'a refused job was enqueued');
    // The largest deadline the API allows still goes through, and shows in the count above.
    const ok = await on(app, jobReq('conf=0&iou=1', { 'x-request-timeout-ms': '3600000' }));
    assert.equal(ok.status, 202, ok.body.toString());
    await waitFor(async () => (await queue.stats()).ready === ready + 1, 'the valid job in the queue');
  });

  await t.test('the queue itself refuses an infinite ttlMs and a non-finite listDead limit', async () => {
    await assert.rejects(async () => queue.enqueue({ line: 'numbers', image: jpeg, contentType: 'image/jpeg', ttlMs: Infinity }), { code: 'INVALID_JOB' });
    for (const limit of [Infinity, -Infinity, NaN, 1.5, 0]) await assert.rejects(async () => queue.listDead({ limit }), RangeError, String(limit));
    assert.ok(Array.isArray(await queue.listDead({ limit: 1 })));
  });

  await t.test('GET /v1/dead-letters: a non-finite or non-decimal limit is a 400, not a 500', async () => {
    for (const v of REFUSED) await expect400(app, { path: `/v1/dead-letters?limit=${v}` });
    assert.equal((await on(app, { path: '/v1/dead-letters?limit=1000' })).status, 200);
  });

  await t.test('GET /v1/results: a non-finite or non-decimal limit is a 400', async () => {
    for (const v of REFUSED) await expect400(app, { path: `/v1/results?limit=${v}` });
    assert.equal((await on(app, { path: '/v1/results?limit=1' })).status, 200);
  });

  await t.test('GET /v1/results: a forged cursor (NUL in the id, non-finite time, wrong shape) is a 400, not a 500', async () => {
    for (const [name, cursor] of Object.entries(FORGED_CURSORS)) {
      const res = await on(app, { path: `/v1/results?cursor=${cursor}` });
      assert.equal(res.status, 400, `${name}: ${res.body.toString().slice(0, 300)}`);
      assert.equal(errorOf(res).code, 'INVALID_REQUEST', name);
    }
    // The store refuses them too when called without the HTTP layer.
    await assert.rejects(async () => store.list({ cursor: FORGED_CURSORS['id with a NUL'] }), { code: 'INVALID_REQUEST' });
    // A cursor the server issued still pages.
    for (let i = 0; i < 2; i++) assert.equal((await on(app, detectReq('line=numbers-page', { 'x-request-id': `page-${i}-${randomUUID()}` }))).status, 200);
    await waitFor(async () => (await store.list({ line: 'numbers-page' })).results.length === 2, 'the two results stored');
    const first = JSON.parse((await on(app, { path: '/v1/results?line=numbers-page&limit=1' })).body.toString()) as { next_cursor: string };
    const second = await on(app, { path: `/v1/results?line=numbers-page&limit=1&cursor=${first.next_cursor}` });
    assert.equal(second.status, 200, second.body.toString());
    assert.equal((JSON.parse(second.body.toString()) as { results: unknown[] }).results.length, 1);
  });
}

describe('non-finite numbers (SQLite store and queue)', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await listen({ store_url: 'sqlite::memory:', queue_url: 'sqlite::memory:' });
  });
  after(async () => {
    await app?.close();
  });

  test('POST /v1/detect: non-finite or non-decimal conf, iou, max_det and X-Request-Timeout-Ms are refused and nothing is stored', async () => {
    const { store, config } = app.sightline;
    const before = (await store.list({ limit: 1000 })).results.length;
    for (const v of REFUSED) {
      for (const name of ['conf', 'iou', 'max_det']) await expect400(app, detectReq(`${name}=${v}`));
      if (v !== '' && v !== '%205') await expect400(app, detectReq('', { 'x-request-timeout-ms': v }));
    }
    // The request from the report: 3,549 detections (cap 1,000) in 330 KB.
    await expect400(app, detectReq('conf=-1e999&iou=1e999&max_det=1e999'));
    await expect400(app, detectReq(`max_det=${config.max_detections_limit + 1}`));
    await expect400(app, detectReq('', { 'x-request-timeout-ms': '3600001' }));
    // Sync results are stored in the background: once a marker request's result is in, every earlier one would be.
    const marker = `marker-${randomUUID()}`;
    assert.equal((await on(app, detectReq('', { 'x-request-id': marker }))).status, 200);
    await waitFor(async () => (await store.get(marker)) !== undefined, 'the marker result stored');
    assert.equal((await store.list({ limit: 1000 })).results.length, before + 1, 'a refused request stored a result');
  });

  test('POST /v1/detect: the valid extremes still work (conf 0 and 1, iou 0 and 1, max_det 1 and max_detections_limit, the longest deadline)', async () => {
    const limit = app.sightline.config.max_detections_limit;
    const cases = ['conf=0', 'conf=1', 'iou=0', 'iou=1', 'max_det=1', `max_det=${limit}`, 'conf=0.25&iou=.5&max_det=1e2', 'conf=%2B0.5'];
    for (const query of cases) {
      const res = await on(app, detectReq(query, { 'x-request-timeout-ms': '3600000' }));
      assert.equal(res.status, 200, `${query}: ${res.body.toString().slice(0, 300)}`);
      const body = JSON.parse(res.body.toString()) as { detections: unknown[] };
      assert.ok(body.detections.length <= limit, query);
      if (query === 'max_det=1') assert.ok(body.detections.length <= 1);
    }
  });

  test('GET /v1/admin/connections: a non-finite or non-decimal limit is a 400', async () => {
    for (const v of REFUSED) await expect400(app, { path: `/v1/admin/connections?limit=${v}` });
    assert.equal((await on(app, { path: '/v1/admin/connections?limit=10000' })).status, 200);
  });

  test('WebSocket frame headers: non-finite or non-numeric conf, iou, max_det and timeout_ms are INVALID_FRAME and produce no result', async (t) => {
    const client = await StreamClient.open(app);
    t.after(() => client.close());
    const header = (id: string, field: string, raw: string) => Buffer.from(`{"id":"${id}","${field}":${raw}}`);
    const frame = (json: Buffer) => {
      const prefix = Buffer.from([0x53, 0x4c, 1, 0, 0, 0]);
      prefix.writeUInt16BE(json.length, 4);
      return Buffer.concat([prefix, json, jpeg]);
    };
    const anonymous = () => client.messages.filter((m) => m.type === 'error' && m.id === undefined);
    let n = 0;
    for (const field of ['conf', 'iou', 'max_det', 'timeout_ms']) {
      // JSON reads 1e999 as Infinity; Infinity, NaN and hex are not JSON at all; strings are not numbers.
      for (const raw of ['1e999', '-1e999', '"Infinity"', '"1e999"', '"NaN"', '"0x10"', 'Infinity', 'NaN', '0x10']) {
        const id = `nf-${n++}`;
        // A header that is not JSON has no id to echo: its error is the next one without an id.
        const literal = !raw.startsWith('"') && !raw.includes('e999');
        const earlier = anonymous().length;
        client.ws.send(frame(header(id, field, raw)));
        const answer = literal
          ? await client.until(() => anonymous()[earlier], 10_000, `the answer to ${field}=${raw}`)
          : await client.until(() => client.answerFor(id), 10_000, `the answer to ${field}=${raw}`);
        assert.equal(answer.type, 'error', `${field}=${raw}: ${JSON.stringify(answer).slice(0, 300)}`);
        assert.equal((answer as Of<'error'>).error.code, 'INVALID_FRAME', `${field}=${raw}`);
        if (!literal) assert.equal((answer as Of<'error'>).id, id);
      }
    }
    // The connection still works, and the valid extremes pass.
    const limit = app.sightline.config.max_detections_limit;
    client.sendFrame({ id: 'ok-extremes', conf: 0, iou: 1, max_det: limit, timeout_ms: 3_600_000 }, jpeg);
    const ok = await client.waitFor<Of<'result'>>((m) => m.type === 'result' && m.id === 'ok-extremes');
    assert.ok(ok.result.detections.length <= limit);
    assert.equal(client.messages.filter((m) => m.type === 'result').length, 1, 'a refused frame produced a result');
  });

  test('dead letters, job deadlines and results cursors on SQLite', async (t) => {
    await storeAndQueueCases(t, app);
  });

  test('no 5xx was answered to any of it', async () => {
    const metrics = (await on(app, { path: '/metrics' })).body.toString();
    const fivexx = metrics.split('\n').filter((l) => l.startsWith('sightline_requests_total{') && /status="5\d\d"/.test(l));
    assert.deepEqual(fivexx, []);
  });
});

describe('non-finite numbers (PostgreSQL store, RabbitMQ queue)', () => {
  const pgs = postgresSchemas('sightline_numbers');
  const prefix = `numbers-${randomUUID().slice(0, 8)}`;
  let app: FastifyInstance | undefined;
  let available = false;
  before(async () => {
    const amqp = new URL(AMQP_URL);
    available = pgs.available && (await probeTcp(amqp.hostname, Number(amqp.port || 5672)));
    if (!available) return;
    app = await listen({ store_url: POSTGRES_URL, store_schema: pgs.schema(), queue_url: AMQP_URL, queue_prefix: prefix, events_url: 'memory:' });
  });
  after(async () => {
    await app?.close();
    if (available) await deleteAmqpTopology(AMQP_URL, prefix);
  });

  test('dead letters, job deadlines and results cursors on PostgreSQL + RabbitMQ', async (t) => {
    if (!requireOrSkip(t, available, `${POSTGRES_WHAT} and RabbitMQ at ${new URL(AMQP_URL).host}`)) return;
    await storeAndQueueCases(t, app!);
    const metrics = (await on(app!, { path: '/metrics' })).body.toString();
    assert.deepEqual(
      metrics.split('\n').filter((l) => l.startsWith('sightline_requests_total{') && /status="5\d\d"/.test(l)),
      [],
    );
  });
});
