import { performance } from 'node:perf_hooks';
import type { Priority } from '../protocol/options.js';
import type { Detection, DetectionResult, StageTimings, TileRun } from '../protocol/results.js';
import type { Admission, BatchedOutput } from './batcher.js';
import { letterboxGeometry, unletterboxBox, type Letterbox } from './letterbox.js';
import { candidateSettings, imageCandidates, type CandidateOptions } from './postprocess/candidates.js';
import { decodeRaw, regionPixels, type OpenedImage, type PixelRect } from './preprocess.js';
import type { ReadyModel } from './repository.js';
import { EDGE_TOLERANCE_INPUT_PX, mergeTiled, type PlacedCandidate, type TilePlan } from './tiling.js';

/** detect()'s options that the tiled path reads. */
export interface TiledOptions extends CandidateOptions {
  priority?: Priority | undefined;
  /** Absolute deadline in performance.now() milliseconds. */
  deadline?: number | undefined;
  /** The original's size when the image is a copy scaled down at the edge (already checked against it). */
  sourceSize?: { width: number; height: number } | undefined;
  /** Sees the letterboxed whole image (the image-quality gate), as on the untiled path. */
  onPrepared?: ((pixels: Uint8Array, letterbox: Letterbox) => void) | undefined;
}

/** What detect() answers, less the verdict (detect() decides it, as for one view). */
export type TiledOutcome = Pick<DetectionResult, 'image' | 'detections' | 'timings_ms' | 'tiles'>;

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

interface Run {
  rect: PixelRect;
  lb: Letterbox;
  fullView: boolean;
}

/**
 * The tiled path of detect() (docs/models.md#tiled-inference), from an opened image and
 * the admission it already holds. The image is decoded once at full resolution; each
 * tile (and the full view) is cut from those pixels and letterboxed to the input.
 *
 * Admission: the request took one place in the model's queue before anything was
 * decoded, as every request does; its tiles then enter the queue together, so the
 * queue's depth (and so the refusal of later requests) counts every tile waiting.
 * The place is held until the last tile is queued: the batcher sees more work
 * coming, so it batches the tiles (up to max_batch_size) and spreads them over the
 * model's instances rather than running the first alone on the lone-request session.
 */
export async function detectTiled(
  model: ReadyModel,
  opened: OpenedImage,
  plan: TilePlan,
  admission: Admission,
  options: TiledOptions,
  t0: number,
): Promise<TiledOutcome> {
  const { inputWidth, inputHeight, manifest } = model;
  let runs: Run[];
  let pixels: Uint8Array[];
  let width: number;
  let height: number;
  try {
    const raw = await decodeRaw(opened);
    ({ width, height } = raw);
    runs = plan.tiles.map((rect) => ({ rect, lb: letterboxGeometry(rect.width, rect.height, inputWidth, inputHeight), fullView: false }));
    const whole: Run = { rect: { x: 0, y: 0, width, height }, lb: letterboxGeometry(width, height, inputWidth, inputHeight), fullView: true };
    const [wholePixels, ...tilePixels] = await Promise.all(
      [plan.fullView || options.onPrepared ? whole : undefined, ...runs].map((r) => (r ? regionPixels(raw, r.rect, r.lb) : undefined)),
    );
    // The quality gate measures the whole image, as it would without tiling; before the transfer to the worker thread.
    if (wholePixels) options.onPrepared?.(wholePixels, whole.lb);
    pixels = tilePixels as Uint8Array[];
    if (plan.fullView && wholePixels) {
      runs.push(whole);
      pixels.push(wholePixels);
    }
  } catch (err) {
    admission.release();
    throw err;
  }
  const t1 = performance.now();
  const priority = options.priority ?? 'normal';
  const last = pixels.length - 1;
  // Each tile's boxes are decoded in the instance's thread (in the tile's letterbox, as imageCandidates gives them).
  const settings = candidateSettings(manifest, options);
  const outputs = await Promise.all(
    pixels.map((p, i) => (i < last ? model.batcher.enqueue(p, priority, options.deadline, settings) : admission.submit(p, settings))),
  );
  const t2 = performance.now();

  const placed: PlacedCandidate[] = [];
  for (const [i, out] of outputs.entries()) {
    const run = runs[i]!;
    for (const c of out.candidates ?? imageCandidates(model, out.output, out.dims, out.index, options)) {
      const box = unletterboxBox(c, run.lb);
      // A box that lies wholly in the letterbox padding has no area left in the image.
      if (box.x2 - box.x1 <= 0 || box.y2 - box.y1 <= 0) continue;
      placed.push({
        x1: box.x1 + run.rect.x,
        y1: box.y1 + run.rect.y,
        x2: box.x2 + run.rect.x,
        y2: box.y2 + run.rect.y,
        score: c.score,
        classId: c.classId,
        tile: run.fullView ? -1 : i,
      });
    }
  }
  const merged = mergeTiled(placed, plan.tiles, width, height, {
    iouThreshold: options.iou ?? manifest.iou,
    maxDetections: options.maxDetections ?? manifest.max_detections,
    agnostic: options.agnostic ?? manifest.agnostic_nms,
    edgeTolerance: EDGE_TOLERANCE_INPUT_PX * plan.scale,
  });
  // Edge resize: the received image is a scaled copy; answers are in the original's pixels.
  const source = options.sourceSize ?? { width, height };
  const sx = source.width / width;
  const sy = source.height / height;
  const detections: Detection[] = merged.map((c) => ({
    label: manifest.labels[c.classId]!,
    class_id: c.classId,
    score: round(c.score, 4),
    box: { x1: round(c.x1 * sx, 2), y1: round(c.y1 * sy, 2), x2: round(c.x2 * sx, 2), y2: round(c.y2 * sy, 2) },
  }));
  const tiles: TileRun[] = runs.map((run, i) => ({
    x: Math.round(run.rect.x * sx),
    y: Math.round(run.rect.y * sy),
    width: Math.round(run.rect.width * sx),
    height: Math.round(run.rect.height * sy),
    full_view: run.fullView,
    infer_ms: round(outputs[i]!.inferMs, 3),
    batch_size: outputs[i]!.batchSize,
  }));
  const t3 = performance.now();
  const timings: StageTimings = {
    queue: round(Math.max(...outputs.map((o) => o.queueMs)), 3),
    decode: round(t1 - t0, 3),
    preprocess: round(
      sumPerBatch(outputs, (o) => o.preprocessMs),
      3,
    ),
    infer: round(
      sumPerBatch(outputs, (o) => o.inferMs),
      3,
    ),
    postprocess: round(t3 - t2 + sumPerBatch(outputs, (o) => o.postprocessMs ?? 0), 3),
    total: round(t3 - t0, 3),
  };
  return {
    image: { width: source.width, height: source.height },
    detections,
    timings_ms: timings,
    tiles: { count: runs.length, scale: round(plan.scale, 3), tiles },
  };
}

/** A stage's time over the batches the tiles ran in, each batch counted once (its tiles share one output). */
function sumPerBatch(outputs: readonly BatchedOutput[], ms: (o: BatchedOutput) => number): number {
  const seen = new Set<Float32Array>();
  let sum = 0;
  for (const o of outputs) {
    if (seen.has(o.output)) continue;
    seen.add(o.output);
    sum += ms(o);
  }
  return sum;
}
