import Database from 'better-sqlite3';

/** Pages copied per step: large enough that a database of a few hundred MB is copied in a few steps. */
const PAGES_PER_STEP = 16_384;

/**
 * Copies the SQLite database at `source` to `dest` with SQLite's online backup
 * API: a consistent copy while the server keeps writing (WAL readers never block
 * the writer). When another connection writes between two steps, SQLite starts
 * the copy over; large steps keep that rare, so a busy server still gets copied.
 */
export async function backupSqlite(source: string, dest: string): Promise<{ pages: number }> {
  const db = new Database(source, { fileMustExist: true });
  try {
    // The server may hold the write lock for a moment; wait for it rather than fail.
    db.pragma('busy_timeout = 5000');
    const result = await db.backup(dest, { progress: () => PAGES_PER_STEP });
    return { pages: result.totalPages };
  } finally {
    db.close();
  }
}

/** The SQLite file a `sqlite:PATH` URL names, or undefined for `:memory:` and other URLs. */
export function sqliteFile(url: string): string | undefined {
  if (!url.startsWith('sqlite:')) return undefined;
  const path = url.slice('sqlite:'.length);
  return path === '' || path === ':memory:' ? undefined : path;
}
