/**
 * `sightline simulate` as a child process against an in-process server with the
 * built-in model: one short run per transport, the JSON report's counts add up.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { startApp } from './helpers/fixtures.js';
import { CLI, ROOT } from './helpers/cli-process.js';
import { percentile, runSimulate, type SimulateReport } from '../src/cli/simulate.js';

/** Runs fn with process.stdout/stderr writes captured. */
async function captured(fn: () => Promise<number>): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const original = { stdout: process.stdout.write, stderr: process.stderr.write };
  const capture = (stream: 'stdout' | 'stderr') =>
    ((chunk: string | Uint8Array) => {
      out[stream] += chunk.toString();
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = capture('stdout');
  process.stderr.write = capture('stderr');
  try {
    const code = await fn();
    return { code, ...out };
  } finally {
    process.stdout.write = original.stdout;
    process.stderr.write = original.stderr;
  }
}

function runCli(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGHTLINE_')));
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`simulate ran past ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('sightline simulate', () => {
  let app: FastifyInstance;
  let url: string;

  before(async () => {
    app = await startApp({ models_dir: './models', stream_max_pending: 16 });
    await app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  after(() => app?.close());

  for (const transport of ['ws', 'http', 'jobs'] as const) {
    test(`--transport ${transport}: 2 lines × 5 fps × 2 s; sent = results + errors + drops, results > 0`, { timeout: 90_000 }, async (t) => {
      const { code, stdout, stderr } = await runCli([
        'simulate',
        '--url',
        url,
        '--lines',
        '2',
        '--fps',
        '5',
        '--duration',
        '2',
        '--transport',
        transport,
        '--json',
      ]);
      assert.equal(code, 0, stderr);
      const report = JSON.parse(stdout) as SimulateReport;
      t.diagnostic(
        `${transport}: ${JSON.stringify({ totals: report.totals, errors: report.errors_by_code, latency: report.latency_ms, fps: report.achieved_fps })}`,
      );
      assert.equal(report.transport, transport);
      assert.equal(report.target_fps, 10);
      const { sent, results, errors, drops, in_flight } = report.totals;
      assert.equal(sent, 20, 'open loop: every scheduled frame was sent (2 lines × 5 fps × 2 s)');
      assert.equal(sent, results + errors + drops);
      assert.equal(in_flight, 0);
      assert.ok(results > 0);
      assert.equal(
        Object.values(report.errors_by_code).reduce((a, b) => a + b, 0),
        errors,
      );
      assert.deepEqual(Object.keys(report.per_line), ['line-1', 'line-2']);
      for (const c of Object.values(report.per_line)) {
        assert.equal(c.sent, 10);
        assert.equal(c.sent, c.results + c.errors + c.drops);
      }
      assert.equal((report.verdicts.ok ?? 0) + (report.verdicts.ng ?? 0), results);
      assert.ok((report.verdicts.ng ?? 0) > 0 && (report.verdicts.ok ?? 0) > 0, 'the samples rotate through ok and ng images');
      const l = report.latency_ms;
      assert.ok(l.p50! > 0 && l.p50! <= l.p90! && l.p90! <= l.p99! && l.p99! <= l.max!);
      assert.ok(report.achieved_fps.sent > 5 && report.achieved_fps.sent <= 10, `achieved ${report.achieved_fps.sent} fps`);
      if (transport !== 'ws') assert.equal(drops, 0);
      // The live summary went to stderr, once a second.
      assert.match(stderr, /\[\s*1\.\ds\] \w+ sent \d+ {2}results \d+ {2}errors \d+ {2}drops \d+ {2}in flight \d+ {2}latency p50 /);
    });
  }

  test('the text report; bad arguments exit 2 with the help', async () => {
    const text = await runCli(['simulate', '--url', url, '--lines', '1', '--fps', '4', '--duration', '1', '--transport', 'http']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^simulate http → .*\nsent 4 {2}results \d+ {2}errors \d+ {2}drops 0/);
    assert.match(text.stdout, /latency ms: p50 [\d.]+ {2}p90 [\d.]+ {2}p99 [\d.]+ {2}max [\d.]+/);
    // Argument errors in-process (a child per case costs seconds of tsx start-up each).
    for (const bad of [
      ['--transport', 'smoke'],
      ['--lines', '0'],
      ['--lines', '1.5'],
      ['--fps', 'x'],
      ['--duration=-1'],
      ['--images', 'no-such-dir'],
      ['--url', 'ftp://x'],
      ['--frobnicate'],
      ['stray'],
    ]) {
      const r = await captured(() => runSimulate(bad));
      assert.equal(r.code, 2, `${bad.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^sightline simulate: [\s\S]+?\n\nUsage: sightline simulate/);
      assert.equal(r.stdout, '');
    }
    const help = await captured(() => runSimulate(['--help']));
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--transport ws\|http\|jobs/);
  });

  test('an unreachable server: the run still completes (exit 0), every frame an error', async () => {
    const r = await runCli(['simulate', '--url', 'http://127.0.0.1:9', '--lines', '1', '--fps', '5', '--duration', '1', '--transport', 'http', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as SimulateReport;
    assert.deepEqual(report.totals, { sent: 5, results: 0, errors: 5, drops: 0, in_flight: 0 });
    assert.deepEqual(report.errors_by_code, { NETWORK_ERROR: 5 });
    assert.equal(report.latency_ms.p50, null);
  });

  test('percentile is nearest-rank', () => {
    const v = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.deepEqual([percentile(v, 50), percentile(v, 90), percentile(v, 99), percentile(v, 100)], [50, 90, 99, 100]);
    assert.equal(percentile([], 50), null);
    assert.equal(percentile([7], 99), 7);
  });
});
