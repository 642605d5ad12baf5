/**
 * Does turning the factory outputs on slow a detection? `sightline serve` (built-in
 * model, a fresh SQLite data dir each time) in a child process, measured with the
 * closed-loop load generator at c=1 and c=4, in alternating rounds:
 *
 * - `off`: no output configured (the default);
 * - `on, peers down`: MQTT to a closed port, webhooks to a closed port, the OPC UA
 *   and Modbus servers listening with no client: every result still goes to the MQTT
 *   and webhook outboxes (SQLite writes) and the PLC line states.
 *
 *   npm run build && node --import tsx bench/outputs.ts [--rounds 2] [--duration 12]
 *
 * Writes bench/results/<date>-outputs-latency.md and .json. Numbers are reported, never asserted.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateImages } from './images.js';
import { runLoad, type LoadResult } from './load.js';
import { CORES } from './machine.js';
import { PROJECT_ROOT } from './models.js';
import { freePort, ServerProcess } from './server.js';
import { fmt, median } from './stats.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    duration: { type: 'string', default: '12' },
    warmup: { type: 'string', default: '3' },
    out: { type: 'string', default: join(PROJECT_ROOT, 'bench/results') },
    // One output alone (mqtt, webhook, opcua, modbus), to find which one costs what.
    only: { type: 'string', default: '' },
    levels: { type: 'string', default: '1,4' },
  },
});
const rounds = Number(values.rounds);
const durationS = Number(values.duration);
const warmupS = Number(values.warmup);
const LEVELS = values.levels.split(',').map(Number);

interface Cell {
  setting: 'off' | 'on, peers down';
  round: number;
  concurrency: number;
  okPerSec: number;
  p50: number;
  p95: number;
  p99: number;
  errors: number;
}

async function outputArgs(): Promise<string[]> {
  const closed = await freePort(); // nothing listens there: the broker and the receiver are "down"
  const all: Record<string, string[]> = {
    mqtt: [`--mqtt-url=mqtt://127.0.0.1:${closed}`],
    webhook: [`--webhook-urls=http://127.0.0.1:${closed}/hook`, '--webhook-secret=bench'],
    opcua: ['--opcua', `--opcua-port=${await freePort()}`],
    modbus: ['--modbus', `--modbus-port=${await freePort()}`, '--modbus-lines=line-1'],
  };
  return values.only ? (all[values.only] ?? []) : Object.values(all).flat();
}

async function measure(setting: Cell['setting'], round: number, imagesDir: string, work: string): Promise<Cell[]> {
  const dataDir = await mkdtemp(join(work, 'data-'));
  const server = await ServerProcess.start({
    projectRoot: PROJECT_ROOT,
    repoDir: join(PROJECT_ROOT, 'models'),
    extraArgs: [`--data-dir=${dataDir}`, '--no-snapshots', ...(setting === 'off' ? [] : await outputArgs())],
    logPath: join(work, `server-${setting.replaceAll(/[^a-z]/g, '')}-${round}.log`),
    readyTimeoutS: 120,
  });
  const cells: Cell[] = [];
  try {
    for (const concurrency of LEVELS) {
      const result: LoadResult = await runLoad({
        host: '127.0.0.1',
        port: server.port,
        path: '/v1/detect?line=line-1',
        imagesDir,
        mode: 'closed',
        concurrency,
        warmupS,
        durationS,
        maxOutstanding: concurrency,
        drainS: 10,
        headers: { 'content-type': 'image/jpeg' },
        resultPath: join(work, 'load.json'),
      });
      const errors = result.answered - (result.byStatus['200'] ?? 0) + Object.values(result.transportErrors).reduce((a, b) => a + b, 0);
      cells.push({
        setting,
        round,
        concurrency,
        okPerSec: result.okPerSec,
        p50: result.latencyOkMs.p50,
        p95: result.latencyOkMs.p95,
        p99: result.latencyOkMs.p99,
        errors,
      });
      process.stderr.write(`${setting} round ${round} c=${concurrency}: ${result.okPerSec.toFixed(1)} img/s, p50 ${result.latencyOkMs.p50.toFixed(1)} ms\n`);
    }
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
  return cells;
}

function markdown(cells: Cell[], started: string): string {
  const rows: string[] = [];
  const summary: string[] = [];
  for (const c of LEVELS) {
    const of = (s: Cell['setting']) => cells.filter((x) => x.setting === s && x.concurrency === c);
    const off = of('off');
    const on = of('on, peers down');
    const p50Off = median(off.map((x) => x.p50));
    const p50On = median(on.map((x) => x.p50));
    const tputOff = median(off.map((x) => x.okPerSec));
    const tputOn = median(on.map((x) => x.okPerSec));
    summary.push(`| ${c} | ${fmt(p50Off)} | ${fmt(p50On)} | ${fmt(p50On / p50Off, 3)}× | ${fmt(tputOff)} | ${fmt(tputOn)} | ${fmt(tputOn / tputOff, 3)}× |`);
    for (const x of [...off, ...on])
      rows.push(`| ${x.setting} | ${x.round} | ${c} | ${fmt(x.okPerSec)} | ${fmt(x.p50)} | ${fmt(x.p95)} | ${fmt(x.p99)} | ${x.errors} |`);
  }
  return [
    `# Detection latency with every factory output on and its peers down (${started.slice(0, 10)})`,
    '',
    `Built-in model, ${CORES} cores, 1280×720 JPEGs posted to \`/v1/detect?line=line-1\`, closed loop, ${warmupS} s warm-up + ${durationS} s per level, ${rounds} alternating rounds (off, on, off, on…), each on a fresh data dir. "On, peers down": MQTT and webhooks point at a closed port (every result is written to both outboxes and waits there), OPC UA and Modbus listen with no client (line states and buffers updated). Medians of the rounds.`,
    '',
    '| c | p50 off (ms) | p50 on (ms) | ratio | img/s off | img/s on | ratio |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...summary,
    '',
    '## Every round',
    '',
    '| setting | round | c | img/s | p50 ms | p95 ms | p99 ms | errors |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    `Run ${started}; \`node --import tsx bench/outputs.ts --rounds ${rounds} --duration ${durationS}\`.`,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const started = new Date().toISOString();
  const work = await mkdtemp(join(tmpdir(), 'sightline-bench-outputs-'));
  const imagesDir = join(work, 'images');
  await generateImages(imagesDir, 16);
  const cells: Cell[] = [];
  for (let round = 1; round <= rounds; round++) {
    cells.push(...(await measure('off', round, imagesDir, work)));
    cells.push(...(await measure('on, peers down', round, imagesDir, work)));
  }
  const base = join(values.out, `${started.slice(0, 10)}-outputs-latency${values.only ? `-${values.only}` : ''}`);
  await writeFile(`${base}.json`, JSON.stringify({ started, cells }, null, 2));
  await writeFile(`${base}.md`, markdown(cells, started));
  process.stdout.write(markdown(cells, started));
  await rm(work, { recursive: true, force: true });
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
