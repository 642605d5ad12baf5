/**
 * A new model version under load (issue 18): the server runs the built-in model as
 * `m:1` under a steady c=8 load on /v1/detect; version 2 is copied into the models
 * directory; `model_control: poll` loads it in the background, warms it up, moves
 * traffic to it and releases version 1. Measured: failed requests (must be 0), the
 * server's RSS before, during (peak) and after the swap, then RSS over 20
 * unload/load cycles of one version (must stay within ±10 %).
 *
 *   npm run build && node --import tsx bench/model-swap.ts
 *
 * Writes bench/results/<date>-model-swap.{md,json}.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeJpeg } from './images.js';
import { ServerProcess } from './server.js';
import { epochMs, median, sleep } from './stats.js';

const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
const CONCURRENCY = 8;
const STEADY_S = Number(process.env.SWAP_STEADY_S ?? 10);
const CYCLES = Number(process.env.SWAP_CYCLES ?? 20);

const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;

/** One run with glibc's malloc arenas as given (undefined: glibc's default, 8 × cores). */
async function run(arenaMax: string | undefined): Promise<Record<string, unknown>> {
  const env = { ...process.env };
  if (arenaMax === undefined) delete env.MALLOC_ARENA_MAX;
  else env.MALLOC_ARENA_MAX = arenaMax;
  const work = mkdtempSync(join(tmpdir(), 'sightline-swap-'));
  const repo = join(work, 'models');
  mkdirSync(join(repo, 'm'), { recursive: true });
  cpSync(join(PROJECT_ROOT, 'models/defects/1'), join(repo, 'm', '1'), { recursive: true });
  const server = await ServerProcess.start({
    projectRoot: PROJECT_ROOT,
    repoDir: repo,
    extraArgs: [`--data-dir=${join(work, 'data')}`, '--no-snapshots', '--model-poll-interval-ms=500'],
    logPath: join(work, 'server.log'),
    readyTimeoutS: 120,
    env,
  });
  const image = await makeJpeg(0);
  const statuses = new Map<number, number>();
  const versions: { t: number; version: string }[] = [];
  let running = true;
  const client = async () => {
    while (running) {
      const res = await fetch(`${server.baseUrl}/v1/detect?model=m`, {
        method: 'POST',
        headers: { 'content-type': 'image/jpeg' },
        body: new Uint8Array(image),
      });
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      const body = (await res.json()) as { model?: { version: string } };
      if (res.status === 200) versions.push({ t: epochMs(), version: body.model!.version });
    }
  };
  const rssBetween = (t0: number, t1: number) => server.samples.filter((s) => s.t >= t0 && s.t <= t1).map((s) => s.rssKiB);
  const models = async () => (await (await fetch(`${server.baseUrl}/v1/models`)).json()) as { models: { version: string; state: string }[] };
  const report: Record<string, unknown> = { malloc_arena_max: arenaMax ?? 'glibc default (8 × cores)' };
  try {
    const clients = Array.from({ length: CONCURRENCY }, client);
    await sleep(3000); // warm
    const tBefore = epochMs();
    await sleep(STEADY_S * 1000);
    const before = rssBetween(tBefore, epochMs());
    // The copy: model.onnx first, model.json last, as a deploy script would.
    const tSwap = epochMs();
    mkdirSync(join(repo, 'm', '2'));
    cpSync(join(PROJECT_ROOT, 'models/defects/1/model.onnx'), join(repo, 'm', '2', 'model.onnx'));
    cpSync(join(PROJECT_ROOT, 'models/defects/1/model.json'), join(repo, 'm', '2', 'model.json'));
    let released = 0;
    for (let i = 0; i < 600 && !released; i++) {
      await sleep(100);
      const list = await models();
      if (list.models.find((m) => m.version === '1')?.state === 'UNAVAILABLE') released = epochMs();
    }
    if (!released) throw new Error('version 1 was not released within 60 s');
    const during = rssBetween(tSwap, released);
    const tAfter = epochMs();
    await sleep(STEADY_S * 1000);
    const after = rssBetween(tAfter, epochMs());
    running = false;
    await Promise.all(clients);
    const firstV2 = versions.find((v) => v.version === '2')?.t ?? Number.NaN;
    report.swap = {
      requests: Object.fromEntries(statuses),
      failed: [...statuses].filter(([s]) => s !== 200).reduce((a, [, n]) => a + n, 0),
      first_v2_after_copy_ms: Math.round(firstV2 - tSwap),
      v1_released_after_copy_ms: Math.round(released - tSwap),
      rss_mib: { before: mib(median(before)), during_peak: mib(Math.max(...during)), after: mib(median(after)) },
    };
    console.log(JSON.stringify(report.swap));

    // 20 unload/load cycles of version 2, idle between (the memory a load takes must all come back).
    const post = (action: string) =>
      fetch(`${server.baseUrl}/v1/models/m/${action}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ version: '2' }),
      });
    const cycleRss: number[] = [];
    await sleep(2000);
    const start = mib(median(rssBetween(epochMs() - 1500, epochMs())));
    for (let i = 0; i < CYCLES; i++) {
      const u = await post('unload');
      const l = await post('load');
      if (u.status !== 200 || l.status !== 200) throw new Error(`cycle ${i}: unload ${u.status}, load ${l.status}`);
      await sleep(1500);
      cycleRss.push(mib(median(rssBetween(epochMs() - 1000, epochMs()))));
    }
    const spread = { start_mib: start, min_mib: Math.min(...cycleRss), max_mib: Math.max(...cycleRss), end_mib: cycleRss.at(-1)! };
    report.cycles_rss = {
      ...spread,
      per_cycle_mib: cycleRss,
      max_deviation_pct: Math.round((Math.max(...cycleRss.map((r) => Math.abs(r - start))) / start) * 1000) / 10,
    };
    console.log(JSON.stringify(report.cycles_rss));
  } finally {
    running = false;
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return report;
}

type Report = {
  malloc_arena_max: string;
  swap: {
    requests: Record<string, number>;
    failed: number;
    first_v2_after_copy_ms: number;
    v1_released_after_copy_ms: number;
    rss_mib: Record<string, number>;
  };
  cycles_rss: { start_mib: number; min_mib: number; max_mib: number; end_mib: number; max_deviation_pct: number; per_cycle_mib: number[] };
};

async function main(): Promise<void> {
  // npm start and the container image set MALLOC_ARENA_MAX=2; glibc's default is measured beside it.
  const runs = [(await run(undefined)) as Report, (await run('2')) as Report];
  const date = new Date().toISOString().slice(0, 10);
  const out = join(PROJECT_ROOT, 'bench/results', `${date}-model-swap`);
  writeFileSync(
    `${out}.json`,
    `${JSON.stringify({ date: new Date().toISOString(), concurrency: CONCURRENCY, steady_s: STEADY_S, cycles: CYCLES, runs }, null, 2)}\n`,
  );
  const col = (f: (r: Report) => string | number) => runs.map((r) => ` ${f(r)} |`).join('');
  writeFileSync(
    `${out}.md`,
    `# A new model version under load, and ${CYCLES} unload/load cycles

\`npm run build && node --import tsx bench/model-swap.ts\` (${date}): the built-in model as \`m:1\`, then a copy as \`m:2\`
(model.onnx first, model.json last), \`model_control: poll\` (scan every 500 ms), c=${CONCURRENCY} on \`/v1/detect\` with a
1280×720 JPEG on 2 cores; then ${CYCLES} unload/load cycles of version 2, idle. Run twice: with glibc's default malloc
arenas and with \`MALLOC_ARENA_MAX=2\`, which \`npm start\` and the container image set.

| | ${runs.map((r) => `MALLOC_ARENA_MAX: ${r.malloc_arena_max}`).join(' | ')} |
|---|${runs.map(() => '---|').join('')}
| requests during the swap run |${col((r) =>
      Object.entries(r.swap.requests)
        .map(([k, v]) => `${v} × ${k}`)
        .join(', '),
    )}
| failed requests |${col((r) => `**${r.swap.failed}**`)}
| first answer from version 2 after the copy |${col((r) => `${r.swap.first_v2_after_copy_ms} ms`)}
| version 1 released after the copy |${col((r) => `${r.swap.v1_released_after_copy_ms} ms`)}
| server RSS before (median of ${STEADY_S} s) |${col((r) => `${r.swap.rss_mib.before} MiB`)}
| server RSS during the swap (peak: both versions loaded) |${col((r) => `${r.swap.rss_mib.during_peak} MiB`)}
| server RSS after (median of ${STEADY_S} s) |${col((r) => `${r.swap.rss_mib.after} MiB`)}
| RSS before the cycles |${col((r) => `${r.cycles_rss.start_mib} MiB`)}
| RSS after each cycle, min … max |${col((r) => `${r.cycles_rss.min_mib} … ${r.cycles_rss.max_mib} MiB`)}
| largest deviation from the start (limit ±10 %) |${col((r) => `**${r.cycles_rss.max_deviation_pct} %**`)}

RSS after each cycle (MiB):
${runs.map((r) => `- ${r.malloc_arena_max}: ${r.cycles_rss.per_cycle_mib.join(', ')}`).join('\n')}

Sessions are released and their worker threads end on every unload (the model's memory goes back: RSS after the swap is
back near where it was). What grows with glibc's default is malloc's per-thread arenas: every load starts new threads
(ONNX Runtime's and the worker's), each may get an arena of its own, and freed arena memory is kept for reuse rather
than returned. Two arenas keep it flat.
`,
  );
  console.log(`wrote ${out}.md`);
}

await main();
