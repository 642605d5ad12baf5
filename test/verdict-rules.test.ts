import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { readModelManifest } from '../src/inference/model-manifest.js';
import type { Detection, DetectionResult } from '../src/protocol/results.js';
import { evaluateVerdict, insidePolygon, rulesInForce, type ModelVerdict } from '../src/verdict/evaluate.js';
import { inForceAt, judge } from '../src/verdict/judge.js';
import type { VerdictRule } from '../src/verdict/rules.js';
import { parseVerdictSettings, verdictSettings, type VerdictSettings } from '../src/verdict/settings.js';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { INPUT, LABELS, manifest, RAW_BOXES, solidImage, startApp, tempDir, yolov8Output } from './helpers/fixtures.js';
import { waitFor } from './helpers/cli-process.js';

// Verdict rules (docs/models.md#verdict-rules) on hand-made detections: size in mm,
// count, include/exclude regions, per-line and per-camera changes, the reasons; then
// validation at load and at start; then hot reload through a real server.

const LABELS4 = ['scratch', 'stain', 'dent', 'crack'];

/** A detection with its box given as x1, y1 and its width and height in pixels. */
const det = (label: string, x1: number, y1: number, w: number, h: number, score = 0.9): Detection => ({
  label,
  class_id: LABELS4.indexOf(label),
  score,
  box: { x1, y1, x2: x1 + w, y2: y1 + h },
});

const inForce = (rules: VerdictRule[], ng: Record<string, number> = {}) => rulesInForce({ ng, rules }, LABELS4, { overrides: [] });

/** The worked example of docs/models.md: scratch longer than 2 mm, stains outside the sealing area allowed, more than 3 stains NG. */
const EXAMPLE: VerdictRule[] = [
  { name: 'scratch-over-2mm', label: 'scratch', min_score: 0.5, unit: 'mm', min_length: 2 },
  { name: 'stain-on-seal', label: 'stain', min_score: 0.4, region: { include: ['sealing'] } },
  { name: 'many-stains', label: 'stain', min_score: 0.4, min_count: 4 },
];
/** The sealing area: a band across the top 100 px of a 640 px wide image. */
const SEALING: [number, number][] = [
  [0, 0],
  [640, 0],
  [640, 100],
  [0, 100],
];
const CAMERA = { mm_per_px: 0.05, regions: { sealing: SEALING } };

test('size in mm: a 30 px scratch at 0.05 mm/px (1.5 mm) is OK, 50 px (2.5 mm) is NG and names the rule; 40 px is exactly 2 mm: NG (bounds inclusive)', () => {
  const rules = inForce(EXAMPLE);
  assert.deepEqual(evaluateVerdict(rules, [det('scratch', 100, 300, 30, 4)], CAMERA), { verdict: 'ok', reasons: [] });
  const ng = evaluateVerdict(rules, [det('stain', 10, 300, 5, 5), det('scratch', 100, 300, 50, 4)], CAMERA);
  assert.equal(ng.verdict, 'ng');
  assert.equal(ng.reasons.length, 1);
  assert.equal(ng.reasons[0]!.rule, 'scratch-over-2mm');
  assert.equal(ng.reasons[0]!.outcome, 'ng');
  assert.deepEqual(ng.reasons[0]!.detections, [1]);
  assert.match(ng.reasons[0]!.detail, /length 2\.5 mm/);
  assert.match(ng.reasons[0]!.detail, /min_length 2 mm/);
  // Length is the longer side: a vertical scratch counts the same.
  assert.equal(evaluateVerdict(rules, [det('scratch', 100, 300, 4, 50)], CAMERA).verdict, 'ng');
  assert.equal(evaluateVerdict(rules, [det('scratch', 100, 300, 40, 4)], CAMERA).verdict, 'ng');
  // Below min_score the scratch does not count, whatever its length.
  assert.equal(evaluateVerdict(rules, [det('scratch', 100, 300, 200, 4, 0.3)], CAMERA).verdict, 'ok');
  // Width and area bounds, in px; a mask's area_px wins over the box's area.
  const wide = inForce([{ name: 'wide-dent', label: 'dent', min_width: 10, max_area: 500 }]);
  assert.equal(evaluateVerdict(wide, [det('dent', 0, 200, 40, 9)]).verdict, 'ok', 'width 9 < 10');
  assert.equal(evaluateVerdict(wide, [det('dent', 0, 200, 40, 12)]).verdict, 'ng', 'width 12, area 480 ≤ 500');
  assert.equal(evaluateVerdict(wide, [det('dent', 0, 200, 50, 12)]).verdict, 'ok', 'box area 600 > 500');
  assert.equal(evaluateVerdict(wide, [{ ...det('dent', 0, 200, 50, 12), area_px: 300 }]).verdict, 'ng', 'mask area 300 ≤ 500');
});

test('a rule in mm on a camera without mm_per_px is `check` with the reason, never a silent OK; with nothing it could count, it is OK', () => {
  const rules = inForce(EXAMPLE);
  const noScale = { regions: { sealing: SEALING } };
  const out = evaluateVerdict(rules, [det('scratch', 100, 300, 50, 4)], noScale);
  assert.equal(out.verdict, 'check');
  assert.equal(out.reasons[0]!.rule, 'scratch-over-2mm');
  assert.equal(out.reasons[0]!.outcome, 'check');
  assert.match(out.reasons[0]!.detail, /mm_per_px/);
  // No scratch at all: the rule cannot fire, so the missing scale does not matter.
  assert.equal(evaluateVerdict(rules, [det('dent', 100, 300, 50, 4)], noScale).verdict, 'ok');
  // NG wins over check: another rule that fires makes the result NG.
  const both = evaluateVerdict(rules, [det('scratch', 100, 300, 50, 4), det('stain', 300, 40, 10, 10)], noScale);
  assert.equal(both.verdict, 'ng');
  assert.deepEqual(
    both.reasons.map((r) => [r.rule, r.outcome]),
    [
      ['scratch-over-2mm', 'check'],
      ['stain-on-seal', 'ng'],
    ],
  );
  // A region the camera does not define is `check` too.
  assert.equal(evaluateVerdict(rules, [det('stain', 300, 40, 10, 10)], { mm_per_px: 0.05, regions: {} }).verdict, 'check');
});

test('count: 3 stains outside the sealing area are OK, 4 are NG (min_count 4 = "more than 3")', () => {
  const rules = inForce(EXAMPLE);
  const stains = (n: number) => Array.from({ length: n }, (_, i) => det('stain', 50 + i * 60, 400, 10, 10));
  assert.equal(evaluateVerdict(rules, stains(3), CAMERA).verdict, 'ok');
  const ng = evaluateVerdict(rules, stains(4), CAMERA);
  assert.equal(ng.verdict, 'ng');
  assert.deepEqual(
    ng.reasons.map((r) => [r.rule, r.count]),
    [['many-stains', 4]],
  );
  assert.deepEqual(ng.reasons[0]!.detections, [0, 1, 2, 3]);
  // Stains below the rule's min_score are not counted.
  assert.equal(evaluateVerdict(rules, [...stains(3), det('stain', 500, 400, 10, 10, 0.2)], CAMERA).verdict, 'ok');
  // Only detections that meet every condition count: 3 large stains and 1 small one are 3, not 4.
  const big = inForce([{ name: 'many-big-stains', label: 'stain', min_area: 50, min_count: 4 }]);
  assert.equal(evaluateVerdict(big, [...stains(3), det('stain', 500, 400, 5, 5)]).verdict, 'ok');
  assert.deepEqual(evaluateVerdict(big, [...stains(3), det('stain', 500, 400, 8, 8)]).reasons[0]?.detections, [0, 1, 2, 3]);
});

test('regions: the box centre decides; include counts only what lies inside, exclude ignores what lies inside', () => {
  const rules = inForce(EXAMPLE);
  // A stain on the seal (centre y 45) is NG; one below it (centre y 305) is allowed.
  assert.equal(evaluateVerdict(rules, [det('stain', 300, 40, 10, 10)], CAMERA).verdict, 'ng');
  assert.equal(evaluateVerdict(rules, [det('stain', 300, 300, 10, 10)], CAMERA).verdict, 'ok');
  // A stain whose box overlaps the seal but whose centre (y 120) lies below it: outside.
  assert.equal(evaluateVerdict(rules, [det('stain', 300, 90, 10, 60)], CAMERA).verdict, 'ok');
  // Exclude: scratches inside the clamp mark are ignored, others count.
  const clamp: [number, number][] = [
    [0, 500],
    [100, 500],
    [100, 640],
    [0, 640],
  ];
  const exclude = inForce([{ name: 'scratch-not-under-clamp', label: 'scratch', region: { exclude: ['clamp'] } }]);
  const scope = { regions: { clamp } };
  assert.equal(evaluateVerdict(exclude, [det('scratch', 20, 560, 30, 4)], scope).verdict, 'ok');
  assert.equal(evaluateVerdict(exclude, [det('scratch', 200, 560, 30, 4)], scope).verdict, 'ng');
  // Its box reaches into the clamp mark (x 90–120) but its centre (x 105) lies outside: it counts.
  assert.equal(evaluateVerdict(exclude, [det('scratch', 90, 560, 30, 4)], scope).verdict, 'ng');
  // A non-rectangular polygon: a triangle.
  const triangle: [number, number][] = [
    [0, 0],
    [100, 0],
    [0, 100],
  ];
  assert.equal(insidePolygon(10, 10, triangle), true);
  assert.equal(insidePolygon(60, 60, triangle), false);
});

test('verdict.ng alone works as before and is named in the reasons', () => {
  const verdict: ModelVerdict = { ng: { scratch: 0.5, crack: 0.5 } };
  const rules = rulesInForce(verdict, LABELS4, { overrides: [] });
  assert.deepEqual(evaluateVerdict(rules, [det('scratch', 0, 0, 5, 5, 0.49), det('dent', 0, 0, 5, 5, 0.99)]), { verdict: 'ok', reasons: [] });
  const ng = evaluateVerdict(rules, [det('dent', 0, 0, 5, 5, 0.99), det('crack', 0, 0, 5, 5, 0.5)]);
  assert.equal(ng.verdict, 'ng');
  assert.deepEqual(
    ng.reasons.map((r) => [r.rule, r.outcome, r.count, r.detections]),
    [['verdict.ng', 'ng', 1, [1]]],
  );
});

function settingsFile(dir: string, settings: VerdictSettings): string {
  const path = join(dir, `verdict-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, JSON.stringify(settings));
  return path;
}

test('per-line and per-camera changes: thresholds, scale, disabling and adding rules change the verdict where they apply, and only there', () => {
  const tmp = tempDir();
  try {
    const file = settingsFile(tmp.dir, {
      lines: {
        'line-1': {
          mm_per_px: 0.05,
          regions: { sealing: SEALING },
          models: { m: { 'scratch-over-2mm': { min_length: 3 } } },
          cameras: { 'cam-2': { mm_per_px: 0.1 } },
        },
        'line-2': { mm_per_px: 0.05, regions: { sealing: SEALING }, models: { m: { 'scratch-over-2mm': false } } },
        'line-3': { mm_per_px: 0.05, regions: { sealing: SEALING } },
        'line-4': {
          mm_per_px: 0.05,
          regions: { sealing: SEALING },
          models: { m: { 'any-dent': { label: 'dent', min_score: 0.5 } } },
        },
      },
    });
    const model = { name: 'm', manifest: { labels: LABELS4, verdict: { ng: {}, rules: EXAMPLE } } };
    const scratch50 = [det('scratch', 100, 300, 50, 4)]; // 2.5 mm at 0.05, 5 mm at 0.1
    const at = (line: string, camera = 'default') => judge(model, scratch50, { file, line, camera });
    assert.equal(at('line-3').verdict, 'ng', 'the model rule: 2.5 mm ≥ 2 mm');
    assert.equal(at('line-1').verdict, 'ok', "line-1's min_length 3 mm: 2.5 mm passes");
    const cam2 = at('line-1', 'cam-2');
    assert.equal(cam2.verdict, 'ng', "cam-2's scale 0.1: 5 mm ≥ 3 mm");
    assert.match(cam2.reasons[0]!.detail, /length 5 mm/);
    assert.equal(at('line-2').verdict, 'ok', 'the rule is off on line-2');
    assert.equal(at('line-9').verdict, 'check', 'a line the file does not list has no scale');
    // A rule the model lacks, added by line-4 only.
    const dent = [det('dent', 300, 300, 10, 10, 0.8)];
    assert.equal(judge(model, dent, { file, line: 'line-4', camera: 'default' }).verdict, 'ng');
    assert.equal(judge(model, dent, { file, line: 'line-4', camera: 'default' }).reasons[0]!.rule, 'any-dent');
    assert.equal(judge(model, dent, { file, line: 'line-3', camera: 'default' }).verdict, 'ok');
    // What the line page shows: where each rule's last change came from, and what is off.
    const shown = (line: string, camera = 'default') => inForceAt(model, { file, line, camera }).inForce;
    assert.deepEqual(
      shown('line-1').rules.map((r) => [r.name, r.origin, r.min_length]),
      [
        ['scratch-over-2mm', 'line', 3],
        ['stain-on-seal', 'model', undefined],
        ['many-stains', 'model', undefined],
      ],
    );
    assert.deepEqual(shown('line-2').disabled, ['scratch-over-2mm']);
    assert.deepEqual(
      shown('line-4').rules.map((r) => [r.name, r.origin]),
      [
        ['scratch-over-2mm', 'model'],
        ['stain-on-seal', 'model'],
        ['many-stains', 'model'],
        ['any-dent', 'line'],
      ],
    );
  } finally {
    tmp.cleanup();
  }
});

test('a line change that does not make a valid rule makes results `check` with the reason', () => {
  const verdict: ModelVerdict = { ng: {}, rules: EXAMPLE };
  const rules = rulesInForce(verdict, LABELS4, {
    overrides: [{ origin: 'line', rules: { 'no-such-rule': { min_length: 1 }, 'scratch-over-2mm': { min_length: 5, max_length: 1 } } }],
  });
  assert.deepEqual(
    rules.problems.map((p) => p.rule),
    ['no-such-rule', 'scratch-over-2mm'],
  );
  const out = evaluateVerdict(rules, [], CAMERA);
  assert.equal(out.verdict, 'check');
  assert.match(out.reasons[0]!.detail, /no label/);
  assert.match(out.reasons[1]!.detail, /min_length 5 > max_length 1/);
});

async function manifestError(verdict: object): Promise<string> {
  const tmp = tempDir();
  try {
    const path = join(tmp.dir, 'model.json');
    writeFileSync(path, JSON.stringify({ labels: LABELS4, verdict: { ng: {}, ...verdict } }));
    await readModelManifest(path);
    return '(no error)';
  } catch (err) {
    return (err as Error).message;
  } finally {
    tmp.cleanup();
  }
}

test('model.json: bad rules fail the load with a message naming the rule and the field', async () => {
  assert.equal(
    await manifestError({
      rules: [
        { name: 'a', label: 'scratch' },
        { name: 'b', label: 'scrach' },
      ],
    }),
    'invalid model.json: verdict.rules[1] ("b"): label "scrach" is not among the model\'s labels (scratch, stain, dent, crack)',
  );
  assert.equal(
    await manifestError({
      rules: [
        { name: 'a', label: 'scratch' },
        { name: 'a', label: ['stain', 'dent'] },
      ],
    }),
    'invalid model.json: verdict.rules[1] ("a"): name "a" is used by verdict.rules[0] too; names must be unique',
  );
  assert.match(
    await manifestError({ rules: [{ name: 'a', label: 'scratch', min_area: 10, max_area: 5 }] }),
    /verdict\.rules\[0\] \("a"\): min_area 10 > max_area 5/,
  );
  assert.match(await manifestError({ rules: [{ name: 'a', label: 'scratch', unit: 'inch' }] }), /^invalid model\.json: \/verdict\/rules\/0\/unit /);
  assert.match(await manifestError({ rules: [{ name: 'a', label: 'scratch', min_score: 2 }] }), /^invalid model\.json: \/verdict\/rules\/0\/min_score /);
  assert.match(await manifestError({ rules: [{ name: 'a', label: 'scratch', min_count: 0 }] }), /\/verdict\/rules\/0\/min_count/);
  assert.match(await manifestError({ rules: [{ name: 'a', label: 'scratch', size: 3 }] }), /\/verdict\/rules\/0\/size/);
  assert.equal(await manifestError({ rules: EXAMPLE }), '(no error)');
});

test('verdict_rules_file: unknown polygons, mm without a scale and bad shapes are refused with the place named', () => {
  const error = (settings: unknown) => {
    try {
      parseVerdictSettings(settings);
      return '(no error)';
    } catch (err) {
      return (err as Error).message;
    }
  };
  assert.equal(
    error({ lines: { 'line-1': { regions: { seal: SEALING }, models: { m: { r: { region: { exclude: ['sealing'] } } } } } } }),
    'lines.line-1.models.m.r: region "sealing" is not defined here (regions: seal)',
  );
  // A camera sees its line's polygons, and may add its own.
  assert.equal(
    error({ lines: { 'line-1': { regions: { seal: SEALING }, cameras: { c: { models: { m: { r: { region: { include: ['seal'] } } } } } } } } }),
    '(no error)',
  );
  assert.equal(
    error({ lines: { 'line-1': { models: { m: { r: { unit: 'mm', min_length: 2 } } } } } }),
    'lines.line-1.models.m.r: unit "mm" needs mm_per_px, which lines.line-1 does not set',
  );
  assert.equal(
    error({ lines: { 'line-1': { mm_per_px: 0.1, cameras: { c: { models: { m: { r: { unit: 'mm', min_length: 2 } } } } } } } }),
    '(no error)',
    "a camera uses its line's scale",
  );
  assert.match(
    error({
      lines: {
        'line-1': {
          regions: {
            seal: [
              [0, 0],
              [1, 1],
            ],
          },
        },
      },
    }),
    /^\/lines\/line-1\/regions\/seal /,
  );
  assert.match(error({ lines: { 'line-1': { mm_per_px: 0 } } }), /^\/lines\/line-1\/mm_per_px /);
  assert.match(error({ lines: { 'line 1': {} } }), /lines\.line 1: line name must match/);
  assert.match(error({ line: {} }), /line/);
  const tmp = tempDir();
  try {
    const path = join(tmp.dir, 'bad.json');
    writeFileSync(path, '{"lines": {');
    assert.throws(() => verdictSettings(path), new RegExp(`^Error: verdict_rules_file ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
  } finally {
    tmp.cleanup();
  }
});

test('start: a bad verdict_rules_file stops the server with the reason', async () => {
  const tmp = tempDir();
  try {
    const file = settingsFile(tmp.dir, { lines: { 'line-1': { models: { m: { r: { unit: 'mm', min_length: 2 } } } } } });
    await assert.rejects(startApp({ models_dir: tmp.dir, verdict_rules_file: file }), /verdict_rules_file .*needs mm_per_px/);
  } finally {
    tmp.cleanup();
  }
});

// Through the server: the fixture model finds scratch a (100 × 50 px, 0.9) on a 640 × 640 image.
const SCRATCH_PX = RAW_BOXES[0]!.w;
const ruleOf = (minLengthMm: number): VerdictRule => ({ name: 'scratch-long', label: 'scratch', min_score: 0.5, unit: 'mm', min_length: minLengthMm });
const modelJson = (rules: object[], note = '') => manifest({ format: 'yolov8', description: `verdict rules test ${note}`, verdict: { ng: {}, rules } });

async function detect(app: FastifyInstance, image: Buffer, line: string): Promise<DetectionResult> {
  const res = await app.inject({ method: 'POST', url: `/v1/detect?model=m&line=${line}`, headers: { 'content-type': 'image/jpeg' }, payload: image });
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as DetectionResult;
}

test('server: rules judge per line with the reason in the answer; a model.json edit takes effect without restart; a bad edit leaves the previous rules serving; a bad new version FAILS', async () => {
  const tmp = tempDir();
  const onnx = buildConstantModel({ output: yolov8Output(), outputShape: [4 + LABELS.length, RAW_BOXES.length + 1], inputWidth: INPUT, inputHeight: INPUT });
  const dir = writeModel(tmp.dir, 'm', '1', onnx, modelJson([ruleOf(2)]));
  const file = settingsFile(tmp.dir, { lines: { 'line-1': { mm_per_px: 0.05 }, 'line-2': { mm_per_px: 0.01 } } });
  const app = await startApp({ models_dir: tmp.dir, model_poll_interval_ms: 100, verdict_rules_file: file });
  const image = await solidImage(INPUT, INPUT, 'jpeg');
  const row = async (version: string) =>
    ((await app.inject('/v1/models')).json().models as { name: string; version: string; state: string; reason?: string }[]).find(
      (m) => m.name === 'm' && m.version === version,
    );
  try {
    // line-1: 100 px × 0.05 = 5 mm ≥ 2 mm: NG, named. line-2: 1 mm: OK. line-3 has no scale: check.
    const ng = await detect(app, image, 'line-1');
    assert.equal(ng.verdict, 'ng');
    assert.deepEqual(
      ng.verdict_reasons?.map((r) => [r.rule, r.outcome]),
      [['scratch-long', 'ng']],
    );
    assert.match(ng.verdict_reasons![0]!.detail, new RegExp(`length ${SCRATCH_PX * 0.05} mm`));
    const ok = await detect(app, image, 'line-2');
    assert.equal(ok.verdict, 'ok');
    assert.equal(ok.verdict_reasons, undefined);
    assert.equal((await detect(app, image, 'line-3')).verdict, 'check');

    // The line page's endpoint shows what is in force.
    const rules = (await app.inject('/v1/lines/line-1/rules')).json();
    assert.equal(rules.cameras[0].camera, '*');
    assert.equal(rules.cameras[0].mm_per_px, 0.05);
    assert.deepEqual(
      rules.cameras[0].models[0].rules.map((r: { name: string; min_length: number; origin: string }) => [r.name, r.min_length, r.origin]),
      [['scratch-long', 2, 'model']],
    );

    // Both are in the API document: the route, and the field of a result.
    const doc = (await app.inject('/openapi.json')).json();
    assert.deepEqual(doc.paths['/v1/lines/{line}/rules'].get.tags, ['lines']);
    assert.ok(JSON.stringify(doc).includes('"verdict_reasons"'), 'verdict_reasons is documented');

    // A good edit: longer than 6 mm. It takes effect without a restart.
    writeFileSync(join(dir, 'model.json'), JSON.stringify(modelJson([ruleOf(6)], 'edit 1')));
    await waitFor(async () => (await detect(app, image, 'line-1')).verdict === 'ok', 'the 6 mm rule to serve', 10_000);

    // A bad edit (a duplicate name, a rule that would make line-1 NG): refused, with the reason; the 6 mm rule still serves.
    writeFileSync(join(dir, 'model.json'), JSON.stringify(modelJson([ruleOf(1), ruleOf(1)], 'bad edit')));
    const refused = await waitFor(async () => ((await row('1'))?.reason?.includes('not applied') ? row('1') : undefined), 'the edit refused', 10_000);
    assert.equal(refused!.state, 'READY');
    assert.match(refused!.reason!, /verdict\.rules\[1\] \("scratch-long"\): name "scratch-long" is used by verdict\.rules\[0\] too/);
    for (let i = 0; i < 3; i++) assert.equal((await detect(app, image, 'line-1')).verdict, 'ok');

    // Fixed: longer than 1 mm. NG again, and the reason is gone.
    writeFileSync(join(dir, 'model.json'), JSON.stringify(modelJson([ruleOf(1)], 'fixed')));
    await waitFor(async () => (await detect(app, image, 'line-1')).verdict === 'ng', 'the 1 mm rule to serve', 10_000);
    assert.equal((await row('1'))!.reason, undefined);
    assert.equal((await detect(app, image, 'line-2')).verdict, 'ng', 'line-2: 100 px × 0.01 = 1 mm, and min_length is inclusive');

    // verdict_rules_file is reloaded too: line-2 at 0.005 mm/px (0.5 mm) turns OK...
    writeFileSync(file, JSON.stringify({ lines: { 'line-1': { mm_per_px: 0.05 }, 'line-2': { mm_per_px: 0.005 } } }));
    await waitFor(async () => (await detect(app, image, 'line-2')).verdict === 'ok', 'the new scale of line-2 to serve', 10_000);
    // ...and a bad change is refused, with the reason on the line's rules; the settings before it serve.
    writeFileSync(file, JSON.stringify({ lines: { 'line-2': { mm_per_px: -1 } } }));
    const lineRules = await waitFor(
      async () => {
        const body = (await app.inject('/v1/lines/line-2/rules')).json();
        return body.file_error ? body : undefined;
      },
      'the bad file refused',
      10_000,
    );
    assert.match(lineRules.file_error, /^verdict_rules_file .*: \/lines\/line-2\/mm_per_px /);
    assert.equal(lineRules.cameras[0].mm_per_px, 0.005);
    assert.equal((await detect(app, image, 'line-2')).verdict, 'ok');
    assert.equal((await detect(app, image, 'line-1')).verdict, 'ng');

    // A new version whose rules are bad FAILS with the reason; version 1 keeps serving.
    writeModel(tmp.dir, 'm', '2', onnx, modelJson([{ name: 'x', label: 'scrach' }]));
    const failed = await waitFor(async () => ((await row('2'))?.state === 'FAILED' ? row('2') : undefined), 'version 2 FAILED', 10_000);
    assert.match(failed!.reason!, /verdict\.rules\[0\] \("x"\): label "scrach" is not among the model's labels/);
    const still = await detect(app, image, 'line-1');
    assert.equal(still.model.version, '1');
    assert.equal(still.verdict, 'ng');
  } finally {
    await app.close();
    tmp.cleanup();
  }
});
