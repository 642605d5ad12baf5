/** The result of one model's benchmark and its Markdown + JSON report. */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LoadResult } from './load.js';
import type { OfflineResult } from './offline.js';
import { layoutName, type RawCell } from './raw.js';
import type { WindowStats } from './server.js';
import { fmt, type Summary } from './stats.js';

export interface MachineInfo {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  platform: string;
  node: string;
  onnxruntime: string;
  sharp: string;
  libvips: string;
}

export interface Settings {
  durationS: number;
  warmupS: number;
  rawSeconds: number;
  /** Seconds of each raw measurement beside the c=1 and c=16 levels (0: none); absent in older reports. */
  rawBesideS?: number;
  offlineSeconds: number;
  concurrencies: number[];
  /** Levels measured again with the images scaled to the model's input on the client; absent in older reports. */
  edgeResize?: number[];
  batches: number[];
  overloadFactor: number;
  maxOutstanding: number;
  drainS: number;
  images: { count: number; source: string; meanKiB: number };
  serverArgs: string[];
  /** SIGHTLINE_* variables the server inherited. */
  serverEnv: Record<string, string>;
  headers: Record<string, string>;
}

export interface ModelInfo {
  name: string;
  version: string;
  source: string;
  format: string;
  input: string;
  inputShape: (number | string)[];
  outputDims: number[];
  labels: number;
  manifestGenerated: boolean;
}

/** Server-side figures taken from /metrics after a phase. */
export type ScrapedMetrics = Record<string, number>;

/** What an edge-resized level sent: the scaled images' size and their originals'. */
export interface EdgeResizeInfo {
  width: number;
  height: number;
  sourceWidth: number;
  sourceHeight: number;
  meanKiB: number;
}

/**
 * The raw cell a headline level is judged against (the ceiling for c=16, the best
 * single-image run for c=1), measured again right before and right after the level.
 */
export interface RawBeside {
  before: RawCell;
  after: RawCell;
}

export interface LevelResult {
  load: LoadResult;
  /** Present on a level whose images were edge-resized. */
  edge?: EdgeResizeInfo;
  /** Present on a c=1 or c=16 level when `--raw-beside` is on; absent in older reports. */
  rawBeside?: RawBeside;
  server: WindowStats;
  /** Cores other processes used during the measured window. */
  foreignCores: number;
  metrics: ScrapedMetrics;
  logEvents: Record<string, number>;
}

export interface OverloadResult {
  targetRate: number;
  load: LoadResult;
  server: WindowStats;
  foreignCores: number;
  /** RSS a few seconds after the drain. */
  rssAfterMiB: number;
  metrics: ScrapedMetrics;
  logEvents: Record<string, number>;
  aliveAfter: boolean;
  livezAfter: string;
}

export interface ServerResult {
  command: string[];
  startupS: number;
  rssReadyMiB: number;
  models: unknown;
  sightlineMetricNames: string[];
  sightlineSamplesAfter: string[];
  levels: LevelResult[];
  overload?: OverloadResult;
  crashed?: string;
}

export interface BenchResult {
  model: ModelInfo;
  machine: MachineInfo;
  settings: Settings;
  startedAt: string;
  finishedAt: string;
  raw: RawCell[];
  rawBest?: RawCell;
  offline?: OfflineResult;
  server?: ServerResult;
  /** Waits for other processes to go quiet before each phase. */
  idleWaits: { phase: string; waitedS: number; foreignCores: number }[];
  errors: string[];
  notes: string[];
}

/** Other processes using this many cores during a measurement make it unreliable. */
export const FOREIGN_LIMIT = 0.15;

/** Phases during which other processes took CPU, worst first. */
export function contaminated(r: BenchResult): { phase: string; cores: number }[] {
  const out: { phase: string; cores: number }[] = [];
  for (const c of r.raw) if ((c.foreignCores ?? 0) >= FOREIGN_LIMIT) out.push({ phase: `raw ${layoutName(c)} b${c.batch}`, cores: c.foreignCores! });
  if ((r.offline?.foreignCores ?? 0) >= FOREIGN_LIMIT) out.push({ phase: 'offline', cores: r.offline!.foreignCores! });
  for (const l of r.server?.levels ?? []) if (l.foreignCores >= FOREIGN_LIMIT) out.push({ phase: levelName(l), cores: l.foreignCores });
  const ov = r.server?.overload;
  if (ov && ov.foreignCores >= FOREIGN_LIMIT) out.push({ phase: 'overload', cores: ov.foreignCores });
  return out.sort((a, b) => b.cores - a.cores);
}

export const TARGET_MODEL = 'yolov8n_shape_640';

export interface Headline {
  target: string;
  measured: string;
  pass: boolean | undefined;
}

function level(result: BenchResult, concurrency: number, edge = false): LevelResult | undefined {
  return result.server?.levels.find((l) => l.load.concurrency === concurrency && !!l.edge === edge);
}

/** `16`, or `16 edge 640×360` for an edge-resized level (the tables' first column). */
function levelLabel(l: LevelResult): string {
  return `${l.load.concurrency}${l.edge ? ` edge ${l.edge.width}×${l.edge.height}` : ''}`;
}

/** `c=16`, or `c=16 edge 640×360`. */
function levelName(l: LevelResult): string {
  return `c=${levelLabel(l)}`;
}

/** The raw sweep's cell with the best session.run time of one image: the lone part's hardware best. */
export function bestSingleCell(r: Pick<BenchResult, 'raw'>): RawCell | undefined {
  const singles = r.raw.filter((c) => c.batch === 1);
  return singles.length ? singles.reduce((best, c) => (c.meanSessionMs < best.meanSessionMs ? c : best)) : undefined;
}

/**
 * The reference a level is judged against and how it was taken: the better of the two
 * measurements of the raw cell beside the level (the stricter bound: the machine's speed
 * drifts by tens of per cent over minutes, so the sweep's figure from the start of the run
 * can be stale either way) or, without them, the sweep's.
 */
function reference(
  sweep: number,
  l: LevelResult,
  pick: (c: RawCell) => number,
  better: (a: number, b: number) => number,
  unit: string,
): { value: number; how: string } {
  if (!l.rawBeside) return { value: sweep, how: 'from the raw sweep' };
  const { before, after } = l.rawBeside;
  const value = better(pick(before), pick(after));
  return {
    value,
    how: `the better measured beside the level: ${fmt(pick(before), 1)} before, ${fmt(pick(after), 1)} after; the sweep's ${fmt(sweep, 1)} ${unit}`,
  };
}

/**
 * Issue 19's targets: the lone part near the hardware's best, throughput near the raw
 * ceiling (0.90 at 640, 0.80 for the cheaper 320, where decoding weighs more), and
 * memory that does not grow with concurrency.
 */
/** The c=1 and c=16 targets, on the full-size images or on the edge-resized ones. */
function lonePartAndCeiling(r: BenchResult, edge: boolean): Headline[] {
  const out: Headline[] = [];
  const c1 = level(r, 1, edge);
  const c16 = level(r, 16, edge);
  const sent = (l: LevelResult) => (l.edge ? ` (edge resize: ${l.edge.width}×${l.edge.height} of ${l.edge.sourceWidth}×${l.edge.sourceHeight} sent)` : '');
  const single = bestSingleCell(r);
  if (c1 && single) {
    const t = c1.load.serverTimingsMs;
    const decode = t.decode?.p50 ?? Number.NaN;
    const best = reference(single.meanSessionMs, c1, (c) => c.meanSessionMs, Math.min, 'ms');
    const bound = best.value + decode + 10;
    const p50 = c1.load.latencyOkMs.p50;
    out.push({
      target: `c=1 median latency ≤ best single-image session.run (${layoutName(single)}) + decode + 10 ms${sent(c1)}`,
      measured:
        `**${fmt(p50, 1)} ms** vs ${fmt(best.value, 1)} + ${fmt(decode, 1)} + 10 = ${fmt(bound, 1)} ms (session.run ${best.how}); medians: decode ${fmt(decode, 2)}, preprocess ${fmt(t.preprocess?.p50, 2)}, ` +
        `queue ${fmt(t.queue?.p50, 2)}, infer ${fmt(t.infer?.p50, 2)}, postprocess ${fmt(t.postprocess?.p50, 2)}, outside the server's timings ${fmt(c1.load.httpOverheadMs.p50, 2)} ms`,
      pass: p50 <= bound,
    });
  }
  if (c16 && r.rawBest) {
    const want = r.model.name.includes('320') ? 0.8 : 0.9;
    const ceiling = reference(r.rawBest.imagesPerSec, c16, (c) => c.imagesPerSec, Math.max, 'img/s');
    const ratio = c16.load.okPerSec / ceiling.value;
    out.push({
      target: `c=16 ≥ ${fmt(want, 2)} × raw ceiling (${layoutName(r.rawBest)}, batch ${r.rawBest.batch})${sent(c16)}`,
      measured: `${fmt(c16.load.okPerSec)} / ${fmt(ceiling.value)} img/s = **${fmt(ratio, 2)}** (ceiling ${ceiling.how})`,
      pass: ratio >= want,
    });
  }
  return out;
}

function latencyHeadlines(r: BenchResult): Headline[] {
  const out = [...lonePartAndCeiling(r, false), ...lonePartAndCeiling(r, true)];
  const c1 = level(r, 1);
  const c64 = level(r, 64);
  if (c1 && c64) {
    const growth = c64.server.rssPeakMiB - c1.server.rssPeakMiB;
    out.push({
      target: 'server RSS at c=64 within 100 MiB of c=1',
      measured: `peak ${fmt(c1.server.rssPeakMiB, 0)} → ${fmt(c64.server.rssPeakMiB, 0)} MiB (**${growth >= 0 ? '+' : ''}${fmt(growth, 0)} MiB**)`,
      pass: Math.abs(growth) <= 100,
    });
  }
  return out;
}

export function headlines(r: BenchResult): Headline[] {
  const out: Headline[] = [];
  const c16 = level(r, 16);
  const c1 = level(r, 1);
  const forTarget = r.model.name === TARGET_MODEL ? '' : ` (target set for ${TARGET_MODEL}; shown for reference)`;
  if (c16 && r.offline) {
    const ratio = c16.load.okPerSec / r.offline.imagesPerSec;
    out.push({
      target: `c=16 end-to-end ≥ 0.90 × offline pipeline${forTarget}`,
      measured: `${fmt(c16.load.okPerSec)} / ${fmt(r.offline.imagesPerSec)} img/s = **${fmt(ratio, 2)}**`,
      pass: ratio >= 0.9,
    });
  } else out.push({ target: `c=16 end-to-end ≥ 0.90 × offline pipeline${forTarget}`, measured: 'not measured', pass: undefined });
  if (c1) {
    const o = c1.load.overheadMs.p50;
    out.push({
      target: 'c=1 median server overhead (client latency − timings_ms.infer) ≤ 3 ms',
      measured:
        `**${fmt(o, 2)} ms**; decode + letterbox is ${fmt(c1.load.serverTimingsMs.decode?.p50, 2)} ms of it ` +
        `(without decode: ${fmt(c1.load.overheadExclDecodeMs.p50, 2)} ms; outside the server's own timings: ${fmt(c1.load.httpOverheadMs.p50, 2)} ms)`,
      pass: o <= 3,
    });
  } else out.push({ target: 'c=1 median server overhead ≤ 3 ms', measured: 'not measured', pass: undefined });
  out.push(...latencyHeadlines(r));
  const ov = r.server?.overload;
  if (ov && c16) {
    const p99 = ov.load.latencyOkMs.p99;
    const sat = c16.load.latencyOkMs.p99;
    const flat = rssFlat(ov);
    const okCount = ov.load.byStatus['200'] ?? 0;
    const pLatency = okCount > 0 && p99 <= 2 * sat;
    out.push({
      target: `${fmt(ov.targetRate / Math.max(1e-9, bestClosed(r)), 0)}× overload: p99 of accepted ≤ 2 × p99 at c=16, no crash, RSS flat`,
      measured:
        `p99 **${fmt(p99, 0)} ms** vs 2 × ${fmt(sat, 0)} ms; ${ov.aliveAfter ? 'alive, /livez ' + ov.livezAfter : '**process died** (' + ov.livezAfter + ')'}; ` +
        `RSS ${fmt(ov.server.rssStartMiB, 0)} → peak ${fmt(ov.server.rssPeakMiB, 0)} → ${fmt(ov.rssAfterMiB, 0)} MiB${flat ? '' : ' (**not flat**)'}; ` +
        `shed ${fmt(shedShare(ov.load) * 100, 1)} %`,
      pass: pLatency && ov.aliveAfter && flat,
    });
  } else out.push({ target: '4× overload: p99 accepted ≤ 2 × p99 at c=16, no crash, RSS flat', measured: 'not measured', pass: undefined });
  return out;
}

/** Flat: the peak stays within max(64 MiB, 25 %) of the RSS when the overload started. */
export function rssFlat(ov: OverloadResult): boolean {
  const start = ov.server.rssStartMiB;
  return Number.isFinite(start) && ov.server.rssPeakMiB - start <= Math.max(64, 0.25 * start);
}

function bestClosed(r: BenchResult): number {
  return Math.max(0, ...(r.server?.levels.filter((l) => !l.edge).map((l) => l.load.okPerSec) ?? []));
}

/** Share of sent requests answered 503/504 (shed by admission control or deadline). */
export function shedShare(load: LoadResult): number {
  const shed = (load.byStatus['503'] ?? 0) + (load.byStatus['504'] ?? 0);
  return load.sent > 0 ? shed / load.sent : 0;
}

const mark = (pass: boolean | undefined) => (pass === undefined ? '–' : pass ? '✓' : '✗');
const kv = (m: Record<string, number>) =>
  Object.keys(m).length
    ? Object.entries(m)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')
    : '–';
const ms = (s: Summary | undefined, d = 1) => (s ? `${fmt(s.p50, d)} / ${fmt(s.p95, d)} / ${fmt(s.p99, d)}` : '–');

export function renderMarkdown(r: BenchResult): string {
  const L: string[] = [];
  const date = r.startedAt.slice(0, 10);
  L.push(`# Sightline benchmark: ${r.model.name} (${date})`, '');
  L.push(
    `Model \`${r.model.source}\` · ${r.model.format} · input ${r.model.input} · output [${r.model.outputDims.join(', ')}] · ${r.model.labels} labels${r.model.manifestGenerated ? ' (model.json generated by the harness)' : ''}.`,
    '',
  );
  L.push('## Headline', '', '| target | measured | |', '| --- | --- | --- |');
  for (const h of headlines(r)) L.push(`| ${h.target} | ${h.measured} | ${mark(h.pass)} |`);
  L.push('');
  const busy = contaminated(r);
  if (busy.length) {
    L.push(
      `> **⚠ Not an idle machine:** other processes used CPU during ${busy.map((b) => `${b.phase} (${fmt(b.cores, 2)} cores)`).join(', ')}. Those figures understate what Sightline does on an idle ${r.machine.cores}-core machine.`,
      '',
    );
  } else {
    L.push(`Other processes used less than ${FOREIGN_LIMIT} cores during every measurement.`, '');
  }
  if (r.errors.length) {
    L.push('**Errors during the run:**', '');
    for (const e of r.errors) L.push('```', e, '```');
    L.push('');
  }

  const m = r.machine;
  const s = r.settings;
  L.push('## Machine and settings', '');
  L.push(`- ${m.cores} cores (os.availableParallelism), ${m.cpuModel}, ${fmt(m.memoryGiB, 1)} GiB RAM, ${m.platform}`);
  L.push(`- Node ${m.node}, onnxruntime-node ${m.onnxruntime}, sharp ${m.sharp} (libvips ${m.libvips})`);
  L.push(`- Run ${r.startedAt} → ${r.finishedAt}`);
  L.push(`- Images: ${s.images.count} × 1280×720 JPEG (${s.images.source}), mean ${fmt(s.images.meanKiB, 0)} KiB, posted raw (\`image/jpeg\`)`);
  const edge = r.server?.levels.find((l) => l.edge)?.edge;
  if (edge) {
    L.push(
      `- Edge-resized levels (c=${(s.edgeResize ?? []).join(', ')}): the same images scaled to ${edge.width}×${edge.height} by the SDK's \`edgeResize\` (JPEG quality 95, mean ${fmt(edge.meanKiB, 0)} KiB), sent with \`source_width=${edge.sourceWidth}&source_height=${edge.sourceHeight}\``,
    );
  }
  L.push(
    `- Raw sweep ${s.rawSeconds} s per cell${s.rawBesideS ? `, and ${s.rawBesideS} s right before and after the c=1 and c=16 levels for the cell each is judged against` : ''}; offline pipeline ${s.offlineSeconds} s; server levels ${s.warmupS} s warm-up + ${s.durationS} s measured; overload ${s.durationS} s at ${s.overloadFactor}× the best closed-loop throughput, at most ${s.maxOutstanding} outstanding, ${s.drainS} s drain`,
  );
  L.push(
    `- Server arguments passed through: ${s.serverArgs.length ? s.serverArgs.map((a) => `\`${a}\``).join(' ') : 'none (server defaults)'}; SIGHTLINE_* env: ${Object.keys(s.serverEnv).length ? kv(s.serverEnv as unknown as Record<string, number>) : 'none'}; extra request headers: ${Object.keys(s.headers).length ? JSON.stringify(s.headers) : 'none'}`,
  );
  L.push('');

  L.push('## (a) Raw ONNX Runtime throughput', '');
  L.push(
    'OnnxRunner (one worker thread per instance), pre-allocated grey uint8 images; **includes** the worker\'s uint8 HWC → float32 CHW conversion and the message hop. "session" is the rate if only `session.run` counted.',
    '',
  );
  const layouts = [...new Set(r.raw.map((c) => layoutName(c)))];
  const best = r.rawBest;
  const isBest = (c: RawCell) => !!best && c.batch === best.batch && layoutName(c) === layoutName(best);
  L.push(`| batch | ${layouts.map((l) => `${l}: img/s (session img/s; ms per run)`).join(' | ')} |`);
  L.push(`| --- | ${layouts.map(() => '---').join(' | ')} |`);
  for (const batch of [...new Set(r.raw.map((c) => c.batch))]) {
    const cells = layouts.map((l) => r.raw.find((c) => c.batch === batch && layoutName(c) === l));
    L.push(
      `| ${batch} | ${cells.map((c) => (c ? `${isBest(c) ? '**' : ''}${fmt(c.imagesPerSec)}${isBest(c) ? '**' : ''} (${fmt(c.sessionImagesPerSec)}; ${fmt(c.meanRunMs)} ms, convert ${fmt(c.meanConvertMs)} ms${(c.foreignCores ?? 0) >= FOREIGN_LIMIT ? `; ⚠ other CPU ${fmt(c.foreignCores, 2)}` : ''})` : '–')).join(' | ')} |`,
    );
  }
  if (r.rawBest) L.push('', `Best: **${fmt(r.rawBest.imagesPerSec)} img/s** at batch ${r.rawBest.batch}, ${layoutName(r.rawBest)}.`);
  L.push('');

  if (r.offline) {
    const o = r.offline;
    L.push('## (a′) Offline pipeline (one process, no HTTP)', '');
    L.push(
      `JPEG bytes → prepareImage (sharp decode + letterbox) → OnnxRunner.run → postprocess + verdict, at ${layoutName(o)}, batch ${o.batch}, ${o.prefetch} batches decoding ahead per instance.`,
      '',
    );
    L.push(
      `- **${fmt(o.imagesPerSec)} img/s** (${o.images} images in ${fmt(o.seconds, 1)} s) = ${r.rawBest ? fmt(o.imagesPerSec / r.rawBest.imagesPerSec, 2) : '–'} × raw best; other processes meanwhile: ${fmt(o.foreignCores, 2)} cores`,
    );
    L.push(`- decode + letterbox per image p50/p95/p99: ${ms(o.decodeMs)} ms (overlapping inference)`);
    L.push(
      `- run per batch p50/p95/p99: ${ms(o.runMs)} ms; postprocess per image p50: ${fmt(o.postprocessMs.p50, 2)} ms; ${fmt(o.detectionsPerImage, 2)} detections per image`,
    );
    L.push('');
  }

  const srv = r.server;
  if (srv) {
    L.push('## (b) Server under load (closed loop, separate generator process)', '');
    L.push(`\`node ${srv.command.join(' ')}\` · ready after ${fmt(srv.startupS, 1)} s · RSS when ready ${fmt(srv.rssReadyMiB, 0)} MiB.`, '');
    L.push(
      '| c | img/s | latency p50 / p95 / p99 (max) ms | responses | overhead p50 / p95 ms | overhead − decode p50 ms | outside timings p50 ms | × offline | × raw | server CPU | generator CPU | /livez p50 / max ms | server loop lag p99 / max ms | RSS peak MiB | other CPU (cores) |',
    );
    L.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const l of srv.levels) {
      const d = l.load;
      const errs = { ...d.byCode, ...d.transportErrors };
      L.push(
        `| ${levelLabel(l)} | ${fmt(d.okPerSec)} | ${ms(d.latencyOkMs)} (${fmt(d.latencyOkMs.max)}) | ${kv(d.byStatus)}${Object.keys(errs).length ? '; ' + kv(errs) : ''} | ${fmt(d.overheadMs.p50, 2)} / ${fmt(d.overheadMs.p95, 2)} | ${fmt(d.overheadExclDecodeMs.p50, 2)} | ${fmt(d.httpOverheadMs.p50, 2)} | ` +
          `${r.offline ? fmt(d.okPerSec / r.offline.imagesPerSec, 2) : '–'} | ${r.rawBest ? fmt(d.okPerSec / r.rawBest.imagesPerSec, 2) : '–'} | ${fmt(l.server.cpuPct, 0)} % | ${fmt(d.generatorCpuPct, 0)} % | ` +
          `${fmt(l.server.livezMs.p50, 1)} / ${fmt(l.server.livezMs.max, 1)}${l.server.livezFailures ? ` (${l.server.livezFailures} failed)` : ''} | ${fmt((l.metrics.nodejs_eventloop_lag_p99_seconds ?? NaN) * 1000, 1)} / ${fmt((l.metrics.nodejs_eventloop_lag_max_seconds ?? NaN) * 1000, 1)} | ${fmt(l.server.rssPeakMiB, 0)} | ${fmt(l.foreignCores, 2)}${l.foreignCores >= FOREIGN_LIMIT ? ' ⚠' : ''} |`,
      );
    }
    L.push('');
    L.push(
      'Overhead = client latency − server-reported `timings_ms.infer`; "overhead − decode" also subtracts `timings_ms.decode` (sharp decode + letterbox); "outside timings" = client latency − `timings_ms.total` (HTTP, body read, routing, JSON, the client). CPU is % of one core. "Server loop lag" is prom-client\'s `nodejs_eventloop_lag_*`, sampled with a 10 ms timer: an idle server shows about 10 ms; /livez latency is the better stall signal.',
      '',
    );
    const keys = [...new Set(srv.levels.flatMap((l) => Object.keys(l.load.serverTimingsMs)))];
    if (keys.length) {
      L.push('Server-reported `timings_ms`, median (p95) per level:', '');
      L.push(`| c | ${keys.join(' | ')} |`, `| --- | ${keys.map(() => '---').join(' | ')} |`);
      for (const l of srv.levels) {
        L.push(
          `| ${levelLabel(l)} | ${keys
            .map((k) => {
              const t = l.load.serverTimingsMs[k];
              return t ? `${fmt(t.p50, 2)} (${fmt(t.p95, 1)})` : '–';
            })
            .join(' | ')} |`,
        );
      }
      L.push('');
    }
    const ov = srv.overload;
    if (ov) {
      const d = ov.load;
      L.push('## (c) Overload (open loop)', '');
      L.push(`Fixed arrival rate **${fmt(ov.targetRate, 1)} req/s** for ${d.windowS} s (latency counted from each request's scheduled send time).`, '');
      L.push(
        `- sent ${d.sent}, not sent (generator cap of ${s.maxOutstanding} outstanding reached) ${d.notSent}, abandoned after the drain ${d.abandoned}; most in flight ${d.maxInFlight}`,
      );
      L.push(`- responses by status: ${kv(d.byStatus)}; by error code: ${kv(d.byCode)}; transport errors: ${kv(d.transportErrors)}`);
      L.push(`- **shed (503/504): ${fmt(shedShare(d) * 100, 1)} %** of sent; accepted (200) ${fmt(d.okPerSec)} img/s`);
      L.push(
        `- latency of accepted p50/p95/p99 (max): ${ms(d.latencyOkMs)} (${fmt(d.latencyOkMs.max)}) ms vs p99 at c=16: ${fmt(level(r, 16)?.load.latencyOkMs.p99)} ms; shed answers p50/p99: ${fmt(d.latencyShedMs.p50)} / ${fmt(d.latencyShedMs.p99)} ms`,
      );
      L.push(
        `- server RSS start ${fmt(ov.server.rssStartMiB, 0)} → peak ${fmt(ov.server.rssPeakMiB, 0)} → end ${fmt(ov.server.rssEndMiB, 0)} MiB; after drain ${fmt(ov.rssAfterMiB, 0)} MiB (${rssFlat(ov) ? 'flat' : 'NOT flat'}: peak within max(64 MiB, 25 %) of start)`,
      );
      L.push(
        `- server CPU ${fmt(ov.server.cpuPct, 0)} %; generator CPU ${fmt(d.generatorCpuPct, 0)} %, send lag p99 ${fmt(d.sendLagMs?.p99, 1)} ms; /livez during the run p50/max ${fmt(ov.server.livezMs.p50, 1)} / ${fmt(ov.server.livezMs.max, 1)} ms, ${ov.server.livezFailures} failed; server loop lag p99/max ${fmt((ov.metrics.nodejs_eventloop_lag_p99_seconds ?? NaN) * 1000, 1)} / ${fmt((ov.metrics.nodejs_eventloop_lag_max_seconds ?? NaN) * 1000, 1)} ms`,
      );
      L.push(`- afterwards: ${ov.aliveAfter ? 'process alive' : '**process gone**'}, /livez ${ov.livezAfter}`);
      L.push(`- other processes used ${fmt(ov.foreignCores, 2)} cores meanwhile${ov.foreignCores >= FOREIGN_LIMIT ? ' ⚠' : ''}`);
      L.push('');
    }
    L.push('## Server settings and log', '');
    L.push(
      'Effective settings as `GET /v1/models` reports them (first model):',
      '',
      '```json',
      JSON.stringify(firstModel(srv.models), null, 1).slice(0, 3000),
      '```',
      '',
    );
    L.push(`Sightline metrics exposed: ${srv.sightlineMetricNames.map((n) => `\`${n}\``).join(', ') || 'none'}.`, '');
    if (srv.sightlineSamplesAfter.length) L.push('After the run (non-bucket samples):', '', '```', ...srv.sightlineSamplesAfter.slice(0, 60), '```', '');
    const allEvents = [...srv.levels.map((l) => [levelName(l), l.logEvents] as const), ...(ov ? [['overload', ov.logEvents] as const] : [])];
    const logged = allEvents.filter(([, e]) => Object.keys(e).length);
    L.push(`Server log lines at level warn and above, by event: ${logged.length ? logged.map(([n, e]) => `${n}: ${kv(e)}`).join('; ') : 'none'}.`, '');
    if (srv.crashed) L.push(`**Server crashed:** ${srv.crashed}`, '');
  }
  if (r.notes.length) {
    L.push('## Notes', '');
    for (const n of r.notes) L.push(`- ${n}`);
    L.push('');
  }
  return L.join('\n');
}

function firstModel(models: unknown): unknown {
  const list = (models as { models?: Record<string, unknown>[] } | undefined)?.models;
  if (!list?.[0]) return models;
  const { labels, ...rest } = list[0];
  return { ...rest, labels: Array.isArray(labels) ? `${labels.length} labels` : labels };
}

/** Writes `<out>/<YYYY-MM-DD>-<model>.md` and `.json`; returns the two paths. */
export async function writeReport(r: BenchResult, outDir: string): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const stem = join(outDir, `${r.startedAt.slice(0, 10)}-${r.model.name}`);
  // A second run of the same model on the same day gets -2, -3, …: a result already written is never replaced.
  let base = stem;
  for (let n = 2; existsSync(`${base}.md`) || existsSync(`${base}.json`); n++) base = `${stem}-${n}`;
  await writeFile(`${base}.md`, renderMarkdown(r));
  await writeFile(`${base}.json`, JSON.stringify(r, null, 1));
  return [`${base}.md`, `${base}.json`];
}
