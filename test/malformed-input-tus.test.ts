/**
 * Malformed-input corpus, tus part (issue 12, item 1): every number a client
 * puts in a tus header (Upload-Length, Upload-Offset, Upload-Defer-Length) or in
 * Upload-Metadata (conf, iou, max_det) must be a finite number in range, written
 * plainly. `Infinity`, `1e999`, `NaN`, hex, negative, fractional and padded
 * forms get 400 INVALID_UPLOAD over a real socket, on a live upload and on one
 * that is already a job, and the server stays healthy after each.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { errorOf, rawTarget, send, type RawRequest } from './helpers/raw-http.js';

const TUS = { 'tus-resumable': '1.0.0' };
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** What JavaScript's Number() reads as a number although it is no plain decimal integer. */
const NOT_PLAIN_INTEGERS = [
  'Infinity',
  '-Infinity',
  '1e999',
  '-1e999',
  'NaN',
  '0x10',
  '0b11',
  '0o7',
  '-1',
  '-0',
  '1.5',
  '10.0',
  '1e3',
  '+10',
  '010',
  ' 10 x',
  '9007199254740993',
];
/** Metadata numbers that are not finite or not in range. */
const BAD_UNIT_NUMBERS = ['Infinity', '-Infinity', '1e999', '-1e999', 'NaN', '0x1', '-0.5', '1.5', '1e1'];
const BAD_MAX_DET = ['Infinity', '1e999', 'NaN', '0x10', '-1', '0', '1.5', '1e2', '99999999999999999999999'];

describe('malformed-input corpus: tus numbers', () => {
  const models = tempDir();
  const data = tempDir();
  let app: FastifyInstance;
  let jpeg: Buffer;
  const failures: string[] = [];
  const onRejection = (reason: unknown) => failures.push(`unhandledRejection: ${reason instanceof Error ? reason.stack : String(reason)}`);

  before(async () => {
    process.on('unhandledRejection', onRejection);
    writeDecoderModels(models.dir);
    app = await startApp({ models_dir: models.dir, default_model: 'v8', data_dir: data.dir, rate_limit_per_second: 0 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    rawTarget.port = (app.server.address() as { port: number }).port;
    jpeg = await solidImage(64, 48, 'jpeg');
  });

  after(async () => {
    await app?.close();
    process.off('unhandledRejection', onRejection);
    models.cleanup();
    data.cleanup();
    assert.deepEqual(failures, []);
  });

  async function assertHealthy(): Promise<void> {
    assert.equal((await send({ path: '/livez' })).status, 200, 'GET /livez after the case');
  }

  async function expect400(t: TestContext, name: string, req: () => RawRequest | Promise<RawRequest>, field?: string): Promise<void> {
    await t.test(name, async () => {
      const request = await req();
      const res = await send(request);
      const body = res.body.toString('utf8');
      assert.equal(res.status, 400, `${name}: ${res.status} ${body.slice(0, 300)}`);
      // An answer to HEAD has no body.
      if (request.method !== 'HEAD') {
        const error = errorOf(res);
        assert.equal(error.code, 'INVALID_UPLOAD', `${name}: ${error.message}`);
        if (field) assert.match(error.message, new RegExp(`"${field}"`), error.message);
      }
      assert.equal(res.headers['tus-resumable'], '1.0.0');
      assert.equal(res.headers.location, undefined, 'no upload was created');
      assert.ok(res.headers['x-request-id']);
      await assertHealthy();
    });
  }

  const create = (headers: Record<string, string>, body?: Buffer): RawRequest => ({
    method: 'POST',
    path: '/v1/uploads',
    headers: { ...TUS, ...(body ? { 'content-type': 'application/offset+octet-stream' } : {}), ...headers },
    body,
  });
  const patch = (path: string, headers: Record<string, string>, body: Buffer): RawRequest => ({
    method: 'PATCH',
    path,
    headers: { ...TUS, 'content-type': 'application/offset+octet-stream', ...headers },
    body,
  });

  async function newUpload(headers: Record<string, string>): Promise<string> {
    const res = await send(create(headers));
    assert.equal(res.status, 201, res.body.toString());
    return res.headers.location!;
  }

  test('Upload-Length on creation (with and without a body)', async (t) => {
    for (const value of NOT_PLAIN_INTEGERS) {
      await expect400(t, `POST Upload-Length: ${value}`, () => create({ 'upload-length': value }));
      await expect400(t, `POST Upload-Length: ${value} with the image in the body`, () => create({ 'upload-length': value }, jpeg));
    }
    for (const value of ['0', '2', 'Infinity', 'true']) {
      await expect400(t, `POST Upload-Defer-Length: ${value}`, () => create({ 'upload-defer-length': value }));
    }
    const depth = await app.sightline.queue.depth();
    assert.equal(depth, 0, 'no job was made by any of them');
  });

  test('Upload-Offset on PATCH and Upload-Length on a deferred-length PATCH', async (t) => {
    const location = await newUpload({ 'upload-length': String(jpeg.length) });
    for (const value of NOT_PLAIN_INTEGERS) {
      await expect400(t, `PATCH Upload-Offset: ${value}`, () => patch(location, { 'upload-offset': value }, jpeg.subarray(0, 10)));
    }
    const deferred = await newUpload({ 'upload-defer-length': '1' });
    for (const value of NOT_PLAIN_INTEGERS) {
      await expect400(t, `PATCH Upload-Length: ${value} (deferred)`, () =>
        patch(deferred, { 'upload-offset': '0', 'upload-length': value }, jpeg.subarray(0, 10)),
      );
    }
    // Nothing was written by any of them.
    for (const path of [location, deferred]) {
      const head = await send({ method: 'HEAD', path, headers: TUS });
      assert.equal(head.headers['upload-offset'], '0', path);
    }
  });

  test('numbers on an upload that is already a job are checked like on a live one', async (t) => {
    // The finished upload answers for itself (tus no longer knows it): its numbers must be as strict.
    const create201 = await send(create({ 'upload-length': String(jpeg.length) }, jpeg));
    assert.equal(create201.status, 201, create201.body.toString());
    const location = create201.headers.location!;
    const jobId = create201.headers['sightline-job-id'];
    assert.ok(jobId);
    const size = jpeg.length;
    // Each of these reads as `size` to Number(): none may pass for the retried last PATCH.
    for (const value of [`${size}.0`, `0x${size.toString(16)}`, `${size}e0`, `+${size}`, `0${size}`, 'Infinity', '1e999', 'NaN', '-1']) {
      await expect400(t, `PATCH Upload-Offset: ${value} on a finished upload`, () => patch(location, { 'upload-offset': value }, Buffer.alloc(0)));
    }
    await expect400(t, 'HEAD with Upload-Length: Infinity on a finished upload', () => ({
      method: 'HEAD',
      path: location,
      headers: { ...TUS, 'upload-length': 'Infinity' },
    }));
    // The plain retry still names the job.
    const retry = await send(patch(location, { 'upload-offset': String(size) }, Buffer.alloc(0)));
    assert.equal(retry.status, 204);
    assert.equal(retry.headers['sightline-job-id'], jobId);
  });

  test('Upload-Metadata numbers: conf, iou, max_det', async (t) => {
    const meta = (key: string, value: string) => create({ 'upload-length': '100', 'upload-metadata': `${key} ${b64(value)}` });
    for (const key of ['conf', 'iou']) {
      for (const value of BAD_UNIT_NUMBERS) await expect400(t, `Upload-Metadata ${key}=${value}`, () => meta(key, value), key);
    }
    for (const value of BAD_MAX_DET) await expect400(t, `Upload-Metadata max_det=${value}`, () => meta('max_det', value), 'max_det');
    for (const value of ['Infinity', '1', 'NaN']) await expect400(t, `Upload-Metadata priority=${value}`, () => meta('priority', value), 'priority');
    for (const value of ['2', 'Infinity']) await expect400(t, `Upload-Metadata agnostic=${value}`, () => meta('agnostic', value), 'agnostic');
    // With the whole image in the creation request: refused before any byte is stored, no job.
    await expect400(
      t,
      'Upload-Metadata conf=Infinity with the image in the body',
      () => create({ 'upload-length': String(jpeg.length), 'upload-metadata': `conf ${b64('Infinity')}` }, jpeg),
      'conf',
    );
    // In range, plainly written: accepted.
    const good = await send(meta('conf', '0.25'));
    assert.equal(good.status, 201);
    const goodMaxDet = await send(meta('max_det', '300'));
    assert.equal(goodMaxDet.status, 201);
  });
});
