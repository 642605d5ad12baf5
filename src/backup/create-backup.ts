import { existsSync } from 'node:fs';
import { mkdtemp, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import type { Config } from '../config/schema.js';
import { queueUrl, snapshotsDir, storeUrl } from '../config/locations.js';
import { BACKUP_FORMAT, BACKUP_FORMAT_VERSION, CHECKSUMS_ENTRY, MANIFEST_ENTRY, type BackupManifest, type ManifestEntry } from './manifest.js';
import { modelInventory } from './model-inventory.js';
import { backupPostgres } from './postgres-backup.js';
import { backupSqlite, sqliteFile } from './sqlite-backup.js';
import { TarWriter } from './tar.js';

export interface BackupOptions {
  /** The config as `sightline serve` resolves it (absolute models_dir and data_dir). */
  config: Config;
  out: string;
  sightlineVersion: string;
  /** Progress and warnings for the operator. */
  note?: (message: string) => void;
}

export interface BackupSummary {
  manifest: BackupManifest;
  entries: ManifestEntry[];
  bytes: number;
}

/** Every file under `dir` (relative, `/`-separated), but the temporary files of writes in progress. */
async function listFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true, recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return (
    entries
      .filter((e) => e.isFile() && !e.name.endsWith('.tmp'))
      // parentPath is Node ≥ 20.12; `path` is its older name.
      .map((e) =>
        relative(dir, join(e.parentPath ?? (e as { path?: string }).path ?? dir, e.name))
          .split(sep)
          .join('/'),
      )
      .sort()
  );
}

/** Adds a file to the archive; false when it vanished first (a snapshot pruned meanwhile). */
async function addFile(tar: TarWriter, name: string, path: string): Promise<{ bytes: number; sha256: string } | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const info = await handle.stat();
    const sha256 = await tar.addFile(name, handle, info.size, info.mtime);
    return { bytes: info.size, sha256 };
  } finally {
    await handle.close();
  }
}

/**
 * Writes one archive of what a Sightline site holds, safe while its server runs:
 * the job queue's SQLite database, then the result store's (results, API keys,
 * lines, the snapshot index, history, outbox: online backups, each consistent),
 * then the snapshot files, which are written before their index rows, so every
 * row in the copy names a file that was there; a file pruned in between is
 * left out and its row reads as pruned. PostgreSQL: pg_dump of the schema, or
 * a JSON export. The model repository only as a list with checksums.
 * Written to `<out>.partial` and renamed: `out` is whole or absent.
 */
export async function createBackup(options: BackupOptions): Promise<BackupSummary> {
  const { config, out } = options;
  const note = options.note ?? (() => undefined);
  const work = await mkdtemp(join(dirname(out), `.${basename(out)}.work-`));
  const partial = `${out}.partial`;
  const file = await open(partial, 'w');
  const entries: ManifestEntry[] = [];
  try {
    const tar = new TarWriter(file);
    const store = storeUrl(config);
    const queue = queueUrl(config);
    const storeFile = sqliteFile(store);
    const queueFile = sqliteFile(queue);
    if (!storeFile && !store.startsWith('postgres')) throw new Error(`the result store ${store} is not on disk: nothing to back up`);
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      version: BACKUP_FORMAT_VERSION,
      created_at: new Date().toISOString(),
      sightline_version: options.sightlineVersion,
      store: storeFile ? { kind: 'sqlite' } : { kind: 'postgres', schema: config.store_schema || 'public' },
      queue: { kind: queueFile ? 'sqlite' : queue.startsWith('amqp') ? 'amqp' : 'memory' },
    };
    await tar.addBuffer(MANIFEST_ENTRY, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));

    // Queue before results: a job finished in between is queued in the copy and runs again
    // after a restore, rather than being done in the copy with its result missing.
    if (queueFile && !existsSync(queueFile)) {
      note(`job queue: ${queueFile} does not exist yet (no job was ever queued): nothing to copy`);
    } else if (queueFile) {
      const copy = join(work, 'queue.db');
      await backupSqlite(queueFile, copy);
      entries.push({ name: 'sqlite/queue.db', role: 'sqlite', target: 'queue', ...(await addFile(tar, 'sqlite/queue.db', copy))! });
      note(`job queue: ${queueFile}`);
    } else if (manifest.queue.kind === 'amqp') {
      note('job queue: RabbitMQ holds the queued jobs and is not backed up (their states are in the store)');
    }
    if (storeFile && !existsSync(storeFile)) {
      throw new Error(`the result store ${storeFile} does not exist: is data_dir (or store_url) the server's?`);
    }
    if (storeFile) {
      const copy = join(work, 'results.db');
      await backupSqlite(storeFile, copy);
      entries.push({ name: 'sqlite/results.db', role: 'sqlite', target: 'results', ...(await addFile(tar, 'sqlite/results.db', copy))! });
      note(`result store: ${storeFile}`);
    } else {
      const parts = await backupPostgres(store, manifest.store.schema!, work, note);
      for (const part of parts) {
        const name = part.role === 'pg_dump' ? 'postgres/store.sql' : `postgres/tables/${part.table}.jsonl`;
        entries.push({ name, role: part.role, ...(part.table ? { table: part.table } : {}), ...(await addFile(tar, name, part.file))! });
      }
      note(`result store: PostgreSQL schema ${manifest.store.schema} (${parts[0]?.role === 'pg_dump' ? 'pg_dump' : `${parts.length} tables as JSON`})`);
    }

    const snapshots = snapshotsDir(config);
    let kept = 0;
    for (const rel of await listFiles(snapshots)) {
      const name = `snapshots/${rel}`;
      const added = await addFile(tar, name, join(snapshots, rel));
      if (!added) continue;
      entries.push({ name, role: 'snapshot', ...added });
      kept++;
    }
    note(`snapshots: ${kept} files from ${snapshots}`);

    const models = await modelInventory(config.models_dir);
    const modelsJson = Buffer.from(`${JSON.stringify(models, null, 2)}\n`);
    entries.push({ name: 'models.json', role: 'models', bytes: modelsJson.length, sha256: await tar.addBuffer('models.json', modelsJson) });
    note(`models: ${models.models.map((m) => `${m.name}:${m.version}`).join(', ') || 'none'} (checksums only)`);

    await tar.addBuffer(CHECKSUMS_ENTRY, Buffer.from(`${JSON.stringify({ entries }, null, 2)}\n`));
    await tar.end();
    await file.sync();
    await file.close();
    await rename(partial, out);
    return { manifest, entries, bytes: (await stat(out)).size };
  } catch (err) {
    await file.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw err;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
