import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { openPostgres } from '../../src/store/open-database.js';
import { POSTGRES_URL, POSTGRES_WHAT } from '../helpers/postgres-schemas.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { probeTcp } from '../queue/helpers.js';

test('a PostgreSQL connection lost in the middle of a transaction fails that transaction and does not end the process', { timeout: 30_000 }, async (t) => {
  const url = new URL(POSTGRES_URL);
  if (!requireOrSkip(t, await probeTcp(url.hostname, Number(url.port || 5432)), POSTGRES_WHAT)) return;
  const poolErrors: Error[] = [];
  const { db } = openPostgres<Record<string, never>>({ connectionString: POSTGRES_URL, onPoolError: (err) => poolErrors.push(err) });
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  t.after(async () => {
    await admin.end();
    await db.destroy();
  });
  await assert.rejects(
    db.transaction().execute(async (trx) => {
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
      await admin.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
      // Between two statements the client has no query to fail: it emits 'error' on itself,
      // which used to be an uncaught exception (the readiness test's server died of it).
      await delay(300);
      await sql`select 1`.execute(trx);
    }),
  );
  assert.ok(poolErrors.length >= 1, 'the lost connection is reported to onPoolError');
  // The pool replaced the broken client: the database is usable again.
  const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
  assert.equal(rows[0]!.one, 1);
});
