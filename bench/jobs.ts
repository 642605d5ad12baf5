/**
 * `npm run bench:jobs -- [options]`: the async-jobs path, for both back ends.
 *
 * (1) enqueue rate: jobs/s that POST /v1/jobs accepts (202) on an API-only server
 *     (`serve --no-worker`), closed loop from the load generator process;
 * (2) end-to-end throughput: N jobs submitted while a worker runs, jobs/s from the
 *     first POST to the last stored result, and each job's submit → stored time.
 *
 * Back ends: `sqlite` (the embedded default: `serve` with its SQLite queue, store and
 * in-process worker) and `amqp` (RabbitMQ + PostgreSQL: `serve --no-worker` and one
 * `sightline worker`). The processes run a private build of src/ in the temporary
 * directory, so dist/ (which another run may be using) is never rewritten.
 * Writes bench/results/<YYYY-MM-DD>-jobs.md and .json. Every
 * child process, temporary directory, database and queue is removed on every exit path.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { connect as amqpConnect } from 'amqplib';
import Database from 'better-sqlite3';
import pg from 'pg';
import { deleteAmqpTopology } from '../src/queue/index.js';
import { generateImages } from './images.js';
import type { LoadConfig, LoadResult } from './load.js';
import { MachineMonitor } from './machine.js';
import { BUILTIN_MODEL_DIR, PROJECT_ROOT, fixturePath, prepareModel, specFor, type PreparedModel } from './models.js';
import { ServerProcess, epochMs } from './server.js';
import { fmt, sleep, summarize, type Summary } from './stats.js';

const HELP = `Usage: npm run bench:jobs -- [options]

  --backends LIST        sqlite,amqp (default both)
  --jobs N               jobs of the end-to-end run (default 500)
  --enqueue-seconds S    measured seconds of the enqueue-rate run (default 8)
  --warmup S             unmeasured seconds before it (default 1)
  --concurrency N        clients submitting at once (default 16)
  --model PATH           a model-repository version dir or .onnx (default: models/defects/1
                         if present, else the shared fixture yolov8n_shape_640)
  --fixture NAME         a shared fixture instead, e.g. yolov8n_shape_320
  --images N             generated 1280×720 JPEGs (default 16)
  --amqp-url URL         default amqp://guest:guest@127.0.0.1:5672
  --postgres-url URL     an existing database the harness connects to in order to create
                         (and drop) one of its own per run; default postgres://postgres@127.0.0.1:5432/test
  --idle-wait S          before each measurement, wait up to S seconds for other processes
                         to go quiet (default 30; the report flags a busy machine)
  --skip-build           run the existing dist/ instead of a private build of src/
  --keep-tmp             keep the temporary directory (logs, data dirs)
  --out DIR              result directory (default bench/results)
  -h, --help
`;

type Backend = 'sqlite' | 'amqp';

interface Options {
  backends: Backend[];
  jobs: number;
  enqueueSeconds: number;
  warmupS: number;
  concurrency: number;
  modelSource: string;
  modelName: string | undefined;
  images: number;
  amqpUrl: string;
  pgUrl: string;
  idleWaitS: number;
  skipBuild: boolean;
  keepTmp: boolean;
  outDir: string;
}

interface EnqueueResult {
  backend: Backend;
  windowS: number;
  accepted: number;
  acceptedPerSec: number;
  byStatus: Record<string, number>;
  byCode: Record<string, number>;
  transportErrors: Record<string, number>;
  latencyMs: Summary;
  apiCpuPct: number;
  servicesCpuPct: number;
  foreignCores: number;
}

interface EndToEndResult {
  backend: Backend;
  processes: string;
  jobs: number;
  /** First POST → last 202. */
  submitS: number;
  /** First POST → last result stored. */
  totalS: number;
  jobsPerSec: number;
  /** Per job: its POST → its result stored (ms). */
  latencyMs: Summary;
  refused: Record<string, number>;
  cpuPct: Record<string, number>;
  servicesCpuPct: number;
  foreignCores: number;
}

// ---------------------------------------------------------------- cleanup

const children = new Set<ChildProcess>();
const servers = new Set<ServerProcess>();
const cleanups: (() => Promise<unknown>)[] = [];
const monitor = new MachineMonitor();
const log = (msg: string) => process.stdout.write(`${msg}\n`);
/** Where the processes run from: a directory holding dist/cli/main.js, node_modules and package.json. */
let runtimeRoot = PROJECT_ROOT;

async function cleanup(): Promise<void> {
  monitor.stop();
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all([...servers].map((s) => s.stop(5).catch(() => undefined)));
  for (const fn of cleanups.splice(0).reverse()) await fn().catch((err: Error) => process.stderr.write(`bench: cleanup: ${err.message}\n`));
}

process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const s of servers) s.killNow();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}, cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------- options

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      backends: { type: 'string' },
      jobs: { type: 'string' },
      'enqueue-seconds': { type: 'string' },
      warmup: { type: 'string' },
      concurrency: { type: 'string' },
      model: { type: 'string' },
      fixture: { type: 'string' },
      images: { type: 'string' },
      'amqp-url': { type: 'string' },
      'postgres-url': { type: 'string' },
      'idle-wait': { type: 'string' },
      'skip-build': { type: 'boolean' },
      'keep-tmp': { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return undefined;
  const num = (name: string, v: string | undefined, fallback: number, min = 1) => {
    const n = v === undefined ? fallback : Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}`);
    return n;
  };
  const backends = (values.backends ?? 'sqlite,amqp').split(',').map((b) => b.trim());
  for (const b of backends) if (b !== 'sqlite' && b !== 'amqp') throw new Error(`unknown back end ${b}: sqlite or amqp`);
  let modelSource: string;
  let modelName: string | undefined;
  if (values.model) modelSource = values.model;
  else if (values.fixture) [modelSource, modelName] = [fixturePath(values.fixture), values.fixture];
  else if (existsSync(join(BUILTIN_MODEL_DIR, 'model.onnx'))) modelSource = BUILTIN_MODEL_DIR;
  else [modelSource, modelName] = [fixturePath('yolov8n_shape_640'), 'yolov8n_shape_640'];
  return {
    backends: backends as Backend[],
    jobs: Math.floor(num('jobs', values.jobs, 500)),
    enqueueSeconds: num('enqueue-seconds', values['enqueue-seconds'], 8),
    warmupS: num('warmup', values.warmup, 1, 0),
    concurrency: Math.floor(num('concurrency', values.concurrency, 16)),
    modelSource,
    modelName,
    images: Math.floor(num('images', values.images, 16)),
    amqpUrl: values['amqp-url'] ?? 'amqp://guest:guest@127.0.0.1:5672',
    pgUrl: values['postgres-url'] ?? 'postgres://postgres@127.0.0.1:5432/test',
    idleWaitS: num('idle-wait', values['idle-wait'], 30, 0),
    skipBuild: values['skip-build'] ?? false,
    keepTmp: values['keep-tmp'] ?? false,
    outDir: resolve(values.out ?? join(PROJECT_ROOT, 'bench/results')),
  };
}

// ---------------------------------------------------------------- services

/**
 * `queue_url` has no setting for the amqp prefix, so the processes use the default
 * `sightline.*` names: an exclusive queue keeps two runs (benchmarks, the crash and
 * outage tests) from deleting each other's queues.
 */
async function lockBroker(url: string): Promise<void> {
  const conn = await amqpConnect(url);
  conn.on('error', () => {});
  cleanups.push(() => conn.close().catch(() => undefined));
  const until = Date.now() + 180_000;
  for (;;) {
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    try {
      await ch.assertQueue('sightline-tests.default-prefix-lock', { exclusive: true });
      return;
    } catch {
      if (Date.now() > until) throw new Error('another run holds the broker lock (default amqp prefix in use)');
      await sleep(500);
    }
  }
}

/** A fresh PostgreSQL database and the default amqp topology emptied; both removed by the returned function. */
async function freshDistributed(o: Options): Promise<{ dbUrl: string; teardown: () => Promise<void> }> {
  await deleteAmqpTopology(o.amqpUrl, 'sightline');
  const name = `sightline_bench_${randomUUID().replaceAll('-', '')}`;
  const admin = new pg.Client({ connectionString: o.pgUrl });
  admin.on('error', () => {});
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(o.pgUrl);
  url.pathname = `/${name}`;
  let done = false;
  const teardown = async () => {
    if (done) return;
    done = true;
    await admin.query(`drop database if exists ${name} with (force)`).catch(() => undefined);
    await admin.end().catch(() => undefined);
    await deleteAmqpTopology(o.amqpUrl, 'sightline').catch(() => undefined);
  };
  cleanups.push(teardown);
  return { dbUrl: url.href, teardown };
}

/** CPU seconds of RabbitMQ and PostgreSQL processes (part of the system under test for `amqp`). */
function servicesCpuS(): number {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (comm !== 'beam.smp' && comm !== 'postgres') continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      // gone
    }
  }
  return total;
}

function servicePids(): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((pid) => {
      try {
        return ['beam.smp', 'postgres'].includes(readFileSync(`/proc/${pid}/comm`, 'utf8').trim());
      } catch {
        return false;
      }
    })
    .map(Number);
}

function cpuS(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

// ---------------------------------------------------------------- processes

async function startApi(model: PreparedModel, dir: string, args: string[]): Promise<ServerProcess> {
  await mkdir(dir, { recursive: true });
  const server = await ServerProcess.start({
    projectRoot: runtimeRoot,
    repoDir: model.repoDir,
    extraArgs: ['--data-dir', join(dir, 'data'), ...args],
    logPath: join(dir, 'serve.log'),
    readyTimeoutS: 180,
  });
  servers.add(server);
  monitor.watch(server.pid);
  return server;
}

async function stopApi(server: ServerProcess): Promise<void> {
  await server.stop(15);
  servers.delete(server);
}

/** `sightline worker` from dist/, logging at info so that its `worker_started` shows. */
async function startWorker(model: PreparedModel, dir: string, args: string[]): Promise<ChildProcess> {
  const logPath = join(dir, 'worker.log');
  const fd = openSync(logPath, 'a');
  const child = spawn(
    process.execPath,
    [join(runtimeRoot, 'dist/cli/main.js'), 'worker', '--models-dir', model.repoDir, '--data-dir', join(dir, 'data'), '--log-level', 'info', ...args],
    {
      cwd: runtimeRoot,
      stdio: ['ignore', fd, fd],
    },
  );
  closeSync(fd);
  children.add(child);
  monitor.watch(child.pid);
  const until = Date.now() + 180_000;
  while (!readFileSync(logPath, 'utf8').includes('"event":"worker_started"')) {
    if (child.exitCode !== null || Date.now() > until)
      throw new Error(`worker did not start:\n${readFileSync(logPath, 'utf8').split('\n').slice(-20).join('\n')}`);
    await sleep(200);
  }
  return child;
}

async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
  children.delete(child);
}

// ---------------------------------------------------------------- (1) enqueue rate

async function runGenerator(config: Omit<LoadConfig, 'resultPath'>, dir: string): Promise<LoadResult> {
  const configPath = join(dir, 'load.json');
  const resultPath = join(dir, 'load-result.json');
  await writeFile(configPath, JSON.stringify({ ...config, resultPath } satisfies LoadConfig));
  const child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'bench/load.ts'), configPath], {
    cwd: PROJECT_ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.add(child);
  monitor.watch(child.pid);
  const timer = setTimeout(() => child.kill('SIGKILL'), (config.warmupS + config.durationS + config.drainS + 60) * 1000);
  try {
    const code = await new Promise<number | null>((res, rej) => {
      child.once('error', rej);
      child.once('exit', (c) => res(c));
    });
    if (code !== 0) throw new Error(`load generator exited with ${code}`);
    return JSON.parse(await readFile(resultPath, 'utf8')) as LoadResult;
  } finally {
    clearTimeout(timer);
    children.delete(child);
  }
}

async function enqueueRate(o: Options, backend: Backend, model: PreparedModel, imagesDir: string, dir: string): Promise<EnqueueResult> {
  let teardown = async () => {};
  let args = ['--no-worker'];
  if (backend === 'amqp') {
    const fresh = await freshDistributed(o);
    teardown = fresh.teardown;
    args = [...args, '--queue-url', o.amqpUrl, '--store-url', fresh.dbUrl];
  }
  const server = await startApi(model, dir, args);
  try {
    await monitor.waitIdle(o.idleWaitS);
    const services0 = servicesCpuS();
    const result = await runGenerator(
      {
        host: '127.0.0.1',
        port: server.port,
        path: '/v1/jobs?line=bench',
        imagesDir,
        mode: 'closed',
        concurrency: o.concurrency,
        warmupS: o.warmupS,
        durationS: o.enqueueSeconds,
        maxOutstanding: 2000,
        drainS: 10,
        headers: {},
      },
      dir,
    );
    const services1 = servicesCpuS();
    const w = server.window(result.windowStartMs, result.windowEndMs);
    const accepted = result.byStatus['202'] ?? 0;
    const { HTTP_202: _ok, ...byCode } = result.byCode;
    return {
      backend,
      windowS: result.windowS,
      accepted,
      acceptedPerSec: accepted / result.windowS,
      byStatus: result.byStatus,
      byCode,
      transportErrors: result.transportErrors,
      latencyMs: result.latencyAllMs,
      apiCpuPct: w.cpuPct,
      // Measured over the warm-up as well (a rough figure): the broker and the database work for the API.
      servicesCpuPct: backend === 'amqp' ? ((services1 - services0) / (result.windowS + o.warmupS)) * 100 : 0,
      foreignCores: monitor.window(result.windowStartMs, result.windowEndMs).foreignCores,
    };
  } finally {
    await stopApi(server);
    await teardown();
  }
}

// ---------------------------------------------------------------- (2) end to end

/** POSTs `count` jobs, `concurrency` at a time (a refused one is sent again); returns each job's send time. */
async function submit(port: number, jpegs: Buffer[], count: number, concurrency: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const sentAt = new Map<string, number>();
  const refused: Record<string, number> = {};
  let next = 0;
  let lastAccepted = 0;
  const post = (body: Buffer) =>
    new Promise<{ status: number; text: string }>((resolveRes, reject) => {
      const req = http.request(
        {
          agent,
          host: '127.0.0.1',
          port,
          path: '/v1/jobs?line=bench',
          method: 'POST',
          headers: { 'content-type': 'image/jpeg', 'content-length': body.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolveRes({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.setTimeout(60_000, () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(body);
    });
  const first = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        for (let tries = 0; ; tries++) {
          const t = Date.now();
          const { status, text } = await post(jpegs[i % jpegs.length]!).catch((err: Error) => ({ status: 0, text: err.message }));
          if (status === 202) {
            sentAt.set((JSON.parse(text) as { job_id: string }).job_id, t);
            lastAccepted = Date.now();
            break;
          }
          const code = status === 0 ? text : ((JSON.parse(text) as { error?: { code?: string } }).error?.code ?? `HTTP_${status}`);
          refused[code] = (refused[code] ?? 0) + 1;
          if (tries >= 50) throw new Error(`job ${i} refused 50 times (${code})`);
          await sleep(200);
        }
      }
    }),
  );
  agent.destroy();
  return { sentAt, refused, first, lastAccepted };
}

async function runEndToEnd(o: Options, backend: Backend, model: PreparedModel, jpegs: Buffer[], dir: string): Promise<EndToEndResult> {
  let teardown = async () => {};
  let readResults: () => Promise<{ request_id: string; created_at: number }[]>;
  let countResults: () => Promise<number>;
  let api: ServerProcess | undefined;
  let worker: ChildProcess | undefined;
  let pgPool: pg.Pool | undefined;
  let sqlite: Database.Database | undefined;
  const watched: Record<string, number | undefined> = {};
  try {
    if (backend === 'amqp') {
      const fresh = await freshDistributed(o);
      teardown = fresh.teardown;
      const urls = ['--queue-url', o.amqpUrl, '--store-url', fresh.dbUrl];
      api = await startApi(model, dir, ['--no-worker', ...urls]);
      worker = await startWorker(model, dir, urls);
      watched.api = api.pid;
      watched.worker = worker.pid;
      const pool = new pg.Pool({ connectionString: fresh.dbUrl, max: 1 });
      pool.on('error', () => {});
      pgPool = pool;
      countResults = async () => (await pool.query<{ n: number }>('select count(*)::int as n from results')).rows[0]!.n;
      readResults = async () =>
        (await pool.query<{ request_id: string; created_at: string }>('select request_id, created_at from results')).rows.map((r) => ({
          request_id: r.request_id,
          created_at: Number(r.created_at),
        }));
    } else {
      api = await startApi(model, dir, []);
      watched.serve = api.pid;
      // /readyz has pinged the store: results.db exists. WAL: this reader never blocks the server.
      const db = new Database(join(dir, 'data', 'results.db'), { readonly: true, fileMustExist: true });
      sqlite = db;
      countResults = async () => (db.prepare('select count(*) as n from results').get() as { n: number }).n;
      readResults = async () => db.prepare('select request_id, created_at from results').all() as { request_id: string; created_at: number }[];
    }
    await monitor.waitIdle(o.idleWaitS);
    const cpu0 = Object.fromEntries(Object.entries(watched).map(([k, pid]) => [k, cpuS(pid)]));
    const services0 = servicesCpuS();
    const t0 = epochMs();
    const server = api;
    const { sentAt, refused, first, lastAccepted } = await submit(server.port, jpegs, o.jobs, o.concurrency);
    const until = Date.now() + Math.max(300_000, o.jobs * 2000);
    let stored = 0;
    while ((stored = await countResults()) < o.jobs) {
      if (!server.alive || (worker && worker.exitCode !== null)) throw new Error(`a process died:\n${server.logTail()}`);
      if (Date.now() > until) throw new Error(`only ${stored} of ${o.jobs} results after ${(until - first) / 1000} s`);
      await sleep(100);
    }
    const t1 = epochMs();
    const services1 = servicesCpuS();
    const seconds = (t1 - t0) / 1000;
    const cpuPct = Object.fromEntries(Object.entries(watched).map(([k, pid]) => [k, ((cpuS(pid) - cpu0[k]!) / seconds) * 100]));
    const rows = (await readResults()).filter((r) => sentAt.has(r.request_id));
    const last = Math.max(...rows.map((r) => r.created_at));
    const totalS = (last - first) / 1000;
    return {
      backend,
      processes: backend === 'amqp' ? 'serve --no-worker + 1 × sightline worker' : 'serve (in-process worker)',
      jobs: o.jobs,
      submitS: (lastAccepted - first) / 1000,
      totalS,
      jobsPerSec: o.jobs / totalS,
      latencyMs: summarize(rows.map((r) => r.created_at - sentAt.get(r.request_id)!)),
      refused,
      cpuPct,
      servicesCpuPct: backend === 'amqp' ? ((services1 - services0) / seconds) * 100 : 0,
      foreignCores: monitor.window(t0, t1).foreignCores,
    };
  } finally {
    sqlite?.close();
    await pgPool?.end().catch(() => undefined);
    if (worker) await stopWorker(worker);
    if (api) await stopApi(api);
    await teardown();
  }
}

// ---------------------------------------------------------------- report

function machine() {
  const ortPkg = join(PROJECT_ROOT, 'node_modules/onnxruntime-node/package.json');
  return {
    cores: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    onnxruntime: (JSON.parse(readFileSync(ortPkg, 'utf8')) as { version: string }).version,
    rabbitmq: spawnSync('rabbitmqctl', ['version'], { encoding: 'utf8', timeout: 20_000 }).stdout?.trim() || 'unknown',
  };
}

const ms = (s: Summary, digits = 1) => `${fmt(s.p50, digits)} / ${fmt(s.p95, digits)} / ${fmt(s.max, digits)}`;
const counts = (r: Record<string, number>) =>
  Object.entries(r)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ') || '–';
/** Cores that processes outside the benchmark took during the measurement. */
const others = (c: number) => (c >= 0.15 ? `⚠ ${fmt(c, 2)}` : fmt(c, 2));

function markdown(r: {
  date: string;
  machine: ReturnType<typeof machine>;
  model: string;
  modelInfo: string;
  imageKiB: number;
  options: Options;
  enqueue: EnqueueResult[];
  endToEnd: EndToEndResult[];
  errors: string[];
}): string {
  const o = r.options;
  const lines = [
    `# Async jobs: enqueue rate and end-to-end throughput (${r.date})`,
    '',
    `- machine: ${r.machine.cores} cores (${r.machine.cpuModel}), ${r.machine.memoryGiB} GiB, Node ${r.machine.node}, onnxruntime-node ${r.machine.onnxruntime}, RabbitMQ ${r.machine.rabbitmq}`,
    `- model: ${r.model} (${r.modelInfo}); server defaults otherwise (instances, worker concurrency = 2 × instances, batching)`,
    `- images: ${o.images} generated 1280×720 JPEGs (bench/images.ts), mean ${fmt(r.imageKiB, 0)} KiB, posted raw`,
    `- clients: ${o.concurrency} at once; processes run compiled JavaScript (${o.skipBuild ? 'dist/' : 'a private `tsc -p tsconfig.build.json` build of src/'}), \`serve\` at log level warn, \`worker\` at info`,
    `- sqlite: \`serve\` with the embedded default (SQLite queue \`<data_dir>/queue.db\`, SQLite store \`results.db\`)`,
    `- amqp: RabbitMQ queue (default \`sightline\` prefix), PostgreSQL store (a fresh database per run)`,
    '',
    `## (1) Enqueue rate: API only (\`serve --no-worker\`), closed loop`,
    '',
    `${o.warmupS} s warm-up, then ${o.enqueueSeconds} s measured; the load generator is a process of its own (bench/load.ts). A 202 means the job is durable (SQLite commit, or RabbitMQ publisher confirm of a persistent message plus the job_states row in PostgreSQL).`,
    '',
    '| back end | accepted jobs/s | latency p50 / p95 / max ms | answers | API CPU | RabbitMQ + PostgreSQL CPU | other load (cores) |',
    '| --- | ---: | --- | --- | ---: | ---: | ---: |',
    ...r.enqueue.map(
      (e) =>
        `| ${e.backend} | **${fmt(e.acceptedPerSec, 0)}** | ${ms(e.latencyMs)} | ${counts(e.byStatus)}${Object.keys(e.transportErrors).length ? `; errors ${counts(e.transportErrors)}` : ''}${Object.keys(e.byCode).length ? `; ${counts(e.byCode)}` : ''} | ${fmt(e.apiCpuPct, 0)} % | ${e.backend === 'amqp' ? `${fmt(e.servicesCpuPct, 0)} %` : '–'} | ${others(e.foreignCores)} |`,
    ),
    '',
    `## (2) End to end: ${o.jobs} jobs submitted while the worker runs`,
    '',
    'jobs/s = jobs ÷ (first POST → last result stored). Latency: each job from its POST to its result row (`created_at`).',
    '',
    '| back end | processes | jobs/s | all 202 after | last result after | submit → stored p50 / p95 / max ms | CPU (% of one core) | refused | other load (cores) |',
    '| --- | --- | ---: | ---: | ---: | --- | --- | --- | ---: |',
    ...r.endToEnd.map(
      (e) =>
        `| ${e.backend} | ${e.processes} | **${fmt(e.jobsPerSec, 1)}** | ${fmt(e.submitS, 1)} s | ${fmt(e.totalS, 1)} s | ${ms(e.latencyMs, 0)} | ${Object.entries(
          e.cpuPct,
        )
          .map(([k, v]) => `${k} ${fmt(v, 0)}`)
          .join(
            ', ',
          )}${e.backend === 'amqp' ? `, RabbitMQ + PostgreSQL ${fmt(e.servicesCpuPct, 0)}` : ''} | ${counts(e.refused)} | ${others(e.foreignCores)} |`,
    ),
    '',
    'End-to-end throughput is bound by inference on these cores: compare it with the `/v1/detect` figures of `npm run bench` for the same model. In the `amqp` run the API process and the worker each load the model, and RabbitMQ and PostgreSQL share the same cores. "Other load" is CPU that processes outside the benchmark took during the measurement (⚠ from 0.15 cores: the figures are then low).',
  ];
  if (r.errors.length) lines.push('', '## Errors', '', ...r.errors.map((e) => `- ${e.split('\n')[0]}`));
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------- main

/** Compiles src/ as `npm run build` does, into `<tmp>/build/dist`, beside links to node_modules and package.json. */
async function privateBuild(tmpRoot: string): Promise<string> {
  const root = join(tmpRoot, 'build');
  await mkdir(root, { recursive: true });
  await symlink(join(PROJECT_ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
  await symlink(join(PROJECT_ROOT, 'package.json'), join(root, 'package.json'));
  log('building src/ (tsc -p tsconfig.build.json) into the temporary directory…');
  const tsc = join(PROJECT_ROOT, 'node_modules/typescript/bin/tsc');
  const b = spawnSync(process.execPath, [tsc, '-p', join(PROJECT_ROOT, 'tsconfig.build.json'), '--outDir', join(root, 'dist')], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
  });
  if (b.status !== 0) throw new Error(`the build failed:\n${(b.stdout + b.stderr).split('\n').slice(-20).join('\n')}`);
  return root;
}

async function main(): Promise<number> {
  let o: Options | undefined;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench:jobs: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (!o) {
    process.stdout.write(HELP);
    return 0;
  }
  monitor.start();
  const tmpRoot = await mkdtemp(join(tmpdir(), 'sightline-bench-jobs-'));
  if (o.keepTmp) log(`temporary files in ${tmpRoot}`);
  else cleanups.push(() => rm(tmpRoot, { recursive: true, force: true }));
  if (!o.skipBuild) runtimeRoot = await privateBuild(tmpRoot);
  else if (!existsSync(join(PROJECT_ROOT, 'dist/cli/main.js'))) throw new Error('dist/cli/main.js is missing (npm run build)');
  const model = await prepareModel(specFor(o.modelSource, o.modelName), join(tmpRoot, 'model'), undefined);
  const modelInfo = `${model.format}, input ${model.inputWidth}×${model.inputHeight}`;
  log(`model ${model.name}: ${modelInfo}`);
  const imagesDir = join(tmpRoot, 'images');
  const jpegs = await generateImages(imagesDir, o.images);
  if (o.backends.includes('amqp')) {
    await lockBroker(o.amqpUrl);
    for (const pid of servicePids()) monitor.watch(pid);
  }

  const enqueue: EnqueueResult[] = [];
  const endToEnd: EndToEndResult[] = [];
  const errors: string[] = [];
  for (const backend of o.backends) {
    try {
      log(`\n== ${backend}: enqueue rate (${o.enqueueSeconds} s, ${o.concurrency} clients)`);
      const e = await enqueueRate(o, backend, model, imagesDir, join(tmpRoot, `${backend}-enqueue`));
      log(`  ${fmt(e.acceptedPerSec, 0)} jobs/s accepted, p50 ${fmt(e.latencyMs.p50)} ms, p95 ${fmt(e.latencyMs.p95)} ms (${counts(e.byStatus)})`);
      enqueue.push(e);
    } catch (err) {
      errors.push(`${backend} enqueue: ${(err as Error).stack ?? String(err)}`);
      process.stderr.write(`bench:jobs: ${errors.at(-1)}\n`);
    }
    try {
      log(`== ${backend}: end to end (${o.jobs} jobs)`);
      const e = await runEndToEnd(o, backend, model, jpegs, join(tmpRoot, `${backend}-e2e`));
      log(
        `  ${fmt(e.jobsPerSec, 1)} jobs/s; all accepted after ${fmt(e.submitS, 1)} s, all stored after ${fmt(e.totalS, 1)} s; submit → stored p50 ${fmt(e.latencyMs.p50 / 1000, 1)} s`,
      );
      endToEnd.push(e);
    } catch (err) {
      errors.push(`${backend} end to end: ${(err as Error).stack ?? String(err)}`);
      process.stderr.write(`bench:jobs: ${errors.at(-1)}\n`);
    }
  }

  const date = new Date().toISOString().slice(0, 10);
  const report = {
    date,
    machine: machine(),
    model: `${model.name} (${model.source})`,
    modelInfo,
    imageKiB: jpegs.reduce((a, b) => a + b.length, 0) / jpegs.length / 1024,
    options: o,
    enqueue,
    endToEnd,
    errors,
  };
  await mkdir(o.outDir, { recursive: true });
  const base = join(o.outDir, `${date}-jobs`);
  await writeFile(`${base}.md`, markdown(report));
  await writeFile(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  log(`\nwrote ${base}.md and .json`);
  return errors.length ? 1 : 0;
}

main()
  .then(
    (code) => code,
    (err: Error) => {
      process.stderr.write(`bench:jobs: ${err.stack ?? err.message}\n`);
      return 1;
    },
  )
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  });
