/**
 * The SDK's upload(): tus resumable uploads to /v1/uploads over real sockets, with
 * progress, from bytes, a path and a stream, resumed after an abort; each finished
 * upload becomes a job whose result waitForJob() returns.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { startApp, tempDir } from './helpers/fixtures.js';
import { SightlineClient, SightlineError } from '../src/index.js';

describe('SightlineClient.upload() (tus)', () => {
  const tmp = tempDir('sightline-client-upload-');
  let app: FastifyInstance;
  let client: SightlineClient;
  let ng: Buffer;

  before(async () => {
    app = await startApp({ models_dir: './models', data_dir: tmp.dir });
    await app.listen({ port: 0, host: '127.0.0.1' });
    client = new SightlineClient({ baseUrl: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` });
    ng = await readFile('samples/ng-03.jpg');
  });
  after(async () => {
    await app?.close();
    tmp.cleanup();
  });

  test('bytes in chunks: progress reaches the total, the upload becomes a job with the metadata as options', async () => {
    const progress: [number, number | null][] = [];
    const urls: string[] = [];
    const { upload_url, job_id } = await client.upload(ng, {
      line: 'line-up',
      conf: 0.3,
      max_det: 20,
      chunkSize: 8 * 1024,
      onProgress: (sent, total) => progress.push([sent, total]),
      onUploadUrl: (url) => urls.push(url),
    });
    assert.match(upload_url, /\/v1\/uploads\/[^/]+$/);
    assert.deepEqual(urls, [upload_url]);
    assert.ok(progress.length >= Math.ceil(ng.length / 8192), `${progress.length} progress calls for ${ng.length} bytes`);
    assert.ok(progress.every(([, total]) => total === ng.length));
    assert.ok(
      progress.every(([sent], i) => i === 0 || sent >= progress[i - 1]![0]),
      'progress never goes back',
    );
    assert.equal(progress.at(-1)![0], ng.length);
    const result = await client.waitForJob(job_id, { timeoutMs: 30_000, pollIntervalMs: 20 });
    assert.equal(result.request_id, job_id);
    assert.equal(result.line, 'line-up');
    assert.equal(result.verdict, 'ng');
    assert.ok(result.detections.every((d) => d.score >= 0.3));
  });

  test('a file path and a stream of unknown length', async () => {
    const fromPath = await client.upload('samples/ok-01.jpg', { line: 'line-up' });
    assert.equal((await client.waitForJob(fromPath.job_id, { timeoutMs: 30_000 })).verdict, 'ok');
    const progress: number[] = [];
    const fromStream = await client.upload(Readable.from([ng.subarray(0, 5000), ng.subarray(5000)]), {
      line: 'line-up',
      chunkSize: 4096,
      onProgress: (sent) => progress.push(sent),
    });
    assert.equal((await client.waitForJob(fromStream.job_id, { timeoutMs: 30_000 })).verdict, 'ng');
    assert.equal(progress.at(-1), ng.length);
  });

  test('an aborted upload resumes from its URL and sends only the rest', async () => {
    const controller = new AbortController();
    let url: string | undefined;
    const first = await client
      .upload(ng, {
        line: 'line-up',
        chunkSize: 4096,
        signal: controller.signal,
        onUploadUrl: (u) => (url = u),
        // Abort once two chunks are in.
        onProgress: (sent) => sent >= 8192 && controller.abort(),
      })
      .catch((e: unknown) => e);
    assert.ok(first instanceof SightlineError && first.code === 'ABORTED', String(first));
    assert.ok(url);
    const head = await fetch(url, { method: 'HEAD', headers: { 'tus-resumable': '1.0.0' } });
    const offset = Number(head.headers.get('upload-offset'));
    assert.ok(offset >= 4096 && offset < ng.length, `the server kept ${offset} bytes`);

    const progress: number[] = [];
    const resumed = await client.upload(ng, { line: 'line-up', uploadUrl: url, chunkSize: 4096, onProgress: (sent) => progress.push(sent) });
    assert.equal(resumed.upload_url, url);
    assert.ok(
      progress.every((sent) => sent >= offset),
      `resumed from ${offset}, not from 0 (progress ${progress.join(', ')})`,
    );
    assert.equal(progress.at(-1), ng.length);
    assert.equal((await client.waitForJob(resumed.job_id, { timeoutMs: 30_000 })).verdict, 'ng');
    // Resuming a finished upload answers the same job.
    const again = await client.upload(ng, { uploadUrl: url });
    assert.equal(again.job_id, resumed.job_id);
  });

  test('bad metadata is a SightlineError with the server code', async () => {
    const err = await client.upload(ng, { line: 'no spaces allowed', retryDelays: [] }).catch((e: unknown) => e);
    assert.ok(err instanceof SightlineError, String(err));
    assert.equal(err.code, 'INVALID_UPLOAD');
    assert.equal(err.status, 400);
    const missing = await client.upload('samples/does-not-exist.jpg').catch((e: unknown) => e);
    assert.ok(missing instanceof SightlineError && missing.code === 'UPLOAD_FAILED', String(missing));
  });
});
