import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { createResultStore, type ResultQuery } from '../../src/store/index.js';
import { pageQuery } from '../../src/store/queries.js';
import type { StoreSchema } from '../../src/store/schema.js';
import { listFilter } from '../../src/store/validate.js';
import { tempDir } from '../helpers/fixtures.js';
import { result, resultStoreContract } from './result-store.contract.js';

resultStoreContract('sqlite', async () => {
  const { dir, cleanup } = tempDir('sightline-store-');
  const url = `sqlite:${join(dir, 'nested', 'results.db')}`;
  return { open: () => createResultStore(url), cleanup: async () => cleanup() };
});

test('sqlite: the file is created with its directory, in WAL mode, with one label row per label', async (t) => {
  const { dir, cleanup } = tempDir('sightline-store-');
  t.after(cleanup);
  const path = join(dir, 'a', 'b', 'results.db');
  const store = createResultStore(`sqlite:${path}`);
  assert.equal(existsSync(path), false, 'nothing is opened before first use');
  const scratch = { label: 'scratch', class_id: 0, score: 0.9, box: { x1: 0, y1: 0, x2: 1, y2: 1 } };
  await store.save(result('r1', { detections: [scratch, scratch] }));
  await store.close();

  const db = new Database(path, { readonly: true });
  t.after(() => db.close());
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.deepEqual(db.prepare('select request_id, label, count, line from result_labels').all(), [
    { request_id: 'r1', label: 'scratch', count: 2, line: 'line-1' },
  ]);
});

test('sqlite: every list filter walks an index in page order (no table scan, no sort)', async (t) => {
  const { dir, cleanup } = tempDir('sightline-store-');
  t.after(cleanup);
  const path = join(dir, 'results.db');
  const store = createResultStore(`sqlite:${path}`);
  await store.waitUntilReady();
  await store.close();
  const raw = new Database(path);
  const db = new Kysely<StoreSchema>({ dialect: new SqliteDialect({ database: raw }) });
  t.after(() => db.destroy());
  const cursor = Buffer.from(JSON.stringify([5, 'x'])).toString('base64url');
  const queries: ResultQuery[] = [
    {},
    { line: 'a' },
    { verdict: 'ng' },
    { label: 'scratch' },
    { label: 'scratch', line: 'a', verdict: 'ng' },
    { line: 'a', from: new Date(0), to: new Date(9), cursor },
    { label: 'scratch', from: new Date(0), cursor },
    { review: 'false_call' },
    { review: 'missed', from: new Date(0), to: new Date(9), cursor },
    { review: 'any' },
    { review: 'none' },
    { review: 'none', line: 'a' },
    { review: 'confirmed', label: 'scratch' },
  ];
  for (const query of queries) {
    const { sql, parameters } = pageQuery(db, listFilter(query)).compile();
    const plan = (raw.prepare(`explain query plan ${sql}`).all(...parameters) as { detail: string }[]).map((p) => p.detail);
    const where = `${JSON.stringify(query)}: ${plan.join(' | ')}`;
    assert.ok(
      plan.every((step) => /USING (COVERING )?INDEX/.test(step)),
      where,
    );
    assert.ok(!plan.some((step) => step.includes('TEMP B-TREE')), where);
    if (query.label) assert.match(plan[0]!, /result_labels_label_created_idx/, where);
    else if (query.review === 'any') assert.match(plan[0]!, /result_reviews_created_idx/, where);
    else if (query.review && query.review !== 'none') assert.match(plan[0]!, /result_reviews_status_created_idx/, where);
  }
});

test('sqlite::memory: works and keeps nothing', async () => {
  const store = createResultStore('sqlite::memory:');
  assert.equal(store.kind, 'sqlite');
  assert.equal(await store.save(result('m1')), true);
  assert.equal((await store.get('m1'))?.request_id, 'm1');
  await store.close();
});

test('a file that cannot be opened makes waitUntilReady fail with STORE_UNAVAILABLE, and a later call retries', async (t) => {
  const { dir, cleanup } = tempDir('sightline-store-');
  t.after(cleanup);
  // The database's "directory" is a plain file, so it cannot be created.
  const blocker = join(dir, 'blocker');
  writeFileSync(blocker, '');
  const store = createResultStore(`sqlite:${join(blocker, 'results.db')}`);
  try {
    await assert.rejects(store.waitUntilReady(), { code: 'STORE_UNAVAILABLE' });
    await assert.rejects(store.save(result('x')), { code: 'STORE_UNAVAILABLE' });
    rmSync(blocker);
    mkdirSync(blocker);
    await store.waitUntilReady();
    assert.equal(await store.save(result('x')), true);
  } finally {
    await store.close();
  }
});
