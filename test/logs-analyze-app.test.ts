// `logs analyze` on a real log: the app in-process, its pino logger writing to a file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { defaultConfig } from '../src/config/load.js';
import { buildApp } from '../src/server/app.js';
import { createLogger } from '../src/logger.js';
import { analyzeLogs } from '../src/log-analysis/analyze.js';
import { fileSource } from '../src/log-analysis/source.js';
import { solidImage, tempDir, writeDecoderModels } from './helpers/fixtures.js';

test('a log written by the server is read back with the counts of what was sent', async () => {
  const tmp = tempDir();
  try {
    const models = join(tmp.dir, 'models');
    writeDecoderModels(models);
    const logPath = join(tmp.dir, 'sightline.log');
    const destination = pino.destination({ dest: logPath, sync: true });
    const config = defaultConfig({
      log_level: 'info',
      intra_op_threads: 1,
      store_url: 'sqlite::memory:',
      queue_url: 'sqlite::memory:',
      models_dir: models,
      default_model: 'v8',
    });
    const app = await buildApp(config, { logger: createLogger('info', destination), waitForModels: true });
    const image = await solidImage(1280, 720, 'jpeg');
    try {
      for (let i = 0; i < 3; i++) {
        const res = await app.inject({ method: 'POST', url: '/v1/detect?line=line-7', headers: { 'content-type': 'image/jpeg' }, payload: image });
        assert.equal(res.statusCode, 200, res.body);
      }
      const other = await app.inject({
        method: 'POST',
        url: '/v1/detect?line=line-8',
        headers: { 'content-type': 'image/png' },
        payload: await solidImage(600, 900, 'png'),
      });
      assert.equal(other.statusCode, 200, other.body);
      const badType = await app.inject({ method: 'POST', url: '/v1/detect?line=line-7', headers: { 'content-type': 'text/plain' }, payload: 'hello' });
      assert.equal(badType.statusCode, 415, badType.body);
      const missing = await app.inject({ method: 'GET', url: '/v1/nope' });
      assert.equal(missing.statusCode, 404);
      assert.equal((await app.inject({ method: 'GET', url: '/livez' })).statusCode, 200);
    } finally {
      await app.close();
      destination.flushSync();
      destination.end();
    }

    const r = await analyzeLogs([fileSource(logPath)]);
    assert.equal(r.malformed_lines.count, 0);
    assert.deepEqual(r.requests, { started: 7, total: 7, succeeded: 5, failed: 2, success_rate: 0.714286 });
    assert.equal(r.latency_ms.count, 7);
    assert.ok(r.latency_ms.max! > 0 && r.latency_ms.p50! <= r.latency_ms.p95! && r.latency_ms.p95! <= r.latency_ms.max!);
    // The constant model finds scratch, dent and crack on 1280×720 (ng), scratch and dent on 600×900 (ng).
    assert.deepEqual(r.by_label, [
      { label: 'dent', count: 4 },
      { label: 'scratch', count: 4 },
      { label: 'crack', count: 3 },
    ]);
    assert.deepEqual(r.verdicts, { ok: 0, ng: 4 });
    const lines = Object.fromEntries(r.by_line.map((l) => [l.line, l]));
    assert.deepEqual(lines['line-7'], { line: 'line-7', requests: 4, failures: 1, ok: 0, ng: 3 });
    assert.deepEqual(lines['line-8'], { line: 'line-8', requests: 1, failures: 0, ok: 0, ng: 1 });
    assert.deepEqual(r.errors.by_code, [
      { code: 'NOT_FOUND', count: 1 },
      { code: 'UNSUPPORTED_MEDIA_TYPE', count: 1 },
    ]);
    assert.deepEqual(r.errors.by_status, [
      { status: 404, count: 1 },
      { status: 415, count: 1 },
    ]);
    const routes = Object.fromEntries(r.by_route.map((x) => [x.route, x.requests]));
    assert.equal(routes['/v1/detect'], 5);
    assert.equal(r.slowest.length, 7);
    assert.ok(r.slowest.every((s) => typeof s.request_id === 'string' && s.request_id.length > 0));
    assert.equal(
      r.busiest_hours.reduce((n, h) => n + h.requests, 0),
      7,
    );
    assert.deepEqual(r.anomalies.findings, []);
    assert.ok(r.time_range.first !== null && r.time_range.first <= r.time_range.last!);
    assert.equal(r.event_counts.detection_result, 4);
  } finally {
    tmp.cleanup();
  }
});

test('a log written by the server: idempotent replays are replayed, not enqueued, and a plain GET /v1/stream (426) has a code', async () => {
  const tmp = tempDir();
  try {
    const models = join(tmp.dir, 'models');
    writeDecoderModels(models);
    const logPath = join(tmp.dir, 'sightline.log');
    const destination = pino.destination({ dest: logPath, sync: true });
    const config = defaultConfig({
      log_level: 'info',
      intra_op_threads: 1,
      store_url: 'sqlite::memory:',
      queue_url: 'sqlite::memory:',
      models_dir: models,
      default_model: 'v8',
    });
    const app = await buildApp(config, { logger: createLogger('info', destination), waitForModels: true });
    const image = await solidImage(320, 240, 'jpeg');
    try {
      const submit = (key: string) =>
        app.inject({ method: 'POST', url: '/v1/jobs?line=line-3', headers: { 'content-type': 'image/jpeg', 'idempotency-key': key }, payload: image });
      const first = await submit('order-1');
      assert.equal(first.statusCode, 202, first.body);
      assert.equal(first.json().duplicate, false);
      for (let i = 0; i < 2; i++) {
        const replay = await submit('order-1');
        assert.equal(replay.statusCode, 202, replay.body);
        assert.deepEqual([replay.json().job_id, replay.json().duplicate], [first.json().job_id, true]);
      }
      assert.equal((await submit('order-2')).statusCode, 202);
      const plain = await app.inject({ method: 'GET', url: '/v1/stream' });
      assert.equal(plain.statusCode, 426);
    } finally {
      await app.close();
      destination.flushSync();
      destination.end();
    }

    const r = await analyzeLogs([fileSource(logPath)]);
    assert.equal(r.malformed_lines.count, 0);
    assert.equal(r.event_counts.job_enqueued, 4);
    assert.equal(r.jobs.enqueued, 2, 'two jobs were made');
    assert.equal(r.jobs.replayed, 2, 'two requests were answered with the first job');
    // The server logs the code it answers the 426 with.
    assert.deepEqual(r.errors.by_code, [{ code: 'INVALID_REQUEST', count: 1 }]);
    assert.deepEqual(r.errors.by_status, [{ status: 426, count: 1 }]);
    assert.deepEqual(
      r.by_route.find((x) => x.route === '/v1/stream'),
      { route: '/v1/stream', requests: 1, failures: 1 },
    );
  } finally {
    tmp.cleanup();
  }
});
