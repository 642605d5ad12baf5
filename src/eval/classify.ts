import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { detect } from '../inference/detector.js';
import type { ReadyModel } from '../inference/repository.js';

// `sightline eval` for classification models (docs/models.md#task-types): an
// ImageFolder dataset, top-1 / top-5 accuracy and per-class precision and recall.

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);

export interface ClassDataset {
  /** The class folders, sorted. */
  classes: string[];
  images: { path: string; label: string }[];
}

/**
 * Reads an ImageFolder dataset: one folder per class, named as the model's label,
 * holding that class's images (`DIR/<label>/*.jpg`, any depth below it).
 */
export function readClassDataset(dir: string): ClassDataset {
  const classes = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  if (classes.length === 0) throw new Error(`${dir} has no class folders (ImageFolder layout expected: DIR/<label>/*.jpg)`);
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
  const images = classes.flatMap((label) =>
    walk(join(dir, label))
      .filter((p) => IMAGE_EXTENSIONS.has(extname(p).toLowerCase()))
      .sort()
      .map((path) => ({ path, label })),
  );
  return { classes, images };
}

/** Whether a folder holds a detection dataset (Ultralytics layout) rather than class folders. */
export function isDetectionDataset(dir: string): boolean {
  return existsSync(join(dir, 'images'));
}

export interface ClassScores {
  class_id: number;
  label: string;
  /** Images of this class. */
  instances: number;
  /** Of the images predicted (top-1) as this class, the share that are. */
  precision: number;
  /** Of the images of this class, the share predicted (top-1) as it. */
  recall: number;
}

export interface ClassificationMetrics {
  images: number;
  /** Top-1 accuracy. */
  accuracy: number;
  /** The true class among the five most probable. */
  top5_accuracy: number;
  classes: ClassScores[];
  /** Means over classes that have images. */
  mean: { precision: number; recall: number };
}

/** Metrics from each image's true class and its classes in falling probability (class ids). */
export function classificationMetrics(results: { truth: number; ranked: number[] }[], labels: readonly string[]): ClassificationMetrics {
  const instances = new Array<number>(labels.length).fill(0);
  const predicted = new Array<number>(labels.length).fill(0);
  const correct = new Array<number>(labels.length).fill(0);
  let top1 = 0;
  let top5 = 0;
  for (const r of results) {
    const first = r.ranked[0];
    instances[r.truth]!++;
    if (first !== undefined) predicted[first]!++;
    if (first === r.truth) {
      top1++;
      correct[r.truth]!++;
    }
    if (r.ranked.slice(0, 5).includes(r.truth)) top5++;
  }
  const classes = labels.map((label, c) => ({
    class_id: c,
    label,
    instances: instances[c]!,
    precision: predicted[c]! > 0 ? correct[c]! / predicted[c]! : 0,
    recall: instances[c]! > 0 ? correct[c]! / instances[c]! : 0,
  }));
  const present = classes.filter((c) => c.instances > 0);
  const mean = (f: (c: ClassScores) => number) => (present.length ? present.reduce((s, c) => s + f(c), 0) / present.length : 0);
  const n = Math.max(1, results.length);
  return {
    images: results.length,
    accuracy: top1 / n,
    top5_accuracy: top5 / n,
    classes,
    mean: { precision: mean((c) => c.precision), recall: mean((c) => c.recall) },
  };
}

export interface ClassEvalRun {
  metrics: ClassificationMetrics;
  seconds: number;
  inferMs: number;
  totalMs: number;
}

/** Every image through the serving path (`detect`, as /v1/detect), scored by its folder. */
export async function evaluateClassifier(
  model: ReadyModel,
  dataset: ClassDataset,
  options: { maxPixels: number; concurrency?: number; onImage?: () => void },
): Promise<ClassEvalRun> {
  const labels = model.manifest.labels;
  const unknown = dataset.classes.filter((c) => !labels.includes(c));
  if (unknown.length) throw new Error(`class folders ${unknown.map((c) => `"${c}"`).join(', ')} name no label of the model (${labels.join(', ')})`);
  const results: { truth: number; ranked: number[] }[] = new Array(dataset.images.length);
  const started = performance.now();
  let next = 0;
  let inferMs = 0;
  let totalMs = 0;
  const lanes = Array.from({ length: options.concurrency ?? 2 }, async () => {
    while (next < dataset.images.length) {
      const index = next++;
      const item = dataset.images[index]!;
      const outcome = await detect(model, await readFile(item.path), { maxPixels: options.maxPixels, topK: labels.length });
      inferMs += outcome.timings_ms.infer;
      totalMs += outcome.timings_ms.total;
      results[index] = { truth: labels.indexOf(item.label), ranked: (outcome.classes ?? []).map((c) => c.class_id) };
      options.onImage?.();
    }
  });
  await Promise.all(lanes);
  const count = Math.max(1, dataset.images.length);
  return { metrics: classificationMetrics(results, labels), seconds: (performance.now() - started) / 1000, inferMs: inferMs / count, totalMs: totalMs / count };
}
