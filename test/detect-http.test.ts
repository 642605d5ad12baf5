import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { solidImage, startApp, tempDir, writeDecoderModels, LogCapture } from './helpers/fixtures.js';

const round2 = (v: number) => Math.round(v * 100) / 100;

/** Expected boxes on a 1280×720 image: scale 0.5, 140 px of padding on top. */
const LANDSCAPE = [
  { label: 'scratch', class_id: 0, score: 0.9, box: { x1: 540, y1: 310, x2: 740, y2: 410 } },
  { label: 'dent', class_id: 1, score: 0.7, box: { x1: 544, y1: 306, x2: 744, y2: 406 } },
  // e runs past the right edge and is clipped to the image.
  { label: 'crack', class_id: 2, score: 0.6, box: { x1: 1100, y1: 420, x2: 1280, y2: 620 } },
];

/** On 600×900 the scaled image is 427×640 with 106 px padding left; e lies in the padding. */
function portraitBox(x1: number, y1: number, x2: number, y2: number) {
  const mx = (x: number) => round2(Math.min(600, Math.max(0, ((x - 106) * 600) / 427)));
  const my = (y: number) => round2(Math.min(900, Math.max(0, (y * 900) / 640)));
  return { x1: mx(x1), y1: my(y1), x2: mx(x2), y2: my(y2) };
}
const PORTRAIT = [
  { label: 'scratch', class_id: 0, score: 0.9, box: portraitBox(270, 295, 370, 345) },
  { label: 'dent', class_id: 1, score: 0.7, box: portraitBox(272, 293, 372, 343) },
];

function scoresRounded(detections: { score: number }[]) {
  return detections.map((d) => ({ ...d, score: Math.round(d.score * 1000) / 1000 }));
}

describe('POST /v1/detect through every decoder', () => {
  const tmp = tempDir();
  let app: FastifyInstance;
  const logs = new LogCapture();
  let landscape: Buffer;
  let portrait: Buffer;

  before(async () => {
    writeDecoderModels(tmp.dir);
    app = await startApp({ models_dir: tmp.dir, default_model: 'v8' }, { logs });
    landscape = await solidImage(1280, 720, 'jpeg');
    portrait = await solidImage(600, 900, 'png');
  });
  after(async () => {
    await app.close();
    tmp.cleanup();
  });

  for (const model of ['v8', 'v5', 'e2e']) {
    test(`${model}: exact boxes in original pixels on 1280×720 and 600×900`, async () => {
      const res = await app.inject({
        method: 'POST',
        url: `/v1/detect?model=${model}&line=line-3`,
        headers: { 'content-type': 'image/jpeg' },
        payload: landscape,
      });
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json();
      assert.deepEqual(body.image, { width: 1280, height: 720 });
      assert.deepEqual(scoresRounded(body.detections), LANDSCAPE);
      assert.equal(body.verdict, 'ng');
      assert.equal(body.line, 'line-3');
      assert.deepEqual(body.model, { name: model, version: '1' });
      for (const stage of ['queue', 'decode', 'preprocess', 'infer', 'postprocess', 'total']) {
        assert.equal(typeof body.timings_ms[stage], 'number', stage);
      }
      const res2 = await app.inject({ method: 'POST', url: `/v1/detect?model=${model}`, headers: { 'content-type': 'image/png' }, payload: portrait });
      assert.equal(res2.statusCode, 200, res2.body);
      assert.deepEqual(res2.json().image, { width: 600, height: 900 });
      assert.deepEqual(scoresRounded(res2.json().detections), PORTRAIT);
    });
  }

  test('the default model serves requests that name none; format detected for v5', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/detect', headers: { 'content-type': 'image/jpeg' }, payload: landscape });
    assert.deepEqual(res.json().model, { name: 'v8', version: '1' });
    const models = (await app.inject('/v1/models')).json().models;
    const v5 = models.find((m: { name: string }) => m.name === 'v5');
    assert.equal(v5.format, 'yolov5');
    assert.equal(v5.format_detected, true);
    assert.equal(models.find((m: { name: string }) => m.name === 'v8').default, true);
  });

  test('conf, iou, max_det and agnostic override the model defaults', async () => {
    const post = (query: string) => app.inject({ method: 'POST', url: `/v1/detect?${query}`, headers: { 'content-type': 'image/jpeg' }, payload: landscape });
    const high = (await post('conf=0.95')).json();
    assert.deepEqual(high.detections, []);
    assert.equal(high.verdict, 'ok');
    assert.deepEqual(
      (await post('max_det=1')).json().detections.map((d: { label: string }) => d.label),
      ['scratch'],
    );
    assert.deepEqual(
      (await post('agnostic=true')).json().detections.map((d: { label: string }) => d.label),
      ['scratch', 'crack'],
    );
    // iou 0.9 keeps b (IoU with a ≈ 0.86).
    assert.equal((await post('iou=0.9')).json().detections.length, 4);
    // Below the verdict threshold of scratch (0.5) but above conf: dent alone is not an NG label.
    const low = (await post('conf=0.65&max_det=1&model=v8')).json();
    assert.equal(low.detections.length, 1);
  });

  test('X-Request-Id is honoured, or made and returned', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/detect',
      headers: { 'content-type': 'image/jpeg', 'x-request-id': 'cam-7.frame-42' },
      payload: landscape,
    });
    assert.equal(res.headers['x-request-id'], 'cam-7.frame-42');
    assert.equal(res.json().request_id, 'cam-7.frame-42');
    const made = await app.inject({
      method: 'POST',
      url: '/v1/detect',
      headers: { 'content-type': 'image/jpeg', 'x-request-id': 'bad id with spaces' },
      payload: landscape,
    });
    assert.match(String(made.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal(made.json().request_id, made.headers['x-request-id']);
  });

  test('logs request_start, request_success and request_failure with request id, line and duration, never image bytes', async () => {
    logs.lines.length = 0;
    await app.inject({ method: 'POST', url: '/v1/detect?line=l9', headers: { 'content-type': 'image/jpeg', 'x-request-id': 'log-ok' }, payload: landscape });
    await app.inject({
      method: 'POST',
      url: '/v1/detect?line=l9',
      headers: { 'content-type': 'image/jpeg', 'x-request-id': 'log-bad' },
      payload: Buffer.from('not an image'),
    });
    const of = (id: string, event: string) => logs.lines.find((l) => l.request_id === id && l.event === event);
    assert.ok(of('log-ok', 'request_start'));
    const ok = of('log-ok', 'request_success');
    assert.equal(ok?.line, 'l9');
    assert.equal(typeof ok?.duration_ms, 'number');
    const bad = of('log-bad', 'request_failure') as { error_code: string; err: { stack: string }; line: string };
    assert.equal(bad.error_code, 'INVALID_IMAGE');
    assert.equal(bad.line, 'l9');
    assert.match(bad.err.stack, /INVALID_IMAGE|at /);
    const all = JSON.stringify(logs.lines);
    assert.ok(!all.includes(landscape.subarray(0, 64).toString('base64')));
    assert.ok(!all.includes('not an image'));
  });

  test('metrics count requests by route, line and status and time every stage', async () => {
    await app.inject({ method: 'POST', url: '/v1/detect?line=metrics-line', headers: { 'content-type': 'image/jpeg' }, payload: landscape });
    const text = (await app.inject('/metrics')).body;
    assert.match(text, /sightline_requests_total\{route="\/v1\/detect",line="metrics-line",status="200"\} 1/);
    for (const stage of ['queue', 'decode', 'preprocess', 'infer', 'postprocess']) {
      assert.match(text, new RegExp(`sightline_stage_duration_seconds_count\\{model="v8",stage="${stage}"\\} \\d+`));
    }
    assert.match(text, /sightline_model_ready\{model="v5",version="1"\} 1/);
    assert.match(text, /sightline_verdicts_total\{line="metrics-line",verdict="ng"\} 1/);
  });
});
