// `sightline logs analyze` on a generated log whose every figure is known by
// construction (see test/helpers/log-generator.ts for the scenario).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { analyzeLogs, type AnalyzeOptions } from '../src/log-analysis/analyze.js';
import { fileSource, streamSource } from '../src/log-analysis/source.js';
import type { LogReport } from '../src/log-analysis/report.js';
import { parseTimeSpec } from '../src/log-analysis/duration.js';
import { formatText } from '../src/log-analysis/format-text.js';
import { generateLog, generateLogLines, generateLogWithMalformed } from './helpers/log-generator.js';
import { tempDir } from './helpers/fixtures.js';

const T = (hms: string) => `2024-05-01T${hms}Z`;

async function analyzeText(text: string | Buffer, options: AnalyzeOptions = {}): Promise<LogReport> {
  return analyzeLogs([streamSource('gen.log', Readable.from([Buffer.from(text)]))], options);
}

/** Every figure of the full generated log, whatever file layout carries it. */
function assertFullFigures(r: LogReport): void {
  assert.deepEqual(r.time_range, { first: T('07:59:59.000'), last: T('14:30:00.100'), duration_ms: 23_401_100 });
  assert.deepEqual(r.requests, { started: 100, total: 100, succeeded: 78, failed: 22, success_rate: 0.78 });
  // Durations are exactly 1..100 ms: nearest-rank p50 = rank 50, p95 = rank 95, p99 = rank 99.
  assert.deepEqual(r.latency_ms, { count: 100, mean: 50.5, p50: 50, p95: 95, p99: 99, max: 100, method: 'nearest-rank' });
  assert.deepEqual(r.by_line, [
    { line: 'line-1', requests: 34, failures: 8, ok: 24, ng: 2 },
    { line: 'line-2', requests: 33, failures: 5, ok: 20, ng: 7 },
    { line: 'line-3', requests: 32, failures: 8, ok: 22, ng: 2 },
    { line: 'none', requests: 1, failures: 1, ok: 0, ng: 0 },
  ]);
  assert.deepEqual(r.verdicts, { ok: 66, ng: 11 });
  assert.deepEqual(r.by_route, [
    { route: '/v1/detect', requests: 94, failures: 20 },
    { route: '/v1/jobs', requests: 5, failures: 1 },
    { route: 'unmatched', requests: 1, failures: 1 },
  ]);
  assert.deepEqual(r.by_label, [
    { label: 'scratch', count: 8 },
    { label: 'crack', count: 5 },
    { label: 'dent', count: 4 },
  ]);
  assert.deepEqual(r.errors.by_code, [
    { code: 'INTERNAL_ERROR', count: 12 },
    { code: 'INVALID_REQUEST', count: 3 },
    { code: 'OVERLOADED', count: 3 },
    { code: 'UNSUPPORTED_MEDIA_TYPE', count: 2 },
    { code: 'NOT_FOUND', count: 1 },
    { code: 'QUEUE_FULL', count: 1 },
  ]);
  assert.deepEqual(r.errors.by_status, [
    { status: 500, count: 12 },
    { status: 503, count: 4 },
    { status: 400, count: 3 },
    { status: 415, count: 2 },
    { status: 404, count: 1 },
  ]);
  // 13:00 (3) and 14:00 (2) fall out of the top 5.
  assert.deepEqual(r.busiest_hours, [
    { hour: T('09:00:00.000'), requests: 40 },
    { hour: T('10:00:00.000'), requests: 25 },
    { hour: T('12:00:00.000'), requests: 15 },
    { hour: T('08:00:00.000'), requests: 10 },
    { hour: T('11:00:00.000'), requests: 5 },
  ]);
  assert.deepEqual(
    r.slowest.map((s) => s.request_id),
    ['req-0099', 'req-0098', 'req-0097', 'req-0096', 'req-0095', 'req-0094', 'req-0093', 'req-0092', 'req-0091', 'req-0090'],
  );
  assert.deepEqual(r.slowest[0], { request_id: 'req-0099', route: '/v1/detect', line: 'line-1', status: 200, duration_ms: 100, time: T('14:30:00.100') });
  assert.deepEqual(r.slowest[1], { request_id: 'req-0098', route: 'unmatched', line: 'none', status: 404, duration_ms: 99, time: T('14:00:00.099') });
  assert.deepEqual(r.jobs, { enqueued: 4, replayed: 0, done: 3, dead: 1, duplicates: 1 });
  // The burst: 12 failures 10 s apart from 09:30:00 (+ duration 11..22 ms); windows anchored at
  // the 1st, 2nd and 3rd hold 12, 11 and 10 (≥ 10) and merge into one finding.
  assert.deepEqual(r.anomalies.findings, [
    {
      rule: 'errors',
      window_start: T('09:30:00.011'),
      window_end: T('09:35:00.011'),
      observed: 12,
      threshold: 10,
      message: '12 failed requests within 5m (threshold 10)',
      span_start: T('09:30:00.011'),
      span_end: T('09:35:20.013'),
      windows: 3,
    },
  ]);
  assert.deepEqual(r.event_counts, {
    detection_result: 74,
    job_dead: 1,
    job_done: 4,
    job_enqueued: 4,
    request_failure: 22,
    request_start: 100,
    request_success: 78,
    server_listening: 1,
  });
}

describe('logs analyze: known answers', () => {
  test('the generated log, Sightline format (ISO time, level labels)', async () => {
    const r = await analyzeText(generateLog('iso'));
    assertFullFigures(r);
    assert.deepEqual(r.input, { lines: 284, blank: 0, events: 284, malformed: 0, outside_range: 0 });
    assert.deepEqual(r.malformed_lines, { count: 0, examples: [] });
    assert.deepEqual(r.sources, [{ name: 'gen.log', gzip: false, lines: 284, malformed: 0 }]);
    assert.deepEqual(r.filter, { since: null, until: null });
  });

  test('pino defaults (epoch-ms time, numeric level) give the same figures', async () => {
    assertFullFigures(await analyzeText(generateLog('epoch')));
  });

  test('a gzipped copy, detected by magic bytes whatever the name', async () => {
    const tmp = tempDir();
    try {
      // No .gz in the name: the content decides.
      const path = join(tmp.dir, 'app.log');
      writeFileSync(path, gzipSync(generateLog()));
      const r = await analyzeLogs([fileSource(path)]);
      assertFullFigures(r);
      assert.deepEqual(r.sources, [{ name: path, gzip: true, lines: 284, malformed: 0 }]);
    } finally {
      tmp.cleanup();
    }
  });

  test('a rotated set: x.log.1.gz (older) and x.log (newer), in either order', async () => {
    const tmp = tempDir();
    try {
      const lines = generateLogLines();
      const older = join(tmp.dir, 'x.log.1.gz');
      const newer = join(tmp.dir, 'x.log');
      writeFileSync(older, gzipSync(lines.slice(0, 150).join('\n') + '\n'));
      writeFileSync(newer, lines.slice(150).join('\n') + '\n');
      for (const order of [
        [newer, older],
        [older, newer],
      ]) {
        const r = await analyzeLogs(order.map(fileSource));
        assertFullFigures(r);
        assert.deepEqual(r.input, { lines: 284, blank: 0, events: 284, malformed: 0, outside_range: 0 });
        const byName = Object.fromEntries(r.sources.map((s) => [s.name, s]));
        assert.deepEqual(byName[older], { name: older, gzip: true, lines: 150, malformed: 0 });
        assert.deepEqual(byName[newer], { name: newer, gzip: false, lines: 134, malformed: 0 });
      }
    } finally {
      tmp.cleanup();
    }
  });

  test('malformed lines are counted exactly, quoted with their line numbers, and change no figure', async () => {
    for (const format of ['iso', 'epoch'] as const) {
      const text = generateLogWithMalformed(format);
      const r = await analyzeText(text);
      assertFullFigures(r);
      assert.deepEqual(r.input, { lines: 290, blank: 1, events: 284, malformed: 5, outside_range: 0 });
      assert.deepEqual(
        r.malformed_lines.examples.map((e) => [e.line, e.reason]),
        [
          [11, 'invalid JSON'],
          [52, 'no time'],
          [103, 'bad time'],
          [154, 'not an object'],
          [290, 'invalid JSON'], // the truncated last line
        ],
      );
      assert.equal(r.malformed_lines.count, 5);
      assert.equal(r.malformed_lines.examples[0]!.text, 'not json at all');
      assert.equal(r.malformed_lines.examples[0]!.source, 'gen.log');
      // Gzipped, the same.
      const gz = await analyzeText(gzipSync(text));
      assert.deepEqual(gz.input, r.input);
      assert.deepEqual(gz.malformed_lines, r.malformed_lines);
    }
  });

  test('only the first examples are quoted; the count stays exact', async () => {
    const text = Array.from({ length: 25 }, (_, i) => `garbage ${i}`).join('\n') + '\n' + generateLog();
    const r = await analyzeText(text, { malformedExamples: 3 });
    assert.equal(r.malformed_lines.count, 25);
    assert.deepEqual(
      r.malformed_lines.examples.map((e) => e.line),
      [1, 2, 3],
    );
    assertFullFigures(r);
  });

  test('--since (inclusive) and --until (exclusive) keep 10:00 to 12:00', async () => {
    const r = await analyzeText(generateLog(), { since: Date.parse(T('10:00:00')), until: Date.parse(T('12:00:00')) });
    assert.deepEqual(r.filter, { since: T('10:00:00.000'), until: T('12:00:00.000') });
    // idx 50..79: the request_start of idx 50 lies exactly on --since (kept), that of idx 80 exactly on --until (left out).
    assert.deepEqual(r.input, { lines: 284, blank: 0, events: 89, malformed: 0, outside_range: 195 });
    assert.deepEqual(r.time_range, { first: T('10:00:00.000'), last: T('11:48:30.080'), duration_ms: 6_510_080 });
    assert.deepEqual(r.requests, { started: 30, total: 30, succeeded: 24, failed: 6, success_rate: 0.8 });
    // Durations 51..80: mean 65.5; n = 30 → ranks 15, 29 (⌈28.5⌉), 30 (⌈29.7⌉).
    assert.deepEqual(r.latency_ms, { count: 30, mean: 65.5, p50: 65, p95: 79, p99: 80, max: 80, method: 'nearest-rank' });
    assert.deepEqual(r.busiest_hours, [
      { hour: T('10:00:00.000'), requests: 25 },
      { hour: T('11:00:00.000'), requests: 5 },
    ]);
    assert.deepEqual(r.jobs, { enqueued: 4, replayed: 0, done: 3, dead: 1, duplicates: 1 });
    assert.deepEqual(r.errors.by_code, [
      { code: 'OVERLOADED', count: 3 },
      { code: 'INVALID_REQUEST', count: 1 },
      { code: 'QUEUE_FULL', count: 1 },
      { code: 'UNSUPPORTED_MEDIA_TYPE', count: 1 },
    ]);
    // ng idx 62 ['scratch'] and 70 ['dent', 'crack'] lie inside.
    assert.deepEqual(r.by_label, [
      { label: 'crack', count: 1 },
      { label: 'dent', count: 1 },
      { label: 'scratch', count: 1 },
    ]);
    assert.deepEqual(r.anomalies.findings, []);
    assert.deepEqual(r.slowest.map((s) => s.request_id).slice(0, 3), ['req-0079', 'req-0078', 'req-0077']);
  });

  test('relative --since/--until are measured back from now', async () => {
    const now = Date.parse(T('12:00:00'));
    const since = parseTimeSpec('2h', now);
    const until = parseTimeSpec('0s', now);
    assert.equal(since, Date.parse(T('10:00:00')));
    const relative = await analyzeText(generateLog(), { since, until });
    const absolute = await analyzeText(generateLog(), { since: Date.parse(T('10:00:00')), until: now });
    assert.deepEqual(relative, absolute);
  });

  test('--top N lists the N slowest; --top 0 none', async () => {
    const r3 = await analyzeText(generateLog(), { top: 3 });
    assert.deepEqual(
      r3.slowest.map((s) => s.duration_ms),
      [100, 99, 98],
    );
    const r0 = await analyzeText(generateLog(), { top: 0 });
    assert.deepEqual(r0.slowest, []);
  });
});

describe('logs analyze: anomaly rules on the generated log', () => {
  test('saturation: 3 OVERLOADED + 1 QUEUE_FULL at 10:00–10:07 give one finding at threshold 3', async () => {
    const r = await analyzeText(generateLog(), { anomalies: { saturation_threshold: 3 } });
    // Windows at 10:00:00.051 (3 refusals) and 10:02:24.052 (3) breach and merge; 10:04:48.053 holds 2.
    assert.deepEqual(
      r.anomalies.findings.map((f) => f.rule),
      ['errors', 'saturation'],
    );
    assert.deepEqual(r.anomalies.findings[1], {
      rule: 'saturation',
      window_start: T('10:00:00.051'),
      window_end: T('10:05:00.051'),
      observed: 3,
      threshold: 3,
      message: '3 requests refused as OVERLOADED/QUEUE_FULL within 5m (threshold 3)',
      span_start: T('10:00:00.051'),
      span_end: T('10:07:24.052'),
      windows: 2,
    });
    assert.equal(r.anomalies.settings.saturation_threshold, 3);
  });

  test('slow_requests: > 90 ms, 3 in a 10m window', async () => {
    const r = await analyzeText(generateLog(), { anomalies: { window_ms: 600_000, slow_ms: 90, slow_threshold: 3 } });
    // Slow: idx 90..99 (91..100 ms), 4 min apart from 12:40 to 13:00, then 20–30 min apart.
    // Windows at idx 90, 91, 92, 93 hold 3 each; at 94 only 2.
    assert.deepEqual(r.anomalies.findings, [
      {
        rule: 'errors',
        window_start: T('09:30:00.011'),
        window_end: T('09:40:00.011'),
        observed: 12,
        threshold: 10,
        message: '12 failed requests within 10m (threshold 10)',
        span_start: T('09:30:00.011'),
        span_end: T('09:40:20.013'),
        windows: 3,
      },
      {
        rule: 'slow_requests',
        window_start: T('12:40:00.091'),
        window_end: T('12:50:00.091'),
        observed: 3,
        threshold: 3,
        message: '3 requests slower than 90 ms within 10m (threshold 3)',
        span_start: T('12:40:00.091'),
        span_end: T('13:02:00.094'),
        windows: 4,
      },
    ]);
  });

  test('p95_latency: windows of 10m with ≥ 3 requests whose p95 is above 93 ms', async () => {
    const r = await analyzeText(generateLog(), { anomalies: { window_ms: 600_000, p95_ms: 93, p95_min_samples: 3 } });
    // Anchored at idx 91 {92,93,94 ms} → 94, idx 92 {93,94,95} → 95, idx 93 {94,95,96} → 96; idx 90 gives 93 (not above).
    const p95 = r.anomalies.findings.filter((f) => f.rule === 'p95_latency');
    assert.deepEqual(p95, [
      {
        rule: 'p95_latency',
        window_start: T('12:52:00.094'),
        window_end: T('13:02:00.094'),
        observed: 96,
        threshold: 93,
        message: 'p95 latency 96 ms over 10m is above 93 ms',
        span_start: T('12:44:00.092'),
        span_end: T('13:02:00.094'),
        windows: 3,
      },
    ]);
    assert.deepEqual(
      r.anomalies.findings.map((f) => f.rule),
      ['errors', 'p95_latency'],
    );
  });

  test('a threshold of 0 turns a rule off; a higher one silences the burst', async () => {
    assert.deepEqual((await analyzeText(generateLog(), { anomalies: { error_threshold: 0 } })).anomalies.findings, []);
    assert.deepEqual((await analyzeText(generateLog(), { anomalies: { error_threshold: 13 } })).anomalies.findings, []);
    const at12 = (await analyzeText(generateLog(), { anomalies: { error_threshold: 12 } })).anomalies.findings;
    assert.equal(at12.length, 1);
    assert.equal(at12[0]!.windows, 1);
    assert.equal(at12[0]!.span_end, T('09:35:00.011'));
  });

  test('default settings are reported with the findings', async () => {
    const r = await analyzeText(generateLog());
    assert.deepEqual(r.anomalies.settings, {
      window: '5m',
      window_ms: 300_000,
      error_threshold: 10,
      slow_ms: 1000,
      slow_threshold: 10,
      p95_ms: 500,
      p95_min_samples: 20,
      saturation_threshold: 5,
    });
  });
});

describe('logs analyze: JSON shape', () => {
  test('top-level keys, in order', async () => {
    const r = JSON.parse(JSON.stringify(await analyzeText(generateLog())));
    assert.deepEqual(Object.keys(r), [
      'report_version',
      'sources',
      'filter',
      'time_range',
      'input',
      'malformed_lines',
      'requests',
      'latency_ms',
      'by_route',
      'by_line',
      'verdicts',
      'by_label',
      'errors',
      'busiest_hours',
      'slowest',
      'jobs',
      'anomalies',
      'event_counts',
    ]);
    assert.equal(r.report_version, 2);
  });

  test('an empty input gives nulls, not NaN', async () => {
    const r = await analyzeText('');
    assert.deepEqual(r.requests, { started: 0, total: 0, succeeded: 0, failed: 0, success_rate: null });
    assert.deepEqual(r.latency_ms, { count: 0, mean: null, p50: null, p95: null, p99: null, max: null, method: 'nearest-rank' });
    assert.deepEqual(r.time_range, { first: null, last: null, duration_ms: null });
    assert.deepEqual(r.anomalies.findings, []);
  });
});

describe('logs analyze: replays and failures without a code (issue 12)', () => {
  const at = (s: number) => new Date(Date.parse(T('10:00:00')) + s * 1000).toISOString();
  const lines = (records: Record<string, unknown>[]) => records.map((r) => JSON.stringify({ level: 'info', ...r })).join('\n') + '\n';

  test('idempotent replays were counted as enqueued jobs: they are counted as replayed', async () => {
    // What POST /v1/jobs logs: a new job, then the same Idempotency-Key twice (answered with that job).
    const r = await analyzeText(
      lines([
        { time: at(0), event: 'job_enqueued', job_id: 'job-1', line: 'l1', duplicate: false },
        { time: at(1), event: 'job_enqueued', job_id: 'job-1', line: 'l1', duplicate: true },
        { time: at(2), event: 'job_enqueued', job_id: 'job-1', line: 'l1', duplicate: true },
        { time: at(3), event: 'job_enqueued', job_id: 'job-2', line: 'l1' },
        { time: at(4), event: 'job_done', job_id: 'job-1', line: 'l1', verdict: 'ok', duplicate: false },
      ]),
    );
    assert.deepEqual(r.jobs, { enqueued: 2, replayed: 2, done: 1, dead: 0, duplicates: 0 });
    assert.equal(r.event_counts.job_enqueued, 4);
    assert.match(formatText(r), /enqueued 2 {3}replayed 2 {3}done 1 {3}dead 0 {3}duplicate deliveries 0/);
    const json = JSON.parse(JSON.stringify(r));
    assert.deepEqual(Object.keys(json.jobs), ['enqueued', 'replayed', 'done', 'dead', 'duplicates']);
  });

  test('a failure logged without error_code was filed under "unknown": it is filed under http_<status>', async () => {
    const r = await analyzeText(
      lines([
        // A plain GET /v1/stream as older servers logged it: 426 and no error_code.
        { time: at(0), event: 'request_failure', route: '/v1/stream', status: 426, duration_ms: 1 },
        { time: at(1), event: 'request_failure', route: '/v1/stream', status: 426, duration_ms: 1 },
        { time: at(2), event: 'request_failure', route: '/v1/stream', status: 426, duration_ms: 1, error_code: 'INVALID_REQUEST' },
        { time: at(3), event: 'request_failure', route: '/v1/detect', status: 500, duration_ms: 1, error_code: 'INTERNAL_ERROR' },
        // Neither code nor status: nothing better than unknown.
        { time: at(4), event: 'request_failure', route: '/v1/detect', duration_ms: 1 },
      ]),
    );
    assert.deepEqual(r.errors.by_code, [
      { code: 'http_426', count: 2 },
      { code: 'INTERNAL_ERROR', count: 1 },
      { code: 'INVALID_REQUEST', count: 1 },
      { code: 'unknown', count: 1 },
    ]);
    assert.deepEqual(r.errors.by_status, [
      { status: 426, count: 3 },
      { status: 500, count: 1 },
    ]);
    assert.match(formatText(r), /http_426\s+2/);
  });
});
