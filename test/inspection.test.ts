import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { defaultConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { createMetrics, type Metrics } from '../src/metrics/metrics.js';
import { ModelRepository } from '../src/inference/repository.js';
import { repositoryOptions } from '../src/inference/from-config.js';
import { createSqliteStore, type ResultStore } from '../src/store/index.js';
import { ALL_LINES, InProcessEventBus, type SightlineEvent } from '../src/events/index.js';
import { inspect, type Inspection, type InspectionDeps } from '../src/inspection/inspect.js';
import { LogCapture, solidImage, tempDir, writeDecoderModels } from './helpers/fixtures.js';

// The one inspection path (src/inspection/inspect.ts) against real back ends: ONNX
// models, a SQLite result store, the in-process event bus, a Prometheus registry.

const repo = tempDir('sightline-inspection-');
const config = defaultConfig({ models_dir: repo.dir, default_model: 'v8', intra_op_threads: 1 });
let models: ModelRepository;
let image: Buffer;

before(async () => {
  writeDecoderModels(repo.dir);
  models = new ModelRepository(repositoryOptions(config, createLogger('silent')));
  await models.loadAll();
  image = await solidImage(320, 240, 'png');
});

after(async () => {
  await models.close();
  repo.cleanup();
});

interface Rig {
  deps: InspectionDeps;
  metrics: Metrics;
  store: ResultStore;
  events: SightlineEvent[];
  logs: LogCapture;
  logger: ReturnType<typeof createLogger>;
  close: () => Promise<void>;
}

async function rig(store: ResultStore, overrides: Partial<typeof config> = {}): Promise<Rig> {
  const metrics = createMetrics();
  const bus = new InProcessEventBus();
  const events: SightlineEvent[] = [];
  await bus.subscribe(ALL_LINES, (event) => events.push(event));
  const logs = new LogCapture();
  const logger = createLogger('info', logs);
  return {
    deps: { config: { ...config, ...overrides }, models, metrics, store, events: bus },
    metrics,
    store,
    events,
    logs,
    logger,
    close: async () => {
      await bus.close();
      await store.close();
    },
  };
}

function inspection(r: Rig, fields: Partial<Inspection> & Pick<Inspection, 'source' | 'requestId'>): Inspection {
  return { line: 'press-1', image, options: {}, logger: r.logger, ...fields };
}

/** The sum of a counter's series that carry these labels. */
async function counter(metric: { get(): Promise<{ values: { labels: object; value: number }[] }> }, labels: Record<string, string>): Promise<number> {
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)).reduce((sum, v) => sum + v.value, 0);
}

async function until<T>(probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await delay(10);
  }
  throw new Error('condition not met in 2 s');
}

test('a sync result is returned, stored, published, counted and logged once', async () => {
  const dir = tempDir();
  const r = await rig(createSqliteStore(join(dir.dir, 'results.db')));
  try {
    const { result, stored } = await inspect(r.deps, inspection(r, { source: 'sync', requestId: 'sync-1' }));
    assert.equal(result.request_id, 'sync-1');
    assert.equal(result.line, 'press-1');
    assert.deepEqual(result.model, { name: 'v8', version: '1' });
    assert.ok(result.detections.length > 0);
    assert.equal(stored, undefined, 'a sync result is stored in the background');

    const row = await until(() => r.store.get('sync-1'));
    assert.equal(row.source, 'sync');
    assert.equal(row.verdict, result.verdict);
    assert.equal(row.detections.length, result.detections.length);

    assert.equal(r.events.length, 1);
    assert.equal(r.events[0]!.type, 'result');
    assert.deepEqual(r.events[0], { ...r.events[0], source: 'sync', line: 'press-1', result });

    assert.equal(await counter(r.metrics.verdicts, { line: 'press-1', verdict: result.verdict }), 1);
    assert.equal(await counter(r.metrics.detections, { line: 'press-1' }), result.detections.length);
    const { values: stages } = await r.metrics.stageDuration.get();
    assert.ok(stages.some((v) => v.labels.model === 'v8' && v.labels.stage === 'infer' && (v.metricName ?? '').endsWith('_count') && v.value === 1));

    const logged = r.logs.lines.filter((l) => l.event === 'detection_result');
    assert.equal(logged.length, 1);
    assert.equal(logged[0]!.verdict, result.verdict);
    assert.deepEqual(
      logged[0]!.labels,
      result.detections.map((d) => d.label),
    );
  } finally {
    await r.close();
    dir.cleanup();
  }
});

test('a stream result is stored with source "stream" and logged with its frame id and duration', async () => {
  const dir = tempDir();
  const r = await rig(createSqliteStore(join(dir.dir, 'results.db')));
  try {
    const { result } = await inspect(r.deps, inspection(r, { source: 'stream', requestId: 'frame-req-1', logFields: { frame_id: 'f1' } }));
    const row = await until(() => r.store.get('frame-req-1'));
    assert.equal(row.source, 'stream');
    assert.equal(r.events.length, 1);
    assert.equal((r.events[0] as { source: string }).source, 'stream');
    const logged = r.logs.lines.filter((l) => l.event === 'detection_result');
    assert.equal(logged.length, 1);
    assert.equal(logged[0]!.frame_id, 'f1');
    assert.equal(logged[0]!.duration_ms, result.timings_ms.total);
  } finally {
    await r.close();
    dir.cleanup();
  }
});

test('with store_sync_results off a sync result is published but not stored', async () => {
  const dir = tempDir();
  const r = await rig(createSqliteStore(join(dir.dir, 'results.db')), { store_sync_results: false });
  try {
    await inspect(r.deps, inspection(r, { source: 'sync', requestId: 'unstored-1' }));
    assert.equal(r.events.length, 1);
    await delay(50);
    assert.equal(await r.store.get('unstored-1'), undefined);
  } finally {
    await r.close();
    dir.cleanup();
  }
});

test('a redelivered job stores and publishes nothing new and is logged as a duplicate', async () => {
  const dir = tempDir();
  const r = await rig(createSqliteStore(join(dir.dir, 'results.db')));
  try {
    const first = await inspect(
      r.deps,
      inspection(r, { source: 'job', requestId: 'job-1', logger: r.logger.child({ job_id: 'job-1' }), logFields: { attempt: 1 } }),
    );
    assert.equal(first.stored, true);
    assert.equal((await r.store.get('job-1'))?.source, 'job', 'a job result is stored before inspect returns');
    assert.equal(r.events.length, 1);
    assert.equal((r.events[0] as { source: string }).source, 'job');

    const again = await inspect(
      r.deps,
      inspection(r, { source: 'job', requestId: 'job-1', logger: r.logger.child({ job_id: 'job-1' }), logFields: { attempt: 2 } }),
    );
    assert.equal(again.stored, false);
    assert.equal(r.events.length, 1, 'the redelivery announces nothing');
    assert.equal((await r.store.list({ line: 'press-1' })).results.length, 1);

    const done = r.logs.lines.filter((l) => l.event === 'job_done');
    assert.deepEqual(
      done.map((l) => [l.job_id, l.attempt, l.duplicate]),
      [
        ['job-1', 1, false],
        ['job-1', 2, true],
      ],
    );
    assert.equal(r.logs.lines.filter((l) => l.event === 'detection_result').length, 0, 'a job logs job_done only');
  } finally {
    await r.close();
    dir.cleanup();
  }
});

/** A real SQLite store that cannot open its file: its directory would have to be inside a regular file. */
function brokenStore(dir: string): ResultStore {
  const blocker = join(dir, 'not-a-directory');
  writeFileSync(blocker, '');
  return createSqliteStore(join(blocker, 'results.db'));
}

test('a sync store failure is logged and counted, and the result is still returned and published', async () => {
  const dir = tempDir();
  const r = await rig(brokenStore(dir.dir));
  try {
    const { result } = await inspect(r.deps, inspection(r, { source: 'sync', requestId: 'sync-fail-1' }));
    assert.equal(result.request_id, 'sync-fail-1');
    assert.equal(r.events.length, 1);
    await until(async () => ((await counter(r.metrics.rejected, { reason: 'store_write_failed' })) === 1 ? true : undefined));
    assert.equal(r.logs.lines.filter((l) => l.event === 'result_store_failed').length, 1);
    assert.equal(await counter(r.metrics.verdicts, { line: 'press-1' }), 1);
  } finally {
    await r.close();
    dir.cleanup();
  }
});

test('a job whose result cannot be stored fails, so the queue retries it, and announces nothing', async () => {
  const dir = tempDir();
  const r = await rig(brokenStore(dir.dir));
  try {
    await assert.rejects(inspect(r.deps, inspection(r, { source: 'job', requestId: 'job-fail-1' })));
    assert.equal(r.events.length, 0);
    assert.equal(await counter(r.metrics.verdicts, { line: 'press-1' }), 0);
    assert.equal(await counter(r.metrics.rejected, { reason: 'store_write_failed' }), 0);
    assert.equal(r.logs.lines.filter((l) => l.event === 'job_done').length, 0);
  } finally {
    await r.close();
    dir.cleanup();
  }
});
