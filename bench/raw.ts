/**
 * (a) Raw ONNX Runtime throughput through the project's OnnxRunner: batch size ×
 * thread layout, each instance in a worker thread of its own. Inputs are
 * pre-allocated letterbox-grey uint8 images, so a figure includes the worker's
 * uint8 HWC → float32 CHW conversion and the message hop, and nothing else.
 */
import { performance } from 'node:perf_hooks';
import { OnnxRunner } from '../src/inference/onnx-runner.js';
import { LETTERBOX_PAD_VALUE } from '../src/inference/letterbox.js';
import { epochMs } from './stats.js';

export interface Layout {
  instances: number;
  intraOpThreads: number;
  /** ONNX Runtime's intra-op spinning; left out: ONNX Runtime's default (on). */
  spinning?: boolean;
  /** Threads of the first instance's lone-request session (the server's lone_request_threads); 0 or absent: none. */
  loneRequestThreads?: number;
}

export interface RawCell extends Layout {
  batch: number;
  runs: number;
  images: number;
  seconds: number;
  /** Images per second, wall clock, conversion and hop included. */
  imagesPerSec: number;
  /** Images per second if only session.run counted (per instance, summed). */
  sessionImagesPerSec: number;
  meanRunMs: number;
  meanConvertMs: number;
  meanSessionMs: number;
  /** epochMs() at the start and end of the measurement (for the machine-load check). */
  startedMs: number;
  endedMs: number;
  /** Cores other processes used meanwhile (filled in by the harness). */
  foreignCores?: number;
}

export interface RawOptions {
  modelPath: string;
  inputName?: string;
  width: number;
  height: number;
  batches: number[];
  layouts: Layout[];
  seconds: number;
  /** Called as each cell finishes (progress output). */
  onCell?: (cell: RawCell) => void;
}

export function layoutName(l: Layout): string {
  const multi = l.intraOpThreads > 1 || (l.loneRequestThreads ?? 0) > 1;
  const spin = l.spinning === undefined || !multi ? '' : l.spinning ? ', spin' : ', no spin';
  const lone = (l.loneRequestThreads ?? 0) > 1 ? ` + lone ${l.loneRequestThreads} thr` : '';
  return `${l.instances} inst × ${l.intraOpThreads} thr${lone}${spin}`;
}

export async function startInstances(modelPath: string, layout: Layout, inputName?: string): Promise<OnnxRunner[]> {
  const runners: OnnxRunner[] = [];
  try {
    for (let i = 0; i < layout.instances; i++) {
      runners.push(
        await OnnxRunner.create(modelPath, {
          intraOpThreads: layout.intraOpThreads,
          interOpThreads: 1,
          // A layout's spinning is every session's, the lone-request session's too.
          ...(layout.spinning === undefined ? {} : { intraOpSpinning: layout.spinning, loneRequestSpinning: layout.spinning }),
          // Only the first instance: the batcher uses the first that has one.
          ...(i === 0 && (layout.loneRequestThreads ?? 0) > 1 ? { loneRequestThreads: layout.loneRequestThreads } : {}),
          ...(inputName ? { inputName } : {}),
        }),
      );
    }
  } catch (err) {
    await Promise.all(runners.map((r) => r.close()));
    throw err;
  }
  return runners;
}

async function measureCell(runners: OnnxRunner[], o: RawOptions, batch: number, layout: Layout): Promise<RawCell> {
  const image = new Uint8Array(o.width * o.height * 3).fill(LETTERBOX_PAD_VALUE);
  const images = Array.from({ length: batch }, () => image);
  // Warm-up: one run per instance at this batch size (allocations, kernel choice).
  await Promise.all(runners.map((r) => r.run(images, o.width, o.height)));
  let runs = 0;
  let convertMs = 0;
  let sessionMs = 0;
  const perInstanceSession = runners.map(() => 0);
  const perInstanceImages = runners.map(() => 0);
  const startedMs = epochMs();
  const t0 = performance.now();
  const deadline = t0 + o.seconds * 1000;
  await Promise.all(
    runners.map(async (runner, i) => {
      while (performance.now() < deadline) {
        const out = await runner.run(images, o.width, o.height);
        runs++;
        convertMs += out.preprocessMs;
        sessionMs += out.inferMs;
        perInstanceSession[i]! += out.inferMs;
        perInstanceImages[i]! += batch;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const total = runs * batch;
  const sessionRate = perInstanceImages.reduce((sum, n, i) => sum + n / (perInstanceSession[i]! / 1000), 0);
  return {
    ...layout,
    batch,
    runs,
    images: total,
    seconds,
    imagesPerSec: total / seconds,
    sessionImagesPerSec: sessionRate,
    meanRunMs: (seconds * 1000 * runners.length) / Math.max(1, runs),
    meanConvertMs: convertMs / Math.max(1, runs),
    meanSessionMs: sessionMs / Math.max(1, runs),
    startedMs,
    endedMs: epochMs(),
  };
}

/** Runs the whole sweep; instances are created once per layout and closed after it. */
export async function rawSweep(o: RawOptions): Promise<RawCell[]> {
  const cells: RawCell[] = [];
  for (const layout of o.layouts) {
    const runners = await startInstances(o.modelPath, layout, o.inputName);
    try {
      for (const batch of o.batches) {
        const cell = await measureCell(runners, o, batch, layout);
        cells.push(cell);
        o.onCell?.(cell);
      }
    } finally {
      await Promise.all(runners.map((r) => r.close()));
    }
  }
  return cells;
}

export function bestCell(cells: readonly RawCell[]): RawCell {
  if (cells.length === 0) throw new Error('no raw measurements');
  return cells.reduce((best, c) => (c.imagesPerSec > best.imagesPerSec ? c : best));
}
