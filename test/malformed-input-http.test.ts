/**
 * Malformed and hostile HTTP framing (issue 12, items 3, 5, 8 and 11), over real
 * sockets: multipart bodies past body_limit_bytes as a whole, file fields other
 * than `image`, router errors that must not echo the URL (its access_token), a
 * malformed request pipelined behind a valid one, and `Expect: 100-continue`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { LogCapture, solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { authApp } from './auth-helpers.js';
import { errorOf, multipart, parseResponse, rawTarget, requestBytes, send, type RawResponse } from './helpers/raw-http.js';

const LIMIT = 1024 * 1024; // body_limit_bytes of the app under test
const KIB = 1024;

/** Every response in `data`, in order (Sightline's answers carry Content-Length). */
function parseResponses(data: Buffer): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = data;
  while (rest.length > 0) {
    const res = parseResponse(rest);
    out.push(res);
    const end = rest.indexOf('\r\n\r\n') + 4;
    rest = rest.subarray(end + Number(res.headers['content-length'] ?? rest.length));
  }
  return out;
}

/** True once `data` holds a whole response (its head and Content-Length bytes of body). */
function complete(data: Buffer): boolean {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const length = /\r\ncontent-length: *(\d+)/i.exec(data.subarray(0, end).toString('latin1'))?.[1];
  return length !== undefined && data.length >= end + 4 + Number(length);
}

/** Sends raw bytes on a fresh connection, reads until the server closes it, returns every byte read. */
function exchange(bytes: Buffer, timeoutMs = 15_000, port = rawTarget.port): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 400))}`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.write(bytes);
  });
}

/**
 * Writes `head`, then the `pieces` of a body one at a time with a pause between
 * them, and stops writing as soon as the server answers: says how much of the
 * body went out before the answer came.
 */
function trickle(head: Buffer, pieces: Buffer[], pauseMs = 4, timeoutMs = 20_000): Promise<{ res: RawResponse; sent: number; total: number }> {
  const total = pieces.reduce((n, p) => n + p.length, 0);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: rawTarget.port });
    const chunks: Buffer[] = [];
    let sent = 0;
    let answered = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms (${sent} of ${total} body bytes sent)`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      try {
        resolve({ res: parseResponse(Buffer.concat(chunks)), sent, total });
      } catch (err) {
        reject(err as Error);
      }
    };
    socket.on('data', (c: Buffer) => {
      answered = true;
      chunks.push(c);
      if (complete(Buffer.concat(chunks))) finish();
    });
    socket.on('error', () => undefined);
    socket.on('close', finish);
    socket.write(head);
    void (async () => {
      for (const piece of pieces) {
        if (answered || socket.destroyed) return;
        await new Promise((r) => setTimeout(r, pauseMs));
        if (answered || socket.destroyed) return;
        socket.write(piece);
        sent += piece.length;
      }
    })();
  });
}

function slices(body: Buffer, size = 64 * KIB): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < body.length; at += size) out.push(body.subarray(at, at + size));
  return out;
}

/** `body` as HTTP/1.1 chunks (Transfer-Encoding: chunked, no Content-Length). */
function chunked(body: Buffer, size = 64 * KIB): Buffer[] {
  return [...slices(body, size).map((s) => Buffer.concat([Buffer.from(`${s.length.toString(16)}\r\n`), s, Buffer.from('\r\n')])), Buffer.from('0\r\n\r\n')];
}

function head(method: string, path: string, headers: Record<string, string>): Buffer {
  return requestBytes({ method, path, headers });
}

describe('malformed HTTP input (issue 12)', () => {
  const models = tempDir();
  const sandbox = tempDir();
  const logs = new LogCapture();
  let app: FastifyInstance;
  let jpeg: Buffer;

  before(async () => {
    writeDecoderModels(models.dir);
    app = await startApp(
      {
        models_dir: models.dir,
        default_model: 'v8',
        data_dir: sandbox.dir,
        uploads_dir: `${sandbox.dir}/uploads`,
        rate_limit_per_second: 0,
        body_limit_bytes: LIMIT,
        upload_max_bytes: 2 * LIMIT,
      },
      { logs },
    );
    await app.listen({ host: '127.0.0.1', port: 0 });
    rawTarget.port = (app.server.address() as { port: number }).port;
    jpeg = await solidImage(64, 48, 'jpeg');
  });

  after(async () => {
    await app?.close();
    models.cleanup();
    sandbox.cleanup();
  });

  async function assertHealthy(): Promise<void> {
    const res = await send({ method: 'POST', path: '/v1/detect', headers: { 'content-type': 'image/jpeg' }, body: jpeg });
    assert.equal(res.status, 200, `a valid POST /v1/detect afterwards: ${res.body.toString().slice(0, 300)}`);
  }

  /** sightline_requests_total and sightline_jobs_total samples, by their labels. */
  async function counters(): Promise<(name: string, labels: Record<string, string>) => number> {
    const res = await send({ path: '/metrics' });
    assert.equal(res.status, 200);
    const samples = res.body
      .toString()
      .split('\n')
      .filter((l) => /^sightline_(requests|jobs)_total\{/.test(l))
      .map((l) => {
        const m = /^(\w+)\{(.*)\} (\S+)$/.exec(l)!;
        const labels = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
        return { name: m[1]!, labels, value: Number(m[3]) };
      });
    return (name, labels) =>
      samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);
  }

  describe('multipart bodies are bounded as a whole (item 3)', () => {
    test('3 large non-image file parts and an image, Content-Length over body_limit_bytes: 413 before the body is sent', async () => {
      const big = Buffer.alloc(900 * KIB, 0x41);
      const form = multipart([
        { name: 'a', filename: 'a.bin', type: 'application/octet-stream', data: big },
        { name: 'b', filename: 'b.bin', type: 'application/octet-stream', data: big },
        { name: 'c', filename: 'c.bin', type: 'application/octet-stream', data: big },
        { name: 'image', filename: 'x.jpg', type: 'image/jpeg', data: jpeg },
      ]);
      const { res, sent, total } = await trickle(
        head('POST', '/v1/detect', { 'content-type': form.type, 'content-length': String(form.body.length), connection: 'keep-alive' }),
        slices(form.body),
      );
      assert.equal(res.status, 413, res.body.toString());
      assert.equal(errorOf(res).code, 'BODY_TOO_LARGE');
      assert.ok(res.headers['x-request-id']);
      assert.equal(res.headers.connection, 'close', 'the rest of the body is not read: the connection closes');
      assert.ok(sent < total / 2, `answered after ${sent} of ${total} body bytes`);
      await assertHealthy();
    });

    test('many small text fields adding up past body_limit_bytes, chunked (no Content-Length): 413 once the total passes the limit', async () => {
      // 15 fields of 200 KiB: each under busboy's per-field limit, 16 fields allowed, 3 MB in all.
      const form = multipart([
        ...Array.from({ length: 15 }, (_, i) => ({ name: `note${i}`, data: 'n'.repeat(200 * KIB) })),
        { name: 'image', filename: 'x.jpg', type: 'image/jpeg', data: jpeg },
      ]);
      const before = await counters();
      const { res, sent, total } = await trickle(
        head('POST', '/v1/jobs', { 'content-type': form.type, 'transfer-encoding': 'chunked', connection: 'keep-alive' }),
        chunked(form.body),
      );
      assert.equal(res.status, 413, res.body.toString());
      assert.equal(errorOf(res).code, 'BODY_TOO_LARGE');
      assert.ok(sent < total * 0.75, `answered after ${sent} of ${total} body bytes (the limit is ${LIMIT})`);
      const now = await counters();
      assert.equal(now('sightline_jobs_total', { state: 'enqueued' }), before('sightline_jobs_total', { state: 'enqueued' }), 'no job was created');
      // Busboy's count limits still hold: 17 text fields are too many.
      const many = multipart([
        ...Array.from({ length: 17 }, (_, i) => ({ name: `f${i}`, data: 'x' })),
        { name: 'image', filename: 'x.jpg', type: 'image/jpeg', data: jpeg },
      ]);
      const tooMany = await send({ method: 'POST', path: '/v1/detect', headers: { 'content-type': many.type }, body: many.body });
      assert.equal(tooMany.status, 413);
      assert.equal(errorOf(tooMany).code, 'BODY_TOO_LARGE');
      // Within the limit, text fields and the image are fine.
      const fits = multipart([
        { name: 'note', data: 'n'.repeat(100 * KIB) },
        { name: 'image', filename: 'x.jpg', type: 'image/jpeg', data: jpeg },
      ]);
      const ok = await send({ method: 'POST', path: '/v1/detect', headers: { 'content-type': fits.type }, body: fits.body });
      assert.equal(ok.status, 200, ok.body.toString());
      assert.deepEqual(JSON.parse(ok.body.toString()).image, { width: 64, height: 48 });
    });

    test('a file field other than "image" is refused (400 naming it) when its header arrives, before its bytes are read', async () => {
      const form = multipart([
        { name: 'attachment', filename: 'big.bin', type: 'application/octet-stream', data: Buffer.alloc(900 * KIB, 0x42) },
        { name: 'image', filename: 'x.jpg', type: 'image/jpeg', data: jpeg },
      ]);
      const { res, sent, total } = await trickle(
        head('POST', '/v1/detect', { 'content-type': form.type, 'transfer-encoding': 'chunked', connection: 'keep-alive' }),
        chunked(form.body, 16 * KIB),
      );
      assert.equal(res.status, 400, res.body.toString());
      const error = errorOf(res);
      assert.equal(error.code, 'INVALID_REQUEST');
      assert.match(error.message, /"attachment"/);
      assert.ok(sent < total / 2, `answered after ${sent} of ${total} body bytes`);
      // Small, complete bodies too.
      const small = multipart([
        { name: 'image', filename: 'x.jpg', type: 'image/jpeg', data: jpeg },
        { name: 'thumb', filename: 't.jpg', type: 'image/jpeg', data: jpeg },
      ]);
      const res2 = await send({ method: 'POST', path: '/v1/detect', headers: { 'content-type': small.type }, body: small.body });
      assert.equal(res2.status, 400);
      assert.match(errorOf(res2).message, /"thumb"/);
      await assertHealthy();
    });
  });

  test('router errors do not echo the URL or its access_token, and are logged and counted (item 5)', async () => {
    const secret = 'sl_xxx_secret';
    const cases = [
      { path: `/v1/jobs/%FF?access_token=${secret}`, status: 400, code: 'INVALID_REQUEST' },
      { path: `/v1/results/%zz?line=a&access_token=${secret}`, status: 400, code: 'INVALID_REQUEST' },
      { path: `/v1/results/${'a'.repeat(300)}?access_token=${secret}`, status: 400, code: 'INVALID_REQUEST' },
      { path: `/v1/uploads/%FF%FE?access_token=${secret}`, status: 404, code: 'UPLOAD_NOT_FOUND' },
      { path: `/v1/nothing-here?access_token=${secret}`, status: 404, code: 'NOT_FOUND' },
    ];
    for (const c of cases) {
      const before = await counters();
      const res = await send({ path: c.path });
      const text = res.body.toString();
      assert.equal(res.status, c.status, `${c.path}: ${text}`);
      assert.equal(errorOf(res).code, c.code);
      assert.ok(!text.includes(secret) && !text.includes('access_token') && !text.includes('?'), `${c.path} echoed: ${text}`);
      const id = res.headers['x-request-id'];
      assert.ok(id, 'X-Request-Id');
      // The log line is written when the answer finishes: it is there by the time /metrics answers.
      const after = await counters();
      assert.equal(
        after('sightline_requests_total', { status: String(c.status) }) - before('sightline_requests_total', { status: String(c.status) }),
        1,
        `${c.path} counted`,
      );
      const failure = logs.lines.find((l) => l.event === 'request_failure' && l.request_id === id);
      assert.ok(failure, `${c.path}: a request_failure line`);
      assert.equal(failure.error_code, c.code);
      assert.equal(failure.status, c.status);
    }
    assert.equal(
      (await counters())('sightline_requests_total', { route: 'unmatched', status: '400' }) >= 3,
      true,
      'router errors are counted under route "unmatched"',
    );
    const leaked = logs.lines.filter((l) => JSON.stringify(l).includes(secret));
    assert.deepEqual(leaked, [], 'no log line carries the token');
  });

  test('a malformed request pipelined behind valid ones: their answers come first, in order, then the 400 (item 8)', async () => {
    const before = await counters();
    const line = `pipe-${Date.now()}`;
    const keepAlive = { connection: 'keep-alive', 'content-type': 'image/jpeg' };
    const bytes = Buffer.concat([
      requestBytes({ method: 'POST', path: `/v1/detect?line=${line}`, headers: keepAlive, body: jpeg }),
      requestBytes({ method: 'POST', path: `/v1/jobs?line=${line}`, headers: keepAlive, body: jpeg }),
      Buffer.from('NOT AN HTTP REQUEST\r\n\r\n'),
    ]);
    const answers = parseResponses(await exchange(bytes));
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 202, 400],
      answers.map((a) => `${a.status} ${a.body.toString().slice(0, 120)}`).join('\n'),
    );
    assert.equal(JSON.parse(answers[0]!.body.toString()).line, line);
    const { job_id } = JSON.parse(answers[1]!.body.toString()) as { job_id: string };
    assert.equal(errorOf(answers[2]!).code, 'INVALID_REQUEST');
    assert.equal(answers[2]!.headers.connection, 'close');
    const job = await send({ path: `/v1/jobs/${job_id}` });
    assert.equal(job.status, 200);
    const now = await counters();
    assert.equal(now('sightline_jobs_total', { state: 'enqueued' }) - before('sightline_jobs_total', { state: 'enqueued' }), 1, 'the job exists once');
    await assertHealthy();
  });

  describe('Expect: 100-continue (item 11)', () => {
    const expect = { expect: '100-continue', connection: 'keep-alive' };

    test('a Content-Length over the limit, an unknown route, a refused type, an oversized tus PATCH: the final answer, never 100 Continue; a body within the limit: 100 Continue, then 200', async () => {
      const cases = [
        {
          name: 'raw image of 30 MB',
          req: head('POST', '/v1/detect', { ...expect, 'content-type': 'image/jpeg', 'content-length': '30000000' }),
          status: 413,
          code: 'BODY_TOO_LARGE',
        },
        {
          name: 'multipart of 30 MB',
          req: head('POST', '/v1/jobs', { ...expect, 'content-type': 'multipart/form-data; boundary=x', 'content-length': '30000000' }),
          status: 413,
          code: 'BODY_TOO_LARGE',
        },
        {
          name: 'unknown route',
          req: head('POST', '/v1/nothing', { ...expect, 'content-type': 'image/jpeg', 'content-length': '1000' }),
          status: 404,
          code: 'NOT_FOUND',
        },
        {
          name: 'unsupported content type',
          req: head('POST', '/v1/detect', { ...expect, 'content-type': 'image/gif', 'content-length': '1000' }),
          status: 415,
          code: 'UNSUPPORTED_MEDIA_TYPE',
        },
        {
          name: 'tus PATCH over upload_max_bytes',
          req: head('PATCH', `/v1/uploads/${'0'.repeat(32)}`, {
            ...expect,
            'tus-resumable': '1.0.0',
            'upload-offset': '0',
            'content-type': 'application/offset+octet-stream',
            'content-length': String(3 * LIMIT),
          }),
          status: 413,
          code: 'UPLOAD_TOO_LARGE',
        },
      ];
      for (const c of cases) {
        const before = await counters();
        // Only the head is sent: a server that waits for the body would time out here.
        const data = await exchange(c.req, 10_000).catch((err: Error) => assert.fail(`${c.name}: ${err.message}`));
        const text = data.toString('latin1');
        assert.ok(!/^HTTP\/1\.1 100/m.test(text), `${c.name}: 100 Continue was sent: ${text.slice(0, 200)}`);
        const res = parseResponse(data);
        assert.equal(res.status, c.status, `${c.name}: ${res.body.toString()}`);
        assert.equal(errorOf(res).code, c.code, c.name);
        assert.ok(res.headers['x-request-id'], `${c.name}: X-Request-Id`);
        const after = await counters();
        assert.equal(
          after('sightline_requests_total', { status: String(c.status) }) - before('sightline_requests_total', { status: String(c.status) }),
          1,
          `${c.name}: counted`,
        );
        assert.ok(
          logs.lines.some((l) => l.event === 'request_failure' && l.request_id === res.headers['x-request-id']),
          `${c.name}: logged`,
        );
      }

      // A body within the limit: 100 Continue, then the body, then 200.
      const socket = connect({ host: '127.0.0.1', port: rawTarget.port });
      socket.on('error', () => undefined);
      let data = Buffer.alloc(0);
      const waiters: (() => void)[] = [];
      socket.on('data', (c: Buffer) => {
        data = Buffer.concat([data, c]);
        for (const waiter of waiters.splice(0)) waiter();
      });
      const until = (cond: () => boolean, what: string) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no ${what}; got ${JSON.stringify(data.toString('latin1').slice(0, 200))}`)), 10_000);
          const check = () => {
            if (!cond()) {
              waiters.push(check);
              return;
            }
            clearTimeout(timer);
            resolve();
          };
          check();
        });
      socket.write(head('POST', '/v1/detect', { ...expect, 'content-type': 'image/jpeg', 'content-length': String(jpeg.length) }));
      await until(() => data.includes('\r\n\r\n'), '100 Continue');
      assert.match(data.toString('latin1'), /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
      data = Buffer.alloc(0);
      socket.write(jpeg);
      await until(() => complete(data), 'the answer');
      socket.destroy();
      const res = parseResponse(data);
      assert.equal(res.status, 200, res.body.toString());
      assert.deepEqual(JSON.parse(res.body.toString()).image, { width: 64, height: 48 });
    });

    test('without a credential (auth on): 401, never 100 Continue', async () => {
      const { app: guarded, close } = await authApp();
      try {
        await guarded.listen({ host: '127.0.0.1', port: 0 });
        const port = (guarded.server.address() as { port: number }).port;
        const data = await exchange(head('POST', '/v1/detect', { ...expect, 'content-type': 'image/jpeg', 'content-length': '5000000' }), 10_000, port);
        assert.ok(!/^HTTP\/1\.1 100/m.test(data.toString('latin1')), `100 Continue was sent: ${data.toString('latin1').slice(0, 200)}`);
        const res = parseResponse(data);
        assert.equal(res.status, 401, res.body.toString());
        assert.equal(errorOf(res).code, 'UNAUTHORIZED');
      } finally {
        await close();
      }
    });
  });
});
