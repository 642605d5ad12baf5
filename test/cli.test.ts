import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { INPUT, LABELS, RAW_BOXES, manifest, solidImage, tempDir, yolov8Output } from './helpers/fixtures.js';

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
  const child = spawn(process.execPath, [...CLI, 'serve', '--host', '127.0.0.1', '--port', '0', '--models-dir', tmp.dir, '--data-dir', join(tmp.dir, 'data'), '--intra-op-threads', '1'], {
    env: { ...process.env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
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
    const inFlight = fetch(`${base}/v1/detect`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(await solidImage(64, 64, 'jpeg')) });
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
