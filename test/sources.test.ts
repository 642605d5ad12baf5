import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSources, redactCredentials, sourceSpec } from '../src/sources/index.js';
import { startApp, tempDir } from './helpers/fixtures.js';

test('the compact `sources` value: entries by `;`, options by `,key=`, commas inside a URL kept', () => {
  const specs = parseSources(
    'cam-1=folder:/srv/in/cam-1,line=line-1; top=snapshot:http://10.0.0.7/cgi?res=a,b&x=1,interval_ms=500,camera=top-cam,model=defects:1',
  );
  assert.deepEqual(specs, [
    { name: 'cam-1', kind: 'folder', target: '/srv/in/cam-1', line: 'line-1', camera: 'cam-1', interval_ms: 0, paused: false },
    {
      name: 'top',
      kind: 'snapshot',
      target: 'http://10.0.0.7/cgi?res=a,b&x=1',
      line: 'default',
      camera: 'top-cam',
      model: 'defects:1',
      interval_ms: 500,
      paused: false,
    },
  ]);
  assert.deepEqual(parseSources('  '), []);
});

test('a JSON file of sources; bad values are INVALID_SOURCE', () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = join(dir, 'sources.json');
    writeFileSync(file, JSON.stringify([{ name: 'a', kind: 'folder', target: '/x', paused: true }]));
    assert.deepEqual(parseSources(file), [{ name: 'a', kind: 'folder', target: '/x', line: 'default', camera: 'a', interval_ms: 0, paused: true }]);
    writeFileSync(file, '{"not": "an array"}');
    assert.throws(() => parseSources(file), { code: 'INVALID_SOURCE' });
  } finally {
    cleanup();
  }
  for (const bad of [
    'a=ftp:/x',
    'a=snapshot:ftp://host/x',
    'a=snapshot:not a url',
    'a=folder:/x,interval_ms=10',
    'a=folder:/x,line=bad line',
    'a=folder:/x,colour=red',
    'a=folder:/x; a=folder:/y',
    '-a=folder:/x',
    'no-kind',
  ]) {
    assert.throws(() => parseSources(bad), { code: 'INVALID_SOURCE' }, bad);
  }
  assert.equal(sourceSpec({ name: 'n', kind: 'snapshot', target: ' https://cam/snap.jpg ' }).target, 'https://cam/snap.jpg');
});

test('/v1/sources: list, add, pause, resume, delete; 400, 404 and 409 in the error format', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const folder = join(dir, 'in');
  mkdirSync(folder);
  const app = await startApp({ sources: `conf=folder:${folder},line=line-a`, source_poll_interval_ms: 100, dependency_check_interval_ms: 100 });
  t.after(() => app.close());

  let res = await app.inject({ method: 'GET', url: '/v1/sources' });
  assert.equal(res.statusCode, 200);
  const [configured] = res.json().sources;
  assert.equal(configured.name, 'conf');
  assert.equal(configured.kind, 'folder');
  assert.equal(configured.line, 'line-a');

  res = await app.inject({ method: 'POST', url: '/v1/sources', payload: { name: 'added', kind: 'folder', target: join(dir, 'missing'), paused: true } });
  assert.equal(res.statusCode, 201, res.body);
  assert.equal(res.json().state, 'paused');
  res = await app.inject({ method: 'POST', url: '/v1/sources', payload: { name: 'added', kind: 'folder', target: folder } });
  assert.equal(res.statusCode, 409);
  assert.equal(res.json().error.code, 'SOURCE_EXISTS');
  res = await app.inject({ method: 'POST', url: '/v1/sources', payload: { name: 'x', kind: 'snapshot', target: 'ftp://cam/snap' } });
  assert.equal(res.statusCode, 400);
  assert.equal(res.json().error.code, 'INVALID_SOURCE');
  res = await app.inject({ method: 'POST', url: '/v1/sources', payload: { name: 'x', kind: 'rtsp', target: 'rtsp://cam' } });
  assert.equal(res.statusCode, 400);
  assert.equal(res.json().error.code, 'INVALID_REQUEST');

  // Resumed, the missing folder is an outage: down in the API, in /readyz (not critical) and in the gauge.
  res = await app.inject({ method: 'POST', url: '/v1/sources/added/resume' });
  assert.equal(res.statusCode, 200);
  const until = Date.now() + 5000;
  let readyz: { status: string; checks: { name: string; status: string; critical: boolean; reason?: string }[] } | undefined;
  for (;;) {
    readyz = (await app.inject({ method: 'GET', url: '/readyz' })).json();
    const check = readyz?.checks.find((c) => c.name === 'source:added');
    if (check?.status === 'fail' || Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const check = readyz?.checks.find((c) => c.name === 'source:added');
  assert.equal(check?.status, 'fail');
  assert.equal(check?.critical, false);
  assert.match(String(check?.reason), /ENOENT/);
  assert.equal(readyz?.status, 'ready', 'a source never makes the server unready');
  const listed = (await app.inject({ method: 'GET', url: '/v1/sources' })).json().sources.find((s: { name: string }) => s.name === 'added');
  assert.equal(listed.state, 'down');
  assert.ok(listed.frames.error >= 1);
  let metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /sightline_source_up\{source="added"\} 0/);
  assert.match(metrics, /sightline_source_up\{source="conf"\} 1/);

  // Paused: no series (no alert), /readyz says paused.
  res = await app.inject({ method: 'POST', url: '/v1/sources/added/pause' });
  assert.equal(res.json().state, 'paused');
  metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.doesNotMatch(metrics, /sightline_source_up\{source="added"\}/);

  res = await app.inject({ method: 'DELETE', url: '/v1/sources/added' });
  assert.equal(res.statusCode, 204);
  readyz = (await app.inject({ method: 'GET', url: '/readyz' })).json();
  assert.equal(
    readyz?.checks.find((c) => c.name === 'source:added'),
    undefined,
  );
  for (const [method, url] of [
    ['DELETE', '/v1/sources/added'],
    ['POST', '/v1/sources/added/pause'],
    ['POST', '/v1/sources/added/resume'],
  ] as const) {
    res = await app.inject({ method, url });
    assert.equal(res.statusCode, 404, `${method} ${url}`);
    assert.equal(res.json().error.code, 'SOURCE_NOT_FOUND');
  }
});

test('a bad `sources` value stops the start with INVALID_SOURCE', async () => {
  await assert.rejects(startApp({ sources: 'cam=folder:/x,interval_ms=1' }), { code: 'INVALID_SOURCE' });
});

test("a camera's password never leaves the server: the sources API and down reasons show *** in its place", async (t) => {
  assert.equal(redactCredentials('rtsp://admin:s3cret@10.0.0.7:554/live'), 'rtsp://admin:***@10.0.0.7:554/live');
  assert.equal(
    redactCredentials('ffmpeg rtsp://u:p%40ss@cam/a: 401 Unauthorized; then http://v:w@other/x'),
    'ffmpeg rtsp://u:***@cam/a: 401 Unauthorized; then http://v:***@other/x',
  );
  // No password, nothing to hide: user-only URLs, plain URLs and paths stay as they are.
  for (const text of ['rtsp://admin@cam/live', 'http://10.0.0.7/snap.jpg', '/srv/in', 'a:b@c']) assert.equal(redactCredentials(text), text);

  const app = await startApp({ source_snapshot_interval_ms: 100 });
  t.after(() => app.close());
  // Port 9 on loopback refuses: the source goes down with a reason that names the URL.
  const target = 'http://viewer:hunter2@127.0.0.1:9/snap.jpg';
  let res = await app.inject({ method: 'POST', url: '/v1/sources', payload: { name: 'cam-pw', kind: 'snapshot', target } });
  assert.equal(res.statusCode, 201, res.body);
  const deadline = Date.now() + 10_000;
  let status;
  do {
    await new Promise((r) => setTimeout(r, 100));
    res = await app.inject({ method: 'GET', url: '/v1/sources' });
    status = res.json().sources.find((s: { name: string }) => s.name === 'cam-pw');
  } while (status.state !== 'down' && Date.now() < deadline);
  assert.equal(status.state, 'down', res.body);
  assert.equal(status.target, 'http://viewer:***@127.0.0.1:9/snap.jpg');
  assert.match(status.reason, /viewer:\*\*\*@127\.0\.0\.1:9/);
  assert.doesNotMatch(res.body, /hunter2/);
});
