import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createApiKeyStore } from '../src/auth/index.js';
import { createResultStore } from '../src/store/index.js';
import { POSTGRES_URL, POSTGRES_WHAT, postgresSchemas } from './helpers/postgres-schemas.js';
import { requireOrSkip } from './helpers/requirements.js';
import { apiKeyStoreContract } from './api-keys-contract.js';

const URL = POSTGRES_URL;
const WHAT = POSTGRES_WHAT;
const pgs = postgresSchemas('sightline_keys');

apiKeyStoreContract('postgres', async (t) => {
  if (!requireOrSkip(t, pgs.available, WHAT)) return undefined;
  const schema = pgs.schema();
  return {
    open: () => createApiKeyStore(URL, { schema, poolSize: 2 }),
    raw: async () => {
      const { rows } = await pgs.admin.query(`select * from "${schema}".api_keys`);
      return JSON.stringify(rows);
    },
    cleanup: async () => {
      await pgs.admin.query(`drop schema if exists "${schema}" cascade`);
    },
  };
});

test('postgres: keys live beside the results in the store schema, with their own migration table', async (t) => {
  if (!requireOrSkip(t, pgs.available, WHAT)) return;
  const schema = pgs.schema('shared');
  const results = createResultStore(URL, { schema, poolSize: 2 });
  const keys = createApiKeyStore(URL, { schema, poolSize: 2 });
  t.after(async () => {
    await results.close();
    await keys.close();
  });
  await Promise.all([results.waitUntilReady(), keys.waitUntilReady()]);
  await keys.create('k', ['admin']);
  const { rows } = await pgs.admin.query<{ table_name: string }>(
    'select table_name from information_schema.tables where table_schema = $1 order by table_name',
    [schema],
  );
  const tables = rows.map((r) => r.table_name);
  for (const name of ['api_keys', 'results', 'sightline_api_keys_migration', 'sightline_results_migration'])
    assert.ok(tables.includes(name), `${name} in ${tables.join(', ')}`);
  const { rows: types } = await pgs.admin.query(`select pg_typeof(created_at)::text as t from "${schema}".api_keys`);
  assert.deepEqual(types, [{ t: 'bigint' }]);
});

test('postgres: a pool passed in is used and left open on close', async (t) => {
  if (!requireOrSkip(t, pgs.available, WHAT)) return;
  const pool = new pg.Pool({ connectionString: URL, max: 2 });
  t.after(() => pool.end());
  const schema = pgs.schema('borrowed');
  const keys = createApiKeyStore(URL, { pool, schema });
  const { key } = await keys.create('borrowed', ['viewer']);
  assert.equal((await keys.verify(key))?.name, 'borrowed');
  await keys.close();
  assert.equal(pool.ended, false);
});
