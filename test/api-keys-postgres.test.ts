import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import pg from 'pg';
import { createApiKeyStore } from '../src/auth/index.js';
import { createResultStore } from '../src/store/index.js';
import { requireOrSkip } from './helpers/requirements.js';
import { apiKeyStoreContract } from './api-keys-contract.js';

const URL = process.env.SIGHTLINE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const WHAT = `PostgreSQL at ${new globalThis.URL(URL).host}`;
// Every schema of this run shares the prefix, so one query removes whatever a test left.
const RUN = `sightline_keys_${randomUUID().replaceAll('-', '').slice(0, 12)}`;

function reachable(): Promise<boolean> {
  const { hostname, port } = new globalThis.URL(URL);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port || 5432), timeout: 1000 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true)).once('error', () => done(false)).once('timeout', () => done(false));
  });
}

let available = false;
let admin: pg.Pool | undefined;
let counter = 0;

before(async () => {
  available = await reachable();
  if (available) admin = new pg.Pool({ connectionString: URL, max: 2 });
});

after(async () => {
  if (!admin) return;
  const { rows } = await admin.query<{ nspname: string }>('select nspname from pg_namespace where nspname like $1', [`${RUN}%`]);
  for (const { nspname } of rows) await admin.query(`drop schema "${nspname}" cascade`);
  await admin.end();
});

apiKeyStoreContract('postgres', async (t) => {
  if (!requireOrSkip(t, available, WHAT)) return undefined;
  const schema = `${RUN}_${++counter}`;
  return {
    open: () => createApiKeyStore(URL, { schema, poolSize: 2 }),
    raw: async () => {
      const { rows } = await admin!.query(`select * from "${schema}".api_keys`);
      return JSON.stringify(rows);
    },
    cleanup: async () => {
      await admin!.query(`drop schema if exists "${schema}" cascade`);
    },
  };
});

test('postgres: keys live beside the results in the store schema, with their own migration table', async (t) => {
  if (!requireOrSkip(t, available, WHAT)) return;
  const schema = `${RUN}_shared`;
  const results = createResultStore(URL, { schema, poolSize: 2 });
  const keys = createApiKeyStore(URL, { schema, poolSize: 2 });
  t.after(async () => {
    await results.close();
    await keys.close();
  });
  await Promise.all([results.waitUntilReady(), keys.waitUntilReady()]);
  await keys.create('k', ['admin']);
  const { rows } = await admin!.query<{ table_name: string }>('select table_name from information_schema.tables where table_schema = $1 order by table_name', [schema]);
  const tables = rows.map((r) => r.table_name);
  for (const name of ['api_keys', 'results', 'sightline_api_keys_migration', 'sightline_results_migration']) assert.ok(tables.includes(name), `${name} in ${tables.join(', ')}`);
  const { rows: types } = await admin!.query(`select pg_typeof(created_at)::text as t from "${schema}".api_keys`);
  assert.deepEqual(types, [{ t: 'bigint' }]);
});

test('postgres: a pool passed in is used and left open on close', async (t) => {
  if (!requireOrSkip(t, available, WHAT)) return;
  const pool = new pg.Pool({ connectionString: URL, max: 2 });
  t.after(() => pool.end());
  const schema = `${RUN}_borrowed`;
  const keys = createApiKeyStore(URL, { pool, schema });
  const { key } = await keys.create('borrowed', ['viewer']);
  assert.equal((await keys.verify(key))?.name, 'borrowed');
  await keys.close();
  assert.equal(pool.ended, false);
});
