import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { effectiveLimits } from '../src/metrics/cgroup.js';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { createMetrics } from '../src/metrics/metrics.js';
import { NVIDIA_SMI_ARGS, parseNvidiaSmi } from '../src/metrics/gpu-sampler.js';
import { startSystemSampler } from '../src/metrics/system-sampler.js';
import { createLogger } from '../src/logger.js';
import { LogCapture, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sample lines of an exposition: series (name plus labels, as printed) → value. */
function samples(exposition: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of exposition.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

async function scrape(app: FastifyInstance): Promise<{ text: string; series: Map<string, number> }> {
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(res.statusCode, 200);
  return { text: res.body, series: samples(res.body) };
}

/** Scrapes until `done` holds (or fails after `ms`). */
async function scrapeUntil(app: FastifyInstance, done: (s: Map<string, number>) => boolean, what: string, ms = 10_000) {
  const until = Date.now() + ms;
  for (;;) {
    const result = await scrape(app);
    if (done(result.series)) return result;
    assert.ok(Date.now() < until, `timed out waiting for ${what}:\n${result.text}`);
    await sleep(50);
  }
}

const value = (series: Map<string, number>, name: string) => {
  const v = series.get(name);
  assert.ok(v !== undefined, `${name} exported`);
  return v;
};

const gpuSeries = (series: Map<string, number>) => [...series.keys()].filter((k) => k.startsWith('sightline_gpu_'));

const events = (logs: LogCapture, event: string) => logs.lines.filter((l) => l.event === event);

// ---------------------------------------------------------------- a running server

test('after traffic, /metrics carries sane system gauges, sightline_model_info, and no GPU series without nvidia-smi', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const logs = new LogCapture();
  // A path that does not exist: ENOENT at the first probe, whatever this machine has.
  const missing = join(tmp.dir, 'no-such-nvidia-smi');
  const app = await startApp({ models_dir: 'models', system_sample_interval_ms: 100, nvidia_smi_path: missing }, { logs });
  t.after(() => app.close());

  for (const sample of ['samples/ng-01.jpg', 'samples/ok-01.jpg']) {
    const res = await app.inject({ method: 'POST', url: '/v1/detect?line=line-1', headers: { 'content-type': 'image/jpeg' }, payload: readFileSync(sample) });
    assert.equal(res.statusCode, 200, res.body);
  }
  // A few sampling intervals after the traffic.
  await sleep(450);
  const { text, series } = await scrapeUntil(
    app,
    (s) => (s.get('sightline_event_loop_lag_seconds') ?? 0) > 0 || (s.get('sightline_memory_rss_bytes') ?? 0) > 0,
    'system gauges',
  );

  const rss = value(series, 'sightline_memory_rss_bytes');
  assert.ok(rss > 1024 * 1024, `rss ${rss}`);
  const cpu = value(series, 'sightline_cpu_utilization_ratio');
  assert.ok(cpu >= 0 && cpu <= 1, `process cpu ${cpu}`);
  const machineCpu = value(series, 'sightline_system_cpu_utilization_ratio');
  assert.ok(machineCpu >= 0 && machineCpu <= 1, `machine cpu ${machineCpu}`);
  const memTotal = value(series, 'sightline_system_memory_total_bytes');
  assert.equal(memTotal, effectiveLimits().memoryBytes);
  const memUsed = value(series, 'sightline_system_memory_used_bytes');
  assert.ok(memUsed > 0 && memUsed <= memTotal, `used ${memUsed} of ${memTotal}`);
  assert.ok(rss <= memTotal);
  const lag = value(series, 'sightline_event_loop_lag_seconds');
  assert.ok(lag >= 0 && lag < 60, `lag ${lag}`);
  for (const name of ['sightline_cpu_utilization_ratio', 'sightline_event_loop_lag_seconds', 'sightline_memory_rss_bytes']) {
    assert.match(text, new RegExp(`^# HELP ${name} \\S`, 'm'));
    assert.match(text, new RegExp(`^# TYPE ${name} gauge$`, 'm'));
  }

  // The built-in model served by default: models/defects/2/model.json (yolov8, 416×416, 4 labels).
  assert.equal(series.get('sightline_model_info{model="defects",version="2",format="yolov8",input="416x416",classes="4"}'), 1);
  assert.equal([...series.keys()].filter((k) => k.startsWith('sightline_model_info')).length, 1);

  // prom-client's default metrics that the dashboard and the alert rules read are still there.
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_p99_seconds']) {
    assert.ok(series.has(name), `${name} exported`);
  }

  // No GPU: the series are absent (not zero), nvidia-smi was probed once and given up on.
  assert.deepEqual(gpuSeries(series), []);
  const off = events(logs, 'gpu_sampling_off');
  assert.equal(off.length, 1, JSON.stringify(off));
  assert.equal(off[0]!.level, 'info');
  assert.equal(off[0]!.nvidia_smi_path, missing);
  assert.match(String(off[0]!.reason), /not found/);
});

test('an empty nvidia_smi_path turns GPU sampling off silently', async (t) => {
  const logs = new LogCapture();
  const app = await startApp({ models_dir: 'models', system_sample_interval_ms: 100, nvidia_smi_path: '' }, { logs });
  t.after(() => app.close());
  await sleep(250);
  const { series } = await scrape(app);
  assert.deepEqual(gpuSeries(series), []);
  assert.ok(value(series, 'sightline_memory_rss_bytes') > 0);
  assert.equal(events(logs, 'gpu_sampling_off').length, 0);
});

test('sightline_model_info: one series per READY model version, none for a FAILED one', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  writeDecoderModels(tmp.dir);
  mkdirSync(join(tmp.dir, 'broken', '1'), { recursive: true });
  writeFileSync(join(tmp.dir, 'broken', '1', 'model.json'), '{ not json');
  writeFileSync(join(tmp.dir, 'broken', '1', 'model.onnx'), 'not a model');
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', nvidia_smi_path: '' });
  t.after(() => app.close());
  const { series } = await scrape(app);
  const info = [...series.entries()].filter(([k]) => k.startsWith('sightline_model_info')).sort();
  assert.deepEqual(info, [
    ['sightline_model_info{model="e2e",version="1",format="end2end",input="640x640",classes="3"}', 1],
    ['sightline_model_info{model="v5",version="1",format="yolov5",input="640x640",classes="3"}', 1],
    ['sightline_model_info{model="v8",version="1",format="yolov8",input="640x640",classes="3"}', 1],
  ]);
  assert.equal(series.get('sightline_model_ready{model="broken",version="1"}'), 0);
});

// ---------------------------------------------------------------- the sampler on its own

test('a blocked event loop and a busy CPU show in the next sample', async (t) => {
  const metrics = createMetrics();
  const sampler = startSystemSampler({ metrics, logger: createLogger('silent'), intervalMs: 60_000, nvidiaSmiPath: '' });
  t.after(() => sampler.stop());
  await sleep(50);
  await sampler.sample(); // a fresh interval starts here
  // Node's delay monitor skips its first tick after a reset: block after that one.
  await sleep(30);
  const start = Date.now();
  while (Date.now() - start < 250) {
    // busy: blocks the event loop and burns CPU
  }
  await sleep(30); // lets the delay monitor record the late tick
  await sampler.sample();
  const read = async (name: string) => (await metrics.registry.getSingleMetric(name)!.get()).values[0]!.value;
  const lag = await read('sightline_event_loop_lag_seconds');
  assert.ok(lag >= 0.15 && lag < 60, `lag ${lag} after a 250 ms block`);
  const cpu = await read('sightline_cpu_utilization_ratio');
  assert.ok(cpu > 0 && cpu <= 1, `process cpu ${cpu} after a busy loop`);
  const machineCpu = await read('sightline_system_cpu_utilization_ratio');
  assert.ok(machineCpu > 0 && machineCpu <= 1, `machine cpu ${machineCpu} after a busy loop`);
  await sampler.stop();
  await sampler.stop(); // idempotent
});

// ---------------------------------------------------------------- GPUs through a fake nvidia-smi

test('parseNvidiaSmi: whitespace, [N/A] and [Not Supported], a name with a comma, lines that are not GPUs', () => {
  const out = [
    '',
    '  0 ,  NVIDIA H100 80GB HBM3 , GPU-0f, 37 , 1024 , 81559 , 45 , 123.45  ',
    '1, Weird, Name, GPU-1f, [Not Supported], [N/A], 15360, [N/A], 70.5',
    'No devices were found',
    '',
  ].join('\r\n');
  assert.deepEqual(parseNvidiaSmi(out), [
    {
      index: '0',
      name: 'NVIDIA H100 80GB HBM3',
      uuid: 'GPU-0f',
      utilization: 0.37,
      memoryUsedBytes: 1024 * 1024 * 1024,
      memoryTotalBytes: 81559 * 1024 * 1024,
      temperatureCelsius: 45,
      powerWatts: 123.45,
    },
    { index: '1', name: 'Weird, Name', uuid: 'GPU-1f', memoryTotalBytes: 15360 * 1024 * 1024, powerWatts: 70.5 },
  ]);
  assert.deepEqual(parseNvidiaSmi('No devices were found\n'), []);
  assert.deepEqual(parseNvidiaSmi(''), []);
});

const UUID_0 = 'GPU-11111111-2222-3333-4444-555555555555';
const UUID_1 = 'GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';

/**
 * Writes FAKE_NVIDIA_SMI: a stand-in shell script for the external nvidia-smi
 * tool (there is no GPU here). It logs its arguments and each call, prints two
 * GPUs (the second without a power reading) and exits 1 while a file named
 * `fail` sits beside it.
 */
function writeFakeNvidiaSmi(dir: string, body?: string): string {
  const path = join(dir, 'fake-nvidia-smi');
  const script =
    body ??
    [
      '#!/bin/sh',
      '# FAKE nvidia-smi for tests: fixed output, no GPU involved.',
      'here=$(dirname "$0")',
      'printf "%s\\n" "$@" > "$here/args"',
      'echo call >> "$here/calls"',
      'if [ -e "$here/fail" ]; then echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2; exit 1; fi',
      "cat <<'EOF'",
      `0, NVIDIA H100 80GB HBM3, ${UUID_0}, 37, 1024, 81559, 45, 123.45`,
      `  1 ,  Tesla T4 , ${UUID_1} ,  0 , 0 , 15360 , 30 , [N/A]  `,
      'EOF',
    ].join('\n') + '\n';
  writeFileSync(path, script);
  chmodSync(path, 0o755);
  return path;
}

const calls = (dir: string) => (existsSync(join(dir, 'calls')) ? readFileSync(join(dir, 'calls'), 'utf8').split('\n').filter(Boolean).length : 0);

test('GPU gauges from a fake nvidia-smi: exact values and labels, [N/A] left out; a later failure removes them, recovery brings them back', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const fake = writeFakeNvidiaSmi(tmp.dir);
  const logs = new LogCapture();
  const app = await startApp({ models_dir: 'models', system_sample_interval_ms: 100, nvidia_smi_path: fake }, { logs });
  t.after(() => app.close());

  const { series } = await scrapeUntil(app, (s) => s.has(`sightline_gpu_info{gpu="1",name="Tesla T4",uuid="${UUID_1}"}`), 'GPU series');
  assert.deepEqual(readFileSync(join(tmp.dir, 'args'), 'utf8').trim().split('\n'), NVIDIA_SMI_ARGS);
  assert.deepEqual(NVIDIA_SMI_ARGS, [
    '--query-gpu=index,name,uuid,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw',
    '--format=csv,noheader,nounits',
  ]);
  const gpu = Object.fromEntries([...series.entries()].filter(([k]) => k.startsWith('sightline_gpu_')).sort());
  assert.deepEqual(gpu, {
    [`sightline_gpu_info{gpu="0",name="NVIDIA H100 80GB HBM3",uuid="${UUID_0}"}`]: 1,
    [`sightline_gpu_info{gpu="1",name="Tesla T4",uuid="${UUID_1}"}`]: 1,
    'sightline_gpu_memory_total_bytes{gpu="0"}': 81559 * 1024 * 1024,
    'sightline_gpu_memory_total_bytes{gpu="1"}': 15360 * 1024 * 1024,
    'sightline_gpu_memory_used_bytes{gpu="0"}': 1024 * 1024 * 1024,
    'sightline_gpu_memory_used_bytes{gpu="1"}': 0,
    'sightline_gpu_power_watts{gpu="0"}': 123.45,
    'sightline_gpu_temperature_celsius{gpu="0"}': 45,
    'sightline_gpu_temperature_celsius{gpu="1"}': 30,
    'sightline_gpu_utilization_ratio{gpu="0"}': 0.37,
    'sightline_gpu_utilization_ratio{gpu="1"}': 0,
  });
  const on = events(logs, 'gpu_sampling_on');
  assert.equal(on.length, 1);
  assert.deepEqual(on[0]!.gpus, ['0: NVIDIA H100 80GB HBM3', '1: Tesla T4']);

  // nvidia-smi starts failing: the GPU series go (no stale values), one warning.
  writeFileSync(join(tmp.dir, 'fail'), '');
  await scrapeUntil(app, (s) => gpuSeries(s).length === 0, 'GPU series removed');
  const failedAt = calls(tmp.dir);
  await scrapeUntil(app, () => calls(tmp.dir) >= failedAt + 3, 'more nvidia-smi calls');
  assert.deepEqual(gpuSeries((await scrape(app)).series), []);
  const failed = events(logs, 'gpu_sampling_failed');
  assert.equal(failed.length, 1, JSON.stringify(failed));
  assert.equal(failed[0]!.level, 'warn');
  assert.match(String(failed[0]!.reason), /could not communicate with the NVIDIA driver/);
  assert.equal((await app.inject({ method: 'GET', url: '/livez' })).statusCode, 200);

  // It recovers: the series come back.
  rmSync(join(tmp.dir, 'fail'));
  await scrapeUntil(app, (s) => s.get('sightline_gpu_power_watts{gpu="0"}') === 123.45, 'GPU series back');
  assert.equal(events(logs, 'gpu_sampling_resumed').length, 1);
  assert.equal(events(logs, 'gpu_sampling_off').length, 0);
});

test('a fake nvidia-smi that exits 1 at the first probe: no GPU series, probed once, the app stays healthy', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const fake = writeFakeNvidiaSmi(
    tmp.dir,
    '#!/bin/sh\n# FAKE nvidia-smi for tests: always fails.\necho call >> "$(dirname "$0")/calls"\necho "No devices were found" >&2\nexit 1\n',
  );
  const logs = new LogCapture();
  const app = await startApp({ models_dir: 'models', system_sample_interval_ms: 100, nvidia_smi_path: fake }, { logs });
  t.after(() => app.close());
  await scrapeUntil(app, () => events(logs, 'gpu_sampling_off').length > 0, 'gpu_sampling_off');
  await sleep(450); // several intervals
  const { series } = await scrape(app);
  assert.deepEqual(gpuSeries(series), []);
  assert.ok(value(series, 'sightline_memory_rss_bytes') > 0);
  assert.equal(calls(tmp.dir), 1, 'nvidia-smi is not tried again');
  const off = events(logs, 'gpu_sampling_off');
  assert.equal(off.length, 1);
  assert.match(String(off[0]!.reason), /No devices were found/);
  assert.equal(events(logs, 'gpu_sampling_failed').length, 0);
  assert.equal((await app.inject({ method: 'GET', url: '/livez' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  const res = await app.inject({ method: 'POST', url: '/v1/detect', headers: { 'content-type': 'image/jpeg' }, payload: readFileSync('samples/ok-01.jpg') });
  assert.equal(res.statusCode, 200, res.body);
});

test('a fake nvidia-smi that hangs is killed after the timeout and GPU sampling goes off', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const fake = writeFakeNvidiaSmi(tmp.dir, '#!/bin/sh\n# FAKE nvidia-smi for tests: never answers.\nexec sleep 30\n');
  const logs = new LogCapture();
  // The nvidia-smi timeout is the interval, at least 2 s.
  const app = await startApp({ models_dir: 'models', system_sample_interval_ms: 100, nvidia_smi_path: fake }, { logs });
  t.after(() => app.close());
  await scrapeUntil(app, () => events(logs, 'gpu_sampling_off').length > 0, 'gpu_sampling_off', 15_000);
  assert.match(String(events(logs, 'gpu_sampling_off')[0]!.reason), /timed out/);
  assert.deepEqual(gpuSeries((await scrape(app)).series), []);
});

/** promtool's findings on prom-client's default metrics (gauges named *_total): not ours to rename. */
test('promtool check metrics passes on an exposition with the system, model and GPU series', async (t) => {
  const hasPromtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
  if (!requireOrSkip(t, hasPromtool, 'promtool (Debian package prometheus)')) return;
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const fake = writeFakeNvidiaSmi(tmp.dir);
  const app = await startApp({ models_dir: 'models', system_sample_interval_ms: 100, nvidia_smi_path: fake });
  t.after(() => app.close());
  const { text } = await scrapeUntil(
    app,
    (s) =>
      s.has('sightline_gpu_power_watts{gpu="0"}') && s.has('sightline_model_info{model="defects",version="2",format="yolov8",input="416x416",classes="4"}'),
    'GPU and model series',
  );
  const check = spawnSync('promtool', ['check', 'metrics'], { encoding: 'utf8', input: text });
  // 0: clean; 3: lint findings only (a parse error exits 1).
  assert.ok(check.status === 0 || check.status === 3, `promtool check metrics exited ${check.status}: ${check.stdout}${check.stderr}`);
  const findings = `${check.stdout}${check.stderr}`.split('\n').filter((l) => l.trim());
  assert.deepEqual(findings, [], 'lint findings on the whole exposition');
});
