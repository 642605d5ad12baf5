import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { defaultConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import { outputMetrics } from '../../src/outputs/metrics.js';
import { createMqttOutput } from '../../src/outputs/mqtt/index.js';
import { OutboxTables } from '../../src/outputs/outbox.js';
import type { MqttOutput } from '../../src/outputs/mqtt/index.js';
import type { CameraStateMessage } from '../../src/outputs/mqtt/plain.js';
import type { StatusMessage } from '../../src/outputs/mqtt/status.js';
import type { ResultEvent } from '../../src/protocol/events.js';
import type { DetectionResult } from '../../src/protocol/results.js';
import { ROOT, cleanups, waitFor } from '../helpers/cli-process.js';
import { startApp, tempDir } from '../helpers/fixtures.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { Mosquitto, PahoSubscriber, SHARED, clearRetained, freePort, hasMosquitto, hasPaho, retained, sharedBrokerUp } from './fixtures/mqtt-peers.js';

const OK = readFileSync(join(ROOT, 'samples', 'ok-01.jpg'));
const NG = readFileSync(join(ROOT, 'samples', 'ng-01.jpg'));
/** Short camera thresholds so that a camera goes online → stale → offline within seconds. */
const FAST = { camera_stale_after_ms: 1000, camera_offline_after_ms: 2000, line_registry_flush_ms: 100 };

async function detect(app: FastifyInstance, line: string, camera: string, image: Buffer, id: string): Promise<DetectionResult> {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/detect?line=${line}&camera=${camera}`,
    headers: { 'content-type': 'image/jpeg', 'x-request-id': id },
    payload: image,
  });
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as DetectionResult;
}

async function metric(app: FastifyInstance, series: string): Promise<number | undefined> {
  const text = (await app.inject({ url: '/metrics' })).body;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const mqttOf = (app: FastifyInstance) => app.sightline.outputs.get('mqtt') as MqttOutput;

async function peers(t: TestContext, needOwnBroker: boolean): Promise<boolean> {
  if (!requireOrSkip(t, await hasPaho(), "Debian's python3-paho-mqtt (/usr/bin/python3)")) return false;
  if (needOwnBroker) return requireOrSkip(t, hasMosquitto(), 'mosquitto (/usr/sbin/mosquitto)');
  return requireOrSkip(t, await sharedBrokerUp(), `the MQTT broker on ${SHARED.host}:${SHARED.port}`);
}

test('JSON topics: results, retained camera states, status and availability reach an independent subscriber; offline on close', {
  timeout: 60_000,
}, async (t) => {
  if (!(await peers(t, false))) return;
  const defer = cleanups(t);
  const prefix = `sltest-${randomUUID().slice(0, 8)}`;
  defer(() => clearRetained(SHARED.port, `${prefix}/#`));
  const sub = new PahoSubscriber(SHARED.port, `${prefix}/#`);
  defer(() => sub.kill());
  await sub.ready();

  const app = await startApp({ ...FAST, mqtt_url: `mqtt://${SHARED.host}:${SHARED.port}`, mqtt_topic_prefix: prefix, mqtt_status_interval_ms: 300 });
  let open = true;
  defer(() => open && app.close());
  await waitFor(() => sub.on(`${prefix}/available`).some((m) => m.payload.toString() === 'online'), 'available: online', 10_000);
  assert.equal(mqttOf(app).health().connected, true);
  assert.match(mqttOf(app).health().detail, /^connected to mqtt:\/\/127\.0\.0\.1:\d+ as sightline-/);

  const ok = await detect(app, 'line-a', 'cam-1', OK, 'req-ok-1');
  const ng = await detect(app, 'line-a', 'cam-1', NG, 'req-ng-1');
  assert.equal(ok.verdict, 'ok');
  assert.equal(ng.verdict, 'ng');

  const resultTopic = `${prefix}/line-a/result`;
  await waitFor(() => sub.on(resultTopic).length >= 2, 'two results', 10_000);
  const results = sub.json<ResultEvent>(resultTopic);
  assert.deepEqual(
    results.map((r) => r.result),
    [ok, ng],
    'each payload carries the result as /v1/detect answered it, in order',
  );
  for (const r of results) {
    assert.equal(r.type, 'result');
    assert.equal(r.line, 'line-a');
    assert.equal(r.source, 'sync');
    assert.ok(!Number.isNaN(Date.parse(r.at)));
  }
  assert.deepEqual(
    sub.on(resultTopic).map((m) => [m.qos, m.retain]),
    [
      [1, false],
      [1, false],
    ],
    'QoS 1 (mqtt_qos), not retained (mqtt_retain)',
  );

  // The camera goes stale then offline: each change is a retained state with the line's counters.
  const stateTopic = `${prefix}/line-a/cam-1/state`;
  await waitFor(() => sub.json<CameraStateMessage>(stateTopic).some((s) => s.state === 'offline'), 'cam-1 offline', 10_000);
  const states = sub.json<CameraStateMessage>(stateTopic);
  const seen = states.map((s) => s.state);
  // (A slow machine may take a second between the two images: the camera can go stale and online again in between.)
  assert.deepEqual(seen.slice(-3), ['online', 'stale', 'offline'], `states in order: ${seen.join(',')}`);
  assert.equal(states[0]!.previous, null, 'a new camera has no previous state');
  const offline = states.at(-1)!;
  assert.equal(offline.previous, 'stale');
  assert.equal(offline.line, 'line-a');
  assert.equal(offline.camera, 'cam-1');
  assert.ok(offline.last_frame_at && !Number.isNaN(Date.parse(offline.last_frame_at)));
  assert.deepEqual(offline.counters?.last_hour, { ok: 1, ng: 1, ng_rate: 0.5 });
  assert.equal(typeof offline.counters?.fps.processed, 'number');

  await waitFor(async () => (await retained(SHARED.port, `${prefix}/status`)).size > 0, 'a retained status', 5000);
  const held = await retained(SHARED.port, `${prefix}/#`);
  assert.equal(held.get(`${prefix}/available`), 'online');
  assert.equal((JSON.parse(held.get(stateTopic)!) as CameraStateMessage).state, 'offline', 'mosquitto_sub sees the state retained');
  assert.equal(held.has(resultTopic), false, 'results are not retained by default');
  const status = JSON.parse(held.get(`${prefix}/status`)!) as StatusMessage;
  assert.equal(status.version, '0.1.0');
  assert.match(status.instance, /-\d+$/);
  assert.ok(status.uptime_s >= 0);
  assert.deepEqual(
    status.lines.find((l) => l.line === 'line-a'),
    { line: 'line-a', state: 'offline', cameras: { 'cam-1': 'offline' } },
  );
  assert.deepEqual(status.outbox, { depth: 0, max: 10_000 });
  assert.equal(status.sent, 2);
  assert.equal(status.dropped, 0);

  assert.equal(await metric(app, 'sightline_output_sent_total{output="mqtt"}'), 2);
  assert.equal(await metric(app, 'sightline_output_connected{output="mqtt"}'), 1);
  const ready = await app.inject({ url: '/readyz' });
  assert.match(ready.body, /output:mqtt/);

  // A clean close says offline itself (a clean DISCONNECT discards the will).
  open = false;
  await app.close();
  await waitFor(() => sub.on(`${prefix}/available`).at(-1)?.payload.toString() === 'offline', 'available: offline', 5000);
  assert.equal((await retained(SHARED.port, `${prefix}/available`)).get(`${prefix}/available`), 'offline');
});

test('filters: only the lines of mqtt_lines and the verdicts of mqtt_verdicts are published; mqtt_retain keeps the last result', {
  timeout: 30_000,
}, async (t) => {
  if (!(await peers(t, false))) return;
  const defer = cleanups(t);
  const prefix = `sltest-${randomUUID().slice(0, 8)}`;
  defer(() => clearRetained(SHARED.port, `${prefix}/#`));
  const sub = new PahoSubscriber(SHARED.port, `${prefix}/+/result`);
  defer(() => sub.kill());
  await sub.ready();
  const app = await startApp({
    mqtt_url: `mqtt://${SHARED.host}:${SHARED.port}`,
    mqtt_topic_prefix: prefix,
    mqtt_verdicts: 'ng',
    mqtt_lines: 'line-b',
    mqtt_retain: true,
    mqtt_qos: 0,
  });
  defer(() => app.close());
  await detect(app, 'line-b', 'cam-1', OK, 'filtered-ok');
  await detect(app, 'line-c', 'cam-1', NG, 'filtered-line');
  await detect(app, 'line-b', 'cam-1', NG, 'kept-ng');
  // Results leave in order: once the last one is in, any earlier one would be too.
  await waitFor(() => sub.messages.length >= 1, 'the NG result of line-b', 10_000);
  assert.deepEqual(
    sub.json<ResultEvent>(`${prefix}/line-b/result`).map((r) => r.result.request_id),
    ['kept-ng'],
  );
  assert.equal(sub.messages.length, 1, sub.messages.map((m) => m.topic).join(', '));
  assert.equal(sub.messages[0]!.qos, 0, 'mqtt_qos 0');
  const held = await retained(SHARED.port, `${prefix}/+/result`);
  assert.equal(
    (JSON.parse(held.get(`${prefix}/line-b/result`)!) as ResultEvent).result.request_id,
    'kept-ng',
    'mqtt_retain: the last result stays on the broker',
  );
});

test('broker away: detections are unaffected, the outbox keeps the newest mqtt_outbox_max and counts the drops; they arrive in order once the broker is up', {
  timeout: 60_000,
}, async (t) => {
  if (!(await peers(t, true))) return;
  const defer = cleanups(t);
  const tmp = tempDir('sightline-mqtt-');
  defer(tmp.cleanup);
  const broker = await Mosquitto.create(tmp.dir);
  defer(() => broker.stop());
  const prefix = 'drops';
  // A persistent session, kept by the broker across its restart: it queues what is published while this subscriber reconnects.
  await broker.start();
  const sub = new PahoSubscriber(broker.port, `${prefix}/+/result`, `drops-sub-${process.pid}`);
  defer(() => sub.kill());
  await sub.ready();
  await broker.stop();

  const app = await startApp({ mqtt_url: broker.url, mqtt_topic_prefix: prefix, mqtt_outbox_max: 5, store_url: `sqlite:${join(tmp.dir, 'results.db')}` });
  defer(() => app.close());
  const health = mqttOf(app).health();
  assert.equal(health.connected, false);
  assert.match(health.detail, new RegExp(`^not connected to mqtt://127\\.0\\.0\\.1:${broker.port}: connect ECONNREFUSED`));
  assert.equal((await app.inject({ url: '/readyz' })).statusCode, 200, 'the output is a non-critical dependency');

  const ids = Array.from({ length: 12 }, (_, i) => `drop-${String(i).padStart(2, '0')}`);
  for (const id of ids) await detect(app, 'line-d', 'cam-1', NG, id);
  await waitFor(async () => (await metric(app, 'sightline_output_dropped_total{output="mqtt",reason="outbox_full"}')) === 7, 'seven drops counted', 5000);
  await waitFor(async () => (await metric(app, 'sightline_output_outbox_depth{output="mqtt"}')) === 5, 'outbox depth 5', 5000);
  assert.equal(await mqttOf(app).outbox.depth(), 5);
  assert.equal(await metric(app, 'sightline_output_connected{output="mqtt"}'), 0);

  await broker.start();
  await waitFor(() => sub.messages.length >= 5, 'the five kept results', 20_000);
  assert.deepEqual(
    sub.json<ResultEvent>(`${prefix}/line-d/result`).map((r) => r.result.request_id),
    ids.slice(7),
    'the oldest were dropped; the newest five arrive once each, in order',
  );
  await waitFor(async () => (await metric(app, 'sightline_output_outbox_depth{output="mqtt"}')) === 0, 'outbox drained', 5000);
  assert.equal(await metric(app, 'sightline_output_sent_total{output="mqtt"}'), 5);
});

test('broker away: start() and handle() return at once (measured on the output itself)', { timeout: 30_000 }, async (t) => {
  const port = await freePort(); // nothing listens there
  const tables = new OutboxTables('sqlite::memory:');
  const output = createMqttOutput({
    config: defaultConfig({ mqtt_url: `mqtt://127.0.0.1:${port}`, mqtt_outbox_max: 100 }),
    logger: createLogger('silent'),
    metrics: outputMetrics(new Registry()),
    outbox: (name, max) => tables.outbox(name, { max, deadMax: 10 }),
    lines: async () => ({ at: new Date().toISOString(), window_s: 60, lines: [] }),
    instance: 'test-instance',
  });
  t.after(() => tables.close());
  let t0 = performance.now();
  await output.start();
  const startMs = performance.now() - t0;
  let slowest = 0;
  for (let i = 0; i < 1000; i++) {
    const event: ResultEvent = { type: 'result', line: 'l', source: 'sync', at: new Date().toISOString(), result: { request_id: `h-${i}` } as DetectionResult };
    t0 = performance.now();
    output.handle(event);
    slowest = Math.max(slowest, performance.now() - t0);
  }
  await waitFor(async () => (await output.outbox!.depth()) === 100, 'the outbox to hold its 100', 10_000);
  t0 = performance.now();
  await output.close();
  const closeMs = performance.now() - t0;
  t.diagnostic(`broker down: start() ${startMs.toFixed(2)} ms, slowest of 1000 handle() ${slowest.toFixed(3)} ms, close() ${closeMs.toFixed(1)} ms`);
  assert.ok(startMs < 100, `start() waits for no broker (${startMs} ms)`);
  assert.ok(slowest < 20, `handle() returns at once (${slowest} ms)`);
  assert.ok(closeMs < 1000, `close() waits for no broker (${closeMs} ms)`);
  assert.equal(output.health().connected, false);
});
