import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createApiKeyStore } from '../src/auth/index.js';
import { createResultStore } from '../src/store/index.js';
import { tempDir } from './helpers/fixtures.js';
import { apiKeyStoreContract } from './api-keys-contract.js';

apiKeyStoreContract('sqlite', async () => {
  const { dir, cleanup } = tempDir('sightline-keys-');
  const path = join(dir, 'results.db');
  return {
    open: () => createApiKeyStore(`sqlite:${path}`),
    // The file and its write-ahead log, byte for byte.
    raw: async () =>
      [path, `${path}-wal`]
        .filter(existsSync)
        .map((p) => readFileSync(p).toString('latin1'))
        .join('\n'),
    cleanup: async () => cleanup(),
  };
});

test('sqlite: keys share the result store file, each with its own migration bookkeeping', async (t) => {
  const { dir, cleanup } = tempDir('sightline-keys-');
  t.after(cleanup);
  const path = join(dir, 'results.db');
  const results = createResultStore(`sqlite:${path}`);
  const keys = createApiKeyStore(`sqlite:${path}`);
  await Promise.all([results.waitUntilReady(), keys.waitUntilReady()]);
  await keys.create('k', ['viewer']);
  await results.close();
  await keys.close();
  const db = new Database(path, { readonly: true });
  t.after(() => db.close());
  const tables = (db.prepare("select name from sqlite_master where type = 'table' order by name").all() as { name: string }[]).map((r) => r.name);
  for (const name of ['api_keys', 'results', 'sightline_api_keys_migration', 'sightline_results_migration'])
    assert.ok(tables.includes(name), `${name} in ${tables.join(', ')}`);
  const row = db.prepare('select name, roles, length(secret_hash) as hash_length from api_keys').get();
  assert.deepEqual(row, { name: 'k', roles: 'viewer', hash_length: 64 });
});

test('sqlite: an unusable file gives STORE_UNAVAILABLE, and a later call retries', async (t) => {
  const { dir, cleanup } = tempDir('sightline-keys-');
  t.after(cleanup);
  const { writeFileSync, rmSync, mkdirSync } = await import('node:fs');
  const blocker = join(dir, 'blocker');
  writeFileSync(blocker, '');
  const keys = createApiKeyStore(`sqlite:${join(blocker, 'results.db')}`);
  try {
    await assert.rejects(keys.verify('sl_0123456789abcdef_' + 'a'.repeat(43)), { code: 'STORE_UNAVAILABLE' });
    rmSync(blocker);
    mkdirSync(blocker);
    assert.equal(await keys.verify('sl_0123456789abcdef_' + 'a'.repeat(43)), undefined);
  } finally {
    await keys.close();
  }
});
