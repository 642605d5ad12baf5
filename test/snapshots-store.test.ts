import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { openDatabase } from '../src/store/open-database.js';
import { createResultStore } from '../src/store/index.js';
import { FileSnapshotStore, SnapshotService, snapshotMetrics, type SnapshotStore, type SnapshotsTable } from '../src/snapshots/index.js';
import { createLogger } from '../src/logger.js';
import { LogCapture, solidImage, tempDir } from './helpers/fixtures.js';
import { POSTGRES_URL, POSTGRES_WHAT, postgresSchemas } from './helpers/postgres-schemas.js';
import { requireOrSkip } from './helpers/requirements.js';
import { fakeResult, folderBytes, noiseJpeg } from './snapshots-helpers.js';

/** Opens a store on one database and folder; a second call gives another process's view of the same. */
type Opener = (dir: string) => SnapshotStore;

function snapshotStoreContract(name: string, setup: (t: TestContext) => Promise<{ open: Opener; cleanup: () => Promise<void> } | undefined>) {
  describe(`snapshot store: ${name}`, () => {
    async function withStores(t: TestContext, run: (a: SnapshotStore, b: SnapshotStore, dir: string) => Promise<void>) {
      const backend = await setup(t);
      if (!backend) return;
      const tmp = tempDir('sightline-snapshot-store-');
      const a = backend.open(tmp.dir);
      const b = backend.open(tmp.dir);
      try {
        await run(a, b, tmp.dir);
      } finally {
        await a.close();
        await b.close();
        await backend.cleanup();
        tmp.cleanup();
      }
    }

    test('put, get and info: the bytes as received, their type, the result; a second put of the same result is refused', async (t) => {
      await withStores(t, async (store, _other, dir) => {
        const png = await solidImage(40, 30, 'png');
        const result = {
          ...fakeResult('r-1', 'ng', 'press-1', 'cam-2'),
          detections: [{ label: 'scratch', class_id: 0, score: 0.9, box: { x1: 1, y1: 2, x2: 3, y2: 4 } }],
        };
        assert.equal(await store.put({ result, source: 'sync', image: png, at: 1_700_000_000_000 }), true);
        const got = await store.get('r-1');
        assert.ok(got && got !== 'gone');
        assert.ok(got.bytes.equals(png));
        assert.equal(got.contentType, 'image/png');
        assert.deepEqual(got.record.result, result);
        assert.equal(got.record.line, 'press-1');
        assert.equal(got.record.camera, 'cam-2');
        assert.equal(got.record.bytes, png.length);
        assert.equal(got.record.created_at.getTime(), 1_700_000_000_000);
        assert.equal(got.record.pruned_at, null);
        assert.equal(await store.get('nobody'), undefined);

        assert.equal(await store.put({ result, source: 'job', image: await solidImage(8, 8, 'jpeg'), at: 1_700_000_000_001 }), false);
        assert.equal((await store.info('r-1'))?.source, 'sync', 'the first one stays');
        assert.equal(folderBytes(join(dir, 'images')), png.length, 'no file of the refused one is left');
        assert.equal(await store.liveBytes(), png.length);
      });
    });

    test('pruning to a byte budget takes the oldest first; age pruning takes those before the cutoff; rows stay, marked gone', async (t) => {
      await withStores(t, async (store, other, dir) => {
        const images = await Promise.all([1, 2, 3, 4, 5, 6].map((seed) => noiseJpeg(16 + seed, 16, seed)));
        // Written out of order: created_at decides, not the order of writing.
        for (const i of [3, 0, 5, 1, 4, 2])
          await store.put({ result: fakeResult(`s-${i}`, 'ng'), source: 'stream', image: images[i]!, at: 1_000_000 + i * 1000 });
        const total = images.reduce((sum, i) => sum + i.length, 0);
        assert.equal(await other.liveBytes(), total, 'every process sees the same index');

        const budget = total - images[0]!.length - images[1]!.length;
        const outcome = await other.pruneToBytes(budget, 5_000_000);
        assert.deepEqual(outcome, { count: 2, bytes: images[0]!.length + images[1]!.length });
        assert.equal(await store.get('s-0'), 'gone', 'pruned by another process');
        assert.equal(await store.get('s-1'), 'gone');
        const info = await store.info('s-0');
        assert.equal(info?.prune_reason, 'bytes');
        assert.equal(info?.pruned_at?.getTime(), 5_000_000);
        assert.ok((await store.get('s-2')) !== 'gone');
        assert.equal(await store.liveBytes(), budget);
        assert.equal(folderBytes(join(dir, 'images')), budget);
        assert.deepEqual(await store.pruneToBytes(budget), { count: 0, bytes: 0 }, 'nothing more to do');

        const aged = await store.pruneOlderThan(1_000_000 + 4 * 1000);
        assert.equal(aged.count, 2, 's-2 and s-3');
        assert.equal((await store.info('s-3'))?.prune_reason, 'age');
        assert.equal((await store.info('s-0'))?.prune_reason, 'bytes', 'an earlier prune is kept as it was');
        assert.ok((await store.get('s-4')) !== 'gone');
        assert.equal(await store.liveBytes(), images[4]!.length + images[5]!.length);

        await store.pruneToBytes(0);
        assert.equal(await store.liveBytes(), 0);
        assert.deepEqual(readdirSync(join(dir, 'images')), [], 'emptied day folders are removed');
        for (let i = 0; i < 6; i++) assert.ok(await store.info(`s-${i}`), `row s-${i} kept`);
      });
    });

    test('a file removed behind the index reads as gone', async (t) => {
      await withStores(t, async (store, _other, dir) => {
        await store.put({ result: fakeResult('lost', 'ng'), source: 'sync', image: await solidImage(8, 8, 'jpeg'), at: Date.now() });
        rmSync(join(dir, 'images'), { recursive: true });
        assert.equal(await store.get('lost'), 'gone');
      });
    });

    test('latest frames: per camera, the newest across cameras, replaced whole', async (t) => {
      await withStores(t, async (store, other) => {
        assert.equal(await store.latest('l1'), undefined);
        const a = await solidImage(20, 10, 'jpeg');
        const b = await noiseJpeg(30, 10, 7);
        await store.putLatest(fakeResult('a-1', 'ok', 'l1', 'c1'), a, 1000);
        await store.putLatest(fakeResult('b-1', 'ng', 'l1', 'c2'), b, 2000);
        assert.equal((await other.latest('l1'))?.result.request_id, 'b-1');
        const c1 = await other.latest('l1', 'c1');
        assert.ok(c1?.jpeg.equals(a));
        assert.equal(c1?.at, 1000);
        await store.putLatest(fakeResult('a-2', 'ok', 'l1', 'c1'), b, 3000);
        assert.equal((await other.latest('l1'))?.result.request_id, 'a-2');
        assert.ok((await other.latest('l1', 'c1'))?.jpeg.equals(b));
        assert.equal(await other.latest('l1', 'c3'), undefined);
        assert.equal(await other.latest('l2'), undefined);
      });
    });
  });
}

snapshotStoreContract('sqlite', async () => {
  const db = tempDir('sightline-snapshot-db-');
  const url = `sqlite:${join(db.dir, 'results.db')}`;
  return {
    open: (dir) => {
      const { kind, db: kysely, lockRetry } = openDatabase<SnapshotsTable>(url);
      return new FileSnapshotStore({ dir, kind, db: kysely, ...(lockRetry ? { lockRetry } : {}) });
    },
    cleanup: async () => db.cleanup(),
  };
});

const pgs = postgresSchemas('sightline_snapshots');
snapshotStoreContract('postgres', async (t) => {
  if (!requireOrSkip(t, pgs.available, POSTGRES_WHAT)) return undefined;
  const schema = pgs.schema();
  return {
    open: (dir) => {
      const { kind, db } = openDatabase<SnapshotsTable>(POSTGRES_URL, { schema, poolSize: 2 });
      return new FileSnapshotStore({ dir, kind, db, schema });
    },
    cleanup: async () => {
      await pgs.admin.query(`drop schema if exists "${schema}" cascade`);
    },
  };
});

test('postgres: the index lives beside the results in the store schema, with its own migration table', async (t) => {
  if (!requireOrSkip(t, pgs.available, POSTGRES_WHAT)) return;
  const schema = pgs.schema('shared');
  const tmp = tempDir();
  const results = createResultStore(POSTGRES_URL, { schema, poolSize: 2 });
  const { kind, db } = openDatabase<SnapshotsTable>(POSTGRES_URL, { schema, poolSize: 2 });
  const snapshots = new FileSnapshotStore({ dir: tmp.dir, kind, db, schema });
  t.after(async () => {
    await results.close();
    await snapshots.close();
    tmp.cleanup();
  });
  await Promise.all([results.waitUntilReady(), snapshots.waitUntilReady()]);
  const { rows } = await pgs.admin.query<{ table_name: string }>('select table_name from information_schema.tables where table_schema = $1', [schema]);
  const tables = rows.map((r) => r.table_name);
  for (const name of ['results', 'snapshots', 'sightline_results_migration', 'sightline_snapshots_migration']) assert.ok(tables.includes(name), name);
});

test('sqlite: beside the results in one file, each with its own migrations', async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.cleanup());
  const url = `sqlite:${join(tmp.dir, 'results.db')}`;
  const results = createResultStore(url);
  const { kind, db, lockRetry } = openDatabase<SnapshotsTable>(url);
  const snapshots = new FileSnapshotStore({ dir: tmp.dir, kind, db, ...(lockRetry ? { lockRetry } : {}) });
  t.after(async () => {
    await results.close();
    await snapshots.close();
  });
  await Promise.all([results.waitUntilReady(), snapshots.waitUntilReady()]);
  // Either order of start-up leaves both complete.
  await results.save({ ...fakeResult('both', 'ng'), source: 'sync' });
  await snapshots.put({ result: fakeResult('both', 'ng'), source: 'sync', image: await solidImage(8, 8, 'jpeg'), at: Date.now() });
  assert.equal((await results.get('both'))?.verdict, 'ng');
  assert.ok((await snapshots.get('both')) !== undefined);
});

test('after a failed write the service pauses, then writes again and says so once', async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.cleanup());
  const blocker = join(tmp.dir, 'blocker');
  writeFileSync(blocker, 'x');
  const { kind, db, lockRetry } = openDatabase<SnapshotsTable>(`sqlite:${join(tmp.dir, 'results.db')}`);
  const store = new FileSnapshotStore({ dir: join(blocker, 'snapshots'), kind, db, ...(lockRetry ? { lockRetry } : {}) });
  const logs = new LogCapture();
  const registry = new Registry();
  const metrics = snapshotMetrics(registry);
  let now = 1_000_000;
  const service = new SnapshotService(
    store,
    { enabled: true, okSampleRate: 0, maxBytes: 1e9, retentionMs: 1e12, maxPending: 10, latestIntervalMs: 1e9, retryAfterMs: 5_000 },
    { logger: createLogger('info', logs), metrics, now: () => now },
  );
  t.after(() => service.close());
  const image = await solidImage(8, 8, 'jpeg');
  const frame = (id: string) => ({ source: 'sync' as const, result: fakeResult(id, 'ng'), image, at: now });
  const value = async (reason: string) => (await metrics.skipped.get()).values.find((v) => v.labels.reason === reason)?.value;

  service.onInspected(frame('x-1'));
  await service.idle();
  service.onInspected(frame('x-2')); // within the pause: not even tried
  await service.idle();
  assert.equal(await value('write_failed'), 2);
  assert.equal(logs.lines.filter((l) => l.event === 'snapshot_write_failed').length, 1);

  rmSync(blocker);
  service.onInspected(frame('x-3')); // still paused
  await service.idle();
  now += 5_001;
  service.onInspected(frame('x-4'));
  await service.idle();
  assert.equal(await value('write_failed'), 3);
  assert.equal((await metrics.written.get()).values[0]?.value, 1);
  assert.ok(existsSync(join(blocker, 'snapshots', 'images')));
  assert.equal(logs.lines.filter((l) => l.event === 'snapshot_write_recovered').length, 1);
  assert.ok((await store.get('x-4')) !== undefined);
  assert.equal(await store.get('x-2'), undefined);
});
