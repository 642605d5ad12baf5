import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { parseCommandOrExit, resolvePaths } from './config-args.js';
import { storeUrl } from '../config/locations.js';
import { readModelManifest } from '../inference/model-manifest.js';
import { parseTimeSpec } from '../log-analysis/duration.js';
import { LINE_PATTERN } from '../protocol/options.js';
import { REVIEW_STATUSES, type Box, type ReviewStatus } from '../protocol/results.js';
import { openSnapshotStore } from '../snapshots/index.js';
import { createResultStore, type ResultStore, type StoredResult } from '../store/index.js';

const HELP = `Usage: sightline export --since T --out DIR [options]

Writes the reviewed results of a time range, with their kept images
(snapshots), as an Ultralytics-layout dataset for retraining, which
"sightline eval --data DIR" also reads:

  DIR/images/{train,val}/<id>.<jpg|png|webp>   the image as received
  DIR/labels/{train,val}/<id>.txt              one "class cx cy w h" row per box (0–1)
  DIR/data.yaml                                path, train, val, names
  DIR/export.json                              what was written and what was skipped

Boxes: confirmed → the review's boxes if it gave any, else the result's
detections; false_call → the review's boxes if any, else none (an image
without defects); missed → the review's boxes (a missed review without boxes
is skipped with a warning). Results whose image was not kept or was pruned are
skipped and counted.

Options:
  --since T                 results created at or after T: ISO 8601 (no zone = UTC) or
                            a duration before now (30m, 24h, 7d) (required)
  --until T                 results created before T, same forms [now]
  --status S[,S]            review statuses to export [confirmed,false_call,missed]
  --line LINE               only this line
  --out DIR                 the dataset folder; must be new or empty (required)
  --val X                   share of images in the val split, by a hash of the id [0.2]
  --data-dir, --store-url, --store-schema, --snapshots-dir, --models-dir, --config:
                            where the results, images and models are, as for serve
  -h, --help                show this help

Exit status: 0 written (also when nothing matched), 1 the store or a file
could not be read or written, 2 bad arguments.
`;

const EXTRA = {
  since: { type: 'string' as const },
  until: { type: 'string' as const },
  status: { type: 'string' as const },
  line: { type: 'string' as const },
  out: { type: 'string' as const },
  val: { type: 'string' as const },
};

const PAGE = 500;
const EXTENSIONS: Record<string, string> = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp' };

type Split = 'train' | 'val';

interface LabelledBox {
  label: string;
  box: Box;
}

/** A reviewed result chosen for the dataset, before its image is read. */
interface Entry {
  result: StoredResult;
  status: ReviewStatus;
  boxes: LabelledBox[];
  /** Where the boxes came from. */
  from: 'review' | 'detections' | 'none';
}

export interface ExportSummary {
  images: number;
  boxes: number;
  by_status: Record<ReviewStatus, number>;
  skipped: { no_image: number; image_gone: number; missed_without_boxes: number };
}

/** The boxes a review puts in the dataset, or undefined when the result cannot be exported (missed without boxes). */
function boxesOf(result: StoredResult): Pick<Entry, 'boxes' | 'from'> | undefined {
  const review = result.review!;
  if (review.boxes && review.boxes.length > 0) return { boxes: review.boxes.map(({ label, box }) => ({ label, box })), from: 'review' };
  switch (review.status) {
    case 'confirmed':
      return { boxes: result.detections.map(({ label, box }) => ({ label, box })), from: 'detections' };
    case 'false_call':
      // Nothing on the image is a defect: an empty label file teaches exactly that.
      return { boxes: [], from: 'none' };
    case 'missed':
      return undefined;
  }
}

/** A file name from a request id: ids may hold ':' (stream frames), which some file systems refuse. */
function fileStem(id: string, taken: Set<string>): string {
  let stem = id.replace(/[^A-Za-z0-9._-]/g, '_');
  if (stem.startsWith('.')) stem = `_${stem}`;
  let unique = stem;
  for (let n = 2; taken.has(unique); n++) unique = `${stem}-${n}`;
  taken.add(unique);
  return unique;
}

/** The same id lands in the same split in every export, so a later export never moves training images into val. */
function splitOf(id: string, valShare: number): Split {
  const h = createHash('sha256').update(id).digest().readUInt32BE(0) / 2 ** 32;
  return h < valShare ? 'val' : 'train';
}

const round = (v: number) => Math.round(Math.min(1, Math.max(0, v)) * 1e6) / 1e6;

/** One YOLO row: class, then centre and size normalised by the image (0–1). */
function yoloRow(classId: number, box: Box, image: { width: number; height: number }): string {
  const cx = (box.x1 + box.x2) / 2 / image.width;
  const cy = (box.y1 + box.y2) / 2 / image.height;
  const w = (box.x2 - box.x1) / image.width;
  const h = (box.y2 - box.y1) / image.height;
  return `${classId} ${round(cx)} ${round(cy)} ${round(w)} ${round(h)}`;
}

/**
 * Class names: each model's labels in its own order (models sorted by name and
 * version), then labels that only detections or reviews name, sorted. A model
 * whose model.json cannot be read adds its labels by the class ids its detections carry.
 */
async function classNames(entries: readonly Entry[], modelsDir: string, warn: (line: string) => void): Promise<string[]> {
  const names: string[] = [];
  const add = (label: string) => {
    if (!names.includes(label)) names.push(label);
  };
  const models = new Map<string, { name: string; version: string; seen: Map<number, string> }>();
  for (const { result } of entries) {
    const key = `${result.model.name}:${result.model.version}`;
    const model = models.get(key) ?? { ...result.model, seen: new Map<number, string>() };
    for (const d of result.detections) model.seen.set(d.class_id, d.label);
    models.set(key, model);
  }
  for (const key of [...models.keys()].sort()) {
    const model = models.get(key)!;
    try {
      const manifest = await readModelManifest(join(modelsDir, model.name, model.version, 'model.json'));
      manifest.labels.forEach(add);
    } catch (err) {
      warn(`model ${key}: ${(err as Error).message}; its labels are taken from the detections`);
      for (const [, label] of [...model.seen].sort(([a], [b]) => a - b)) add(label);
    }
  }
  [...new Set(entries.flatMap((e) => e.boxes.map((b) => b.label)))].sort().forEach(add);
  return names;
}

/** Every reviewed result of the range with one of `statuses`, newest first. */
async function* reviewed(store: ResultStore, query: { from: Date; to: Date; line?: string }, statuses: readonly ReviewStatus[]): AsyncGenerator<StoredResult> {
  // One walk over every review when all statuses are wanted, else one per status (each along its own index).
  const filters = statuses.length === REVIEW_STATUSES.length ? (['any'] as const) : statuses;
  for (const review of filters) {
    let cursor: string | undefined;
    do {
      const page = await store.list({ ...query, review, limit: PAGE, ...(cursor ? { cursor } : {}) });
      yield* page.results;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }
}

function isEmptyOrMissing(dir: string): boolean {
  const stat = statSync(dir, { throwIfNoEntry: false });
  if (!stat) return true;
  return stat.isDirectory() && readdirSync(dir).length === 0;
}

interface ExportArgs {
  from: Date;
  to: Date;
  statuses: ReviewStatus[];
  line?: string;
  out: string;
  valShare: number;
}

/** Checks the command's own options; a string is the usage error. */
function exportArgs(extra: Record<string, string | boolean | undefined>, now: number): ExportArgs | string {
  const since = extra.since as string | undefined;
  const out = extra.out as string | undefined;
  if (!since || !out) return '--since and --out are required';
  const fromMs = parseTimeSpec(since, now);
  if (fromMs === undefined) return `--since ${JSON.stringify(since)}: expected ISO 8601 or a duration such as 24h`;
  const until = extra.until as string | undefined;
  const toMs = until === undefined ? now : parseTimeSpec(until, now);
  if (toMs === undefined) return `--until ${JSON.stringify(until)}: expected ISO 8601 or a duration such as 1h`;
  if (toMs <= fromMs) return '--until must be after --since';
  const statusText = (extra.status as string | undefined) ?? REVIEW_STATUSES.join(',');
  const listed = statusText
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = listed.filter((s) => !(REVIEW_STATUSES as readonly string[]).includes(s));
  if (listed.length === 0 || unknown.length > 0)
    return `--status: use one or more of ${REVIEW_STATUSES.join(', ')}${unknown.length ? ` (not ${unknown.join(', ')})` : ''}`;
  const line = extra.line as string | undefined;
  if (line !== undefined && !new RegExp(LINE_PATTERN).test(line)) return `--line ${JSON.stringify(line)}: 1–64 characters of A–Z a–z 0–9 . _ -`;
  const valShare = Number(extra.val ?? 0.2);
  if (!(valShare >= 0 && valShare <= 1)) return '--val lies in [0, 1]';
  if (!isEmptyOrMissing(out)) return `--out ${out}: exists and is not an empty folder (an export never mixes with older files)`;
  return {
    from: new Date(fromMs),
    to: new Date(toMs),
    statuses: REVIEW_STATUSES.filter((s) => listed.includes(s)),
    ...(line !== undefined ? { line } : {}),
    out: resolve(out),
    valShare,
  };
}

export async function runExport(argv: string[]): Promise<number> {
  const parsed = parseCommandOrExit('export', HELP, argv, EXTRA);
  if (typeof parsed === 'number') return parsed;
  const args = exportArgs(parsed.extra, Date.now());
  if (typeof args === 'string') {
    process.stderr.write(`sightline export: ${args}\n`);
    return 2;
  }
  const paths = resolvePaths(parsed);
  const config = paths.config;
  const warn = (line: string) => process.stderr.write(`sightline export: warning: ${line}\n`);
  const store = createResultStore(storeUrl(config), config.store_schema ? { schema: config.store_schema } : {});
  const snapshots = openSnapshotStore(config);
  try {
    const summary: ExportSummary = {
      images: 0,
      boxes: 0,
      by_status: { confirmed: 0, false_call: 0, missed: 0 },
      skipped: { no_image: 0, image_gone: 0, missed_without_boxes: 0 },
    };
    const entries: Entry[] = [];
    const query = { from: args.from, to: args.to, ...(args.line !== undefined ? { line: args.line } : {}) };
    try {
      for await (const result of reviewed(store, query, args.statuses)) {
        const status = result.review!.status;
        if (!args.statuses.includes(status)) continue;
        const chosen = boxesOf(result);
        if (!chosen) {
          summary.skipped.missed_without_boxes++;
          warn(`result ${result.request_id} is reviewed missed without boxes: skipped (review it again with the boxes of what was missed)`);
          continue;
        }
        entries.push({ result, status, ...chosen });
      }
    } catch (err) {
      process.stderr.write(`sightline export: cannot read the results (${storeUrl(config).replace(/\/\/[^@/]*@/, '//…@')}): ${(err as Error).message}\n`);
      return 1;
    }
    const names = await classNames(entries, paths.modelsDir, warn);
    const classOf = new Map(names.map((n, i) => [n, i]));

    for (const split of ['train', 'val'] as const) {
      mkdirSync(join(args.out, 'images', split), { recursive: true });
      mkdirSync(join(args.out, 'labels', split), { recursive: true });
    }
    const taken = new Set<string>();
    const written: { id: string; status: ReviewStatus; split: Split; image: string; labels: string; boxes: number; boxes_from: Entry['from'] }[] = [];
    const splits = { train: 0, val: 0 };
    for (const entry of entries) {
      const id = entry.result.request_id;
      const snapshot = await snapshots.get(id);
      if (snapshot === undefined || snapshot === 'gone') {
        summary.skipped[snapshot === 'gone' ? 'image_gone' : 'no_image']++;
        continue;
      }
      const stem = fileStem(id, taken);
      const split = splitOf(id, args.valShare);
      const image = `images/${split}/${stem}.${EXTENSIONS[snapshot.contentType] ?? 'jpg'}`;
      const labels = `labels/${split}/${stem}.txt`;
      const rows = entry.boxes.map((b) => yoloRow(classOf.get(b.label)!, b.box, entry.result.image));
      await writeFile(join(args.out, image), snapshot.bytes);
      await writeFile(join(args.out, labels), rows.length > 0 ? `${rows.join('\n')}\n` : '');
      written.push({ id, status: entry.status, split, image, labels, boxes: rows.length, boxes_from: entry.from });
      summary.images++;
      summary.boxes += rows.length;
      summary.by_status[entry.status]++;
      splits[split]++;
    }

    // Ultralytics resolves a relative `path` against its own datasets folder, so it is absolute here.
    // A split without images would make training fail: it then points at the other one.
    const dataYaml = {
      path: args.out,
      train: splits.train > 0 || splits.val === 0 ? 'images/train' : 'images/val',
      val: splits.val > 0 || splits.train === 0 ? 'images/val' : 'images/train',
      names: Object.fromEntries(names.map((n, i) => [i, n])),
    };
    await writeFile(join(args.out, 'data.yaml'), `# written by sightline export\n${toYaml(dataYaml)}`);
    const manifest = {
      exported_at: new Date().toISOString(),
      since: args.from.toISOString(),
      until: args.to.toISOString(),
      statuses: args.statuses,
      line: args.line ?? null,
      ...summary,
      splits,
      names,
      results: written,
    };
    await writeFile(join(args.out, 'export.json'), `${JSON.stringify(manifest, null, 2)}\n`);

    const skipped = summary.skipped;
    process.stdout.write(
      [
        `exported ${summary.images} images with ${summary.boxes} boxes to ${args.out} (train ${splits.train}, val ${splits.val})`,
        `  by review: confirmed ${summary.by_status.confirmed}, false_call ${summary.by_status.false_call}, missed ${summary.by_status.missed}`,
        `  skipped: ${skipped.no_image} without a kept image, ${skipped.image_gone} with the image pruned, ${skipped.missed_without_boxes} missed without boxes`,
        `  classes: ${names.join(', ') || '(none)'}`,
      ].join('\n') + '\n',
    );
    return 0;
  } catch (err) {
    process.stderr.write(`sightline export: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await Promise.allSettled([store.close(), snapshots.close()]);
  }
}
