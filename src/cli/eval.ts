import { readdirSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describePaths, parseCommandOrExit, resolvePaths } from './config-args.js';
import { createLogger } from '../logger.js';
import { ModelRepository, type ReadyModel } from '../inference/repository.js';
import { repositoryOptions } from '../inference/from-config.js';
import { effectiveLimits } from '../metrics/cgroup.js';
import { readDataset, type Dataset } from '../eval/dataset.js';
import { evaluateModel } from '../eval/run.js';
import { evaluateClassifier, readClassDataset, type ClassDataset } from '../eval/classify.js';
import { TILING_MODES, type TilingMode } from '../protocol/options.js';

const isTilingMode = (v: string): v is TilingMode => (TILING_MODES as readonly string[]).includes(v);

const HELP = `Usage: sightline eval --model NAME[:VERSION] --data DIR [options]

Runs every image of an Ultralytics-layout dataset (DIR/images, DIR/labels,
DIR/data.yaml) through the server's own pre-processing, inference and
post-processing, and reports per-class precision and recall (IoU 0.5, at the
model's conf), AP50 and AP50-95 (COCO 101-point, IoU 0.50:0.05:0.95) and means,
then the image verdicts at the model's thresholds: escapes (a labelled defect
called OK) and false rejects (a defect-free image called NG), and the same
with every NG label at one threshold from 0.05 to 0.5 (the verdict sweep).
A classification model is measured on class folders instead (DIR/<label>/*.jpg):
top-1 and top-5 accuracy, per-class precision and recall.

Options:
  --model NAME[:VERSION]   model to measure (required)
  --data DIR               dataset folder (required)
  --json FILE              where to write the JSON report [eval-NAME-VERSION.json]
  --conf X                 lowest score kept for the AP curves [0.001]
  --iou X                  NMS IoU threshold [0.7]
  --tiling auto|on|off     tiled inference of large images [the model's tiling, as served]
  --models-dir DIR         the model repository [./models, else the built-in one]; every
                           serve option works too
  -h, --help               show this help
`;

const EXTRA = {
  model: { type: 'string' as const },
  data: { type: 'string' as const },
  json: { type: 'string' as const },
  conf: { type: 'string' as const },
  iou: { type: 'string' as const },
  tiling: { type: 'string' as const },
};

/**
 * Images done so far, on stderr: on a terminal one line rewritten once a second,
 * elsewhere (a CI log) a line every 10 seconds.
 */
export class Progress {
  private done = 0;
  private readonly started = performance.now();
  private lastPrinted = this.started;
  private readonly tty: boolean;

  constructor(
    private readonly total: number,
    private readonly out: NodeJS.WriteStream,
    private readonly intervalMs = out.isTTY === true ? 1000 : 10_000,
  ) {
    this.tty = out.isTTY === true;
  }

  /**
   * The dataset with each image counted when it is done: evaluateModel reads an
   * image's labels once its detection has come back.
   */
  track(dataset: Dataset): Dataset {
    const images = dataset.images.map((image) => {
      const counted = { path: image.path } as Dataset['images'][number];
      Object.defineProperty(counted, 'labels', {
        enumerable: true,
        get: () => {
          this.step();
          return image.labels;
        },
      });
      return counted;
    });
    return { ...dataset, images };
  }

  private line(): string {
    const seconds = (performance.now() - this.started) / 1000;
    const rate = seconds > 0 ? this.done / seconds : 0;
    const eta = rate > 0 ? Math.ceil((this.total - this.done) / rate) : 0;
    return `eval: ${this.done}/${this.total} images (${Math.floor((100 * this.done) / Math.max(1, this.total))}%, ${rate.toFixed(1)} img/s, ${eta} s left)`;
  }

  private step(): void {
    this.done++;
    const now = performance.now();
    if (now - this.lastPrinted < this.intervalMs) return;
    this.lastPrinted = now;
    this.out.write(this.tty ? `\r${this.line()}\x1b[K` : `${this.line()}\n`);
  }

  /** Clears the terminal line (the report follows). */
  end(): void {
    if (this.tty && this.lastPrinted !== this.started) this.out.write('\r\x1b[K');
  }
}

function pct(v: number): string {
  return v.toFixed(3).padStart(8);
}

/** `3/120 (2.5 %)`. */
function share(n: number, of: number): string {
  return `${n}/${of} (${of > 0 ? ((100 * n) / of).toFixed(1) : '0.0'} %)`;
}

export async function runEval(argv: string[]): Promise<number> {
  const parsed = parseCommandOrExit('eval', HELP, argv, EXTRA);
  if (typeof parsed === 'number') return parsed;
  const { extra } = parsed;
  const ref = extra.model as string | undefined;
  const dataDir = extra.data as string | undefined;
  const conf = Number(extra.conf ?? 0.001);
  const iou = Number(extra.iou ?? 0.7);
  const tiling = extra.tiling as string | undefined;
  if (!ref || !dataDir || !(conf >= 0 && conf <= 1) || !(iou >= 0 && iou <= 1)) {
    process.stderr.write(`sightline eval: --model and --data are required; --conf and --iou lie in [0, 1]\n\n${HELP}`);
    return 2;
  }
  if (tiling !== undefined && !isTilingMode(tiling)) {
    process.stderr.write(`sightline eval: --tiling is one of ${TILING_MODES.join(', ')} (got ${JSON.stringify(tiling)})\n`);
    return 2;
  }
  // The dataset is read before any model loads: a wrong folder is a one-line usage error.
  let dataset: Dataset | undefined;
  let classDataset: ClassDataset | undefined;
  try {
    if (!statSync(dataDir, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`no such folder (from ${process.cwd()})`);
    // Class folders without images/ (ImageFolder, for a classifier); else the Ultralytics layout.
    const folders = readdirSync(dataDir, { withFileTypes: true }).filter((e) => e.isDirectory());
    if (folders.length > 0 && !folders.some((e) => e.name === 'images')) classDataset = readClassDataset(dataDir);
    else dataset = readDataset(dataDir);
  } catch (err) {
    process.stderr.write(`sightline eval: --data ${dataDir}: ${(err as Error).message}\n`);
    return 2;
  }
  const paths = resolvePaths(parsed);
  const config = paths.config;
  if (paths.builtInModels) process.stderr.write(`sightline eval: ${describePaths(paths)}\n`);
  const [name, version] = ref.split(':', 2);
  const logger = createLogger(config.log_level === 'info' ? 'warn' : config.log_level, undefined, config.log_format);
  const models = new ModelRepository(
    repositoryOptions(
      config,
      logger,
      {
        defaultModel: '',
        include: (n, v) => n === name && (version === undefined || v === version),
      },
      effectiveLimits().cpus,
    ),
  );
  try {
    await models.loadAll();
    let model;
    try {
      model = models.findReady(ref);
    } catch (err) {
      process.stderr.write(`sightline eval: ${(err as Error).message}\n`);
      return 1;
    }
    if (model.task === 'classify' || classDataset) {
      if (model.task !== 'classify' || !classDataset) {
        process.stderr.write(
          `sightline eval: --data ${dataDir}: ${model.task === 'classify' ? 'a classification model is measured on class folders (DIR/<label>/*.jpg)' : 'class folders measure a classification model only; this one has images/ and labels/ (Ultralytics layout)'}\n`,
        );
        return 2;
      }
      return await reportClassifier(model, classDataset, dataDir, extra.json as string | undefined, config.max_image_pixels);
    }
    if (!dataset) return 2;
    const progress = new Progress(dataset.images.length, process.stderr);
    const { metrics, maskMetrics, seconds, inferMs, totalMs, runsPerImage, verdicts, verdictCurve } = await evaluateModel(model, progress.track(dataset), {
      conf,
      iou,
      maxPixels: config.max_image_pixels,
      tiling,
    });
    progress.end();

    const lines = [
      `model ${model.name}:${model.version}  data ${resolve(dataDir)}  images ${metrics.images}  (${(metrics.images / seconds).toFixed(1)} img/s, infer ${inferMs.toFixed(1)} ms/img, total ${totalMs.toFixed(1)} ms/img${runsPerImage > 1 ? `, ${runsPerImage.toFixed(1)} tiles/img` : ''})`,
      `${'class'.padEnd(14)}${'instances'.padStart(10)}${'P'.padStart(8)}${'R'.padStart(8)}${'AP50'.padStart(8)}${'AP50-95'.padStart(8)}`,
      ...metrics.classes.map(
        (c) => `${c.label.padEnd(14)}${String(c.instances).padStart(10)}${pct(c.precision)}${pct(c.recall)}${pct(c.ap50)}${pct(c.ap50_95)}`,
      ),
      `${'all'.padEnd(14)}${String(metrics.classes.reduce((n, c) => n + c.instances, 0)).padStart(10)}${pct(metrics.mean.precision)}${pct(metrics.mean.recall)}${pct(metrics.mean.map50)}${pct(metrics.mean.map50_95)}`,
    ];
    if (maskMetrics) {
      // Segmentation with polygon labels: the same table with mask IoU.
      lines.push(
        'masks',
        ...maskMetrics.classes.map(
          (c) => `${c.label.padEnd(14)}${String(c.instances).padStart(10)}${pct(c.precision)}${pct(c.recall)}${pct(c.ap50)}${pct(c.ap50_95)}`,
        ),
        `${'all'.padEnd(14)}${String(maskMetrics.classes.reduce((n, c) => n + c.instances, 0)).padStart(10)}${pct(maskMetrics.mean.precision)}${pct(maskMetrics.mean.recall)}${pct(maskMetrics.mean.map50)}${pct(maskMetrics.mean.map50_95)}`,
      );
    }
    lines.push(
      `verdict at the model's thresholds: escapes ${share(verdicts.escapes, verdicts.with_defects)} of images with defects, false rejects ${share(verdicts.false_rejects, verdicts.defect_free)} of defect-free images`,
      'verdict sweep (every NG label at one threshold, detections kept from it):',
      `${'NG at'.padStart(8)}${'escapes'.padStart(20)}${'false rejects'.padStart(20)}`,
      ...verdictCurve.map(
        (p) => `${p.threshold.toFixed(2).padStart(8)}${share(p.escapes, p.with_defects).padStart(20)}${share(p.false_rejects, p.defect_free).padStart(20)}`,
      ),
    );
    process.stdout.write(lines.join('\n') + '\n');
    const jsonPath = (extra.json as string | undefined) ?? `eval-${model.name}-${model.version}.json`;
    const report = {
      model: { name: model.name, version: model.version },
      data: resolve(dataDir),
      settings: { conf, iou, operating_conf: model.manifest.conf, iou_thresholds: '0.50:0.05:0.95', interpolation: 'coco-101', tiling: tiling ?? 'model' },
      ...metrics,
      seconds,
      timings_ms: { infer_per_image: inferMs, total_per_image: totalMs },
      runs_per_image: runsPerImage,
      verdicts,
      verdict_curve: verdictCurve,
      ...(maskMetrics ? { masks: maskMetrics } : {}),
    };
    await writeFile(jsonPath, JSON.stringify(report, null, 2) + '\n');
    process.stdout.write(`wrote ${jsonPath}\n`);
    return 0;
  } finally {
    await models.close();
  }
}

/** The classification report: accuracy, then precision and recall per class, on stdout and as JSON. */
async function reportClassifier(model: ReadyModel, dataset: ClassDataset, dataDir: string, json: string | undefined, maxPixels: number): Promise<number> {
  let done = 0;
  const { metrics, seconds, inferMs, totalMs } = await evaluateClassifier(model, dataset, {
    maxPixels,
    onImage: () => {
      done++;
      if (done % 500 === 0) process.stderr.write(`eval: ${done}/${dataset.images.length} images\n`);
    },
  });
  const lines = [
    `model ${model.name}:${model.version}  data ${resolve(dataDir)}  images ${metrics.images}  (${(metrics.images / seconds).toFixed(1)} img/s, infer ${inferMs.toFixed(1)} ms/img, total ${totalMs.toFixed(1)} ms/img)`,
    `accuracy ${metrics.accuracy.toFixed(3)}  top-5 ${metrics.top5_accuracy.toFixed(3)}`,
    `${'class'.padEnd(14)}${'images'.padStart(10)}${'P'.padStart(8)}${'R'.padStart(8)}`,
    ...metrics.classes.map((c) => `${c.label.padEnd(14)}${String(c.instances).padStart(10)}${pct(c.precision)}${pct(c.recall)}`),
    `${'all'.padEnd(14)}${String(metrics.images).padStart(10)}${pct(metrics.mean.precision)}${pct(metrics.mean.recall)}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  const jsonPath = json ?? `eval-${model.name}-${model.version}.json`;
  const report = {
    model: { name: model.name, version: model.version },
    task: 'classify',
    data: resolve(dataDir),
    ...metrics,
    seconds,
    timings_ms: { infer_per_image: inferMs, total_per_image: totalMs },
  };
  await writeFile(jsonPath, JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(`wrote ${jsonPath}\n`);
  return 0;
}
