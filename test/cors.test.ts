import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { defaultConfig } from '../src/config/load.js';
import { ConfigError } from '../src/config/load.js';
import { authApp, keysPerRole } from './auth-helpers.js';
import { startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';

const DASHBOARD = 'http://dashboard.example:3000';

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
}

const preflight = (base: string, path: string, origin: string, method = 'POST') =>
  fetch(`${base}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'authorization, content-type' },
  });

test('CORS is off by default: no Access-Control-Allow-Origin, and a preflight is not answered with 2xx', async (t) => {
  const { app, close } = await authApp();
  t.after(close);
  const base = await listen(app);
  const keys = await keysPerRole(app);
  const res = await fetch(`${base}/v1/models`, { headers: { origin: DASHBOARD, authorization: `Bearer ${keys.viewer}` } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), null);
  await res.arrayBuffer();
  const pre = await preflight(base, '/v1/detect', DASHBOARD);
  assert.ok(pre.status >= 400, `preflight with CORS off: ${pre.status}`);
  assert.equal(pre.headers.get('access-control-allow-origin'), null);
  assert.equal(pre.headers.get('access-control-allow-methods'), null);
  await pre.arrayBuffer();
});

test('cors_origins: a configured origin gets its preflight answered 204 without credentials, and the real request ACAO', async (t) => {
  const { app, close } = await authApp({ cors_origins: `${DASHBOARD}, https://other.example` });
  t.after(close);
  const base = await listen(app);
  const pre = await preflight(base, '/v1/detect', DASHBOARD);
  assert.equal(pre.status, 204, await pre.text());
  assert.equal(pre.headers.get('access-control-allow-origin'), DASHBOARD);
  assert.match(String(pre.headers.get('access-control-allow-methods')), /\bPOST\b/);
  assert.equal(pre.headers.get('access-control-allow-headers'), 'authorization, content-type');
  assert.match(String(pre.headers.get('vary')), /origin/i);
  // A route with parameters is known too.
  const withParam = await preflight(base, '/v1/jobs/0123456789abcdef0123456789abcdef', DASHBOARD, 'GET');
  assert.equal(withParam.status, 204);
  await withParam.arrayBuffer();

  const keys = await keysPerRole(app);
  const res = await fetch(`${base}/v1/models`, { headers: { origin: DASHBOARD, authorization: `Bearer ${keys.viewer}` } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), DASHBOARD);
  assert.match(String(res.headers.get('access-control-expose-headers')), /X-Request-Id/i);
  await res.arrayBuffer();
  // The browser can read why a request was refused.
  const refused = await fetch(`${base}/v1/models`, { headers: { origin: DASHBOARD } });
  assert.equal(refused.status, 401);
  assert.equal(refused.headers.get('access-control-allow-origin'), DASHBOARD);
  assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
});

test('cors_origins: a preflight for an unknown route or method gets 404 NOT_FOUND without CORS headers', async (t) => {
  const { app, close } = await authApp({ cors_origins: DASHBOARD });
  t.after(close);
  const base = await listen(app);
  for (const [path, method] of [
    ['/v1/no-such-route', 'POST'],
    ['/admin/secret', 'GET'],
    ['/v1/detect', 'DELETE'],
    ['/v1/detect', 'OPTIONS'],
  ] as const) {
    const res = await preflight(base, path, DASHBOARD, method);
    assert.equal(res.status, 404, `${method} ${path}`);
    assert.equal(res.headers.get('access-control-allow-origin'), null, `${method} ${path}`);
    assert.equal(res.headers.get('access-control-allow-methods'), null, `${method} ${path}`);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
  }
  // Not a preflight (no Access-Control-Request-Method): the same 404, in Sightline's format.
  const plain = await fetch(`${base}/v1/detect`, { method: 'OPTIONS', headers: { origin: DASHBOARD } });
  assert.equal(plain.status, 404);
  assert.equal(((await plain.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
});

test('cors_origins: a disallowed origin gets no CORS headers and no preflight answer', async (t) => {
  const { app, close } = await authApp({ cors_origins: DASHBOARD });
  t.after(close);
  const base = await listen(app);
  const pre = await preflight(base, '/v1/detect', 'http://evil.example');
  assert.equal(pre.status, 404);
  assert.equal(pre.headers.get('access-control-allow-origin'), null);
  assert.equal(pre.headers.get('access-control-allow-methods'), null);
  await pre.arrayBuffer();
  const keys = await keysPerRole(app);
  const res = await fetch(`${base}/v1/models`, { headers: { origin: 'http://evil.example', authorization: `Bearer ${keys.viewer}` } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), null);
  await res.arrayBuffer();
});

test('cors_origins: * allows any origin; a value that is no origin list is a config error', async (t) => {
  const { app, close } = await authApp({ cors_origins: '*' });
  t.after(close);
  const base = await listen(app);
  const pre = await preflight(base, '/v1/detect', 'http://anything.example:8000');
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'http://anything.example:8000');
  for (const bad of ['dashboard.example', 'http://a.example/path', 'http://a.example,,']) {
    assert.throws(() => defaultConfig({ cors_origins: bad }), ConfigError, bad);
  }
});

test('tus uploads follow cors_origins: no Access-Control-Allow-Origin when CORS is off (tus answers any origin by default), the listed origin when on', async (t) => {
  const models = tempDir();
  t.after(models.cleanup);
  writeDecoderModels(models.dir);
  const serve = async (cors_origins: string) => {
    const data = tempDir();
    t.after(data.cleanup);
    const app = await startApp({ models_dir: models.dir, default_model: 'v8', data_dir: data.dir, cors_origins });
    t.after(() => app.close());
    return listen(app);
  };
  const create = (base: string, origin: string) =>
    fetch(`${base}/v1/uploads`, { method: 'POST', headers: { origin, 'tus-resumable': '1.0.0', 'upload-length': '10' } });

  const offBase = await serve('');
  const plain = await create(offBase, DASHBOARD);
  assert.equal(plain.status, 201, await plain.text());
  assert.equal(plain.headers.get('access-control-allow-origin'), null);

  const onBase = await serve(DASHBOARD);
  const listed = await create(onBase, DASHBOARD);
  assert.equal(listed.status, 201, await listed.text());
  assert.equal(listed.headers.get('access-control-allow-origin'), DASHBOARD);
  const other = await create(onBase, 'https://evil.example');
  assert.equal(other.status, 201);
  assert.equal(other.headers.get('access-control-allow-origin'), null);
});
