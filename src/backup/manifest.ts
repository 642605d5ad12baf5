/**
 * A backup archive is a tar: `manifest.json` first (format, version, what kind
 * of store and queue), checked before anything is restored; the data entries;
 * `checksums.json` last, with every entry's size and sha256, known only once
 * the entries are written (files are read once, in one pass).
 */

export const BACKUP_FORMAT = 'sightline-backup';
/** Raised when the layout changes in a way an older `sightline restore` would misread. */
export const BACKUP_FORMAT_VERSION = 1;
export const MANIFEST_ENTRY = 'manifest.json';
export const CHECKSUMS_ENTRY = 'checksums.json';

/** What an archive entry is restored as. */
export type EntryRole =
  /** A SQLite database file (online backup): `target` says which one. */
  | 'sqlite'
  /** A snapshot file, under the snapshots directory at its path after `snapshots/`. */
  | 'snapshot'
  /** The model repository's manifest (models.json): for checking, never restored over models_dir. */
  | 'models'
  /** A plain-SQL pg_dump of the PostgreSQL store's schema. */
  | 'pg_dump'
  /** One PostgreSQL table as JSON rows (when pg_dump is not installed). */
  | 'pg_table';

export interface ManifestEntry {
  name: string;
  role: EntryRole;
  bytes: number;
  sha256: string;
  /** sqlite: `results` (result store, keys, lines, snapshots index, history, outbox) or `queue` (the job queue). */
  target?: 'results' | 'queue';
  /** pg_table: the table's name. */
  table?: string;
}

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  version: number;
  created_at: string;
  sightline_version: string;
  /** The result store's kind and, for PostgreSQL, its schema. */
  store: { kind: 'sqlite' | 'postgres'; schema?: string };
  /** The job queue's kind: an amqp queue lives in the broker and is not in the archive. */
  queue: { kind: 'sqlite' | 'amqp' | 'memory' };
}

export interface BackupChecksums {
  entries: ManifestEntry[];
}

/** A manifest this version cannot restore: wrong file, newer format, or missing fields. */
export class ManifestError extends Error {}

/** Checks what JSON.parse gave back before anything is written. */
export function parseManifest(data: Buffer): BackupManifest {
  let value: unknown;
  try {
    value = JSON.parse(data.toString('utf8'));
  } catch {
    throw new ManifestError(`${MANIFEST_ENTRY} is not JSON`);
  }
  const m = value as Partial<BackupManifest>;
  if (m?.format !== BACKUP_FORMAT) throw new ManifestError(`not a Sightline backup (format ${JSON.stringify(m?.format)})`);
  if (typeof m.version !== 'number' || !Number.isInteger(m.version)) throw new ManifestError('the manifest has no format version');
  if (m.version > BACKUP_FORMAT_VERSION) {
    throw new ManifestError(
      `backup format ${m.version} is newer than this sightline reads (${BACKUP_FORMAT_VERSION}); restore it with sightline ${m.sightline_version ?? 'of the version that wrote it'} or newer`,
    );
  }
  if (!m.store || (m.store.kind !== 'sqlite' && m.store.kind !== 'postgres')) throw new ManifestError('the manifest names no store kind');
  return m as BackupManifest;
}

/** Entries are written under the data dir: a name must not climb out of it. */
export function safeEntryName(name: string): boolean {
  return name !== '' && !name.startsWith('/') && !name.includes('\\') && !name.split('/').includes('..');
}

/** Checks checksums.json, the archive's last entry. */
export function parseChecksums(data: Buffer): BackupChecksums {
  let value: unknown;
  try {
    value = JSON.parse(data.toString('utf8'));
  } catch {
    throw new ManifestError(`${CHECKSUMS_ENTRY} is not JSON`);
  }
  const entries = (value as Partial<BackupChecksums>)?.entries;
  if (!Array.isArray(entries)) throw new ManifestError(`${CHECKSUMS_ENTRY} lists no entries`);
  for (const e of entries) {
    if (typeof e?.name !== 'string' || typeof e.sha256 !== 'string' || typeof e.bytes !== 'number')
      throw new ManifestError('a checksum entry lacks name, bytes or sha256');
    if (!safeEntryName(e.name)) throw new ManifestError(`unsafe entry name ${JSON.stringify(e.name)}`);
  }
  return { entries };
}
