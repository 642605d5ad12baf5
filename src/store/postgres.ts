import type pg from 'pg';
import { KyselyResultStore } from './kysely-result-store.js';
import { openPostgres } from './open-database.js';
import type { ResultStore } from './result-store.js';
import type { StoreSchema } from './schema.js';

export interface PostgresStoreOptions {
  /** `postgres://…`; the store opens and closes a pool of its own. */
  connectionString?: string;
  /** A pool owned by the caller: used, never ended. Takes precedence over `connectionString`. */
  pool?: pg.Pool;
  /**
   * Schema that holds the tables, created when missing; the connection's
   * search_path (usually `public`) when left out.
   * @example 'sightline'
   */
  schema?: string;
  /** Size of the store's own pool. */
  poolSize?: number;
  /** How long to wait for a connection before failing with STORE_UNAVAILABLE. */
  connectTimeoutMs?: number;
}

/** The distributed store: results of every replica in one PostgreSQL database. */
export function createPostgresStore(options: PostgresStoreOptions): ResultStore {
  // The pool's background failures reach the store's listeners (see ResultStore's `error` event).
  let store: KyselyResultStore | undefined;
  const { db, schema } = openPostgres<StoreSchema>({ ...options, onPoolError: (err) => store?.reportError(err) });
  store = new KyselyResultStore({ kind: 'postgres', db, ...(schema ? { schema } : {}) });
  return store;
}
