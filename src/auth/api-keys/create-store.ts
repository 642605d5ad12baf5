import type pg from 'pg';
import { databaseKind, openDatabase } from '../../store/open-database.js';
import type { ApiKeyStore } from './api-key-store.js';
import { KyselyApiKeyStore, type ApiKeysTable } from './kysely-api-key-store.js';

export interface ApiKeyStoreOptions {
  /** PostgreSQL schema holding the table (created when missing); the search path when left out. */
  schema?: string;
  /** PostgreSQL: a pool owned by the caller, used and never ended. */
  pool?: pg.Pool;
  /** PostgreSQL: size of the store's own pool. */
  poolSize?: number;
}

/**
 * The API key store in the database that a result store URL names (keys live
 * beside the results: one database for every replica and the CLI):
 * `sqlite:PATH`, `sqlite::memory:` (private to this process) or `postgres://…`.
 * Nothing is opened before first use.
 * @example createApiKeyStore('sqlite:./data/results.db')
 */
export function createApiKeyStore(url: string, options: ApiKeyStoreOptions = {}): ApiKeyStore {
  if (!options.pool && databaseKind(url) === undefined) {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
    throw new Error(`Unsupported store URL ${scheme ? `scheme "${scheme}:"` : `"${url}"`} for API keys: use sqlite:PATH, sqlite::memory: or postgres://…`);
  }
  const { kind, db, schema, lockRetry } = openDatabase<ApiKeysTable>(url, { ...options, poolSize: options.poolSize ?? 4 });
  return new KyselyApiKeyStore({ kind, db, ...(schema ? { schema } : {}), ...(lockRetry ? { lockRetry } : {}) });
}
