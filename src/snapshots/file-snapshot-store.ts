import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rmdir, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import type { DetectionResult, ResultSource } from '../protocol/results.js';
import type { LockRetry } from '../store/lock-retry.js';
import { OwnTables } from '../store/own-tables.js';
import { sniffImage } from './content-type.js';
import type { PruneReason } from './metrics.js';
import { snapshotMigrations } from './migrations.js';
import type { LatestFrame, NewSnapshot, PruneOutcome, SnapshotImage, SnapshotRecord, SnapshotStore } from './snapshot-store.js';

export interface SnapshotsTable {
  snapshots: {
    request_id: string;
    line: string;
    camera: string;
    source: string;
    content_type: string;
    path: string;
    /** pg returns BIGINT as a string. */
    bytes: number | string;
    result: string;
    created_at: number | string;
    pruned_at: number | string | null;
    prune_reason: string | null;
  };
}

export interface FileSnapshotStoreOptions {
  /** Absolute directory of the image files and latest frames. */
  dir: string;
  kind: 'sqlite' | 'postgres';
  /** Owned: destroyed by close(). */
  db: Kysely<SnapshotsTable>;
  /** PostgreSQL schema holding the index and its migration bookkeeping. */
  schema?: string;
  /** Retry of writes that lost a lock race (SQLite's single writer, shared with the result store). */
  lockRetry?: LockRetry;
}

/** Rows marked and deleted per statement when pruning. */
const PRUNE_CHUNK = 200;
type Row = SnapshotsTable['snapshots'];

/**
 * Snapshots as files under one directory, indexed by a table in the results'
 * database. The index row is written after the file, so a row always names a
 * whole file; pruning marks rows first and deletes files after, so a reader
 * never serves a file a pruner chose (it may find the file missing: then the
 * snapshot is gone). Several processes may share the directory and the index.
 *
 *   images/<YYYY-MM-DD>/<line>/<request id>-<random>.<ext>   kept images, as received
 *   latest/<line>/<camera>.jpg and .json                    the newest frame per camera
 */
export class FileSnapshotStore implements SnapshotStore {
  readonly dir: string;
  readonly #tables: OwnTables<SnapshotsTable>;
  readonly #db: Kysely<SnapshotsTable>;

  constructor(options: FileSnapshotStoreOptions) {
    this.dir = options.dir;
    this.#tables = new OwnTables(options, { name: 'sightline_snapshots', what: 'snapshot index', migrations: snapshotMigrations });
    this.#db = this.#tables.db;
  }

  waitUntilReady(): Promise<void> {
    return this.#tables.waitUntilReady();
  }

  async put({ result, source, image, at }: NewSnapshot): Promise<boolean> {
    await this.waitUntilReady();
    const { type, ext } = sniffImage(image);
    const day = new Date(at).toISOString().slice(0, 10);
    // A random part: a job retried after a crash inspects again under the same id, and must not overwrite a file a row names.
    const path = join('images', day, result.line, `${fileSafe(result.request_id)}-${randomBytes(4).toString('hex')}.${ext}`);
    const file = join(this.dir, path);
    await mkdir(dirname(file), { recursive: true });
    try {
      await writeFile(file, image, { flag: 'wx' });
    } catch (err) {
      await unlink(file).catch(() => undefined); // a partial file (ENOSPC mid-write)
      throw err;
    }
    let inserted: boolean;
    try {
      inserted = await this.#write(async () => {
        const outcome = await this.#db
          .insertInto('snapshots')
          .values({
            request_id: result.request_id,
            line: result.line,
            camera: result.camera,
            source,
            content_type: type,
            path: toPosix(path),
            bytes: image.length,
            result: JSON.stringify(result),
            created_at: at,
            pruned_at: null,
            prune_reason: null,
          })
          .onConflict((oc) => oc.column('request_id').doNothing())
          .executeTakeFirst();
        return Number(outcome.numInsertedOrUpdatedRows ?? 0n) > 0;
      });
    } catch (err) {
      await unlink(file).catch(() => undefined);
      throw err;
    }
    if (!inserted) await unlink(file).catch(() => undefined);
    return inserted;
  }

  async info(requestId: string): Promise<SnapshotRecord | undefined> {
    const row = await this.#run(() => this.#db.selectFrom('snapshots').selectAll().where('request_id', '=', requestId).executeTakeFirst());
    return row && record(row);
  }

  async get(requestId: string): Promise<SnapshotImage | 'gone' | undefined> {
    const row = await this.#run(() => this.#db.selectFrom('snapshots').selectAll().where('request_id', '=', requestId).executeTakeFirst());
    if (!row) return undefined;
    if (row.pruned_at !== null) return 'gone';
    try {
      const bytes = await readFile(join(this.dir, row.path));
      return { record: record(row), bytes, contentType: row.content_type };
    } catch (err) {
      // Pruned by another process between the read of the row and of the file, or removed by hand.
      if (codeOf(err) === 'ENOENT') return 'gone';
      throw err;
    }
  }

  async liveBytes(): Promise<number> {
    const row = await this.#run(() =>
      this.#db
        .selectFrom('snapshots')
        .select((eb) => eb.fn.coalesce(eb.fn.sum<number | string>('bytes'), eb.lit(0)).as('total'))
        .where('pruned_at', 'is', null)
        .executeTakeFirst(),
    );
    return Number(row?.total ?? 0);
  }

  async pruneToBytes(maxBytes: number, now = Date.now()): Promise<PruneOutcome> {
    const outcome: PruneOutcome = { count: 0, bytes: 0 };
    let kept = await this.liveBytes();
    while (kept > maxBytes) {
      const rows = await this.#run(() =>
        this.#db
          .selectFrom('snapshots')
          .select(['request_id', 'bytes'])
          .where('pruned_at', 'is', null)
          .orderBy('created_at')
          .orderBy('request_id')
          .limit(PRUNE_CHUNK)
          .execute(),
      );
      if (rows.length === 0) break;
      const chosen: string[] = [];
      let left = kept;
      for (const row of rows) {
        if (left <= maxBytes) break;
        chosen.push(row.request_id);
        left -= Number(row.bytes);
      }
      const done = await this.#prune(chosen, 'bytes', now);
      outcome.count += done.count;
      outcome.bytes += done.bytes;
      // Another process pruned some of these (or wrote more): count again rather than trust the arithmetic.
      kept = done.count === chosen.length ? left : await this.liveBytes();
    }
    return outcome;
  }

  async pruneOlderThan(cutoffMs: number, now = Date.now()): Promise<PruneOutcome> {
    const outcome: PruneOutcome = { count: 0, bytes: 0 };
    for (;;) {
      const rows = await this.#run(() =>
        this.#db
          .selectFrom('snapshots')
          .select('request_id')
          .where('pruned_at', 'is', null)
          .where('created_at', '<', cutoffMs)
          .orderBy('created_at')
          .orderBy('request_id')
          .limit(PRUNE_CHUNK)
          .execute(),
      );
      if (rows.length === 0) return outcome;
      const done = await this.#prune(
        rows.map((r) => r.request_id),
        'age',
        now,
      );
      outcome.count += done.count;
      outcome.bytes += done.bytes;
      if (rows.length < PRUNE_CHUNK) return outcome;
    }
  }

  /** Marks the rows pruned (those still kept: another process may have taken some), then deletes their files. */
  async #prune(ids: string[], reason: PruneReason, now: number): Promise<PruneOutcome> {
    if (ids.length === 0) return { count: 0, bytes: 0 };
    const marked = await this.#write(() =>
      this.#db
        .updateTable('snapshots')
        .set({ pruned_at: now, prune_reason: reason })
        .where('request_id', 'in', ids)
        .where('pruned_at', 'is', null)
        .returning(['path', 'bytes'])
        .execute(),
    );
    const dirs = new Set<string>();
    for (const row of marked) {
      const file = join(this.dir, row.path);
      // A file already missing is fine: the row says gone either way.
      await unlink(file).catch(() => undefined);
      dirs.add(dirname(file));
    }
    // Day and line folders emptied by age pruning; a folder still in use refuses (ENOTEMPTY) and stays.
    for (const folder of dirs) {
      await rmdir(folder)
        .then(() => rmdir(dirname(folder)))
        .catch(() => undefined);
    }
    return { count: marked.length, bytes: marked.reduce((sum, r) => sum + Number(r.bytes), 0) };
  }

  async putLatest(result: DetectionResult, jpeg: Buffer, at: number): Promise<void> {
    const folder = join(this.dir, 'latest', result.line);
    await mkdir(folder, { recursive: true });
    const meta: LatestMeta = { line: result.line, camera: result.camera, at, sha1: sha1(jpeg), result };
    // The image first, then what describes it: a reader checks that the two match (sha1) and reads again when not.
    await replaceFile(join(folder, `${result.camera}.jpg`), jpeg);
    await replaceFile(join(folder, `${result.camera}.json`), Buffer.from(JSON.stringify(meta)));
  }

  async latest(line: string, camera?: string): Promise<LatestFrame | undefined> {
    const folder = join(this.dir, 'latest', line);
    let cameraName = camera;
    if (cameraName === undefined) {
      let newest: LatestMeta | undefined;
      for (const name of await readdir(folder).catch(() => [] as string[])) {
        if (!name.endsWith('.json')) continue;
        const meta = await readMeta(join(folder, name));
        if (meta && (!newest || meta.at > newest.at)) newest = meta;
      }
      if (!newest) return undefined;
      cameraName = newest.camera;
    }
    // A writer may replace the pair between our two reads: the sha1 tells, and the next read gets the new pair.
    for (let attempt = 0; attempt < 5; attempt++) {
      const meta = await readMeta(join(folder, `${cameraName}.json`));
      if (!meta) return undefined;
      const jpeg = await readFile(join(folder, `${cameraName}.jpg`)).catch(() => undefined);
      if (!jpeg) return undefined;
      if (sha1(jpeg) === meta.sha1) return { line: meta.line, camera: meta.camera, at: meta.at, result: meta.result, jpeg };
      await delay(5);
    }
    return undefined;
  }

  close(): Promise<void> {
    return this.#tables.close();
  }

  #run<T>(fn: () => Promise<T>): Promise<T> {
    return this.#tables.read(fn);
  }

  #write<T>(fn: () => Promise<T>): Promise<T> {
    return this.#tables.write(fn);
  }
}

interface LatestMeta {
  line: string;
  camera: string;
  at: number;
  sha1: string;
  result: DetectionResult;
}

async function readMeta(file: string): Promise<LatestMeta | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LatestMeta;
  } catch {
    return undefined;
  }
}

/** Write beside, then rename over: a reader sees the old file or the new one, never a part. */
async function replaceFile(file: string, bytes: Buffer): Promise<void> {
  const temp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, bytes);
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

function record(row: Row): SnapshotRecord {
  return {
    request_id: row.request_id,
    line: row.line,
    camera: row.camera,
    source: row.source as ResultSource,
    content_type: row.content_type,
    bytes: Number(row.bytes),
    created_at: new Date(Number(row.created_at)),
    pruned_at: row.pruned_at === null ? null : new Date(Number(row.pruned_at)),
    prune_reason: row.prune_reason as PruneReason | null,
    result: JSON.parse(row.result) as DetectionResult,
  };
}

/** Request ids are 1–128 of A–Z a–z 0–9 . _ : - (or a UUID); ':' is not a file-name character everywhere. */
const fileSafe = (id: string) => id.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 128);
const toPosix = (path: string) => path.split('\\').join('/');
const sha1 = (bytes: Buffer) => createHash('sha1').update(bytes).digest('hex');
const codeOf = (err: unknown) => (err as { code?: unknown } | null)?.code;
