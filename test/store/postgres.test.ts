import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createPostgresStore, createResultStore } from '../../src/store/index.js';
import { POSTGRES_URL, POSTGRES_WHAT, postgresSchemas } from '../helpers/postgres-schemas.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { result, resultStoreContract } from './result-store.contract.js';

const URL = POSTGRES_URL;
const WHAT = POSTGRES_WHAT;
const pgs = postgresSchemas('sightline_test');

resultStoreContract('postgres', async (t) => {
  if (!requireOrSkip(t, pgs.available, WHAT)) return undefined;
  const schema = pgs.schema();
  return {
    open: () => createResultStore(URL, { schema, poolSize: 4 }),
    cleanup: async () => {
      await pgs.admin.query(`drop schema if exists "${schema}" cascade`);
    },
  };
});

test('postgres: a pool passed in is used and left open on close', async (t) => {
  if (!requireOrSkip(t, pgs.available, WHAT)) return;
  const schema = pgs.schema('borrowed');
  const pool = new pg.Pool({ connectionString: URL, max: 2 });
  t.after(() => pool.end());
  const store = createPostgresStore({ pool, schema });
  assert.equal(await store.save(result('borrowed-1', { detections: [{ label: 'dent', class_id: 1, score: 0.7, box: { x1: 1, y1: 2, x2: 3, y2: 4 } }] })), true);
  await store.close();
  assert.equal(pool.ended, false);
  const { rows } = await pool.query(
    `select request_id, pg_typeof(detections)::text as json_type, pg_typeof(created_at)::text as time_type from "${schema}".results`,
  );
  assert.deepEqual(rows, [{ request_id: 'borrowed-1', json_type: 'jsonb', time_type: 'bigint' }]);
});
