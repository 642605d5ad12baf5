/**
 * Malformed-input corpus (issue 8): every kind of broken, hostile or oversized
 * input the server can meet, sent over a real socket. Each case must get a 4xx
 * with a stable code (or, for WebSocket protocol violations, the documented
 * close code), nothing may crash, and after every case the server must still
 * answer /livez and a valid POST /v1/detect.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { StreamClient, type Of } from './helpers/stream-client.js';
import {
  bmp,
  clientFrame,
  PNG_SIGNATURE,
  deepArray,
  deepObject,
  EMPTY_ZIP,
  errorOf,
  headerOnlyPng,
  hugeJpeg,
  multipart,
  rawTarget,
  RawWs,
  send,
  storedZip,
  withChunk,
  zeroPng,
  type RawRequest,
} from './helpers/raw-http.js';
import { encodeFrame, FRAME_MAGIC, FRAME_PREFIX_BYTES } from '../src/protocol/stream.js';

describe('malformed-input corpus', () => {
  const models = tempDir();
  const sandbox = tempDir();
  const dataDir = join(sandbox.dir, 'data');
  const uploadsDir = join(dataDir, 'uploads');
  const outside = join(sandbox.dir, 'outside');
  const BODY_LIMIT = 20 * 1024 * 1024; // the default body_limit_bytes
  let app: FastifyInstance;
  let validJpeg: Buffer;
  let validPng: Buffer;
  let validWebp: Buffer;
  const failures: string[] = [];
  const onRejection = (reason: unknown) => failures.push(`unhandledRejection: ${reason instanceof Error ? reason.stack : String(reason)}`);
  const onException = (err: Error) => failures.push(`uncaughtException: ${err.stack}`);
  /** Observed answers, printed at the end (the report lists them). */
  const observed: string[] = [];

  before(async () => {
    process.on('unhandledRejection', onRejection);
    process.on('uncaughtException', onException);
    writeDecoderModels(models.dir);
    mkdirSync(outside, { recursive: true });
    // Auth and limits stay at their defaults (loopback needs no key); only the rate limit is off,
    // because the corpus sends a few hundred requests from one address in a few seconds.
    app = await startApp({ models_dir: models.dir, default_model: 'v8', data_dir: dataDir, uploads_dir: uploadsDir, rate_limit_per_second: 0 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    rawTarget.port = (app.server.address() as { port: number }).port;
    validJpeg = await solidImage(64, 48, 'jpeg');
    validPng = await solidImage(64, 48, 'png');
    validWebp = await solidImage(64, 48, 'webp');
  });

  after(async () => {
    await app?.close();
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
    models.cleanup();
    sandbox.cleanup();
    if (process.env.CORPUS_REPORT) console.log(observed.join('\n'));
  });

  async function assertHealthy(): Promise<void> {
    const live = await send({ path: '/livez' });
    assert.equal(live.status, 200, 'GET /livez after the case');
    const detect = await send({ method: 'POST', path: '/v1/detect', headers: { 'content-type': 'image/jpeg' }, body: validJpeg });
    assert.equal(detect.status, 200, `a valid POST /v1/detect after the case: ${detect.body.toString().slice(0, 300)}`);
    assert.equal(JSON.parse(detect.body.toString()).image.width, 64);
  }

  interface HttpCase {
    name: string;
    req: () => RawRequest | Promise<RawRequest>;
    status: number;
    code: string;
    /** Refused by Node's HTTP parser (the connections' clientError handler), before a request id exists. */
    parserLevel?: boolean;
  }

  async function runHttp(t: TestContext, cases: HttpCase[]): Promise<void> {
    for (const c of cases) {
      await t.test(c.name, async () => {
        const res = await send(await c.req());
        observed.push(`${c.name} → ${res.status} ${res.body.toString('utf8').slice(0, 160)}`);
        const error = res.status >= 400 ? errorOf(res) : undefined;
        assert.equal(res.status, c.status, `${c.name}: ${res.body.toString('utf8').slice(0, 300)}`);
        assert.equal(error?.code, c.code, `${c.name}: ${error?.message}`);
        if (!c.parserLevel) assert.ok(res.headers['x-request-id'], 'every answer carries X-Request-Id');
        await assertHealthy();
      });
    }
  }

  const post = (path: string, body: Buffer | string, type = 'image/jpeg', headers: Record<string, string | Buffer> = {}): RawRequest => ({
    method: 'POST',
    path,
    headers: { 'content-type': type, ...headers },
    body,
  });

  test('queries, path ids and headers', async (t) => {
    const some = '/v1/detect';
    await runHttp(t, [
      { name: 'unknown query on GET /v1/models', req: () => ({ path: '/v1/models?x=1' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on GET /metrics', req: () => ({ path: '/metrics?x=1' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on GET /livez', req: () => ({ path: '/livez?x=1' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on GET /readyz', req: () => ({ path: '/readyz?verbose=1' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on GET /v1/alerts', req: () => ({ path: '/v1/alerts?x=1' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on POST /v1/detect', req: () => post(`${some}?colour=red`, validJpeg), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on POST /v1/jobs', req: () => post('/v1/jobs?colour=red', validJpeg), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on GET /v1/jobs/:id', req: () => ({ path: '/v1/jobs/abc?x=1' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on GET /v1/dead-letters', req: () => ({ path: '/v1/dead-letters?x=1' }), status: 400, code: 'INVALID_REQUEST' },
      {
        name: 'unknown query on POST /v1/dead-letters/:id/retry',
        req: () => ({ method: 'POST', path: '/v1/dead-letters/abc/retry?x=1' }),
        status: 400,
        code: 'INVALID_REQUEST',
      },
      {
        name: 'unknown query on DELETE /v1/dead-letters',
        req: () => ({ method: 'DELETE', path: '/v1/dead-letters?all=1' }),
        status: 400,
        code: 'INVALID_REQUEST',
      },
      { name: 'unknown query on GET /v1/results', req: () => ({ path: '/v1/results?x=1' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on GET /v1/results/:id', req: () => ({ path: '/v1/results/abc?x=1' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on GET /v1/lines/:line/stats', req: () => ({ path: '/v1/lines/l1/stats?x=1' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on GET /v1/uploads/:id', req: () => ({ path: `/v1/uploads/${'0'.repeat(32)}?x=1` }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'unknown query on GET /v1/stream', req: () => ({ path: '/v1/stream?x=1' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'invalid UTF-8 in the query (line=%FF%FE)', req: () => post('/v1/detect?line=%FF%FE', validJpeg), status: 400, code: 'INVALID_REQUEST' },
      {
        name: 'invalid UTF-8 in the query of GET /v1/results (label=%FF)',
        req: () => ({ path: '/v1/results?label=%FF' }),
        status: 400,
        code: 'INVALID_REQUEST',
      },
      { name: 'raw bytes ≥ 0x80 in the query', req: () => ({ path: '/v1/results?line=\xff\xfe' }), status: 400, code: 'INVALID_REQUEST', parserLevel: true },
      {
        name: 'repeated query parameter (conf=0.1&conf=0.2)',
        req: () => post('/v1/detect?conf=0.1&conf=0.2', validJpeg),
        status: 400,
        code: 'INVALID_REQUEST',
      },
      { name: 'path traversal in a job id', req: () => ({ path: '/v1/jobs/..%2F..%2Fetc%2Fpasswd' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'path traversal in a result id', req: () => ({ path: '/v1/results/..%2F..%2Fetc%2Fpasswd' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'path traversal in a line', req: () => ({ path: '/v1/lines/..%2F..%2Fetc/stats' }), status: 400, code: 'INVALID_REQUEST' },
      {
        name: 'path traversal in a dead-letter id',
        req: () => ({ method: 'POST', path: '/v1/dead-letters/..%2Fx/retry' }),
        status: 400,
        code: 'INVALID_REQUEST',
      },
      { name: 'invalid UTF-8 in a path id (%FF)', req: () => ({ path: '/v1/jobs/%FF%FE' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'broken percent-encoding in a path id (%zz)', req: () => ({ path: '/v1/results/%zz' }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'a 129-character id', req: () => ({ path: `/v1/jobs/${'a'.repeat(129)}` }), status: 400, code: 'INVALID_REQUEST' },
      {
        name: 'a 128-character id is a valid id (X-Request-Id allows 128)',
        req: () => ({ path: `/v1/results/${'a'.repeat(128)}` }),
        status: 404,
        code: 'RESULT_NOT_FOUND',
      },
      { name: 'a 300-character path segment', req: () => ({ path: `/v1/results/${'a'.repeat(300)}` }), status: 400, code: 'INVALID_REQUEST' },
      { name: 'invalid UTF-8 in an upload id', req: () => ({ path: '/v1/uploads/%FF%FE' }), status: 404, code: 'UPLOAD_NOT_FOUND' },
      {
        name: 'X-Request-Timeout-Ms with bytes ≥ 0x80',
        req: () => post(some, validJpeg, 'image/jpeg', { 'x-request-timeout-ms': Buffer.from([0x31, 0xff, 0xfe]) }),
        status: 400,
        code: 'INVALID_REQUEST',
      },
      {
        name: 'Idempotency-Key with bytes ≥ 0x80',
        req: () => post('/v1/jobs', validJpeg, 'image/jpeg', { 'idempotency-key': Buffer.from([0x6b, 0xc3, 0x28]) }),
        status: 400,
        code: 'INVALID_REQUEST',
      },
      {
        name: 'X-Request-Timeout-Ms not a number',
        req: () => post(some, validJpeg, 'image/jpeg', { 'x-request-timeout-ms': 'soon' }),
        status: 400,
        code: 'INVALID_REQUEST',
      },
      { name: 'unknown route', req: () => ({ path: '/v1/../../etc/passwd' }), status: 404, code: 'NOT_FOUND' },
    ]);
  });

  test('X-Request-Id with bytes ≥ 0x80 (invalid UTF-8) is replaced by a fresh UUID, as documented', async () => {
    const res = await send(post('/v1/detect', validJpeg, 'image/jpeg', { 'x-request-id': Buffer.from([0x72, 0xff, 0xfe, 0xc3, 0x28]) }));
    observed.push(`X-Request-Id with bytes ≥ 0x80 → ${res.status}, X-Request-Id ${res.headers['x-request-id']}`);
    assert.equal(res.status, 200);
    assert.match(res.headers['x-request-id']!, /^[0-9a-f-]{36}$/);
    assert.equal(JSON.parse(res.body.toString()).request_id, res.headers['x-request-id']);
    await assertHealthy();
  });

  test('a 64 KB header → 431 HEADERS_TOO_LARGE as JSON', async (t) => {
    await runHttp(t, [
      {
        name: '64 KB header value',
        req: () => ({ path: '/livez', headers: { 'x-padding': 'a'.repeat(64 * 1024) } }),
        status: 431,
        code: 'HEADERS_TOO_LARGE',
        parserLevel: true,
      },
    ]);
  });

  test('JSON bodies: no route takes one, deep ones included', async (t) => {
    const deep = deepArray(100_000);
    const deepObj = deepObject(100_000);
    await runHttp(t, [
      {
        name: '100,000-deep JSON array to POST /v1/detect',
        req: () => post('/v1/detect', deep, 'application/json'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        name: '100,000-deep JSON object to POST /v1/detect',
        req: () => post('/v1/detect', deepObj, 'application/json'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      { name: '100,000-deep JSON array to POST /v1/jobs', req: () => post('/v1/jobs', deep, 'application/json'), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      {
        name: '100,000-deep JSON object to POST /v1/jobs',
        req: () => post('/v1/jobs', deepObj, 'application/json; charset=utf-8'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        name: '100,000-deep JSON array to POST /v1/dead-letters/x/retry',
        req: () => post('/v1/dead-letters/x/retry', deep, 'application/json'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        name: '100,000-deep JSON object to POST /v1/dead-letters/x/retry',
        req: () => post('/v1/dead-letters/x/retry', deepObj, 'application/json'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        name: 'JSON body to DELETE /v1/dead-letters',
        req: () => ({ method: 'DELETE', path: '/v1/dead-letters', headers: { 'content-type': 'application/json' }, body: '{"all":true}' }),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        name: 'prototype-poisoning JSON to POST /v1/detect',
        req: () => post('/v1/detect', '{"__proto__":{"x":1}}', 'application/json'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        name: 'invalid UTF-8 JSON to POST /v1/detect',
        req: () => post('/v1/detect', Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), 'application/json'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      { name: 'text/plain to POST /v1/detect', req: () => post('/v1/detect', 'hello', 'text/plain'), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      {
        name: 'form-urlencoded to POST /v1/jobs',
        req: () => post('/v1/jobs', 'a=1', 'application/x-www-form-urlencoded'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        name: 'XML to POST /v1/detect',
        req: () => post('/v1/detect', '<?xml version="1.0"?><a/>', 'application/xml'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
    ]);
  });

  test('images: sniffed from their bytes, truncated, polyglot, oversized', async (t) => {
    const noisy = (w: number, h: number) =>
      sharp({ create: { width: w, height: h, channels: 3, background: 'grey', noise: { type: 'gaussian', mean: 128, sigma: 40 } } });
    const jpeg = await noisy(400, 300).jpeg().toBuffer();
    const png = await noisy(400, 300).png().toBuffer();
    const webp = await noisy(400, 300).webp().toBuffer();
    const gif = await sharp({ create: { width: 4, height: 4, channels: 3, background: 'red' } })
      .gif()
      .toBuffer();
    const tiff = await sharp({ create: { width: 4, height: 4, channels: 3, background: 'red' } })
      .tiff()
      .toBuffer();
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="4000" height="4000"><rect width="10" height="10"/></svg>';
    const html = '<!DOCTYPE html><html><body><script>alert(1)</script></body></html>';
    const bomb = zeroPng(20_000, 20_000);
    assert.ok(bomb.length < 200_000, `the bomb is ${bomb.length} bytes`);
    const emptyMultipart = multipart([{ name: 'other', filename: 'x.jpg', type: 'image/jpeg', data: validJpeg }]);
    const twoImages = multipart([
      { name: 'image', filename: 'a.jpg', type: 'image/jpeg', data: validJpeg },
      { name: 'image', filename: 'b.jpg', type: 'image/jpeg', data: validJpeg },
    ]);
    const cutMultipart = multipart([{ name: 'image', filename: 'a.jpg', type: 'image/jpeg', data: validJpeg }], undefined, false);
    const manyFields = multipart(Array.from({ length: 17 }, (_, i) => ({ name: `f${i}`, data: 'x' })));
    const textImage = multipart([{ name: 'image', data: 'not a file' }]);
    const gifPart = multipart([{ name: 'image', filename: 'a.png', type: 'image/png', data: gif }]);

    await runHttp(t, [
      { name: '0-byte body', req: () => post('/v1/detect', Buffer.alloc(0)), status: 400, code: 'EMPTY_BODY' },
      { name: 'truncated JPEG (half)', req: () => post('/v1/detect', jpeg.subarray(0, jpeg.length >> 1)), status: 400, code: 'INVALID_IMAGE' },
      { name: 'truncated JPEG (SOI only)', req: () => post('/v1/detect', jpeg.subarray(0, 4)), status: 400, code: 'INVALID_IMAGE' },
      { name: 'truncated PNG (half)', req: () => post('/v1/detect', png.subarray(0, png.length >> 1), 'image/png'), status: 400, code: 'INVALID_IMAGE' },
      { name: 'truncated PNG (signature only)', req: () => post('/v1/detect', PNG_SIGNATURE, 'image/png'), status: 400, code: 'INVALID_IMAGE' },
      { name: 'truncated WebP (half)', req: () => post('/v1/detect', webp.subarray(0, webp.length >> 1), 'image/webp'), status: 400, code: 'INVALID_IMAGE' },
      {
        name: 'polyglot: JPEG followed by a ZIP',
        req: () => post('/v1/detect', Buffer.concat([jpeg, storedZip('evil.html', Buffer.from(html))])),
        status: 400,
        code: 'INVALID_IMAGE',
      },
      {
        name: 'polyglot: JPEG followed by an empty ZIP',
        req: () => post('/v1/detect', Buffer.concat([validJpeg, EMPTY_ZIP]), 'application/octet-stream'),
        status: 400,
        code: 'INVALID_IMAGE',
      },
      {
        name: 'polyglot: PNG followed by HTML',
        req: () => post('/v1/detect', Buffer.concat([validPng, Buffer.from(html)]), 'image/png'),
        status: 400,
        code: 'INVALID_IMAGE',
      },
      {
        name: 'polyglot: WebP followed by a ZIP',
        req: () => post('/v1/detect', Buffer.concat([validWebp, EMPTY_ZIP]), 'image/webp'),
        status: 400,
        code: 'INVALID_IMAGE',
      },
      {
        name: 'PNG of 1.5 million tiny text chunks (CPU amplification)',
        req: () =>
          post(
            '/v1/detect',
            Buffer.concat([
              validPng.subarray(0, 33),
              Buffer.concat(Array(1_500_000).fill(Buffer.from('00000000744558740000000000', 'hex').subarray(0, 12))),
              validPng.subarray(33),
            ]),
            'image/png',
          ),
        status: 400,
        code: 'INVALID_IMAGE',
      },
      {
        name: 'PNG magic followed by HTML',
        req: () => post('/v1/detect', Buffer.concat([PNG_SIGNATURE, Buffer.from(html)]), 'image/png'),
        status: 400,
        code: 'INVALID_IMAGE',
      },
      {
        name: 'wrong magic: text declared image/png',
        req: () => post('/v1/detect', 'definitely not a png image', 'image/png'),
        status: 400,
        code: 'INVALID_IMAGE',
      },
      { name: 'GIF declared image/png', req: () => post('/v1/detect', gif, 'image/png'), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { name: 'BMP declared image/jpeg', req: () => post('/v1/detect', bmp()), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      {
        name: 'TIFF as application/octet-stream',
        req: () => post('/v1/detect', tiff, 'application/octet-stream'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      { name: 'SVG declared image/png', req: () => post('/v1/detect', svg, 'image/png'), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      {
        name: 'SVG with a BOM and whitespace declared image/webp',
        req: () => post('/v1/detect', `\ufeff \n${svg}`, 'image/webp'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      { name: 'HTML declared image/jpeg', req: () => post('/v1/detect', html), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { name: 'ZIP declared image/jpeg', req: () => post('/v1/detect', storedZip('a.jpg', validJpeg)), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      {
        name: 'PDF as application/octet-stream',
        req: () => post('/v1/detect', '%PDF-1.7\n1 0 obj\n<<>>\nendobj\n', 'application/octet-stream'),
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      { name: 'content type image/gif', req: () => post('/v1/detect', gif, 'image/gif'), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      {
        name: 'huge dimensions in a hand-made PNG IHDR (100000×100000)',
        req: () => post('/v1/detect', headerOnlyPng(100_000, 100_000), 'image/png'),
        status: 413,
        code: 'IMAGE_TOO_LARGE',
      },
      { name: 'huge dimensions in a patched JPEG SOF (65500×65500)', req: () => post('/v1/detect', hugeJpeg(validJpeg)), status: 413, code: 'IMAGE_TOO_LARGE' },
      { name: 'zip-bomb PNG (20000×20000 zeros)', req: () => post('/v1/detect', bomb, 'image/png'), status: 413, code: 'IMAGE_TOO_LARGE' },
      { name: 'zip-bomb PNG to POST /v1/jobs', req: () => post('/v1/jobs', bomb, 'image/png'), status: 413, code: 'IMAGE_TOO_LARGE' },
      { name: 'GIF to POST /v1/jobs', req: () => post('/v1/jobs', gif, 'image/png'), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { name: 'polyglot to POST /v1/jobs', req: () => post('/v1/jobs', Buffer.concat([validJpeg, EMPTY_ZIP])), status: 400, code: 'INVALID_IMAGE' },
      { name: 'body over body_limit_bytes', req: () => post('/v1/detect', Buffer.alloc(BODY_LIMIT + 1, 0xff)), status: 413, code: 'BODY_TOO_LARGE' },
      {
        name: 'multipart whose only file field is not "image" (refused, not buffered)',
        req: () => post('/v1/detect', emptyMultipart.body, emptyMultipart.type),
        status: 400,
        code: 'INVALID_REQUEST',
      },
      { name: 'multipart with "image" as a text field', req: () => post('/v1/detect', textImage.body, textImage.type), status: 400, code: 'EMPTY_BODY' },
      { name: 'multipart with two image fields', req: () => post('/v1/detect', twoImages.body, twoImages.type), status: 400, code: 'INVALID_REQUEST' },
      {
        name: 'multipart cut before its closing boundary',
        req: () => post('/v1/detect', cutMultipart.body, cutMultipart.type),
        status: 400,
        code: 'INVALID_REQUEST',
      },
      { name: 'multipart with more fields than allowed', req: () => post('/v1/detect', manyFields.body, manyFields.type), status: 413, code: 'BODY_TOO_LARGE' },
      { name: 'multipart without a boundary', req: () => post('/v1/detect', emptyMultipart.body, 'multipart/form-data'), status: 400, code: 'INVALID_REQUEST' },
      { name: 'multipart image part holding a GIF', req: () => post('/v1/detect', gifPart.body, gifPart.type), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
    ]);

    // Valid edge cases still work.
    for (const [name, image, status] of [
      ['1×1 PNG', await solidImage(1, 1, 'png'), 200],
      ['1×1 JPEG', await solidImage(1, 1, 'jpeg'), 200],
      ['JPEG sent as image/png (the content decides)', validJpeg, 200],
      ['PNG sent as application/octet-stream', validPng, 200],
      [
        'PNG with a zTXt chunk inflating to 64 MB (not inflated)',
        withChunk(validPng, 'zTXt', Buffer.concat([Buffer.from('Comment\0\0'), deflateSync(Buffer.alloc(64 * 2 ** 20, 0x41))])),
        200,
      ],
      [
        'PNG with an iCCP profile inflating to 64 MB (not inflated)',
        withChunk(validPng, 'iCCP', Buffer.concat([Buffer.from('icc\0\0'), deflateSync(Buffer.alloc(64 * 2 ** 20))])),
        200,
      ],
      ['1×4000 PNG (extreme aspect ratio)', await solidImage(1, 4000, 'png'), 200],
      ['4000×1 PNG (extreme aspect ratio)', await solidImage(4000, 1, 'png'), 200],
    ] as const) {
      await t.test(name, async () => {
        const type = name.includes('octet')
          ? 'application/octet-stream'
          : name.includes('as image/png')
            ? 'image/png'
            : `image/${name.includes('PNG') ? 'png' : 'jpeg'}`;
        const res = await send(post('/v1/detect', image, type));
        observed.push(`${name} → ${res.status}`);
        assert.equal(res.status, status, res.body.toString().slice(0, 300));
        await assertHealthy();
      });
    }
  });

  test('a raised pixel limit: the limit follows the config, and a bomb within it decodes in bounded memory', async () => {
    const bigData = tempDir();
    const big = await startApp({ models_dir: models.dir, default_model: 'v8', data_dir: bigData.dir, max_image_pixels: 100_000_000, rate_limit_per_second: 0 });
    try {
      const over = await big.inject({ method: 'POST', url: '/v1/detect', headers: { 'content-type': 'image/png' }, payload: zeroPng(20_000, 20_000) });
      assert.equal(over.statusCode, 413);
      assert.equal(over.json().error.code, 'IMAGE_TOO_LARGE');
      assert.match(over.json().error.message, /100000000/);
      // 10000 × 10000 = the limit: decoded (streamed through the resize, never held whole).
      const within = zeroPng(10_000, 10_000);
      const rssBefore = process.memoryUsage().rss;
      let peak = rssBefore;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
      const started = performance.now();
      const res = await big.inject({ method: 'POST', url: '/v1/detect', headers: { 'content-type': 'image/png' }, payload: within });
      clearInterval(sampler);
      observed.push(
        `10000×10000 zero PNG (${within.length} bytes) under max_image_pixels=1e8 → ${res.statusCode} in ${Math.round(performance.now() - started)} ms, RSS +${Math.round((peak - rssBefore) / 2 ** 20)} MiB`,
      );
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json().image, { width: 10_000, height: 10_000 });
      // 1e8 pixels as RGB would be 300 MB held at once; the pipeline streams it.
      assert.ok(peak - rssBefore < 250 * 2 ** 20, `RSS grew by ${Math.round((peak - rssBefore) / 2 ** 20)} MiB while decoding`);
    } finally {
      await big.close();
      bigData.cleanup();
    }
    await assertHealthy();
  });

  test('tus uploads: bad offsets, lengths, metadata, ids', async (t) => {
    const TUS = { 'tus-resumable': '1.0.0' };
    const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
    async function create(length: number, metadata = `line ${b64('line-1')}`): Promise<string> {
      const res = await send({ method: 'POST', path: '/v1/uploads', headers: { ...TUS, 'upload-length': String(length), 'upload-metadata': metadata } });
      assert.equal(res.status, 201, res.body.toString());
      return res.headers.location!;
    }
    const patch = (url: string, offset: string | undefined, body: Buffer, type = 'application/offset+octet-stream'): RawRequest => ({
      method: 'PATCH',
      path: url,
      headers: { ...TUS, 'content-type': type, ...(offset === undefined ? {} : { 'upload-offset': offset }) },
      body,
    });
    const url = await create(validJpeg.length);
    const traversal = '/v1/uploads/..%2F..%2Foutside%2Fpwned';
    await runHttp(t, [
      {
        name: 'POST Upload-Length negative',
        req: () => ({ method: 'POST', path: '/v1/uploads', headers: { ...TUS, 'upload-length': '-1' } }),
        status: 400,
        code: 'INVALID_UPLOAD',
      },
      {
        name: 'POST Upload-Length not a number',
        req: () => ({ method: 'POST', path: '/v1/uploads', headers: { ...TUS, 'upload-length': 'lots' } }),
        status: 400,
        code: 'INVALID_UPLOAD',
      },
      {
        name: 'POST Upload-Length over 2^53',
        req: () => ({ method: 'POST', path: '/v1/uploads', headers: { ...TUS, 'upload-length': '18446744073709551616' } }),
        status: 400,
        code: 'INVALID_UPLOAD',
      },
      {
        name: 'POST Upload-Length over upload_max_bytes',
        req: () => ({ method: 'POST', path: '/v1/uploads', headers: { ...TUS, 'upload-length': String(64 * 1024 * 1024 + 1) } }),
        status: 413,
        code: 'UPLOAD_TOO_LARGE',
      },
      {
        name: 'POST without Upload-Length or Upload-Defer-Length',
        req: () => ({ method: 'POST', path: '/v1/uploads', headers: TUS }),
        status: 400,
        code: 'INVALID_UPLOAD',
      },
      {
        name: 'POST without Tus-Resumable',
        req: () => ({ method: 'POST', path: '/v1/uploads', headers: { 'upload-length': '10' } }),
        status: 412,
        code: 'INVALID_UPLOAD',
      },
      {
        name: 'POST Upload-Metadata decoding to invalid UTF-8 (line)',
        req: () => ({
          method: 'POST',
          path: '/v1/uploads',
          headers: { ...TUS, 'upload-length': '10', 'upload-metadata': `line ${b64(Buffer.from([0xff, 0xfe]))}` },
        }),
        status: 400,
        code: 'INVALID_UPLOAD',
      },
      {
        name: 'POST Upload-Metadata decoding to invalid UTF-8 (filename)',
        req: () => ({
          method: 'POST',
          path: '/v1/uploads',
          headers: { ...TUS, 'upload-length': '10', 'upload-metadata': `filename ${b64(Buffer.from([0x61, 0xc3, 0x28, 0x2e, 0x6a]))}` },
        }),
        status: 400,
        code: 'INVALID_UPLOAD',
      },
      {
        name: 'POST Upload-Metadata not base64',
        req: () => ({ method: 'POST', path: '/v1/uploads', headers: { ...TUS, 'upload-length': '10', 'upload-metadata': 'line !!!not-base64!!!' } }),
        status: 400,
        code: 'INVALID_UPLOAD',
      },
      {
        name: 'POST Upload-Metadata with an unknown key',
        req: () => ({ method: 'POST', path: '/v1/uploads', headers: { ...TUS, 'upload-length': '10', 'upload-metadata': `colour ${b64('red')}` } }),
        status: 400,
        code: 'INVALID_UPLOAD',
      },
      {
        name: 'POST Upload-Metadata with raw bytes ≥ 0x80',
        req: () => ({
          method: 'POST',
          path: '/v1/uploads',
          headers: { ...TUS, 'upload-length': '10', 'upload-metadata': Buffer.from([0x6c, 0x69, 0x6e, 0x65, 0x20, 0xff, 0xfe]) },
        }),
        status: 400,
        code: 'INVALID_UPLOAD',
      },
      { name: 'PATCH without Upload-Offset', req: () => patch(url, undefined, validJpeg), status: 403, code: 'INVALID_UPLOAD' },
      { name: 'PATCH Upload-Offset negative', req: () => patch(url, '-1', validJpeg), status: 400, code: 'INVALID_UPLOAD' },
      { name: 'PATCH Upload-Offset not a number', req: () => patch(url, 'zero', validJpeg), status: 400, code: 'INVALID_UPLOAD' },
      { name: 'PATCH Upload-Offset over 2^53', req: () => patch(url, '9007199254740993', validJpeg), status: 400, code: 'INVALID_UPLOAD' },
      { name: 'PATCH Upload-Offset 2^53 (not the server offset)', req: () => patch(url, '9007199254740992', validJpeg), status: 409, code: 'UPLOAD_CONFLICT' },
      { name: 'PATCH Upload-Offset not the server offset', req: () => patch(url, '5', validJpeg), status: 409, code: 'UPLOAD_CONFLICT' },
      {
        name: 'PATCH Upload-Offset with bytes ≥ 0x80',
        req: () => ({
          ...patch(url, '0', validJpeg),
          headers: { ...TUS, 'content-type': 'application/offset+octet-stream', 'upload-offset': Buffer.from([0x30, 0xff]) },
        }),
        status: 400,
        code: 'INVALID_UPLOAD',
      },
      {
        name: 'PATCH body longer than Upload-Length',
        req: () => patch(url, '0', Buffer.concat([validJpeg, Buffer.alloc(100)])),
        status: 413,
        code: 'UPLOAD_TOO_LARGE',
      },
      { name: 'PATCH with the wrong content type', req: () => patch(url, '0', validJpeg, 'image/jpeg'), status: 400, code: 'INVALID_UPLOAD' },
      {
        name: 'PATCH without Tus-Resumable',
        req: () => ({ method: 'PATCH', path: url, headers: { 'content-type': 'application/offset+octet-stream', 'upload-offset': '0' }, body: validJpeg }),
        status: 412,
        code: 'INVALID_UPLOAD',
      },
      { name: 'GET of an unknown id', req: () => ({ path: `/v1/uploads/${'0'.repeat(32)}` }), status: 404, code: 'UPLOAD_NOT_FOUND' },
      { name: 'PATCH of an unknown id', req: () => patch(`/v1/uploads/${'0'.repeat(32)}`, '0', validJpeg), status: 404, code: 'UPLOAD_NOT_FOUND' },
      { name: 'PATCH of a path-traversal id', req: () => patch(traversal, '0', validJpeg), status: 404, code: 'UPLOAD_NOT_FOUND' },
      {
        name: 'PATCH of an encoded-dot traversal id',
        req: () => patch('/v1/uploads/%2e%2e%2f%2e%2e%2foutside%2fpwned', '0', validJpeg),
        status: 404,
        code: 'UPLOAD_NOT_FOUND',
      },
      { name: 'GET of a path-traversal id', req: () => ({ path: '/v1/uploads/..%2F..%2F..%2Fetc%2Fpasswd' }), status: 404, code: 'UPLOAD_NOT_FOUND' },
      { name: 'DELETE of a path-traversal id', req: () => ({ method: 'DELETE', path: traversal, headers: TUS }), status: 404, code: 'UPLOAD_NOT_FOUND' },
      {
        name: 'DELETE of a backslash id',
        req: () => ({ method: 'DELETE', path: '/v1/uploads/..%5C..%5Coutside', headers: TUS }),
        status: 404,
        code: 'UPLOAD_NOT_FOUND',
      },
    ]);

    await t.test('HEAD of unknown and path-traversal ids → 404 (HEAD has no body)', async () => {
      for (const path of [`/v1/uploads/${'0'.repeat(32)}`, traversal, '/v1/uploads/..%2F..%2F..%2Fetc%2Fpasswd']) {
        const res = await send({ method: 'HEAD', path, headers: TUS });
        observed.push(`HEAD ${path} → ${res.status}`);
        assert.equal(res.status, 404, path);
      }
      await assertHealthy();
    });

    await t.test('finished uploads that are not images are refused, like POST /v1/detect', async () => {
      for (const [name, bytes, status, code] of [
        [
          'GIF',
          await sharp({ create: { width: 4, height: 4, channels: 3, background: 'red' } })
            .gif()
            .toBuffer(),
          415,
          'UNSUPPORTED_MEDIA_TYPE',
        ],
        ['polyglot JPEG + ZIP', Buffer.concat([validJpeg, EMPTY_ZIP]), 400, 'INVALID_IMAGE'],
        ['zip-bomb PNG', zeroPng(20_000, 20_000), 413, 'IMAGE_TOO_LARGE'],
        ['HTML', Buffer.from('<html><body>hi</body></html>'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ] as const) {
        const at = await create(bytes.length);
        const res = await send(patch(at, '0', bytes));
        const error = errorOf(res);
        observed.push(`tus upload finishing with ${name} → ${res.status} ${error.code}`);
        assert.equal(res.status, status, name);
        assert.equal(error.code, code, name);
        assert.equal(res.headers['tus-resumable'], '1.0.0');
      }
      // And a good one still becomes a job.
      const at = await create(validJpeg.length);
      const ok = await send(patch(at, '0', validJpeg));
      assert.equal(ok.status, 204, ok.body.toString());
      assert.ok(ok.headers['sightline-job-id']);
      await assertHealthy();
    });

    await t.test('nothing was written outside uploads_dir', () => {
      const files: string[] = [];
      const walk = (dir: string) => {
        for (const name of readdirSync(dir)) {
          const path = join(dir, name);
          if (statSync(path).isDirectory()) walk(path);
          else files.push(path);
        }
      };
      walk(sandbox.dir);
      const stray = files.filter((f) => relative(uploadsDir, f).split(sep)[0] === '..');
      assert.deepEqual(stray, []);
      assert.deepEqual(readdirSync(outside), []);
      assert.equal(existsSync(join(sandbox.dir, 'pwned')), false);
    });
  });

  test('WebSocket: text messages', async (t) => {
    const client = await StreamClient.open(app as never);
    const errors = () => client.of('error');
    const cases: { name: string; send: () => void }[] = [
      { name: 'a 30,000-deep JSON array (60 KB)', send: () => client.ws.send(deepArray(30_000)) },
      { name: 'a 10,000-deep JSON object', send: () => client.ws.send(deepObject(10_000)) },
      { name: 'a ping whose id is 20,000-deep JSON', send: () => client.ws.send(`{"type":"ping","id":${deepArray(20_000)}}`) },
      { name: 'a subscribe whose lines are deep JSON', send: () => client.ws.send(`{"type":"subscribe","lines":${deepArray(20_000)}}`) },
      { name: 'a 1 MB text message', send: () => client.ws.send(JSON.stringify({ type: 'ping', id: 'x'.repeat(1024 * 1024) })) },
      { name: 'not JSON', send: () => client.ws.send('{"type": "ping"') },
      { name: '__proto__ in a message', send: () => client.ws.send('{"type":"ping","__proto__":{"polluted":true}}') },
      { name: 'unknown type', send: () => client.sendJson({ type: 'hack' }) },
      { name: 'subscribe to a path-traversal line', send: () => client.sendJson({ type: 'subscribe', lines: ['../../etc'] }) },
    ];
    for (const c of cases) {
      await t.test(c.name, async () => {
        const before = errors().length;
        c.send();
        const error = await client.until(() => errors()[before], 10_000, `an error for ${c.name}`);
        observed.push(`WS text: ${c.name} → error ${error.error.code}`);
        assert.equal(error.error.code, 'INVALID_MESSAGE');
        assert.equal(({} as Record<string, unknown>).polluted, undefined);
        // The connection stays usable.
        const id = `p-${before}`;
        client.sendJson({ type: 'ping', id });
        await client.waitFor((m) => m.type === 'pong' && m.id === id);
        await assertHealthy();
      });
    }
    await client.close();
  });

  test('WebSocket: binary frames with broken framing or bad images', async (t) => {
    const client = await StreamClient.open(app as never);
    const gif = await sharp({ create: { width: 4, height: 4, channels: 3, background: 'red' } })
      .gif()
      .toBuffer();
    const prefix = (length: number) => {
      const p = Buffer.alloc(FRAME_PREFIX_BYTES);
      p.writeUInt16BE(FRAME_MAGIC, 0);
      p.writeUInt8(1, 2);
      p.writeUInt16BE(length, 4);
      return p;
    };
    const withHeader = (header: Buffer, image: Buffer) => Buffer.concat([prefix(header.length), header, image]);
    const cases: { name: string; data: () => Buffer; code: string; id?: string }[] = [
      { name: 'no magic', data: () => Buffer.concat([Buffer.from('XX\x01\x00\x00\x02{}'), validJpeg]), code: 'INVALID_FRAME' },
      { name: 'shorter than the prefix', data: () => Buffer.from('SL'), code: 'INVALID_FRAME' },
      { name: 'header length past the end', data: () => Buffer.concat([prefix(4000), Buffer.from('{"id":"a"}')]), code: 'INVALID_FRAME' },
      { name: 'header of invalid UTF-8', data: () => withHeader(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), validJpeg), code: 'INVALID_FRAME' },
      { name: 'header of 2,048-deep JSON', data: () => withHeader(Buffer.from(deepArray(2048)), validJpeg), code: 'INVALID_FRAME' },
      {
        name: 'header with __proto__',
        data: () => withHeader(Buffer.from('{"id":"f-proto","__proto__":{"polluted":1}}'), validJpeg),
        code: 'INVALID_FRAME',
        id: 'f-proto',
      },
      {
        name: 'header with an unknown field',
        data: () => encodeFrame({ id: 'f-unknown', colour: 'red' } as never, validJpeg),
        code: 'INVALID_FRAME',
        id: 'f-unknown',
      },
      { name: 'empty image', data: () => encodeFrame({ id: 'f-empty' }, Buffer.alloc(0)), code: 'EMPTY_BODY', id: 'f-empty' },
      { name: 'GIF image', data: () => encodeFrame({ id: 'f-gif' }, gif), code: 'UNSUPPORTED_MEDIA_TYPE', id: 'f-gif' },
      { name: 'zip-bomb PNG', data: () => encodeFrame({ id: 'f-bomb' }, zeroPng(20_000, 20_000)), code: 'IMAGE_TOO_LARGE', id: 'f-bomb' },
      { name: 'polyglot JPEG + ZIP', data: () => encodeFrame({ id: 'f-poly' }, Buffer.concat([validJpeg, EMPTY_ZIP])), code: 'INVALID_IMAGE', id: 'f-poly' },
      { name: 'truncated JPEG', data: () => encodeFrame({ id: 'f-cut' }, validJpeg.subarray(0, validJpeg.length >> 1)), code: 'INVALID_IMAGE', id: 'f-cut' },
    ];
    const errors = () => client.of('error');
    for (const c of cases) {
      await t.test(c.name, async () => {
        const before = errors().length;
        client.ws.send(c.data());
        const answer = await client.until(() => (c.id ? client.answerFor(c.id) : errors()[before]), 10_000, `the answer to ${c.name}`);
        assert.equal(answer.type, 'error', JSON.stringify(answer).slice(0, 300));
        const error = answer as Of<'error'>;
        observed.push(`WS binary: ${c.name} → error ${error.error.code}${error.id ? ` (id ${error.id})` : ''}`);
        assert.equal(error.error.code, c.code, error.error.message);
        assert.equal(error.id, c.id);
        const id = `ok-${before}`;
        client.sendFrame({ id }, validJpeg);
        const result = await client.waitFor<Of<'result'>>((m) => m.type === 'result' && m.id === id);
        assert.equal(result.result.image.width, 64);
        await assertHealthy();
      });
    }
    await client.close();
  });

  test('WebSocket: protocol violations on a raw socket close that connection only', async (t) => {
    const text = (s: string) => Buffer.from(s);
    const cases: { name: string; frame: () => Buffer; close: number }[] = [
      { name: 'unmasked client frame', frame: () => clientFrame({ opcode: 1, payload: text('{"type":"ping"}'), mask: false }), close: 1002 },
      { name: 'reserved opcode 0x3', frame: () => clientFrame({ opcode: 0x3, payload: text('x') }), close: 1002 },
      { name: 'reserved control opcode 0xB', frame: () => clientFrame({ opcode: 0xb }), close: 1002 },
      { name: 'RSV1 set without an extension', frame: () => clientFrame({ opcode: 1, rsv: 4, payload: text('{"type":"ping"}') }), close: 1002 },
      { name: 'RSV2 and RSV3 set', frame: () => clientFrame({ opcode: 2, rsv: 3, payload: text('SL') }), close: 1002 },
      { name: 'fragmented control frame (ping without FIN)', frame: () => clientFrame({ opcode: 9, fin: false, payload: text('p') }), close: 1002 },
      { name: 'control frame over 125 bytes', frame: () => clientFrame({ opcode: 9, payload: Buffer.alloc(126) }), close: 1002 },
      { name: 'continuation frame with nothing to continue', frame: () => clientFrame({ opcode: 0, payload: text('x') }), close: 1002 },
      { name: 'close frame with an invalid code (999)', frame: () => clientFrame({ opcode: 8, payload: Buffer.from([0x03, 0xe7]) }), close: 1002 },
      { name: 'frame announcing a 2^63 length', frame: () => clientFrame({ opcode: 2, declaredLength: 2n ** 63n }), close: 1009 },
      { name: 'frame announcing 2^53 bytes', frame: () => clientFrame({ opcode: 2, declaredLength: 2n ** 53n }), close: 1009 },
      { name: 'binary frame over body_limit_bytes', frame: () => clientFrame({ opcode: 2, declaredLength: BigInt(BODY_LIMIT + 1) }), close: 1009 },
      { name: 'text message of invalid UTF-8', frame: () => clientFrame({ opcode: 1, payload: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]) }), close: 1007 },
      {
        name: 'text message fragmented across frames with invalid UTF-8',
        frame: () =>
          Buffer.concat([
            clientFrame({ opcode: 1, fin: false, payload: Buffer.from([0x7b, 0xc3]) }),
            clientFrame({ opcode: 0, payload: Buffer.from([0x28, 0x7d]) }),
          ]),
        close: 1007,
      },
    ];
    for (const c of cases) {
      await t.test(c.name, async () => {
        const bystander = await StreamClient.open(app as never);
        const ws = await RawWs.open();
        ws.write(c.frame());
        const code = await ws.closeCode();
        observed.push(`WS raw: ${c.name} → close ${code ?? '(none, socket dropped)'}`);
        assert.equal(code, c.close);
        // Other connections are not affected.
        bystander.sendJson({ type: 'ping', id: 'still-here' });
        await bystander.waitFor((m) => m.type === 'pong' && m.id === 'still-here');
        await bystander.close();
        await assertHealthy();
      });
    }
    await t.test('every session was closed and counted', async () => {
      const deadline = Date.now() + 10_000;
      let open = Infinity;
      while (Date.now() < deadline) {
        const metrics = (await send({ path: '/metrics' })).body.toString();
        open = metrics
          .split('\n')
          .filter((l) => l.startsWith('sightline_connections{') && l.includes('transport="websocket"'))
          .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
        if (open === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(open, 0, 'open WebSocket sessions after the violations');
    });
  });

  test('a route that does take JSON (none does yet) gets depth-guarded, prototype-safe parsing', async () => {
    const { default: Fastify } = await import('fastify');
    const { installErrorHandler } = await import('../src/server/error-handler.js');
    const { MAX_JSON_DEPTH } = await import('../src/server/image-body.js');
    // The app's Ajv settings (src/server/app.ts): additional properties are refused, not stripped.
    const mini = Fastify({ ajv: { customOptions: { removeAdditional: false, coerceTypes: true, allErrors: false } } });
    installErrorHandler(mini, 1024 * 1024);
    mini.post('/json', { schema: { body: { type: 'object', properties: { a: {} }, additionalProperties: false } } }, async (request) => ({
      got: request.body,
    }));
    mini.post('/none', async () => ({ ok: true }));
    const call = (url: string, payload: string) => mini.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload });
    try {
      assert.deepEqual((await call('/json', '{"a":[[1]]}')).json(), { got: { a: [[1]] } });
      const nested = (n: number) => `{"a":${deepArray(n - 1)}}`;
      assert.equal((await call('/json', nested(MAX_JSON_DEPTH))).statusCode, 200);
      for (const [name, body, status, code] of [
        ['one level too deep', nested(MAX_JSON_DEPTH + 1), 400, 'INVALID_REQUEST'],
        ['100,000 deep', `{"a":${deepArray(100_000)}}`, 400, 'INVALID_REQUEST'],
        ['brackets inside strings do not count', `{"a":"${'['.repeat(1000)}"}`, 200, undefined],
        ['__proto__', '{"__proto__":{"polluted":true}}', 400, 'INVALID_REQUEST'],
        ['constructor.prototype', '{"a":{"constructor":{"prototype":{"polluted":true}}}}', 400, 'INVALID_REQUEST'],
        ['an unknown property', '{"b":1}', 400, 'INVALID_REQUEST'],
        ['not JSON', '{"a":', 400, 'INVALID_REQUEST'],
      ] as const) {
        const res = await call('/json', body);
        observed.push(`JSON route: ${name} → ${res.statusCode} ${res.statusCode >= 400 ? res.json().error.code : ''}`);
        assert.equal(res.statusCode, status, `${name}: ${res.body.slice(0, 200)}`);
        if (code) assert.equal(res.json().error.code, code, name);
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      // A route without a body schema: JSON refused, an empty JSON body let through.
      assert.equal((await call('/none', '{}')).json().error.code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.equal((await call('/none', '')).statusCode, 200);
    } finally {
      await mini.close();
    }
  });

  test('the process survived: no unhandled rejection or exception, memory bounded', async () => {
    await assertHealthy();
    const memory = process.memoryUsage();
    observed.push(`memory at the end: rss ${Math.round(memory.rss / 2 ** 20)} MiB, heap ${Math.round(memory.heapUsed / 2 ** 20)} MiB`);
    assert.deepEqual(failures, []);
    assert.ok(memory.heapUsed < 1024 * 2 ** 20, `heap ${memory.heapUsed}`);
    assert.ok(memory.rss < 3 * 1024 * 2 ** 20, `rss ${memory.rss}`);
  });
});
