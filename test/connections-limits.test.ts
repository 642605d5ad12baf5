import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { RawConn, eventually, listConnections, portOf, type RawResponse } from './connections-client.js';

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

function assertRefused(res: RawResponse, message: RegExp): void {
  assert.equal(res.status, 503, res.body);
  const body = res.json<{ error: { code: string; message: string } }>();
  assert.equal(body.error.code, 'TOO_MANY_CONNECTIONS');
  assert.match(body.error.message, message);
  assert.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After');
  assert.equal(res.headers.connection, 'close');
}

/** A raw ws client: resolves with how the server ended it (opened or not, close code and reason). */
function wsAttempt(url: string, headers: Record<string, string> = {}): Promise<{ opened: boolean; code: number; reason: string; ws: WebSocket }> {
  const ws = new WebSocket(url, { headers });
  let opened = false;
  ws.on('open', () => (opened = true));
  return new Promise((resolve) => {
    ws.on('error', () => undefined);
    ws.on('unexpected-response', (_req, res) => resolve({ opened: false, code: res.statusCode ?? 0, reason: 'http', ws }));
    ws.on('close', (code, reason) => resolve({ opened, code, reason: reason.toString(), ws }));
    // Accepted sessions stay open: resolve once the hello arrived.
    ws.on('message', (data) => {
      if (String(data).includes('"hello"')) resolve({ opened: true, code: 0, reason: 'open', ws });
    });
  });
}

test('per-address limit: the connection over it gets 503 TOO_MANY_CONNECTIONS (or a WebSocket 1013); the accepted ones are not disturbed', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', rate_limit_per_second: 0, max_connections_per_address: 3 });
  const conns: RawConn[] = [];
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    // /v1/models, not a probe: /livez, /readyz and /metrics get their own allowance (connections-probes.test.ts).
    for (let i = 0; i < 3; i++) {
      const c = await RawConn.open(port);
      conns.push(c);
      assert.equal((await c.request('/v1/models')).status, 200);
    }
    const over = await RawConn.open(port);
    assertRefused(await over.request('/v1/models'), /3 connections are open from 127\.0\.0\.1 \(max_connections_per_address\)/);
    await over.waitClosed(5000);
    const ws = await wsAttempt(`ws://127.0.0.1:${port}/v1/stream`);
    assert.equal(ws.opened, true, 'a refused stream is accepted, then closed');
    assert.equal(ws.code, 1013);
    assert.equal(ws.reason, 'too many connections: per_address');
    for (const c of conns) assert.equal((await c.request('/livez')).status, 200, 'accepted sockets keep working');

    conns.pop()!.close();
    // Once the server has seen the close, there is room for the admin's own connection.
    await eventually(() => app.connections.size === 2, 'the server to see the close');
    const list = await listConnections(port);
    assert.equal(list.counts.total, 3, "two sockets and the admin's");
    assert.equal(list.counts.refused, 0);
    const metrics = await conns[0]!.request('/metrics');
    assert.equal(metricValue(metrics.body, 'sightline_rejected_total{reason="connection_limit"}'), 2);
  } finally {
    for (const c of conns) c.close();
    await app.close();
    tmp.cleanup();
  }
});

test("per-key limit: a key's third connection is refused once it authenticates; other keys and callers without keys are not", async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', rate_limit_per_second: 0, max_connections_per_key: 2 });
  const conns: RawConn[] = [];
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    const a = await app.apiKeys.create('screens-a', ['viewer']);
    const b = await app.apiKeys.create('camera-b', ['ingest']);
    const image = await solidImage(64, 48, 'jpeg');
    const open = async () => {
      const c = await RawConn.open(port);
      conns.push(c);
      return c;
    };
    const a1 = await open();
    const a2 = await open();
    assert.equal((await a1.request('/v1/models', { headers: { 'x-api-key': a.key } })).status, 200);
    assert.equal((await a2.request('/v1/models', { headers: { authorization: `Bearer ${a.key}` } })).status, 200);
    // The connection is accepted (the key is not known yet); its first authenticated request is refused.
    const a3 = await open();
    assert.equal((await a3.request('/livez')).status, 200, 'public route, no key: not counted under any key');
    assertRefused(await a3.request('/v1/models', { headers: { 'x-api-key': a.key } }), /2 connections are open for key screens-a \(max_connections_per_key\)/);
    await a3.waitClosed(5000);
    const ws = await wsAttempt(`ws://127.0.0.1:${port}/v1/stream?access_token=${a.key}`);
    assert.equal(ws.code, 1013);
    assert.equal(ws.reason, 'too many connections: per_key');

    const b1 = await open();
    const detected = await b1.request('/v1/detect?line=l-2', { method: 'POST', headers: { 'x-api-key': b.key, 'content-type': 'image/jpeg' }, body: image });
    assert.equal(detected.status, 200, detected.body);
    // A probe on the same socket (public route, no identity) changes neither its key nor its kind.
    assert.equal((await b1.request('/livez')).status, 200);
    const loose = await open();
    assert.equal((await loose.request('/v1/models')).status, 200, 'loopback without a key: no per-key limit');

    const list = await listConnections(port, '?key=screens-a');
    assert.equal(list.connections.length, 2);
    for (const c of list.connections) {
      assert.equal(c.key, 'screens-a');
      assert.equal(c.client_kind, 'dashboard', 'a viewer key: dashboard');
    }
    const cams = await listConnections(port, '?key=camera-b');
    assert.equal(cams.connections[0]!.client_kind, 'camera', 'an ingest key: camera');
    assert.equal(cams.connections[0]!.line, 'l-2');

    // A slot of the key frees up when one of its connections closes.
    a1.close();
    await a1.waitClosed();
    const a4 = await open();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await a4.request('/v1/models', { headers: { 'x-api-key': a.key } })).status, 200);
    assert.equal((await a2.request('/v1/models', { headers: { 'x-api-key': a.key } })).status, 200, 'accepted connections keep working');
  } finally {
    for (const c of conns) c.close();
    await app.close();
    tmp.cleanup();
  }
});

test('reserve for high priority: with 8 of 10 connections open a normal request is refused, high ones (ingest or admin keys) are served up to the hard cap', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', rate_limit_per_second: 0, max_connections: 10, connection_reserve_high: 0.2 });
  const conns: RawConn[] = [];
  const sockets: WebSocket[] = [];
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    const image = await solidImage(64, 48, 'jpeg');
    // Only credentials with the ingest or admin role claim the reserve (connections-probes.test.ts).
    const camera = (await app.apiKeys.create('camera', ['ingest'])).key;
    const admin = (await app.apiKeys.create('ops', ['admin'])).key;
    const open = async () => {
      const c = await RawConn.open(port);
      conns.push(c);
      return c;
    };
    for (let i = 0; i < 8; i++) assert.equal((await (await open()).request('/v1/models')).status, 200);

    const normal = await open();
    assertRefused(await normal.request('/v1/models'), /8 of 10 connections are open; the other 2 are kept for priority=high requests/);
    await normal.waitClosed(5000);
    const normalStream = await wsAttempt(`ws://127.0.0.1:${port}/v1/stream`);
    assert.equal(normalStream.code, 1013);
    assert.equal(normalStream.reason, 'too many connections: reserve_high');

    // priority=high on /v1/detect, X-Priority: high anywhere, priority=high on the stream URL.
    const high = await open();
    const detected = await high.request('/v1/detect?priority=high', {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg', 'x-api-key': camera },
      body: image,
    });
    assert.equal(detected.status, 200, detected.body);
    const highStream = await wsAttempt(`ws://127.0.0.1:${port}/v1/stream?priority=high&access_token=${camera}`);
    assert.equal(highStream.opened, true);
    assert.equal(highStream.reason, 'open');
    sockets.push(highStream.ws);

    // 10 open: the hard cap refuses even high priority.
    const over = await open();
    assertRefused(await over.request('/v1/models', { headers: { 'x-priority': 'high', 'x-api-key': admin } }), /10 connections are open \(max_connections\)/);
    await over.waitClosed(5000);

    // The high-priority session leaves: X-Priority: high gets its place.
    highStream.ws.close();
    await new Promise<void>((r) => highStream.ws.once('close', () => r()));
    const high2 = await open();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal((await high2.request('/v1/models', { headers: { 'x-priority': 'high', 'x-api-key': admin } })).status, 200);

    // Every accepted connection still answers; a normal one leaving makes room for a normal one.
    for (const c of conns.filter((c) => !c.closed)) assert.equal((await c.request('/livez')).status, 200);
    conns[0]!.close();
    conns[1]!.close();
    await conns[1]!.waitClosed();
    await new Promise((r) => setTimeout(r, 50));
    // 8 are open: the admin needs the reserve too.
    const list = await listConnections(port, '', { 'x-priority': 'high', 'x-api-key': admin });
    assert.equal(list.counts.total, 9, "6 normal + 2 high + the admin's");
    assert.equal(list.connections.filter((c) => c.priority === 'high').length, 3);
    const metrics = await (await open()).request('/metrics', { headers: { 'x-priority': 'high', 'x-api-key': admin } });
    assert.equal(metricValue(metrics.body, 'sightline_rejected_total{reason="connection_limit"}'), 3);
    assert.equal(metricValue(metrics.body, 'sightline_connections_limit'), 10);
  } finally {
    for (const c of conns) c.close();
    for (const s of sockets) s.terminate();
    await app.close();
    tmp.cleanup();
  }
});

test('reserve: the order of arrival decides, not the order of first requests; a place freed before the first request counts', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', rate_limit_per_second: 0, max_connections: 10, connection_reserve_high: 0.2 });
  const conns: RawConn[] = [];
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    // Ten sockets arrive before any of them sends a request.
    for (let i = 0; i < 10; i++) conns.push(await RawConn.open(port));
    await eventually(() => app.connections.size === 10, 'ten sockets registered');
    // The last two arrived into the reserve: normal requests are refused even though they ask first.
    assertRefused(await conns[9]!.request('/v1/models'), /kept for priority=high/);
    // The first eight are served whenever they ask.
    for (let i = 0; i < 8; i++) assert.equal((await conns[i]!.request('/v1/models')).status, 200, `socket ${i}`);
    // One of the first eight leaves before socket 8 asks: socket 8 now has a normal place.
    conns[0]!.close();
    await eventually(() => app.connections.size === 8, 'the close to reach the server');
    assert.equal((await conns[8]!.request('/v1/models')).status, 200);
    const metrics = (await conns[1]!.request('/metrics')).body;
    assert.equal(metricValue(metrics, 'sightline_rejected_total{reason="connection_limit"}'), 1);
  } finally {
    for (const c of conns) c.close();
    await app.close();
    tmp.cleanup();
  }
});

test('a flood of silent sockets over the limit: at most 4 × max_connections (256 at least) wait for their 503, the oldest silent ones are closed to make room; the accepted one keeps working', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({
    models_dir: tmp.dir,
    default_model: 'v8',
    rate_limit_per_second: 0,
    max_connections: 1,
    max_connections_per_address: 0,
    connection_reserve_high: 0,
  });
  const silent: Socket[] = [];
  let accepted: RawConn | undefined;
  try {
    await app.listen({ host: '127.0.0.1', port: 0, backlog: 1024 });
    const port = portOf(app);
    accepted = await RawConn.open(port);
    assert.equal((await accepted.request('/livez')).status, 200);
    const closedEarly = new Set<Socket>();
    await Promise.all(
      Array.from(
        { length: 320 },
        () =>
          new Promise<void>((resolve) => {
            const s = netConnect({ host: '127.0.0.1', port }, () => resolve());
            s.on('error', () => resolve());
            s.on('close', () => closedEarly.add(s));
            silent.push(s);
          }),
      ),
    );
    await eventually(
      () => app.connections.counts().refused === 256 && closedEarly.size === 320 - 256,
      `256 waiting, 64 closed (now ${app.connections.counts().refused} waiting, ${closedEarly.size} closed)`,
    );
    assert.equal(app.connections.size, 1);
    assert.equal((await accepted.request('/livez')).status, 200, 'the accepted connection is not disturbed');
    // A socket refused when it is accepted counts once its refusal is final (its head could still show
    // a probe, which the probe allowance serves): the 64 closed to make room now, the waiting ones when they go.
    const metrics = await accepted.request('/metrics');
    assert.equal(metricValue(metrics.body, 'sightline_rejected_total{reason="connection_limit"}'), 64);
    for (const s of silent) s.destroy();
    await eventually(() => app.connections.counts().refused === 0, 'the waiting ones to go');
    assert.equal(metricValue((await accepted.request('/metrics')).body, 'sightline_rejected_total{reason="connection_limit"}'), 320);
  } finally {
    for (const s of silent) s.destroy();
    accepted?.close();
    await app.close();
    tmp.cleanup();
  }
});
