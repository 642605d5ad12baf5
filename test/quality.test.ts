import { requireOrSkip } from './helpers/requirements.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { defaultConfig } from '../src/config/load.js';
import { parseQualityOverrides } from '../src/config/quality-overrides.js';
import { letterboxGeometry } from '../src/inference/letterbox.js';
import { readModelManifest } from '../src/inference/model-manifest.js';
import { prepareImage } from '../src/inference/preprocess.js';
import { effectiveEnvelope, gatedVerdict, lineOverride, measureLetterboxed, measureQuality, qualityReasons } from '../src/inference/quality.js';
import type { DetectionResult } from '../src/protocol/results.js';
import { resultEvent } from '../src/events/index.js';
import { LineState, VERDICT_CODES } from '../src/outputs/line-state.js';
import { DISCRETE, REGISTER, lineDiscreteInputs, lineRegisters } from '../src/outputs/modbus/register-map.js';
import { eventFilter, passes } from '../src/outputs/filter.js';
import { ROOT } from './helpers/cli-process.js';
import { startApp, tempDir } from './helpers/fixtures.js';

// The image-quality gate (docs/models.md#image-quality-gate) on the built-in model and
// its envelope in models/defects/2/model.json (the version served by default): real images, real inference.

const SAMPLES = readdirSync(join(ROOT, 'samples'))
  .filter((f) => f.endsWith('.jpg'))
  .sort();

async function detect(app: FastifyInstance, image: Buffer, line: string): Promise<DetectionResult> {
  const res = await app.inject({ method: 'POST', url: `/v1/detect?line=${line}`, headers: { 'content-type': 'application/octet-stream' }, payload: image });
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as DetectionResult;
}

/** A deterministic PRNG (mulberry32): the noise frames are the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const solid = (width: number, height: number, v: number) =>
  sharp({ create: { width, height, channels: 3, background: { r: v, g: v, b: v } } })
    .jpeg()
    .toBuffer();
function noise(width: number, height: number, seed: number): Promise<Buffer> {
  const next = prng(seed);
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = Math.floor(next() * 256);
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** Frames beyond any envelope: every sample heavily blurred, all black, all white, all noise, at the camera sizes. */
async function beyondFrames(): Promise<{ name: string; image: Buffer }[]> {
  const frames: { name: string; image: Buffer }[] = [];
  for (const file of SAMPLES) {
    frames.push({
      name: `blur ${file}`,
      image: await sharp(readFileSync(join(ROOT, 'samples', file)))
        .blur(12)
        .jpeg()
        .toBuffer(),
    });
  }
  for (const [w, h] of [
    [640, 480],
    [1280, 720],
    [416, 416],
  ] as const) {
    frames.push({ name: `black ${w}x${h}`, image: await solid(w, h, 0) });
    frames.push({ name: `white ${w}x${h}`, image: await solid(w, h, 255) });
    for (const seed of [1, 2]) frames.push({ name: `noise ${w}x${h} #${seed}`, image: await noise(w, h, seed * 1000 + w) });
  }
  return frames;
}

test('measures: sharpness, exposure and contrast of the image only, padding aside', () => {
  const w = 40;
  const h = 30;
  const grey = new Uint8Array(w * h * 3).fill(90);
  assert.deepEqual(measureQuality(grey, w, { left: 0, top: 0, width: w, height: h }), {
    sharpness: 0,
    brightness: 90,
    contrast: 0,
    dark_fraction: 0,
    bright_fraction: 0,
  });
  // A one-pixel checkerboard of 0 and 255: every Laplacian is ±4 × 255.
  const board = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) board.fill((x + y) % 2 ? 255 : 0, (y * w + x) * 3, (y * w + x) * 3 + 3);
  const b = measureQuality(board, w, { left: 0, top: 0, width: w, height: h });
  assert.equal(b.sharpness, 1020 * 1020);
  assert.equal(b.brightness, 127.5);
  assert.equal(b.contrast, 127.5);
  assert.equal(b.dark_fraction, 0.5);
  assert.equal(b.bright_fraction, 0.5);
  // A black image letterboxed into grey padding: the padding is not measured.
  const lb = letterboxGeometry(640, 320, 64, 64);
  const input = new Uint8Array(64 * 64 * 3).fill(114);
  for (let y = lb.padTop; y < lb.padTop + lb.scaledHeight; y++) input.fill(0, (y * 64 + lb.padLeft) * 3, (y * 64 + lb.padLeft + lb.scaledWidth) * 3);
  assert.deepEqual(measureLetterboxed(input, lb), { sharpness: 0, brightness: 0, contrast: 0, dark_fraction: 1, bright_fraction: 0 });
});

test('reasons, the verdict gate (outside the envelope: check, whatever the model saw) and per-line overrides', () => {
  const envelope = { sharpness: { min: 40, max: 5000 }, brightness: { min: 30, max: 220 }, dark_fraction: { max: 0.2 } };
  const m = { sharpness: 12.3, brightness: 240.5, contrast: 10, dark_fraction: 0.5, bright_fraction: 0 };
  const reasons = qualityReasons(m, envelope);
  assert.deepEqual(reasons, ['blurred: sharpness 12.3 < 40', 'overexposed: brightness 240.5 > 220', 'clipped dark: dark_fraction 0.5 > 0.2']);
  assert.deepEqual(qualityReasons({ ...m, sharpness: 100, brightness: 100, dark_fraction: 0 }, envelope), []);
  assert.equal(gatedVerdict('ok', reasons), 'check');
  assert.equal(gatedVerdict('ng', reasons), 'check', 'detections on such an image are no more trusted than their absence');
  assert.equal(gatedVerdict('ng', []), 'ng');
  assert.equal(gatedVerdict('ok', []), 'ok');

  const overrides = 'line-1=sharpness_min:20,brightness_max:230; line-4=off;';
  assert.deepEqual(Object.fromEntries(parseQualityOverrides(overrides)), {
    'line-1': { sharpness: { min: 20 }, brightness: { max: 230 } },
    'line-4': 'off',
  });
  assert.deepEqual(effectiveEnvelope(envelope, lineOverride(overrides, 'line-1')), {
    sharpness: { min: 20, max: 5000 },
    brightness: { min: 30, max: 230 },
    dark_fraction: { max: 0.2 },
  });
  assert.equal(effectiveEnvelope(envelope, lineOverride(overrides, 'line-4')), undefined, 'off: no gate, nothing measured');
  assert.equal(effectiveEnvelope(envelope, lineOverride(overrides, 'line-9')), envelope);
  assert.equal(effectiveEnvelope(undefined, undefined), undefined, 'a model without an envelope has no gate');
  assert.equal(defaultConfig({ quality_overrides: overrides }).quality_overrides, overrides);
  for (const bad of ['line-1', 'line-1=sharp_min:3', 'line-1=sharpness_min:-3', 'line-1=sharpness_low:3', '=off']) {
    assert.throws(() => defaultConfig({ quality_overrides: bad }), /quality_overrides/, bad);
  }
});

test('the built-in model carries its envelope; measuring costs about a millisecond per image', async () => {
  const manifest = await readModelManifest(join(ROOT, 'models/defects/2/model.json'));
  assert.ok(manifest.quality?.sharpness?.min !== undefined && manifest.quality.sharpness.max !== undefined, 'sharpness bounds');
  assert.ok(manifest.quality.brightness?.min !== undefined && manifest.quality.brightness.max !== undefined, 'brightness bounds');
  assert.ok(manifest.quality.contrast?.min !== undefined, 'contrast bound');
  const prepared = await prepareImage(readFileSync(join(ROOT, 'samples', SAMPLES[0]!)), { inputWidth: 416, inputHeight: 416, maxPixels: 1e8 });
  const times: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = performance.now();
    measureLetterboxed(prepared.pixels, prepared.letterbox);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const median = times[25]!;
  console.log(`# measuring a 416×416 model input: median ${median.toFixed(3)} ms`);
  assert.ok(median < 20, `measuring took ${median} ms`);
});

test('frames beyond the envelope (heavy blur, all black, all white, all noise) get check with the reason, 100 %, whatever the model saw', async () => {
  const app = await startApp({ models_dir: './models' });
  try {
    const frames = await beyondFrames();
    // What the model alone would have said: ng where a detection reaches 0.35, the built-in rule for every label.
    let modelNg = 0;
    for (const { name, image } of frames) {
      const r = await detect(app, image, 'q-beyond');
      const detail = `${name}: ${JSON.stringify(r.quality)}, detections ${JSON.stringify(r.detections.map((d) => [d.label, d.score]))}`;
      assert.ok(r.quality, `${name}: measured`);
      assert.ok(r.quality.reasons.length > 0, `${name}: a reason (${detail})`);
      assert.equal(r.verdict, 'check', detail);
      if (r.detections.some((d) => d.score >= 0.35)) modelNg++;
      // What each kind of frame is caught by.
      const why = r.quality.reasons.join('; ');
      if (name.startsWith('blur')) assert.match(why, /blurred/, name);
      if (name.startsWith('black')) assert.match(why, /underexposed.*clipped dark/, name);
      if (name.startsWith('white')) assert.match(why, /overexposed.*clipped bright/, name);
      if (name.startsWith('noise')) assert.match(why, /noisy/, name);
    }
    console.log(
      `# beyond the envelope: ${frames.length} of ${frames.length} frames check with a reason (100 %); the model alone would have said ng on ${modelNg}`,
    );
    const metrics = (await app.inject('/metrics')).body;
    assert.match(metrics, new RegExp(`sightline_verdicts_total\\{line="q-beyond",verdict="check"\\} ${frames.length}\\b`));
    assert.match(metrics, /sightline_image_quality_outside_total\{line="q-beyond",reason="blurred"\} \d+/);
    assert.match(metrics, /sightline_image_quality_outside_total\{line="q-beyond",reason="noisy"\} \d+/);
    // The store counts check as its own verdict.
    let stats: { total: number; verdicts: Record<string, number> } | undefined;
    for (let i = 0; i < 100; i++) {
      stats = (await app.inject('/v1/lines/q-beyond/stats')).json();
      if (stats?.total === frames.length) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(stats?.verdicts, { ok: 0, ng: 0, check: frames.length });
    const page = (await app.inject('/v1/results?line=q-beyond&verdict=check&limit=5')).json() as { results: DetectionResult[] };
    assert.equal(page.results.length, 5);
    assert.ok(page.results.every((r) => r.verdict === 'check'));
  } finally {
    await app.close();
  }
});

test('in distribution: the samples and generated held-out images are flagged at most 1 %', async (t) => {
  const app = await startApp({ models_dir: './models' });
  const labels = JSON.parse(readFileSync(join(ROOT, 'samples', 'labels.json'), 'utf8')) as Record<string, { verdict: string }>;
  let flagged = 0;
  try {
    for (const file of SAMPLES) {
      const r = await detect(app, readFileSync(join(ROOT, 'samples', file)), 'q-samples');
      assert.ok(r.quality, file);
      if (r.quality.reasons.length) flagged++;
      // Inside the envelope the gate changes nothing.
      assert.equal(r.verdict, labels[file]!.verdict, `${file}: ${JSON.stringify(r.quality)}`);
    }
  } finally {
    await app.close();
  }
  console.log(`# samples/: ${flagged} of ${SAMPLES.length} flagged`);
  assert.ok(flagged / SAMPLES.length <= 0.01, `${flagged} of ${SAMPLES.length} samples flagged`);

  // Held-out images from the generator (another seed than the envelope's): needs numpy and Pillow.
  const python = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import numpy, PIL'], { stdio: 'ignore' }).status === 0);
  if (!requireOrSkip(t, python !== undefined, 'python3 with numpy and Pillow (generated held-out images)') || !python) return;

  const out = tempDir('sightline-quality-');
  t.after(() => out.cleanup());
  const count = 100;
  const gen = spawnSync(python, [join(ROOT, 'training/generate.py'), '--out', out.dir, '--count', String(count), '--seed', '5151', '--workers', '2'], {
    encoding: 'utf8',
    timeout: 240_000,
  });
  assert.equal(gen.status, 0, gen.stderr);
  const manifest = await readModelManifest(join(ROOT, 'models/defects/2/model.json'));
  const images = readdirSync(join(out.dir, 'images')).filter((f) => f.endsWith('.jpg'));
  assert.equal(images.length, count);
  let heldOutFlagged = 0;
  for (const file of images) {
    const prepared = await prepareImage(readFileSync(join(out.dir, 'images', file)), { inputWidth: 416, inputHeight: 416, maxPixels: 1e8 });
    const reasons = qualityReasons(measureLetterboxed(prepared.pixels, prepared.letterbox), manifest.quality!);
    if (reasons.length) heldOutFlagged++;
  }
  console.log(`# generated held-out (seed 5151): ${heldOutFlagged} of ${count} flagged`);
  assert.ok(heldOutFlagged / count <= 0.01, `${heldOutFlagged} of ${count} held-out images flagged`);
});

test('quality_overrides: a line may loosen, tighten or switch off the gate', async () => {
  const app = await startApp({ models_dir: './models', quality_overrides: 'q-off=off; q-strict=sharpness_min:100000000' });
  try {
    const black = await solid(640, 480, 0);
    const off = await detect(app, black, 'q-off');
    assert.equal(off.quality, undefined, 'off: nothing measured');
    assert.equal(off.verdict, 'ok', 'off: the model alone decides');
    const strict = await detect(app, readFileSync(join(ROOT, 'samples', 'ok-01.jpg')), 'q-strict');
    assert.equal(strict.verdict, 'check');
    assert.match(strict.quality!.reasons.join(), /^blurred: sharpness [\d.]+ < 100000000$/);
    const other = await detect(app, readFileSync(join(ROOT, 'samples', 'ok-01.jpg')), 'q-other');
    assert.equal(other.verdict, 'ok', "other lines keep the model's envelope");
  } finally {
    await app.close();
  }
});

test('factory outputs: check is PLC code 3, counted apart, never the OK bit; the default MQTT/webhook filters pass it', () => {
  const result = (verdict: DetectionResult['verdict']): DetectionResult => ({
    request_id: `r-${verdict}`,
    line: 'press-1',
    camera: 'c',
    model: { name: 'defects', version: '1' },
    image: { width: 640, height: 480 },
    detections: [],
    verdict,
    timings_ms: { queue: 0, decode: 0, preprocess: 0, infer: 0, postprocess: 0, total: 0 },
    ...(verdict === 'check'
      ? { quality: { sharpness: 1, brightness: 100, contrast: 20, dark_fraction: 0, bright_fraction: 0, reasons: ['blurred: sharpness 1 < 6'] } }
      : {}),
  });
  assert.deepEqual(VERDICT_CODES, { ok: 1, ng: 2, check: 3 });
  const state = new LineState('press-1', 10);
  for (const v of ['ok', 'ng', 'check', 'check'] as const) state.apply(resultEvent('sync', result(v)));
  assert.deepEqual([state.okCount, state.ngCount, state.checkCount], [1, 1, 2]);
  const regs = lineRegisters(state);
  assert.equal(regs[REGISTER.lastVerdict], 3);
  assert.deepEqual(regs.slice(REGISTER.checkCount, REGISTER.checkCount + 2), [0, 2], 'CHECK count, 32-bit, high word first');
  const bits = lineDiscreteInputs(state);
  assert.deepEqual([bits[DISCRETE.lastOk], bits[DISCRETE.lastNg], bits[DISCRETE.lastCheck]], [false, false, true]);
  const defaults = defaultConfig();
  const check = resultEvent('sync', result('check'));
  assert.ok(passes(eventFilter(defaults.mqtt_lines, defaults.mqtt_verdicts), check), 'MQTT publishes check by default');
  assert.ok(passes(eventFilter(defaults.webhook_lines, defaults.webhook_verdicts), check), 'webhooks post check by default');
  assert.equal(passes(eventFilter('', 'ng'), check), false, 'an NG-only filter leaves check out');
});
