import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { CLOCK_TOLERANCE_S } from '../src/auth/jwt.js';
import { CLI, ROOT } from './helpers/cli-process.js';
import { LogCapture, solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { StreamClient, baseUrl, type Of } from './helpers/stream-client.js';
import { JWT_SECRET, hsToken, keysPerRole } from './auth-helpers.js';
import { SightlineClient } from '../src/client/index.js';

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

/** `sightline keys revoke NAME` in a process of its own, on the server's SQLite store. */
function revokeByCli(name: string, storeUrl: string): Promise<number | null> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGHTLINE_')));
  const child = spawn(process.execPath, [...CLI, 'keys', 'revoke', name, '--store-url', storeUrl], { cwd: ROOT, env, stdio: 'ignore' });
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

test('a revoked API key kept its open /v1/stream session (issue 12): revoked by `sightline keys revoke` in another process, the session is closed with 4001 "credentials revoked" within 5 s; other sessions stay', async (t) => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const storeUrl = `sqlite:${join(tmp.dir, 'results.db')}`;
  const logs = new LogCapture();
  // Default auth_recheck_interval_ms (2000).
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', auth: 'on', store_url: storeUrl, rate_limit_per_second: 0 }, { logs });
  t.after(async () => {
    await app.close();
    tmp.cleanup();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const doomed = await app.apiKeys.create('line-4-camera', ['ingest', 'viewer']);
  const kept = await app.apiKeys.create('line-5-camera', ['ingest', 'viewer']);
  const image = await solidImage(64, 48, 'jpeg');

  const revokedSession = await StreamClient.open(app, `?line=l4&lines=l4&access_token=${doomed.key}`);
  const keptSession = await StreamClient.open(app, `?line=l5&access_token=${kept.key}`);
  revokedSession.sendFrame({ id: 'before' }, image);
  assert.equal((await revokedSession.until(() => revokedSession.answerFor('before'), 15_000, 'the answer')).type, 'result');

  assert.equal(await revokeByCli('line-4-camera', storeUrl), 0);
  const revokedAt = performance.now();
  // Pings and frames do not keep it alive.
  const pinger = setInterval(() => revokedSession.closed || revokedSession.sendJson({ type: 'ping' }), 200);
  t.after(() => clearInterval(pinger));
  const closed = await revokedSession.waitClosed(5000);
  const ms = performance.now() - revokedAt;
  clearInterval(pinger);
  t.diagnostic(`the revoked key's session closed ${ms.toFixed(0)} ms after the CLI revoked it (auth_recheck_interval_ms 2000)`);
  assert.deepEqual(closed, { code: 4001, reason: 'credentials revoked' });
  for (let i = 0; i < 100 && !logs.lines.some((l) => l.event === 'connection_close' && l.reason === 'credentials_revoked'); i++)
    await new Promise((r) => setTimeout(r, 20));
  const logged = logs.lines.find((l) => l.event === 'connection_close' && l.reason === 'credentials_revoked');
  assert.equal(logged?.code, 4001, 'the close is logged with its reason');

  // The other key's session is untouched and still served.
  keptSession.sendFrame({ id: 'after' }, image);
  assert.equal((await keptSession.until(() => keptSession.answerFor('after'), 15_000, 'the answer')).type, 'result');
  assert.equal(keptSession.closed, undefined);
  // The revoked key cannot come back.
  assert.equal(await upgradeStatus(`${baseUrl(app, 'ws')}/v1/stream?access_token=${doomed.key}`), 401);
  await keptSession.close();
  assert.equal(app.credentialWatch.size, 0, 'closed sessions are no longer watched');
});

test('a JWT that expires while its /v1/stream session is open ends the session with 4001 "credentials expired" (at exp plus the clock tolerance)', async (t) => {
  const tmp = tempDir();
  const app = await startApp({ models_dir: tmp.dir, auth: 'on', auth_jwt_secret: JWT_SECRET, rate_limit_per_second: 0 }, { wait: false });
  t.after(async () => {
    await app.close();
    tmp.cleanup();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  // Past its exp but inside the tolerance: accepted now, refused in about 3 s.
  const exp = Math.floor(Date.now() / 1000) - CLOCK_TOLERANCE_S + 3;
  const expiring = await hsToken({ roles: ['viewer'] }, { exp });
  const lasting = await hsToken({ roles: ['viewer'] }, { exp: '10m', sub: 'wall' });
  const session = await StreamClient.open(app, `?lines=x&access_token=${expiring}`);
  const other = await StreamClient.open(app, `?lines=x&access_token=${lasting}`);
  const closed = await session.waitClosed(10_000);
  const lateMs = Date.now() - (exp + CLOCK_TOLERANCE_S) * 1000;
  t.diagnostic(`closed ${lateMs} ms after exp + ${CLOCK_TOLERANCE_S} s`);
  assert.deepEqual(closed, { code: 4001, reason: 'credentials expired' });
  assert.ok(lateMs >= 0, 'not before the token stops being accepted');
  other.sendJson({ type: 'ping', id: 'p' });
  await other.waitFor((m) => m.type === 'pong');
  assert.equal(other.closed, undefined);
  await other.close();
});

test('/v1/stream in auto mode on loopback: a bad access_token is refused 401 at the upgrade, not taken for the local operator', async (t) => {
  const tmp = tempDir();
  const app = await startApp({ models_dir: tmp.dir }, { wait: false });
  t.after(async () => {
    await app.close();
    tmp.cleanup();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `${baseUrl(app, 'ws')}/v1/stream`;
  assert.equal(await upgradeStatus(`${url}?access_token=garbage`), 401);
  assert.equal(await upgradeStatus(`${url}?access_token=sl_0123456789abcdef_${'A'.repeat(43)}`), 401);
  assert.equal(await upgradeStatus(url, { authorization: 'Bearer garbage' }), 401);
  assert.equal(await upgradeStatus(url), 101, 'no credential: the local operator');
});

test('the SDK does not reconnect a stream closed with 4001: a revoked key would only get 401 on every attempt', async (t) => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', auth: 'on', auth_recheck_interval_ms: 200, rate_limit_per_second: 0 });
  t.after(async () => {
    await app.close();
    tmp.cleanup();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const key = await app.apiKeys.create('sdk-camera', ['ingest', 'viewer']);
  const client = new SightlineClient({ baseUrl: baseUrl(app, 'http'), apiKey: key.key });
  const conn = client.stream({ line: 'l1', lines: ['l1'] });
  t.after(() => conn.close());
  const reconnects: unknown[] = [];
  conn.on('reconnecting', (info) => reconnects.push(info));
  await conn.ready();
  const closed = new Promise<{ code: number; reason: string; reconnecting: boolean }>((resolve) => conn.once('close', resolve));
  await app.apiKeys.revoke(key.id);
  const info = await closed;
  assert.equal(info.code, 4001);
  assert.equal(info.reconnecting, false);
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(reconnects, [], 'no reconnect attempt after 4001');
  assert.equal(conn.closed, true);
});
