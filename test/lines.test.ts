import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { test } from 'node:test';
import { connect } from 'amqplib';
import type { FastifyInstance } from 'fastify';
import type { CameraStateEvent, SightlineEvent } from '../src/protocol/events.js';
import type { LineList, LineStatus } from '../src/protocol/lines.js';
import { cameraStateAt } from '../src/lines/camera-state.js';
import { emptyHistogram, observe, quantile } from '../src/lines/latency-histogram.js';
import { LogCapture, startApp, tempDir } from './helpers/fixtures.js';
import { AMQP_URL, PG_URL, ROOT, cleanups, freshDatabase, waitFor } from './helpers/cli-process.js';
import { requireOrSkip } from './helpers/requirements.js';
import { probeTcp } from './queue/helpers.js';

const IMAGE = readFileSync(join(ROOT, 'samples', 'ng-01.jpg'));
/** Short thresholds so that a test sees every state within seconds. */
const FAST = { camera_stale_after_ms: 600, camera_offline_after_ms: 1800, line_registry_flush_ms: 100 };

async function detect(app: FastifyInstance, line: string, camera: string) {
  const res = await app.inject({ method: 'POST', url: `/v1/detect?line=${line}&camera=${camera}`, headers: { 'content-type': 'image/jpeg' }, payload: IMAGE });
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as { line: string; camera: string; verdict: string };
}

async function lineOf(app: FastifyInstance, line: string): Promise<LineStatus> {
  const res = await app.inject({ url: `/v1/lines/${line}` });
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as LineStatus;
}

/** The camera's state as /metrics exports it (the state whose gauge is 1). */
async function metricState(app: FastifyInstance, line: string, camera: string): Promise<string | undefined> {
  const text = (await app.inject({ url: '/metrics' })).body;
  const re = new RegExp(`^sightline_camera_state\\{line="${line}",camera="${camera}",state="(\\w+)"\\} 1$`, 'm');
  return re.exec(text)?.[1];
}

function cameraEvents(app: FastifyInstance, line: string): Promise<{ events: CameraStateEvent[]; stop: () => Promise<void> }> {
  const events: CameraStateEvent[] = [];
  return app.sightline.events
    .subscribe(line, (e: SightlineEvent) => {
      if (e.type === 'camera') events.push(e);
    })
    .then((stop) => ({ events, stop }));
}

test('camera states: histogram quantiles and state thresholds', () => {
  const counts = emptyHistogram();
  for (let i = 1; i <= 100; i++) observe(counts, i); // 1..100 ms
  const p95 = quantile(counts, 0.95)!;
  assert.ok(p95 >= 75 && p95 <= 100, `p95 of 1..100 ms within its bucket (75–100], got ${p95}`);
  assert.equal(quantile(emptyHistogram(), 0.5), null);
  const t = { staleAfterMs: 5000, offlineAfterMs: 60_000 };
  assert.equal(cameraStateAt(1000, 5999, t), 'online');
  assert.equal(cameraStateAt(1000, 6000, t), 'stale');
  assert.equal(cameraStateAt(1000, 61_000, t), 'offline');
  assert.equal(cameraStateAt(null, 0, t), 'offline');
});

test('a camera that stops sending turns stale, then offline, then online again on its next frame: one event and one log line each; /v1/lines agrees with /metrics', {
  timeout: 60_000,
}, async (t) => {
  const logs = new LogCapture();
  const app = await startApp({ ...FAST, alert_eval_interval_ms: 100, alert_for_ms: 0 }, { logs });
  t.after(() => app.close());
  const { events, stop } = await cameraEvents(app, 'line-3');
  const cameraAlert = async () => {
    const { alerts } = (await app.inject({ url: '/v1/alerts' })).json() as { alerts: { name: string; state: string; description: string }[] };
    return alerts.find((a) => a.name === 'SightlineCameraOffline')!;
  };
  assert.equal((await cameraAlert()).state, 'inactive');
  t.after(stop);

  const result = await detect(app, 'line-3', 'cam-2');
  assert.equal(result.camera, 'cam-2', 'the result names its camera');
  assert.equal(result.line, 'line-3');
  await waitFor(() => events.length >= 1, 'the new camera is announced', 5000);
  let line = await lineOf(app, 'line-3');
  assert.equal(line.state, 'online');
  assert.deepEqual(
    line.cameras.map((c) => [c.camera, c.state]),
    [['cam-2', 'online']],
  );
  assert.equal(await metricState(app, 'line-3', 'cam-2'), 'online');

  await waitFor(() => events.some((e) => e.state === 'stale'), 'stale after camera_stale_after_ms', 5000);
  line = await lineOf(app, 'line-3');
  assert.equal(line.cameras[0]!.state, 'stale');
  assert.equal(await metricState(app, 'line-3', 'cam-2'), 'stale');

  await waitFor(() => events.some((e) => e.state === 'offline'), 'offline after camera_offline_after_ms', 5000);
  line = await lineOf(app, 'line-3');
  assert.equal(line.state, 'offline');
  assert.equal(await metricState(app, 'line-3', 'cam-2'), 'offline');
  const firing = await waitFor(async () => ((await cameraAlert()).state === 'firing' ? cameraAlert() : undefined), 'SightlineCameraOffline fires', 5000);
  assert.match(firing.description, /line-3:cam-2/);
  const lastFrameMetric = /^sightline_camera_last_frame_timestamp_seconds\{line="line-3",camera="cam-2"\} ([\d.e+]+)$/m.exec(
    (await app.inject({ url: '/metrics' })).body,
  )?.[1];
  assert.equal(Number(lastFrameMetric) * 1000, Date.parse(line.cameras[0]!.last_frame_at!), 'the last-frame gauge is the line state last_frame_at');

  await detect(app, 'line-3', 'cam-2');
  await waitFor(() => events.filter((e) => e.state === 'online').length >= 2, 'online again on the next frame', 5000);
  await delay(300); // room for a duplicate to show up, if there were one
  assert.deepEqual(
    events.map((e) => [e.previous, e.state]),
    [
      [null, 'online'],
      ['online', 'stale'],
      ['stale', 'offline'],
      ['offline', 'online'],
    ],
  );
  const stateLogs = logs.lines.filter((l) => l.event === 'camera_state' && l.camera === 'cam-2');
  assert.deepEqual(
    stateLogs.map((l) => l.state),
    ['online', 'stale', 'offline', 'online'],
  );
  assert.equal(await metricState(app, 'line-3', 'cam-2'), 'online');
  assert.equal((await lineOf(app, 'line-3')).cameras[0]!.state, 'online');
  await waitFor(async () => (await cameraAlert()).state === 'inactive', 'the alert resolves once the camera is back', 5000);
});

test('line state figures: frames received, processed and dropped, OK/NG over the hour, p95 latency; results and logs name the camera', {
  timeout: 60_000,
}, async (t) => {
  const logs = new LogCapture();
  const app = await startApp({ ...FAST, camera_stale_after_ms: 60_000, camera_offline_after_ms: 120_000 }, { logs });
  t.after(() => app.close());
  const verdicts = { ok: 0, ng: 0 };
  for (let i = 0; i < 4; i++) {
    const r = await detect(app, 'line-f', 'top');
    verdicts[r.verdict as 'ok' | 'ng']++;
  }
  await detect(app, 'line-f', 'side');
  const bad = await app.inject({
    method: 'POST',
    url: '/v1/detect?line=line-f&camera=side',
    headers: { 'content-type': 'image/jpeg' },
    payload: Buffer.from('not an image'),
  });
  assert.equal(bad.statusCode, 400);
  await app.sightline.lines.tick();
  const line = await lineOf(app, 'line-f');
  const top = line.cameras.find((c) => c.camera === 'top')!;
  const side = line.cameras.find((c) => c.camera === 'side')!;
  assert.deepEqual([top.last_hour.ok, top.last_hour.ng], [verdicts.ok, verdicts.ng]);
  assert.equal(line.last_hour.ok + line.last_hour.ng, 5);
  assert.ok(top.fps.processed > 0 && top.fps.received >= top.fps.processed);
  assert.ok(side.fps.dropped > 0, 'the undecodable image counts as dropped');
  assert.ok(top.latency_p95_ms !== null && top.latency_p95_ms > 0);
  const metrics = (await app.inject({ url: '/metrics' })).body;
  assert.match(metrics, /^sightline_frames_received_total\{line="line-f",camera="top"\} 4$/m);
  assert.match(metrics, /^sightline_frames_processed_total\{line="line-f",camera="top"\} 4$/m);
  assert.match(metrics, /^sightline_frames_received_total\{line="line-f",camera="side"\} 2$/m);
  assert.match(metrics, /^sightline_frames_dropped_total\{line="line-f",camera="side",reason="invalid_image"\} 1$/m);
  const logged = logs.lines.filter((l) => l.event === 'detection_result' && l.line === 'line-f');
  assert.deepEqual(new Set(logged.map((l) => l.camera)), new Set(['top', 'side']));
  const stored = (await app.inject({ url: '/v1/results?line=line-f&camera=side' })).json() as { results: { camera: string; request_id: string }[] };
  assert.equal(stored.results.length, 1);
  assert.equal(stored.results[0]!.camera, 'side');
  // Review counts of the line are part of its state.
  const review = await app.inject({ method: 'POST', url: `/v1/results/${stored.results[0]!.request_id}/review`, payload: { status: 'false_call' } });
  assert.equal(review.statusCode, 200, review.body);
  assert.deepEqual((await lineOf(app, 'line-f')).reviews, { confirmed: 0, false_call: 1, missed: 0, unreviewed: 4 });
});

test('the registry survives a restart (cameras are kept in the store)', { timeout: 60_000 }, async (t) => {
  const tmp = tempDir('sightline-lines-');
  t.after(tmp.cleanup);
  const config = { ...FAST, camera_stale_after_ms: 60_000, camera_offline_after_ms: 120_000, store_url: `sqlite:${join(tmp.dir, 'results.db')}` };
  const first = await startApp(config);
  await detect(first, 'line-r', 'cam-1');
  await first.close(); // flushes what is pending
  const second = await startApp(config);
  t.after(() => second.close());
  const line = await lineOf(second, 'line-r');
  assert.equal(line.cameras[0]!.camera, 'cam-1');
  assert.equal(line.last_hour.ok + line.last_hour.ng, 1);
});

test('line routes validate their input', { timeout: 30_000 }, async (t) => {
  const app = await startApp(FAST);
  t.after(() => app.close());
  const unknown = await app.inject({ url: '/v1/lines/never-seen' });
  assert.equal(unknown.statusCode, 404);
  assert.equal(unknown.json().error.code, 'LINE_NOT_FOUND');
  const badName = await app.inject({ url: '/v1/lines/bad%20line' });
  assert.equal(badName.statusCode, 400);
  assert.equal(badName.json().error.code, 'INVALID_REQUEST');
  const extra = await app.inject({ url: '/v1/lines?x=1' });
  assert.equal(extra.statusCode, 400);
  const badCamera = await app.inject({ method: 'POST', url: '/v1/detect?camera=a%20b', headers: { 'content-type': 'image/jpeg' }, payload: IMAGE });
  assert.equal(badCamera.statusCode, 400);
  const empty = (await app.inject({ url: '/v1/lines' })).json() as LineList;
  assert.deepEqual(empty.lines, []);
});

test('two API processes on RabbitMQ + PostgreSQL report the same line state, and announce each change once', { timeout: 120_000 }, async (t) => {
  const amqp = new URL(AMQP_URL);
  const pgUrl = new URL(PG_URL);
  if (!requireOrSkip(t, await probeTcp(amqp.hostname, Number(amqp.port || 5672)), `RabbitMQ at ${amqp.host}`)) return;
  if (!requireOrSkip(t, await probeTcp(pgUrl.hostname, Number(pgUrl.port || 5432)), `PostgreSQL at ${pgUrl.host}`)) return;
  const defer = cleanups(t);
  const prefix = `sightline-test-${randomUUID().slice(0, 8)}`;
  defer(async () => {
    const c = await connect(AMQP_URL);
    try {
      await (await c.createChannel()).deleteExchange(`${prefix}.events`);
    } finally {
      await c.close().catch(() => {});
    }
  });
  const { url: storeUrl } = await freshDatabase(defer, 'sightline_lines');
  const config = { ...FAST, store_url: storeUrl, events_url: AMQP_URL, queue_prefix: prefix, worker: false };
  const a = await startApp(config);
  defer(() => a.close());
  const b = await startApp(config);
  defer(() => b.close());
  // Both subscribe through the broker: each sees every change once, whoever announced it.
  const seenA = await cameraEvents(a, 'line-d');
  const seenB = await cameraEvents(b, 'line-d');
  defer(seenA.stop);
  defer(seenB.stop);

  for (let i = 0; i < 3; i++) await detect(a, 'line-d', 'cam-1'); // frames reach A only
  await detect(b, 'line-d', 'cam-2'); // and B only
  await Promise.all([a.sightline.lines.tick(), b.sightline.lines.tick()]);
  const [fromA, fromB] = [await lineOf(a, 'line-d'), await lineOf(b, 'line-d')];
  const summary = (l: LineStatus) => l.cameras.map((c) => ({ camera: c.camera, state: c.state, last_frame_at: c.last_frame_at, last_hour: c.last_hour }));
  assert.deepEqual(summary(fromB), summary(fromA), 'both replicas answer the same line state');
  assert.deepEqual(
    fromA.cameras.map((c) => c.last_hour.ok + c.last_hour.ng),
    [3, 1],
  );

  await waitFor(() => seenA.events.filter((e) => e.state === 'offline').length >= 2, 'both cameras go offline', 10_000);
  await delay(500);
  const changes = (events: CameraStateEvent[]) => events.map((e) => `${e.camera}:${e.previous}->${e.state}`).sort();
  const expected = ['cam-1:null->online', 'cam-1:online->stale', 'cam-1:stale->offline', 'cam-2:null->online', 'cam-2:online->stale', 'cam-2:stale->offline'];
  assert.deepEqual(changes(seenA.events), expected, 'each change announced once, not once per replica');
  assert.deepEqual(changes(seenB.events), expected);
  assert.equal(await metricState(a, 'line-d', 'cam-2'), 'offline');
  assert.equal(await metricState(b, 'line-d', 'cam-1'), 'offline', 'a replica exports the state of a camera it never saw a frame of');
});
