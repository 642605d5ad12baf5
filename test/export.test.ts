import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { parse as parseYaml } from 'yaml';
import { LogCapture, solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { CLI, ROOT } from './helpers/cli-process.js';

const run = promisify(execFile);

/** Runs `sightline ARGS` and answers its exit status and output (a failure is an answer, not a throw). */
async function sightline(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGHTLINE_')));
  try {
    const { stdout, stderr } = await run(process.execPath, [...CLI, ...args], { cwd: ROOT, env, timeout: 120_000 });
    return { status: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { status: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

async function until<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// The constant model (test/helpers/fixtures.ts) finds these on every 1280×720 image.
const SCRATCH = { x1: 540, y1: 310, x2: 740, y2: 410 };
const DENT = { x1: 544, y1: 306, x2: 744, y2: 406 };
const CRACK = { x1: 1100, y1: 420, x2: 1280, y2: 620 };

/** The YOLO row of a pixel box on a 1280×720 image, as the export rounds it. */
const yolo = (classId: number, b: { x1: number; y1: number; x2: number; y2: number }) =>
  [classId, (b.x1 + b.x2) / 2 / 1280, (b.y1 + b.y2) / 2 / 720, (b.x2 - b.x1) / 1280, (b.y2 - b.y1) / 720]
    .map((v, i) => (i === 0 ? String(v) : String(Math.round(v * 1e6) / 1e6)))
    .join(' ');

test('review round trip over HTTP, sightline export of the reviewed snapshots, and sightline eval on the export', async (t) => {
  const tmp = tempDir('sightline-export-');
  t.after(tmp.cleanup);
  const models = join(tmp.dir, 'models');
  const data = join(tmp.dir, 'data');
  mkdirSync(data);
  writeDecoderModels(models);
  const storeUrl = `sqlite:${join(data, 'results.db')}`;
  // Keys made with the command line, in the database the server reads them from.
  const key = async (name: string, role: string) => {
    const res = await sightline(['keys', 'create', '--name', name, '--role', role, '--json', '--store-url', storeUrl]);
    assert.equal(res.status, 0, res.stderr);
    return JSON.parse(res.stdout).key as string;
  };
  const reviewerKey = await key('qa-1', 'reviewer');
  const viewerKey = await key('wall', 'viewer');

  const logs = new LogCapture();
  const app: FastifyInstance = await startApp(
    { models_dir: models, default_model: 'v8', data_dir: data, store_url: storeUrl, snapshots: true, snapshot_ok_sample_rate: 0 },
    { logs },
  );
  let closed = false;
  t.after(async () => {
    if (!closed) await app.close();
  });
  const image = await solidImage(1280, 720, 'jpeg');
  const detect = async (id: string, query = '') => {
    const res = await app.inject({
      method: 'POST',
      url: `/v1/detect?line=press-1${query}`,
      headers: { 'content-type': 'image/jpeg', 'x-request-id': id },
      payload: image,
    });
    assert.equal(res.statusCode, 200, res.body);
  };
  const ids = ['exact', 'false-call', 'missed-burr', 'moved', 'missed-nobox', 'unreviewed'];
  for (const id of ids) await detect(id);
  // An OK result (nothing reaches conf 0.95): its image is not kept (snapshot_ok_sample_rate 0).
  await detect('ok-no-image', '&conf=0.95');
  for (const id of [...ids, 'ok-no-image'])
    await until(`result ${id}`, async () => ((await app.inject(`/v1/results/${id}`)).statusCode === 200 ? true : undefined));
  for (const id of ids) await until(`snapshot ${id}`, async () => ((await app.inject(`/v1/results/${id}/image`)).statusCode === 200 ? true : undefined));

  const auth = (k: string) => ({ authorization: `Bearer ${k}` });
  const review = (id: string, body: unknown, headers: Record<string, string> = auth(reviewerKey)) =>
    app.inject({ method: 'POST', url: `/v1/results/${id}/review`, headers, payload: body as object });

  // Who may review.
  assert.equal((await review('exact', { status: 'confirmed' }, auth(viewerKey))).statusCode, 403);

  // Input checks: 400 with a code that says what is wrong, 404 for an unknown result; nothing stored.
  const refused = async (id: string, body: unknown, status: number, code: string, message?: RegExp) => {
    const res = await review(id, body);
    assert.equal(res.statusCode, status, `${JSON.stringify(body).slice(0, 80)}: ${res.body}`);
    assert.equal(res.json().error.code, code);
    if (message) assert.match(res.json().error.message, message);
  };
  await refused('no-such-result', { status: 'confirmed' }, 404, 'RESULT_NOT_FOUND');
  await refused('exact', { status: 'maybe' }, 400, 'INVALID_REQUEST', /status/);
  await refused('exact', {}, 400, 'INVALID_REQUEST', /status/);
  await refused('exact', { status: 'confirmed', reviewer: 'someone-else' }, 400, 'INVALID_REQUEST', /additional properties/);
  await refused('exact', { status: 'confirmed', note: 'x'.repeat(2001) }, 400, 'INVALID_REQUEST', /note/);
  await refused('exact', { status: 'missed', boxes: [{ label: '', box: { x1: 1, y1: 1, x2: 2, y2: 2 } }] }, 400, 'INVALID_REQUEST', /label/);
  await refused('exact', { status: 'missed', boxes: [{ label: 'dent', box: { x1: 1, y1: 1, x2: 2 } }] }, 400, 'INVALID_REQUEST', /y2/);
  await refused('exact', { status: 'missed', boxes: [{ label: 'dent', box: { x1: 1200, y1: 1, x2: 1281, y2: 2 } }] }, 400, 'INVALID_REVIEW', /1280×720/);
  await refused('exact', { status: 'missed', boxes: [{ label: 'dent', box: { x1: 5, y1: 1, x2: 5, y2: 2 } }] }, 400, 'INVALID_REVIEW', /x1 < x2/);
  const notJson = await app.inject({
    method: 'POST',
    url: '/v1/results/exact/review',
    headers: { ...auth(reviewerKey), 'content-type': 'text/plain' },
    payload: 'confirmed',
  });
  assert.equal(notJson.statusCode, 400, notJson.body);
  assert.equal((await app.inject('/v1/results/exact')).json().review, null, 'refused reviews store nothing');

  // The reviews. "moved": the reviewer corrects the scratch to where it really is and removes the rest.
  const burr = { label: 'burr', box: { x1: 10, y1: 10, x2: 60, y2: 60 } };
  const reviews: [string, object][] = [
    ['exact', { status: 'false_call', note: 'first look' }],
    ['exact', { status: 'confirmed' }], // replaces the one before
    ['false-call', { status: 'false_call', note: 'reflection, not a scratch' }],
    ['missed-burr', { status: 'missed', boxes: [{ label: 'scratch', class_id: 0, box: SCRATCH }, burr] }],
    ['moved', { status: 'confirmed', boxes: [{ label: 'scratch', box: { x1: 10, y1: 10, x2: 110, y2: 60 } }] }],
    ['missed-nobox', { status: 'missed', note: 'somewhere on the left' }],
    ['ok-no-image', { status: 'confirmed' }],
  ];
  for (const [id, body] of reviews) {
    const res = await review(id, body);
    assert.equal(res.statusCode, 200, res.body);
    const answered = res.json();
    assert.equal(answered.request_id, id);
    assert.equal(answered.review.status, (body as { status: string }).status);
    assert.equal(answered.review.reviewer, 'qa-1');
    assert.ok(Math.abs(Date.parse(answered.review.reviewed_at) - Date.now()) < 60_000);
  }
  const exact = (await app.inject({ url: '/v1/results/exact', headers: auth(viewerKey) })).json();
  assert.deepEqual({ ...exact.review, reviewed_at: 'x' }, { status: 'confirmed', note: null, boxes: null, reviewer: 'qa-1', reviewed_at: 'x' });
  assert.deepEqual((await app.inject('/v1/results/missed-burr')).json().review.boxes, [{ label: 'scratch', class_id: 0, box: SCRATCH }, burr]);
  const listed = async (query: string) =>
    ((await app.inject(`/v1/results?${query}`)).json().results as { request_id: string }[]).map((r) => r.request_id).sort();
  assert.deepEqual(await listed('review=confirmed'), ['exact', 'moved', 'ok-no-image']);
  assert.deepEqual(await listed('review=missed&line=press-1'), ['missed-burr', 'missed-nobox']);
  assert.deepEqual(await listed('review=none'), ['unreviewed']);
  assert.deepEqual(await listed('review=any&verdict=ok'), ['ok-no-image']);
  assert.equal((await app.inject('/v1/results?review=maybe')).json().error.code, 'INVALID_REQUEST');
  assert.deepEqual(await app.sightline.store.reviewCounts('press-1'), { confirmed: 3, false_call: 1, missed: 2, unreviewed: 1 });
  const logged = logs.lines.filter((l) => l.event === 'result_reviewed');
  assert.equal(logged.length, reviews.length);
  assert.deepEqual(
    { ...logged[3], time: 0 },
    { ...logged[3], time: 0, result_id: 'missed-burr', line: 'press-1', camera: 'default', status: 'missed', boxes: 2, reviewer: 'qa-1' },
  );

  // Export while the server runs (it only reads the store and the snapshots).
  const out = join(tmp.dir, 'dataset');
  const common = ['--data-dir', data, '--store-url', storeUrl, '--models-dir', models];
  const exported = await sightline(['export', '--since', '1h', '--out', out, ...common]);
  assert.equal(exported.status, 0, exported.stderr);
  assert.match(exported.stdout, /exported 4 images with 6 boxes/);
  assert.match(exported.stdout, /skipped: 1 without a kept image, 0 with the image pruned, 1 missed without boxes/);
  assert.match(exported.stderr, /warning: result missed-nobox is reviewed missed without boxes: skipped/);

  const manifest = JSON.parse(readFileSync(join(out, 'export.json'), 'utf8'));
  assert.deepEqual(manifest.by_status, { confirmed: 2, false_call: 1, missed: 1 });
  assert.deepEqual(manifest.skipped, { no_image: 1, image_gone: 0, missed_without_boxes: 1 });
  assert.deepEqual(manifest.names, ['scratch', 'dent', 'crack', 'burr'], "the model's labels in its order, then the reviews' new ones");
  const yaml = parseYaml(readFileSync(join(out, 'data.yaml'), 'utf8'));
  assert.deepEqual(yaml.names, { 0: 'scratch', 1: 'dent', 2: 'crack', 3: 'burr' });
  assert.equal(yaml.path, out);
  const labelsOf = (id: string) => {
    const entry = manifest.results.find((r: { id: string }) => r.id === id);
    assert.ok(entry, `${id} exported`);
    assert.match(entry.image, new RegExp(`^images/(train|val)/${id}\\.jpg$`));
    assert.deepEqual(readFileSync(join(out, entry.image)), image, 'the image as received');
    return readFileSync(join(out, entry.labels), 'utf8');
  };
  assert.equal(labelsOf('exact'), `${[yolo(0, SCRATCH), yolo(1, DENT), yolo(2, CRACK)].join('\n')}\n`, 'confirmed: the detections');
  assert.equal(labelsOf('false-call'), '', 'false call without boxes: an image without defects');
  assert.equal(labelsOf('missed-burr'), `${[yolo(0, SCRATCH), yolo(3, burr.box)].join('\n')}\n`, "missed: the review's boxes");
  assert.equal(labelsOf('moved'), `${yolo(0, { x1: 10, y1: 10, x2: 110, y2: 60 })}\n`, "confirmed with boxes: the review's");
  const files = ['train', 'val'].flatMap((split) => readdirSync(join(out, 'images', split)));
  assert.equal(files.length, 4);

  // sightline eval reads the export: figures that follow from the reviews. The model finds a
  // scratch, a dent and a crack at fixed places on every image (4 predictions per class):
  // scratch truths: exact and missed-burr (found), moved (elsewhere) → P 2/4, R 2/3;
  // dent and crack truths: exact only → P 1/4, R 1/1. burr is no class of the model.
  const report = join(tmp.dir, 'report.json');
  const evaluated = await sightline(['eval', '--model', 'v8:1', '--data', out, '--models-dir', models, '--json', report, '--intra-op-threads', '1']);
  assert.equal(evaluated.status, 0, evaluated.stderr);
  const figures = JSON.parse(readFileSync(report, 'utf8'));
  assert.equal(figures.images, 4);
  const byLabel = Object.fromEntries(figures.classes.map((c: { label: string }) => [c.label, c]));
  const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} ≠ ${b}`);
  assert.equal(byLabel.scratch.instances, 3);
  near(byLabel.scratch.precision, 2 / 4, 'scratch P');
  near(byLabel.scratch.recall, 2 / 3, 'scratch R');
  for (const label of ['dent', 'crack']) {
    assert.equal(byLabel[label].instances, 1, label);
    near(byLabel[label].precision, 1 / 4, `${label} P`);
    near(byLabel[label].recall, 1, `${label} R`);
  }

  // Only false calls, into a second folder.
  const onlyFalse = join(tmp.dir, 'false-calls');
  const falseCalls = await sightline(['export', '--since', '1h', '--status', 'false_call', '--out', onlyFalse, ...common]);
  assert.equal(falseCalls.status, 0, falseCalls.stderr);
  assert.deepEqual(
    JSON.parse(readFileSync(join(onlyFalse, 'export.json'), 'utf8')).results.map((r: { id: string }) => r.id),
    ['false-call'],
  );
  // A window that holds none of the results writes an empty dataset.
  const none = join(tmp.dir, 'none');
  const empty = await sightline(['export', '--since', '2h', '--until', '1h', '--out', none, ...common]);
  assert.equal(empty.status, 0, empty.stderr);
  assert.match(empty.stdout, /exported 0 images/);

  await app.close();
  closed = true;

  // Usage errors: one line, exit 2, nothing written.
  for (const [args, why] of [
    [['--out', out], /--since and --out are required/],
    [['--since', '1h', '--out', out], /not an empty folder/],
    [['--since', '1h', '--status', 'confirmed,bogus', '--out', join(tmp.dir, 'x')], /--status: .*\(not bogus\)/],
  ] as const) {
    const res = await sightline(['export', ...args, ...common]);
    assert.equal(res.status, 2, `${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stderr, why);
    assert.equal(res.stderr.trim().split('\n').length, 1, res.stderr);
  }
  assert.equal(existsSync(join(tmp.dir, 'x')), false);
});
