import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import type { FastifyInstance } from 'fastify';
import { ConfigError, loadConfig } from '../src/config/load.js';
import { CLI, ROOT } from './helpers/cli-process.js';
import { requireOrSkip } from './helpers/requirements.js';
import { startApp, tempDir } from './helpers/fixtures.js';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

/** A self-signed certificate for localhost / 127.0.0.1, made now. */
function selfSigned(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const run = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-days',
      '1',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(run.status, 0, run.stderr);
  return { cert, key };
}

function port(app: FastifyInstance): number {
  return (app.server.address() as { port: number }).port;
}

async function tlsApp(t: TestContext): Promise<{ app: FastifyInstance; ca: Buffer } | undefined> {
  if (!requireOrSkip(t, hasOpenssl, 'openssl')) return undefined;
  const { dir, cleanup } = tempDir('sightline-tls-');
  const { cert, key } = selfSigned(dir);
  const app = await startApp({ models_dir: dir, tls_cert_file: cert, tls_key_file: key }, { wait: false });
  t.after(async () => {
    await app.close();
    cleanup();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, ca: readFileSync(cert) };
}

test('TLS: with a certificate and key the server speaks HTTPS (with HSTS), and plain HTTP gets nothing', async (t) => {
  const setup = await tlsApp(t);
  if (!setup) return;
  const { app, ca } = setup;
  const res = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    httpsGet({ host: '127.0.0.1', port: port(app), path: '/livez', ca, servername: 'localhost' }, (r) => {
      let body = '';
      r.on('data', (d: Buffer) => (body += d.toString()));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body }));
    }).on('error', reject);
  });
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(res.body), { status: 'ok' });
  assert.match(String(res.headers['strict-transport-security']), /max-age=\d+/);
  assert.match(String(res.headers['content-security-policy']), /upgrade-insecure-requests/);

  const insecure = await new Promise<number>((resolve, reject) => {
    httpsGet({ host: '127.0.0.1', port: port(app), path: '/livez', rejectUnauthorized: false }, (r) => {
      r.resume();
      resolve(r.statusCode ?? 0);
    }).on('error', reject);
  });
  assert.equal(insecure, 200, 'rejectUnauthorized: false works too');

  const plain = await new Promise<string>((resolve) => {
    const req = httpGet({ host: '127.0.0.1', port: port(app), path: '/livez', timeout: 5000 }, (r) => {
      r.resume();
      resolve(`answered ${r.statusCode}`);
    });
    req.on('error', (err) => resolve(`error ${err.message}`));
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
  assert.match(plain, /^error /, `plain HTTP must fail: ${plain}`);
});

test('TLS: WebSocket over wss:// opens /v1/stream', async (t) => {
  const setup = await tlsApp(t);
  if (!setup) return;
  const ws = new WebSocket(`wss://127.0.0.1:${port(setup.app)}/v1/stream`, { ca: setup.ca });
  const hello = await new Promise<{ type: string }>((resolve, reject) => {
    ws.once('message', (data) => resolve(JSON.parse(data.toString()) as { type: string }));
    ws.once('error', reject);
  });
  assert.equal(hello.type, 'hello');
  ws.close();
});

test('TLS: a certificate without its key (or a key without its certificate) is a config error, and serve exits 2', async (t) => {
  assert.throws(
    () => loadConfig({ flags: { tls_cert_file: '/x/cert.pem' } }),
    (err: unknown) => err instanceof ConfigError && /tls_cert_file is set but tls_key_file is not/.test(err.message),
  );
  assert.throws(() => loadConfig({ flags: { tls_key_file: '/x/key.pem' } }), /tls_key_file is set but tls_cert_file is not/);
  assert.equal(loadConfig({ flags: { tls_cert_file: 'a', tls_key_file: 'b' } }).tls_cert_file, 'a');

  const { dir, cleanup } = tempDir('sightline-tls-');
  t.after(cleanup);
  writeFileSync(join(dir, 'cert.pem'), 'not a certificate');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGHTLINE_')));
  const child = spawn(process.execPath, [...CLI, 'serve', '--tls-cert-file', join(dir, 'cert.pem'), '--data-dir', dir], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 2, stderr);
  assert.match(stderr, /sightline serve: tls_cert_file is set but tls_key_file is not/);
});

test('TLS: unreadable files stop the start with a message naming the key', async (t) => {
  const { dir, cleanup } = tempDir('sightline-tls-');
  t.after(cleanup);
  await assert.rejects(
    startApp({ models_dir: dir, tls_cert_file: join(dir, 'missing.pem'), tls_key_file: join(dir, 'missing-key.pem') }, { wait: false }),
    /cannot read tls_cert_file/,
  );
});
