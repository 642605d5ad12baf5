import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { LogCapture, solidImage } from './helpers/fixtures.js';
import { counter, detect, fakeResult, folderBytes, isBackground, isRed, noiseJpeg, pixelAt, startSnapshotApp, waitForResult } from './snapshots-helpers.js';

const DAY_MS = 24 * 60 * 60 * 1000;

test('every NG image is kept and served as received; an OK one not sampled is 404 SNAPSHOT_NOT_FOUND, an unknown result 404 RESULT_NOT_FOUND', async (t) => {
  const s = await startSnapshotApp({ snapshot_ok_sample_rate: 0 });
  t.after(() => s.cleanup());
  const { app } = s;
  const jpeg = await solidImage(320, 200, 'jpeg');
  const png = await solidImage(300, 200, 'png');

  for (let i = 0; i < 10; i++) assert.equal((await detect(app, `ng-${i}`, jpeg, 'line=press-1')).json().verdict, 'ng');
  assert.equal((await detect(app, 'ng-png', png, 'line=press-1', 'image/png')).json().verdict, 'ng');
  const ok = await detect(app, 'ok-1', jpeg, 'line=press-1&conf=0.95');
  assert.equal(ok.json().verdict, 'ok');
  // A job's result is kept too: the job runner calls the same observers.
  const job = await app.inject({ method: 'POST', url: '/v1/jobs?line=press-2', headers: { 'content-type': 'image/jpeg' }, payload: jpeg });
  assert.equal(job.statusCode, 202, job.body);
  const jobId = job.json().job_id as string;
  for (let i = 0; i < 200 && (await app.inject(`/v1/jobs/${jobId}`)).json().state !== 'done'; i++) await new Promise((r) => setTimeout(r, 20));
  await waitForResult(app, 'ok-1');
  await app.sightline.snapshots.idle();

  for (let i = 0; i < 10; i++) {
    const res = await app.inject(`/v1/results/ng-${i}/image`);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['content-type'], 'image/jpeg');
    assert.ok(res.rawPayload.equals(jpeg), 'the original bytes');
  }
  const fromPng = await app.inject('/v1/results/ng-png/image');
  assert.equal(fromPng.headers['content-type'], 'image/png');
  assert.ok(fromPng.rawPayload.equals(png));
  const fromJob = await app.inject(`/v1/results/${jobId}/image`);
  assert.equal(fromJob.statusCode, 200, 'a job result of the in-process worker');
  assert.equal((await app.sightline.snapshots.store.info(jobId))?.source, 'job');

  assert.equal((await app.inject({ method: 'HEAD', url: '/v1/results/ng-0/image' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'HEAD', url: '/v1/results/ok-1/image' })).statusCode, 404);
  const notKept = await app.inject('/v1/results/ok-1/image');
  assert.equal(notKept.statusCode, 404);
  assert.equal(notKept.json().error.code, 'SNAPSHOT_NOT_FOUND');
  const unknown = await app.inject('/v1/results/nobody/image');
  assert.equal(unknown.statusCode, 404);
  assert.equal(unknown.json().error.code, 'RESULT_NOT_FOUND');

  assert.equal(await counter(app, 'sightline_snapshots_written_total'), 12);
  assert.equal(await counter(app, 'sightline_snapshots_skipped_total', { reason: 'sampled_out' }), 1);
  const metrics = (await app.inject('/metrics')).body;
  // Every reason is exported from the start.
  for (const reason of ['sampled_out', 'queue_full', 'disk_full', 'write_failed', 'too_large', 'disabled']) {
    assert.match(metrics, new RegExp(`sightline_snapshots_skipped_total\\{reason="${reason}"\\} \\d+`));
  }
  assert.match(metrics, /sightline_snapshots_pruned_total\{reason="age"\} 0/);
  assert.match(metrics, /sightline_snapshots_pruned_total\{reason="bytes"\} 0/);
  const kept = Number(/sightline_snapshot_bytes (\d+)/.exec(metrics)?.[1]);
  assert.equal(kept, 10 * jpeg.length + png.length + jpeg.length);
});

test('bad input is refused with INVALID_REQUEST', async (t) => {
  const s = await startSnapshotApp();
  t.after(() => s.cleanup());
  for (const url of [
    '/v1/results/x/image?w=8',
    '/v1/results/x/image?w=5000',
    '/v1/results/x/image?w=abc',
    '/v1/results/x/image?boxes=yes',
    '/v1/results/x/image?other=1',
    '/v1/results/a%20b/image',
    '/v1/lines/-bad/latest.jpg',
    '/v1/lines/l1/latest.jpg?camera=a%2Fb',
    '/v1/lines/l1/latest.jpg?w=1',
  ]) {
    const res = await s.app.inject(url);
    assert.equal(res.statusCode, 400, url);
    assert.equal(res.json().error.code, 'INVALID_REQUEST', url);
  }
});

test('OK images are sampled at snapshot_ok_sample_rate (within 5 sigma of the binomial), every NG one is kept', async (t) => {
  const rate = 0.1;
  const n = 4000;
  const s = await startSnapshotApp({ snapshot_ok_sample_rate: rate, snapshot_max_pending: 10_000 });
  t.after(() => s.cleanup());
  const { app } = s;
  const image = await noiseJpeg(16, 16, 1);
  const at = Date.now();
  for (let i = 0; i < n; i++) app.sightline.snapshots.onInspected({ source: 'stream', result: fakeResult(`ok-${i}`, 'ok'), image, at: at + i });
  for (let i = 0; i < 200; i++) app.sightline.snapshots.onInspected({ source: 'stream', result: fakeResult(`ng-${i}`, 'ng'), image, at: at + n + i });
  await app.sightline.snapshots.idle();

  const sampledOut = await counter(app, 'sightline_snapshots_skipped_total', { reason: 'sampled_out' });
  const keptOk = n - sampledOut;
  const sigma = Math.sqrt(n * rate * (1 - rate));
  assert.ok(Math.abs(keptOk - n * rate) <= 5 * sigma, `${keptOk} OK kept of ${n} at rate ${rate} (expected ${n * rate} ± ${5 * sigma})`);
  assert.ok(keptOk > 0);
  assert.equal(await counter(app, 'sightline_snapshots_written_total'), keptOk + 200, 'every kept one written, every NG one kept');
  for (let i = 0; i < 200; i += 20) assert.equal((await app.inject(`/v1/results/ng-${i}/image`)).statusCode, 200);
});

test('the byte cap holds at every moment under a burst of 2,000 results; the oldest go first', async (t) => {
  const cap = 120_000;
  const s = await startSnapshotApp({ snapshot_max_bytes: cap, snapshot_max_pending: 5000 });
  t.after(() => s.cleanup());
  const { app } = s;
  const { store } = app.sightline.snapshots;
  const images = await Promise.all([0, 1, 2, 3, 4].map((seed) => noiseJpeg(24 + seed * 4, 24, seed)));
  const at = Date.now() - 60_000;
  const id = (i: number) => `burst-${String(i).padStart(4, '0')}`;
  for (let i = 0; i < 2000; i++) app.sightline.snapshots.onInspected({ source: 'stream', result: fakeResult(id(i), 'ng'), image: images[i % 5]!, at: at + i });

  // Watch the disk and the index while the writer works through the burst.
  let most = 0;
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      most = Math.max(most, folderBytes(join(s.snapshotsDir, 'images')), await store.liveBytes());
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  await app.sightline.snapshots.idle();
  watching = false;
  await watcher;

  assert.equal(await counter(app, 'sightline_snapshots_written_total'), 2000);
  assert.ok(most <= cap, `at most ${most} bytes kept while writing (cap ${cap})`);
  const onDisk = folderBytes(join(s.snapshotsDir, 'images'));
  const indexed = await store.liveBytes();
  assert.ok(onDisk <= cap && indexed <= cap, `${onDisk} bytes on disk, ${indexed} indexed`);
  assert.equal(onDisk, indexed, 'the index counts exactly the files');
  // Nearly full: pruning takes only what the next image needs.
  assert.ok(indexed > cap - 2 * Math.max(...images.map((i) => i.length)), `${indexed} bytes kept of ${cap}`);

  const states = await Promise.all(Array.from({ length: 2000 }, (_, i) => store.info(id(i))));
  const firstKept = states.findIndex((r) => r?.pruned_at === null);
  assert.ok(firstKept > 0, 'some were pruned');
  assert.ok(
    states.every((r, i) => (i < firstKept ? r?.prune_reason === 'bytes' : r?.pruned_at === null)),
    'everything older than the oldest kept one was pruned, nothing newer',
  );
  assert.equal(await counter(app, 'sightline_snapshots_pruned_total', { reason: 'bytes' }), firstKept);
  assert.equal((await app.inject(`/v1/results/${id(1999)}/image`)).statusCode, 200);
  const gone = await app.inject(`/v1/results/${id(0)}/image`);
  assert.equal(gone.statusCode, 410);
  assert.equal(gone.json().error.code, 'SNAPSHOT_GONE');
});

test('pruning by bytes and by age never deletes a result: its image is then 410 SNAPSHOT_GONE', async (t) => {
  const image = await solidImage(640, 480, 'jpeg');
  // Room for three images.
  const s = await startSnapshotApp({ snapshot_max_bytes: 3 * image.length + 100, snapshot_retention_days: 14 });
  t.after(() => s.cleanup());
  const { app } = s;
  const ids = ['p-0', 'p-1', 'p-2', 'p-3', 'p-4'];
  for (const id of ids) {
    assert.equal((await detect(app, id, image, 'line=prune')).statusCode, 200);
    await app.sightline.snapshots.idle(); // one at a time: created_at gives the order
  }
  for (const id of ids) await waitForResult(app, id);
  const statuses = async () => Promise.all(ids.map(async (id) => (await app.inject(`/v1/results/${id}/image`)).statusCode));
  assert.deepEqual(await statuses(), [410, 410, 200, 200, 200]);
  const gone = (await app.inject('/v1/results/p-0/image')).json();
  assert.equal(gone.error.code, 'SNAPSHOT_GONE');
  assert.match(gone.error.message, /snapshot_max_bytes/);

  // Fifteen days later, the retention of 14 days takes the rest.
  await app.sightline.snapshots.prune(Date.now() + 15 * DAY_MS);
  assert.deepEqual(await statuses(), [410, 410, 410, 410, 410]);
  assert.match((await app.inject('/v1/results/p-4/image')).json().error.message, /snapshot_retention_days/);
  assert.equal(await counter(app, 'sightline_snapshots_pruned_total', { reason: 'age' }), 3);
  assert.equal(folderBytes(join(s.snapshotsDir, 'images')), 0, 'no file left');

  for (const id of ids) {
    const result = await app.inject(`/v1/results/${id}`);
    assert.equal(result.statusCode, 200, `result ${id} is still there`);
    assert.equal(result.json().verdict, 'ng');
  }
  assert.equal((await app.inject('/v1/results?line=prune')).json().results.length, 5);
});

test('an unwritable snapshot directory leaves detection working: skipped, counted, logged once', async (t) => {
  const logs = new LogCapture();
  const s = await startSnapshotApp({}, { logs });
  t.after(() => s.cleanup());
  // A file where the directory should be: no process, root or not, can write under it.
  const blocked = join(s.dir, 'blocked');
  writeFileSync(blocked, 'not a directory');
  await s.close();
  const broken = await startSnapshotApp({ snapshots_dir: join(blocked, 'snapshots') }, { logs });
  t.after(() => broken.cleanup());
  const { app } = broken;
  const image = await solidImage(320, 200, 'jpeg');
  for (let i = 0; i < 6; i++) {
    const res = await detect(app, `ro-${i}`, image, 'line=ro');
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().verdict, 'ng');
    await app.sightline.snapshots.idle();
  }
  await waitForResult(app, 'ro-5');
  assert.equal(await counter(app, 'sightline_snapshots_skipped_total', { reason: 'write_failed' }), 6, 'every image counted');
  assert.equal(await counter(app, 'sightline_snapshots_written_total'), 0);
  const failures = logs.lines.filter((l) => l.event === 'snapshot_write_failed');
  assert.equal(failures.length, 1, 'one log line per episode');
  assert.equal(failures[0]?.level, 'warn');
  assert.equal((await app.inject('/v1/results/ro-0/image')).json().error.code, 'SNAPSHOT_NOT_FOUND');
  assert.equal((await app.inject('/v1/results/ro-0')).statusCode, 200);
  assert.equal((await app.inject('/livez')).statusCode, 200);
});

test('a full disk stops snapshots, not detection (tmpfs; needs root)', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const s = await startSnapshotApp({}, {});
  await s.close();
  const mountPoint = join(s.dir, 'small');
  spawnSync('mkdir', ['-p', mountPoint]);
  const mounted = process.getuid?.() === 0 && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mountPoint]).status === 0;
  if (!mounted) {
    await s.cleanup();
    t.skip('mounting a small tmpfs needs root');
    return;
  }
  const logs = new LogCapture();
  const full = await startSnapshotApp({ snapshots_dir: mountPoint }, { logs });
  t.after(async () => {
    await full.cleanup();
    spawnSync('umount', ['-l', mountPoint]);
    await s.cleanup();
  });
  const { app } = full;
  // Noise does not compress: each PNG is about 120 KB, so the third does not fit in 256 KB.
  const raw = Buffer.alloc(200 * 200 * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7919 + (i >> 3) * 104729) % 251;
  const image = await sharp(raw, { raw: { width: 200, height: 200, channels: 3 } })
    .png({ compressionLevel: 0 })
    .toBuffer();
  for (let i = 0; i < 4; i++) {
    const res = await detect(app, `full-${i}`, image, 'line=full', 'image/png');
    assert.equal(res.statusCode, 200, res.body);
    await app.sightline.snapshots.idle();
  }
  assert.ok((await counter(app, 'sightline_snapshots_written_total')) >= 1);
  assert.ok((await counter(app, 'sightline_snapshots_skipped_total', { reason: 'disk_full' })) >= 1);
  const failures = logs.lines.filter((l) => l.event === 'snapshot_write_failed');
  assert.equal(failures.length, 1);
  assert.equal(failures[0]?.reason, 'disk_full');
  assert.equal(failures[0]?.code, 'ENOSPC');
  assert.equal((await app.inject('/v1/results/full-0/image')).statusCode, 200);
  assert.equal((await app.inject('/v1/results/full-3/image')).json().error.code, 'SNAPSHOT_NOT_FOUND');
  // The in-process alert reads the same counter.
  const alerts = (await app.inject('/v1/alerts')).json() as { alerts: { name: string; state: string }[] };
  assert.ok(alerts.alerts.some((a) => a.name === 'SightlineSnapshotsFailing'));
});

test('?boxes=1 draws the boxes where the detections are on a non-square image; ?w= scales image and boxes', async (t) => {
  const s = await startSnapshotApp();
  t.after(() => s.cleanup());
  const { app } = s;
  const image = await solidImage(1280, 720, 'jpeg');
  const result = (await detect(app, 'boxes-1', image, 'line=draw&max_det=1')).json();
  assert.equal(result.detections.length, 1);
  const { x1, y1, x2, y2 } = result.detections[0].box;
  // The model's box (cx 320, cy 320, 100×50 in the 640 letterbox) in the 1280×720 original: scale 2, 140 px of padding above.
  assert.deepEqual([x1, y1, x2, y2], [540, 310, 740, 410]);
  await app.sightline.snapshots.idle();

  const drawn = await app.inject('/v1/results/boxes-1/image?boxes=1');
  assert.equal(drawn.statusCode, 200, drawn.body);
  assert.equal(drawn.headers['content-type'], 'image/jpeg');
  const meta = await sharp(drawn.rawPayload).metadata();
  assert.deepEqual([meta.width, meta.height], [1280, 720]);
  const midY = (y1 + y2) / 2;
  const midX = (x1 + x2) / 2;
  for (const [x, y] of [
    [x1, midY],
    [x2, midY],
    [midX, y2],
    [x2 - 30, y1],
  ] as const) {
    assert.ok(isRed(await pixelAt(drawn.rawPayload, x, y)), `NG box edge at ${x},${y}: ${await pixelAt(drawn.rawPayload, x, y)}`);
  }
  for (const [x, y] of [
    [midX, midY], // inside: not filled
    [x1 - 20, midY],
    [x2 + 20, midY],
    [midX, y2 + 20],
    [200, 600],
  ] as const) {
    assert.ok(isBackground(await pixelAt(drawn.rawPayload, x, y)), `no box at ${x},${y}: ${await pixelAt(drawn.rawPayload, x, y)}`);
  }

  const thumb = await app.inject('/v1/results/boxes-1/image?boxes=1&w=640');
  const thumbMeta = await sharp(thumb.rawPayload).metadata();
  assert.deepEqual([thumbMeta.width, thumbMeta.height], [640, 360]);
  assert.ok(isRed(await pixelAt(thumb.rawPayload, x1 / 2, midY / 2)));
  assert.ok(isBackground(await pixelAt(thumb.rawPayload, midX / 2, midY / 2)));
  assert.ok(isBackground(await pixelAt(thumb.rawPayload, x1 / 2 - 15, midY / 2)));

  const plain = await app.inject('/v1/results/boxes-1/image?w=320');
  assert.equal(plain.headers['content-type'], 'image/jpeg');
  const plainMeta = await sharp(plain.rawPayload).metadata();
  assert.deepEqual([plainMeta.width, plainMeta.height], [320, 180]);
  assert.ok(isBackground(await pixelAt(plain.rawPayload, x1 / 4, midY / 4)), 'no boxes unless asked');
});

test('latest.jpg: the newest frame per line and camera, as JPEG, not cached, written at most once per interval', async (t) => {
  // A long interval: the first frame is written at once, later ones wait (and the newest is written at close).
  const s = await startSnapshotApp({ snapshot_latest_interval_ms: 3_600_000, snapshot_ok_sample_rate: 0 });
  t.after(() => s.cleanup());
  const { app } = s;
  assert.equal((await app.inject('/v1/lines/cam-line/latest.jpg')).json().error.code, 'LATEST_FRAME_NOT_FOUND');
  const png = await solidImage(400, 300, 'png');
  for (const id of ['f-1', 'f-2', 'f-3']) assert.equal((await detect(app, id, png, 'line=cam-line&camera=c1', 'image/png')).statusCode, 200);
  await app.sightline.snapshots.idle();

  const latest = await app.inject('/v1/lines/cam-line/latest.jpg');
  assert.equal(latest.statusCode, 200, latest.body);
  assert.equal(latest.headers['content-type'], 'image/jpeg');
  assert.equal(latest.headers['cache-control'], 'no-store');
  assert.equal(latest.headers['x-result-id'], 'f-1', 'later frames wait for the interval');
  const meta = await sharp(latest.rawPayload).metadata();
  assert.equal(meta.format, 'jpeg');
  assert.deepEqual([meta.width, meta.height], [400, 300]);
  assert.equal((await app.inject('/v1/lines/cam-line/latest.jpg?camera=c1')).headers['x-result-id'], 'f-1');
  assert.equal((await app.inject('/v1/lines/cam-line/latest.jpg?camera=c9')).json().error.code, 'LATEST_FRAME_NOT_FOUND');
  assert.equal((await app.inject('/v1/lines/other/latest.jpg')).statusCode, 404);

  // Another camera of the line sends later: the line's latest is its frame.
  assert.equal((await detect(app, 'g-1', png, 'line=cam-line&camera=c2', 'image/png')).statusCode, 200);
  await app.sightline.snapshots.idle();
  assert.equal((await app.inject('/v1/lines/cam-line/latest.jpg')).headers['x-result-id'], 'g-1');
  assert.equal((await app.inject('/v1/lines/cam-line/latest.jpg?camera=c1')).headers['x-result-id'], 'f-1');

  const boxed = await app.inject('/v1/lines/cam-line/latest.jpg?camera=c1&boxes=1&w=200');
  assert.equal(boxed.statusCode, 200);
  assert.deepEqual([(await sharp(boxed.rawPayload).metadata()).width], [200]);

  // On close the waiting newest frame is written: after a restart latest.jpg shows f-3.
  await s.close();
  const meta1 = JSON.parse(readFileSync(join(s.snapshotsDir, 'latest', 'cam-line', 'c1.json'), 'utf8'));
  assert.equal(meta1.result.request_id, 'f-3');
});

test('latest.jpg with no interval follows every frame', async (t) => {
  const s = await startSnapshotApp({ snapshot_latest_interval_ms: 0 });
  t.after(() => s.cleanup());
  const { app } = s;
  const jpeg = await solidImage(300, 200, 'jpeg');
  for (const id of ['n-1', 'n-2', 'n-3']) {
    await detect(app, id, jpeg, 'line=fast');
    await app.sightline.snapshots.idle();
    const latest = await app.inject('/v1/lines/fast/latest.jpg?camera=default&boxes=1');
    assert.equal(latest.headers['x-result-id'], id);
    assert.ok(isRed(await pixelAt(latest.rawPayload, 0, 0)) === false);
  }
});

test('snapshots: false keeps nothing and counts every result as disabled', async (t) => {
  const s = await startSnapshotApp({ snapshots: false });
  t.after(() => s.cleanup());
  const { app } = s;
  const jpeg = await solidImage(300, 200, 'jpeg');
  await detect(app, 'off-1', jpeg, 'line=off');
  await waitForResult(app, 'off-1');
  assert.equal((await app.inject('/v1/results/off-1/image')).json().error.code, 'SNAPSHOT_NOT_FOUND');
  assert.equal((await app.inject('/v1/lines/off/latest.jpg')).statusCode, 404);
  assert.equal(await counter(app, 'sightline_snapshots_skipped_total', { reason: 'disabled' }), 1);
  assert.equal(folderBytes(s.snapshotsDir), 0);
});
