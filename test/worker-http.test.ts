/**
 * The HTTP port of a real `sightline worker` process: /livez, /readyz and
 * /metrics; readiness through a RabbitMQ outage (the worker reaches the broker
 * through a TCP proxy the test cuts, so the shared broker stays up); the drain
 * on SIGTERM; and Prometheus (Debian's package) scraping an API and a worker.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { defaultConfig } from '../src/config/load.js';
import { queueFromConfig } from '../src/jobs/queue-from-config.js';
import { deleteAmqpTopology } from '../src/queue/index.js';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { LABELS, RAW_BOXES, manifest, solidImage, tempDir, writeDecoderModels, yolov8Output } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { probeTcp, TcpProxy } from './queue/helpers.js';
import { AMQP_URL, PG_URL, SightlineProcess, cleanups, freshDatabase, waitFor } from './helpers/cli-process.js';

interface Readyz {
  status: string;
  waiting_for?: string[];
  reason?: string;
  checks: { name: string; status: string; critical: boolean; state?: string; reason?: string }[];
}

async function readyz(base: string): Promise<{ status: number; body: Readyz; retryAfter: string | null }> {
  const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: (await res.json()) as Readyz, retryAfter: res.headers.get('retry-after') };
}

/** The worker's port, from its worker_listening log line. */
async function workerBase(worker: SightlineProcess, timeoutMs = 60_000): Promise<string> {
  const listening = await worker.waitEvent('worker_listening', (e) => e.event === 'worker_listening', timeoutMs);
  return `http://127.0.0.1:${(listening.address as { port: number }[])[0]!.port}`;
}

function gauge(exposition: string, series: string): number | undefined {
  const line = exposition.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

const onPath = (bin: string) => spawnSync(bin, ['--version'], { encoding: 'utf8' }).status === 0;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

test('a worker on RabbitMQ + PostgreSQL answers /livez, /readyz and /metrics; /readyz turns 503 while the broker is cut and 200 when it is back; SIGTERM drains with /readyz 503 and exits 0', {
  timeout: 120_000,
}, async (t) => {
  const amqp = new URL(AMQP_URL);
  const pgUrl = new URL(PG_URL);
  if (!requireOrSkip(t, await probeTcp(amqp.hostname, Number(amqp.port || 5672)), `RabbitMQ at ${amqp.host}`)) return;
  if (!requireOrSkip(t, await probeTcp(pgUrl.hostname, Number(pgUrl.port || 5432)), `PostgreSQL at ${pgUrl.host}`)) return;
  const defer = cleanups(t);
  // A prefix of its own: no other run's queues are touched, no broker lock needed.
  const prefix = `worker-http-${randomUUID().slice(0, 8)}`;
  defer(() => deleteAmqpTopology(AMQP_URL, prefix));
  const { url: dbHref } = await freshDatabase(defer, 'sightline_worker_http');
  const proxy = await TcpProxy.start(amqp.hostname, Number(amqp.port || 5672));
  defer(() => proxy.close());
  const throughProxy = new URL(AMQP_URL);
  throughProxy.hostname = '127.0.0.1';
  throughProxy.port = String(proxy.port);
  const tmp = tempDir('sightline-worker-http-');
  defer(tmp.cleanup);
  // `slow` at 320×320: a job takes a good part of a second, so one is in hand when SIGTERM comes.
  const INPUT = 320;
  writeModel(
    tmp.dir,
    'slow',
    '1',
    buildConstantModel({ output: yolov8Output(), outputShape: [4 + LABELS.length, RAW_BOXES.length + 1], inputWidth: INPUT, inputHeight: INPUT, slow: true }),
    manifest({ format: 'yolov8', input: { width: INPUT, height: INPUT } }),
  );

  const worker = new SightlineProcess('worker', [
    'worker',
    ...['--worker-http-host', '127.0.0.1', '--worker-http-port', '0', '--models-dir', tmp.dir, '--data-dir', join(tmp.dir, 'data')],
    ...['--queue-url', throughProxy.href, '--queue-prefix', prefix, '--store-url', dbHref],
    ...['--dependency-check-interval-ms', '300', '--dependency-retry-base-ms', '100', '--dependency-retry-max-ms', '500'],
    ...['--instances', '1', '--intra-op-threads', '1', '--worker-concurrency', '1', '--max-batch-size', '1', '--no-snapshots', '--log-level', 'info'],
  ]);
  defer(() => worker.kill());

  const base = await workerBase(worker);
  const live = await fetch(`${base}/livez`);
  assert.equal(live.status, 200);
  assert.deepEqual(await live.json(), { status: 'ok' });
  const ready = await waitFor(
    async () => {
      const r = await readyz(base);
      return r.status === 200 ? r : undefined;
    },
    () => `/readyz 200\n${worker.tail()}`,
    60_000,
  );
  assert.equal(ready.body.status, 'ready');
  for (const name of ['queue:amqp', 'store:postgres']) {
    const check = ready.body.checks.find((c) => c.name === name);
    assert.equal(check?.state, 'up', `${name}: ${JSON.stringify(ready.body.checks)}`);
    assert.equal(check?.critical, true);
  }
  assert.equal(ready.body.checks.find((c) => c.name === 'model:slow:1')?.state, 'READY');
  // Bad input gets the server's error shape.
  const bad = await fetch(`${base}/readyz?verbose=1`);
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'INVALID_REQUEST');

  const metrics = await fetch(`${base}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const exposition = await metrics.text();
  assert.match(exposition, /^# TYPE sightline_dependency_up gauge$/m);
  assert.equal(gauge(exposition, 'sightline_dependency_up{dependency="queue:amqp"}'), 1);
  assert.match(exposition, /^# TYPE sightline_model_ready gauge$/m);
  assert.match(exposition, /^# TYPE process_cpu_seconds_total counter$/m);
  assert.ok((gauge(exposition, 'sightline_cpu_limit_cores') ?? 0) > 0, 'sightline_cpu_limit_cores');
  if (onPath('promtool')) {
    const check = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
  }

  // The broker goes away (connections dropped, new ones refused): not ready, with the reason.
  proxy.refuse = true;
  proxy.drop();
  const down = await waitFor(
    async () => {
      const r = await readyz(base);
      return r.status === 503 && r.body.waiting_for?.includes('queue:amqp') ? r : undefined;
    },
    () => `/readyz 503 naming queue:amqp\n${worker.tail()}`,
    20_000,
  );
  assert.equal(down.body.status, 'not_ready');
  assert.equal(down.retryAfter, '1');
  assert.match(down.body.reason ?? '', /queue:amqp: .+/);
  // Alive all the same: a broker outage is no reason to restart the worker.
  assert.equal((await fetch(`${base}/livez`)).status, 200);
  assert.equal(gauge(await (await fetch(`${base}/metrics`)).text(), 'sightline_dependency_up{dependency="queue:amqp"}'), 0);

  proxy.refuse = false;
  await waitFor(
    async () => (await readyz(base)).status === 200,
    () => `/readyz 200 after the broker came back\n${worker.tail()}`,
    45_000,
  );

  // Three jobs, one at a time: when the first is done the second is in hand.
  const { queue, close } = await queueFromConfig(defaultConfig({ queue_url: AMQP_URL, queue_prefix: prefix, store_url: dbHref }));
  defer(close);
  await queue.waitUntilReady();
  const image = await solidImage(INPUT, INPUT, 'jpeg');
  for (let i = 0; i < 3; i++) await queue.enqueue({ line: 'drain', priority: 'normal', image, contentType: 'image/jpeg', options: {} });
  await waitFor(
    () => worker.jobsDone().size >= 1,
    () => `a first job done\n${worker.tail()}`,
    60_000,
  );
  const doneAtSignal = worker.jobsDone().size;
  worker.child.kill('SIGTERM');
  // From its worker_stopping line on (the signal is delivered asynchronously), probes see the
  // drain: the port stays open until the jobs in hand are done.
  await worker.waitEvent('worker_stopping', (e) => e.event === 'worker_stopping', 10_000);
  const answers: { status: number; draining: boolean }[] = [];
  while (worker.alive) {
    try {
      const r = await readyz(base);
      answers.push({ status: r.status, draining: r.body.waiting_for?.includes('draining') ?? false });
    } catch {
      break; // the port closed: the worker is about to exit
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  await worker.exited;
  assert.equal(worker.exitStatus, 'code 0', worker.tail());
  assert.ok(answers.length > 0, 'the port answered during the drain');
  assert.ok(
    answers.every((a) => a.status === 503 && a.draining),
    `every /readyz after SIGTERM is 503 draining: ${JSON.stringify(answers.slice(0, 5))}`,
  );
  // The job in hand at SIGTERM finished; the worker took no new one after it.
  const done = worker.jobsDone().size;
  assert.ok(done >= doneAtSignal + 1 && done <= 2, `jobs done: ${doneAtSignal} at SIGTERM, ${done} at exit\n${worker.tail()}`);
  const order = worker.events.map((e) => e.event);
  assert.ok(order.indexOf('worker_stopping') < order.lastIndexOf('job_done'), 'a job finished during the drain');
  assert.ok(order.includes('worker_stopped'));
  await assert.rejects(fetch(`${base}/livez`), 'the port is closed after exit');
});

test('Prometheus (Debian package) scrapes an API process and a worker process: up == 1 for both', { timeout: 120_000 }, async (t) => {
  if (!requireOrSkip(t, onPath('prometheus'), 'prometheus (Debian package prometheus)')) return;
  const defer = cleanups(t);
  const tmp = tempDir('sightline-worker-prom-');
  defer(tmp.cleanup);
  writeDecoderModels(tmp.dir);
  // One host, one data dir: the API and the worker share the SQLite queue and store (no broker needed for this).
  const shared = ['--models-dir', tmp.dir, '--default-model', 'v8', '--data-dir', join(tmp.dir, 'data'), '--instances', '1', '--intra-op-threads', '1'];
  const api = new SightlineProcess('serve', ['serve', '--host', '127.0.0.1', '--port', '0', '--no-worker', ...shared, '--log-level', 'info']);
  defer(() => api.kill());
  const worker = new SightlineProcess('worker', ['worker', '--worker-http-host', '127.0.0.1', '--worker-http-port', '0', ...shared, '--log-level', 'info']);
  defer(() => worker.kill());
  const apiTarget = new URL(await api.baseUrl()).host;
  const workerTarget = new URL(await workerBase(worker)).host;

  const promPort = await freePort();
  // The job names of deploy/prometheus/prometheus.yml; only the targets differ.
  const config = {
    global: { scrape_interval: '1s' },
    scrape_configs: [
      { job_name: 'sightline', static_configs: [{ targets: [apiTarget] }] },
      { job_name: 'sightline-worker', static_configs: [{ targets: [workerTarget] }] },
    ],
  };
  writeFileSync(join(tmp.dir, 'prometheus.yml'), JSON.stringify(config));
  const prometheus = spawn(
    'prometheus',
    [`--config.file=${join(tmp.dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(tmp.dir, 'prom')}`, `--web.listen-address=127.0.0.1:${promPort}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  prometheus.stderr.on('data', (c: Buffer) => {
    log = (log + c.toString()).slice(-4000);
  });
  defer(() => prometheus.kill('SIGTERM'));

  type Sample = { metric: Record<string, string>; value: [number, string] };
  const query = async (q: string): Promise<Sample[] | undefined> => {
    try {
      const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`);
      return res.ok ? ((await res.json()) as { data: { result: Sample[] } }).data.result : undefined;
    } catch {
      return undefined;
    }
  };
  let last: unknown;
  const up = await waitFor(
    async () => {
      assert.equal(prometheus.exitCode, null, `prometheus exited: ${log}`);
      const result = await query('up');
      last = result;
      return result?.length === 2 && result.every((s) => s.value[1] === '1') ? result : undefined;
    },
    () => `up == 1 for both targets: ${JSON.stringify(last)}\n${log}`,
    30_000,
  );
  assert.deepEqual(up.map((s) => s.metric.job).sort(), ['sightline', 'sightline-worker']);
  // The worker's own series arrive too, not only Prometheus' synthetic `up`.
  const fromWorker = await waitFor(
    async () => {
      const result = await query('sightline_model_ready{job="sightline-worker"}');
      return result && result.length > 0 ? result : undefined;
    },
    'sightline_model_ready from the worker',
    15_000,
  );
  assert.equal(fromWorker[0]!.metric.instance, workerTarget);
});
