import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { installErrorHandler } from '../src/server/error-handler.js';
import { isDashboardRoute, webRoutes } from '../src/server/web.js';
import { startApp, tempDir } from './helpers/fixtures.js';

/** The dashboard plugin alone, over a folder of our own (src/server/web.ts). */
async function webApp(root: string): Promise<FastifyInstance> {
  // As the server's: additional query properties are refused, not removed (src/server/app.ts).
  const app = Fastify({ ajv: { customOptions: { removeAdditional: false, coerceTypes: true } } });
  installErrorHandler(app, 1 << 20);
  await app.register(webRoutes, { root });
  await app.ready();
  return app;
}

test('the dashboard: its page (revalidated), its hashed assets (cached a year), the API 404 for anything else', async (t) => {
  const web = tempDir('sightline-web-');
  t.after(web.cleanup);
  mkdirSync(join(web.dir, 'assets'));
  writeFileSync(join(web.dir, 'index.html'), '<!doctype html><title>Sightline</title><script type="module" src="./assets/index-abc.js"></script>');
  writeFileSync(join(web.dir, 'assets', 'index-abc.js'), 'console.log(1)');
  writeFileSync(join(web.dir, '.secret'), 'no');
  const app = await webApp(web.dir);
  t.after(() => app.close());

  for (const url of ['/', '/index.html']) {
    const page = await app.inject(url);
    assert.equal(page.statusCode, 200, url);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.equal(page.headers['cache-control'], 'no-cache');
    assert.match(page.body, /assets\/index-abc\.js/);
  }
  const asset = await app.inject('/assets/index-abc.js');
  assert.equal(asset.statusCode, 200);
  assert.match(String(asset.headers['content-type']), /javascript/);
  assert.equal(asset.headers['cache-control'], 'public, max-age=31536000, immutable');
  // A build made while the server runs is served without a restart.
  writeFileSync(join(web.dir, 'assets', 'index-def.js'), 'console.log(2)');
  assert.equal((await app.inject('/assets/index-def.js')).statusCode, 200);

  const missing = await app.inject('/assets/nope.js');
  assert.equal(missing.statusCode, 404);
  for (const url of ['/assets/..%2f.secret', '/assets/%2e%2e/.secret', '/assets/../.secret', '/.secret']) {
    const res = await app.inject(url);
    assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${url}: ${res.statusCode}`);
    assert.doesNotMatch(res.body, /^no$/, url);
  }
  assert.equal((await app.inject('/?x=1')).statusCode, 400, 'unknown query parameters are refused, as on every route');

  assert.ok(isDashboardRoute('/') && isDashboardRoute('/assets/*') && !isDashboardRoute('/v1/lines'));
});

test('without a build, / answers 404 DASHBOARD_NOT_BUILT and says what to run', async (t) => {
  const web = tempDir('sightline-web-empty-');
  t.after(web.cleanup);
  const app = await webApp(join(web.dir, 'not-there'));
  t.after(() => app.close());
  const res = await app.inject('/');
  assert.equal(res.statusCode, 404);
  assert.equal(res.json().error.code, 'DASHBOARD_NOT_BUILT');
  assert.match(res.json().error.message, /npm run build/);
});

test('in the server the dashboard is public, under the API security headers; other paths still need credentials', async (t) => {
  const app = await startApp({ auth: 'on' });
  t.after(() => app.close());
  const res = await app.inject({ url: '/', remoteAddress: '10.0.0.9' });
  assert.ok(res.statusCode === 200 || res.statusCode === 404, `${res.statusCode}`);
  if (res.statusCode === 404) assert.equal(res.json().error.code, 'DASHBOARD_NOT_BUILT');
  const csp = String(res.headers['content-security-policy']);
  for (const directive of ["script-src 'self'", "connect-src 'self'", "img-src 'self' data: blob:", "object-src 'none'"])
    assert.ok(csp.includes(directive), directive);
  const route = app.routeAccess.find((r) => r.method === 'GET' && r.url === '/');
  assert.equal(route?.role, 'public');
  assert.equal((await app.inject({ url: '/nothing', remoteAddress: '10.0.0.9' })).statusCode, 401);
  const doc = (await app.inject({ url: '/openapi.json', remoteAddress: '10.0.0.9' })).json() as { paths: Record<string, unknown> };
  assert.deepEqual(
    Object.keys(doc.paths).filter((p) => isDashboardRoute(p) || p.startsWith('/assets')),
    [],
    'the dashboard is not in the API document',
  );
});
