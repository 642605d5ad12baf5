import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { defaultConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { buildApp } from '../../src/server/app.js';
import { createLogger } from '../../src/logger.js';
import { buildConstantModel, writeModel } from './onnx-builder.js';

export const LABELS = ['scratch', 'dent', 'crack'];
export const INPUT = 640;

/** A temporary directory removed by the returned cleanup. */
export function tempDir(prefix = 'sightline-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Known raw outputs in letterboxed 640×640 pixels. Boxes a and b overlap (same
 * class), c overlaps a with another class, d is below the default confidence.
 */
export const RAW_BOXES = [
  { cx: 320, cy: 320, w: 100, h: 50, classId: 0, score: 0.9 }, // a
  { cx: 325, cy: 322, w: 100, h: 50, classId: 0, score: 0.8 }, // b: IoU with a ≈ 0.86
  { cx: 322, cy: 318, w: 100, h: 50, classId: 1, score: 0.7 }, // c: other class
  { cx: 100, cy: 200, w: 40, h: 40, classId: 2, score: 0.1 }, // d: below conf 0.25
  { cx: 600, cy: 400, w: 100, h: 100, classId: 2, score: 0.6 }, // e: reaches past the image edge
];

/** yolov8 layout [4+C, A]: row-major, one row per field. */
export function yolov8Output(): Float32Array {
  const A = RAW_BOXES.length + 1; // one empty anchor
  const rows = 4 + LABELS.length;
  const out = new Float32Array(rows * A);
  RAW_BOXES.forEach((b, a) => {
    out[0 * A + a] = b.cx;
    out[1 * A + a] = b.cy;
    out[2 * A + a] = b.w;
    out[3 * A + a] = b.h;
    out[(4 + b.classId) * A + a] = b.score;
  });
  return out;
}

/** yolov5 layout [A, 5+C]; objectness 1 except d, so score = class score. */
export function yolov5Output(): Float32Array {
  const stride = 5 + LABELS.length;
  const out = new Float32Array((RAW_BOXES.length + 1) * stride);
  RAW_BOXES.forEach((b, a) => {
    out.set([b.cx, b.cy, b.w, b.h, 1], a * stride);
    out[a * stride + 5 + b.classId] = b.score;
  });
  return out;
}

/** end2end layout [K, 6]: x1, y1, x2, y2, score, class (already NMS-ed: b left out). */
export function end2endOutput(): Float32Array {
  const kept = RAW_BOXES.filter((_, i) => i !== 1);
  const out = new Float32Array((kept.length + 1) * 6);
  for (const [k, b] of kept.entries()) out.set([b.cx - b.w / 2, b.cy - b.h / 2, b.cx + b.w / 2, b.cy + b.h / 2, b.score, b.classId], k * 6);
  return out;
}

export function manifest(extra: object = {}) {
  return {
    labels: LABELS,
    input: { width: INPUT, height: INPUT },
    conf: 0.25,
    iou: 0.45,
    max_detections: 100,
    verdict: { ng: { scratch: 0.5, crack: 0.5 } },
    ...extra,
  };
}

/** A model repository with one constant model per output format. */
export function writeDecoderModels(repo: string): void {
  const anchors = RAW_BOXES.length + 1;
  writeModel(
    repo,
    'v8',
    '1',
    buildConstantModel({ output: yolov8Output(), outputShape: [4 + LABELS.length, anchors], inputWidth: INPUT, inputHeight: INPUT }),
    manifest({ format: 'yolov8' }),
  );
  // No format in model.json: detected from the [1, A, 5+C] shape.
  writeModel(
    repo,
    'v5',
    '1',
    buildConstantModel({ output: yolov5Output(), outputShape: [anchors, 5 + LABELS.length], inputWidth: INPUT, inputHeight: INPUT }),
    manifest(),
  );
  writeModel(
    repo,
    'e2e',
    '1',
    buildConstantModel({ output: end2endOutput(), outputShape: [RAW_BOXES.length, 6], inputWidth: INPUT, inputHeight: INPUT }),
    manifest({ format: 'end2end' }),
  );
}

export async function solidImage(width: number, height: number, format: 'jpeg' | 'png' | 'webp', channels: 1 | 3 | 4 = 3): Promise<Buffer> {
  const background = channels === 4 ? { r: 10, g: 200, b: 30, alpha: 0.5 } : { r: 10, g: 200, b: 30 };
  let img = sharp({ create: { width, height, channels: channels === 1 ? 3 : channels, background } });
  if (channels === 1) img = img.toColourspace('b-w');
  return img[format]().toBuffer();
}

/** Captures pino JSON lines for assertions. */
export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString().split('\n')) if (line.trim()) this.lines.push(JSON.parse(line));
    cb();
  }
}

export async function startApp(overrides: Partial<Config>, opts: { wait?: boolean; logs?: LogCapture } = {}): Promise<FastifyInstance> {
  // Snapshots off unless a test turns them on: they would write result images under ./data.
  const config = defaultConfig({
    log_level: 'info',
    intra_op_threads: 1,
    store_url: 'sqlite::memory:',
    queue_url: 'sqlite::memory:',
    snapshots: false,
    ...overrides,
  });
  const logger = createLogger(opts.logs ? 'info' : 'silent', opts.logs);
  return buildApp(config, { logger, waitForModels: opts.wait ?? true });
}
