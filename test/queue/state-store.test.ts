import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { KyselyJobStateStore, MemoryJobStateStore, type JobInfo, type JobStateStore } from '../../src/queue/index.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { probeTcp } from './helpers.js';

const PG_URL = process.env.SIGHTLINE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

function record(extra: Partial<JobInfo> = {}): JobInfo {
  const now = Date.now();
  return {
    id: randomUUID(),
    line: 'line-1',
    priority: 'normal',
    state: 'queued',
    attempts: 0,
    idempotencyKey: null,
    deadline: now + 60_000,
    lastError: null,
    deadReason: null,
    createdAt: now,
    updatedAt: now,
    ...extra,
  };
}

/** What the amqp back end relies on from any JobStateStore. */
function stateStoreContract(name: string, open: (t: TestContext) => Promise<JobStateStore | undefined>): void {
  describe(`JobStateStore contract: ${name}`, () => {
    test('insert, get, update, delete round-trip every field', async (t) => {
      const store = await open(t);
      if (!store) return;
      const r = record({ idempotencyKey: 'k-rt', priority: 'high' });
      assert.deepEqual(await store.insert(r), { inserted: true, record: r });
      assert.deepEqual(await store.get(r.id), r);
      await store.update(r.id, { state: 'dead', attempts: 3, lastError: 'boom', deadReason: 'failed', updatedAt: r.updatedAt + 5 });
      assert.deepEqual(await store.get(r.id), { ...r, state: 'dead', attempts: 3, lastError: 'boom', deadReason: 'failed', updatedAt: r.updatedAt + 5 });
      await store.update(r.id, { state: 'queued', deadline: null, deadReason: null, updatedAt: r.updatedAt + 6 });
      const revived = await store.get(r.id);
      assert.equal(revived?.deadline, null);
      assert.equal(revived?.lastError, 'boom', 'fields left out keep their value');
      await store.update('unknown', { state: 'done', updatedAt: 1 }); // ignored
      await store.delete(r.id);
      assert.equal(await store.get(r.id), undefined);
      // Deleting frees the key.
      assert.equal((await store.insert(record({ idempotencyKey: 'k-rt' }))).inserted, true);
    });

    test('an idempotency key is held by the first insert, also under a race', async (t) => {
      const store = await open(t);
      if (!store) return;
      const racers = Array.from({ length: 5 }, () => record({ idempotencyKey: 'k-race' }));
      const results = await Promise.all(racers.map((r) => store.insert(r)));
      const winners = results.filter((r) => r.inserted);
      assert.equal(winners.length, 1);
      assert.ok(results.every((r) => r.record.id === winners[0]!.record.id));
      const unkeyed = await Promise.all([store.insert(record()), store.insert(record())]);
      assert.ok(
        unkeyed.every((r) => r.inserted),
        'jobs without a key never collide',
      );
    });
  });
}

stateStoreContract('memory', async () => new MemoryJobStateStore());

stateStoreContract('kysely + sqlite', async (t) => {
  const db = new Kysely({ dialect: new SqliteDialect({ database: new BetterSqlite3(':memory:') }) });
  t.after(() => db.destroy());
  const store = new KyselyJobStateStore({ db, kind: 'sqlite' });
  await store.migrate();
  await store.migrate(); // idempotent
  return store;
});

let pgReachable: Promise<boolean> | undefined;
stateStoreContract('kysely + postgres', async (t) => {
  const { hostname, port } = new URL(PG_URL);
  if (!requireOrSkip(t, await (pgReachable ??= probeTcp(hostname, Number(port || 5432))), `PostgreSQL at ${hostname}:${port || 5432}`)) return undefined;
  const pool = new pg.Pool({ connectionString: PG_URL, max: 4 });
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  const schema = `sightline_test_jobs_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  t.after(async () => {
    await pool.query(`drop schema if exists "${schema}" cascade`);
    await db.destroy();
  });
  const store = new KyselyJobStateStore({ db, kind: 'postgres', schema });
  await store.migrate();
  return store;
});
