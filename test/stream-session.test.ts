import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { TSchema } from '@sinclair/typebox';
import { defaultConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { InProcessEventBus, type SightlineEvent } from '../src/events/index.js';
import type { ModelRepository } from '../src/inference/repository.js';
import type { ResultStore } from '../src/store/index.js';
import type { ServerMessage, StreamLimits } from '../src/protocol/stream.js';
import { HARD_BUFFERED_BYTES, SOFT_BUFFERED_BYTES, StreamSession } from '../src/stream/session.js';
import { clientMessageSchemas, frameHeaderSchema } from '../src/stream/route.js';

/** Just enough of a ws WebSocket to drive a session, with a settable send buffer. */
class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  readonly sent: ServerMessage[] = [];
  closedWith: { code: number; reason: string } | undefined;
  send(text: string): void {
    this.sent.push(JSON.parse(text) as ServerMessage);
  }
  ping(): void {}
  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
    this.readyState = 2;
    setImmediate(() => {
      this.readyState = 3;
      this.emit('close', code, Buffer.from(reason));
    });
  }
  terminate(): void {
    this.readyState = 3;
    this.emit('close', 1006, Buffer.alloc(0));
  }
}

function session(limitsOverride: Partial<StreamLimits> = {}) {
  const config = defaultConfig();
  const metrics = createMetrics();
  const events = new InProcessEventBus();
  const ws = new FakeSocket();
  const limits: StreamLimits = {
    max_in_flight: 1,
    max_pending: 1,
    drop_policy: 'oldest',
    max_frame_bytes: 1024,
    max_subscriptions: 8,
    ping_interval_ms: 60_000,
    idle_timeout_ms: 60_000,
    status_interval_ms: 60_000,
    ...limitsOverride,
  };
  const schemas = clientMessageSchemas(limits.max_subscriptions);
  const s = new StreamSession(
    ws as unknown as WebSocket,
    { id: 'c1', remoteAddress: '127.0.0.1', clientKind: 'test', defaultLine: 'default', defaultCamera: 'default', lines: ['busy'] },
    {
      config,
      models: { list: () => [] } as unknown as ModelRepository,
      metrics,
      store: {} as ResultStore,
      events,
      logger: createLogger('silent'),
      limits,
      headerCheck: TypeCompiler.Compile(frameHeaderSchema(config.max_detections_limit) as TSchema),
      messageChecks: {
        subscribe: TypeCompiler.Compile(schemas.subscribe),
        unsubscribe: TypeCompiler.Compile(schemas.unsubscribe),
        ping: TypeCompiler.Compile(schemas.ping),
      },
      figures: () => ({ connections: 1, throughput_fps: 0, latency_ms: { p50: null, p99: null }, queue_depth: 0 }),
      onClosed: () => undefined,
    },
  );
  return { s, ws, events, metrics };
}

const jobEvent = (i: number): SightlineEvent => ({ type: 'job', line: 'busy', at: new Date().toISOString(), job_id: `j${i}`, state: 'dead' });
const tick = () => new Promise((r) => setImmediate(r));

async function counter(metrics: ReturnType<typeof createMetrics>, outcome: string): Promise<number> {
  const values = (await metrics.streamEvents.get()).values;
  return values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

test('session: live events are skipped (and counted) while the client has over 1 MiB unread, and flow again after', async () => {
  const { s, ws, events, metrics } = session();
  s.start();
  await tick();
  assert.equal(ws.sent[0]?.type, 'hello');
  for (let i = 0; i < 3; i++) events.publish(jobEvent(i));
  assert.equal(ws.sent.filter((m) => m.type === 'event').length, 3);

  ws.bufferedAmount = SOFT_BUFFERED_BYTES + 1;
  for (let i = 3; i < 8; i++) events.publish(jobEvent(i));
  assert.equal(ws.sent.filter((m) => m.type === 'event').length, 3, 'nothing more is queued for a client that does not read');
  assert.equal(await counter(metrics, 'skipped'), 5);
  assert.equal(s.stats().events_skipped, 5);

  // A frame's own answer is never skipped (here: an error for a malformed frame).
  ws.emit('message', Buffer.from('nope'), true);
  assert.equal(ws.sent.at(-1)?.type, 'error');

  ws.bufferedAmount = 0;
  events.publish(jobEvent(8));
  const delivered = ws.sent.filter((m): m is Extract<ServerMessage, { type: 'event' }> => m.type === 'event');
  assert.deepEqual(
    delivered.map((m) => (m.event as { job_id: string }).job_id),
    ['j0', 'j1', 'j2', 'j8'],
  );
  assert.equal(await counter(metrics, 'sent'), 4);
  assert.equal(ws.closedWith, undefined);
  s.close(1000, 'done', 'test');
  await s.done;
});

test('session: a client with over 16 MiB unread is closed with 1008 instead of being buffered without bound', async () => {
  const { s, ws } = session();
  s.start();
  await tick();
  ws.bufferedAmount = HARD_BUFFERED_BYTES + 1;
  ws.emit('message', Buffer.from(JSON.stringify({ type: 'ping' })), false);
  assert.deepEqual(ws.closedWith, { code: 1008, reason: 'client is not reading its messages' });
  await s.done;
  assert.ok(s.isClosed);
});

test('session: messages produced before the hello wait for it; the hello lists the initial subscriptions', async () => {
  const { s, ws } = session();
  s.start();
  // Synchronously, before the initial subscriptions resolved.
  ws.emit('message', Buffer.from(JSON.stringify({ type: 'ping', id: 'early' })), false);
  assert.equal(ws.sent.length, 0);
  await tick();
  assert.deepEqual(
    ws.sent.map((m) => m.type),
    ['hello', 'pong'],
  );
  assert.deepEqual((ws.sent[0] as Extract<ServerMessage, { type: 'hello' }>).subscriptions, ['busy']);
  s.close(1000, 'done', 'test');
  await s.done;
});
