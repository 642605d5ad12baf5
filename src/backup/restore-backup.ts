import { mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import { queueUrl, snapshotsDir, storeUrl } from '../config/locations.js';
import {
  CHECKSUMS_ENTRY,
  MANIFEST_ENTRY,
  ManifestError,
  parseChecksums,
  parseManifest,
  safeEntryName,
  type BackupChecksums,
  type BackupManifest,
} from './manifest.js';
import { modelInventory, type ModelInventory } from './model-inventory.js';
import { restorePgDump, schemaHasTables } from './postgres-backup.js';
import { sqliteFile } from './sqlite-backup.js';
import { readTar, TarFormatError } from './tar.js';

export interface RestoreOptions {
  /** The config the restored server will run with (absolute data_dir and models_dir). */
  config: Config;
  input: string;
  /** Restore over what is there (SQLite files and snapshots are replaced). */
  force?: boolean;
  note?: (message: string) => void;
}

/** A restore that would overwrite data, or an archive that does not fit this config: nothing was written. */
export class RestoreRefused extends Error {}

export interface RestoreSummary {
  manifest: BackupManifest;
  restored: string[];
  /** Models of the backup that are missing or differ in models_dir now. */
  modelDifferences: string[];
}

async function nonEmpty(path: string): Promise<boolean> {
  try {
    const info = await stat(path);
    return info.isDirectory() ? (await readdir(path)).length > 0 : true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Removes a SQLite database with its WAL and shared-memory files (stale ones would be replayed over the restored copy). */
async function removeSqlite(path: string): Promise<void> {
  for (const suffix of ['', '-wal', '-shm', '-journal']) await rm(`${path}${suffix}`, { force: true });
}

function compareModels(backup: ModelInventory, now: ModelInventory): string[] {
  const current = new Map(now.models.map((m) => [`${m.name}:${m.version}`, m]));
  const out: string[] = [];
  for (const m of backup.models) {
    const id = `${m.name}:${m.version}`;
    const here = current.get(id);
    if (!here) out.push(`${id} is not in ${now.models_dir}`);
    else if (JSON.stringify(here.files) !== JSON.stringify(m.files)) out.push(`${id} differs from the backup (files or checksums)`);
  }
  return out;
}

/**
 * Restores an archive of createBackup() for `config`: the manifest is checked
 * first (a newer format or another store kind is refused before anything is
 * written); the targets must be empty unless `force`; every entry is unpacked
 * beside its target and its checksum verified, and only when all match are they
 * moved into place. The server must not be running on these files.
 */
export async function restoreBackup(options: RestoreOptions): Promise<RestoreSummary> {
  const { config, force = false } = options;
  const note = options.note ?? (() => undefined);
  let input: FileHandle;
  try {
    input = await open(options.input, 'r');
  } catch (err) {
    throw new RestoreRefused(`cannot read ${options.input}: ${(err as Error).message}`);
  }
  const dataDir = resolve(config.data_dir);
  const storeFile = sqliteFile(storeUrl(config));
  const queueFile = sqliteFile(queueUrl(config));
  const snapshots = snapshotsDir(config);
  const snapshotsStage = `${snapshots}.restoring`;
  const staged = new Map<string, string>();
  const cleanup: string[] = [];
  const entries = readTar(input);
  try {
    const first = await entries.next();
    if (first.done || first.value.name !== MANIFEST_ENTRY) {
      throw new ManifestError(`not a Sightline backup: its first entry is ${first.done ? 'missing' : JSON.stringify(first.value.name)}, not ${MANIFEST_ENTRY}`);
    }
    const manifest = parseManifest(await first.value.read());

    // Does the archive fit this config, and is there nothing to overwrite? Both before any write.
    if (manifest.store.kind === 'sqlite' && !storeFile) {
      throw new RestoreRefused(
        `the backup holds a SQLite result store, but this config's store is ${storeUrl(config)}: restore with a sqlite store_url (or the default)`,
      );
    }
    if (manifest.store.kind === 'postgres' && !storeUrl(config).startsWith('postgres')) {
      throw new RestoreRefused('the backup holds a PostgreSQL result store: restore with store_url set to the (empty) PostgreSQL database');
    }
    const pgSchema = config.store_schema || 'public';
    if (manifest.store.kind === 'postgres' && (await schemaHasTables(storeUrl(config), pgSchema))) {
      throw new RestoreRefused(`PostgreSQL schema ${pgSchema} already has tables: restore into an empty schema (--force does not drop tables)`);
    }
    if (!force) {
      const busy: string[] = [];
      if (await nonEmpty(dataDir)) busy.push(`data dir ${dataDir} is not empty`);
      for (const file of [storeFile, queueFile]) if (file && !resolve(file).startsWith(dataDir) && (await nonEmpty(file))) busy.push(`${file} exists`);
      if (!snapshots.startsWith(dataDir) && (await nonEmpty(snapshots))) busy.push(`snapshots dir ${snapshots} is not empty`);
      if (busy.length > 0) throw new RestoreRefused(`${busy.join('; ')}: restore into an empty data dir, or pass --force to replace what is there`);
    }
    await mkdir(dataDir, { recursive: true });
    const work = await mkdtemp(join(dataDir, '.restore-'));
    cleanup.push(work);

    /** Where an entry is unpacked before it is verified, and its final place (undefined: skipped). */
    const stagingFor = (name: string): { path: string; target: string } | undefined => {
      if (name === 'sqlite/results.db' && storeFile) return { path: `${storeFile}.restoring`, target: storeFile };
      if (name === 'sqlite/queue.db') {
        if (queueFile) return { path: `${queueFile}.restoring`, target: queueFile };
        note(`skipped ${name}: this config's job queue is ${queueUrl(config)}`);
        return undefined;
      }
      if (name.startsWith('snapshots/')) return { path: join(snapshotsStage, name.slice('snapshots/'.length)), target: snapshots };
      if (name === 'models.json') return { path: join(work, 'models.json'), target: '' };
      if (name === 'postgres/store.sql') return { path: join(work, 'store.sql'), target: '' };
      if (name.startsWith('postgres/tables/')) {
        throw new RestoreRefused(
          'this backup holds a JSON export of the PostgreSQL store (pg_dump was not installed where it was made); restoring it is not supported: load postgres/tables/*.jsonl yourself',
        );
      }
      return undefined;
    };

    const seen = new Map<string, { bytes: number; sha256: string }>();
    let checksums: BackupChecksums | undefined;
    for await (const entry of entries) {
      if (entry.name === CHECKSUMS_ENTRY) {
        checksums = parseChecksums(await entry.read());
        continue;
      }
      if (!safeEntryName(entry.name)) throw new ManifestError(`unsafe entry name ${JSON.stringify(entry.name)}`);
      const place = stagingFor(entry.name);
      if (!place) continue;
      // A file target is replaced by its staged file, the snapshots dir by the staged dir.
      const stage = place.target === snapshots ? snapshotsStage : place.path;
      if (place.target && !cleanup.includes(stage)) cleanup.push(stage);
      await mkdir(dirname(place.path), { recursive: true });
      const out = await open(place.path, 'w');
      let sha256: string;
      try {
        sha256 = await entry.copyTo(async (chunk) => {
          await out.write(chunk);
        });
        await out.sync();
      } finally {
        await out.close();
      }
      seen.set(entry.name, { bytes: entry.size, sha256 });
      if (place.target) staged.set(place.target, stage);
    }
    if (!checksums) throw new ManifestError(`the archive has no ${CHECKSUMS_ENTRY}: it was cut short`);
    for (const e of checksums.entries) {
      const got = seen.get(e.name);
      if (!got && stagingFor(e.name) === undefined) continue;
      if (!got) throw new ManifestError(`${e.name} is listed in ${CHECKSUMS_ENTRY} but missing from the archive`);
      if (got.sha256 !== e.sha256 || got.bytes !== e.bytes) throw new ManifestError(`${e.name} is damaged: its checksum does not match`);
    }

    // All verified: move into place, replacing what --force allows.
    const restored: string[] = [];
    for (const [target, from] of staged) {
      if (target === snapshots) await rm(snapshots, { recursive: true, force: true });
      else await removeSqlite(target);
      await mkdir(dirname(target), { recursive: true });
      await rename(from, target);
      restored.push(target);
    }
    if (seen.has('postgres/store.sql')) {
      await restorePgDump(storeUrl(config), pgSchema, join(work, 'store.sql'));
      restored.push(`PostgreSQL schema ${pgSchema}`);
    }
    let modelDifferences: string[] = [];
    if (seen.has('models.json')) {
      const backupModels = JSON.parse(await readFile(join(work, 'models.json'), 'utf8')) as ModelInventory;
      modelDifferences = compareModels(backupModels, await modelInventory(config.models_dir));
    }
    return { manifest, restored, modelDifferences };
  } catch (err) {
    if (err instanceof TarFormatError) throw new ManifestError(`not a Sightline backup: ${err.message}`);
    throw err;
  } finally {
    // A refusal leaves the archive half read: stop reading it before it is closed.
    await entries.return(undefined);
    await input.close();
    // Whatever is still staged (a failure, or the work folder) goes; what was moved into place stays.
    for (const path of cleanup) await rm(path, { recursive: true, force: true });
  }
}
