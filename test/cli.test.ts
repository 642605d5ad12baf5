import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { INPUT, LABELS, RAW_BOXES, manifest, solidImage, tempDir, writeDecoderModels, yolov8Output } from './helpers/fixtures.js';
import { ROOT, SightlineProcess, cleanups } from './helpers/cli-process.js';
import { CONFIG_KEYS } from '../src/config/schema.js';
import { flagName } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

function runCli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
}

test('sightline --help and serve --help list the commands and every flag', () => {
  const top = runCli(['--help']);
  assert.equal(top.status, 0);
  assert.match(top.stdout, /serve/);
  const serve = runCli(['serve', '--help']);
  assert.equal(serve.status, 0);
  for (const flag of ['--host', '--port', '--models-dir', '--config', '--log-level']) assert.match(serve.stdout, new RegExp(flag));
});

test('a bad config value or unknown key stops serve with exit 2 and names the key', () => {
  const badPort = runCli(['serve', '--port', 'eighty']);
  assert.equal(badPort.status, 2);
  assert.match(badPort.stderr, /"port"/);
  const unknownEnv = runCli(['serve'], { SIGHTLINE_MODELS_DIRECTORY: 'x' });
  assert.equal(unknownEnv.status, 2);
  assert.match(unknownEnv.stderr, /SIGHTLINE_MODELS_DIRECTORY/);
  const unknownCommand = runCli(['serv']);
  assert.equal(unknownCommand.status, 2);
});

test('SIGTERM: stops accepting, finishes the request in flight, exits 0', async () => {
  const tmp = tempDir();
  writeModel(
    tmp.dir,
    'slow',
    '1',
    buildConstantModel({ output: yolov8Output(), outputShape: [4 + LABELS.length, RAW_BOXES.length + 1], inputWidth: INPUT, inputHeight: INPUT, slow: true }),
    manifest({ format: 'yolov8' }),
  );
  const child = spawn(
    process.execPath,
    [...CLI, 'serve', '--host', '127.0.0.1', '--port', '0', '--models-dir', tmp.dir, '--data-dir', join(tmp.dir, 'data'), '--intra-op-threads', '1'],
    {
      env: { ...process.env },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  try {
    const events: Record<string, unknown>[] = [];
    let resolvePort: (port: number) => void;
    const portKnown = new Promise<number>((r) => (resolvePort = r));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      events.push(entry);
      if (entry.event === 'server_listening') resolvePort(Number(String((entry.address as { port: number }[])[0]!.port)));
    });
    const port = await portKnown;
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100 && (await fetch(`${base}/readyz`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 200));
    const inFlight = fetch(`${base}/v1/detect`, {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg' },
      body: new Uint8Array(await solidImage(64, 64, 'jpeg')),
    });
    await new Promise((r) => setTimeout(r, 300));
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const res = await inFlight;
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { verdict: string }).verdict, 'ng');
    const [code] = await exited;
    assert.equal(code, 0);
    assert.ok(events.some((e) => e.event === 'server_stopping'));
    assert.ok(events.some((e) => e.event === 'models_loaded' && Array.isArray(e.ready) && (e.ready as string[]).includes('slow:1')));
    await assert.rejects(fetch(`${base}/livez`));
  } finally {
    child.kill('SIGKILL');
    tmp.cleanup();
  }
});

test('sightline --version prints the version of package.json', () => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-v']) {
    const res = runCli([flag]);
    assert.equal(res.status, 0, res.stderr);
    assert.equal(res.stdout, `sightline ${version}\n`);
  }
});

/** The option lines of a help text: flag, then at least two spaces, then the description, all descriptions in one column. */
function assertOptionsAligned(help: string, command: string): Map<string, string> {
  const lines = help.split('\n').filter((l) => /^ {2}-/.test(l));
  assert.ok(lines.length > 0, `${command}: option lines`);
  const flags = new Map<string, string>();
  const columns = new Set<number>();
  for (const line of lines) {
    const m = /^ {2}(\S(?:\S| (?=\S))*) {2,}(?=\S)/.exec(line);
    assert.ok(m, `${command}: flag and description run together: ${JSON.stringify(line.slice(0, 80))}`);
    columns.add(m[0].length);
    flags.set(m[1]!, line.slice(m[0].length));
  }
  assert.equal(columns.size, 1, `${command}: descriptions start in one column (${[...columns].join(', ')})`);
  return flags;
}

test('serve --help and worker --help: every flag is followed by two spaces and its description, aligned (long flags ran into them)', () => {
  for (const command of ['serve', 'worker']) {
    const res = runCli([command, '--help']);
    assert.equal(res.status, 0, res.stderr);
    const flags = assertOptionsAligned(res.stdout, command);
    assert.ok(flags.has('--config <file>') && flags.has('-h, --help'), command);
    for (const key of CONFIG_KEYS) {
      if (command === 'worker' && (key === 'host' || key === 'port' || key === 'cors_origins')) continue;
      const name = flagName(key);
      const flag = [...flags.keys()].find((f) => f === `${name} <value>` || f === `--[no-]${name.slice(2)}`);
      assert.ok(flag, `${command} --help lists ${name}`);
      assert.match(flags.get(flag)!, /\[env SIGHTLINE_[A-Z0-9_]+, default .*\]$/, `${command} ${name}`);
    }
  }
});

test('worker --help does not list --host and --port: a worker opens no port', () => {
  const res = runCli(['worker', '--help']);
  assert.equal(res.status, 0);
  assert.doesNotMatch(res.stdout, /--host\b/);
  assert.doesNotMatch(res.stdout, /--port\b/);
  assert.match(res.stdout, /--queue-url <value>/);
});

test('serve on a port already in use exits 1 at once with one line and takes no job (it used to print a stack and run its worker)', async (t) => {
  const defer = cleanups(t);
  const tmp = tempDir();
  defer(tmp.cleanup);
  const models = join(tmp.dir, 'models');
  writeDecoderModels(models);
  const dataDir = join(tmp.dir, 'data');
  // The first server queues jobs and runs none: a second one with a worker would take them.
  const first = new SightlineProcess('first', [
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--no-worker',
    '--models-dir',
    models,
    '--data-dir',
    dataDir,
    '--intra-op-threads',
    '1',
  ]);
  defer(() => first.kill());
  const base = await first.baseUrl();
  const port = Number(new URL(base).port);
  const submitted = await fetch(`${base}/v1/jobs?model=v8&line=line-1`, {
    method: 'POST',
    headers: { 'content-type': 'image/jpeg' },
    body: new Uint8Array(await solidImage(64, 64, 'jpeg')),
  });
  assert.equal(submitted.status, 202, await submitted.clone().text());
  const { job_id: jobId } = (await submitted.json()) as { job_id: string };

  const started = Date.now();
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGHTLINE_')));
  const second = spawnSync(
    process.execPath,
    [...CLI, 'serve', '--host', '127.0.0.1', '--port', String(port), '--models-dir', models, '--data-dir', dataDir, '--intra-op-threads', '1'],
    {
      cwd: ROOT,
      env,
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  const seconds = (Date.now() - started) / 1000;
  assert.equal(second.error, undefined, `the second serve did not exit within 30 s: ${second.stdout}${second.stderr}`);
  assert.ok(seconds < 15, `exited after ${seconds} s`);
  assert.equal(second.status, 1);
  assert.equal(
    second.stderr,
    `sightline: cannot listen on 127.0.0.1:${port}: address already in use (is another Sightline running? set --port or SIGHTLINE_PORT)\n`,
  );
  const events = second.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { event?: string });
  for (const event of ['worker_started', 'models_loaded', 'job_started', 'job_done']) {
    assert.ok(!events.some((e) => e.event === event), `the second serve logged ${event}`);
  }
  const job = (await (await fetch(`${base}/v1/jobs/${jobId}`)).json()) as { state: string };
  assert.equal(job.state, 'queued');
  assert.ok(first.alive, first.tail());
});

test('serve started outside the checkout uses the built-in models and logs where its models and data are', async (t) => {
  const defer = cleanups(t);
  const tmp = tempDir();
  defer(tmp.cleanup);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGHTLINE_')));
  // From another folder, tsx is found by its resolved URL (--import resolves from the working directory).
  const cli = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
  const child = spawn(process.execPath, [...cli, 'serve', '--host', '127.0.0.1', '--port', '0', '--intra-op-threads', '1'], {
    cwd: tmp.dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  defer(() => child.kill('SIGKILL'));
  const events: Record<string, unknown>[] = [];
  const paths = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      events.push(entry);
      if (entry.event === 'paths') resolve(entry);
    });
  });
  assert.equal(paths.models_dir, join(ROOT, 'models'));
  assert.equal(paths.built_in_models, true);
  assert.equal(paths.data_dir, join(tmp.dir, 'data'));
  assert.match(String(paths.msg), /built-in/);
});

test('log_format: pretty renders lines for people, json (and auto off a terminal) stays one JSON object a line', async () => {
  const capture = () => {
    let text = '';
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    });
    return { stream, text: () => text };
  };
  const pretty = capture();
  createLogger('info', pretty.stream, 'pretty').info({ event: 'server_listening' }, 'listening on 127.0.0.1:8080');
  await new Promise((r) => setImmediate(r));
  assert.match(pretty.text(), /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: listening on 127\.0\.0\.1:8080 .*"event":"server_listening"/);
  for (const format of ['json', 'auto'] as const) {
    const json = capture();
    createLogger('info', json.stream, format).info({ event: 'server_listening' }, 'listening');
    await new Promise((r) => setImmediate(r));
    const entry = JSON.parse(json.text()) as Record<string, unknown>;
    assert.equal(entry.event, 'server_listening', format);
    assert.equal(entry.level, 'info', format);
  }
  const bad = runCli(['serve', '--log-format', 'fancy']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /"log_format"/);
});
