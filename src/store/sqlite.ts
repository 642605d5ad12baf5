import { KyselyResultStore } from './kysely-result-store.js';
import { openSqlite } from './open-database.js';
import type { ResultStore } from './result-store.js';
import type { StoreSchema } from './schema.js';

export interface SqliteStoreOptions {
  /** How long a write waits for another connection's lock before failing with STORE_UNAVAILABLE. */
  lockTimeoutMs?: number;
}

/**
 * The embedded store: one SQLite file (`:memory:` for a private in-process
 * database). The file and its directory are created on first use, not here, so
 * that a failure surfaces from waitUntilReady as STORE_UNAVAILABLE.
 */
export function createSqliteStore(path: string, options: SqliteStoreOptions = {}): ResultStore {
  const { db, lockRetry } = openSqlite<StoreSchema>(path, options);
  return new KyselyResultStore({ kind: 'sqlite', db, ...(lockRetry ? { lockRetry } : {}) });
}
