import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { KyselyResultStore } from './kysely-result-store.js';
import type { ResultStore } from './result-store.js';
import type { StoreSchema } from './schema.js';

const SYNC_BUSY_TIMEOUT_MS = 10;

/** SQLite's "someone else holds the lock" errors, which an asynchronous retry can wait out. */
export const isLockError = (err: unknown): boolean => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
};

export interface SqliteStoreOptions {
  /** How long a write waits for another connection's lock before failing with STORE_UNAVAILABLE. */
  lockTimeoutMs?: number;
}

/**
 * A SQLite file (or `:memory:`) opened the way every Sightline store opens one:
 * directory created on first use, WAL, short synchronous busy wait.
 */
export function sqliteDialect(path: string): SqliteDialect {
  return new SqliteDialect({
    database: async () => {
      const memory = path === ':memory:';
      if (!memory) mkdirSync(dirname(resolve(path)), { recursive: true });
      const db = new Database(path);
      // WAL lets readers (the dashboard, /v1/results) run while a result is written;
      // NORMAL is durable across process crashes in WAL mode and far cheaper than FULL.
      if (!memory) db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      // better-sqlite3 waits for a lock synchronously, blocking the event loop, and
      // deadlocks when the holder is a transaction of this same process waiting
      // for that loop. So SQLite itself waits only briefly; longer waits are
      // asynchronous retries of the whole transaction (lockRetry below).
      db.pragma(`busy_timeout = ${SYNC_BUSY_TIMEOUT_MS}`);
      db.pragma('foreign_keys = ON');
      return db;
    },
  });
}

/**
 * The embedded store: one SQLite file (`:memory:` for a private in-process
 * database). The file and its directory are created on first use, not here, so
 * that a failure surfaces from waitUntilReady as STORE_UNAVAILABLE.
 */
export function createSqliteStore(path: string, options: SqliteStoreOptions = {}): ResultStore {
  const dialect = sqliteDialect(path);
  return new KyselyResultStore({
    kind: 'sqlite',
    db: new Kysely<StoreSchema>({ dialect }),
    lockRetry: { isLockError, budgetMs: options.lockTimeoutMs ?? 5000 },
  });
}
