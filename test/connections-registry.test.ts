import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { StreamClient } from './helpers/stream-client.js';
import { RawConn, eventually, listConnections, portOf, requestText, type AdminConnection, type AdminList } from './connections-client.js';

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

async function metrics(port: number): Promise<string> {
  const conn = await RawConn.open(port);
  try {
    return (await conn.request('/metrics', { headers: { connection: 'close' } })).body;
  } finally {
    conn.close();
  }
}

async function adminRequest(port: number, method: string, path: string) {
  const conn = await RawConn.open(port);
  try {
    return await conn.request(path, { method, headers: { connection: 'close' } });
  } finally {
    conn.close();
  }
}

test('the registry lists every HTTP socket and WebSocket session with its fields and exact counts; DELETE kicks one', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', rate_limit_per_second: 0 });
  const opened: { close(): unknown }[] = [];
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    const image = await solidImage(320, 240, 'jpeg');

    // Four keep-alive HTTP sockets, one per client kind.
    const probe = await RawConn.open(port);
    const camera = await RawConn.open(port);
    const dashboard = await RawConn.open(port);
    const script = await RawConn.open(port);
    opened.push(probe, camera, dashboard, script);
    assert.equal((await probe.request('/livez', { headers: { 'user-agent': 'kube-probe/1.30' } })).status, 200);
    const detected = await camera.request('/v1/detect?line=line-7', {
      method: 'POST',
      headers: { 'user-agent': 'cam/2', 'content-type': 'image/jpeg', 'x-client-kind': 'camera' },
      body: image,
    });
    assert.equal(detected.status, 200, detected.body);
    assert.equal((await dashboard.request('/v1/models', { headers: { 'user-agent': 'dash/3', 'x-client-kind': 'Dashboard' } })).status, 200);
    // No declaration: loopback callers have every role, so they count as scripts.
    assert.equal((await script.request('/v1/models', { headers: { 'user-agent': 'script/4', 'x-client-kind': 'toaster' } })).status, 200);

    // Two WebSocket sessions: the socket that carried each upgrade becomes the session.
    const wsCamera = await StreamClient.open(app, '?line=line-3&client_kind=camera', { headers: { 'user-agent': 'wscam/1' } });
    const wsDashboard = await StreamClient.open(app, '', { headers: { 'x-client-kind': 'dashboard', 'user-agent': 'wsdash/1' } });
    opened.push({ close: () => wsCamera.ws.terminate() }, { close: () => wsDashboard.ws.terminate() });
    wsCamera.sendFrame({ id: 'f1', line: 'line-5' }, image);
    await wsCamera.waitFor((m) => m.type === 'result');

    const list = await listConnections(port);
    const own = list.connections.find((c) => c.user_agent === null && c.requests === 1 && c.in_flight === 1);
    assert.ok(own, 'the admin request sees its own connection');
    const byAgent = (ua: string) => {
      const found = list.connections.find((c) => c.user_agent === ua);
      assert.ok(found, `a connection with user agent ${ua}: ${JSON.stringify(list.connections)}`);
      return found;
    };
    const local = (conn: RawConn) => conn.socket.localPort;
    const expectHttp = (c: AdminConnection, conn: RawConn, kind: string, line: string | null) => {
      assert.equal(c.transport, 'http');
      assert.equal(c.client_kind, kind);
      assert.equal(c.line, line);
      assert.equal(c.remote_address, '127.0.0.1');
      assert.equal(c.remote_port, local(conn));
      assert.equal(c.requests, 1);
      assert.equal(c.in_flight, 0);
      assert.equal(c.key, null);
      assert.ok(c.bytes_in > 0 && c.bytes_out > 0);
      assert.match(c.id, /^h[A-Za-z0-9_-]{8}$/);
      assert.ok(Date.parse(c.opened_at) <= Date.parse(c.last_activity_at));
    };
    expectHttp(byAgent('kube-probe/1.30'), probe, 'system', null);
    expectHttp(byAgent('cam/2'), camera, 'camera', 'line-7');
    assert.ok(byAgent('cam/2').bytes_in >= image.length);
    expectHttp(byAgent('dash/3'), dashboard, 'dashboard', null);
    expectHttp(byAgent('script/4'), script, 'api_script', null);

    const wsCam = byAgent('wscam/1');
    assert.equal(wsCam.transport, 'websocket');
    assert.equal(wsCam.client_kind, 'camera');
    assert.equal(wsCam.line, 'line-5', "the last line seen (the frame's), not the URL's");
    assert.equal(wsCam.requests, 1, 'one frame received');
    assert.match(wsCam.id, /^w[A-Za-z0-9_-]{8}$/);
    assert.equal(wsCam.id, wsCamera.of('hello')[0]!.connection_id, 'the hello carries the registry id');
    const wsDash = byAgent('wsdash/1');
    assert.equal(wsDash.client_kind, 'dashboard');
    assert.equal(wsDash.line, null);

    // 4 sockets + 2 sessions + the admin's own socket; the upgraded sockets are not counted twice.
    assert.equal(list.connections.length, 7);
    assert.deepEqual(list.counts, {
      total: 7,
      by_transport: { http: 5, websocket: 2 },
      by_client_kind: { camera: 2, dashboard: 2, api_script: 2, system: 1 },
      refused: 0,
    });
    assert.equal(list.limits.max_connections, 200);

    // Filters and the page limit; counts always cover every open connection.
    const port7 = local(probe);
    const ws = await listConnections(port, '?transport=websocket');
    assert.deepEqual(ws.connections.map((c) => c.user_agent).sort(), ['wscam/1', 'wsdash/1']);
    assert.equal(ws.counts.total, 7);
    assert.deepEqual((await listConnections(port, '?client_kind=camera')).connections.map((c) => c.user_agent).sort(), ['cam/2', 'wscam/1']);
    assert.deepEqual(
      (await listConnections(port, '?line=line-7')).connections.map((c) => c.user_agent),
      ['cam/2'],
    );
    assert.deepEqual(
      (await listConnections(port, `?remote=127.0.0.1:${port7}`)).connections.map((c) => c.user_agent),
      ['kube-probe/1.30'],
    );
    assert.equal((await listConnections(port, '?remote=10.0.0.1')).connections.length, 0);
    const page = await listConnections(port, '?limit=2');
    assert.equal(page.connections.length, 2);
    assert.equal(page.matched, 7);
    assert.deepEqual(
      page.connections.map((c) => c.user_agent),
      ['kube-probe/1.30', 'cam/2'],
      'oldest first',
    );
    for (const bad of ['?bogus=1', '?transport=udp', '?client_kind=robot', '?limit=0']) {
      const res = await adminRequest(port, 'GET', `/v1/admin/connections${bad}`);
      assert.equal(res.status, 400, bad);
      assert.equal(res.json<{ error: { code: string } }>().error.code, 'INVALID_REQUEST');
    }

    // The gauge follows the registry, for both transports.
    const text = await metrics(port);
    assert.equal(metricValue(text, 'sightline_connections{transport="http",client_kind="system"}'), 2, 'the probe and this scrape');
    assert.equal(metricValue(text, 'sightline_connections{transport="http",client_kind="camera"}'), 1);
    assert.equal(metricValue(text, 'sightline_connections{transport="http",client_kind="dashboard"}'), 1);
    assert.equal(metricValue(text, 'sightline_connections{transport="http",client_kind="api_script"}'), 1);
    assert.equal(metricValue(text, 'sightline_connections{transport="websocket",client_kind="camera"}'), 1);
    assert.equal(metricValue(text, 'sightline_connections{transport="websocket",client_kind="dashboard"}'), 1);
    assert.equal(metricValue(text, 'sightline_connections_limit'), 200);

    // Kick an idle HTTP socket: ended, then gone from the list.
    let res = await adminRequest(port, 'DELETE', `/v1/admin/connections/${byAgent('script/4').id}`);
    assert.equal(res.status, 204);
    await script.waitClosed(5000);
    // Kick a WebSocket session: close code 4000 with a reason.
    res = await adminRequest(port, 'DELETE', `/v1/admin/connections/${wsDash.id}`);
    assert.equal(res.status, 204);
    assert.deepEqual(await wsDashboard.waitClosed(5000), { code: 4000, reason: 'closed by admin' });
    // Kick a busy HTTP socket (its body is still on its way): destroyed at once.
    const uploader = await RawConn.open(port);
    opened.push(uploader);
    uploader.write(
      requestText('/v1/detect', { method: 'POST', headers: { 'user-agent': 'slow/1', 'content-type': 'image/jpeg', 'content-length': String(image.length) } }),
    );
    uploader.write(image.subarray(0, 100));
    const busy = await eventually(
      async () => (await listConnections(port)).connections.find((c) => c.user_agent === 'slow/1' && c.in_flight === 1),
      'the upload in flight',
    );
    res = await adminRequest(port, 'DELETE', `/v1/admin/connections/${busy.id}`);
    assert.equal(res.status, 204);
    await uploader.waitClosed(5000);

    const after = await eventually(async () => {
      const l = await listConnections(port);
      return l.counts.total === 5 ? l : undefined;
    }, 'the kicked connections to leave the list');
    const agents = after.connections.map((c) => c.user_agent);
    for (const gone of ['script/4', 'wsdash/1', 'slow/1']) assert.ok(!agents.includes(gone), `${gone} is gone`);
    assert.deepEqual(after.counts.by_transport, { http: 4, websocket: 1 });

    // Unknown ids.
    for (const id of ['hNOPE0000', byAgent('script/4').id, 'x'.repeat(64)]) {
      res = await adminRequest(port, 'DELETE', `/v1/admin/connections/${id}`);
      assert.equal(res.status, 404, id);
      const body = res.json<{ error: { code: string; message: string } }>();
      assert.equal(body.error.code, 'CONNECTION_NOT_FOUND');
      assert.match(body.error.message, /No open connection/);
    }

    // The others were not disturbed.
    assert.equal((await probe.request('/livez')).status, 200);
    assert.equal((await camera.request('/v1/detect', { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: image })).status, 200);
    wsCamera.sendFrame({ id: 'f2' }, image);
    await wsCamera.waitFor((m) => m.type === 'result' && m.id === 'f2');

    // Everyone leaves: only the admin's own connection is left, and the gauge agrees.
    for (const c of opened) c.close();
    const empty = await eventually(async () => {
      const l = await listConnections<AdminList>(port);
      return l.counts.total === 1 ? l : undefined;
    }, 'every connection to close');
    assert.equal(empty.connections[0]!.in_flight, 1);
    const final = await metrics(port);
    let sum = 0;
    for (const line of final.split('\n')) if (line.startsWith('sightline_connections{')) sum += Number(line.split(' ')[1]);
    assert.equal(sum, 1, 'only the scrape itself');
  } finally {
    for (const c of opened) c.close();
    await app.close();
    tmp.cleanup();
  }
});

test("the admin's own connection can be kicked: it closes after the 204", async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', rate_limit_per_second: 0 });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    const admin = await RawConn.open(port);
    const list = (await admin.request('/v1/admin/connections')).json<AdminList>();
    assert.equal(list.counts.total, 1);
    const res = await admin.request(`/v1/admin/connections/${list.connections[0]!.id}`, { method: 'DELETE' });
    assert.equal(res.status, 204);
    assert.equal(res.headers.connection, 'close');
    await admin.waitClosed(5000);
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('without the admin role the connection list is forbidden', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', rate_limit_per_second: 0 });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    const viewer = await app.apiKeys.create('wall-screen', ['viewer']);
    const conn = await RawConn.open(port);
    const res = await conn.request('/v1/admin/connections', { headers: { 'x-api-key': viewer.key } });
    assert.equal(res.status, 403);
    const kick = await conn.request('/v1/admin/connections/hAAAAAAAA', { method: 'DELETE', headers: { 'x-api-key': viewer.key } });
    assert.equal(kick.status, 403);
    conn.close();
    // A WebSocket without a valid client kind or role hint: a viewer key makes it a dashboard.
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/stream`, { headers: { 'x-api-key': viewer.key, 'user-agent': 'wall/1' } });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const list = await listConnections(port);
    const wall = list.connections.find((c) => c.user_agent === 'wall/1')!;
    assert.equal(wall.transport, 'websocket');
    assert.equal(wall.client_kind, 'dashboard');
    assert.equal(wall.key, 'wall-screen');
    ws.terminate();
  } finally {
    await app.close();
    tmp.cleanup();
  }
});
