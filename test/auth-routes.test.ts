import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import type { InjectOptions } from 'fastify';
import { accessControl, type Role, type RouteAccess } from '../src/auth/index.js';
import { defaultConfig } from '../src/config/load.js';
import { authApp, bearer, hsToken, keysPerRole, sampleUrl } from './auth-helpers.js';

const ROLES: Role[] = ['ingest', 'viewer', 'reviewer', 'admin'];
const needs = (access: RouteAccess): Role[] => (access === 'public' ? [] : typeof access === 'string' ? [access] : [...access]);
/** The hierarchy as documented (docs/auth.md): admin holds every role, reviewer holds viewer. */
const opens = (held: Role, access: RouteAccess): boolean =>
  held === 'admin' || needs(access).includes(held) || (held === 'reviewer' && needs(access).includes('viewer'));

/** The Open Inference Protocol's routes answer in its own shape: `{"error": "message"}`, Sightline's code in X-Error-Code. */
const isOip = (url: string) => url === '/v2' || url.startsWith('/v2/');
function errorCode(url: string, res: { json(): unknown; headers: Record<string, unknown> }): unknown {
  if (!isOip(url)) return (res.json() as { error: { code: string } }).error.code;
  assert.equal(typeof (res.json() as { error: unknown }).error, 'string', `${url}: {"error": "…"}`);
  return res.headers['x-error-code'];
}

test('every route states a role, and the app knows its routes', async (t) => {
  const { app, close } = await authApp();
  t.after(close);
  const routes = app.routeAccess;
  assert.ok(routes.length >= 20, `${routes.length} routes`);
  const has = (method: string, url: string) => routes.find((r) => r.method === method && r.url === url);
  assert.equal(has('GET', '/livez')?.role, 'public');
  assert.equal(has('GET', '/readyz')?.role, 'public');
  assert.equal(has('GET', '/metrics')?.role, 'viewer');
  assert.equal(has('POST', '/v1/detect')?.role, 'ingest');
  assert.equal(has('POST', '/v1/jobs')?.role, 'ingest');
  assert.equal(has('PATCH', '/v1/uploads/:id')?.role, 'ingest');
  assert.equal(has('POST', '/v1/dead-letters/:id/retry')?.role, 'admin');
  assert.equal(has('DELETE', '/v1/dead-letters')?.role, 'admin');
  assert.equal(has('GET', '/v1/dead-letters')?.role, 'viewer');
  assert.equal(has('POST', '/v1/results/:id/review')?.role, 'reviewer');
  assert.deepEqual(has('GET', '/v1/stream')?.role, ['ingest', 'viewer']);
  // The client that submitted a job follows it (job ids are random): ingest or viewer.
  assert.deepEqual(has('GET', '/v1/jobs/:id')?.role, ['ingest', 'viewer']);
  for (const r of routes) assert.ok(r.role !== undefined, `${r.method} ${r.url}`);
});

test('every non-public route refuses missing and wrong credentials with 401 and under-privileged ones with 403; the right role passes', async (t) => {
  const { app, close } = await authApp();
  t.after(close);
  const keys = await keysPerRole(app);
  const noRoles = await hsToken({ roles: [] });
  const revoked = await app.apiKeys.create('revoked', ['admin']);
  await app.apiKeys.revoke('revoked');
  const wrong = [
    {},
    bearer('sl_0123456789abcdef_' + 'A'.repeat(43)),
    bearer(revoked.key),
    bearer(keys.admin.slice(0, -2) + 'xx'),
    bearer(await hsToken({ roles: ['admin'] }, { secret: 'another-secret-another-secret-another!' })),
    bearer(await hsToken({ roles: ['admin'] }, { exp: Math.floor(Date.now() / 1000) - 3600 })),
    bearer('not-a-credential'),
    { 'x-api-key': 'sl_nope' },
    { authorization: `Basic ${Buffer.from('admin:admin').toString('base64')}` },
  ];
  let checked = 0;
  for (const route of app.routeAccess) {
    const url = sampleUrl(route.url);
    const request = (headers: Record<string, string>): InjectOptions => ({ method: route.method as InjectOptions['method'], url, headers });
    const where = `${route.method} ${route.url}`;
    if (route.role === 'public') {
      const res = await app.inject(request({}));
      assert.ok(res.statusCode !== 401 && res.statusCode !== 403, `${where} is public: ${res.statusCode}`);
      continue;
    }
    for (const headers of wrong) {
      const res = await app.inject(request(headers as Record<string, string>));
      assert.equal(res.statusCode, 401, `${where} with ${JSON.stringify(headers)}: ${res.body}`);
      assert.match(String(res.headers['www-authenticate']), /^Bearer realm="sightline"/, where);
      if (route.method !== 'HEAD') assert.equal(errorCode(route.url, res), 'UNAUTHORIZED', where);
    }
    // Authenticated, but without the role.
    const forbidden = [bearer(noRoles), ...ROLES.filter((r) => !opens(r, route.role)).map((r) => bearer(keys[r]))];
    for (const headers of forbidden) {
      const res = await app.inject(request(headers));
      assert.equal(res.statusCode, 403, `${where} with ${JSON.stringify(headers).slice(0, 40)}: ${res.body}`);
      if (route.method !== 'HEAD' && !isOip(route.url)) assert.deepEqual(Object.keys(res.json().error).sort(), ['code', 'message']);
      if (route.method !== 'HEAD') assert.equal(errorCode(route.url, res), 'FORBIDDEN');
    }
    // The right role (each that will do), and admin, get past auth.
    for (const role of ROLES.filter((r) => opens(r, route.role))) {
      const res = await app.inject(request(bearer(keys[role])));
      assert.ok(res.statusCode !== 401 && res.statusCode !== 403, `${where} with a ${role} key: ${res.statusCode} ${res.body}`);
      const jwt = await app.inject(request(bearer(await hsToken({ roles: [role] }))));
      assert.ok(jwt.statusCode !== 401 && jwt.statusCode !== 403, `${where} with a ${role} JWT: ${jwt.statusCode} ${jwt.body}`);
    }
    checked++;
  }
  assert.ok(checked >= 15, `${checked} routes checked`);
});

test('a route that states no role is refused when it is registered', async () => {
  const app = Fastify();
  await app.register(accessControl, { config: defaultConfig({ store_url: 'sqlite::memory:' }) });
  assert.throws(() => app.get('/forgotten', async () => 'x'), /route GET \/forgotten states no valid role/);
  assert.throws(() => app.get('/typo', { config: { role: 'viewers' as Role } }, async () => 'x'), /states no valid role/);
  assert.throws(() => app.get('/empty', { config: { role: [] } }, async () => 'x'), /states no valid role/);
  app.get('/fine', { config: { role: 'viewer' } }, async () => 'x');
  await app.close();
});

test('the role hierarchy: admin holds viewer and ingest; ingest and viewer are separate', async (t) => {
  const { app, close } = await authApp();
  t.after(close);
  const both = (await app.apiKeys.create('both', ['ingest', 'viewer'])).key;
  const keys = await keysPerRole(app);
  const status = async (method: InjectOptions['method'], url: string, key: string) => (await app.inject({ method, url, headers: bearer(key) })).statusCode;
  assert.equal(await status('GET', '/v1/models', keys.viewer), 200);
  assert.equal(await status('GET', '/v1/models', keys.ingest), 403);
  assert.equal(await status('GET', '/v1/models', keys.admin), 200);
  assert.equal(await status('GET', '/v1/models', both), 200);
  assert.equal(await status('DELETE', '/v1/dead-letters', both), 403, 'ingest + viewer is not admin');
  assert.equal(await status('DELETE', '/v1/dead-letters', keys.admin), 200);
});

test('unknown routes need credentials too, then answer 404', async (t) => {
  const { app, close } = await authApp();
  t.after(close);
  const keys = await keysPerRole(app);
  assert.equal((await app.inject({ url: '/v1/nothing-here' })).statusCode, 401);
  const res = await app.inject({ url: '/v1/nothing-here', headers: bearer(keys.ingest) });
  assert.equal(res.statusCode, 404);
  assert.equal(res.json().error.code, 'NOT_FOUND');
});

test('reviews: a viewer key reads results but gets 403 on POST review; a reviewer key (key or JWT) reviews and reads; ingest does neither', async (t) => {
  const { app, close } = await authApp();
  t.after(close);
  const keys = await keysPerRole(app);
  await app.sightline.store.save({
    request_id: 'to-review',
    line: 'press-1',
    camera: 'default',
    model: { name: 'defects', version: '1' },
    verdict: 'ng',
    detections: [{ label: 'scratch', class_id: 0, score: 0.9, box: { x1: 1, y1: 2, x2: 30, y2: 40 } }],
    image: { width: 64, height: 64 },
    timings_ms: { queue: 0, decode: 0, preprocess: 0, infer: 0, postprocess: 0, total: 0 },
    source: 'sync',
  });
  const review = (headers: Record<string, string>, status = 'false_call') =>
    app.inject({ method: 'POST', url: '/v1/results/to-review/review', headers, payload: { status } });
  const read = async (headers: Record<string, string>) => (await app.inject({ url: '/v1/results?review=any', headers })).statusCode;

  const byViewer = await review(bearer(keys.viewer));
  assert.equal(byViewer.statusCode, 403);
  assert.equal(byViewer.json().error.code, 'FORBIDDEN');
  assert.equal((await review(bearer(keys.ingest))).statusCode, 403);
  assert.equal(await read(bearer(keys.viewer)), 200);
  assert.equal(await read(bearer(keys.ingest)), 403);
  assert.equal((await app.inject({ url: '/v1/results/to-review', headers: bearer(keys.viewer) })).json().review, null, 'the refused review left nothing');

  const byReviewer = await review(bearer(keys.reviewer));
  assert.equal(byReviewer.statusCode, 200, byReviewer.body);
  assert.deepEqual([byReviewer.json().review.status, byReviewer.json().review.reviewer], ['false_call', 'key-reviewer']);
  assert.equal(await read(bearer(keys.reviewer)), 200);
  const page = (await app.inject({ url: '/v1/results?review=false_call', headers: bearer(keys.reviewer) })).json();
  assert.deepEqual(
    page.results.map((r: { request_id: string }) => r.request_id),
    ['to-review'],
  );
  // A reviewer is no admin and no ingest.
  assert.equal((await app.inject({ method: 'DELETE', url: '/v1/dead-letters', headers: bearer(keys.reviewer) })).statusCode, 403);
  assert.equal((await app.inject({ method: 'POST', url: '/v1/detect', headers: bearer(keys.reviewer) })).statusCode, 403);

  // The same through a JWT role claim, and admin.
  const jwt = await review(bearer(await hsToken({ roles: ['reviewer'] }, { sub: 'qa-lead' })), 'confirmed');
  assert.equal(jwt.statusCode, 200, jwt.body);
  assert.equal(jwt.json().review.reviewer, 'qa-lead');
  assert.equal((await review(bearer(keys.admin), 'missed')).statusCode, 200);
  assert.equal((await app.inject({ url: '/v1/results/to-review', headers: bearer(keys.viewer) })).json().review.status, 'missed');
});
