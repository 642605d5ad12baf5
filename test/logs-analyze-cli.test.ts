// `sightline logs analyze` as a command: a real subprocess for exit codes and
// output, the in-process entry point for the argument errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { runLogs } from '../src/cli/logs.js';
import { generateLog } from './helpers/log-generator.js';
import { tempDir } from './helpers/fixtures.js';

const sightline = (args: string[], input?: Buffer) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', timeout: 60_000, ...(input ? { input } : {}) });

async function inProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: string[] = [];
  const err: string[] = [];
  stdout.on('data', (c) => out.push(String(c)));
  stderr.on('data', (c) => err.push(String(c)));
  const code = await runLogs(args, { stdout, stderr, now: () => Date.parse('2024-05-01T12:00:00Z') });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

test('the command prints the text report and exits 0; --json reads gzip from stdin', () => {
  const tmp = tempDir();
  try {
    const path = join(tmp.dir, 'app.log');
    writeFileSync(path, generateLog());
    const text = sightline(['logs', 'analyze', path]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /total 100 {3}succeeded 78 {3}failed 22 {3}success rate 78\.00%/);
    assert.match(text.stdout, /mean 50\.5 {3}p50 50 {3}p95 95 {3}p99 99 {3}max 100/);
    assert.match(text.stdout, /2024-05-01 09:00\s+40/);
    assert.match(text.stdout, /errors\s+2024-05-01T09:30:00\.011Z\s+2024-05-01T09:35:00\.011Z\s+12\s+10\s+12 failed requests within 5m/);

    const json = sightline(
      ['logs', 'analyze', '-', '--json', '--since', '2024-05-01T10:00:00Z', '--until', '2024-05-01T12:00:00Z', '--top', '2'],
      gzipSync(generateLog()),
    );
    assert.equal(json.status, 0, json.stderr);
    const report = JSON.parse(json.stdout);
    assert.deepEqual(report.sources, [{ name: 'stdin', gzip: true, lines: 284, malformed: 0 }]);
    assert.equal(report.requests.total, 30);
    assert.deepEqual(
      report.slowest.map((s: { request_id: string }) => s.request_id),
      ['req-0079', 'req-0078'],
    );

    const missing = sightline(['logs', 'analyze', path, join(tmp.dir, 'gone.log')]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /cannot read .*gone\.log: no such file/);
    assert.equal(missing.stdout, '');
  } finally {
    tmp.cleanup();
  }
});

test('bad arguments and unreadable inputs exit 2 with a clear message', async () => {
  const tmp = tempDir();
  try {
    const path = join(tmp.dir, 'app.log');
    writeFileSync(path, generateLog());
    const cases: [string[], RegExp][] = [
      [['analyze'], /name at least one log file/],
      [['analyze', path, '--bogus'], /Unknown option '--bogus'/],
      [['analyze', path, '--top', 'many'], /--top takes a whole number/],
      [['analyze', path, '--since', 'yesterday'], /--since takes an ISO 8601 time/],
      [['analyze', path, '--since', '1h', '--until', '2h'], /--since must come before --until/],
      [['analyze', path, '--slow-ms=-1'], /--slow-ms takes a number of milliseconds/],
      [['analyze', path, '--window', '5'], /--window takes a duration with a unit/],
      [['analyze', path, '--error-threshold', '2.5'], /--error-threshold takes a whole number/],
      [['analyze', path, '--window', '0s'], /--window takes a duration/],
      [['analyze', '-', '-'], /standard input\) can be named only once/],
      [['analyze', tmp.dir], /cannot read .*: is a directory/],
      [['summarize', path], /unknown subcommand "summarize"/],
      [[], /Usage: sightline logs analyze/],
    ];
    for (const [args, message] of cases) {
      const { code, stderr, stdout } = await inProcess(args);
      assert.equal(code, 2, args.join(' '));
      assert.match(stderr, message, args.join(' '));
      assert.equal(stdout, '', args.join(' '));
    }
    const cut = join(tmp.dir, 'cut.log.gz');
    const gz = gzipSync(generateLog());
    writeFileSync(cut, gz.subarray(0, gz.length - 40));
    const truncated = await inProcess(['analyze', path, cut]);
    assert.equal(truncated.code, 2);
    assert.match(truncated.stderr, /cannot read .*cut\.log\.gz: corrupt or truncated gzip data after line \d+/);
    const help = await inProcess(['analyze', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--window D/);
    // Relative times count back from "now" (12:00 here): the last 2 h are 10:00–12:00.
    const relative = await inProcess(['analyze', path, '--json', '--since', '2h', '--until', '0s']);
    assert.equal(relative.code, 0, relative.stderr);
    assert.equal(JSON.parse(relative.stdout).requests.total, 30);
  } finally {
    tmp.cleanup();
  }
});
