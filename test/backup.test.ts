// sightline backup / restore against a running embedded server: results, queued
// jobs, API keys and snapshots come back the same in a server on the restored data dir.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './helpers/fixtures.js';
import { createApiKeyStore } from '../src/auth/index.js';
import { createBackup, ManifestError, restoreBackup, RestoreRefused } from '../src/backup/index.js';
import { defaultConfig } from '../src/config/load.js';
import { storeUrl } from '../src/config/locations.js';
import { connect } from 'node:net';
import { CLI, cleanups, freshDatabase, PG_URL, ROOT, SightlineProcess, waitFor } from './helpers/cli-process.js';
import { requireOrSkip } from './helpers/requirements.js';
import { installed } from '../src/backup/postgres-backup.js';

const run = promisify(execFile);

/** Runs `sightline …`; resolves with its exit code and output (never rejects on a non-zero exit). */
async function sightline(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [...CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

type Result = { request_id: string; verdict: string };

async function allResults(base: string, headers: Record<string, string>): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  let cursor: string | null = null;
  do {
    const res: Response = await fetch(`${base}/v1/results?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { headers });
    assert.equal(res.status, 200, await res.clone().text());
    const page = (await res.json()) as { results: Result[]; next_cursor: string | null };
    for (const r of page.results) out.set(r.request_id, r);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

test('backup of a running embedded server, restore into an empty data dir: the same results, jobs, keys and snapshots', async (t) => {
  const defer = cleanups(t);
  const tmp = tempDir('sightline-backup-');
  defer(tmp.cleanup);
  const data = join(tmp.dir, 'data');
  const restoredDir = join(tmp.dir, 'restored');
  const archive = join(tmp.dir, 'site.tar');

  const created = await sightline('keys', 'create', '--name', 'line-3-camera', '--role', 'admin', '--data-dir', data);
  assert.equal(created.code, 0, created.stderr);
  const auth = { authorization: `Bearer ${created.stdout.trim()}` };
  const serve = (name: string, dir: string) => {
    const p = new SightlineProcess(name, [
      'serve',
      ...['--host', '127.0.0.1', '--port', '0', '--auth', 'on', '--no-worker', '--data-dir', dir],
      ...['--instances', '1', '--intra-op-threads', '1', '--log-level', 'info'],
    ]);
    defer(() => p.kill());
    return p;
  };
  const ready = async (p: SightlineProcess) => {
    const base = await p.baseUrl(60_000);
    await waitFor(
      async () => (await fetch(`${base}/readyz`)).status === 200,
      () => `/readyz 200\n${p.tail()}`,
      60_000,
    );
    return base;
  };

  const original = serve('original', data);
  const base = await ready(original);
  const detect = async (sample: string) => {
    const res = await fetch(`${base}/v1/detect?line=line-3`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'image/jpeg' },
      body: readFileSync(join(ROOT, 'samples', sample)),
    });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as Result;
  };
  const ng: Result[] = [];
  for (const sample of ['ng-01.jpg', 'ng-02.jpg', 'ng-03.jpg', 'ng-04.jpg', 'ok-01.jpg']) {
    const r = await detect(sample);
    if (r.verdict === 'ng') ng.push(r);
  }
  assert.ok(ng.length >= 3, `${ng.length} NG results: the samples should mostly be NG`);
  // Snapshots are written in the background: wait until every NG image is served.
  const images = new Map<string, Buffer>();
  for (const r of ng) {
    const bytes = await waitFor(
      async () => {
        const res = await fetch(`${base}/v1/results/${r.request_id}/image`, { headers: auth });
        return res.status === 200 ? Buffer.from(await res.arrayBuffer()) : undefined;
      },
      `the snapshot of ${r.request_id}`,
      10_000,
    );
    images.set(r.request_id, bytes);
  }
  // Jobs stay queued: this server has no worker.
  const jobs: string[] = [];
  for (const sample of ['ng-05.jpg', 'ok-02.jpg', 'ng-06.jpg']) {
    const res = await fetch(`${base}/v1/jobs?line=line-3`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'image/jpeg' },
      body: readFileSync(join(ROOT, 'samples', sample)),
    });
    assert.equal(res.status, 202, await res.clone().text());
    jobs.push(((await res.json()) as { job_id: string }).job_id);
  }
  const before = await allResults(base, auth);
  // Requests keep coming while the backup runs: it must not stop them or break on them.
  let writing = true;
  let during = 0;
  const load = (async () => {
    const samples = ['ng-07.jpg', 'ng-08.jpg', 'ok-01.jpg'];
    while (writing) {
      await detect(samples[during % samples.length]!);
      during++;
    }
  })();
  const backup = await sightline('backup', '--out', archive, '--data-dir', data);
  writing = false;
  await load;
  assert.equal(backup.code, 0, backup.stderr);
  assert.ok(during > 0, 'requests were answered during the backup');
  assert.match(backup.stdout, /wrote .*site\.tar/);
  assert.ok(!existsSync(`${archive}.partial`), 'no partial file left behind');
  // Any tar lists it: manifest first, checksums last.
  const listing = (await run('tar', ['-tf', archive])).stdout.trim().split('\n');
  assert.equal(listing[0], 'manifest.json');
  assert.equal(listing.at(-1), 'checksums.json');
  for (const name of ['sqlite/results.db', 'sqlite/queue.db', 'models.json']) assert.ok(listing.includes(name), `${name} in ${listing.join(', ')}`);
  assert.ok(listing.some((n) => n.startsWith('snapshots/images/')));
  const after = await allResults(base, auth);

  // Restore refuses a non-empty data dir, and names the way out.
  const busy = await sightline('restore', '--in', archive, '--data-dir', data);
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /not empty.*--force/);

  const restore = await sightline('restore', '--in', archive, '--data-dir', restoredDir);
  assert.equal(restore.code, 0, restore.stderr);
  assert.match(restore.stdout, /restored /);
  assert.deepEqual(
    readdirSync(restoredDir)
      .filter((n) => !n.endsWith('-wal') && !n.endsWith('-shm'))
      .sort(),
    ['queue.db', 'results.db', 'snapshots'],
  );
  await original.kill();

  const restored = serve('restored', restoredDir);
  const rbase = await ready(restored);
  // The key still authenticates; no key is still refused.
  assert.equal((await fetch(`${rbase}/v1/results`)).status, 401);
  const back = await allResults(rbase, auth);
  // Everything stored before the backup, identical; what came during it, as stored, or not there.
  for (const [id, r] of before) assert.deepEqual(back.get(id), r, `result ${id}`);
  for (const [id, r] of back) assert.deepEqual(r, after.get(id), `result ${id} restored as it was stored`);
  for (const id of jobs) {
    const res = await fetch(`${rbase}/v1/jobs/${id}`, { headers: auth });
    assert.equal(res.status, 200, `job ${id}`);
    assert.equal(((await res.json()) as { state: string }).state, 'queued', `job ${id} still queued`);
  }
  for (const [id, bytes] of images) {
    const res = await fetch(`${rbase}/v1/results/${id}/image`, { headers: auth });
    assert.equal(res.status, 200, `image of ${id}`);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes), `image of ${id}: same bytes`);
  }
  process.stdout.write(`# backup: ${before.size} results before, ${during} detections during, ${back.size} restored; ${images.size} snapshots\n`);
});

test('restore checks the archive before writing: a newer format, a damaged entry and a file that is no backup are refused, nothing written', async (t) => {
  const defer = cleanups(t);
  const tmp = tempDir('sightline-restore-');
  defer(tmp.cleanup);
  const config = (dataDir: string) => defaultConfig({ data_dir: dataDir, models_dir: join(tmp.dir, 'no-models') });
  const data = join(tmp.dir, 'data');
  // A site with one API key and nothing else: enough for the archive checks, no server needed.
  const keys = createApiKeyStore(storeUrl(config(data)));
  await keys.create('k', ['viewer']);
  await keys.close();
  const archive = join(tmp.dir, 'site.tar');
  const made = await createBackup({ config: config(data), out: archive, sightlineVersion: 'test' });
  assert.equal(made.manifest.version, 1);
  assert.deepEqual(
    made.entries.map((e) => e.name),
    ['sqlite/results.db', 'models.json'],
    'no queue.db yet: nothing queued, nothing copied',
  );
  const bytes = readFileSync(archive);

  const refused = async (name: string, content: Buffer, expected: RegExp) => {
    const file = join(tmp.dir, name);
    writeFileSync(file, content);
    const target = join(tmp.dir, `into-${name}`);
    await assert.rejects(restoreBackup({ config: config(target), input: file }), (err: Error) => {
      assert.ok(err instanceof ManifestError || err instanceof RestoreRefused, `${name}: ${err.stack}`);
      assert.match(err.message, expected);
      return true;
    });
    assert.ok(!existsSync(target) || readdirSync(target).length === 0, `${name}: nothing left in ${target}`);
  };
  // The manifest is the first entry: its content follows the first header block.
  const newer = Buffer.from(bytes);
  const at = newer.indexOf('"version": 1', 512);
  assert.ok(at > 0 && at < 2048);
  newer.write('"version": 9', at);
  await refused('newer.tar', newer, /backup format 9 is newer than this sightline reads \(1\)/);
  const damaged = Buffer.from(bytes);
  const db = damaged.indexOf('SQLite format 3');
  damaged[db + 5000] = damaged[db + 5000]! ^ 0xff;
  await refused('damaged.tar', damaged, /sqlite\/results\.db is damaged/);
  await refused('not-a-backup.tar', Buffer.from('hello, not a tar\n'.repeat(100)), /not a Sightline backup/);
  await refused('cut.tar', bytes.subarray(0, bytes.length - 3000), /truncated|cut short/);
  await assert.rejects(restoreBackup({ config: config(data), input: archive }), /data dir .* is not empty.*--force/);

  // --force restores over what is there: a key made after the backup is gone again.
  const later = createApiKeyStore(storeUrl(config(data)));
  await later.create('made-after-the-backup', ['viewer']);
  await later.close();
  const forced = await restoreBackup({ config: config(data), input: archive, force: true });
  assert.deepEqual(forced.restored, [join(data, 'results.db')]);
  const after = createApiKeyStore(storeUrl(config(data)));
  defer(() => after.close());
  assert.deepEqual(
    (await after.list()).map((k) => k.name),
    ['k'],
  );
});

async function pgAvailable(): Promise<boolean> {
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

test('a PostgreSQL store is backed up with pg_dump and restored with psql into an empty database', async (t) => {
  if (!requireOrSkip(t, await pgAvailable(), `PostgreSQL at ${new URL(PG_URL).host}`)) return;
  if (!requireOrSkip(t, installed('pg_dump') && installed('psql'), 'pg_dump and psql (postgresql-client)')) return;
  const defer = cleanups(t);
  const tmp = tempDir('sightline-backup-pg-');
  defer(tmp.cleanup);
  const source = await freshDatabase(defer, 'sightline_backup_src');
  const target = await freshDatabase(defer, 'sightline_backup_dst');
  const config = (url: string, dir: string) => defaultConfig({ store_url: url, data_dir: join(tmp.dir, dir), models_dir: join(tmp.dir, 'no-models') });
  const keys = createApiKeyStore(source.url);
  const key = await keys.create('pg-camera', ['ingest']);
  await keys.close();
  const archive = join(tmp.dir, 'pg.tar');
  const made = await createBackup({ config: config(source.url, 'a'), out: archive, sightlineVersion: 'test' });
  assert.equal(made.manifest.store.kind, 'postgres');
  assert.ok(made.entries.some((e) => e.name === 'postgres/store.sql'));
  const restored = await restoreBackup({ config: config(target.url, 'b'), input: archive });
  assert.ok(restored.restored.includes('PostgreSQL schema public'));
  const back = createApiKeyStore(target.url);
  defer(() => back.close());
  assert.equal((await back.verify(key.key))?.name, 'pg-camera', 'the key authenticates against the restored database');
  // A second restore into the now non-empty schema is refused.
  await assert.rejects(restoreBackup({ config: config(target.url, 'c'), input: archive }), /already has tables/);
});
