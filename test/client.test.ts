/**
 * The client SDK over real sockets against an in-process server with the built-in
 * model: detect, jobs, errors; the reconnect backoff as a pure function.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { startApp } from './helpers/fixtures.js';
import { SightlineClient, SightlineError, backoffCap, backoffDelay, reconnectOptions, parseRetryAfter, streamUrl } from '../src/index.js';

describe('SightlineClient over HTTP (built-in model)', () => {
  let app: FastifyInstance;
  let client: SightlineClient;
  let ng: Buffer;
  let ok: Buffer;

  before(async () => {
    app = await startApp({ models_dir: './models', job_max_attempts: 2, job_backoff_ms: 50 });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    // A real key: a credential that is sent is checked, also from loopback.
    const { key } = await app.apiKeys.create('sdk-test', ['admin']);
    client = new SightlineClient({ baseUrl: `http://127.0.0.1:${port}/`, apiKey: key, headers: { 'x-test': '1' } });
    ng = await readFile('samples/ng-03.jpg');
    ok = await readFile('samples/ok-01.jpg');
  });
  after(() => app?.close());

  test('detect() returns the typed result; options travel as the query, requestId as X-Request-Id', async () => {
    const r = await client.detect(ng, { line: 'line-7', conf: 0.3, max_det: 50, requestId: 'sdk-req-1', deadlineMs: 10_000 });
    assert.equal(r.verdict, 'ng');
    assert.equal(r.line, 'line-7');
    assert.equal(r.request_id, 'sdk-req-1');
    assert.deepEqual(r.model, { name: 'defects', version: '2' });
    assert.ok(r.detections.length > 0 && r.detections.every((d) => d.score >= 0.3));
    assert.equal((await client.detect(ok, { line: 'line-7' })).verdict, 'ok');
    // A Uint8Array that is a view into a larger buffer sends only its own bytes.
    const padded = new Uint8Array(ok.length + 20);
    padded.set(ok, 10);
    assert.equal((await client.detect(padded.subarray(10, 10 + ok.length))).verdict, 'ok');
  });

  test('a camera named in detect() shows in the result and in lines()', async () => {
    const result = await client.detect(ng, { line: 'sdk-line', camera: 'sdk-cam' });
    assert.equal(result.camera, 'sdk-cam');
    await app.sightline.lines.tick();
    const { lines } = await client.lines();
    const line = lines.find((l) => l.line === 'sdk-line');
    assert.deepEqual(
      line?.cameras.map((c) => [c.camera, c.state]),
      [['sdk-cam', 'online']],
    );
  });

  test('a bad image fails with SightlineError (INVALID_IMAGE 400, UNSUPPORTED_MEDIA_TYPE 415) with the request id', async () => {
    // Truncated JPEG: the content is sniffed as JPEG, so this is INVALID_IMAGE.
    const truncated = await client.detect(ng.subarray(0, 200), { requestId: 'bad-1' }).catch((e: unknown) => e);
    assert.ok(truncated instanceof SightlineError, String(truncated));
    assert.deepEqual(
      [truncated.code, truncated.status, truncated.requestId, truncated.retryable, truncated.retryAfterMs],
      ['INVALID_IMAGE', 400, 'bad-1', false, null],
    );
    assert.ok(truncated.message.length > 0);
    const junk = await client.detect(Buffer.from('definitely not an image')).catch((e: unknown) => e);
    assert.ok(junk instanceof SightlineError, String(junk));
    assert.deepEqual([junk.code, junk.status], ['INVALID_IMAGE', 400]);
    const text = await client.detect(Buffer.from('hello'), { contentType: 'text/plain' }).catch((e: unknown) => e);
    assert.ok(text instanceof SightlineError, String(text));
    assert.deepEqual([text.code, text.status], ['UNSUPPORTED_MEDIA_TYPE', 415]);
    assert.match(junk.requestId ?? '', /^[0-9a-f-]{36}$/);
  });

  test('an unknown model fails with MODEL_NOT_FOUND (404); a bad query with INVALID_REQUEST', async () => {
    const err = await client.detect(ok, { model: 'nope' }).catch((e: unknown) => e);
    assert.ok(err instanceof SightlineError);
    assert.equal(err.code, 'MODEL_NOT_FOUND');
    assert.equal(err.status, 404);
    assert.equal(err.retryAfterMs, null);
    const bad = await client.detect(ok, { conf: 3 }).catch((e: unknown) => e);
    assert.ok(bad instanceof SightlineError);
    assert.equal(bad.code, 'INVALID_REQUEST');
    assert.equal(bad.status, 400);
  });

  test('submitJob() → waitForJob() returns the stored result; getJob() shows done; Idempotency-Key dedupes', async () => {
    const key = `sdk-${Date.now()}`;
    const job = await client.submitJob(ng, { line: 'line-9', idempotencyKey: key });
    assert.equal(job.duplicate, false);
    assert.equal(job.status, 'queued');
    const again = await client.submitJob(ng, { line: 'line-9', idempotencyKey: key });
    assert.deepEqual(again, { ...job, duplicate: true });
    const result = await client.waitForJob(job.job_id, { timeoutMs: 30_000, pollIntervalMs: 20 });
    assert.equal(result.request_id, job.job_id);
    assert.equal(result.verdict, 'ng');
    assert.equal(result.line, 'line-9');
    const status = await client.getJob(job.job_id);
    assert.equal(status.state, 'done');
    assert.equal(status.job_id, job.job_id);
    assert.equal(status.result?.request_id, job.job_id);
    assert.ok(status.attempts >= 1);
  });

  test('getJob() of an unknown id: JOB_NOT_FOUND; waitForJob() does not wait for it', async () => {
    const err = await client.getJob('no-such-job').catch((e: unknown) => e);
    assert.ok(err instanceof SightlineError);
    assert.equal(err.code, 'JOB_NOT_FOUND');
    assert.equal(err.status, 404);
    const started = Date.now();
    const waited = await client.waitForJob('no-such-job', { timeoutMs: 10_000 }).catch((e: unknown) => e);
    assert.ok(waited instanceof SightlineError && waited.code === 'JOB_NOT_FOUND');
    assert.ok(Date.now() - started < 5000);
  });

  test('waitForJob(): a job that keeps failing ends dead → JOB_DEAD with the reason and last error; a short timeout → TIMEOUT', async () => {
    // A truncated JPEG passes the header check at submission; the worker fails to decode it, twice, and dead-letters it.
    const truncated = ok.subarray(0, Math.floor(ok.length / 2));
    const { job_id } = await client.submitJob(truncated, { line: 'line-dead' });
    const err = await client.waitForJob(job_id, { timeoutMs: 60_000, pollIntervalMs: 50 }).catch((e: unknown) => e);
    assert.ok(err instanceof SightlineError, String(err));
    assert.equal(err.code, 'JOB_DEAD');
    assert.equal(err.jobId, job_id);
    assert.equal(err.deadReason, 'failed');
    assert.ok((err.lastError ?? '').length > 0, 'the dead job carries its last error');
    const unknown = await client.submitJob(ok, { model: 'no-such-model' }).catch((e: unknown) => e);
    assert.ok(unknown instanceof SightlineError && unknown.code === 'MODEL_NOT_FOUND' && unknown.status === 404, String(unknown));
    assert.equal((await client.getJob(job_id)).state, 'dead');

    // Nothing runs jobs of line "slow" quickly enough for 30 ms: TIMEOUT, after about that long.
    const job = await client.submitJob(truncated, { line: 'line-t' });
    const started = Date.now();
    const timeout = await client.waitForJob(job.job_id, { timeoutMs: 30, pollIntervalMs: 10 }).catch((e: unknown) => e);
    assert.ok(timeout instanceof SightlineError && timeout.code === 'TIMEOUT', String(timeout));
    assert.equal(timeout.jobId, job.job_id);
    assert.ok(Date.now() - started < 2000);
    const aborted = await client.waitForJob(job.job_id, { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    assert.ok(aborted instanceof SightlineError && aborted.code === 'ABORTED', String(aborted));
  });

  test('network failures and client timeouts are SightlineErrors too', async () => {
    const dead = new SightlineClient({ baseUrl: 'http://127.0.0.1:9', timeoutMs: 2000 });
    const err = await dead.detect(ok).catch((e: unknown) => e);
    assert.ok(err instanceof SightlineError);
    assert.equal(err.code, 'NETWORK_ERROR');
    assert.equal(err.status, 0);
    assert.equal(err.retryable, true);
    const hung = new SightlineClient({
      baseUrl: 'http://127.0.0.1:1',
      fetch: (_u, init) => new Promise((_r, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason))),
      timeoutMs: 50,
    });
    const t = await hung.getJob('x').catch((e: unknown) => e);
    assert.ok(t instanceof SightlineError && t.code === 'TIMEOUT', String(t));
  });

  test('Retry-After and the headers: apiKey as Bearer, custom headers on every request', async () => {
    const seen: Headers[] = [];
    const fake = new SightlineClient({
      baseUrl: 'http://sightline.test',
      apiKey: 'k-123',
      headers: { 'x-plant': 'p1' },
      fetch: async (_url, init) => {
        seen.push(new Headers(init?.headers));
        return new Response(JSON.stringify({ error: { code: 'OVERLOADED', message: 'busy' } }), {
          status: 503,
          headers: { 'retry-after': '2', 'x-request-id': 'r-9' },
        });
      },
    });
    const err = await fake.detect(ok).catch((e: unknown) => e);
    assert.ok(err instanceof SightlineError);
    assert.deepEqual([err.code, err.status, err.retryAfterMs, err.requestId, err.retryable, err.message], ['OVERLOADED', 503, 2000, 'r-9', true, 'busy']);
    assert.equal(seen[0]!.get('authorization'), 'Bearer k-123');
    assert.equal(seen[0]!.get('x-plant'), 'p1');
    assert.equal(seen[0]!.get('content-type'), 'image/jpeg');
    assert.equal(parseRetryAfter('1.5'), 1500);
    assert.equal(parseRetryAfter(new Date(Date.now() + 60_000).toUTCString())! > 55_000, true);
    assert.equal(parseRetryAfter('soon'), null);
  });
});

describe('reconnect backoff', () => {
  test('grows exponentially from initialDelayMs, is capped at maxDelayMs, and is jittered within [cap·(1−jitter), cap]', () => {
    const options = reconnectOptions({ initialDelayMs: 100, maxDelayMs: 3000, jitter: 1 });
    assert.deepEqual(
      Array.from({ length: 8 }, (_, i) => backoffCap(i, options)),
      [100, 200, 400, 800, 1600, 3000, 3000, 3000],
    );
    assert.equal(backoffCap(5000, options), 3000, 'no overflow for huge attempt numbers');
    // Deterministic ends of the jitter range.
    assert.equal(
      backoffDelay(3, options, () => 0),
      800,
    );
    assert.ok(backoffDelay(3, options, () => 0.999999) < 0.01);
    assert.equal(
      backoffDelay(3, { ...options, jitter: 0.25 }, () => 1),
      600,
    );
    assert.equal(backoffDelay(3, { ...options, jitter: 0 }, Math.random), 800);
    // Real randomness: every sample within its range, and spread out (not all equal).
    for (let attempt = 0; attempt < 10; attempt++) {
      const cap = backoffCap(attempt, options);
      const samples = Array.from({ length: 200 }, () => backoffDelay(attempt, options));
      assert.ok(
        samples.every((d) => d >= 0 && d <= cap),
        `attempt ${attempt}: within [0, ${cap}]`,
      );
      const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
      assert.ok(mean > cap * 0.3 && mean < cap * 0.7, `attempt ${attempt}: full jitter averages ~cap/2 (${mean} of ${cap})`);
      assert.ok(new Set(samples).size > 150, 'jittered');
    }
    assert.throws(() => reconnectOptions({ jitter: 2 }), RangeError);
    assert.throws(() => reconnectOptions({ initialDelayMs: 500, maxDelayMs: 100 }), RangeError);
    assert.deepEqual(reconnectOptions({}), { initialDelayMs: 250, maxDelayMs: 10_000, jitter: 1, maxAttempts: Number.POSITIVE_INFINITY });
  });

  test('streamUrl maps http(s) to ws(s), keeps a path prefix and adds the query', () => {
    assert.equal(streamUrl('http://h:8080', { line: 'l-1', client_kind: undefined }), 'ws://h:8080/v1/stream?line=l-1');
    assert.equal(streamUrl('https://gw/sightline/', { client_kind: 'camera' }), 'wss://gw/sightline/v1/stream?client_kind=camera');
  });
});
