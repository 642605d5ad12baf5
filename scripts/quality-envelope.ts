// Measures the image quality of every image in a folder exactly as the server does
// (decode + letterbox to the model's input, then src/inference/quality.ts on the
// image without its padding) and prints the envelope to put under `quality` in the
// model's model.json (docs/models.md#image-quality-gate).
//   node --import tsx scripts/quality-envelope.ts DIR [--model models/defects/1] [--margin 0.25]
//   node --import tsx scripts/quality-envelope.ts DIR --model models/defects/1 --flag
// --flag measures the folder against the model's current envelope instead and
// prints how many images it would mark `check`, and why (the in-distribution rate).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readModelManifest } from '../src/inference/model-manifest.js';
import { prepareImage } from '../src/inference/preprocess.js';
import { QUALITY_MEASURES, qualityReasons, timedMeasure, type QualityEnvelope, type QualityMeasure, type QualityMeasures } from '../src/inference/quality.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string', default: 'models/defects/1' },
    margin: { type: 'string', default: '0.25' },
    flag: { type: 'boolean', default: false },
  },
});
const dir = positionals[0];
if (!dir) {
  console.error('usage: node --import tsx scripts/quality-envelope.ts DIR [--model DIR] [--margin 0.25] [--flag]');
  process.exit(2);
}
const margin = Number(values.margin);

function images(root: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(root).sort()) {
    const path = join(root, name);
    if (statSync(path).isDirectory()) out.push(...images(path));
    else if (/\.(jpe?g|png|webp)$/i.test(name)) out.push(path);
  }
  return out;
}

const manifest = await readModelManifest(join(values.model, 'model.json'));
const inputWidth = manifest.input?.width ?? 640;
const inputHeight = manifest.input?.height ?? 640;
const files = images(dir);
if (files.length === 0) {
  console.error(`no JPEG, PNG or WebP image under ${dir}`);
  process.exit(1);
}

const measured: { file: string; m: QualityMeasures }[] = [];
const costs: number[] = [];
for (const file of files) {
  const prepared = await prepareImage(readFileSync(file), { inputWidth, inputHeight, maxPixels: 40_000_000 });
  const { measures, ms } = timedMeasure(prepared.pixels, prepared.letterbox);
  measured.push({ file, m: measures });
  costs.push(ms);
}
costs.sort((a, b) => a - b);
const q = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
console.log(
  `${files.length} images from ${dir}, model input ${inputWidth}×${inputHeight}; measuring took median ${q(costs, 0.5).toFixed(3)} ms, p99 ${q(costs, 0.99).toFixed(3)} ms per image`,
);

if (values.flag) {
  const envelope = manifest.quality;
  if (!envelope) {
    console.error(`${values.model}/model.json has no quality envelope`);
    process.exit(1);
  }
  let flagged = 0;
  for (const { file, m } of measured) {
    const reasons = qualityReasons(m, envelope);
    if (reasons.length) {
      flagged++;
      console.log(`check ${file}: ${reasons.join('; ')}`);
    }
  }
  console.log(`flagged ${flagged} of ${measured.length} (${((100 * flagged) / measured.length).toFixed(2)} %)`);
  process.exit(0);
}

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;
console.log('measure          min        p1    median       p99       max');
const envelope: QualityEnvelope = {};
for (const measure of QUALITY_MEASURES) {
  const sorted = measured.map((x) => x.m[measure]).sort((a, b) => a - b);
  const [min, max] = [sorted[0]!, sorted[sorted.length - 1]!];
  console.log(`${measure.padEnd(15)} ${[min, q(sorted, 0.01), q(sorted, 0.5), q(sorted, 0.99), max].map((v) => String(round(v, 4)).padStart(9)).join(' ')}`);
  envelope[measure] = bounds(measure, min, max);
}
console.log(`\n"quality": ${JSON.stringify(envelope)}`);

/**
 * The observed range widened by `margin`, so that a held-out image a little
 * beyond the training images' extremes is not flagged. Brightness, contrast and
 * the clipped shares have physical limits (0–255, 0–127.5, 0–1): each bound moves
 * toward its limit by `margin` of the gap, so a wide margin never makes a bound
 * meaningless (below 0) and a black or white frame stays outside. Sharpness has no
 * upper limit and spans orders of magnitude (a soft close-up, a busy downscaled
 * scene), so it is widened by `margin` of its observed range on a log scale. The
 * clipped shares only get an upper bound: a few blown highlights on a shiny part
 * are normal and their share varies a lot from image to image; a frame mostly
 * clipped is not.
 */
function bounds(measure: QualityMeasure, min: number, max: number): { min?: number; max?: number } {
  const toward = (v: number, limit: number) => v + (limit - v) * margin;
  switch (measure) {
    case 'sharpness': {
      const [lo, hi] = [Math.log(Math.max(min, 1e-3)), Math.log(Math.max(max, 1e-3))];
      const w = margin * (hi - lo);
      return { min: round(Math.exp(lo - w), 1), max: round(Math.exp(hi + w), 0) };
    }
    case 'brightness':
      return { min: round(toward(min, 0), 1), max: round(toward(max, 255), 1) };
    case 'contrast':
      return { min: round(toward(min, 0), 1), max: round(toward(max, 127.5), 1) };
    case 'dark_fraction':
    case 'bright_fraction':
      return { max: round(toward(max, 1), 3) };
  }
}
