// Issue 12: connection floods must not starve the health probes, idle
// WebSockets must not take HTTP's places, and the high-priority reserve belongs
// to credentials, not to whoever writes priority=high.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { ConnectionRegistry, type TrackedSocket } from '../src/connections/index.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { JWT_SECRET, hsToken } from './auth-helpers.js';
import { RawConn, eventually, listConnections, portOf, type RawResponse } from './connections-client.js';

/** The soft limit on open files of this process (Linux), or undefined when it cannot be read. */
function openFileLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined ? undefined : soft === 'unlimited' ? Infinity : Number(soft);
  } catch {
    return undefined;
  }
}

function assertRefused(res: RawResponse, message: RegExp): void {
  assert.equal(res.status, 503, res.body);
  const body = res.json<{ error: { code: string; message: string } }>();
  assert.equal(body.error.code, 'TOO_MANY_CONNECTIONS');
  assert.match(body.error.message, message);
  assert.equal(res.headers.connection, 'close');
}

/** A raw ws client: resolves once the hello arrived (open) or the server ended it. */
function wsAttempt(url: string, headers: Record<string, string> = {}): Promise<{ opened: boolean; code: number; reason: string; ws: WebSocket }> {
  const ws = new WebSocket(url, { headers });
  let opened = false;
  ws.on('open', () => (opened = true));
  return new Promise((resolve) => {
    ws.on('error', () => undefined);
    ws.on('unexpected-response', (_req, res) => {
      resolve({ opened: false, code: res.statusCode ?? 0, reason: 'http', ws });
      res.resume();
      ws.terminate();
    });
    ws.on('close', (code, reason) => resolve({ opened, code, reason: reason.toString(), ws }));
    ws.on('message', (data) => {
      if (String(data).includes('"hello"')) resolve({ opened: true, code: 0, reason: 'open', ws });
    });
  });
}

/** One probe the way the kubelet sends it: a fresh connection, `Connection: close`. */
async function probe(port: number, path: string): Promise<{ path: string; status: number; ms: number; error?: string }> {
  const start = performance.now();
  let conn: RawConn | undefined;
  try {
    conn = await RawConn.open(port);
    const res = await conn.request(path, { headers: { 'user-agent': 'kube-probe/1.30', connection: 'close' } }, 5000);
    return { path, status: res.status, ms: performance.now() - start };
  } catch (err) {
    return { path, status: 0, ms: performance.now() - start, error: (err as Error).message };
  } finally {
    conn?.close();
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

const WEBSOCKETS = 300;
const SLOW_BODIES = 500;

test('connection floods starved the health probes (issue 12): with 300 idle WebSockets and 500 slow bodies held open, /livez and /readyz answer 200 throughout, and a key-holding high-priority client is still served', async (t) => {
  const fds = openFileLimit();
  const needed = 2 * (WEBSOCKETS + SLOW_BODIES) + 500;
  if (!requireOrSkip(t, fds === undefined || fds >= needed, `an open-file limit of ${needed} (ulimit -n is ${fds}; .ci/run raises it)`)) return;
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  // The default limits (max_connections 200, 10% reserve, 100 WebSocket sessions, 16 probes), except
  // the per-address one: every client of this test comes from 127.0.0.1.
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', max_connections_per_address: 0 });
  const sockets: WebSocket[] = [];
  const slow: RawConn[] = [];
  let probing = true;
  try {
    await app.listen({ host: '127.0.0.1', port: 0, backlog: 2048 });
    const port = portOf(app);
    const camera = (await app.apiKeys.create('line-1-camera', ['ingest'])).key;
    const image = await solidImage(64, 48, 'jpeg');
    assert.equal(app.connections.normalLimit, 180);

    // The probes run from before the flood until the end, one /livez and one /readyz every 100 ms.
    let phase: 'opening the flood' | 'flood held' = 'opening the flood';
    const probes: (Awaited<ReturnType<typeof probe>> & { phase: typeof phase })[] = [];
    const prober = (async () => {
      while (probing) {
        const during = phase;
        probes.push(...(await Promise.all([probe(port, '/livez'), probe(port, '/readyz')])).map((p) => ({ ...p, phase: during })));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    // The flood, in waves so that the accept loop of this one process keeps up.
    const wsUrl = `ws://127.0.0.1:${port}/v1/stream`;
    const wsOutcomes: Awaited<ReturnType<typeof wsAttempt>>[] = [];
    const slowHead = `POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n`;
    for (let wave = 0; wave < 10; wave++) {
      const opening: Promise<unknown>[] = [];
      for (let i = 0; i < WEBSOCKETS / 10; i++) {
        opening.push(
          wsAttempt(wsUrl, { 'x-client-kind': 'camera' }).then((o) => {
            wsOutcomes.push(o);
            sockets.push(o.ws);
          }),
        );
      }
      for (let i = 0; i < SLOW_BODIES / 10; i++) {
        opening.push(
          RawConn.open(port).then((c) => {
            slow.push(c);
            // The head and a few bytes of a body that never comes.
            c.write(slowHead + 'xxxxxxxx');
          }),
        );
      }
      await Promise.all(opening);
    }
    // Refused slow bodies get their 503 and are closed; the accepted ones hang in their body.
    await eventually(
      () => app.connections.counts().refused === 0 && slow.every((c) => c.closed || c.responses.length === 0),
      'the refused ones to be answered',
      30_000,
    );
    const heldSlow = slow.filter((c) => !c.closed);
    const openWs = wsOutcomes.filter((o) => o.opened && o.code === 0);
    const refusedWs = wsOutcomes.filter((o) => o.code === 1013);
    t.diagnostic(
      `flood: ${openWs.length} of ${WEBSOCKETS} WebSockets open (${refusedWs.length} closed with 1013), ${heldSlow.length} of ${SLOW_BODIES} slow bodies held (${slow.length - heldSlow.length} refused 503)`,
    );
    assert.equal(openWs.length + refusedWs.length, WEBSOCKETS);
    assert.ok(openWs.length <= 100, 'max_websocket_connections');
    for (const c of slow.filter((c) => c.closed)) assert.equal(c.responses[0]?.status, 503);
    // The normal share is full: an ordinary new client is refused …
    assert.equal(app.connections.open, 180);
    const ordinary = await RawConn.open(port);
    assertRefused(await ordinary.request('/v1/models'), /kept for priority=high|max_connections/);
    phase = 'flood held';

    // … and stays so while the flood holds on; the probes keep being answered.
    await new Promise((r) => setTimeout(r, 3000));
    const metrics = await probe(port, '/metrics');
    assert.equal(metrics.status, 200, 'Prometheus scrapes get the probe allowance too');

    // A camera with an ingest key asking for high priority gets a reserved place.
    const cam = await RawConn.open(port);
    const detected = await cam.request('/v1/detect?priority=high&line=line-1', {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg', 'x-api-key': camera },
      body: image,
    });
    assert.equal(detected.status, 200, detected.body);
    assert.equal((await cam.request('/v1/models', { headers: { 'x-api-key': camera } })).status, 403, "the connection stays, the key's roles apply");
    cam.close();
    assert.equal(heldSlow.filter((c) => !c.closed).length, heldSlow.length, 'the flood was held open throughout');

    probing = false;
    await prober;
    const failed = probes.filter((p) => p.status !== 200);
    // Latency is measured, not asserted (both ends share this process and its two cores with the flood's clients).
    for (const during of ['opening the flood', 'flood held'] as const) {
      for (const path of ['/livez', '/readyz']) {
        const ms = probes.filter((p) => p.path === path && p.phase === during).map((p) => p.ms);
        t.diagnostic(
          `${path} while ${during}: ${ms.length} probes on fresh connections, all ${ms.length === probes.filter((p) => p.path === path && p.phase === during && p.status === 200).length ? '200' : 'NOT 200'}, latency p50 ${percentile(ms, 50).toFixed(1)} ms, p95 ${percentile(ms, 95).toFixed(1)} ms, max ${Math.max(...ms).toFixed(1)} ms`,
        );
      }
    }
    assert.deepEqual(failed.slice(0, 5), [], `${failed.length} of ${probes.length} probes failed`);
    assert.ok(probes.length >= 40, `probes ran throughout (${probes.length})`);
  } finally {
    probing = false;
    for (const s of sockets) s.terminate();
    for (const c of slow) c.close();
    await app.close();
    tmp.cleanup();
  }
});

test('a probe that the limits refuse is served from max_probe_connections, once, then its connection is closed; an ordinary request over the limit still gets 503', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', rate_limit_per_second: 0, max_connections: 2, connection_reserve_high: 0 });
  const conns: RawConn[] = [];
  const open = async () => {
    const c = await RawConn.open(portOf(app));
    conns.push(c);
    return c;
  };
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    for (let i = 0; i < 2; i++) assert.equal((await (await open()).request('/v1/models')).status, 200);
    for (const path of ['/livez', '/readyz', '/metrics']) {
      const c = await open();
      const res = await c.request(path);
      assert.equal(res.status, 200, `${path}: ${res.body}`);
      assert.equal(res.headers.connection, 'close', 'one answer per probe connection');
      await c.waitClosed(5000);
    }
    assertRefused(await (await open()).request('/v1/models'), /2 connections are open \(max_connections\)/);
    // The allowance is not part of max_connections: the two ordinary connections are all that counts.
    await eventually(() => app.connections.open === 2 && app.connections.size === 2, 'the probes to leave');
    const metrics = await conns[0]!.request('/metrics');
    const rejected = metrics.body.split('\n').find((l) => l.startsWith('sightline_rejected_total{reason="connection_limit"}'));
    assert.equal(rejected, 'sightline_rejected_total{reason="connection_limit"} 1', 'only the ordinary request counts as refused');
  } finally {
    for (const c of conns) c.close();
    await app.close();
    tmp.cleanup();
  }
});

test('the probe allowance has its own cap (max_probe_connections), and a flood of silent sockets does not keep a probe out', () => {
  const metrics = createMetrics();
  const registry = new ConnectionRegistry({ limits: { maxConnections: 1, perKey: 0, perAddress: 0, reserveHigh: 0, maxWebSockets: 0, maxProbes: 2 }, metrics });
  const socket = (): TrackedSocket & EventEmitter => {
    const s = new EventEmitter() as TrackedSocket & EventEmitter & { destroyed: boolean };
    s.remoteAddress = '10.0.0.1';
    s.destroyed = false;
    s.end = () => undefined;
    s.destroy = () => {
      s.destroyed = true;
      s.emit('close');
    };
    return s;
  };
  const first = socket();
  assert.ok(!('reason' in registry.acceptSocket(first)));
  const [a, b, c] = [socket(), socket(), socket()];
  for (const s of [a, b, c]) assert.equal((registry.acceptSocket(s) as { reason: string }).reason, 'max_connections');
  assert.ok(!('reason' in registry.admitProbe(a)));
  assert.ok(!('reason' in registry.admitProbe(b)));
  assert.deepEqual(registry.admitProbe(c), { reason: 'max_probe_connections', message: '2 probe connections are open (max_probe_connections)' });
  assert.equal(registry.open, 1);
  assert.equal(registry.size, 3);
  a.destroy();
  assert.ok(!('reason' in registry.admitProbe(c)), 'a place frees up when a probe connection closes');

  // The refused sockets waiting for their head are bounded; the oldest silent one makes room for a newcomer.
  const silent = Array.from({ length: registry.maxPendingRefusals }, socket);
  for (const s of silent) registry.acceptSocket(s);
  const late = socket();
  registry.acceptSocket(late);
  assert.equal(late.destroyed, false, 'the newcomer waits for its head');
  assert.equal(silent[0]!.destroyed, true, 'the oldest silent one is closed');
  assert.ok(registry.refusalOf(late));
});

test('WebSocket sessions have their own limit (max_websocket_connections): idle streams cannot take the places of HTTP clients; a failed upgrade gives its place back', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({
    models_dir: tmp.dir,
    default_model: 'v8',
    rate_limit_per_second: 0,
    max_connections: 12,
    connection_reserve_high: 0,
    max_websocket_connections: 4,
  });
  const conns: RawConn[] = [];
  const sockets: WebSocket[] = [];
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    const url = `ws://127.0.0.1:${port}/v1/stream`;
    for (let i = 0; i < 3; i++) {
      const s = await wsAttempt(url);
      sockets.push(s.ws);
      assert.equal(s.reason, 'open');
    }
    // Upgrades refused before they open (a bad query) do not keep a WebSocket place.
    for (let i = 0; i < 3; i++) assert.equal((await wsAttempt(`${url}?bogus=1`)).code, 400);
    const fourth = await wsAttempt(url);
    sockets.push(fourth.ws);
    assert.equal(fourth.reason, 'open');
    const fifth = await wsAttempt(url);
    assert.equal(fifth.opened, true, 'accepted, then closed');
    assert.deepEqual([fifth.code, fifth.reason], [1013, 'too many connections: max_websocket_connections']);

    // HTTP still has its 8 places (12 − 4 sessions).
    for (let i = 0; i < 8; i++) {
      const c = await RawConn.open(port);
      conns.push(c);
      assert.equal((await c.request('/v1/models')).status, 200, `HTTP client ${i}`);
    }
    const over = await RawConn.open(port);
    conns.push(over);
    assertRefused(await over.request('/v1/models'), /12 connections are open \(max_connections\)/);
    assert.equal(app.connections.webSockets, 4);

    // A session leaving makes room for another one.
    conns[0]!.close();
    fourth.ws.close();
    await eventually(() => app.connections.webSockets === 3 && app.connections.open === 10, 'the session and the socket to leave');
    const again = await wsAttempt(url);
    sockets.push(again.ws);
    assert.equal(again.reason, 'open');
    const list = await listConnections<{ limits: Record<string, number>; counts: { by_transport: Record<string, number> } }>(port);
    assert.equal(list.limits.max_websocket_connections, 4);
    assert.equal(list.limits.max_probe_connections, 16);
    assert.equal(list.counts.by_transport.websocket, 4);
  } finally {
    for (const c of conns) c.close();
    for (const s of sockets) s.terminate();
    await app.close();
    tmp.cleanup();
  }
});

test('the high-priority reserve was claimable by anyone who wrote priority=high (issue 12): only API keys or JWTs with the ingest or admin role claim it; no key, a viewer key, a bad key or an invalid request do not', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({
    models_dir: tmp.dir,
    default_model: 'v8',
    rate_limit_per_second: 0,
    max_connections: 10,
    connection_reserve_high: 0.2,
    auth_jwt_secret: JWT_SECRET,
  });
  const conns: RawConn[] = [];
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    const image = await solidImage(64, 48, 'jpeg');
    const camera = (await app.apiKeys.create('camera', ['ingest'])).key;
    const screen = (await app.apiKeys.create('screen', ['viewer'])).key;
    const admin = (await app.apiKeys.create('ops', ['admin'])).key;
    const open = async () => {
      const c = await RawConn.open(port);
      conns.push(c);
      return c;
    };
    for (let i = 0; i < 8; i++) assert.equal((await (await open()).request('/v1/models')).status, 200);
    const reserveFull = /8 of 10 connections are open; the other 2 are kept for priority=high requests from API keys or JWTs with the ingest or admin role/;

    // Loopback without credentials (every role, but no credential), and a viewer key: refused.
    assertRefused(await (await open()).request('/v1/models', { headers: { 'x-priority': 'high' } }), reserveFull);
    assertRefused(
      await (await open()).request('/v1/detect?priority=high', { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: image }),
      reserveFull,
    );
    assertRefused(await (await open()).request('/v1/models', { headers: { 'x-priority': 'high', 'x-api-key': screen } }), reserveFull);
    // An invalid request claims nothing, even with the right key: refused before its body is read.
    assertRefused(
      await (await open()).request('/v1/detect?priority=high&conf=bad', {
        method: 'POST',
        headers: { 'content-type': 'image/jpeg', 'x-api-key': camera },
        body: image,
      }),
      reserveFull,
    );
    // Requests that fail once in (a bad key, a body that is no image) do not keep the place either.
    const badKey = await open();
    const unauthorized = await badKey.request('/v1/detect?priority=high', {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg', 'x-api-key': 'sl_0123456789abcdef_' + 'A'.repeat(43) },
      body: image,
    });
    assert.equal(unauthorized.status, 401);
    assert.equal(unauthorized.headers.connection, 'close');
    await badKey.waitClosed(5000);
    const badBody = await open();
    const invalid = await badBody.request('/v1/detect?priority=high', {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg', 'x-api-key': camera },
      body: 'not an image',
    });
    assert.ok(invalid.status >= 400 && invalid.status < 500, `${invalid.status} ${invalid.body}`);
    assert.equal(invalid.headers.connection, 'close');
    await badBody.waitClosed(5000);
    await eventually(() => app.connections.open === 8, 'the refused ones to leave');

    // An ingest key (here a camera's) and an ingest JWT claim it, and keep their places.
    const cam = await open();
    const detected = await cam.request('/v1/detect?priority=high', {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg', 'x-api-key': camera },
      body: image,
    });
    assert.equal(detected.status, 200, detected.body);
    assert.equal(detected.headers.connection, 'keep-alive');
    const jwtCam = await open();
    const token = await hsToken({ roles: ['ingest'] }, { sub: 'cam-9' });
    const viaJwt = await jwtCam.request('/v1/detect', {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg', 'x-priority': 'high', authorization: `Bearer ${token}` },
      body: image,
    });
    assert.equal(viaJwt.status, 200, viaJwt.body);
    assert.equal(
      (await cam.request('/v1/detect', { method: 'POST', headers: { 'content-type': 'image/jpeg', 'x-api-key': camera }, body: image })).status,
      200,
      'the claimed place stays',
    );
    jwtCam.close();
    await eventually(() => app.connections.open === 9, 'the JWT camera to leave');
    // An admin key too (and the admin sees who holds the reserve).
    const list = await listConnections(port, '', { 'x-priority': 'high', 'x-api-key': admin });
    const high = list.connections
      .filter((c) => c.priority === 'high')
      .map((c) => c.key)
      .sort();
    assert.deepEqual(high, ['camera', 'ops']);
  } finally {
    for (const c of conns) c.close();
    await app.close();
    tmp.cleanup();
  }
});

test('with auth off nobody has credentials to claim the reserve: all of max_connections is for everyone', async () => {
  const tmp = tempDir();
  const app = await startApp({ models_dir: tmp.dir, auth: 'off', max_connections: 10, connection_reserve_high: 0.2 }, { wait: false });
  try {
    assert.equal(app.connections.reserved, 0);
    assert.equal(app.connections.normalLimit, 10);
  } finally {
    await app.close();
    tmp.cleanup();
  }
});
