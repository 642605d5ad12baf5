/**
 * The client SDK against a server with auth on: its apiKey reaches every path
 * (HTTP calls, tus upload, the WebSocket stream), and a client without one gets
 * the server's 401 as a typed error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { startApp, tempDir } from './helpers/fixtures.js';
import { SightlineClient, SightlineError } from '../src/index.js';

test('SDK with auth on: detect, jobs, upload and stream work with an API key; without one every call is refused 401 UNAUTHORIZED', {
  timeout: 60_000,
}, async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const app = await startApp({ models_dir: './models', auth: 'on', data_dir: tmp.dir, store_url: `sqlite:${tmp.dir}/results.db` });
  t.after(() => app.close());
  await app.listen({ port: 0, host: '127.0.0.1' });
  const baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const { key } = await app.apiKeys.create('sdk-camera', ['ingest', 'viewer']);
  const ng = await readFile('samples/ng-03.jpg');

  const client = new SightlineClient({ baseUrl, apiKey: key });
  assert.equal((await client.detect(ng, { line: 'auth-line' })).verdict, 'ng');
  const job = await client.submitJob(ng, { line: 'auth-line' });
  assert.equal((await client.waitForJob(job.job_id, { timeoutMs: 20_000 })).verdict, 'ng');
  const uploaded = await client.upload(ng, { line: 'auth-line' });
  assert.equal((await client.waitForJob(uploaded.job_id, { timeoutMs: 20_000 })).verdict, 'ng');
  const conn = client.stream({ line: 'auth-line', lines: ['auth-line'], reconnect: false });
  try {
    await conn.ready();
    assert.equal((await conn.detect(ng, {}, { timeoutMs: 20_000 })).verdict, 'ng');
  } finally {
    conn.close();
  }

  // The registry knows whose connections these were.
  const names = app.connections.list({}).connections.map((c) => c.key);
  assert.ok(names.includes('sdk-camera'), JSON.stringify(names));

  const stranger = new SightlineClient({ baseUrl });
  for (const call of [() => stranger.detect(ng), () => stranger.submitJob(ng), () => stranger.getJob(job.job_id), () => stranger.upload(ng)]) {
    const err = await call().catch((e: unknown) => e);
    assert.ok(err instanceof SightlineError, String(err));
    assert.deepEqual([err.code, err.status, err.retryable], ['UNAUTHORIZED', 401, false]);
  }
  const refused = stranger.stream({ reconnect: false });
  await assert.rejects(refused.ready());
  refused.close();

  // Revoked: the same client is refused on its next call.
  await app.apiKeys.revoke('sdk-camera');
  const after = await client.detect(ng).catch((e: unknown) => e);
  assert.ok(after instanceof SightlineError);
  assert.equal(after.code, 'UNAUTHORIZED');
});
