import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../src/config/schema.js';
import type { DetectionResult, Verdict } from '../src/protocol/results.js';
import { startApp, tempDir, writeDecoderModels, type LogCapture } from './helpers/fixtures.js';

/** A server with snapshots on, its data (results.db, snapshots) and models in a fresh folder. */
export async function startSnapshotApp(overrides: Partial<Config> = {}, opts: { logs?: LogCapture } = {}) {
  const tmp = tempDir('sightline-snapshots-');
  writeDecoderModels(join(tmp.dir, 'models'));
  const app = await startApp(
    {
      data_dir: tmp.dir,
      models_dir: join(tmp.dir, 'models'),
      default_model: 'v8',
      store_url: `sqlite:${join(tmp.dir, 'results.db')}`,
      snapshots: true,
      ...overrides,
    },
    opts,
  );
  let closed = false;
  return {
    app,
    dir: tmp.dir,
    snapshotsDir: overrides.snapshots_dir || join(tmp.dir, 'snapshots'),
    async close() {
      if (!closed) await app.close();
      closed = true;
    },
    async cleanup() {
      await this.close();
      tmp.cleanup();
    },
  };
}

export function detect(app: FastifyInstance, id: string, image: Buffer, query = '', type = 'image/jpeg') {
  return app.inject({ method: 'POST', url: `/v1/detect?${query}`, headers: { 'content-type': type, 'x-request-id': id }, payload: image });
}

/** Results of synchronous requests are stored without holding up the answer: wait for the row. */
export async function waitForResult(app: FastifyInstance, id: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await app.inject(`/v1/results/${id}`)).statusCode === 200) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`result ${id} never stored`);
}

/** Sum of a counter's series whose labels match. */
export async function counter(app: FastifyInstance, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = app.sightline.metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((sum, v) => sum + v.value, 0);
}

/** Bytes of every file under a folder (0 when it does not exist). */
export function folderBytes(dir: string): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of entries) {
    const path = join(dir, name);
    try {
      const s = statSync(path);
      total += s.isDirectory() ? folderBytes(path) : s.size;
    } catch {
      // removed while we looked
    }
  }
  return total;
}

export function fakeResult(id: string, verdict: Verdict, line = 'burst', camera = 'default'): DetectionResult {
  return {
    request_id: id,
    line,
    camera,
    model: { name: 'v8', version: '1' },
    image: { width: 32, height: 24 },
    detections: [],
    verdict,
    timings_ms: { queue: 0, decode: 0, preprocess: 0, infer: 0, postprocess: 0, total: 0 },
  };
}

/** A small JPEG of noise: each seed gives other bytes and another size. */
export function noiseJpeg(width: number, height: number, seed: number): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  let x = seed * 2654435761;
  for (let i = 0; i < raw.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    raw[i] = x >>> 24;
  }
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 80 })
    .toBuffer();
}

/** The RGB of one pixel of an encoded image. */
export async function pixelAt(image: Buffer, x: number, y: number): Promise<[number, number, number]> {
  const { data, info } = await sharp(image).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const i = (Math.round(y) * info.width + Math.round(x)) * info.channels;
  return [data[i]!, data[i + 1]!, data[i + 2]!];
}

export const isRed = ([r, g, b]: [number, number, number]) => r > 180 && g < 90 && b < 90;
/** solidImage's background, (10, 200, 30). */
export const isBackground = ([r, g, b]: [number, number, number]) => r < 70 && g > 150 && b < 90;
