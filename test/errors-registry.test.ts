import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { apiErrorOf, ERROR_CODES, ERROR_STATUS, Errors, toApiError } from '../src/errors.js';
import { RETRYABLE_CODES } from '../src/protocol/errors.js';
import { createJobQueue } from '../src/queue/index.js';
import { invalidJob, queueClosed, queueFull, queueUnavailable } from '../src/queue/errors.js';
import { installErrorHandler } from '../src/server/error-handler.js';
import { errorBody } from '../src/stream/session.js';
import { tusError } from '../src/uploads/service.js';
import { SightlineClient, SightlineError, CLIENT_ERROR_CODES, CLIENT_RETRYABLE_CODES } from '../src/client/index.js';

test('every code in the registry has an HTTP error status, and RETRYABLE_CODES names only registry codes', () => {
  for (const code of ERROR_CODES) {
    const err = new (Errors[code] as unknown as new () => { code: string; statusCode?: number })();
    assert.equal(err.code, code);
    assert.equal(typeof err.statusCode, 'number', `${code} has no status`);
    assert.ok(err.statusCode! >= 400 && err.statusCode! < 600, `${code}: ${err.statusCode}`);
    assert.equal(ERROR_STATUS[code], err.statusCode);
  }
  const known = new Set<string>(ERROR_CODES);
  assert.deepEqual(
    [...RETRYABLE_CODES].filter((c) => !known.has(c)),
    [],
    'retryable codes missing from the registry',
  );
  // A 503 always carries Retry-After, so a 503 code that the SDK would not retry contradicts the server.
  assert.deepEqual(
    ERROR_CODES.filter((c) => ERROR_STATUS[c] === 503 && !RETRYABLE_CODES.has(c)),
    [],
  );
});

test('queue errors are the registry errors (one registry): same class, code, status; messages as before', async (t) => {
  const cause = new Error('ECONNREFUSED');
  const made = [queueFull(), queueFull(10), queueUnavailable('not connected to the broker', cause), queueClosed(), invalidJob('line must match x')];
  assert.ok(made[0] instanceof Errors.QUEUE_FULL && made[1] instanceof Errors.QUEUE_FULL);
  assert.ok(made[2] instanceof Errors.QUEUE_UNAVAILABLE && made[3] instanceof Errors.QUEUE_CLOSED && made[4] instanceof Errors.INVALID_JOB);
  assert.deepEqual(
    made.map((e) => [e.code, e.statusCode, e.message]),
    [
      ['QUEUE_FULL', 503, 'The job queue is full'],
      ['QUEUE_FULL', 503, 'The job queue is full (10 jobs waiting)'],
      ['QUEUE_UNAVAILABLE', 503, 'The job queue is unavailable: not connected to the broker'],
      ['QUEUE_CLOSED', 503, 'The job queue is closed'],
      ['INVALID_JOB', 400, 'Invalid job: line must match x'],
    ],
  );
  assert.equal(made[2]!.cause, cause);
  // And what a real queue throws.
  const q = createJobQueue('sqlite::memory:', { maxLength: 1 });
  t.after(() => q.close());
  await q.waitUntilReady();
  const input = { line: 'l', image: Buffer.from([1]), contentType: 'image/png' };
  await assert.rejects(q.enqueue({ ...input, line: 'a*b' }), (err: unknown) => err instanceof Errors.INVALID_JOB);
  await q.enqueue(input);
  await assert.rejects(q.enqueue(input), (err: unknown) => err instanceof Errors.QUEUE_FULL && err.message === 'The job queue is full (1 jobs waiting)');
  await q.close();
  await assert.rejects(q.enqueue(input), (err: unknown) => err instanceof Errors.QUEUE_CLOSED);
});

test('one translation: the HTTP handler, tus uploads and stream messages give the same body for the same error', async (t) => {
  const app = Fastify({ logger: false });
  installErrorHandler(app, 1024);
  let thrown: unknown;
  app.get('/x', async () => {
    throw thrown;
  });
  t.after(() => app.close());
  const cases: unknown[] = [
    new Errors.OVERLOADED('busy'),
    queueFull(3),
    new Errors.INVALID_JOB('no'),
    new Error('secret detail'),
    Object.assign(new Error('db'), { code: 'ECONNRESET' }),
  ];
  for (const err of cases) {
    thrown = err;
    const res = await app.inject({ method: 'GET', url: '/x' });
    const api = toApiError(err);
    assert.equal(res.statusCode, api.statusCode);
    assert.deepEqual(res.json(), { error: { code: api.code, message: api.message } });
    assert.deepEqual(errorBody(err), { code: api.code, message: api.message });
  }
  assert.deepEqual(toApiError(new Error('secret detail')), { statusCode: 500, code: 'INTERNAL_ERROR', message: 'Internal error' });
  assert.equal(apiErrorOf(new Error('x')), undefined);
  // tus keeps its own status; the code and message come from the registry.
  assert.deepEqual(tusError(410, '', 0), {
    statusCode: 410,
    code: 'UPLOAD_NOT_FOUND',
    message: new Errors.UPLOAD_NOT_FOUND('at this URL any more (expired or deleted)').message,
  });
});

test('the SDK retries exactly the server codes the server answers with Retry-After (RETRYABLE_CODES), plus only its own connection codes', async (t) => {
  const app = Fastify({ logger: false });
  installErrorHandler(app, 1024);
  app.get<{ Params: { id: string } }>('/v1/jobs/:id', async (request) => {
    throw new (Errors[request.params.id as keyof typeof Errors] as unknown as new (...args: string[]) => Error)('a', 'b');
  });
  t.after(() => app.close());
  const baseUrl = await app.listen({ port: 0, host: '127.0.0.1' });
  const client = new SightlineClient({ baseUrl });
  const seen: Array<[string, number, boolean, boolean]> = [];
  for (const code of ERROR_CODES) {
    const err = await client.getJob(code).catch((e: unknown) => e);
    assert.ok(err instanceof SightlineError, String(err));
    seen.push([err.code, err.status, err.retryAfterMs !== null, err.retryable]);
  }
  assert.deepEqual(
    seen,
    ERROR_CODES.map((code) => [code, ERROR_STATUS[code], RETRYABLE_CODES.has(code), RETRYABLE_CODES.has(code)]),
  );
  // Client-side codes: only those where the connection, not the request, failed are retryable; none is a server code.
  assert.deepEqual([...CLIENT_RETRYABLE_CODES].sort(), ['CLIENT_BACKPRESSURE', 'CONNECTION_LOST', 'NETWORK_ERROR', 'NOT_CONNECTED', 'TIMEOUT']);
  const clientCodes = Object.keys(CLIENT_ERROR_CODES);
  assert.deepEqual(
    clientCodes.filter((c) => (ERROR_CODES as string[]).includes(c)),
    [],
  );
  for (const code of clientCodes) {
    assert.equal(new SightlineError({ code, message: '' }).retryable, (CLIENT_RETRYABLE_CODES as ReadonlySet<string>).has(code), code);
  }
});
