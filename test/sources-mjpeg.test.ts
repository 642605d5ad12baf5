import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { mjpegBoundary, MultipartSplitter } from '../src/sources/index.js';
import { startApp } from './helpers/fixtures.js';
import { sleep, until } from './helpers/sources.js';

const LINE = 'line-m';
const BOUNDARY = 'sightlineframe';

const part = (jpeg: Buffer, withLength = true) =>
  Buffer.concat([
    Buffer.from(`--${BOUNDARY}\r\nContent-Type: image/jpeg\r\n${withLength ? `Content-Length: ${jpeg.length}\r\n` : ''}\r\n`),
    jpeg,
    Buffer.from('\r\n'),
  ]);

test('the multipart/x-mixed-replace splitter: parts cut anywhere, with and without Content-Length; limits', () => {
  assert.equal(mjpegBoundary('multipart/x-mixed-replace; boundary=--myboundary'), 'myboundary');
  assert.equal(mjpegBoundary('multipart/x-mixed-replace;boundary="a b"'), 'a b');
  assert.equal(mjpegBoundary('image/jpeg'), undefined);
  assert.equal(mjpegBoundary('multipart/x-mixed-replace'), undefined);
  // Bodies that hold the boundary's text and CRLFs: cut by Content-Length, never by a search.
  const bodies = [Buffer.from('\xff\xd8 one --sightlineframe \r\n\r\n inside \xff\xd9', 'latin1'), Buffer.from('two'), Buffer.alloc(3000, 0xab)];
  const stream = Buffer.concat([Buffer.from('preamble\r\n'), ...bodies.map((b) => part(b))]);
  for (const size of [1, 2, 7, 64, stream.length]) {
    const splitter = new MultipartSplitter(BOUNDARY, 1 << 20);
    const out: Buffer[] = [];
    for (let at = 0; at < stream.length; at += size) out.push(...splitter.push(stream.subarray(at, at + size)));
    assert.deepEqual(out, bodies, `chunks of ${size}`);
  }
  // Without Content-Length a part ends at the next delimiter (the last waits for one).
  const plain = [Buffer.from('alpha'), Buffer.from('beta')];
  const splitter = new MultipartSplitter(BOUNDARY, 1 << 20);
  assert.deepEqual(splitter.push(Buffer.concat([...plain.map((b) => part(b, false)), Buffer.from(`--${BOUNDARY}`)])), plain);
  assert.throws(() => new MultipartSplitter(BOUNDARY, 10).push(part(Buffer.alloc(11))), /over body_limit_bytes/);
});

/** An MJPEG camera: every open stream gets a frame every `periodMs`; `burst()` writes many at once. */
async function mjpegCamera(frame: Buffer, periodMs: number, port = 0) {
  const clients = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    if (req.url !== '/video') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': `multipart/x-mixed-replace; boundary=${BOUNDARY}`, 'cache-control': 'no-cache' });
    clients.add(res);
    res.on('close', () => clients.delete(res));
  });
  const timer = setInterval(() => {
    for (const res of clients) res.write(part(frame));
  }, periodMs);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    clients,
    burst(n: number) {
      for (const res of clients) res.write(Buffer.concat(Array.from({ length: n }, () => part(frame))));
    },
    async cut() {
      clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('an MJPEG stream: frames inspected, newest wins under a burst, the camera goes offline when cut and recovers by itself', async (t) => {
  const frame = await sharp({ create: { width: 128, height: 96, channels: 3, background: { r: 60, g: 90, b: 200 } } })
    .jpeg()
    .toBuffer();
  let cam = await mjpegCamera(frame, 100);
  t.after(() => cam.cut().catch(() => undefined));
  const app = await startApp({
    sources: `vid=mjpeg:http://127.0.0.1:${cam.port}/video,line=${LINE},camera=cam-m`,
    source_backoff_ms: 100,
    source_backoff_max_ms: 400,
    source_timeout_ms: 1000,
    camera_stale_after_ms: 600,
    camera_offline_after_ms: 1500,
    line_registry_flush_ms: 100,
    dependency_check_interval_ms: 100,
  });
  t.after(() => app.close());
  const source = async () => (await app.inject({ method: 'GET', url: '/v1/sources' })).json().sources[0];
  const cameraState = async () => {
    const res = await app.inject({ method: 'GET', url: `/v1/lines/${LINE}` });
    return res.statusCode === 200 ? (res.json().cameras as { camera: string; state: string }[]).find((c) => c.camera === 'cam-m')?.state : undefined;
  };

  const up = await until('frames', source, (s) => s.state === 'up' && s.frames.processed >= 5);
  assert.equal(up.kind, 'mjpeg');
  assert.equal(await until('online', cameraState, (s) => s === 'online'), 'online');

  // 30 frames at once, faster than any model: one in inspection, one waiting, the rest replaced and counted.
  const before = await until('idle', source, (s) => s.frames.processed > 0);
  cam.burst(30);
  const after = await until('the burst', source, (s) => s.frames.dropped - before.frames.dropped >= 20);
  assert.ok(after.frames.dropped - before.frames.dropped <= 30);
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /sightline_frames_dropped_total\{line="line-m",camera="cam-m",reason="superseded"\} \d+/);
  assert.match(metrics, /sightline_source_frames_total\{source="vid",outcome="dropped"\} [1-9]\d*/);

  // The stream is cut: down, then offline; back on the same port, up and online without anyone's help.
  const port = cam.port;
  await cam.cut();
  assert.match((await until('down', source, (s) => s.state === 'down')).reason, /video/);
  assert.equal(await until('offline', cameraState, (s) => s === 'offline'), 'offline');
  cam = await mjpegCamera(frame, 100, port);
  await until('up again', source, (s) => s.state === 'up');
  assert.equal(await until('online again', cameraState, (s) => s === 'online'), 'online');
  assert.match((await app.inject({ method: 'GET', url: '/metrics' })).body, /sightline_source_up\{source="vid"\} 1/);
});

test('four MJPEG cameras at once: each keeps its fps while the model keeps up; flooded, each drops (counted), none starves, pushed requests still pass', async (t) => {
  const frame = await sharp({ create: { width: 128, height: 96, channels: 3, background: { r: 200, g: 120, b: 40 } } })
    .jpeg()
    .toBuffer();
  const cams = await Promise.all([0, 1, 2, 3].map(() => mjpegCamera(frame, 100)));
  for (const cam of cams) t.after(() => cam.cut().catch(() => undefined));
  const app = await startApp({
    sources: cams.map((cam, i) => `cam${i}=mjpeg:http://127.0.0.1:${cam.port}/video,line=line-4,camera=c${i}`).join('; '),
    source_timeout_ms: 2000,
  });
  t.after(() => app.close());
  type Frames = { processed: number; dropped: number; failed: number; error: number };
  const frames = async () =>
    new Map(
      ((await app.inject({ method: 'GET', url: '/v1/sources' })).json().sources as { name: string; state: string; frames: Frames }[]).map((s) => [s.name, s]),
    );
  await until('all four up', frames, (all) => [...all.values()].every((s) => s.state === 'up' && s.frames.processed >= 3));

  // 4 × 10 fps is far below what the built-in model does: every frame is inspected.
  const windowMs = 3000;
  let before = await frames();
  await sleep(windowMs);
  let after = await frames();
  for (const [name, s] of after) {
    const processed = s.frames.processed - before.get(name)!.frames.processed;
    const dropped = s.frames.dropped - before.get(name)!.frames.dropped;
    assert.ok(processed >= 22 && processed <= 38, `${name}: ${processed} frames in 3 s at 10 fps`);
    assert.ok(dropped <= 2, `${name}: ${dropped} dropped while the model keeps up`);
    assert.equal(s.frames.failed + s.frames.error, 0);
  }

  // Flooded: 4 × 200 fps on top, far more than the model can do. Newest wins per camera:
  // each drops most frames (counted), each still gets frames inspected, and a pushed
  // request (normal priority, the sources' frames are low) is still answered.
  const floods = cams.map((cam) => setInterval(() => cam.burst(4), 20));
  t.after(() => floods.forEach(clearInterval));
  before = await frames();
  const pushed = [];
  for (let i = 0; i < 5; i++) {
    await sleep(windowMs / 5);
    pushed.push((await app.inject({ method: 'POST', url: '/v1/detect?line=line-push', payload: frame, headers: { 'content-type': 'image/jpeg' } })).statusCode);
  }
  after = await frames();
  floods.forEach(clearInterval);
  assert.deepEqual(pushed, [200, 200, 200, 200, 200]);
  for (const [name, s] of after) {
    const processed = s.frames.processed - before.get(name)!.frames.processed;
    const dropped = s.frames.dropped - before.get(name)!.frames.dropped;
    assert.equal(s.state, 'up', name);
    assert.ok(processed >= 10, `${name}: only ${processed} frames inspected while flooded`);
    assert.ok(dropped > processed, `${name}: ${dropped} dropped vs ${processed} inspected while flooded`);
  }
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  for (let i = 0; i < 4; i++)
    assert.match(metrics, new RegExp(`sightline_frames_dropped_total\\{line="line-4",camera="c${i}",reason="superseded"\\} [1-9]\\d*`));
});
