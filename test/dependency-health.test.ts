import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { type Dependency, DependencyMonitor } from '../src/health/dependency-monitor.js';
import { LogCapture, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';

function monitorWith(probe: Dependency['probe'], opts: { critical?: boolean; probeTimeoutMs?: number } = {}) {
  const logs = new LogCapture();
  const calls: number[] = [];
  const monitor = new DependencyMonitor({
    dependencies: [
      {
        name: 'thing:a',
        critical: opts.critical ?? true,
        probe: () => {
          calls.push(Date.now());
          return probe();
        },
      },
    ],
    intervalMs: 60,
    retryBaseMs: 20,
    retryMaxMs: 80,
    probeTimeoutMs: opts.probeTimeoutMs ?? 1000,
    logger: pino({ level: 'info' }, logs),
  });
  return { monitor, logs, calls };
}

test('a dependency that is down is retried with growing delays, logged as waited for, and picked up when it comes', async () => {
  let up = false;
  const { monitor, logs, calls } = monitorWith(async () => {
    if (!up) throw new Error('connect ECONNREFUSED');
    return 'fine';
  });
  const changes: string[] = [];
  monitor.on('change', (s) => changes.push(s.state));
  assert.equal(monitor.statuses()[0]!.state, 'starting');
  assert.deepEqual(monitor.waitingFor(), ['thing:a']);
  monitor.start();
  try {
    await new Promise((r) => setTimeout(r, 400));
    const down = monitor.statuses()[0]!;
    assert.equal(down.state, 'down');
    assert.equal(down.reason, 'connect ECONNREFUSED');
    assert.ok(down.failures >= 4, `${down.failures} failures`);
    // Delays double from 20 ms up to the 80 ms cap (±20 % jitter), then stay there.
    const gaps = calls.slice(1).map((t, i) => t - calls[i]!);
    assert.ok(gaps[0]! >= 14 && gaps[0]! < 60, `first gap ${gaps[0]}`);
    assert.ok(
      gaps.slice(3).every((g) => g >= 60 && g < 130),
      `capped gaps ${gaps.join(',')}`,
    );
    const waiting = logs.lines.filter((l) => l.event === 'dependency_waiting');
    assert.equal(waiting.length, down.failures, 'every try is logged while waiting at start-up');
    assert.equal(waiting[0]!.level, 40);
    assert.match(String(waiting[1]!.msg), /^waiting for thing:a \(try 2, next in [\d.]+ s\): connect ECONNREFUSED$/);

    const downSince = down.since.getTime();
    up = true;
    await new Promise((r) => setTimeout(r, 150));
    const back = monitor.statuses()[0]!;
    assert.equal(back.state, 'up');
    assert.equal(back.detail, 'fine');
    assert.equal(back.failures, 0);
    assert.ok(back.since.getTime() > downSince);
    assert.deepEqual(monitor.waitingFor(), []);
    assert.ok(logs.lines.some((l) => l.event === 'dependency_up' && /thing:a is up \(waited/.test(String(l.msg))));
    // While up it is probed at the normal interval (60 ms), not the retry delay.
    const n = calls.length;
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(calls.length - n >= 2 && calls.length - n <= 4, `${calls.length - n} probes in 200 ms`);

    // A later outage is an outage, not a start-up wait, and is logged once.
    up = false;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(monitor.statuses()[0]!.state, 'down');
    assert.equal(logs.lines.filter((l) => l.event === 'dependency_down').length, 1);
    up = true;
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(logs.lines.some((l) => l.event === 'dependency_up' && typeof l.down_ms === 'number' && /thing:a is back after/.test(String(l.msg))));
    assert.deepEqual(changes, ['down', 'up', 'down', 'up']);
  } finally {
    monitor.stop();
  }
});

test('a probe that never answers counts as down after the probe timeout', async () => {
  const { monitor } = monitorWith(() => new Promise(() => {}), { probeTimeoutMs: 50 });
  try {
    await monitor.checkNow();
    const status = monitor.statuses()[0]!;
    assert.equal(status.state, 'down');
    assert.equal(status.reason, 'no answer within 50 ms');
  } finally {
    monitor.stop();
  }
});

test('too little free disk makes /readyz 503 naming the directory, with sightline_dependency_up 0', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', data_dir: `${tmp.dir}/data`, min_free_disk_bytes: Number.MAX_SAFE_INTEGER });
  try {
    await app.sightline.health.monitor.checkNow();
    const res = await app.inject('/readyz');
    assert.equal(res.statusCode, 503);
    const body = res.json();
    const disk = body.checks.find((c: { name: string }) => c.name.startsWith('disk:'));
    assert.equal(disk.name, `disk:${tmp.dir}/data/uploads`);
    assert.match(disk.reason, /^\d+ MiB free, below min_free_disk_bytes/);
    assert.ok(body.waiting_for.includes(disk.name));
    // The store and queue are in memory here: no disk check for data_dir itself, and they pass.
    assert.equal(body.checks.find((c: { name: string }) => c.name === 'store:sqlite').state, 'up');
    assert.equal(body.checks.find((c: { name: string }) => c.name === 'queue:sqlite').state, 'up');
    const metrics = (await app.inject('/metrics')).body;
    assert.match(metrics, new RegExp(`sightline_dependency_up\\{dependency="disk:${tmp.dir}/data/uploads"\\} 0`));
    assert.match(metrics, /sightline_dependency_up\{dependency="store:sqlite"\} 1/);
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('a model whose inference worker died fails its test inference: /readyz turns 503 with the reason', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', instances: 1, test_inference_interval_ms: 0 });
  try {
    const { testInference } = app.sightline.health;
    await testInference.runOnce();
    const healthy = await app.inject('/readyz');
    assert.equal(healthy.statusCode, 200, healthy.body);
    const v8 = healthy.json().checks.find((c: { name: string }) => c.name === 'model:v8:1');
    assert.equal(v8.test_inference.ok, true);
    assert.ok(v8.test_inference.duration_ms > 0);

    // The model stays READY in the repository: only the test inference can tell it no longer answers.
    const entry = app.sightline.models.list().find((e) => e.name === 'v8')!;
    // The instance under the watchdog's SupervisedRunner (src/inference/watchdog.ts), when it wraps one.
    type Thread = { thread: { terminate(): Promise<number> } };
    const supervised = entry.runners![0] as unknown as Partial<Thread> & { current?: Thread };
    const runner = supervised.current ?? (supervised as Thread);
    await runner.thread.terminate();
    await testInference.runOnce();
    const broken = await app.inject('/readyz');
    assert.equal(broken.statusCode, 503);
    const check = broken.json().checks.find((c: { name: string }) => c.name === 'model:v8:1');
    assert.equal(check.state, 'READY');
    assert.equal(check.status, 'fail');
    assert.match(check.reason, /^test inference failed: .*worker/);
    assert.deepEqual(broken.json().waiting_for, ['model:v8:1']);
  } finally {
    await app.close();
    tmp.cleanup();
  }
});
