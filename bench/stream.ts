/**
 * Latency of the same images over the WebSocket stream and over HTTP POST /v1/detect,
 * at fixed total frame rates, against `sightline serve` (built-in model) in a child
 * process. The load comes from `simulate()` (the SDK's camera simulator) in this
 * process: open loop, frames evenly spaced, so a slow server cannot slow the cameras.
 *
 *   npm run bench:stream -- [--rates 10,100] [--lines 2] [--duration 20] [--warmup 3]
 *
 * Writes bench/results/<date>-stream.md and .json. Numbers are reported, never asserted.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { simulate, type SimulateReport } from '../src/cli/simulate.js';
import { MachineMonitor, CORES } from './machine.js';
import { PROJECT_ROOT } from './models.js';
import { ServerProcess, epochMs } from './server.js';

const TRANSPORTS = ['ws', 'http'] as const;

interface Cell {
  transport: (typeof TRANSPORTS)[number];
  total_fps: number;
  report: SimulateReport;
  foreign_cores: number;
  server_cpu_pct: number;
  server_rss_peak_mib: number;
}

const { values } = parseArgs({
  options: {
    rates: { type: 'string', default: '10,100' },
    lines: { type: 'string', default: '2' },
    duration: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    out: { type: 'string', default: join(PROJECT_ROOT, 'bench/results') },
  },
});
const rates = values.rates.split(',').map(Number);
const lines = Number(values.lines);
const durationS = Number(values.duration);
const warmupS = Number(values.warmup);

async function loadSamples(): Promise<Buffer[]> {
  const dir = join(PROJECT_ROOT, 'samples');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.jpg')).sort();
  return Promise.all(names.map((n) => readFile(join(dir, n))));
}

function fmt(v: number | null | undefined, digits = 1): string {
  return v === null || v === undefined || Number.isNaN(v) ? '–' : v.toFixed(digits);
}

function markdown(cells: Cell[], meta: Record<string, string>): string {
  const rows = cells.map((c) => {
    const r = c.report;
    const drops = r.totals.drops;
    const errors =
      Object.entries(r.errors_by_code)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || '0';
    return `| ${c.transport} | ${c.total_fps} | ${r.totals.sent} | ${r.totals.results} | ${drops} | ${errors} | ${fmt(r.latency_ms.p50)} | ${fmt(r.latency_ms.p90)} | ${fmt(r.latency_ms.p99)} | ${fmt(r.latency_ms.max)} | ${fmt(r.achieved_fps.results)} | ${fmt(c.server_cpu_pct, 0)} | ${fmt(c.server_rss_peak_mib, 0)} | ${fmt(c.foreign_cores, 2)} |`;
  });
  return [
    '# Stream vs HTTP latency',
    '',
    Object.entries(meta)
      .map(([k, v]) => `- ${k}: ${v}`)
      .join('\n'),
    '',
    'Same images (samples/*.jpg in rotation), same server, same model; latency is client-side from the',
    "frame's scheduled send time to its answer (ms). `drops` are stream frames the server dropped under",
    'backpressure (announced to the client); HTTP has no drops, it answers 503 OVERLOADED instead.',
    '',
    '| transport | total fps | sent | results | drops | errors | p50 | p90 | p99 | max | results/s | server CPU % | server RSS peak MiB | other CPU (cores) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  execFileSync('npm', ['run', 'build'], { cwd: PROJECT_ROOT, stdio: 'ignore' });
  const images = await loadSamples();
  const dir = await mkdtemp(join(tmpdir(), 'sightline-bench-stream-'));
  const monitor = new MachineMonitor();
  monitor.start();
  const server = await ServerProcess.start({
    projectRoot: PROJECT_ROOT,
    repoDir: join(PROJECT_ROOT, 'models'),
    extraArgs: ['--data-dir', join(dir, 'data'), '--no-store-sync-results'],
    logPath: join(dir, 'serve.log'),
    readyTimeoutS: 180,
  });
  monitor.watch(server.pid);
  const cells: Cell[] = [];
  try {
    for (const total of rates) {
      for (const transport of TRANSPORTS) {
        const base = { url: server.baseUrl, lines, fps: total / lines, transport, images, drainS: 10, live: null };
        await simulate({ ...base, durationS: warmupS });
        const t0 = epochMs();
        const report = await simulate({ ...base, durationS });
        const t1 = epochMs();
        const load = monitor.window(t0, t1);
        const window = server.samples.filter((s) => s.t >= t0 && s.t <= t1);
        const cpuPct = window.length > 1 ? ((window.at(-1)!.cpuS - window[0]!.cpuS) / ((window.at(-1)!.t - window[0]!.t) / 1000)) * 100 : Number.NaN;
        const rssPeak = Math.max(...window.map((s) => s.rssKiB)) / 1024;
        cells.push({ transport, total_fps: total, report, foreign_cores: load.foreignCores, server_cpu_pct: cpuPct, server_rss_peak_mib: rssPeak });
        process.stderr.write(
          `${transport} @ ${total} fps: p50 ${fmt(report.latency_ms.p50)} ms, p99 ${fmt(report.latency_ms.p99)} ms, ${report.totals.results}/${report.totals.sent} results, ${report.totals.drops} drops\n`,
        );
      }
    }
  } finally {
    await server.stop(15);
    monitor.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const date = new Date().toISOString().slice(0, 10);
  const meta = {
    date: new Date().toISOString(),
    machine: `${CORES} cores, ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`,
    model: 'models/defects/1 (built-in, 416 input)',
    server: '`sightline serve` defaults (stream_max_in_flight 2, stream_max_pending 4, drop oldest), --no-store-sync-results',
    load: `${lines} lines, open loop, ${durationS} s measured after ${warmupS} s warm-up per cell; stream: one connection per line`,
    command: `npm run bench:stream -- --rates ${rates.join(',')} --lines ${lines} --duration ${durationS}`,
  };
  await mkdir(values.out, { recursive: true });
  await writeFile(join(values.out, `${date}-stream.md`), markdown(cells, meta));
  await writeFile(join(values.out, `${date}-stream.json`), JSON.stringify({ meta, cells }, null, 2) + '\n');
  process.stdout.write(markdown(cells, meta));
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
