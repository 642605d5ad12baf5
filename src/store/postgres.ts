import { Kysely, PostgresDialect, type PostgresPool } from 'kysely';
import pg from 'pg';
import { KyselyResultStore } from './kysely-result-store.js';
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

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** The distributed store: results of every replica in one PostgreSQL database. */
export function createPostgresStore(options: PostgresStoreOptions): ResultStore {
  if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) {
    throw new Error(`Postgres schema ${JSON.stringify(options.schema)} is not a plain identifier`);
  }
  if (!options.pool && !options.connectionString) throw new Error('The postgres store needs a connectionString or a pool');
  const borrowed = options.pool;
  const owned = borrowed
    ? undefined
    : new pg.Pool({
        connectionString: options.connectionString,
        max: options.poolSize ?? 10,
        connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      });
  // Kysely ends the pool it was given on destroy; a borrowed pool gets a
  // stand-in whose end() leaves the caller's pool alone.
  const pool: PostgresPool = borrowed ? { connect: () => borrowed.connect(), end: async () => {} } : owned!;
  const store = new KyselyResultStore({
    kind: 'postgres',
    db: new Kysely<StoreSchema>({ dialect: new PostgresDialect({ pool }) }),
    ...(options.schema ? { schema: options.schema } : {}),
  });
  // An idle client that loses its connection makes pg.Pool emit 'error', which
  // would crash the process if nobody listened; the pool drops that client itself.
  owned?.on('error', (err) => store.reportError(err));
  return store;
}
