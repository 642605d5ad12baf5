/**
 * `npm run bench -- --model DIR|FILE.onnx | --fixture NAME | --all [options]`
 *
 * Per model, in one run: (a) raw ONNX Runtime throughput sweep, (a′) the offline
 * pipeline, (b) the built server under closed-loop load from a separate generator
 * process, at full size and with the images edge-resized, (c) an open-loop overload; writes bench/results/<date>-<model>.md + .json.
 * Child processes and temporary directories are cleaned up on every exit path.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { availableParallelism, cpus, platform, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { edgeResize } from '../src/client/edge-resize.js';
import { generateImages, loadImages } from './images.js';
import { BUILTIN_MODEL_DIR, PROJECT_ROOT, fixturePath, prepareModel, specFor, type ModelSpec, type PreparedModel } from './models.js';
import { bestCell, layoutName, rawSweep, type Layout, type RawCell } from './raw.js';
import { offlinePipeline } from './offline.js';
import type { LoadConfig, LoadResult } from './load.js';
import { ServerProcess, epochMs, logEvents, logSize } from './server.js';
import {
  writeReport,
  headlines,
  bestSingleCell,
  FOREIGN_LIMIT,
  type BenchResult,
  type EdgeResizeInfo,
  type LevelResult,
  type OverloadResult,
  type MachineInfo,
  type ScrapedMetrics,
  type ServerResult,
  type Settings,
} from './report.js';
import { fmt, sleep } from './stats.js';
import { MachineMonitor } from './machine.js';

const HELP = `Usage: npm run bench -- (--model PATH | --fixture NAME | --all) [options]

  --model PATH            model-repository version dir (model.onnx + model.json) or a .onnx file (repeatable)
  --fixture NAME          a model from ../shared/models, e.g. yolov8n_shape_640 (repeatable)
  --all                   models/defects/1 (if present) and both shared fixtures, in sequence
  --name NAME             report name for a single --model (default: derived from the path)
  --labels N              labels to generate for a model without model.json
                          (default: what the output shape implies, else 80)
  --duration S            measured seconds per server level and for the overload (default 15)
  --warmup S              warm-up seconds before each closed-loop level (default 2)
  --raw-seconds S         seconds per raw sweep cell (default 4)
  --offline-seconds S     seconds of offline pipeline (default: --duration)
  --concurrency LIST      closed-loop levels (default 1,4,16,64)
  --batches LIST          raw sweep batch sizes (default 1,2,4,8)
  --overload-factor F     open-loop rate as a multiple of the best closed-loop throughput (default 4)
  --max-outstanding N     open-loop cap on requests in flight (default 2000)
  --drain S               after the overload window, how long answers may take (default 30)
  --images N              generated 1280×720 JPEGs (default 16)
  --images-dir DIR        use the JPEGs in DIR instead (all of one size for --edge-resize)
  --edge-resize LIST      closed-loop levels measured again, in the same server, with the
                          images scaled to the model's input on the client (the SDK's
                          edgeResize) and their original size sent as source_width /
                          source_height (default 1,16; none: skip)
  --raw-beside S          measure the raw cell the c=1 and c=16 levels are judged
                          against (the ceiling; the best single-image run) again
                          right before and after each of them, S s each, and judge
                          against the better of the two (default: --raw-seconds; 0: off)
  --server-arg ARG        extra argument for \`sightline serve\` (repeatable), e.g.
                          --server-arg=--max-queue=64 or --server-arg max_queue=64;
                          SIGHTLINE_* environment variables reach the server too
  --header 'K: V'         extra header on every /v1/detect request (repeatable),
                          e.g. --header 'X-Request-Timeout-Ms: 2000'
  --phases LIST           any of raw,offline,server,overload (default all)
  --idle-wait S           before each phase, wait up to S s for other processes to
                          use < 0.15 cores (default 120; 0: do not wait)
  --retries N             measure a phase again (up to N times) when other processes
                          took CPU during it; the least disturbed attempt is kept (default 2)
  --patience S            most time per model spent waiting and repeating (default 300)
  --skip-build            do not run \`npm run build\` first
  --keep-tmp              keep the temporary directory
  --out DIR               result directory (default bench/results)
  -h, --help
`;

/** The run's settings as the report records them, plus what only the harness needs. */
interface Options
  extends Pick<
    Settings,
    'durationS' | 'warmupS' | 'rawSeconds' | 'offlineSeconds' | 'concurrencies' | 'batches' | 'overloadFactor' | 'maxOutstanding' | 'drainS'
  > {
  specs: ModelSpec[];
  /** Seconds of each raw measurement beside the c=1 and c=16 levels; 0: none. */
  rawBesideS: number;
  /** Closed-loop levels measured again with edge-resized images (none: []). */
  edgeResize: number[];
  labels: number | undefined;
  imageCount: number;
  imagesDir: string | undefined;
  serverArgs: string[];
  headers: Record<string, string>;
  phases: Set<string>;
  idleWaitS: number;
  retries: number;
  patienceS: number;
  skipBuild: boolean;
  keepTmp: boolean;
  outDir: string;
}

const numList = (s: string) =>
  s
    .split(',')
    .map((v) => Number(v.trim()))
    .filter((v) => Number.isFinite(v) && v > 0);

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${value}`);
  return n;
}

/** `--max-queue=64` stays; `max_queue=64` becomes `--max-queue=64`. */
function serverArg(arg: string): string {
  if (arg.startsWith('-')) return arg;
  const eq = arg.indexOf('=');
  if (eq < 0) return `--${arg.replaceAll('_', '-')}`;
  return `--${arg.slice(0, eq).replaceAll('_', '-')}=${arg.slice(eq + 1)}`;
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: 'string', multiple: true },
      fixture: { type: 'string', multiple: true },
      all: { type: 'boolean' },
      name: { type: 'string' },
      labels: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      'raw-seconds': { type: 'string' },
      'offline-seconds': { type: 'string' },
      'raw-beside': { type: 'string' },
      concurrency: { type: 'string' },
      batches: { type: 'string' },
      'overload-factor': { type: 'string' },
      'max-outstanding': { type: 'string' },
      drain: { type: 'string' },
      images: { type: 'string' },
      'images-dir': { type: 'string' },
      'edge-resize': { type: 'string' },
      'server-arg': { type: 'string', multiple: true },
      header: { type: 'string', multiple: true },
      phases: { type: 'string' },
      'idle-wait': { type: 'string' },
      retries: { type: 'string' },
      patience: { type: 'string' },
      'skip-build': { type: 'boolean' },
      'keep-tmp': { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return undefined;
  const specs: ModelSpec[] = [];
  const models = values.model ?? [];
  if (values.name && models.length !== 1) throw new Error('--name needs exactly one --model');
  for (const m of models) specs.push(specFor(m, values.name));
  for (const f of values.fixture ?? []) specs.push(specFor(fixturePath(f), f.replace(/\.onnx$/, '')));
  if (values.all) {
    if (existsSync(join(BUILTIN_MODEL_DIR, 'model.onnx'))) specs.push(specFor(BUILTIN_MODEL_DIR, 'defects'));
    else process.stderr.write(`bench: ${BUILTIN_MODEL_DIR}/model.onnx does not exist; skipping the built-in model\n`);
    for (const f of ['yolov8n_shape_320', 'yolov8n_shape_640']) specs.push(specFor(fixturePath(f), f));
  }
  if (specs.length === 0) throw new Error('give --model, --fixture or --all (see --help)');
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new Error(`--header wants 'Name: value', got ${h}`);
    headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
  }
  const durationS = positive('duration', values.duration, 15);
  const phases = new Set((values.phases ?? 'raw,offline,server,overload').split(',').map((p) => p.trim()));
  for (const p of phases) if (!['raw', 'offline', 'server', 'overload'].includes(p)) throw new Error(`unknown phase ${p}`);
  return {
    specs,
    labels: values.labels === undefined ? undefined : positive('labels', values.labels, 80),
    durationS,
    warmupS: values.warmup === '0' ? 0 : positive('warmup', values.warmup, 2),
    rawSeconds: positive('raw-seconds', values['raw-seconds'], 4),
    rawBesideS: values['raw-beside'] === '0' ? 0 : positive('raw-beside', values['raw-beside'] ?? values['raw-seconds'], 4),
    offlineSeconds: positive('offline-seconds', values['offline-seconds'], durationS),
    concurrencies: numList(values.concurrency ?? '1,4,16,64'),
    edgeResize: values['edge-resize'] === 'none' ? [] : numList(values['edge-resize'] ?? '1,16'),
    batches: numList(values.batches ?? '1,2,4,8'),
    overloadFactor: positive('overload-factor', values['overload-factor'], 4),
    maxOutstanding: positive('max-outstanding', values['max-outstanding'], 2000),
    drainS: positive('drain', values.drain, 30),
    imageCount: positive('images', values.images, 16),
    imagesDir: values['images-dir'],
    serverArgs: (values['server-arg'] ?? []).map(serverArg),
    headers,
    phases,
    idleWaitS: values['idle-wait'] === '0' ? 0 : positive('idle-wait', values['idle-wait'], 120),
    retries: values.retries === '0' ? 0 : positive('retries', values.retries, 2),
    patienceS: values.patience === '0' ? 0 : positive('patience', values.patience, 300),
    skipBuild: values['skip-build'] ?? false,
    keepTmp: values['keep-tmp'] ?? false,
    outDir: resolve(values.out ?? join(PROJECT_ROOT, 'bench/results')),
  };
}

// ---------------------------------------------------------------- cleanup

const children = new Set<ChildProcess>();
const servers = new Set<ServerProcess>();
const tmpDirs = new Set<string>();
let keepTmp = false;
const monitor = new MachineMonitor();
let interrupted = false;

async function cleanup(): Promise<void> {
  monitor.stop();
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all([...servers].map((s) => s.stop(5).catch(() => undefined)));
  if (!keepTmp) await Promise.all([...tmpDirs].map((d) => rm(d, { recursive: true, force: true })));
}

process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const s of servers) s.killNow();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    process.stderr.write(`\nbench: ${signal}, cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------- helpers

const log = (msg: string) => process.stdout.write(`${msg}\n`);
const otherCpu = (cores: number | undefined) => (cores !== undefined && cores >= FOREIGN_LIMIT ? ` [⚠ other processes: ${fmt(cores, 2)} cores]` : '');

function machineInfo(): MachineInfo {
  const ortPkg = join(PROJECT_ROOT, 'node_modules/onnxruntime-node/package.json');
  return {
    cores: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: totalmem() / 2 ** 30,
    platform: `${platform()} ${release()}`,
    node: process.version,
    onnxruntime: (JSON.parse(readFileSync(ortPkg, 'utf8')) as { version: string }).version,
    sharp: sharp.versions.sharp ?? 'unknown',
    libvips: sharp.versions.vips,
  };
}

function build(): string | undefined {
  log('building dist/ (npm run build)…');
  const result = spawnSync('npm', ['run', 'build'], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  if (result.status === 0) return undefined;
  return `npm run build failed (exit ${result.status}):\n${(result.stdout + result.stderr).trim().split('\n').slice(-20).join('\n')}`;
}

/** Which of the lead's upcoming settings the built server knows, from `serve --help`. */
function serverSupports(): Record<string, boolean> {
  const help = spawnSync(process.execPath, [join(PROJECT_ROOT, 'dist/cli/main.js'), 'serve', '--help'], { encoding: 'utf8' }).stdout ?? '';
  return Object.fromEntries(['instances', 'max-batch-size', 'max-queue-delay-ms', 'max-queue', 'request-timeout-ms'].map((k) => [k, help.includes(`--${k} `)]));
}

async function runGenerator(config: Omit<LoadConfig, 'resultPath'>, dir: string, tag: string): Promise<LoadResult> {
  const configPath = join(dir, `load-${tag}.json`);
  const resultPath = join(dir, `result-${tag}.json`);
  await writeFile(configPath, JSON.stringify({ ...config, resultPath } satisfies LoadConfig));
  const child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'bench/load.ts'), configPath], {
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.add(child);
  monitor.watch(child.pid);
  const limitS = config.warmupS + config.durationS + config.drainS + 60;
  const timer = setTimeout(() => child.kill('SIGKILL'), limitS * 1000);
  try {
    const code = await new Promise<number | null>((res, rej) => {
      child.once('error', rej);
      child.once('exit', (c) => res(c));
    });
    if (code !== 0) throw new Error(`load generator (${tag}) exited with ${code}`);
    return JSON.parse(await readFile(resultPath, 'utf8')) as LoadResult;
  } finally {
    clearTimeout(timer);
    children.delete(child);
  }
}

const KEPT_METRICS = [
  'nodejs_eventloop_lag_p50_seconds',
  'nodejs_eventloop_lag_p99_seconds',
  'nodejs_eventloop_lag_max_seconds',
  'process_resident_memory_bytes',
  'nodejs_heap_size_used_bytes',
  'nodejs_external_memory_bytes',
  'nodejs_gc_duration_seconds_sum',
  'nodejs_gc_duration_seconds_count',
  'nodejs_active_handles',
];

interface Scrape {
  values: ScrapedMetrics;
  sightlineNames: string[];
  sightlineSamples: string[];
}

/** GET /metrics. Also resets prom-client's event-loop-lag histogram, so a scrape before a phase starts it afresh. */
async function scrape(server: ServerProcess): Promise<Scrape> {
  const values: ScrapedMetrics = {};
  const names = new Set<string>();
  const samples: string[] = [];
  try {
    const { text } = await server.get('/metrics');
    for (const line of text.split('\n')) {
      if (line.startsWith('# TYPE sightline_')) names.add(line.split(' ')[2]!);
      if (!line || line.startsWith('#')) continue;
      const m = /^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const [, name, , value] = m;
      if (KEPT_METRICS.includes(name!)) values[name!] = (values[name!] ?? 0) + Number(value);
      if (name!.startsWith('sightline_') && !name!.endsWith('_bucket')) samples.push(line);
    }
  } catch {
    // a server that cannot answer /metrics shows up elsewhere
  }
  return { values, sightlineNames: [...names], sightlineSamples: samples };
}

// ---------------------------------------------------------------- phases

interface Context {
  options: Options;
  machine: MachineInfo;
  imagesDir: string;
  jpegs: Buffer[];
  tmpRoot: string;
  buildError: string | undefined;
  supports: Record<string, boolean>;
  /** epochMs() after which this model's run neither waits for an idle machine nor repeats. */
  patienceUntil: number;
}

const patienceLeftS = (ctx: Context) => Math.max(0, (ctx.patienceUntil - epochMs()) / 1000);

/** Waits (bounded) until other processes leave the cores alone; records what it saw. */
async function settle(ctx: Context, r: BenchResult, phase: string): Promise<void> {
  const maxS = Math.min(ctx.options.idleWaitS, patienceLeftS(ctx));
  if (maxS <= 0) return;
  const w = await monitor.waitIdle(maxS, FOREIGN_LIMIT);
  r.idleWaits.push({ phase, waitedS: w.waitedS, foreignCores: w.foreignCores });
  if (w.foreignCores >= FOREIGN_LIMIT) {
    log(`  ⚠ ${phase}: other processes still use ${fmt(w.foreignCores, 2)} cores after ${fmt(w.waitedS, 0)} s; measuring anyway`);
  } else if (w.waitedS > 3) log(`  (${phase}: waited ${fmt(w.waitedS, 0)} s for an idle machine)`);
}

/**
 * Runs a measurement after settle(); while other processes took CPU during it, runs it
 * again (up to --retries times) and keeps the least disturbed attempt.
 */
async function measured<T>(ctx: Context, r: BenchResult, phase: string, run: () => Promise<T>, foreign: (t: T) => number): Promise<T> {
  let best: T | undefined;
  let bestForeign = Infinity;
  for (let attempt = 0; ; attempt++) {
    await settle(ctx, r, phase);
    const result = await run();
    const f = foreign(result);
    if (best === undefined || f < bestForeign) {
      best = result;
      bestForeign = f;
    }
    if (!(f >= FOREIGN_LIMIT) || attempt >= ctx.options.retries || patienceLeftS(ctx) <= 0 || interrupted) return best;
    log(`  ⚠ ${phase}: other processes took ${fmt(f, 2)} cores during the measurement; measuring again`);
    r.idleWaits.push({ phase: `${phase} (disturbed, repeated)`, waitedS: 0, foreignCores: f });
  }
}

/** One raw cell measured again (same layout and batch), for the level beside it. */
async function rawBeside(ctx: Context, model: PreparedModel, cell: RawCell): Promise<RawCell> {
  const { instances, intraOpThreads, spinning, loneRequestThreads } = cell;
  const [again] = await rawSweep({
    modelPath: model.modelPath,
    inputName: model.inputName,
    width: model.inputWidth,
    height: model.inputHeight,
    batches: [cell.batch],
    layouts: [{ instances, intraOpThreads, ...(spinning === undefined ? {} : { spinning }), ...(loneRequestThreads ? { loneRequestThreads } : {}) }],
    seconds: ctx.options.rawBesideS,
  });
  again!.foreignCores = monitor.window(again!.startedMs, again!.endedMs).foreignCores;
  return again!;
}

function layoutsFor(cores: number): Layout[] {
  const layouts: Layout[] = [{ instances: 1, intraOpThreads: cores }];
  if (cores >= 4) layouts.push({ instances: 2, intraOpThreads: Math.floor(cores / 2) });
  if (cores > 1) layouts.push({ instances: cores, intraOpThreads: 1 });
  return layouts;
}

interface EdgeImages {
  dir: string;
  /** /v1/detect with the originals' size, so boxes come back in their pixels. */
  path: string;
  info: EdgeResizeInfo;
}

/**
 * The bench's images as an edge-resizing client sends them: scaled to fit the model's
 * input with the SDK's own edgeResize (so the figure is what that option gives). One
 * request path serves every image, so all must share one size; a reason when not.
 */
async function edgeImages(jpegs: Buffer[], model: PreparedModel, dir: string): Promise<EdgeImages | string> {
  const out = join(dir, `edge-${model.inputWidth}x${model.inputHeight}`);
  await mkdir(out, { recursive: true });
  let source: { width: number; height: number } | undefined;
  let size: { width: number; height: number } | undefined;
  let bytes = 0;
  for (const [i, jpeg] of jpegs.entries()) {
    const scaled = await edgeResize(jpeg, { width: model.inputWidth, height: model.inputHeight });
    if (!scaled.source) return `image ${i} already fits the model's input (${model.inputWidth}×${model.inputHeight})`;
    if (source && (scaled.source.width !== source.width || scaled.source.height !== source.height)) {
      return `the images are not all of one size (${source.width}×${source.height}, ${scaled.source.width}×${scaled.source.height})`;
    }
    source = scaled.source;
    size ??= await sharp(scaled.image)
      .metadata()
      .then((m) => ({ width: m.width ?? 0, height: m.height ?? 0 }));
    bytes += scaled.image.length;
    await writeFile(join(out, `img${String(i).padStart(3, '0')}.jpg`), scaled.image);
  }
  if (!source || !size) return 'no images';
  return {
    dir: out,
    path: `/v1/detect?source_width=${source.width}&source_height=${source.height}`,
    info: { ...size, sourceWidth: source.width, sourceHeight: source.height, meanKiB: bytes / jpegs.length / 1024 },
  };
}

async function serverPhases(ctx: Context, model: PreparedModel, dir: string, r: BenchResult): Promise<ServerResult> {
  const { options } = ctx;
  const logPath = join(dir, 'server.log');
  const t0 = epochMs();
  log(`  server: starting (${options.serverArgs.join(' ') || 'defaults'})`);
  const server = await ServerProcess.start({ projectRoot: PROJECT_ROOT, repoDir: model.repoDir, extraArgs: options.serverArgs, logPath, readyTimeoutS: 180 });
  servers.add(server);
  monitor.watch(server.pid);
  const result: ServerResult = {
    command: server.args,
    startupS: (epochMs() - t0) / 1000,
    rssReadyMiB: (server.samples.at(-1)?.rssKiB ?? NaN) / 1024,
    models: undefined,
    sightlineMetricNames: [],
    sightlineSamplesAfter: [],
    levels: [],
  };
  try {
    result.models = JSON.parse((await server.get('/v1/models')).text) as unknown;
    result.sightlineMetricNames = (await scrape(server)).sightlineNames;
    const base = {
      host: '127.0.0.1',
      port: server.port,
      path: '/v1/detect',
      imagesDir: ctx.imagesDir,
      warmupS: options.warmupS,
      durationS: options.durationS,
      maxOutstanding: options.maxOutstanding,
      headers: options.headers,
    };
    // The cell a headline level is judged against; the server idles while it runs beside it.
    const judgedBy = (c: number) => (c === 16 ? r.rawBest : c === 1 ? bestSingleCell(r) : undefined);
    const runLevel = async (c: number, edge?: EdgeImages): Promise<void> => {
      const tag = edge ? `edge-c${c}` : `c${c}`;
      const cell = options.rawBesideS > 0 ? judgedBy(c) : undefined;
      const level = await measured(
        ctx,
        r,
        edge ? `c=${c} edge` : `c=${c}`,
        async (): Promise<LevelResult> => {
          const before = cell && (await rawBeside(ctx, model, cell));
          await scrape(server);
          const from = logSize(logPath);
          const config = edge ? { ...base, imagesDir: edge.dir, path: edge.path } : base;
          const load = await runGenerator({ ...config, mode: 'closed', concurrency: c, drainS: 60 }, dir, tag);
          const after = cell && (await rawBeside(ctx, model, cell));
          return {
            ...(before && after ? { rawBeside: { before, after } } : {}),
            load,
            server: server.window(load.windowStartMs, load.windowEndMs),
            foreignCores: monitor.window(load.windowStartMs, load.windowEndMs).foreignCores,
            metrics: (await scrape(server)).values,
            logEvents: logEvents(logPath, from),
            ...(edge ? { edge: edge.info } : {}),
          };
        },
        (l) => l.foreignCores,
      );
      const load = level.load;
      result.levels.push(level);
      const errs = Object.entries({ ...load.byCode, ...load.transportErrors })
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
      log(
        `  c=${String(c).padStart(2)}${edge ? ` (edge ${edge.info.width}×${edge.info.height})` : ''}: ${fmt(load.okPerSec)} img/s, p50 ${fmt(load.latencyOkMs.p50)} p99 ${fmt(load.latencyOkMs.p99)} ms, overhead p50 ${fmt(load.overheadMs.p50, 2)} ms${errs ? `, errors: ${errs}` : ''}${otherCpu(level.foreignCores)}`,
      );
      const beside = level.rawBeside;
      if (beside) {
        const [b, a] = c === 1 ? [beside.before.meanSessionMs, beside.after.meanSessionMs] : [beside.before.imagesPerSec, beside.after.imagesPerSec];
        log(
          `    raw ${layoutName(beside.before)}, batch ${beside.before.batch} beside it: ${fmt(b)} before, ${fmt(a)} after ${c === 1 ? 'ms per session.run' : 'img/s'}`,
        );
      }
    };
    for (const c of options.concurrencies) {
      if (!server.alive) break;
      await runLevel(c);
    }
    if (options.edgeResize.length && server.alive) {
      const edge = await edgeImages(ctx.jpegs, model, dir);
      if (typeof edge === 'string') r.notes.push(`Edge-resize levels skipped: ${edge}.`);
      else {
        for (const c of options.edgeResize) {
          if (!server.alive) break;
          await runLevel(c, edge);
        }
      }
    }
    const best = Math.max(0, ...result.levels.filter((l) => !l.edge).map((l) => l.load.okPerSec));
    if (options.phases.has('overload') && server.alive) {
      const rate = options.overloadFactor * (best > 0 ? best : (r.offline?.imagesPerSec ?? 10));
      const overload = await measured(
        ctx,
        r,
        'overload',
        async (): Promise<OverloadResult> => {
          log(`  overload: ${fmt(rate)} req/s open loop for ${options.durationS} s…`);
          await scrape(server);
          const from = logSize(logPath);
          const load = await runGenerator({ ...base, warmupS: 0, mode: 'open', rate, drainS: options.drainS }, dir, 'overload');
          const windowStats = server.window(load.windowStartMs, load.finishedMs);
          const metrics = (await scrape(server)).values;
          await sleep(2000);
          let livezAfter = 'no answer';
          try {
            const res = await server.get('/livez');
            livezAfter = String(res.status);
          } catch (err) {
            livezAfter = `failed: ${(err as Error).message}`;
          }
          return {
            targetRate: rate,
            load,
            server: windowStats,
            foreignCores: monitor.window(load.windowStartMs, load.finishedMs).foreignCores,
            rssAfterMiB: (server.samples.at(-1)?.rssKiB ?? NaN) / 1024,
            metrics,
            logEvents: logEvents(logPath, from),
            aliveAfter: server.alive && livezAfter === '200',
            livezAfter,
          };
        },
        (o) => (o.aliveAfter ? o.foreignCores : 0),
      );
      const load = overload.load;
      const windowStats = overload.server;
      result.overload = overload;
      log(
        `  overload: ${fmt(load.okPerSec)} img/s accepted, shed ${JSON.stringify(load.byCode)}, p99 accepted ${fmt(load.latencyOkMs.p99)} ms, RSS peak ${fmt(windowStats.rssPeakMiB, 0)} MiB, ${overload.aliveAfter ? 'alive' : 'NOT alive'}${otherCpu(overload.foreignCores)}`,
      );
    }
    result.sightlineSamplesAfter = (await scrape(server)).sightlineSamples;
  } finally {
    if (!server.alive) result.crashed = `exit code ${server.exitCode}, signal ${server.exitSignal}\n${server.logTail()}`;
    await server.stop();
    servers.delete(server);
  }
  return result;
}

function autoNotes(ctx: Context, r: BenchResult): string[] {
  const notes: string[] = [];
  const sup = Object.entries(ctx.supports);
  if (sup.length) {
    notes.push(`Server build knows: ${sup.map(([k, v]) => `\`--${k}\` ${v ? 'yes' : 'no'}`).join(', ')} (from \`serve --help\`).`);
  }
  if (ctx.buildError) notes.push('The server was not measured: the build failed (see Errors).');
  const srv = r.server;
  for (const l of srv?.levels ?? []) {
    if (l.load.generatorCpuPct > 25) {
      notes.push(
        `c=${l.load.concurrency}: the load generator itself used ${fmt(l.load.generatorCpuPct, 0)} % of a core, on a ${ctx.machine.cores}-core machine shared with the server.`,
      );
    }
    if (l.server.livezMs.max > 100)
      notes.push(`c=${l.load.concurrency}: a /livez probe took ${fmt(l.server.livezMs.max, 0)} ms (event-loop stall or queueing in front of the route).`);
  }
  const ov = srv?.overload;
  if (ov && (ov.load.byStatus['503'] ?? 0) + (ov.load.byStatus['504'] ?? 0) === 0) {
    notes.push('Under overload the server shed nothing (no 503/504): requests queue without bound, so latency and memory grow with the backlog.');
  }
  if (ov && ov.load.notSent > 0)
    notes.push(`The generator hit its cap of ${ctx.options.maxOutstanding} outstanding requests: ${ov.load.notSent} arrivals were not sent.`);
  return notes;
}

async function benchModel(ctx: Context, spec: ModelSpec): Promise<BenchResult> {
  const { options } = ctx;
  ctx.patienceUntil = epochMs() + options.patienceS * 1000;
  const dir = join(ctx.tmpRoot, spec.name);
  await mkdir(dir, { recursive: true });
  log(`\n== ${spec.name} (${spec.source})`);
  const model = await prepareModel(spec, dir, options.labels);
  log(`  ${model.format}, input ${model.inputWidth}×${model.inputHeight}, output [${model.outputDims.join(', ')}]`);
  const settings: Settings = {
    durationS: options.durationS,
    warmupS: options.warmupS,
    rawSeconds: options.rawSeconds,
    rawBesideS: options.rawBesideS,
    offlineSeconds: options.offlineSeconds,
    concurrencies: options.concurrencies,
    edgeResize: options.edgeResize,
    batches: model.fixedBatch ? [model.fixedBatch] : options.batches,
    overloadFactor: options.overloadFactor,
    maxOutstanding: options.maxOutstanding,
    drainS: options.drainS,
    images: {
      count: ctx.jpegs.length,
      source: options.imagesDir ?? 'generated by bench/images.ts',
      meanKiB: ctx.jpegs.reduce((a, b) => a + b.length, 0) / ctx.jpegs.length / 1024,
    },
    serverArgs: options.serverArgs,
    serverEnv: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('SIGHTLINE_')) as [string, string][]),
    headers: options.headers,
  };
  const r: BenchResult = {
    model: {
      name: model.name,
      version: model.version,
      source: model.source,
      format: model.format,
      input: `${model.inputWidth}×${model.inputHeight}`,
      inputShape: model.inputShape,
      outputDims: model.outputDims,
      labels: model.manifest.labels.length,
      manifestGenerated: model.manifestGenerated,
    },
    machine: ctx.machine,
    settings,
    startedAt: new Date().toISOString(),
    finishedAt: '',
    raw: [],
    idleWaits: [],
    errors: [],
    notes: [],
  };
  if (model.fixedBatch) r.notes.push(`The model's batch dimension is fixed at ${model.fixedBatch}; the sweep only uses that.`);
  const fail = (phase: string, err: unknown) => {
    const msg = `${phase}: ${(err as Error).stack ?? String(err)}`;
    r.errors.push(msg);
    process.stderr.write(`  ${msg}\n`);
  };
  if (options.phases.has('raw')) {
    try {
      for (const layout of layoutsFor(ctx.machine.cores)) {
        const cells = await measured(
          ctx,
          r,
          `raw ${layoutName(layout)}`,
          () =>
            rawSweep({
              modelPath: model.modelPath,
              inputName: model.inputName,
              width: model.inputWidth,
              height: model.inputHeight,
              batches: settings.batches,
              layouts: [layout],
              seconds: options.rawSeconds,
              onCell: (c) => {
                c.foreignCores = monitor.window(c.startedMs, c.endedMs).foreignCores;
                log(
                  `  raw ${layoutName(c)}, batch ${c.batch}: ${fmt(c.imagesPerSec)} img/s (session ${fmt(c.sessionImagesPerSec)})${otherCpu(c.foreignCores)}`,
                );
              },
            }),
          (cells) => Math.max(0, ...cells.map((c) => c.foreignCores ?? 0)),
        );
        r.raw.push(...cells);
      }
      r.rawBest = bestCell(r.raw);
    } catch (err) {
      fail('raw sweep', err);
    }
  }
  if (options.phases.has('offline')) {
    try {
      const best = r.rawBest ?? { instances: ctx.machine.cores, intraOpThreads: 1, batch: settings.batches[0] ?? 1 };
      r.offline = await measured(
        ctx,
        r,
        'offline',
        async () => {
          const o = await offlinePipeline({
            model,
            jpegs: ctx.jpegs,
            layout: { instances: best.instances, intraOpThreads: best.intraOpThreads },
            batch: best.batch,
            seconds: options.offlineSeconds,
          });
          o.foreignCores = monitor.window(o.startedMs, o.endedMs).foreignCores;
          return o;
        },
        (o) => o.foreignCores ?? 0,
      );
      log(
        `  offline pipeline (${layoutName(r.offline)}, batch ${r.offline.batch}): ${fmt(r.offline.imagesPerSec)} img/s, decode p50 ${fmt(r.offline.decodeMs.p50)} ms${otherCpu(r.offline.foreignCores)}`,
      );
    } catch (err) {
      fail('offline pipeline', err);
    }
  }
  if (options.phases.has('server') || options.phases.has('overload')) {
    if (ctx.buildError) r.errors.push(ctx.buildError);
    else {
      try {
        r.server = await serverPhases(ctx, model, dir, r);
      } catch (err) {
        fail('server', err);
      }
    }
  }
  r.notes.push(...autoNotes(ctx, r));
  r.finishedAt = new Date().toISOString();
  return r;
}

async function main(): Promise<number> {
  let options: Options | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (!options) {
    process.stdout.write(HELP);
    return 0;
  }
  keepTmp = options.keepTmp;
  monitor.start();
  const tmpRoot = await mkdtemp(join(tmpdir(), 'sightline-bench-'));
  tmpDirs.add(tmpRoot);
  if (keepTmp) log(`temporary files in ${tmpRoot}`);
  const needServer = options.phases.has('server') || options.phases.has('overload');
  let buildError: string | undefined;
  if (needServer && !options.skipBuild) buildError = build();
  if (needServer && !buildError && !existsSync(join(PROJECT_ROOT, 'dist/cli/main.js'))) buildError = 'dist/cli/main.js is missing (run npm run build)';
  let imagesDir = options.imagesDir;
  let jpegs: Buffer[];
  if (imagesDir) jpegs = await loadImages(imagesDir);
  else {
    imagesDir = join(tmpRoot, 'images');
    jpegs = await generateImages(imagesDir, options.imageCount);
  }
  const ctx: Context = {
    options,
    machine: machineInfo(),
    imagesDir,
    jpegs,
    tmpRoot,
    buildError,
    supports: needServer && !buildError ? serverSupports() : {},
    patienceUntil: 0,
  };
  if (buildError) process.stderr.write(`bench: ${buildError}\n`);
  const written: string[] = [];
  let failed = false;
  for (const spec of options.specs) {
    try {
      const result = await benchModel(ctx, spec);
      if (interrupted) break;
      written.push(...(await writeReport(result, options.outDir)));
      for (const h of headlines(result)) log(`  ${h.pass === undefined ? '–' : h.pass ? '✓' : '✗'} ${h.target}: ${h.measured.replaceAll('**', '')}`);
      if (result.errors.length) failed = true;
    } catch (err) {
      failed = true;
      process.stderr.write(`bench: ${spec.name}: ${(err as Error).stack ?? String(err)}\n`);
    }
  }
  log(`\nwrote:\n${written.map((w) => `  ${w}`).join('\n')}`);
  return failed ? 1 : 0;
}

main()
  .then(
    (code) => code,
    (err: Error) => {
      process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
      return 1;
    },
  )
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  });
