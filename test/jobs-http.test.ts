import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('async jobs, embedded (SQLite queue and store, in-process worker)', () => {
  const tmp = tempDir();
  let app: FastifyInstance;
  let image: Buffer;

  before(async () => {
    writeDecoderModels(tmp.dir);
    app = await startApp({ models_dir: tmp.dir, default_model: 'v8', job_max_attempts: 2, job_backoff_ms: 20 });
    image = await solidImage(1280, 720, 'jpeg');
  });
  after(async () => {
    await app.close();
    tmp.cleanup();
  });

  const submit = (payload: Buffer, headers: Record<string, string> = {}, query = '') =>
    app.inject({ method: 'POST', url: `/v1/jobs${query}`, headers: { 'content-type': 'image/jpeg', ...headers }, payload });
  const jobState = (id: string) => app.inject(`/v1/jobs/${id}`).then((r) => r.json());

  test('202 with Location, then the job is done and its stored result carries request_id = job_id', async () => {
    const res = await submit(image, {}, '?line=press-4&max_det=1');
    assert.equal(res.statusCode, 202);
    const { job_id } = res.json();
    assert.equal(res.headers.location, `/v1/jobs/${job_id}`);
    const done = await until('job done', async () => {
      const job = await jobState(job_id);
      return job.state === 'done' ? job : undefined;
    });
    assert.equal(done.result.request_id, job_id);
    assert.equal(done.result.source, 'job');
    assert.equal(done.result.line, 'press-4');
    assert.deepEqual(
      done.result.detections.map((d: { label: string }) => d.label),
      ['scratch'],
    );
    assert.equal((await app.inject(`/v1/results/${job_id}`)).json().verdict, 'ng');
  });

  test('a repeated Idempotency-Key returns the first job', async () => {
    const first = await submit(image, { 'idempotency-key': 'cam1-frame-77' });
    const again = await submit(image, { 'idempotency-key': 'cam1-frame-77' });
    assert.equal(first.statusCode, 202);
    assert.equal(again.statusCode, 202);
    assert.equal(again.json().job_id, first.json().job_id);
    assert.equal(again.json().duplicate, true);
  });

  test('what is not an image is refused at submission; an undecodable image ends in the dead letters with its error, and can be retried', async () => {
    const notImage = await submit(Buffer.from('hello'));
    assert.equal(notImage.statusCode, 400);
    assert.equal(notImage.json().error.code, 'INVALID_IMAGE');
    const jpeg = await sharp({ create: { width: 400, height: 300, channels: 3, background: 'grey', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
      .jpeg()
      .toBuffer();
    const truncated = jpeg.subarray(0, Math.floor(jpeg.length / 2));
    const { job_id } = (await submit(truncated)).json();
    const dead = await until('job dead', async () => {
      const job = await jobState(job_id);
      return job.state === 'dead' ? job : undefined;
    });
    assert.equal(dead.attempts, 2);
    assert.match(dead.last_error, /INVALID_IMAGE|not a readable image|JPEG|premature/i);
    const letters = (await app.inject('/v1/dead-letters')).json().jobs as { id: string; lastError: string }[];
    assert.ok(letters.some((j) => j.id === job_id));
    const retried = await app.inject({ method: 'POST', url: `/v1/dead-letters/${job_id}/retry` });
    assert.equal(retried.statusCode, 202);
    assert.notEqual((await jobState(job_id)).state, 'done');
    assert.equal((await app.inject({ method: 'POST', url: '/v1/dead-letters/nope/retry' })).statusCode, 404);
    await until('job dead again', async () => ((await jobState(job_id)).state === 'dead' ? true : undefined));
    const purged = (await app.inject({ method: 'DELETE', url: '/v1/dead-letters' })).json();
    assert.ok(purged.purged >= 1);
  });

  test('unknown jobs are 404 JOB_NOT_FOUND', async () => {
    const res = await app.inject('/v1/jobs/unknown-job');
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().error.code, 'JOB_NOT_FOUND');
  });
});
