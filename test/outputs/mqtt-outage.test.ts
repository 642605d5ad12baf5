import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { test } from 'node:test';
import { ALL_LINES } from '../../src/events/index.js';
import type { MqttOutput } from '../../src/outputs/mqtt/index.js';
import type { ResultEvent } from '../../src/protocol/events.js';
import { ROOT, cleanups, waitFor } from '../helpers/cli-process.js';
import { startApp, tempDir } from '../helpers/fixtures.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { Mosquitto, PahoSubscriber, hasMosquitto, hasPaho } from './fixtures/mqtt-peers.js';

const IMAGES = [readFileSync(join(ROOT, 'samples', 'ok-01.jpg')), readFileSync(join(ROOT, 'samples', 'ng-01.jpg'))];
const RATE_MS = 200; // 5 results a second
const BEFORE_MS = 4000;
const OUTAGE_MS = 30_000;
const AFTER_MS = 4000;

const quantile = (values: number[], q: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(q * values.length))] ?? Number.NaN;

test('Mosquitto stopped for 30 s under 5 results/s and restarted: every result arrives exactly once, in order; detections do not slow down', {
  timeout: 90_000,
}, async (t) => {
  if (!requireOrSkip(t, hasMosquitto(), 'mosquitto (/usr/sbin/mosquitto)')) return;
  if (!requireOrSkip(t, await hasPaho(), "Debian's python3-paho-mqtt (/usr/bin/python3)")) return;
  const defer = cleanups(t);
  const tmp = tempDir('sightline-mqtt-outage-');
  defer(tmp.cleanup);
  const broker = await Mosquitto.create(tmp.dir);
  await broker.start();
  defer(() => broker.stop());
  // A persistent session: the broker keeps the subscription (and what it queues) across its restart.
  const sub = new PahoSubscriber(broker.port, 'outage/+/result', `outage-sub-${process.pid}`);
  defer(() => sub.kill());
  await sub.ready();

  // The embedded shape: results and the outbox in a SQLite file.
  const app = await startApp({ mqtt_url: broker.url, mqtt_topic_prefix: 'outage', store_url: `sqlite:${join(tmp.dir, 'results.db')}` });
  defer(() => app.close());
  const output = app.sightline.outputs.get('mqtt') as MqttOutput;
  await waitFor(() => output.health().connected, 'the output to connect', 10_000);

  // The order results were published in, as the event bus hands them out.
  const published: string[] = [];
  const stop = await app.sightline.events.subscribe(ALL_LINES, (e) => {
    if (e.type === 'result') published.push(e.result.request_id);
  });
  defer(stop);

  const inFlight = new Set<Promise<void>>();
  const latency: Record<'up' | 'down', number[]> = { up: [], down: [] };
  let phase: 'up' | 'down' = 'up';
  let n = 0;
  const post = () => {
    const id = `o-${String(n).padStart(4, '0')}`;
    const image = IMAGES[n++ % 2]!;
    const t0 = performance.now();
    const p = app
      .inject({ method: 'POST', url: '/v1/detect?line=line-o&camera=cam-1', headers: { 'content-type': 'image/jpeg', 'x-request-id': id }, payload: image })
      .then((res) => {
        assert.equal(res.statusCode, 200, res.body);
        latency[phase].push(performance.now() - t0);
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  const traffic = async (ms: number) => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      post();
      await delay(RATE_MS);
    }
  };

  await traffic(BEFORE_MS);
  // Stopped between two results rather than with one in flight: a QoS 1 message whose PUBACK the
  // broker never sent would rightly be sent again (at least once), and this test counts exactly once.
  await Promise.all(inFlight);
  await waitFor(() => output.outbox.depth().then((d) => d === 0), 'the first results to be sent', 10_000);
  const beforeOutage = published.length;
  await broker.stop();
  const stoppedAt = Date.now();
  phase = 'down';
  await traffic(OUTAGE_MS);
  await Promise.all(inFlight);
  const depthAtRestart = await output.outbox.depth();
  await broker.start();
  const restartedAt = Date.now();
  t.diagnostic(`broker down for ${restartedAt - stoppedAt} ms; ${published.length - beforeOutage} results meanwhile, ${depthAtRestart} waiting in the outbox`);
  phase = 'up';
  await traffic(AFTER_MS);
  await Promise.all(inFlight);

  const total = published.length;
  await waitFor(
    () => sub.messages.length >= total,
    () => `${total} results at the subscriber (has ${sub.messages.length})`,
    30_000,
  );
  const caughtUp = Date.now();
  await delay(500); // a duplicate would come right behind
  const received = sub.json<ResultEvent>('outage/line-o/result').map((r) => r.result.request_id);
  assert.equal(sub.messages.length, received.length, 'only result topics');
  assert.equal(new Set(received).size, received.length, 'no result twice');
  assert.deepEqual(received, published, 'every result, in the order it was published');
  assert.equal(total, n, 'every request published a result');
  assert.ok(depthAtRestart >= (OUTAGE_MS / RATE_MS) * 0.5, `results waited in the outbox (${depthAtRestart})`);
  assert.equal(await output.outbox.depth(), 0);

  const up = latency.up;
  const down = latency.down;
  t.diagnostic(
    `${total} results; all in ${caughtUp - restartedAt} ms after the restart; detect latency p50/p95 broker up ${quantile(up, 0.5).toFixed(0)}/${quantile(up, 0.95).toFixed(0)} ms (${up.length}), down ${quantile(down, 0.5).toFixed(0)}/${quantile(down, 0.95).toFixed(0)} ms (${down.length})`,
  );
});
