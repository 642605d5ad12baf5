import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';

describe('image input and bad input', () => {
  const tmp = tempDir();
  let app: FastifyInstance;
  let baseUrl: string;

  before(async () => {
    writeDecoderModels(tmp.dir);
    app = await startApp({ models_dir: tmp.dir, default_model: 'v8', body_limit_bytes: 200_000, max_image_pixels: 4_000_000 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address() as { port: number };
    baseUrl = `http://127.0.0.1:${address.port}`;
  });
  after(async () => {
    await app.close();
    tmp.cleanup();
  });

  const detect = (payload: Buffer | string, contentType?: string, query = '') =>
    app.inject({ method: 'POST', url: `/v1/detect${query}`, headers: contentType ? { 'content-type': contentType } : {}, payload });

  async function expectError(res: { statusCode: number; json: () => { error: { code: string; message: string } } }, status: number, code: string) {
    assert.equal(res.statusCode, status, JSON.stringify(res.json()));
    assert.equal(res.json().error.code, code);
    assert.equal(typeof res.json().error.message, 'string');
    // The server still answers afterwards.
    assert.equal((await app.inject('/livez')).statusCode, 200);
  }

  for (const format of ['jpeg', 'png', 'webp'] as const) {
    test(`${format} over a real socket`, async () => {
      const res = await fetch(`${baseUrl}/v1/detect`, {
        method: 'POST',
        headers: { 'content-type': `image/${format}` },
        body: new Uint8Array(await solidImage(640, 480, format)),
      });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { image: object; detections: unknown[] };
      assert.deepEqual(body.image, { width: 640, height: 480 });
      assert.ok(body.detections.length > 0);
    });
  }

  test('multipart field "image" over a real socket and with inject', async () => {
    const form = new FormData();
    form.append('note', 'ignored');
    form.append('image', new Blob([new Uint8Array(await solidImage(800, 600, 'jpeg'))], { type: 'image/jpeg' }), 'part.jpg');
    const res = await fetch(`${baseUrl}/v1/detect?line=mp`, { method: 'POST', body: form });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { image: object; line: string };
    assert.deepEqual(body.image, { width: 800, height: 600 });
    assert.equal(body.line, 'mp');
    const missing = new FormData();
    missing.append('other', new Blob([new Uint8Array(await solidImage(8, 8, 'png'))]), 'x.png');
    const res2 = await fetch(`${baseUrl}/v1/detect`, { method: 'POST', body: missing });
    assert.equal(res2.status, 400);
    // A file field other than `image` is refused rather than buffered (issue 12).
    assert.equal(((await res2.json()) as { error: { code: string } }).error.code, 'INVALID_REQUEST');
  });

  test('grey and alpha images become RGB', async () => {
    for (const channels of [1, 4] as const) {
      const res = await detect(await solidImage(300, 200, 'png', channels), 'image/png');
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json().image, { width: 300, height: 200 });
    }
  });

  test('EXIF orientation is applied: a 600×400 JPEG tagged "rotate 90" is 400×600', async () => {
    const rotated = await sharp({ create: { width: 600, height: 400, channels: 3, background: 'white' } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const res = await detect(rotated, 'image/jpeg');
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json().image, { width: 400, height: 600 });
  });

  test('empty body → 400 EMPTY_BODY', async () => {
    await expectError(await detect(Buffer.alloc(0), 'image/jpeg'), 400, 'EMPTY_BODY');
    await expectError(await app.inject({ method: 'POST', url: '/v1/detect' }), 400, 'EMPTY_BODY');
  });

  test('unsupported type → 415 UNSUPPORTED_MEDIA_TYPE, by header and by content', async () => {
    await expectError(await detect('hello', 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    await expectError(
      await detect(
        await sharp({ create: { width: 4, height: 4, channels: 3, background: 'red' } })
          .gif()
          .toBuffer(),
        'image/gif',
      ),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
    // Declared PNG, really a GIF: the magic bytes decide.
    await expectError(
      await detect(
        await sharp({ create: { width: 4, height: 4, channels: 3, background: 'red' } })
          .gif()
          .toBuffer(),
        'image/png',
      ),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
    await expectError(await detect('{"a":1}', 'application/json'), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  test('not an image, or truncated → 400 INVALID_IMAGE', async () => {
    await expectError(await detect(Buffer.from('definitely not a jpeg'), 'image/jpeg'), 400, 'INVALID_IMAGE');
    const jpeg = await sharp({ create: { width: 400, height: 300, channels: 3, background: 'grey', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
      .jpeg()
      .toBuffer();
    await expectError(await detect(jpeg.subarray(0, Math.floor(jpeg.length / 2)), 'image/jpeg'), 400, 'INVALID_IMAGE');
    const png = await sharp({ create: { width: 400, height: 300, channels: 3, background: 'grey', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
      .png()
      .toBuffer();
    await expectError(await detect(png.subarray(0, Math.floor(png.length / 2)), 'image/png'), 400, 'INVALID_IMAGE');
  });

  test('body over the limit → 413 BODY_TOO_LARGE, raw and multipart', async () => {
    const big = Buffer.alloc(300_000, 1);
    await expectError(await detect(big, 'image/jpeg'), 413, 'BODY_TOO_LARGE');
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(big)], { type: 'image/jpeg' }), 'big.jpg');
    const res = await fetch(`${baseUrl}/v1/detect`, { method: 'POST', body: form });
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'BODY_TOO_LARGE');
  });

  test('too many pixels → 413 IMAGE_TOO_LARGE, refused from the header before decoding', async () => {
    // 3000×3000 = 9 MP against a 4 MP limit; a solid PNG is tiny on the wire.
    const bomb = await sharp({ create: { width: 3000, height: 3000, channels: 3, background: 'black' } })
      .png()
      .toBuffer();
    assert.ok(bomb.length < 200_000);
    const started = performance.now();
    await expectError(await detect(bomb, 'image/png'), 413, 'IMAGE_TOO_LARGE');
    assert.ok(performance.now() - started < 5000);
  });

  test('unknown model → 404 MODEL_NOT_FOUND; bad query → 400 INVALID_REQUEST', async () => {
    const jpeg = await solidImage(64, 64, 'jpeg');
    await expectError(await detect(jpeg, 'image/jpeg', '?model=nope'), 404, 'MODEL_NOT_FOUND');
    await expectError(await detect(jpeg, 'image/jpeg', '?model=v8:7'), 404, 'MODEL_NOT_FOUND');
    await expectError(await detect(jpeg, 'image/jpeg', '?conf=2'), 400, 'INVALID_REQUEST');
    await expectError(await detect(jpeg, 'image/jpeg', '?line=../etc'), 400, 'INVALID_REQUEST');
    await expectError(await detect(jpeg, 'image/jpeg', '?max_det=100000'), 400, 'INVALID_REQUEST');
    await expectError(await detect(jpeg, 'image/jpeg', '?colour=red'), 400, 'INVALID_REQUEST');
  });

  test('unknown route → 404 NOT_FOUND as JSON', async () => {
    await expectError(await app.inject('/v1/nothing-here'), 404, 'NOT_FOUND');
  });

  test('random garbage in many shapes never crashes the server', async () => {
    const jpeg = await solidImage(64, 48, 'jpeg');
    for (let i = 0; i < 30; i++) {
      const mutated = Buffer.from(jpeg);
      for (let j = 0; j < 20; j++) mutated[(i * 7919 + j * 104729) % mutated.length] = (i * 31 + j) & 0xff;
      const res = await detect(mutated, 'image/jpeg');
      assert.ok([200, 400, 413, 415].includes(res.statusCode), `status ${res.statusCode}: ${res.body}`);
    }
    assert.equal((await fetch(`${baseUrl}/livez`)).status, 200);
  });
});
