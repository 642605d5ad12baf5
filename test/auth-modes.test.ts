import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLoopback } from '../src/auth/credentials.js';
import { LogCapture } from './helpers/fixtures.js';
import { authApp, bearer, hsToken, keysPerRole } from './auth-helpers.js';

const REMOTE = '10.1.2.3';

test('auto: loopback without credentials gets every role; any other address needs a key', async (t) => {
  const logs = new LogCapture();
  const { app, close } = await authApp({ auth: 'auto' }, logs);
  t.after(close);
  const keys = await keysPerRole(app);
  for (const remoteAddress of ['127.0.0.1', '127.9.8.7', '::1', '::ffff:127.0.0.1']) {
    const res = await app.inject({ method: 'DELETE', url: '/v1/dead-letters', remoteAddress });
    assert.equal(res.statusCode, 200, `${remoteAddress}: ${res.body}`);
  }
  for (const remoteAddress of [REMOTE, '::ffff:10.0.0.1', '128.0.0.1', 'fe80::1']) {
    const res = await app.inject({ url: '/v1/models', remoteAddress });
    assert.equal(res.statusCode, 401, remoteAddress);
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="sightline"');
  }
  assert.equal((await app.inject({ url: '/v1/models', remoteAddress: REMOTE, headers: bearer(keys.viewer) })).statusCode, 200);
  assert.equal((await app.inject({ url: '/v1/models', remoteAddress: REMOTE, headers: { 'x-api-key': keys.viewer } })).statusCode, 200);
  assert.equal((await app.inject({ url: '/v1/models', remoteAddress: REMOTE, headers: bearer(keys.ingest) })).statusCode, 403);
  // X-Forwarded-For is the client's to choose: it never makes a request loopback.
  assert.equal((await app.inject({ url: '/v1/models', remoteAddress: REMOTE, headers: { 'x-forwarded-for': '127.0.0.1' } })).statusCode, 401);
  // Public routes need nothing from anywhere.
  assert.equal((await app.inject({ url: '/livez', remoteAddress: REMOTE })).statusCode, 200);
  // On loopback a valid credential identifies its holder, and its roles apply.
  assert.equal((await app.inject({ url: '/v1/models', headers: bearer(keys.ingest) })).statusCode, 403);
  assert.equal((await app.inject({ url: '/v1/models', headers: bearer(keys.viewer) })).statusCode, 200);

  const modeLines = logs.lines.filter((l) => l.event === 'auth_mode');
  assert.equal(modeLines.length, 1);
  assert.equal(modeLines[0]!.mode, 'auto');
  assert.match(String(modeLines[0]!.msg), /loopback .* every role without credentials/);
});

test('auto on loopback ignored bad credentials (issue 12): a garbage, unknown, revoked or malformed credential, or two different ones, gets 401; only no credential at all is trusted', async (t) => {
  const { app, close } = await authApp({ auth: 'auto' });
  t.after(close);
  const keys = await keysPerRole(app);
  const revoked = await app.apiKeys.create('gone', ['admin']);
  await app.apiKeys.revoke(revoked.id);
  const expiredJwt = await hsToken({ roles: ['admin'] }, { exp: Math.floor(Date.now() / 1000) - 3600 });
  const forgedJwt = await hsToken({ roles: ['admin'] }, { secret: 'another-secret-that-is-long-enough-for-hs256' });
  const cases: [string, Record<string, string>, RegExp][] = [
    ['garbage bearer', bearer('test-key'), /neither an API key/],
    ['unknown key', bearer('sl_0123456789abcdef_' + 'x'.repeat(43)), /unknown or revoked API key/],
    ['revoked key', { 'x-api-key': revoked.key }, /unknown or revoked API key/],
    ['expired JWT', bearer(expiredJwt), /JWT expired/],
    ['JWT with a wrong signature', bearer(forgedJwt), /signature/],
    ['Basic scheme', { authorization: 'Basic eDp5' }, /must be "Bearer/],
    ['two different valid keys', { authorization: `Bearer ${keys.viewer}`, 'x-api-key': keys.admin }, /two different credentials/],
    ['a valid key and garbage', { authorization: `Bearer ${keys.admin}`, 'x-api-key': 'garbage' }, /two different credentials/],
  ];
  for (const remoteAddress of ['127.0.0.1', '::1']) {
    for (const [what, headers, message] of cases) {
      const res = await app.inject({ url: '/v1/models', headers, remoteAddress });
      assert.equal(res.statusCode, 401, `${what} from ${remoteAddress}: ${res.body}`);
      assert.equal(res.json().error.code, 'UNAUTHORIZED');
      assert.match(res.json().error.message, message, what);
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="sightline", error="invalid_token"', what);
    }
    assert.equal((await app.inject({ method: 'DELETE', url: '/v1/dead-letters', remoteAddress })).statusCode, 200, 'no credential: the local operator');
    assert.equal((await app.inject({ url: '/v1/models', headers: bearer(keys.admin), remoteAddress })).statusCode, 200, 'a valid one: its holder');
  }
  // Public routes stay public whatever is sent.
  assert.equal((await app.inject({ url: '/livez', headers: bearer('test-key') })).statusCode, 200);
});

test('on: loopback needs credentials too', async (t) => {
  const { app, close } = await authApp({ auth: 'on' });
  t.after(close);
  assert.equal((await app.inject({ url: '/v1/models', remoteAddress: '127.0.0.1' })).statusCode, 401);
  assert.equal((await app.inject({ url: '/readyz', remoteAddress: '127.0.0.1' })).statusCode !== 401, true);
});

test('off: everyone gets every role, with a warning at start', async (t) => {
  const logs = new LogCapture();
  const { app, close } = await authApp({ auth: 'off' }, logs);
  t.after(close);
  const res = await app.inject({ method: 'DELETE', url: '/v1/dead-letters', remoteAddress: REMOTE });
  assert.equal(res.statusCode, 200);
  const line = logs.lines.find((l) => l.event === 'auth_mode');
  assert.equal(line?.level, 'warn');
  assert.match(String(line?.msg), /auth off/);
});

test('credentials: Bearer or X-API-Key; other schemes, two different credentials and access_token outside WebSocket routes are refused', async (t) => {
  const { app, close } = await authApp();
  t.after(close);
  const keys = await keysPerRole(app);
  const status = async (headers: Record<string, string>, url = '/v1/models') => (await app.inject({ url, headers, remoteAddress: REMOTE })).statusCode;
  assert.equal(await status({ authorization: `bearer ${keys.viewer}` }), 200, 'the scheme is case-insensitive');
  assert.equal(await status({ authorization: `Bearer ${keys.viewer}`, 'x-api-key': keys.viewer }), 200, 'the same key twice is fine');
  assert.equal(await status({ authorization: `Bearer ${keys.viewer}`, 'x-api-key': keys.admin }), 401);
  assert.equal(await status({ authorization: keys.viewer }), 401);
  assert.equal(await status({ authorization: `Token ${keys.viewer}` }), 401);
  assert.equal(await status({}, `/v1/models?access_token=${keys.viewer}`), 401);
  const res = await app.inject({ url: '/v1/models', headers: { authorization: `Bearer ${keys.viewer}`, 'x-api-key': keys.admin }, remoteAddress: REMOTE });
  assert.equal(res.headers['www-authenticate'], 'Bearer realm="sightline", error="invalid_token"');
  assert.match(res.json().error.message, /two different credentials/);
});

test('a CORS preflight passes without credentials; the request itself does not', async (t) => {
  const { app, close } = await authApp();
  t.after(close);
  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/v1/uploads',
    remoteAddress: REMOTE,
    headers: {
      origin: 'https://hmi.example',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization,tus-resumable,upload-length',
    },
  });
  assert.ok(preflight.statusCode < 300, `${preflight.statusCode} ${preflight.body}`);
  const post = await app.inject({
    method: 'POST',
    url: '/v1/uploads',
    remoteAddress: REMOTE,
    headers: { origin: 'https://hmi.example', 'tus-resumable': '1.0.0', 'upload-length': '10' },
  });
  assert.equal(post.statusCode, 401);
  assert.equal((await app.inject({ method: 'OPTIONS', url: '/v1/uploads', remoteAddress: REMOTE })).statusCode, 401, 'a bare OPTIONS is no preflight');
});

test('a revoked key stops working on the very next request', async (t) => {
  const { app, close } = await authApp();
  t.after(close);
  const { key, id } = await app.apiKeys.create('soon-gone', ['viewer']);
  assert.equal((await app.inject({ url: '/v1/models', headers: bearer(key) })).statusCode, 200);
  await app.apiKeys.revoke(id);
  const res = await app.inject({ url: '/v1/models', headers: bearer(key) });
  assert.equal(res.statusCode, 401);
  assert.equal(res.headers['www-authenticate'], 'Bearer realm="sightline", error="invalid_token"');
  assert.match(res.json().error.message, /unknown or revoked API key/);
});

test('security headers on every answer, the 401s included; no HSTS over plain HTTP', async (t) => {
  const { app, close } = await authApp();
  t.after(close);
  for (const res of [
    await app.inject({ url: '/livez' }),
    await app.inject({ url: '/v1/models' }),
    await app.inject({ method: 'OPTIONS', url: '/v1/uploads', headers: bearer('sl_x') }),
  ]) {
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['x-frame-options'], 'SAMEORIGIN');
    assert.match(String(res.headers['content-security-policy']), /default-src 'self'/);
    assert.match(String(res.headers['content-security-policy']), /frame-ancestors 'self'/);
    assert.doesNotMatch(String(res.headers['content-security-policy']), /upgrade-insecure-requests/);
    assert.equal(res.headers['strict-transport-security'], undefined);
  }
});

test('isLoopback: 127.0.0.0/8, ::1 and IPv4-mapped 127.x only', () => {
  for (const a of ['127.0.0.1', '127.255.255.254', '::1', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1']) assert.equal(isLoopback(a), true, a);
  for (const a of [undefined, '', '10.0.0.1', '128.0.0.1', '::ffff:10.0.0.1', '::2', 'fe80::1', '1127.0.0.1', '127.0.0.1.evil'])
    assert.equal(isLoopback(a), false, String(a));
});
