// The examples in examples/ run as a user runs them — Debian's python3 with
// python3-requests and python3-websockets, bash and curl — against a live server
// serving the built-in model, and the server's own records confirm what they did.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../src/config/schema.js';
import { startApp, tempDir } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { ROOT, waitFor } from './helpers/cli-process.js';
import { baseUrl } from './helpers/stream-client.js';

// Debian's interpreter has the Debian packages; a pyenv `python3` earlier in PATH may not.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const LINE_PC = join(ROOT, 'examples/python/line_pc.py');
const CURL_SCRIPT = join(ROOT, 'examples/curl/detect.sh');

function pythonReady(t: TestContext): boolean {
  const probe = spawnSync(PYTHON, ['-c', 'import requests, websockets'], { encoding: 'utf8' });
  return requireOrSkip(t, probe.status === 0, 'python3 with requests and websockets (Debian python3-requests, python3-websockets)');
}

function curlReady(t: TestContext): boolean {
  const probe = spawnSync('curl', ['--version'], { encoding: 'utf8' });
  return requireOrSkip(t, probe.status === 0, 'curl (Debian curl)');
}

/** The built-in model (what `npm start` serves) on a free loopback port, its data in a temp dir. */
async function serve(t: TestContext, overrides: Partial<Config> = {}): Promise<{ app: FastifyInstance; url: string }> {
  const data = tempDir('sightline-examples-');
  let app: FastifyInstance;
  try {
    app = await startApp({ models_dir: join(ROOT, 'models'), data_dir: data.dir, store_url: '', queue_url: '', ...overrides });
  } catch (err) {
    data.cleanup();
    throw err;
  }
  t.after(async () => {
    await app.close();
    data.cleanup();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url: baseUrl(app) };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command asynchronously (the server answers from this same event loop), with only SIGHTLINE_URL / SIGHTLINE_API_KEY of our choosing. */
function run(command: string, args: string[], env: Record<string, string>, timeoutMs = 120_000): Promise<Run> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGHTLINE_')));
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const show = (r: Run) => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;

/** Results the server stored for a line (detect, job and stream results are all stored). */
async function storedResults(app: FastifyInstance, line: string, expected: number): Promise<{ request_id: string; verdict: string }[]> {
  let results: { request_id: string; verdict: string }[] = [];
  await waitFor(
    async () => {
      results = (await app.inject(`/v1/results?line=${line}&limit=500`)).json().results;
      return results.length >= expected;
    },
    () => `${expected} stored results for ${line}, have ${results.length}`,
    10_000,
  );
  return results;
}

test('examples/python/line_pc.py runs green against a live server: a detect verdict, one job for a repeated Idempotency-Key, a result for every streamed frame', async (t) => {
  if (!pythonReady(t)) return;
  const { app, url } = await serve(t);
  const frames = 7; // more than the stream's in-flight + pending places: the client must pace itself to get no drops
  const r = await run(PYTHON, [LINE_PC, 'samples/ng-03.jpg', '--line', 'py-example', '--frames', String(frames)], { SIGHTLINE_URL: url });
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, /^detect: verdict=ng detections=[1-9]/m, show(r));

  const submitted = /^job: submitted job_id=(\S+) duplicate=false idempotency_key=(\S+)$/m.exec(r.stdout);
  assert.ok(submitted, show(r));
  const [, jobId, key] = submitted;
  assert.match(r.stdout, new RegExp(`^job: job_id=${jobId} state=done attempts=1 verdict=ng`, 'm'), show(r));
  assert.match(r.stdout, new RegExp(`^job: re-sent idempotency_key=${key} job_id=${jobId} duplicate=true$`, 'm'), show(r));

  const streamed = [...r.stdout.matchAll(/^stream: frame (\S+) verdict=(\w+) detections=\d+ latency_ms=[\d.]+$/gm)];
  assert.equal(streamed.length, frames, show(r));
  assert.equal(new Set(streamed.map((m) => m[1])).size, frames, 'one result per frame id');
  assert.ok(
    streamed.every((m) => m[2] === 'ng'),
    show(r),
  );
  assert.match(r.stdout, new RegExp(`^stream: ${frames}/${frames} results, latency_ms p50=`, 'm'));
  assert.match(r.stdout, /^ok$/m);

  // The server's side: one job (the re-send queued nothing), and 1 + 1 + frames stored results.
  const job = (await app.inject(`/v1/jobs/${jobId}`)).json();
  assert.equal(job.state, 'done');
  const results = await storedResults(app, 'py-example', frames + 2);
  assert.equal(results.length, frames + 2, JSON.stringify(results));
  assert.ok(results.some((res) => res.request_id === jobId));
});

test('examples/curl/detect.sh runs green against a live server: raw and multipart detect, a job polled to done, the same job for a repeated Idempotency-Key', async (t) => {
  if (!curlReady(t)) return;
  const { app, url } = await serve(t);
  const r = await run('bash', [CURL_SCRIPT, 'samples/ng-03.jpg', 'curl-example'], { SIGHTLINE_URL: url });
  assert.equal(r.code, 0, show(r));
  assert.match(r.stdout, /detect \(raw body\):\n {2}verdict=ng request_id=\S+/);
  assert.match(r.stdout, /detect \(multipart, field image\):\n {2}verdict=ng request_id=\S+/);
  const jobId = /submitted job_id=(\S+) duplicate=false/.exec(r.stdout)?.[1];
  assert.ok(jobId, show(r));
  assert.match(r.stdout, new RegExp(`job_id=${jobId} state=done verdict=ng`));
  assert.match(r.stdout, new RegExp(`re-sent job_id=${jobId} duplicate=true`));
  assert.match(r.stdout, /^ok$/m);
  const results = await storedResults(app, 'curl-example', 3);
  assert.equal(results.length, 3, 'raw, multipart and the one job');
});

test('the examples fail with a non-zero status on an error, and pass with SIGHTLINE_API_KEY against a server with auth on', async (t) => {
  const python = pythonReady(t);
  if (!python || !curlReady(t)) return;
  const { app, url } = await serve(t, { auth: 'on' });
  const { key } = await app.apiKeys.create('line-pc', ['ingest']);

  // auth: on asks loopback callers for credentials too.
  const refused = await run(PYTHON, [LINE_PC, '--frames', '2', '--timeout', '10'], { SIGHTLINE_URL: url });
  assert.equal(refused.code, 1, show(refused));
  assert.match(refused.stderr, /FAILED: POST \/v1\/detect: HTTP 401 UNAUTHORIZED/, show(refused));
  const curlRefused = await run('bash', [CURL_SCRIPT], { SIGHTLINE_URL: url });
  assert.notEqual(curlRefused.code, 0, show(curlRefused));
  assert.match(curlRefused.stderr, /"code":"UNAUTHORIZED"/, show(curlRefused));

  const py = await run(PYTHON, [LINE_PC, '--frames', '3'], { SIGHTLINE_URL: url, SIGHTLINE_API_KEY: key });
  assert.equal(py.code, 0, show(py));
  assert.match(py.stdout, /duplicate=true$/m);
  assert.match(py.stdout, /^stream: 3\/3 results/m, show(py));
  const curl = await run('bash', [CURL_SCRIPT], { SIGHTLINE_URL: url, SIGHTLINE_API_KEY: key });
  assert.equal(curl.code, 0, show(curl));
  assert.match(curl.stdout, /^ok$/m);
});
