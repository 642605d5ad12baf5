import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { LogCapture, solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { StreamClient, baseUrl, type Of } from './helpers/stream-client.js';
import { JWT_SECRET, hsToken, keysPerRole } from './auth-helpers.js';

/** The status of a refused upgrade, or 101 when it opened. */
function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.once('error', (err) => {
      if (!/Unexpected server response/.test(err.message)) reject(err);
    });
  });
}

test('/v1/stream: a key in ?access_token= or the Authorization header opens it; none or a bad one gets 401 before the upgrade; the token never reaches the logs', async (t) => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const logs = new LogCapture();
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', auth: 'on', auth_jwt_secret: JWT_SECRET, rate_limit_per_second: 0 }, { logs });
  t.after(async () => {
    await app.close();
    tmp.cleanup();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const keys = await keysPerRole(app);
  const url = `${baseUrl(app, 'ws')}/v1/stream`;

  assert.equal(await upgradeStatus(url), 401);
  assert.equal(await upgradeStatus(`${url}?access_token=sl_0123456789abcdef_${'A'.repeat(43)}`), 401);
  assert.equal(await upgradeStatus(url, { authorization: `Bearer ${keys.ingest}` }), 101);
  assert.equal(await upgradeStatus(`${url}?line=cell-1&access_token=${encodeURIComponent(await hsToken({ roles: ['ingest'] }))}`), 101);

  const image = await solidImage(320, 240, 'jpeg');
  const client = await StreamClient.open(app, `?line=cell-1&access_token=${keys.ingest}`);
  client.sendFrame({ id: 'f-1' }, image);
  const answer = await client.until(() => client.answerFor('f-1'), 15_000, 'the answer');
  assert.equal(answer.type, 'result', JSON.stringify(answer));
  assert.equal((answer as Of<'result'>).result.line, 'cell-1', 'the other query parameters still apply');
  await client.close();

  const text = JSON.stringify(logs.lines);
  for (const key of Object.values(keys)) assert.ok(!text.includes(key.slice(20)), 'no key secret in the logs');
  assert.ok(!/access_token=[^ ]/.test(text), 'no access_token value in the logs');
  const jwtLike = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\./;
  assert.ok(!jwtLike.test(text), 'no JWT in the logs');
});

test('/v1/stream: a viewer-only credential subscribes, and its frames are refused with FORBIDDEN; an ingest-only one may not subscribe', async (t) => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', auth: 'on', rate_limit_per_second: 0 });
  t.after(async () => {
    await app.close();
    tmp.cleanup();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const keys = await keysPerRole(app);
  const image = await solidImage(320, 240, 'jpeg');

  const viewer = await StreamClient.open(app, `?lines=cell-2&access_token=${keys.viewer}`);
  assert.deepEqual(viewer.of('hello')[0]!.subscriptions, ['cell-2']);
  viewer.sendFrame({ id: 'v-1' }, image);
  const refused = await viewer.until(() => viewer.answerFor('v-1'), 15_000, 'the refusal');
  assert.deepEqual(refused, { type: 'error', id: 'v-1', error: { code: 'FORBIDDEN', message: 'The ingest role is needed to send frames' } });
  viewer.sendJson({ type: 'subscribe', lines: ['cell-3'] });
  await viewer.waitFor((m) => m.type === 'subscriptions' && m.lines.includes('cell-3'));

  // Frames from an ingest key on cell-2 reach the viewer as live events.
  const camera = await StreamClient.open(app, `?line=cell-2&access_token=${keys.ingest}`);
  camera.sendFrame({ id: 'c-1' }, image);
  assert.equal((await camera.until(() => camera.answerFor('c-1'), 15_000, 'the result')).type, 'result');
  await viewer.waitFor((m) => m.type === 'event', 15_000, 'a live event');
  assert.equal(viewer.closed, undefined, 'the viewer stays connected');

  camera.sendJson({ type: 'subscribe', lines: ['cell-2'] });
  const denied = await camera.waitFor((m) => m.type === 'error' && m.error.code === 'FORBIDDEN');
  assert.match((denied as Of<'error'>).error.message, /viewer role is needed to subscribe/);
  camera.sendJson({ type: 'ping', id: 'p' });
  await camera.waitFor((m) => m.type === 'pong');
  await camera.close();
  await viewer.close();

  await assert.rejects(StreamClient.open(app, `?lines=cell-2&access_token=${keys.ingest}`), /unexpected response 403/);
  // An admin may do both.
  const admin = await StreamClient.open(app, `?lines=cell-2&access_token=${keys.admin}`);
  admin.sendFrame({ id: 'a-1' }, image);
  assert.equal((await admin.until(() => admin.answerFor('a-1'), 15_000, 'the result')).type, 'result');
  await admin.close();
});

test('/v1/stream in auto mode: loopback connects without credentials, as before', async (t) => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8' });
  t.after(async () => {
    await app.close();
    tmp.cleanup();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const client = await StreamClient.open(app, '?lines=x');
  client.sendFrame({ id: 'f' }, await solidImage(64, 64, 'png'));
  assert.equal((await client.until(() => client.answerFor('f'), 15_000, 'the result')).type, 'result');
  await client.close();
});

test('/v1/stream with auth off: an access_token a client sends anyway is dropped, not refused by the query schema', async (t) => {
  const tmp = tempDir();
  const app = await startApp({ models_dir: tmp.dir, auth: 'off' }, { wait: false });
  t.after(async () => {
    await app.close();
    tmp.cleanup();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const client = await StreamClient.open(app, '?line=a&access_token=whatever');
  assert.equal(client.of('hello').length, 1);
  await client.close();
});
