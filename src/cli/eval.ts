import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseCommandOrExit } from './config-args.js';
import { createLogger } from '../log.js';
import { ModelRepository } from '../inference/repository.js';
import { repositoryOptions } from '../inference/from-config.js';
import { readDataset } from '../eval/dataset.js';
import { evaluateModel } from '../eval/run.js';

const HELP = `Usage: sightline eval --model NAME[:VERSION] --data DIR [options]

Runs every image of an Ultralytics-layout dataset (DIR/images, DIR/labels,
DIR/data.yaml) through the server's own pre-processing, inference and
post-processing, and reports per-class precision and recall (IoU 0.5, at the
model's conf), AP50 and AP50-95 (COCO 101-point, IoU 0.50:0.05:0.95) and means.

Options:
  --model NAME[:VERSION]   model to measure (required)
  --data DIR               dataset folder (required)
  --json FILE              where to write the JSON report [eval-NAME-VERSION.json]
  --conf X                 lowest score kept for the AP curves [0.001]
  --iou X                  NMS IoU threshold [0.7]
  --models-dir DIR         the model repository [./models]; every serve option works too
  -h, --help               show this help
`;

const EXTRA = {
  model: { type: 'string' as const },
  data: { type: 'string' as const },
  json: { type: 'string' as const },
  conf: { type: 'string' as const },
  iou: { type: 'string' as const },
};

function pct(v: number): string {
  return v.toFixed(3).padStart(8);
}

export async function runEval(argv: string[]): Promise<number> {
  const parsed = parseCommandOrExit('eval', HELP, argv, EXTRA);
  if (typeof parsed === 'number') return parsed;
  const { config, extra } = parsed;
  const ref = extra.model as string | undefined;
  const dataDir = extra.data as string | undefined;
  const conf = Number(extra.conf ?? 0.001);
  const iou = Number(extra.iou ?? 0.7);
  if (!ref || !dataDir || !(conf >= 0 && conf <= 1) || !(iou >= 0 && iou <= 1)) {
    process.stderr.write(`sightline eval: --model and --data are required; --conf and --iou lie in [0, 1]\n\n${HELP}`);
    return 2;
  }
  const [name, version] = ref.split(':', 2);
  const logger = createLogger(config.log_level === 'info' ? 'warn' : config.log_level);
  const models = new ModelRepository(
    repositoryOptions(config, logger, {
      defaultModel: '',
      include: (n, v) => n === name && (version === undefined || v === version),
    }),
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
    const dataset = readDataset(dataDir);
    const { metrics, seconds, inferMs } = await evaluateModel(model, dataset, { conf, iou, maxPixels: config.max_image_pixels });

    const lines = [
      `model ${model.name}:${model.version}  data ${resolve(dataDir)}  images ${metrics.images}  (${(metrics.images / seconds).toFixed(1)} img/s, infer ${inferMs.toFixed(1)} ms/img)`,
      `${'class'.padEnd(14)}${'instances'.padStart(10)}${'P'.padStart(8)}${'R'.padStart(8)}${'AP50'.padStart(8)}${'AP50-95'.padStart(8)}`,
      ...metrics.classes.map((c) => `${c.label.padEnd(14)}${String(c.instances).padStart(10)}${pct(c.precision)}${pct(c.recall)}${pct(c.ap50)}${pct(c.ap50_95)}`),
      `${'all'.padEnd(14)}${String(metrics.classes.reduce((n, c) => n + c.instances, 0)).padStart(10)}${pct(metrics.mean.precision)}${pct(metrics.mean.recall)}${pct(metrics.mean.map50)}${pct(metrics.mean.map50_95)}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    const jsonPath = (extra.json as string | undefined) ?? `eval-${model.name}-${model.version}.json`;
    const report = {
      model: { name: model.name, version: model.version },
      data: resolve(dataDir),
      settings: { conf, iou, operating_conf: model.manifest.conf, iou_thresholds: '0.50:0.05:0.95', interpolation: 'coco-101' },
      ...metrics,
      seconds,
    };
    await writeFile(jsonPath, JSON.stringify(report, null, 2) + '\n');
    process.stdout.write(`wrote ${jsonPath}\n`);
    return 0;
  } finally {
    await models.close();
  }
}
