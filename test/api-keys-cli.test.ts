import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { CLI, ROOT, PG_URL, cleanups, freshDatabase } from './helpers/cli-process.js';
import { requireOrSkip } from './helpers/requirements.js';
import { startApp, tempDir } from './helpers/fixtures.js';
import { bearer } from './auth-helpers.js';
import type { Config } from '../src/config/schema.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `sightline keys …` in a process of its own (configured by flags only). */
function keys(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGHTLINE_')));
  const child = spawn(process.execPath, [...CLI, 'keys', ...args], { cwd: ROOT, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

async function pgAvailable(): Promise<boolean> {
  const { connect } = await import('node:net');
  const { hostname, port } = new URL(PG_URL);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port || 5432), timeout: 1000 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket
      .once('connect', () => done(true))
      .once('error', () => done(false))
      .once('timeout', () => done(false));
  });
}

/** create → the server accepts it → revoke from another process → the very next request is refused. */
async function revokedByCli(storeFlags: string[], config: Partial<Config>, env: Record<string, string> = {}): Promise<void> {
  const models = tempDir('sightline-keys-models-');
  const app = await startApp({ auth: 'on', models_dir: models.dir, queue_url: 'sqlite::memory:', rate_limit_per_second: 0, ...config }, { wait: false });
  try {
    const created = await keys(['create', '--name', 'camera-7', '--role', 'viewer', ...storeFlags], env);
    assert.equal(created.code, 0, created.stderr);
    const key = created.stdout.trim();
    assert.match(key, /^sl_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/, 'stdout is the key alone');
    assert.match(created.stderr, /not shown again/);
    assert.equal((await app.inject({ url: '/v1/models', headers: bearer(key) })).statusCode, 200);

    const listed = await keys(['list', '--json', ...storeFlags], env);
    assert.equal(listed.code, 0, listed.stderr);
    const list = JSON.parse(listed.stdout) as { id: string; name: string; roles: string[] }[];
    assert.deepEqual(
      list.map((k) => [k.name, k.roles]),
      [['camera-7', ['viewer']]],
    );
    assert.ok(!listed.stdout.includes(key.slice(20)), 'list never shows a secret');

    const revoked = await keys(['revoke', 'camera-7', ...storeFlags], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    const res = await app.inject({ url: '/v1/models', headers: bearer(key) });
    assert.equal(res.statusCode, 401, 'refused on the very next request');
    assert.equal(res.json().error.code, 'UNAUTHORIZED');

    const again = await keys(['revoke', list[0]!.id, ...storeFlags], env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no active API key/);
  } finally {
    await app.close();
    models.cleanup();
  }
}

test('sightline keys (SQLite): a key revoked by the CLI in another process is refused by the running server at once', async (t) => {
  const { dir, cleanup } = tempDir('sightline-keys-cli-');
  t.after(cleanup);
  // The CLI finds the server's store through --data-dir (the default sqlite:<data_dir>/results.db) …
  await revokedByCli(['--data-dir', dir], { data_dir: dir, store_url: '' });
  // … or SIGHTLINE_STORE_URL.
  const url = `sqlite:${join(dir, 'other.db')}`;
  await revokedByCli([], { store_url: url }, { SIGHTLINE_STORE_URL: url });
});

test('sightline keys (PostgreSQL): revocation by the CLI is seen by the server on the next request', async (t) => {
  if (!requireOrSkip(t, await pgAvailable(), `PostgreSQL at ${new URL(PG_URL).host}`)) return;
  const defer = cleanups(t);
  const { url } = await freshDatabase(defer, 'sightline_keys_cli');
  await revokedByCli(['--store-url', url], { store_url: url });
});

test('sightline keys: usage errors exit 2, a taken name exits 1, list prints a table', async (t) => {
  const { dir, cleanup } = tempDir('sightline-keys-cli-');
  t.after(cleanup);
  const flags = ['--data-dir', dir];
  for (const args of [
    ['create', '--name', 'x'],
    ['create', '--name', 'x', '--role', 'root'],
    ['create', '--name', 'bad name', '--role', 'viewer'],
    ['frobnicate'],
  ]) {
    const run = await keys([...args, ...flags]);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
  }
  assert.equal((await keys(['create', '--name', 'a', '--role', 'ingest', '--role', 'viewer', ...flags])).code, 0);
  const taken = await keys(['create', '--name', 'a', '--role', 'admin', ...flags]);
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /already named "a"/);
  const json = await keys(['create', '--name', 'b', '--role', 'admin', '--json', ...flags]);
  const b = JSON.parse(json.stdout) as { key: string; roles: string[] };
  assert.deepEqual(b.roles, ['admin']);
  assert.match(b.key, /^sl_/);
  const table = await keys(['list', ...flags]);
  assert.equal(table.code, 0);
  assert.match(table.stdout, /^ID\s+NAME\s+ROLES\s+CREATED\n/);
  assert.match(table.stdout, /\ba\s+ingest,viewer\b/);
  assert.ok(!table.stdout.includes(b.key.slice(20)));
  const help = await keys(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /keys create --name|create --name NAME/);
});
