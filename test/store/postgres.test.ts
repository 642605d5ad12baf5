import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import pg from 'pg';
import { createPostgresStore, createResultStore } from '../../src/store/index.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { result, resultStoreContract } from './result-store.contract.js';

const URL = process.env.SIGHTLINE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const WHAT = `PostgreSQL at ${new globalThis.URL(URL).host}`;
// Every schema of this run shares the prefix, so one query removes whatever a test left.
const RUN = `sightline_test_${randomUUID().replaceAll('-', '').slice(0, 12)}`;

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

resultStoreContract('postgres', async (t) => {
  if (!requireOrSkip(t, available, WHAT)) return undefined;
  const schema = `${RUN}_${++counter}`;
  return {
    open: () => createResultStore(URL, { schema, poolSize: 4 }),
    cleanup: async () => {
      await admin!.query(`drop schema if exists "${schema}" cascade`);
    },
  };
});

test('postgres: a pool passed in is used and left open on close', async (t) => {
  if (!requireOrSkip(t, available, WHAT)) return;
  const schema = `${RUN}_borrowed`;
  const pool = new pg.Pool({ connectionString: URL, max: 2 });
  t.after(() => pool.end());
  const store = createPostgresStore({ pool, schema });
  assert.equal(await store.save(result('borrowed-1', { detections: [{ label: 'dent', class_id: 1, score: 0.7, box: { x1: 1, y1: 2, x2: 3, y2: 4 } }] })), true);
  await store.close();
  assert.equal(pool.ended, false);
  const { rows } = await pool.query(`select request_id, pg_typeof(detections)::text as json_type, pg_typeof(created_at)::text as time_type from "${schema}".results`);
  assert.deepEqual(rows, [{ request_id: 'borrowed-1', json_type: 'jsonb', time_type: 'bigint' }]);
});
