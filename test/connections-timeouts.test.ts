import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { RawConn, eventually, listConnections, portOf, requestText, type RawResponse } from './connections-client.js';

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

function errorOf(res: RawResponse): { code: string; message: string } {
  assert.match(res.headers['content-type'] ?? '', /^application\/json/);
  assert.equal(res.headers.connection, 'close');
  return res.json<{ error: { code: string; message: string } }>().error;
}

const IDLE_MS = 400;
const HEADERS_MS = 500;
const BODY_MS = 1500;

test('idle keep-alive sockets are reaped, slow heads and bodies get 408 REQUEST_TIMEOUT, big header blocks 431 HEADERS_TOO_LARGE; the server carries on', async (t) => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({
    models_dir: tmp.dir,
    default_model: 'v8',
    rate_limit_per_second: 0,
    connection_idle_timeout_ms: IDLE_MS,
    headers_timeout_ms: HEADERS_MS,
    body_timeout_ms: BODY_MS,
    max_header_bytes: 2048,
  });
  const conns: RawConn[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    const open = async () => {
      const c = await RawConn.open(port);
      conns.push(c);
      return c;
    };
    const image = await solidImage(320, 240, 'jpeg');

    // Idle keep-alive: closed connection_idle_timeout_ms after its last response.
    const idle = await open();
    assert.equal((await idle.request('/livez')).status, 200);
    let start = performance.now();
    await idle.waitClosed(5000);
    const idleMs = performance.now() - start;
    t.diagnostic(`idle keep-alive socket closed after ${idleMs.toFixed(0)} ms (connection_idle_timeout_ms ${IDLE_MS}, + Node's 1 s keep-alive grace)`);
    assert.ok(idleMs >= IDLE_MS * 0.8, `not before the idle timeout (${idleMs} ms)`);
    assert.ok(idleMs < IDLE_MS + 1000 + 1500, `reaped (${idleMs} ms)`);
    assert.equal(idle.responses.length, 1, 'closed without an answer: there was no request');

    // Slowloris: a head that trickles in never completes in time.
    const slow = await open();
    start = performance.now();
    slow.write('GET /livez HTTP/1.1\r\nHost: x\r\n');
    timers.push(setInterval(() => !slow.closed && slow.write(`X-Pad-${Math.random().toString(36).slice(2, 6)}: 1\r\n`), 100));
    const slowAnswer = await slow.nextResponse(0, 5000);
    const slowMs = performance.now() - start;
    await slow.waitClosed(5000);
    t.diagnostic(`slowloris head cut after ${slowMs.toFixed(0)} ms (headers_timeout_ms ${HEADERS_MS})`);
    assert.equal(slowAnswer.status, 408);
    const slowError = errorOf(slowAnswer);
    assert.equal(slowError.code, 'REQUEST_TIMEOUT');
    assert.match(slowError.message, /headers did not arrive within 500 ms \(headers_timeout_ms\)/);
    assert.ok(slowMs >= HEADERS_MS * 0.8 && slowMs < HEADERS_MS + 2000, `cut on time (${slowMs} ms)`);

    // A socket that sends nothing at all is cut the same way: nothing piles up.
    const silent = await open();
    start = performance.now();
    const silentAnswer = await silent.nextResponse(0, 5000);
    await silent.waitClosed(5000);
    t.diagnostic(`silent socket cut after ${(performance.now() - start).toFixed(0)} ms`);
    assert.equal(silentAnswer.status, 408);
    assert.equal(errorOf(silentAnswer).code, 'REQUEST_TIMEOUT');

    // A body that trickles in: 408 once body_timeout_ms has passed since the request began.
    const slowBody = await open();
    start = performance.now();
    slowBody.write(requestText('/v1/detect', { method: 'POST', headers: { 'content-type': 'image/jpeg', 'content-length': String(image.length) } }));
    let sent = 0;
    timers.push(
      setInterval(() => {
        if (slowBody.closed || sent >= image.length - 10) return;
        slowBody.write(image.subarray(sent, sent + 10));
        sent += 10;
      }, 100),
    );
    const bodyAnswer = await slowBody.nextResponse(0, 8000);
    const bodyMs = performance.now() - start;
    await slowBody.waitClosed(5000);
    t.diagnostic(`slow body cut after ${bodyMs.toFixed(0)} ms (body_timeout_ms ${BODY_MS}), ${sent} of ${image.length} bytes sent`);
    assert.equal(bodyAnswer.status, 408);
    const bodyError = errorOf(bodyAnswer);
    assert.equal(bodyError.code, 'REQUEST_TIMEOUT');
    assert.match(bodyError.message, /body did not arrive within 1500 ms \(body_timeout_ms\)/);
    assert.ok(bodyMs >= BODY_MS * 0.8 && bodyMs < BODY_MS + 2500, `cut on time (${bodyMs} ms)`);

    // A header block over max_header_bytes.
    const big = await open();
    const bigAnswer = await big.request('/livez', { headers: { 'x-big': 'a'.repeat(4000) } });
    await big.waitClosed(5000);
    assert.equal(bigAnswer.status, 431);
    const bigError = errorOf(bigAnswer);
    assert.equal(bigError.code, 'HEADERS_TOO_LARGE');
    assert.match(bigError.message, /exceed 2048 bytes/);
    // Just under the limit is fine.
    const fits = await open();
    assert.equal((await fits.request('/livez', { headers: { 'x-big': 'a'.repeat(1500) } })).status, 200);

    // None of them is left in the registry; the server answers normally.
    for (const t of timers) clearInterval(t);
    fits.close();
    await eventually(() => app.connections.size === 0, 'every socket to leave the registry');
    const list = await listConnections(port);
    assert.equal(list.counts.total, 1);
    assert.equal(list.counts.refused, 0);
    const check = await open();
    assert.equal((await check.request('/livez')).status, 200);
    const detected = await check.request('/v1/detect', { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: image });
    assert.equal(detected.status, 200, detected.body);
    assert.equal(detected.json<{ detections: unknown[] }>().detections.length > 0, true);
    const metrics = (await check.request('/metrics')).body;
    assert.equal(metricValue(metrics, 'sightline_rejected_total{reason="request_timeout"}'), 3);
    assert.equal(metricValue(metrics, 'sightline_rejected_total{reason="headers_too_large"}'), 1);
  } finally {
    for (const t of timers) clearInterval(t);
    for (const c of conns) c.close();
    await app.close();
    tmp.cleanup();
  }
});

test('app.close() does not wait for idle keep-alive, half-sent or refused sockets (default timeouts)', async (t) => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  // Default timeouts: 60 s idle, 10 s for headers; max_connections 2 so that one socket is refused.
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', rate_limit_per_second: 0, max_connections: 2 });
  const conns: RawConn[] = [];
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = portOf(app);
    const keepAlive = await RawConn.open(port);
    conns.push(keepAlive);
    assert.equal((await keepAlive.request('/livez')).status, 200);
    const partial = await RawConn.open(port);
    conns.push(partial);
    partial.write('GET /livez HTTP/1.1\r\nHost: x\r\n');
    const refused = await RawConn.open(port);
    conns.push(refused);
    await eventually(() => app.connections.counts().refused === 1, 'the third socket to be refused');
    const start = performance.now();
    await app.close();
    const ms = performance.now() - start;
    t.diagnostic(`app.close() took ${ms.toFixed(0)} ms with an idle, a half-sent and a refused socket open`);
    assert.ok(ms < 3000, `close did not wait for the sockets' timeouts (${ms} ms)`);
    for (const c of conns) await c.waitClosed(2000);
  } finally {
    for (const c of conns) c.close();
    await app.close();
    tmp.cleanup();
  }
});

test('over TLS too: sockets are registered once the handshake is done, and a slow head gets the JSON 408', async (t) => {
  if (!requireOrSkip(t, spawnSync('openssl', ['version']).status === 0, 'openssl')) return;
  const tmp = tempDir('sightline-tls-');
  const cert = join(tmp.dir, 'cert.pem');
  const key = join(tmp.dir, 'key.pem');
  const made = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-days',
      '1',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(made.status, 0, made.stderr);
  const app = await startApp(
    { models_dir: tmp.dir, rate_limit_per_second: 0, tls_cert_file: cert, tls_key_file: key, headers_timeout_ms: HEADERS_MS },
    { wait: false },
  );
  const sockets: TLSSocket[] = [];
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const ca = readFileSync(cert);
    const open = () =>
      new Promise<TLSSocket>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: portOf(app), ca }, () => resolve(s));
        s.once('error', reject);
        sockets.push(s);
      });
    const read = (s: TLSSocket) =>
      new Promise<string>((resolve) => {
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString()));
        s.on('close', () => resolve(text));
      });
    const keep = await open();
    keep.write('GET /livez HTTP/1.1\r\nHost: x\r\nUser-Agent: tls/1\r\n\r\n');
    await eventually(() => app.connections.list().connections.find((c) => c.user_agent === 'tls/1' && c.requests === 1), 'the TLS socket in the registry');
    assert.equal(app.connections.counts().total, 1);

    const slow = await open();
    const answer = read(slow);
    slow.write('GET /livez HTTP/1.1\r\n');
    const text = await answer;
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.match(text, /"code":"REQUEST_TIMEOUT"/);
    await eventually(() => app.connections.counts().total === 1, 'the cut socket to leave the registry');
  } finally {
    for (const s of sockets) s.destroy();
    await app.close();
    tmp.cleanup();
  }
});
