/**
 * Tiled inference on large frames (issue 20, part 2): the built-in model
 * (models/defects/1, 416 × 416) on 2448 × 2048 frames, each made of four
 * 1224 × 1024 images of training/generate.py in a 2 × 2 grid (labels shifted with
 * them), measured with `sightline eval`'s own code (evaluateModel: the serving
 * path) untiled and tiled. Images run one at a time, so the mean total is the
 * latency of one frame on this machine.
 *
 *   /usr/bin/python3 training/generate.py --out /tmp/tiling-parts --count 160 --seed 7000 --sizes 1224x1024
 *   node --import tsx bench/tiling.ts --parts /tmp/tiling-parts [--frames 40] [--out /tmp/tiling-bench]
 *
 * Prints a Markdown table (bench/results/2026-12-03-tiling.md has the figures).
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp, { type OverlayOptions } from 'sharp';
import { defaultConfig } from '../src/config/load.js';
import { readDataset, type Dataset } from '../src/eval/dataset.js';
import { evaluateModel, type EvalRun } from '../src/eval/run.js';
import { repositoryOptions } from '../src/inference/from-config.js';
import { ModelRepository } from '../src/inference/repository.js';
import { createLogger } from '../src/logger.js';
import type { TilingMode } from '../src/protocol/options.js';

const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
const PART_W = 1224;
const PART_H = 1024;

const { values } = parseArgs({
  options: {
    parts: { type: 'string' },
    frames: { type: 'string', default: '40' },
    out: { type: 'string', default: '/tmp/sightline-tiling-bench' },
  },
});
if (!values.parts) throw new Error('--parts DIR (made by training/generate.py --sizes 1224x1024) is required');
const partsDir = values.parts;
const frames = Number(values.frames);
const out = values.out!;

/** Four parts side by side, two rows: one 2448 × 2048 frame and its YOLO labels. */
async function composeFrames(): Promise<string> {
  const dir = join(out, 'frames');
  if (existsSync(join(dir, 'data.yaml'))) return dir;
  mkdirSync(join(dir, 'images'), { recursive: true });
  mkdirSync(join(dir, 'labels'), { recursive: true });
  const names = readdirSync(join(partsDir, 'images'))
    .filter((n) => n.endsWith('.jpg'))
    .sort();
  if (names.length < 4 * frames) throw new Error(`${partsDir} has ${names.length} images; ${4 * frames} needed`);
  for (let f = 0; f < frames; f++) {
    const composite: OverlayOptions[] = [];
    const rows: string[] = [];
    for (let q = 0; q < 4; q++) {
      const name = names[4 * f + q]!;
      const left = (q % 2) * PART_W;
      const top = Math.floor(q / 2) * PART_H;
      composite.push({ input: join(partsDir, 'images', name), left, top });
      const text = readFileSync(join(partsDir, 'labels', name.replace(/\.jpg$/, '.txt')), 'utf8');
      for (const line of text.split('\n').filter(Boolean)) {
        const [c, cx, cy, w, h] = line.split(' ').map(Number) as [number, number, number, number, number];
        rows.push(
          `${c} ${((left + cx * PART_W) / (2 * PART_W)).toFixed(6)} ${((top + cy * PART_H) / (2 * PART_H)).toFixed(6)} ${((w * PART_W) / (2 * PART_W)).toFixed(6)} ${((h * PART_H) / (2 * PART_H)).toFixed(6)}`,
        );
      }
    }
    const frame = await sharp({ create: { width: 2 * PART_W, height: 2 * PART_H, channels: 3, background: { r: 0, g: 0, b: 0 } } })
      .composite(composite)
      .jpeg({ quality: 90 })
      .toBuffer();
    const name = String(f).padStart(6, '0');
    writeFileSync(join(dir, 'images', `${name}.jpg`), frame);
    writeFileSync(join(dir, 'labels', `${name}.txt`), rows.map((r) => `${r}\n`).join(''));
  }
  writeFileSync(join(dir, 'data.yaml'), 'names:\n  0: scratch\n  1: dent\n  2: crack\n  3: stain\n');
  return dir;
}

/** The built-in model as `defects` (no tiling block) and as variants with one. */
function modelRepository(): string {
  const repo = join(out, 'models');
  const source = join(PROJECT_ROOT, 'models', 'defects', '1');
  const manifest = JSON.parse(readFileSync(join(source, 'model.json'), 'utf8')) as Record<string, unknown>;
  const variants: Record<string, object | undefined> = {
    defects: undefined,
    'defects-s2': { scale: 2 },
    'defects-s3': { scale: 3 },
    'defects-nofull': { full_view: false },
  };
  for (const [name, tiling] of Object.entries(variants)) {
    const dir = join(repo, name, '1');
    mkdirSync(dir, { recursive: true });
    cpSync(join(source, 'model.onnx'), join(dir, 'model.onnx'));
    writeFileSync(join(dir, 'model.json'), JSON.stringify(tiling ? { ...manifest, tiling } : manifest, null, 2));
  }
  return repo;
}

const f3 = (v: number) => v.toFixed(3);
const f1 = (v: number) => v.toFixed(1);

async function main(): Promise<void> {
  const frameDir = await composeFrames();
  const frameSet = readDataset(frameDir);
  const partSet: Dataset = readDataset(partsDir);
  partSet.images = partSet.images.slice(0, 4 * frames);
  const config = defaultConfig({ models_dir: modelRepository() });
  const models = new ModelRepository(repositoryOptions(config, createLogger('warn')));
  await models.loadAll();
  const rows: string[] = [];
  const measure = async (label: string, ref: string, dataset: Dataset, tiling: TilingMode | undefined) => {
    // mAP at the usual evaluation settings (conf 0.001, NMS IoU 0.7), one image at a time.
    const r: EvalRun = await evaluateModel(models.findReady(ref), dataset, {
      conf: 0.001,
      iou: 0.7,
      maxPixels: config.max_image_pixels,
      concurrency: 1,
      tiling,
    });
    const m = r.metrics;
    const line = `| ${label} | ${m.images} | ${f1(r.runsPerImage)} | ${f3(m.mean.map50)} | ${f3(m.mean.map50_95)} | ${f3(m.mean.precision)} | ${f3(m.mean.recall)} | ${f1(r.inferMs)} | ${f1(r.totalMs)} |`;
    rows.push(line);
    process.stderr.write(`${line}\n`);
  };
  await measure('frames, tiling off (one 416 view of 2448 × 2048)', 'defects', frameSet, 'off');
  await measure('frames, tiling on, scale 1 (48 tiles + full view)', 'defects', frameSet, 'on');
  await measure('frames, tiling on, scale 1, no full view (48 tiles)', 'defects-nofull', frameSet, 'on');
  await measure('frames, tiling on, scale 2 (12 tiles + full view)', 'defects-s2', frameSet, 'on');
  await measure('frames, tiling on, scale 3 (6 tiles + full view)', 'defects-s3', frameSet, 'on');
  await measure('reference: the 1224 × 1024 parts alone, untiled', 'defects', partSet, 'off');
  await models.close();
  process.stdout.write(
    [
      '| run | images | inferences / image | mAP50 | mAP50-95 | P | R | infer ms / image | total ms / image |',
      '|---|---|---|---|---|---|---|---|---|',
      ...rows,
    ].join('\n') + '\n',
  );
}

await main();
