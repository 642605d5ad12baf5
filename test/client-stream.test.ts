/**
 * The SDK's stream(): reconnect, resubscription, heartbeat and frame accounting, first
 * against a scripted `ws` server (what the real one cannot be made to do on demand:
 * go silent, answer nothing), then against a real `sightline serve` process that is
 * killed and started again on the same port.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { SightlineClient, SightlineError, type ReconnectInfo, type StreamConnection } from '../src/index.js';
import { decodeFrame, type ClientMessage, type ServerMessage, type StreamLimits } from '../src/protocol/stream.js';
import type { SightlineEvent } from '../src/protocol/events.js';
import { tempDir } from './helpers/fixtures.js';
import { SightlineProcess, cleanups, waitFor } from './helpers/cli-process.js';

const LIMITS: StreamLimits = {
  max_in_flight: 2,
  max_pending: 4,
  drop_policy: 'oldest',
  max_frame_bytes: 1 << 20,
  max_subscriptions: 8,
  ping_interval_ms: 60_000,
  idle_timeout_ms: 60_000,
  status_interval_ms: 60_000,
};

/** A scripted /v1/stream: hello on connect, records messages, answers frames unless told not to. */
class FakeStreamServer {
  readonly wss: WebSocketServer;
  readonly connections: { ws: WebSocket; messages: ClientMessage[]; frames: string[]; url: string; headers: Record<string, unknown> }[] = [];
  answerFrames = true;
  sendHello = true;

  private constructor(wss: WebSocketServer) {
    this.wss = wss;
    wss.on('connection', (ws, req) => {
      const conn = { ws, messages: [] as ClientMessage[], frames: [] as string[], url: req.url ?? '', headers: req.headers };
      this.connections.push(conn);
      if (this.sendHello) this.send(ws, { type: 'hello', connection_id: `c${this.connections.length}`, protocol: 1, limits: LIMITS, subscriptions: [] });
      ws.on('message', (data, isBinary) => {
        if (isBinary) {
          const { header } = decodeFrame(data as Buffer);
          const id = (header as { id: string }).id;
          conn.frames.push(id);
          if (this.answerFrames) this.send(ws, { type: 'result', id, result: { request_id: id } as never });
          return;
        }
        const msg = JSON.parse(data.toString()) as ClientMessage;
        conn.messages.push(msg);
        if (msg.type === 'subscribe') this.send(ws, { type: 'subscriptions', lines: msg.lines });
      });
    });
  }

  static async start(port = 0): Promise<FakeStreamServer> {
    const wss = new WebSocketServer({ port, host: '127.0.0.1' });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    return new FakeStreamServer(wss);
  }

  get port(): number {
    return (this.wss.address() as AddressInfo).port;
  }

  send(ws: WebSocket, message: ServerMessage): void {
    ws.send(JSON.stringify(message));
  }

  /** Publishes a line event to every connection that subscribed to it. */
  publish(line: string): void {
    for (const c of this.connections) {
      const subscribed = c.messages.some((m) => m.type === 'subscribe' && m.lines.includes(line));
      if (subscribed && c.ws.readyState === c.ws.OPEN)
        this.send(c.ws, { type: 'event', event: { type: 'job', line, at: new Date().toISOString(), job_id: 'j', state: 'dead' } });
    }
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

/** Records a connection's events for assertions. */
function record(conn: StreamConnection) {
  const log = {
    hellos: 0,
    results: [] as string[],
    errors: [] as SightlineError[],
    events: [] as SightlineEvent[],
    reconnecting: [] as ReconnectInfo[],
    closes: [] as { code: number; reconnecting: boolean }[],
    subscriptions: [] as string[][],
  };
  conn.on('hello', () => log.hellos++);
  conn.on('result', (m) => log.results.push(m.id));
  conn.on('error', (e) => log.errors.push(e));
  conn.on('event', (e) => log.events.push(e));
  conn.on('reconnecting', (r) => log.reconnecting.push(r));
  conn.on('close', (c) => log.closes.push(c));
  conn.on('subscriptions', (l) => log.subscriptions.push(l));
  return log;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

const IMAGE = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]);

test('stream() against a scripted server: resubscribes after a cut, refuses frames while down, fails unanswered frames, heartbeat, close()', {
  timeout: 60_000,
}, async (t) => {
  const defer = cleanups(t);
  let server = await FakeStreamServer.start();
  const port = server.port;
  defer(() => server.close());
  const client = new SightlineClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: 'sk-1' });
  const conn = client.stream({
    lines: ['a', 'b'],
    line: 'cam-1',
    clientKind: 'camera',
    reconnect: { initialDelayMs: 50, maxDelayMs: 400 },
    heartbeatTimeoutMs: 1500,
  });
  defer(() => conn.close());
  const log = record(conn);

  // Before the hello: not ready, frames refused.
  assert.throws(
    () => conn.send(IMAGE),
    (e: unknown) => e instanceof SightlineError && e.code === 'NOT_CONNECTED',
  );
  await conn.ready(5000);
  const first = server.connections[0]!;
  assert.match(first.url, /^\/v1\/stream\?line=cam-1&client_kind=camera$/);
  assert.equal(first.headers.authorization, 'Bearer sk-1');
  await waitFor(() => first.messages.length > 0, 'the subscription', 5000);
  assert.deepEqual(first.messages, [{ type: 'subscribe', lines: ['a', 'b'] }]);

  // Frames: ids generated (unique), or the caller's; each answered once.
  const ids = [conn.send(IMAGE), conn.send(IMAGE, { id: 'mine-1', conf: 0.5 }), conn.send(IMAGE)];
  assert.equal(ids[1], 'mine-1');
  assert.equal(new Set(ids).size, 3);
  await waitFor(() => log.results.length === 3, 'three results', 5000);
  assert.deepEqual(log.results, ids);
  assert.equal(conn.inFlight, 0);
  assert.equal((await conn.detect(IMAGE, { id: 'p-1' })).request_id, 'p-1');

  conn.subscribe(['c', 'a']); // only c is new
  conn.unsubscribe(['b', 'zz']); // only b was subscribed
  await waitFor(() => first.messages.length === 3, 'subscribe c, unsubscribe b', 5000);
  assert.deepEqual(first.messages.slice(1), [
    { type: 'subscribe', lines: ['c'] },
    { type: 'unsubscribe', lines: ['b'] },
  ]);
  assert.deepEqual(conn.subscriptions, ['a', 'c']);

  // Frames without an answer when the connection breaks: CONNECTION_LOST, each once.
  server.answerFrames = false;
  const lost = [conn.send(IMAGE), conn.send(IMAGE)];
  await waitFor(() => first.frames.length === 6, 'frames at the server', 5000);
  first.ws.terminate();
  await waitFor(() => log.reconnecting.length >= 1, 'reconnecting', 5000);
  assert.deepEqual(
    log.errors.map((e) => [e.code, e.frameId]),
    lost.map((id) => ['CONNECTION_LOST', id]),
  );
  assert.equal(log.closes[0]!.reconnecting, true);
  assert.equal(log.reconnecting[0]!.attempt, 1);
  assert.ok(log.reconnecting[0]!.delayMs <= 50);
  // The SDK comes back by itself and sends the current subscriptions again.
  await waitFor(() => log.hellos === 2, 'the second hello', 5000);
  const second = server.connections[1]!;
  await waitFor(() => second.messages.length > 0, 'the resubscription', 5000);
  assert.deepEqual(second.messages, [{ type: 'subscribe', lines: ['a', 'c'] }]);
  server.publish('c');
  await waitFor(() => log.events.some((e) => e.line === 'c'), 'an event of line c after the reconnect', 5000);

  // Server gone: reconnect attempts back off (capped), frames are refused, not buffered.
  await server.close();
  await waitFor(() => log.reconnecting.length >= 5, 'five reconnect attempts', 10_000);
  const delays = log.reconnecting.slice(1).map((r) => r.delayMs);
  assert.ok(
    delays.every((d) => d >= 0 && d <= 400),
    `delays within the cap: ${delays.join(', ')}`,
  );
  assert.ok(log.reconnecting.slice(1).every((r, i) => r.attempt === i + 1 && r.error !== null));
  assert.throws(
    () => conn.send(IMAGE),
    (e: unknown) => e instanceof SightlineError && e.code === 'NOT_CONNECTED' && e.retryable,
  );
  server = await FakeStreamServer.start(port);
  await conn.ready(5000);
  await waitFor(() => server.connections[0]?.messages.length, 'the resubscription on the new server', 5000);
  assert.deepEqual(server.connections[0]!.messages, [{ type: 'subscribe', lines: ['a', 'c'] }]);

  // Heartbeat: a server that goes silent (no pings, no messages) is dropped after heartbeatTimeoutMs.
  server.answerFrames = false;
  const hellosBefore = log.hellos;
  const silentAt = Date.now();
  await waitFor(() => log.hellos > hellosBefore, 'a reconnect after the heartbeat timeout', 10_000);
  const silentFor = Date.now() - silentAt;
  assert.ok(silentFor >= 1400, `terminated after ${silentFor} ms of silence`);
  assert.equal(server.connections.length, 2);

  // close(): no reconnect, pending frames fail with CLOSED, send() refuses.
  const pending = conn.send(IMAGE);
  await waitFor(() => server.connections[1]!.frames.includes(pending), 'the frame at the server', 5000);
  const reconnectsBefore = log.reconnecting.length;
  await conn.close();
  assert.ok(conn.closed);
  assert.deepEqual(log.errors.at(-1)?.code, 'CLOSED');
  assert.equal(log.errors.at(-1)?.frameId, pending);
  assert.deepEqual(log.closes.at(-1), { code: 1000, reason: 'client closing', reconnecting: false });
  assert.throws(
    () => conn.send(IMAGE),
    (e: unknown) => e instanceof SightlineError && e.code === 'CLOSED',
  );
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(log.reconnecting.length, reconnectsBefore);
  assert.equal(server.connections.length, 2);
});

test('stream() with reconnect: false stays closed; maxAttempts gives up; ready() rejects', { timeout: 30_000 }, async () => {
  const server = await FakeStreamServer.start();
  try {
    const client = new SightlineClient({ baseUrl: `http://127.0.0.1:${server.port}` });
    const once = client.stream({ reconnect: false });
    const log = record(once);
    await once.ready(5000);
    server.connections[0]!.ws.terminate();
    await waitFor(() => once.closed, 'closed for good', 5000);
    assert.equal(log.reconnecting.length, 0);
    assert.equal(log.closes[0]!.reconnecting, false);
    await assert.rejects(once.ready(), (e: unknown) => e instanceof SightlineError && e.code === 'CLOSED');

    const nowhere = new SightlineClient({ baseUrl: `http://127.0.0.1:${await freePort()}` }).stream({
      reconnect: { initialDelayMs: 10, maxDelayMs: 20, maxAttempts: 3 },
    });
    const log2 = record(nowhere);
    await assert.rejects(nowhere.ready(), (e: unknown) => e instanceof SightlineError && e.code === 'NETWORK_ERROR');
    assert.equal(log2.reconnecting.length, 3);
    assert.ok(nowhere.closed);
  } finally {
    await server.close();
  }
});

test('The server is restarted under an SDK stream() client: it reconnects and resubscribes by itself, and frames flow again', {
  timeout: 180_000,
}, async (t) => {
  const defer = cleanups(t);
  const tmp = tempDir('sightline-client-stream-');
  defer(tmp.cleanup);
  const port = await freePort();
  const args = [
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
    '--models-dir',
    join(process.cwd(), 'models'),
    '--data-dir',
    join(tmp.dir, 'data'),
    '--intra-op-threads',
    '1',
    '--stream-ping-interval-ms',
    '1000',
    '--log-level',
    'info',
  ];
  const procs: SightlineProcess[] = [];
  const start = async (name: string) => {
    const p = new SightlineProcess(name, args);
    procs.push(p);
    defer(() => p.kill());
    await p.baseUrl();
    const base = `http://127.0.0.1:${port}`;
    await waitFor(
      async () => {
        if (!p.alive) throw new Error(`${name} exited\n${p.tail()}`);
        const res = await fetch(`${base}/readyz`).catch(() => undefined);
        await res?.arrayBuffer();
        return res?.status === 200;
      },
      `${name} ready`,
      60_000,
    );
    return p;
  };
  const ng = await readFile('samples/ng-03.jpg');
  const ok = await readFile('samples/ok-01.jpg');
  const client = new SightlineClient({ baseUrl: `http://127.0.0.1:${port}` });

  try {
    const first = await start('serve-1');
    const conn = client.stream({ lines: ['line-x'], line: 'line-x', clientKind: 'test', reconnect: { initialDelayMs: 100, maxDelayMs: 1000, jitter: 1 } });
    defer(() => conn.close());
    const log = record(conn);
    const resultsById = new Map<string, string>();
    conn.on('result', (m) => resultsById.set(m.id, m.result.verdict));
    await conn.ready(30_000);
    await waitFor(() => log.subscriptions.some((l) => l.includes('line-x')), 'the server confirms the subscription to line-x', 10_000);

    // Before: frames get results, and the subscription gets events of line-x.
    const before = [conn.send(ng), conn.send(ok)];
    await waitFor(() => before.every((id) => resultsById.has(id)), 'results of the first frames', 30_000);
    assert.deepEqual(
      before.map((id) => resultsById.get(id)),
      ['ng', 'ok'],
    );
    const sync1 = await client.detect(ng, { line: 'line-x', requestId: 'before-restart' });
    await waitFor(
      () => log.events.some((e) => e.type === 'result' && e.result.request_id === sync1.request_id),
      'the event of the POST /v1/detect on line-x',
      10_000,
    );

    // Twice: a crash (SIGKILL: no close frame, the socket just breaks), then a graceful
    // stop (SIGTERM: the server closes the stream with 1001 "going away").
    let current = first;
    for (const [round, signal] of [
      [2, 'SIGKILL'],
      [3, 'SIGTERM'],
    ] as const) {
      const closesBefore = log.closes.length;
      const reconnectsAtKill = log.reconnecting.length;
      current.child.kill(signal);
      await current.exited;
      await waitFor(() => log.reconnecting.length >= reconnectsAtKill + 3, `reconnect attempts while the server is down (${signal})`, 30_000);
      assert.ok(!conn.isReady);
      assert.throws(
        () => conn.send(ok),
        (e: unknown) => e instanceof SightlineError && e.code === 'NOT_CONNECTED',
      );
      const lostClose = log.closes[closesBefore]!;
      assert.equal(lostClose.reconnecting, true);
      if (signal === 'SIGTERM') assert.equal(lostClose.code, 1001, 'a graceful stop says going away');
      const attempts = log.reconnecting.slice(reconnectsAtKill);
      assert.ok(
        attempts.every((r) => r.delayMs <= 1000),
        `backoff capped: ${attempts.map((r) => Math.round(r.delayMs)).join(', ')}`,
      );
      t.diagnostic(
        `${signal}: close code ${lostClose.code}; ${attempts.length} reconnect attempts while down, delays ${attempts.map((r) => Math.round(r.delayMs)).join(', ')} ms`,
      );

      // Started again on the same port; from here on the test does nothing to the connection.
      const hellosBefore = log.hellos;
      const subsBefore = log.subscriptions.length;
      current = await start(`serve-${round}`);
      await waitFor(() => log.hellos > hellosBefore, 'the client reconnects by itself', 30_000);
      await waitFor(() => log.subscriptions.slice(subsBefore).some((l) => l.includes('line-x')), 'the client resubscribes by itself', 10_000);
      assert.deepEqual(conn.subscriptions, ['line-x']);

      const sync = await client.detect(ng, { line: 'line-x', requestId: `after-restart-${round}` });
      await waitFor(
        () => log.events.some((e) => e.type === 'result' && e.result.request_id === sync.request_id),
        'an event of line-x after the restart',
        10_000,
      );
      const after = [conn.send(ok), conn.send(ng), conn.send(ok)];
      await waitFor(() => after.every((id) => resultsById.has(id)), 'results of frames after the restart', 30_000);
      assert.deepEqual(
        after.map((id) => resultsById.get(id)),
        ['ok', 'ng', 'ok'],
      );
    }
    const lost = log.errors.filter((e) => e.code !== 'CONNECTION_LOST');
    assert.deepEqual(
      lost.map((e) => `${e.code}: ${e.message}`),
      [],
      'no frame errors besides frames lost with the connection',
    );
    await conn.close();
  } catch (err) {
    for (const p of procs) process.stderr.write(`${p.tail()}\n`);
    throw err;
  }
});
