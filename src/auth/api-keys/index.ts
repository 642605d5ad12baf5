import { Kysely, PostgresDialect, type PostgresPool } from 'kysely';
import { isLockError, sqliteDialect } from '../../store/sqlite.js';
import pg from 'pg';
import type { ApiKeyStore } from './api-key-store.js';
import { KyselyApiKeyStore, type ApiKeysTable } from './kysely-api-key-store.js';

export * from './api-key-store.js';
export { KyselyApiKeyStore } from './kysely-api-key-store.js';
export { KEY_PREFIX, parseKey } from './key-format.js';

export interface ApiKeyStoreOptions {
  /** PostgreSQL schema holding the table (created when missing); the search path when left out. */
  schema?: string;
  /** PostgreSQL: a pool owned by the caller, used and never ended. */
  pool?: pg.Pool;
  /** PostgreSQL: size of the store's own pool. */
  poolSize?: number;
}

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * The API key store in the database that a result store URL names (keys live
 * beside the results: one database for every replica and the CLI):
 * `sqlite:PATH`, `sqlite::memory:` (private to this process) or `postgres://…`.
 * Nothing is opened before first use.
 * @example createApiKeyStore('sqlite:./data/results.db')
 */
export function createApiKeyStore(url: string, options: ApiKeyStoreOptions = {}): ApiKeyStore {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length);
    if (path === '') throw new Error('Store URL "sqlite:" names no file: use sqlite:PATH or sqlite::memory:');
    const dialect = sqliteDialect(path);
    return new KyselyApiKeyStore({ kind: 'sqlite', db: new Kysely<ApiKeysTable>({ dialect }), lockRetry: { isLockError, budgetMs: 5000 } });
  }
  if (/^postgres(ql)?:\/\//.test(url) || options.pool) {
    if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) throw new Error(`Postgres schema ${JSON.stringify(options.schema)} is not a plain identifier`);
    const borrowed = options.pool;
    const owned = borrowed ? undefined : new pg.Pool({ connectionString: url, max: options.poolSize ?? 4, connectionTimeoutMillis: 10_000 });
    // An idle client that loses its connection makes the pool emit 'error'; the pool drops that client itself.
    owned?.on('error', () => undefined);
    const pool: PostgresPool = borrowed ? { connect: () => borrowed.connect(), end: async () => {} } : owned!;
    return new KyselyApiKeyStore({
      kind: 'postgres',
      db: new Kysely<ApiKeysTable>({ dialect: new PostgresDialect({ pool }) }),
      ...(options.schema ? { schema: options.schema } : {}),
    });
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  throw new Error(`Unsupported store URL ${scheme ? `scheme "${scheme}:"` : `"${url}"`} for API keys: use sqlite:PATH, sqlite::memory: or postgres://…`);
}
