/**
 * The stuck-inference watchdog (inference_stall_ms): a run past the limit answers
 * its requests with 503 INFERENCE_STALLED, the instance is replaced and warmed up,
 * /readyz says so meanwhile, failed restarts are retried, and the model serves again.
 *
 * The stalling model (buildStallingModel) blocks inside session.run, in native
 * code, only for an all-white image: a Loop whose trip count is 0 unless every
 * input value is above 0.99 (grey warm-up images and the green test image run in
 * about a millisecond). A worker thread busy in native code cannot be stopped
 * (terminate() takes effect when session.run returns, and Node joins worker
 * threads before the process exits), so the test sizes the loop to end on its
 * own: STALL_ITERATIONS runs for about 10 s on one core here (about 2.4 µs per
 * iteration), more than six times the 1.5 s limit; buildStallingModel's default
 * runs for days.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { buildApp } from '../src/server/app.js';
import { defaultConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { OnnxRunner } from '../src/inference/onnx-runner.js';
import { ModelRepository, type ModelEntry } from '../src/inference/repository.js';
import type { ModelRunner, RunOutput } from '../src/inference/runner.js';
import { P99Estimate, stallLimitMs } from '../src/inference/watchdog.js';
import { buildStallingModel, writeModel } from './helpers/onnx-builder.js';
import { INPUT, LABELS, LogCapture, RAW_BOXES, manifest, solidImage, tempDir, yolov8Output } from './helpers/fixtures.js';

const STALL_MS = 1500;
const STALL_ITERATIONS = 4_000_000;

interface Readyz {
  status: string;
  reason?: string;
  checks: { name: string; status: string; state?: string; reason?: string }[];
}

async function whiteImage(): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(
    await sharp({ create: { width: INPUT, height: INPUT, channels: 3, background: { r: 255, g: 255, b: 255 } } })
      .png()
      .toBuffer(),
  );
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every real instance the tests start, stalled ones included. */
const onnxRunners: OnnxRunner[] = [];
/** Longest wait for their threads at the end (a stalled loop ends about 10 s after it began); past it the file fails. */
const THREADS_END_WITHIN_MS = 120_000;

// An abandoned thread still inside the stalling loop cannot be stopped, and the process
// must not end before it leaves its native call (ending the process then aborts it, see
// OnnxRunner.abandon()); the test runner forces the exit once the tests have reported,
// so the file waits for every thread here. The loops end about 10 s after they began.
after(async () => {
  const ended = new Set<number>();
  for (const [i, runner] of onnxRunners.entries()) void runner.ended.then(() => ended.add(i));
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([
    Promise.all(onnxRunners.map((r) => r.ended)).then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), THREADS_END_WITHIN_MS);
    }),
  ]);
  clearTimeout(timer);
  // A thread that never ends is a leaked instance (one came from a second load during a replacement).
  if (late) {
    const running = onnxRunners.map((_, i) => i).filter((i) => !ended.has(i));
    throw new Error(`instance threads ${running.join(', ')} of ${onnxRunners.length} still running ${THREADS_END_WITHIN_MS} ms after the tests`);
  }
});

test('a run blocked in session.run: 503 INFERENCE_STALLED within the limit, /readyz reports the replacement, a failed restart is retried, the model serves again, a job retries', {
  timeout: 80_000,
}, async () => {
  const tmp = tempDir();
  writeModel(
    tmp.dir,
    'stall',
    '1',
    buildStallingModel({
      output: yolov8Output(),
      outputShape: [4 + LABELS.length, RAW_BOXES.length + 1],
      inputWidth: INPUT,
      inputHeight: INPUT,
      iterations: STALL_ITERATIONS,
    }),
    manifest({ format: 'yolov8' }),
  );
  // Instance starts after the first: the first replacement fails once (injected) and
  // the next waits for `release`, so the test sees the model without an instance.
  let starts = 0;
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const createRunner = async (path: string, options: Parameters<typeof OnnxRunner.create>[1]): Promise<ModelRunner> => {
    starts++;
    if (starts === 2) throw new Error('injected start failure');
    if (starts === 3) await held;
    const runner = await OnnxRunner.create(path, options);
    onnxRunners.push(runner);
    return runner;
  };
  const logs = new LogCapture();
  const config = defaultConfig({
    models_dir: tmp.dir,
    instances: 1,
    intra_op_threads: 1,
    inference_stall_ms: STALL_MS,
    // The stall is sized for one single-threaded instance, not the lone-request session.
    lone_request_threads: 1,
    test_inference_interval_ms: 0,
    job_max_attempts: 2,
    job_backoff_ms: 3000,
    store_url: 'sqlite::memory:',
    queue_url: 'sqlite::memory:',
    snapshots: false,
  });
  const app = await buildApp(config, { logger: createLogger('info', logs), waitForModels: true, createRunner });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const green = new Uint8Array(await solidImage(INPUT, INPUT, 'png'));
    const white = await whiteImage();
    const detect = async (body: Uint8Array<ArrayBuffer>) => {
      const res = await fetch(`${base}/v1/detect`, { method: 'POST', headers: { 'content-type': 'image/png' }, body });
      return {
        status: res.status,
        retryAfter: res.headers.get('retry-after'),
        body: (await res.json()) as { verdict?: string; error?: { code: string; message: string } },
      };
    };
    const readyz = async () => {
      const res = await fetch(`${base}/readyz`);
      return { status: res.status, body: (await res.json()) as Readyz };
    };

    assert.equal((await detect(green)).status, 200, 'the model serves before the stall');
    assert.equal((await readyz()).status, 200);

    // The white image blocks session.run: the watchdog answers within the limit.
    const t0 = performance.now();
    const stalled = await detect(white);
    const stalledAfterMs = performance.now() - t0;
    assert.equal(stalled.status, 503, JSON.stringify(stalled.body));
    assert.equal(stalled.body.error?.code, 'INFERENCE_STALLED');
    assert.ok(stalled.retryAfter !== null, 'a retryable 503 carries Retry-After');
    assert.ok(stalledAfterMs >= STALL_MS - 50 && stalledAfterMs < STALL_MS + 1500, `answered after ${Math.round(stalledAfterMs)} ms`);

    // Its only instance is being replaced (the first restart failed, the second is held): not ready, and why.
    const during = await readyz();
    assert.equal(during.status, 503);
    const check = during.body.checks.find((c) => c.name === 'model:stall:1');
    assert.equal(check?.status, 'fail');
    assert.equal(check?.state, 'LOADING');
    assert.match(check?.reason ?? '', /being replaced after a stalled inference/);
    const notReady = await detect(green);
    assert.equal(notReady.status, 503);
    assert.equal(notReady.body.error?.code, 'MODEL_NOT_READY');
    await waitFor('the failed restart to be logged', async () => (logs.lines.some((l) => l.event === 'model_instance_restart_failed') ? true : undefined));
    const retrying = (await readyz()).body.checks.find((c) => c.name === 'model:stall:1');
    assert.match(retrying?.reason ?? '', /restart attempt 1 failed: injected start failure; retrying in 500 ms/);
    // The version is LOADING while its instance is replaced, yet loaded: model control's poll must not
    // load it a second time beside the replacement (it did, and the instance that load started leaked).
    await waitFor('the second restart attempt (held)', async () => (starts === 3 ? true : undefined));
    await app.sightline.models.reconcile('stall');
    assert.equal(starts, 3, 'no new load while the replacement is under way');

    release();
    await waitFor('/readyz 200 after the replacement', async () => ((await readyz()).status === 200 ? true : undefined));
    const after = (await readyz()).body.checks.find((c) => c.name === 'model:stall:1');
    assert.equal(after?.state, 'READY');
    assert.equal(after?.reason, undefined);
    const served = await detect(green);
    assert.equal(served.status, 200, 'the fresh instance serves');
    assert.equal(served.body.verdict, 'ng');

    const events = logs.lines.map((l) => l.event);
    assert.equal(events.filter((e) => e === 'model_instance_stalled').length, 1);
    const restarted = logs.lines.find((l) => l.event === 'model_instance_restarted');
    assert.equal(restarted?.attempts, 2, 'replaced on the second attempt, after the injected failure');

    // A job whose image stalls is retried (INFERENCE_STALLED is retryable) and dead-lettered after job_max_attempts.
    const posted = await fetch(`${base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: white });
    assert.equal(posted.status, 202);
    const { job_id: jobId } = (await posted.json()) as { job_id: string };
    const jobState = async () => (await (await fetch(`${base}/v1/jobs/${jobId}`)).json()) as { state: string; attempts: number; last_error?: string };
    // The first attempt failed with the stall and the job waits for its retry. (The retry may find the
    // model still LOADING: on a small machine the stuck threads slow the replacement's start.)
    const first = await waitFor('the first attempt to fail', async () => {
      const body = await jobState();
      return body.last_error ? body : undefined;
    });
    assert.match(first.last_error ?? '', /Inference stalled/);
    assert.notEqual(first.state, 'dead');
    const job = await waitFor(
      'the stalling job to be dead-lettered',
      async () => {
        const body = await jobState();
        return body.state === 'dead' ? body : undefined;
      },
      30_000,
    );
    assert.equal(job.attempts, 2, 'retried once (job_max_attempts 2)');
    await waitFor('the model READY again after the job', async () => ((await readyz()).status === 200 ? true : undefined));
    assert.equal((await detect(green)).status, 200, 'and serves again');

    // One stall for the request, one or two for the job's attempts.
    const stalls = logs.lines.filter((l) => l.event === 'model_instance_stalled').length;
    assert.ok(stalls === 2 || stalls === 3, `${stalls} stalls`);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const restarts = metrics.split('\n').find((l) => l.startsWith('sightline_model_instance_restarts_total{'));
    // The counter is registered by src/metrics and wired in src/runtime.ts (see the watchdog wiring patch).
    if (restarts !== undefined) assert.equal(restarts, `sightline_model_instance_restarts_total{model="stall",version="1",reason="stalled"} ${stalls}`);
  } finally {
    release();
    await app.close();
    tmp.cleanup();
  }
});

/** A runner whose run() hangs while `stuck` is set, as a blocked session would. */
class FakeRunner implements ModelRunner {
  static stuck = false;
  readonly info = { inputName: 'images', outputName: 'output0', inputShape: ['batch', 3, 8, 8], outputShape: ['batch', 7, 6] };
  closed = false;
  abandoned = false;
  run(images: Uint8Array[]): Promise<RunOutput> {
    if (FakeRunner.stuck) return new Promise(() => {});
    return Promise.resolve({ output: new Float32Array(images.length * 7 * 6), dims: [images.length, 7, 6], preprocessMs: 0, inferMs: 1 });
  }
  abandon(): void {
    this.abandoned = true;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

test('with two instances one stalled instance keeps the model READY with the reason; restarts are counted, failed starts retried with backoff', {
  timeout: 20_000,
}, async () => {
  const tmp = tempDir();
  const dir = writeModel(tmp.dir, 'fake', '1', new Uint8Array(), { ...manifest({ format: 'yolov8' }), input: { width: 8, height: 8 } });
  writeFileSync(join(dir, 'model.onnx'), 'not read by the fake runner');
  const runners: FakeRunner[] = [];
  let failStarts = 0;
  const restarts: string[] = [];
  const states: string[] = [];
  const repo = new ModelRepository({
    dir: tmp.dir,
    defaultModel: '',
    runner: { intraOpThreads: 1, interOpThreads: 1 },
    instances: 2,
    warmupRuns: 1,
    stallMs: 200,
    restartRetryBaseMs: 20,
    batching: { maxBatch: 1, maxDelayMs: 0, maxQueue: 16 },
    logger: createLogger('silent'),
    createRunner: async () => {
      if (failStarts > 0) {
        failStarts--;
        throw new Error('no memory left');
      }
      const r = new FakeRunner();
      runners.push(r);
      return r;
    },
    onStateChange: (e: ModelEntry) => states.push(`${e.state}${e.reason ? `: ${e.reason}` : ''}`),
    onInstanceRestart: (e, reason) => restarts.push(`${e.name}:${e.version}:${reason}`),
  });
  try {
    await repo.loadAll();
    const entry = repo.findReady('fake');
    const pixels = new Uint8Array(8 * 8 * 3);
    // One stuck run: answered with INFERENCE_STALLED, the model stays READY on the other instance.
    FakeRunner.stuck = true;
    failStarts = 2;
    const t0 = performance.now();
    await assert.rejects(entry.batcher.enqueue(pixels, 'normal'), (err: Error & { code?: string; statusCode?: number }) => {
      assert.equal(err.code, 'INFERENCE_STALLED');
      assert.equal(err.statusCode, 503);
      return true;
    });
    assert.ok(performance.now() - t0 < 600);
    assert.equal(entry.state, 'READY');
    assert.match(entry.reason ?? '', /^1 of 2 instances being replaced/);
    assert.equal(runners.filter((r) => r.abandoned).length, 1, 'the stuck instance was given up');
    FakeRunner.stuck = false;
    assert.ok((await entry.batcher.enqueue(pixels, 'normal')).output, 'the other instance serves meanwhile');
    // Two failed starts (backoff 20, 40 ms), then the third works.
    await waitFor('the replacement', async () => (entry.reason === undefined && runners.length === 3 ? true : undefined), 5000);
    assert.deepEqual(restarts, ['fake:1:stalled']);
    assert.ok(states.includes('READY: 1 of 2 instances being replaced after a stalled inference; 1 serving'));
    assert.ok(
      states.some((s) =>
        /^READY: 1 of 2 instances being replaced after a stalled inference \(restart attempt 2 failed: no memory left; retrying in 40 ms\); 1 serving$/.test(s),
      ),
      states.join('\n'),
    );
    assert.equal(states.at(-1), 'READY');
  } finally {
    FakeRunner.stuck = false;
    await repo.close();
    tmp.cleanup();
  }
});

test('the stall limit is inference_stall_ms or 20 × the p99 of the instance, whichever is larger; 0 turns it off', () => {
  const p99 = new P99Estimate();
  assert.equal(p99.value, undefined);
  for (let i = 1; i <= 100; i++) p99.add(i);
  assert.equal(p99.value, 99);
  assert.equal(stallLimitMs(1000, p99.value), 1980);
  assert.equal(stallLimitMs(10_000, p99.value), 10_000);
  assert.equal(stallLimitMs(10_000, undefined), 10_000);
  assert.equal(stallLimitMs(0, 5000), 0);
});
