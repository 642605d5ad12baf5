import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { ffmpegArgs, JpegSplitter } from '../src/sources/index.js';
import { startApp, tempDir } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { FAST_RECONNECT, sleep, until } from './helpers/sources.js';

const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;

test('the JPEG splitter cuts concatenated JPEGs at any chunk size; ffmpeg arguments per target', async () => {
  const jpegs = await Promise.all(
    [10, 120, 250].map((v) =>
      sharp({ create: { width: 40, height: 30, channels: 3, background: { r: v, g: 255 - v, b: v } } })
        .jpeg()
        .toBuffer(),
    ),
  );
  const stream = Buffer.concat(jpegs);
  for (const size of [1, 3, 100, stream.length]) {
    const splitter = new JpegSplitter(1 << 20);
    const out: Buffer[] = [];
    for (let at = 0; at < stream.length; at += size) out.push(...splitter.push(stream.subarray(at, at + size)));
    assert.deepEqual(out, jpegs, `chunks of ${size}`);
  }
  assert.throws(() => new JpegSplitter(10).push(jpegs[0]!.subarray(0, 20)), /over body_limit_bytes/);
  assert.deepEqual(ffmpegArgs('rtsp://cam/1', 5).slice(4, 6), ['-rtsp_transport', 'tcp']);
  assert.ok(ffmpegArgs('/srv/clip.mp4', 5).includes('-re'));
  assert.ok(!ffmpegArgs('http://cam/video.ts', 5).includes('-re'));
  assert.ok(ffmpegArgs('http://cam/video.ts', 2.5).includes('fps=2.5'));
});

/** A live HTTP video camera: each GET gets an MPEG-TS stream that a real ffmpeg encodes in real time. */
async function videoCamera(port = 0) {
  const encoders = new Set<ChildProcess>();
  const server: Server = createServer((req, res) => {
    if (req.url !== '/live.ts') return void res.writeHead(404).end();
    const encoder = spawn(
      'ffmpeg',
      ['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc=size=160x120:rate=10', '-c:v', 'mpeg2video', '-f', 'mpegts', 'pipe:1'],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    encoders.add(encoder);
    encoder.on('close', () => encoders.delete(encoder));
    res.writeHead(200, { 'content-type': 'video/mp2t' });
    encoder.stdout.pipe(res);
    res.on('close', () => encoder.kill('SIGKILL'));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    async cut() {
      server.closeAllConnections();
      for (const e of encoders) e.kill('SIGKILL');
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('HTTP video through ffmpeg at a set fps, a video file; a cut stream reconnects by itself', async (t) => {
  if (!requireOrSkip(t, hasFfmpeg, 'ffmpeg (Debian package ffmpeg)')) return;
  const { dir, cleanup } = tempDir('sightline-ffmpeg-');
  t.after(cleanup);
  const clip = join(dir, 'clip.ts');
  const made = spawnSync('ffmpeg', [
    '-hide_banner',
    '-loglevel',
    'error',
    '-f',
    'lavfi',
    '-i',
    'testsrc=size=160x120:rate=10',
    '-t',
    '2',
    '-c:v',
    'mpeg2video',
    clip,
  ]);
  assert.equal(made.status, 0, String(made.stderr));
  let cam = await videoCamera();
  t.after(() => cam.cut().catch(() => undefined));
  const app = await startApp({
    sources: `live=ffmpeg:http://127.0.0.1:${cam.port}/live.ts,line=line-f,camera=cam-f,interval_ms=200; clip=ffmpeg:${clip},line=line-f,camera=clip,interval_ms=250`,
    ...FAST_RECONNECT,
  });
  t.after(() => app.close());
  const source = async (name: string) =>
    (await app.inject({ method: 'GET', url: '/v1/sources' })).json().sources.find((s: { name: string }) => s.name === name);
  const cameraState = async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/lines/line-f' });
    return res.statusCode === 200 ? (res.json().cameras as { camera: string; state: string }[]).find((c) => c.camera === 'cam-f')?.state : undefined;
  };

  // 5 fps from a 10 fps stream: about 10 frames in 2 s.
  const first = await until(
    'live frames',
    () => source('live'),
    (s) => s.state === 'up' && s.frames.processed >= 3,
  );
  await sleep(2000);
  const later = await source('live');
  const taken = later.frames.processed + later.frames.dropped - (first.frames.processed + first.frames.dropped);
  assert.ok(taken >= 7 && taken <= 13, `${taken} frames in 2 s at 5 fps`);
  assert.equal(await until('online', cameraState, (s) => s === 'online'), 'online');
  // The file plays at its own speed (-re); when it ends the source is down a moment and plays it again.
  await until(
    'clip frames',
    () => source('clip'),
    (s) => s.frames.processed >= 4,
  );

  // The camera goes away: ffmpeg ends, the source is down and the camera offline; back, it recovers alone.
  const port = cam.port;
  await cam.cut();
  assert.match(
    (
      await until(
        'down',
        () => source('live'),
        (s) => s.state === 'down',
      )
    ).reason,
    /ffmpeg/,
  );
  assert.equal(await until('offline', cameraState, (s) => s === 'offline'), 'offline');
  cam = await videoCamera(port);
  await until(
    'up again',
    () => source('live'),
    (s) => s.state === 'up',
  );
  assert.equal(await until('online again', cameraState, (s) => s === 'online'), 'online');
});
