import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { startApp } from './helpers/fixtures.js';
import { sleep, until } from './helpers/sources.js';

const LINE = 'line-s';
const INTERVAL_MS = 200;

/** A camera's snapshot endpoint: a real HTTP server answering each GET with a JPEG, recording when it was asked. */
async function camera(image: Buffer, port = 0): Promise<{ server: Server; port: number; hits: number[] }> {
  const hits: number[] = [];
  const server = createServer((req, res) => {
    hits.push(Date.now());
    if (req.url !== '/snap.jpg') return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': image.length }).end(image);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, hits };
}

async function cut(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

interface Camera {
  camera: string;
  state: string;
}

test('a snapshot URL is polled at its interval; cut, the camera turns stale and offline and the source down; it recovers by itself', async (t) => {
  const image = await sharp({ create: { width: 128, height: 96, channels: 3, background: { r: 120, g: 120, b: 120 } } })
    .jpeg()
    .toBuffer();
  let cam = await camera(image);
  t.after(() => cut(cam.server).catch(() => undefined));
  const app: FastifyInstance = await startApp({
    sources: `snap=snapshot:http://127.0.0.1:${cam.port}/snap.jpg,line=${LINE},camera=cam-s,interval_ms=${INTERVAL_MS}`,
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
    return res.statusCode === 200 ? (res.json().cameras as Camera[]).find((c) => c.camera === 'cam-s')?.state : undefined;
  };
  const readyCheck = async () =>
    ((await app.inject({ method: 'GET', url: '/readyz' })).json().checks as { name: string; status: string }[]).find((c) => c.name === 'source:snap')?.status;
  const metric = async (pattern: RegExp) => Number(pattern.exec((await app.inject({ method: 'GET', url: '/metrics' })).body)?.[1] ?? Number.NaN);

  // Polled at the set interval: ~10 fetches in 2 s, about 200 ms apart.
  await until('the first frame', source, (s) => s.frames.processed > 0);
  const from = cam.hits.length;
  await sleep(2000);
  const gaps = cam.hits
    .slice(from)
    .map((at, i, all) => (i === 0 ? Number.NaN : at - all[i - 1]!))
    .filter((g) => !Number.isNaN(g));
  gaps.sort((a, b) => a - b);
  const median = gaps[Math.floor(gaps.length / 2)]!;
  assert.ok(gaps.length >= 6 && gaps.length <= 11, `${gaps.length} fetches in 2 s`);
  // A fetch starts every interval (fixed rate): the gaps sit at the interval, give or take the fetch times' jitter.
  assert.ok(median >= INTERVAL_MS * 0.9 && median < INTERVAL_MS * 1.5, `median gap ${median} ms`);
  assert.ok(gaps[0]! >= INTERVAL_MS / 2, `shortest gap ${gaps[0]} ms`);
  assert.equal(await until('online', cameraState, (s) => s === 'online'), 'online');
  assert.equal(await until('the check passes', readyCheck, (s) => s === 'pass'), 'pass');
  assert.equal(await metric(/sightline_source_up\{source="snap"\} (\d+)/), 1);
  assert.ok((await metric(/sightline_source_frames_total\{source="snap",outcome="processed"\} (\d+)/)) >= 6);
  assert.ok((await metric(/sightline_frames_processed_total\{line="line-s",camera="cam-s"\} (\d+)/)) >= 6);

  // The camera goes away: the source is down (API, gauge, /readyz), the camera stale, then offline.
  await cut(cam.server);
  const down = await until('down', source, (s) => s.state === 'down');
  assert.match(down.reason, /snap\.jpg/);
  assert.equal(await metric(/sightline_source_up\{source="snap"\} (\d+)/), 0);
  assert.equal(await until('the check fails', readyCheck, (s) => s === 'fail'), 'fail');
  assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200, 'still ready: a source is not critical');
  assert.equal((await until('stale', cameraState, (s) => s === 'stale' || s === 'offline')) !== undefined, true);
  assert.equal(await until('offline', cameraState, (s) => s === 'offline'), 'offline');
  // Backoff: retries while down are spaced out, never a storm (at most 400 ms apart at the cap, with jitter).
  const failuresBefore = (await source()).failures;
  await sleep(1200);
  const retried = (await source()).failures - failuresBefore;
  assert.ok(retried >= 1 && retried <= 6, `${retried} retries in 1.2 s`);

  // Back on the same port: no restart, no API call; the source and the camera recover by themselves.
  cam = await camera(image, cam.port);
  await until('up again', source, (s) => s.state === 'up');
  assert.equal(await until('online again', cameraState, (s) => s === 'online'), 'online');
  assert.equal(await until('the check passes again', readyCheck, (s) => s === 'pass'), 'pass');
  assert.equal(await metric(/sightline_source_up\{source="snap"\} (\d+)/), 1);
});

test('a camera that never answers is down on its own; other sources and pushed requests go on', async (t) => {
  const image = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 20, g: 40, b: 60 } } })
    .jpeg()
    .toBuffer();
  const good = await camera(image);
  t.after(() => cut(good.server).catch(() => undefined));
  // Accepts the connection and the request, never answers.
  const hanging = createServer(() => undefined);
  await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
  t.after(() => cut(hanging).catch(() => undefined));
  const app = await startApp({
    sources: [
      `good=snapshot:http://127.0.0.1:${good.port}/snap.jpg,line=line-g,interval_ms=150`,
      `hung=snapshot:http://127.0.0.1:${(hanging.address() as AddressInfo).port}/snap.jpg,line=line-g,interval_ms=150`,
    ].join('; '),
    source_timeout_ms: 500,
    source_backoff_ms: 200,
    source_backoff_max_ms: 1000,
  });
  t.after(() => app.close());
  type Listed = { name: string; state: string; reason: string | null; frames: { processed: number } };
  const byName = async (): Promise<Record<string, Listed>> =>
    Object.fromEntries(((await app.inject({ method: 'GET', url: '/v1/sources' })).json().sources as Listed[]).map((s) => [s.name, s]));
  const sources = await until('the hanging one down', byName, (s) => s.hung?.state === 'down' && (s.good?.frames.processed ?? 0) > 0);
  assert.match(String(sources.hung!.reason), /aborted|timeout|no answer/i);
  const before = sources.good!.frames.processed;
  // Pushed traffic is served meanwhile.
  const res = await app.inject({ method: 'POST', url: '/v1/detect?line=line-p', headers: { 'content-type': 'image/jpeg' }, payload: image });
  assert.equal(res.statusCode, 200, res.body);
  await sleep(1500);
  const after = await byName();
  assert.ok(after.good!.frames.processed - before >= 5, `${after.good!.frames.processed - before} frames of the good camera in 1.5 s`);
  assert.equal(after.good!.state, 'up');
  assert.equal(after.hung!.state, 'down');
});
