import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { startApp } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { publish, RtspRelay } from './helpers/rtsp-server.js';
import { FAST_RECONNECT, sleep, until } from './helpers/sources.js';

const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;

/** The camera's encoder: a real ffmpeg that encodes a 10 fps test pattern in real time and publishes it over RTSP. */
function camera(relay: RtspRelay): ChildProcess {
  const encoder = publish(relay.url('live'), ['-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=10']);
  encoder.stderr?.resume();
  return encoder;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const closed = new Promise((r) => child.once('close', r));
  child.kill('SIGKILL');
  await closed;
}

test('a real RTSP stream (over TCP) at a set fps with a result per frame; cut, the camera goes stale then offline; back, the source recovers alone', async (t) => {
  if (!requireOrSkip(t, hasFfmpeg, 'ffmpeg (Debian package ffmpeg)')) return;
  let relay = await RtspRelay.listen();
  t.after(() => relay.close());
  let encoder = camera(relay);
  t.after(() => stop(encoder));
  await until(
    'the camera publishing',
    async () => relay.publishing,
    (p) => p,
    10_000,
  );

  const app = await startApp({
    sources: `rtsp=ffmpeg:${relay.url('live')},line=line-r,camera=cam-r,interval_ms=200`,
    ...FAST_RECONNECT,
  });
  t.after(() => app.close());
  const source = async () => (await app.inject({ method: 'GET', url: '/v1/sources' })).json().sources.find((s: { name: string }) => s.name === 'rtsp');
  const cameraState = async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/lines/line-r' });
    return res.statusCode === 200 ? (res.json().cameras as { camera: string; state: string }[]).find((c) => c.camera === 'cam-r')?.state : undefined;
  };
  const results = async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/results?line=line-r&camera=cam-r&limit=500' });
    assert.equal(res.statusCode, 200);
    return res.json().results as { request_id: string; verdict: string; source: string; camera: string }[];
  };

  // 5 fps from a 10 fps stream: about 10 frames in 2 s, each inspected and stored.
  const first = await until('RTSP frames', source, (s) => s.state === 'up' && s.frames.processed >= 3);
  await sleep(2000);
  const later = await source();
  const taken = later.frames.processed + later.frames.dropped - (first.frames.processed + first.frames.dropped);
  assert.ok(taken >= 7 && taken <= 13, `${taken} frames in 2 s at 5 fps`);
  assert.equal(later.frames.failed, 0);
  assert.equal(later.frames.error, 0);
  // A frame counts as processed once its result is stored: one stored result per processed frame
  // (a frame or two may be stored and not yet counted).
  const stored = await results();
  const after = await source();
  assert.ok(
    stored.length >= later.frames.processed && stored.length <= after.frames.processed + 2,
    `${stored.length} results for ${later.frames.processed}…${after.frames.processed} processed frames`,
  );
  assert.equal(new Set(stored.map((r) => r.request_id)).size, stored.length, 'a result per frame, none twice');
  for (const r of stored) {
    assert.equal(r.camera, 'cam-r');
    assert.equal(r.source, 'job');
    assert.ok(['ok', 'ng', 'check'].includes(r.verdict), r.verdict);
  }
  assert.equal(await until('online', cameraState, (s) => s === 'online'), 'online');
  // The source asked for RTP over TCP (interleaved), not UDP, and plays.
  const played = relay.setups.filter((tr) => !/mode=record/i.test(tr));
  assert.ok(played.length > 0 && played.every((tr) => /^RTP\/AVP\/TCP;unicast;interleaved=\d+-\d+/.test(tr)), played.join(' | '));
  assert.equal(relay.players, 1);

  // The camera's encoder dies: the server ends the session, ffmpeg exits, the source is down;
  // the camera turns stale, then offline. Meanwhile the source keeps trying (DESCRIBE: 404) with its backoff.
  await stop(encoder);
  assert.match((await until('down', source, (s) => s.state === 'down')).reason, /ffmpeg rtsp:\/\/127\.0\.0\.1:\d+\/live/);
  const states: (string | undefined)[] = [];
  await until(
    'offline',
    async () => {
      const state = await cameraState();
      if (states.at(-1) !== state) states.push(state);
      return state;
    },
    (s) => s === 'offline',
  );
  assert.deepEqual(states.slice(-2), ['stale', 'offline'], `camera states after the cut: ${states.join(' → ')}`);
  const describes = relay.requests.filter((m) => m === 'DESCRIBE').length;
  await sleep(1000);
  assert.ok(relay.requests.filter((m) => m === 'DESCRIBE').length > describes, 'the source keeps reconnecting');
  const down = await source();
  assert.equal(down.state, 'down');
  assert.ok(down.failures >= 2, `${down.failures} failures`);

  // The encoder is back: the source plays again by itself, the camera is online.
  encoder = camera(relay);
  const back = await until('up again', source, (s) => s.state === 'up' && s.frames.processed > after.frames.processed + 2);
  assert.equal(back.frames.failed, 0);
  assert.equal(await until('online again', cameraState, (s) => s === 'online'), 'online');

  // The whole camera is switched off (server and stream: connection refused), then on again at the same address.
  const port = relay.port;
  await stop(encoder);
  await relay.close();
  await until('down (server gone)', source, (s) => s.state === 'down');
  await sleep(1000);
  relay = await RtspRelay.listen(port);
  encoder = camera(relay);
  const processed = (await source()).frames.processed;
  await until('up after the camera restarted', source, (s) => s.state === 'up' && s.frames.processed > processed + 2);
  assert.equal(await until('online after the restart', cameraState, (s) => s === 'online'), 'online');
});
