// The pieces of `sightline logs analyze`: durations, percentiles, window rules, sources.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { formatDuration, parseDuration, parseTimeSpec } from '../src/log-analysis/duration.js';
import { nearestRank, OrderStatistics, percentileSorted, summarizeLatency } from '../src/log-analysis/percentile.js';
import { countBreaches, detectAnomalies, DEFAULT_ANOMALY_SETTINGS, mergeBreaches, p95Breaches } from '../src/log-analysis/anomalies.js';
import { parseLine } from '../src/log-analysis/parse.js';
import { fileSource, LogSourceError, readLines, streamSource } from '../src/log-analysis/source.js';
import { table } from '../src/log-analysis/format-text.js';
import { tempDir } from './helpers/fixtures.js';

describe('durations and time specs', () => {
  test('parseDuration', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('2h'), 7_200_000);
    assert.equal(parseDuration('1d'), 86_400_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1.5s'), 1500);
    for (const bad of ['5', '', 'm', '5 minutes', '-5m', '5x', '2024-05-01']) assert.equal(parseDuration(bad), undefined, bad);
  });

  test('formatDuration', () => {
    assert.equal(formatDuration(300_000), '5m');
    assert.equal(formatDuration(5_400_000), '1h30m');
    assert.equal(formatDuration(1500), '1s500ms');
    assert.equal(formatDuration(0), '0s');
  });

  test('parseTimeSpec: ISO (no zone = UTC), date only, offsets, relative', () => {
    const now = Date.parse('2024-05-01T12:00:00Z');
    assert.equal(parseTimeSpec('2024-05-01T10:00:00Z', now), Date.parse('2024-05-01T10:00:00Z'));
    assert.equal(parseTimeSpec('2024-05-01T10:00:00', now), Date.parse('2024-05-01T10:00:00Z'));
    assert.equal(parseTimeSpec('2024-05-01T10:00', now), Date.parse('2024-05-01T10:00:00Z'));
    assert.equal(parseTimeSpec('2024-05-01T12:00:00+02:00', now), Date.parse('2024-05-01T10:00:00Z'));
    assert.equal(parseTimeSpec('2024-05-01', now), Date.parse('2024-05-01T00:00:00Z'));
    assert.equal(parseTimeSpec('2h', now), Date.parse('2024-05-01T10:00:00Z'));
    assert.equal(parseTimeSpec('30m', now), Date.parse('2024-05-01T11:30:00Z'));
    for (const bad of ['yesterday', '2h ago', '12', '2024-13-45T99:00:00Z']) assert.equal(parseTimeSpec(bad, now), undefined, bad);
  });
});

describe('nearest-rank percentiles', () => {
  test('rank ⌈p·n/100⌉', () => {
    assert.equal(nearestRank(100, 95), 95);
    assert.equal(nearestRank(20, 95), 19);
    assert.equal(nearestRank(30, 95), 29);
    assert.equal(nearestRank(30, 99), 30);
    assert.equal(nearestRank(1, 50), 1);
    assert.equal(nearestRank(3, 50), 2);
    assert.equal(nearestRank(4, 50), 2);
    assert.throws(() => nearestRank(10, 0));
  });

  test('values, not interpolations', () => {
    const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20];
    assert.equal(percentileSorted(sorted, 95), 19);
    assert.equal(percentileSorted(sorted, 99), 20);
    assert.equal(percentileSorted(sorted, 50), 10);
    assert.equal(percentileSorted([], 50), undefined);
    assert.deepEqual(summarizeLatency([3, 1, 2.5]), { count: 3, mean: 2.167, p50: 2.5, p95: 3, p99: 3, max: 3 });
  });

  test('OrderStatistics agrees with sorting on a sliding window', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const values = Array.from({ length: 400 }, () => Math.round(rand() * 50) / 2);
    const held = new OrderStatistics(values);
    const width = 37;
    for (let i = 0; i < values.length; i++) {
      held.add(values[i]!);
      if (i >= width) held.remove(values[i - width]!);
      const window = values.slice(Math.max(0, i - width + 1), i + 1).sort((a, b) => a - b);
      for (const p of [50, 95, 99]) assert.equal(held.percentile(p), percentileSorted(window, p));
    }
  });
});

describe('window rules', () => {
  test('count windows are half-open and anchored at events', () => {
    // Window 10: [0,10) holds 0, 5, 9; [5,15) holds 5, 9, 10 (10 < 15), [9,19) holds 9, 10; [10,20) holds 10, 20? no.
    assert.deepEqual(countBreaches([0, 5, 9, 10, 20], 10, 3), [
      { start: 0, value: 3 },
      { start: 5, value: 3 },
    ]);
    assert.deepEqual(countBreaches([0, 10], 10, 2), []);
  });

  test('breaches merge while their windows overlap or touch', () => {
    const episodes = mergeBreaches(
      [
        { start: 0, value: 3 },
        { start: 10, value: 4 },
        { start: 25, value: 3 },
      ],
      10,
    );
    assert.deepEqual(episodes, [
      { start: 0, end: 20, peakStart: 10, peak: 4, windows: 2 },
      { start: 25, end: 35, peakStart: 25, peak: 3, windows: 1 },
    ]);
  });

  test('p95 windows need the minimum number of samples', () => {
    const times = [0, 1, 2, 3, 100];
    const values = [10, 10, 10, 90, 95];
    assert.deepEqual(p95Breaches(times, values, 10, 50, 4), [{ start: 0, value: 90 }]);
    assert.deepEqual(p95Breaches(times, values, 10, 50, 1), [
      { start: 0, value: 90 },
      { start: 1, value: 90 },
      { start: 2, value: 90 },
      { start: 3, value: 90 },
      { start: 100, value: 95 },
    ]);
  });

  test('two separate bursts are two findings', () => {
    const minute = 60_000;
    const times = [...Array.from({ length: 10 }, (_, i) => i * 1000), ...Array.from({ length: 10 }, (_, i) => 30 * minute + i * 1000)];
    const n = times.length;
    const findings = detectAnomalies(
      { times, durations: new Float64Array(n).fill(5), failed: new Uint8Array(n).fill(1), saturated: new Uint8Array(n) },
      DEFAULT_ANOMALY_SETTINGS,
    );
    assert.deepEqual(
      findings.map((f) => [f.rule, f.observed, f.window_start]),
      [
        ['errors', 10, '1970-01-01T00:00:00.000Z'],
        ['errors', 10, '1970-01-01T00:30:00.000Z'],
      ],
    );
  });
});

describe('parsing lines', () => {
  test('fields, both time forms, reasons', () => {
    const r = parseLine(
      '{"level":30,"time":1714550400000,"event":"request_success","request_id":"a","route":"/v1/detect","line":"l1","status":200,"duration_ms":12.5}',
    );
    assert.deepEqual(r, {
      ok: true,
      record: { time: 1714550400000, event: 'request_success', request_id: 'a', route: '/v1/detect', line: 'l1', status: 200, duration_ms: 12.5 },
    });
    const iso = parseLine('{"level":"info","time":"2024-05-01T08:00:00.000Z","event":"detection_result","labels":["a","b",3],"verdict":"ng"}');
    assert.deepEqual(iso, { ok: true, record: { time: 1714550400000, event: 'detection_result', labels: ['a', 'b'], verdict: 'ng' } });
    assert.deepEqual(parseLine('{"time":'), { ok: false, reason: 'invalid JSON' });
    assert.deepEqual(parseLine('42'), { ok: false, reason: 'not an object' });
    assert.deepEqual(parseLine('null'), { ok: false, reason: 'not an object' });
    assert.deepEqual(parseLine('{"msg":"x"}'), { ok: false, reason: 'no time' });
    assert.deepEqual(parseLine('{"time":"soon"}'), { ok: false, reason: 'bad time' });
    assert.deepEqual(parseLine('{"time":true}'), { ok: false, reason: 'bad time' });
  });
});

describe('sources', () => {
  async function collect(source: ReturnType<typeof fileSource>): Promise<string[]> {
    const out: string[] = [];
    for await (const { text } of readLines(source)) out.push(text);
    return out;
  }

  test('plain, gzipped, CRLF, split chunks and tiny inputs', async () => {
    assert.deepEqual(await collect(streamSource('s', Readable.from([Buffer.from('a\r\nb\n')]))), ['a', 'b']);
    assert.deepEqual(await collect(streamSource('s', Readable.from([Buffer.from('x')]))), ['x']);
    assert.deepEqual(await collect(streamSource('s', Readable.from([]))), []);
    const gz = gzipSync('one\ntwo\nthree');
    // The magic bytes arrive in separate chunks.
    const chunks = [gz.subarray(0, 1), gz.subarray(1, 2), gz.subarray(2)];
    assert.deepEqual(await collect(streamSource('s', Readable.from(chunks))), ['one', 'two', 'three']);
  });

  test('a truncated gzip file and a missing file fail with the source named', async () => {
    const tmp = tempDir();
    try {
      const path = join(tmp.dir, 'cut.log.gz');
      const gz = gzipSync(Array.from({ length: 2000 }, (_, i) => `{"time":${i},"n":"${'x'.repeat(40)}"}`).join('\n'));
      writeFileSync(path, gz.subarray(0, Math.floor(gz.length / 2)));
      await assert.rejects(
        collect(fileSource(path)),
        (err: Error) => err instanceof LogSourceError && /cut\.log\.gz: corrupt or truncated gzip data after line \d+/.test(err.message),
      );
      await assert.rejects(
        collect(fileSource(join(tmp.dir, 'nope.log'))),
        (err: Error) => err instanceof LogSourceError && /nope\.log: no such file/.test(err.message),
      );
      await assert.rejects(collect(fileSource(tmp.dir)), (err: Error) => err instanceof LogSourceError && /is a directory/.test(err.message));
    } finally {
      tmp.cleanup();
    }
  });
});

test('table: numbers right-aligned, text left-aligned', () => {
  assert.deepEqual(
    table(
      ['NAME', 'N'],
      [
        ['a', 1],
        ['bbb', 100],
      ],
    ),
    ['  NAME    N', '  a       1', '  bbb   100'],
  );
});
