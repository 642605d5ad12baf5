import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tus from 'tus-js-client';
import type { FastifyInstance } from 'fastify';
import { startApp, tempDir } from './helpers/fixtures.js';
import { queueFull } from '../src/queue/errors.js';

const MAX_BYTES = 4 * 1024 * 1024;
const CHUNK = 64 * 1024;
const TUS = { 'Tus-Resumable': '1.0.0' };

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const metadataHeader = (m: Record<string, string>) =>
  Object.entries(m)
    .map(([k, v]) => `${k} ${b64(v)}`)
    .join(',');

/**
 * A TCP proxy that counts the bytes the client sends and cuts every
 * connection once `cutAfter` of them went through.
 */
class CuttingProxy {
  sent = 0;
  cutAfter = Infinity;
  cuts = 0;
  private readonly sockets = new Set<Socket>();
  private constructor(private readonly server: Server) {}

  static async start(port: number): Promise<CuttingProxy> {
    const server = createServer();
    const proxy = new CuttingProxy(server);
    server.on('connection', (client) => {
      const upstream = netConnect({ host: '127.0.0.1', port });
      for (const s of [client, upstream]) {
        proxy.sockets.add(s);
        s.on('close', () => proxy.sockets.delete(s));
        s.on('error', () => {});
      }
      client.on('data', (chunk: Buffer) => {
        const room = proxy.cutAfter - proxy.sent;
        if (room <= 0) return;
        if (chunk.length >= room) {
          // Forward exactly up to the cut, then drop both sides: a broken link mid-PATCH.
          upstream.write(chunk.subarray(0, room), () => {
            proxy.cuts++;
            for (const s of proxy.sockets) s.destroy();
          });
          proxy.sent += room;
          return;
        }
        proxy.sent += chunk.length;
        upstream.write(chunk);
      });
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Raw HTTP, so that paths like `/v1/uploads/..%2Fx` reach the server exactly as written. */
function raw(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method, path, headers: { ...headers, ...(body ? { 'content-length': String(body.length) } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function runUpload(input: Buffer, options: tus.UploadOptions): { upload: tus.Upload; done: Promise<tus.HttpResponse> } {
  let upload!: tus.Upload;
  const done = new Promise<tus.HttpResponse>((resolve, reject) => {
    upload = new tus.Upload(input, {
      chunkSize: CHUNK,
      retryDelays: null,
      ...options,
      onSuccess: ({ lastResponse }) => resolve(lastResponse),
      onError: reject,
    });
  });
  upload.start();
  return { upload, done };
}

describe('resumable uploads (tus) at /v1/uploads', () => {
  const tmp = tempDir('sightline-uploads-');
  let app: FastifyInstance;
  let port: number;
  let base: string;
  let image: Buffer;

  const uploadsDir = () => join(tmp.dir, 'uploads');
  const jobState = (id: string) => app.inject(`/v1/jobs/${id}`).then((r) => r.json());
  const create = (length: number, metadata: Record<string, string> = {}, extra: Record<string, string> = {}) =>
    fetch(`${base}/v1/uploads`, {
      method: 'POST',
      headers: { ...TUS, 'Upload-Length': String(length), ...(Object.keys(metadata).length ? { 'Upload-Metadata': metadataHeader(metadata) } : {}), ...extra },
    });
  const patch = (location: string, offset: number, body: Buffer) =>
    fetch(new URL(location, base), {
      method: 'PATCH',
      headers: { ...TUS, 'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream' },
      body: new Uint8Array(body),
    });
  const head = (location: string) => fetch(new URL(location, base), { method: 'HEAD', headers: TUS });

  before(async () => {
    app = await startApp({ models_dir: 'models', data_dir: tmp.dir, upload_max_bytes: MAX_BYTES });
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as { port: number }).port;
    base = `http://127.0.0.1:${port}`;
    // A large, high-quality re-encode of an NG sample: a dozen 64 KiB chunks.
    image = await sharp('samples/ng-01.jpg').resize({ width: 1920 }).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();
    assert.ok(image.length > 8 * CHUNK, `sample image is ${image.length} bytes`);
  });
  after(async () => {
    await app.close();
    tmp.cleanup();
  });

  test('an upload cut halfway resumes from the server offset and its job gets the same result as /v1/detect', async () => {
    const proxy = await CuttingProxy.start(port);
    try {
      const endpoint = `http://127.0.0.1:${proxy.port}/v1/uploads`;
      const metadata = { line: 'line-7', filename: 'ng-01-big.jpg', filetype: 'image/jpeg' };

      // 1. The link breaks after about half the bytes.
      proxy.cutAfter = Math.floor(image.length / 2);
      const first = runUpload(image, { endpoint, metadata });
      await assert.rejects(first.done);
      assert.equal(proxy.cuts, 1);
      const uploadUrl = first.upload.url;
      assert.ok(uploadUrl, 'the upload was created before the cut');
      const path = new URL(uploadUrl).pathname;
      assert.match(path, /^\/v1\/uploads\/[0-9a-f]{32}$/);

      // 2. The server kept a partial upload.
      const partial = await head(path);
      assert.equal(partial.status, 200);
      assert.equal(partial.headers.get('tus-resumable'), '1.0.0');
      const offset = Number(partial.headers.get('upload-offset'));
      assert.equal(Number(partial.headers.get('upload-length')), image.length);
      assert.ok(offset > 0 && offset < image.length, `partial offset ${offset} of ${image.length}`);
      const status = await (await fetch(`${base}${path}`)).json();
      assert.equal(status.state, 'uploading');
      assert.equal(status.offset, offset);
      assert.ok(status.expires_at);

      // 3. Resume: no new upload, PATCHes from the server's offset, only the remainder on the wire.
      proxy.cutAfter = Infinity;
      proxy.sent = 0;
      const requests: { method: string; offset: string | undefined }[] = [];
      const second = runUpload(image, {
        endpoint,
        uploadUrl,
        onBeforeRequest: (req) => {
          requests.push({ method: req.getMethod(), offset: req.getHeader('Upload-Offset') });
        },
      });
      const last = await second.done;
      assert.deepEqual(requests[0], { method: 'HEAD', offset: undefined });
      assert.ok(!requests.some((r) => r.method === 'POST'), 'no new upload was created');
      const patches = requests.filter((r) => r.method === 'PATCH');
      assert.equal(patches[0]?.offset, String(offset));
      const remainder = image.length - offset;
      assert.ok(proxy.sent >= remainder, `sent ${proxy.sent} for a remainder of ${remainder}`);
      assert.ok(proxy.sent < remainder + requests.length * 1024, `sent ${proxy.sent}: more than the remainder ${remainder} plus headers`);

      // 4. The last PATCH names the job; the job ends like a synchronous detection.
      const jobId = last.getHeader('Sightline-Job-Id');
      assert.ok(jobId, 'Sightline-Job-Id on the last PATCH');
      assert.equal(last.getHeader('Sightline-Job-Location'), `/v1/jobs/${jobId}`);
      const done = await until('job done', async () => {
        const job = await jobState(jobId);
        assert.notEqual(job.state, 'dead', JSON.stringify(job));
        return job.state === 'done' ? job : undefined;
      });
      const sync = await app.inject({ method: 'POST', url: '/v1/detect?line=line-7', headers: { 'content-type': 'image/jpeg' }, payload: image });
      assert.equal(sync.statusCode, 200, sync.body);
      const expected = sync.json();
      assert.equal(done.line, 'line-7');
      assert.equal(done.result.verdict, expected.verdict);
      assert.equal(done.result.verdict, 'ng');
      assert.deepEqual(done.result.detections, expected.detections);
      assert.ok(done.result.detections.length > 0);
      assert.deepEqual(done.result.image, expected.image);

      // 5. A client that lost that answer still finds its job; the bytes are gone from disk.
      const id = path.split('/').pop()!;
      const again = await head(path);
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('sightline-job-id'), jobId);
      assert.equal(again.headers.get('upload-offset'), String(image.length));
      assert.equal(again.headers.get('upload-length'), String(image.length));
      assert.match(again.headers.get('upload-metadata') ?? '', /line /);
      const finished = await (await fetch(`${base}${path}`)).json();
      assert.deepEqual([finished.state, finished.job_id, finished.job_location], ['finished', jobId, `/v1/jobs/${jobId}`]);
      const retried = await patch(path, image.length, Buffer.alloc(0));
      assert.equal(retried.status, 204);
      assert.equal(retried.headers.get('sightline-job-id'), jobId);
      assert.equal(existsSync(join(uploadsDir(), id)), false);
      assert.equal(existsSync(join(uploadsDir(), `${id}.json`)), false);
      // tus-js-client resuming the finished upload gets success and the job id from HEAD.
      const third = runUpload(image, { endpoint, uploadUrl });
      assert.equal((await third.done).getHeader('Sightline-Job-Id'), jobId);

      const metrics = (await app.inject('/metrics')).body;
      assert.match(metrics, /sightline_uploads_total\{outcome="created"\} [1-9]/);
      assert.match(metrics, /sightline_uploads_total\{outcome="finished"\} [1-9]/);
    } finally {
      await proxy.close();
    }
  });

  test('OPTIONS announces the protocol and the size limit', async () => {
    const res = await fetch(`${base}/v1/uploads`, { method: 'OPTIONS' });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('tus-version'), '1.0.0');
    assert.equal(res.headers.get('tus-max-size'), String(MAX_BYTES));
    assert.match(res.headers.get('tus-extension') ?? '', /creation/);
  });

  test('an upload over upload_max_bytes is refused with 413 UPLOAD_TOO_LARGE', async () => {
    const res = await create(MAX_BYTES + 1);
    assert.equal(res.status, 413);
    assert.equal(res.headers.get('tus-resumable'), '1.0.0');
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    const body = await res.json();
    assert.equal(body.error.code, 'UPLOAD_TOO_LARGE');
    assert.match(body.error.message, new RegExp(String(MAX_BYTES)));
    // More bytes than the declared length in a PATCH: 413 as well.
    const ok = await create(10);
    const over = await patch(ok.headers.get('location')!, 0, Buffer.alloc(20));
    assert.equal(over.status, 413);
    assert.equal((await over.json()).error.code, 'UPLOAD_TOO_LARGE');
  });

  test('bad metadata is refused at creation with 400 INVALID_UPLOAD naming the field', async () => {
    for (const [metadata, field] of [
      [{ conf: '2' }, 'conf'],
      [{ iou: 'high' }, 'iou'],
      [{ max_det: '1.5' }, 'max_det'],
      [{ priority: 'urgent' }, 'priority'],
      [{ line: '../etc' }, 'line'],
      [{ agnostic: 'maybe' }, 'agnostic'],
      [{ colour: 'red' }, 'colour'],
    ] as const) {
      const res = await create(100, metadata);
      assert.equal(res.status, 400, JSON.stringify(metadata));
      assert.equal(res.headers.get('tus-resumable'), '1.0.0');
      const body = await res.json();
      assert.equal(body.error.code, 'INVALID_UPLOAD');
      assert.match(body.error.message, new RegExp(`"${field}"`), body.error.message);
      assert.equal(res.headers.get('location'), null);
    }
    const malformed = await create(100, {}, { 'Upload-Metadata': 'conf not base64!,conf again' });
    assert.equal(malformed.status, 400);
    assert.equal((await malformed.json()).error.code, 'INVALID_UPLOAD');
    // A model the repository does not have is refused now, not dead-lettered later.
    const unknownModel = await create(100, { model: 'no-such-model' });
    assert.equal(unknownModel.status, 404);
    assert.equal((await unknownModel.json()).error.code, 'MODEL_NOT_FOUND');
    // Good metadata passes.
    const good = await create(100, {
      line: 'press-2',
      model: 'defects',
      priority: 'high',
      conf: '0.4',
      iou: '0.5',
      max_det: '10',
      agnostic: 'true',
      filename: 'a.jpg',
      filetype: 'image/jpeg',
    });
    assert.equal(good.status, 201);
    // No tus header at all: 412, still JSON.
    const noTus = await fetch(`${base}/v1/uploads`, { method: 'POST', headers: { 'Upload-Length': '10' } });
    assert.equal(noTus.status, 412);
    assert.equal((await noTus.json()).error.code, 'INVALID_UPLOAD');
  });

  test('a finished upload that is not an image is refused with INVALID_IMAGE and makes no job', async () => {
    const depth = await app.sightline.queue.depth();
    const text = Buffer.from('this is not an image\n'.repeat(10_000));
    const { done } = runUpload(text, { endpoint: `${base}/v1/uploads`, metadata: { filename: 'notes.txt' } });
    const err = (await done.then(
      () => assert.fail('the upload should fail'),
      (e: unknown) => e,
    )) as tus.DetailedError;
    const res = err.originalResponse!;
    assert.equal(res.getStatus(), 400);
    assert.equal(JSON.parse(res.getBody()).error.code, 'INVALID_IMAGE');
    assert.equal(await app.sightline.queue.depth(), depth);
    const id = (err.originalRequest!.getURL() as string).split('/').pop()!;
    const gone = await head(`/v1/uploads/${id}`);
    assert.equal(gone.status, 404);
    assert.equal(existsSync(join(uploadsDir(), id)), false);
  });

  test('a PATCH at the wrong offset gets 409 UPLOAD_CONFLICT; unknown uploads 404 UPLOAD_NOT_FOUND', async () => {
    const res = await create(1000);
    const location = res.headers.get('location')!;
    assert.match(location, /^\/v1\/uploads\/[0-9a-f]{32}$/);
    assert.equal((await patch(location, 0, Buffer.alloc(100))).status, 204);
    const conflict = await patch(location, 50, Buffer.alloc(100));
    assert.equal(conflict.status, 409);
    assert.equal(conflict.headers.get('tus-resumable'), '1.0.0');
    assert.equal((await conflict.json()).error.code, 'UPLOAD_CONFLICT');
    assert.equal((await head(location)).headers.get('upload-offset'), '100');
    // tus header rules still hold, answered in JSON.
    const wrongType = await fetch(new URL(location, base), {
      method: 'PATCH',
      headers: { ...TUS, 'Upload-Offset': '100', 'Content-Type': 'image/jpeg' },
      body: new Uint8Array(10),
    });
    assert.equal(wrongType.status, 400);
    assert.equal((await wrongType.json()).error.code, 'INVALID_UPLOAD');
    const noOffset = await fetch(new URL(location, base), {
      method: 'PATCH',
      headers: { ...TUS, 'Content-Type': 'application/offset+octet-stream' },
      body: new Uint8Array(10),
    });
    assert.equal(noOffset.status, 403);
    assert.equal((await noOffset.json()).error.code, 'INVALID_UPLOAD');
    assert.equal((await head(location)).headers.get('upload-offset'), '100');

    const unknown = '/v1/uploads/0123456789abcdef0123456789abcdef';
    assert.equal((await head(unknown)).status, 404);
    const missing = await patch(unknown, 0, Buffer.alloc(10));
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.code, 'UPLOAD_NOT_FOUND');
    const get = await fetch(`${base}${unknown}`);
    assert.equal(get.status, 404);
    assert.equal((await get.json()).error.code, 'UPLOAD_NOT_FOUND');

    // DELETE terminates an unfinished upload.
    const del = await fetch(new URL(location, base), { method: 'DELETE', headers: TUS });
    assert.equal(del.status, 204);
    assert.equal((await head(location)).status, 404);
  });

  test('crafted ids cannot reach files outside the uploads directory', async () => {
    // Files next to the uploads directory, shaped like a tus upload and its record.
    const victim = join(tmp.dir, 'victim');
    writeFileSync(victim, 'precious');
    writeFileSync(`${victim}.json`, JSON.stringify({ id: '../victim', size: 8, offset: 0, metadata: {}, creation_date: new Date().toISOString() }));
    const paths = [
      '/v1/uploads/..%2Fvictim',
      '/v1/uploads/%2e%2e%2fvictim',
      '/v1/uploads/..%5Cvictim',
      '/v1/uploads/..%2F..%2F' + encodeURIComponent(tmp.dir.slice(1)) + '%2Fvictim',
      '/v1/uploads/..',
      '/v1/uploads/../victim',
      '/v1/uploads/.finished',
      '/v1/uploads/victim%00',
    ];
    for (const path of paths) {
      for (const method of ['HEAD', 'PATCH', 'DELETE', 'GET']) {
        const headers = method === 'PATCH' ? { ...TUS, 'upload-offset': '8', 'content-type': 'application/offset+octet-stream' } : TUS;
        const res = await raw(port, method, path, headers, method === 'PATCH' ? Buffer.from('overwrite') : undefined);
        assert.equal(res.status, 404, `${method} ${path}: ${res.status} ${res.body}`);
        if (method !== 'HEAD') assert.match(JSON.parse(res.body).error.code, /^(UPLOAD_NOT_FOUND|NOT_FOUND)$/);
      }
    }
    assert.equal(readFileSync(victim, 'utf8'), 'precious');
    assert.ok(existsSync(`${victim}.json`));
    // Created ids are always 32 hex digits whatever the metadata says.
    const res = await create(10, { filename: '../../victim' });
    assert.match(res.headers.get('location') ?? '', /^\/v1\/uploads\/[0-9a-f]{32}$/);
  });

  test('a full queue answers the last PATCH with 503 QUEUE_FULL; the upload is kept and a retry makes the job', async () => {
    const queue = app.sightline.queue;
    const enqueue = queue.enqueue.bind(queue);
    const res = await create(image.length, { line: 'line-9' });
    const location = res.headers.get('location')!;
    queue.enqueue = async () => {
      throw queueFull(10);
    };
    try {
      const last = await patch(location, 0, image);
      assert.equal(last.status, 503);
      assert.equal(last.headers.get('retry-after'), '1');
      assert.equal((await last.json()).error.code, 'QUEUE_FULL');
      // HEAD of a complete upload tries again (tus-js-client resumes with HEAD only).
      const busy = await head(location);
      assert.equal(busy.status, 503);
      assert.equal(busy.headers.get('retry-after'), '1');
      assert.equal((await (await fetch(new URL(location, base))).json()).state, 'complete');
    } finally {
      queue.enqueue = enqueue;
    }
    // The retried last PATCH (offset = length, no body) makes the job.
    const retry = await patch(location, image.length, Buffer.alloc(0));
    assert.equal(retry.status, 204);
    const jobId = retry.headers.get('sightline-job-id');
    assert.ok(jobId);
    assert.equal((await head(location)).headers.get('sightline-job-id'), jobId);
    assert.equal((await jobState(jobId)).line, 'line-9');
  });

  // creation-with-upload (issue 12): the POST carries bytes, and maybe all of them.
  const createWith = (body: Buffer, length: number | string, metadata: Record<string, string> = {}) =>
    fetch(`${base}/v1/uploads`, {
      method: 'POST',
      headers: {
        ...TUS,
        'Upload-Length': String(length),
        'Content-Type': 'application/offset+octet-stream',
        ...(Object.keys(metadata).length ? { 'Upload-Metadata': metadataHeader(metadata) } : {}),
      },
      body: new Uint8Array(body),
    });
  const enqueuedJobs = async () => Number(/sightline_jobs_total\{state="enqueued"\} (\d+)/.exec((await app.inject('/metrics')).body)?.[1] ?? 0);
  const jobDone = (jobId: string) =>
    until(`job ${jobId} done`, async () => {
      const job = await jobState(jobId);
      assert.notEqual(job.state, 'dead', JSON.stringify(job));
      return job.state === 'done' ? job : undefined;
    });
  const leftovers = (id: string) => readdirSync(uploadsDir()).filter((f) => f.startsWith(id));

  test('creation-with-upload answered 404 after making the job: a POST with the whole image now answers 201 with the job, made once', async () => {
    const before = await enqueuedJobs();
    const res = await createWith(image, image.length, { line: 'line-4' });
    assert.equal(res.status, 201, await res.clone().text());
    const location = res.headers.get('location')!;
    assert.match(location, /^\/v1\/uploads\/[0-9a-f]{32}$/);
    assert.equal(res.headers.get('upload-offset'), String(image.length));
    assert.equal(res.headers.get('upload-expires'), null, 'a finished upload does not expire');
    const jobId = res.headers.get('sightline-job-id');
    assert.ok(jobId, 'Sightline-Job-Id on the creating POST');
    assert.equal(res.headers.get('sightline-job-location'), `/v1/jobs/${jobId}`);
    assert.match(res.headers.get('access-control-expose-headers') ?? '', /Sightline-Job-Id/);
    const done = await jobDone(jobId);
    assert.equal(done.line, 'line-4');
    assert.equal(done.result.verdict, 'ng');
    assert.equal(await enqueuedJobs(), before + 1, 'exactly one job');
    // The upload is a job now: HEAD, GET and the retried last PATCH name it; the bytes are gone.
    const id = location.split('/').pop()!;
    const again = await head(location);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('sightline-job-id'), jobId);
    assert.equal(again.headers.get('upload-offset'), String(image.length));
    assert.equal((await (await fetch(new URL(location, base))).json()).state, 'finished');
    const retriedPatch = await patch(location, image.length, Buffer.alloc(0));
    assert.equal(retriedPatch.status, 204);
    assert.equal(retriedPatch.headers.get('sightline-job-id'), jobId);
    assert.deepEqual(leftovers(id), []);
    assert.equal(await enqueuedJobs(), before + 1, 'HEAD and the retried PATCH made no job');
    // Sending the same POST again creates another upload (tus creation is not idempotent): it is
    // answered as what it is, a new upload with its own job, and the first job is untouched.
    const retry = await createWith(image, image.length, { line: 'line-4' });
    assert.equal(retry.status, 201);
    assert.notEqual(retry.headers.get('location'), location);
    const secondJob = retry.headers.get('sightline-job-id');
    assert.ok(secondJob);
    assert.notEqual(secondJob, jobId);
    await jobDone(secondJob);
    assert.equal(await enqueuedJobs(), before + 2, 'one job per creating POST');
    assert.equal((await jobState(jobId)).state, 'done');
  });

  test('creation-with-upload with part of the image answers 201 with the offset and resumes with PATCH', async () => {
    const half = Math.floor(image.length / 2);
    const res = await createWith(image.subarray(0, half), image.length);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('upload-offset'), String(half));
    assert.ok(res.headers.get('upload-expires'));
    assert.equal(res.headers.get('sightline-job-id'), null);
    const location = res.headers.get('location')!;
    assert.equal((await head(location)).headers.get('upload-offset'), String(half));
    const last = await patch(location, half, image.subarray(half));
    assert.equal(last.status, 204);
    const jobId = last.headers.get('sightline-job-id');
    assert.ok(jobId);
    await jobDone(jobId);
  });

  test('creation-with-upload answered 404 for a bad body: an empty or non-image upload gets 400 and makes no job', async () => {
    const before = await enqueuedJobs();
    const files = () =>
      readdirSync(uploadsDir())
        .filter((f) => !f.startsWith('.'))
        .sort();
    const filesBefore = files();
    const text = Buffer.from('this is not an image\n'.repeat(100));
    // The same codes as the final PATCH of the same bytes (see the INVALID_IMAGE test above).
    const cases: [string, () => Promise<Response>, string][] = [
      ['Upload-Length: 0, no body', () => create(0), 'EMPTY_BODY'],
      ['Upload-Length: 0 with the offset content type', () => createWith(Buffer.alloc(0), 0), 'EMPTY_BODY'],
      ['text, all of it', () => createWith(text, text.length), 'INVALID_IMAGE'],
      ['random bytes, all of them', () => createWith(Buffer.alloc(3000, 0x5a), 3000), 'INVALID_IMAGE'],
    ];
    for (const [name, send, code] of cases) {
      const res = await send();
      assert.equal(res.status, 400, name);
      assert.equal(res.headers.get('tus-resumable'), '1.0.0', name);
      assert.equal(res.headers.get('location'), null, name);
      assert.equal(res.headers.get('sightline-job-id'), null, name);
      assert.equal((await res.json()).error.code, code, name);
    }
    assert.equal(await enqueuedJobs(), before, 'no job');
    assert.deepEqual(files(), filesBefore, 'nothing left on disk');
  });

  test('creation-with-upload when the queue is full: 503 names the kept upload, and HEAD makes the job later', async () => {
    const queue = app.sightline.queue;
    const enqueue = queue.enqueue.bind(queue);
    queue.enqueue = async () => {
      throw queueFull(10);
    };
    let res: Response;
    try {
      res = await createWith(image, image.length, { line: 'line-5' });
    } finally {
      queue.enqueue = enqueue;
    }
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('retry-after'), '1');
    assert.equal((await res.json()).error.code, 'QUEUE_FULL');
    const location = res.headers.get('location');
    assert.match(location ?? '', /^\/v1\/uploads\/[0-9a-f]{32}$/);
    const later = await head(location!);
    assert.equal(later.status, 200);
    const jobId = later.headers.get('sightline-job-id');
    assert.ok(jobId);
    assert.equal((await jobDone(jobId)).line, 'line-5');
  });

  test('tus-js-client with uploadDataDuringCreation gets the job id from the creating POST', async () => {
    const before = await enqueuedJobs();
    // One request: the POST carries the whole image.
    const methods: string[] = [];
    const whole = runUpload(image, {
      endpoint: `${base}/v1/uploads`,
      uploadDataDuringCreation: true,
      chunkSize: Infinity,
      metadata: { line: 'line-6', filename: 'ng-01-big.jpg' },
      onBeforeRequest: (req) => void methods.push(req.getMethod()),
    });
    const last = await whole.done;
    assert.deepEqual(methods, ['POST']);
    assert.equal(last.getStatus(), 201);
    const jobId = last.getHeader('Sightline-Job-Id');
    assert.ok(jobId);
    assert.equal((await jobDone(jobId)).line, 'line-6');
    // In chunks: the POST carries the first, PATCHes the rest, the last PATCH names the job.
    const chunked: string[] = [];
    const parts = runUpload(image, {
      endpoint: `${base}/v1/uploads`,
      uploadDataDuringCreation: true,
      onBeforeRequest: (req) => void chunked.push(req.getMethod()),
    });
    const lastPart = await parts.done;
    assert.equal(chunked[0], 'POST');
    assert.ok(chunked.slice(1).every((m) => m === 'PATCH') && chunked.length > 2, chunked.join(' '));
    const chunkedJob = lastPart.getHeader('Sightline-Job-Id');
    assert.ok(chunkedJob);
    await jobDone(chunkedJob);
    assert.equal(await enqueuedJobs(), before + 2);
    // A non-image this way fails with the server's 400, not a 404.
    const { done } = runUpload(Buffer.from('not an image'), { endpoint: `${base}/v1/uploads`, uploadDataDuringCreation: true, chunkSize: Infinity });
    const err = (await done.then(
      () => assert.fail('the upload should fail'),
      (e: unknown) => e,
    )) as tus.DetailedError;
    assert.equal(err.originalResponse?.getStatus(), 400);
    assert.equal(JSON.parse(err.originalResponse!.getBody()).error.code, 'INVALID_IMAGE');
    assert.equal(await enqueuedJobs(), before + 2);
  });
});

describe('expiry of unfinished uploads', () => {
  const tmp = tempDir('sightline-uploads-expiry-');
  let app: FastifyInstance;
  let base: string;

  before(async () => {
    app = await startApp({ models_dir: 'models', data_dir: tmp.dir, upload_expiry_ms: 1000 }, { wait: false });
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  after(async () => {
    await app.close();
    tmp.cleanup();
  });

  test('an unfinished upload is deleted after upload_expiry_ms', async () => {
    const res = await fetch(`${base}/v1/uploads`, { method: 'POST', headers: { ...TUS, 'Upload-Length': '1000' } });
    assert.equal(res.status, 201);
    assert.ok(res.headers.get('upload-expires'));
    const location = res.headers.get('location')!;
    const id = location.split('/').pop()!;
    const part = await fetch(new URL(location, base), {
      method: 'PATCH',
      headers: { ...TUS, 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' },
      body: Buffer.alloc(400),
    });
    assert.equal(part.status, 204);
    const dir = join(tmp.dir, 'uploads');
    assert.ok(readdirSync(dir).includes(id));
    await until('upload cleaned up', async () => (readdirSync(dir).some((f) => f.startsWith(id)) ? undefined : true), 10_000);
    const gone = await fetch(new URL(location, base), { method: 'HEAD', headers: TUS });
    assert.equal(gone.status, 404);
    const late = await fetch(new URL(location, base), {
      method: 'PATCH',
      headers: { ...TUS, 'Upload-Offset': '400', 'Content-Type': 'application/offset+octet-stream' },
      body: Buffer.alloc(600),
    });
    assert.equal(late.status, 404);
    assert.equal((await late.json()).error.code, 'UPLOAD_NOT_FOUND');
    assert.match((await app.inject('/metrics')).body, /sightline_uploads_total\{outcome="expired"\} 1/);
  });
});
