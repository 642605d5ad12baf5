import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, type PostgresPool, type SqliteDatabase, type SqliteStatement } from 'kysely';
import pg from 'pg';
import type { LockRetry } from './lock-retry.js';

/**
 * The one way Sightline opens a database, whatever keeps tables in it: the
 * result store, the API key store and the amqp queue's job states. Same SQLite
 * pragmas and lock handling, same PostgreSQL pool settings, same schema rule.
 */

export type DatabaseKind = 'sqlite' | 'postgres';

export interface OpenDatabaseOptions {
  /** PostgreSQL: a pool owned by the caller: used, never ended. Takes precedence over the URL. */
  pool?: pg.Pool;
  /** PostgreSQL: size of the pool opened here (default 10). */
  poolSize?: number;
  /** PostgreSQL: how long to wait for a connection before failing (default 10 s). */
  connectTimeoutMs?: number;
  /** PostgreSQL: schema that holds the tables; the connection's search_path (usually `public`) when left out. */
  schema?: string;
  /** PostgreSQL: told when an idle pooled connection fails (the pool replaces it itself). */
  onPoolError?: (err: Error) => void;
  /** SQLite: how long an operation may wait, asynchronously, for another connection's lock (default 5 s). */
  lockTimeoutMs?: number;
}

/** An open database: the Kysely instance (its destroy() releases only what was opened here) and how to use it. */
export interface OpenDatabase<DB> {
  kind: DatabaseKind;
  db: Kysely<DB>;
  /** PostgreSQL: the checked schema to qualify tables with; never set for SQLite, which has none. */
  schema?: string;
  /** SQLite: retry of operations that lost a lock race (see sqliteDialect); none for PostgreSQL. */
  lockRetry?: LockRetry;
}

/** The kind of database a store URL names: `sqlite:PATH`, `sqlite::memory:`, `postgres://…`, `postgresql://…`. */
export function databaseKind(url: string): DatabaseKind | undefined {
  if (url.startsWith('sqlite:')) return 'sqlite';
  if (/^postgres(ql)?:\/\//.test(url)) return 'postgres';
  return undefined;
}

/** The database a store URL names (any URL with a borrowed pool is that pool's). Nothing connects before first use, so an unreachable one fails there, not here. */
export function openDatabase<DB>(url: string, options: OpenDatabaseOptions = {}): OpenDatabase<DB> {
  const kind = databaseKind(url) ?? (options.pool ? 'postgres' : undefined);
  if (kind === 'sqlite') {
    const path = url.slice('sqlite:'.length);
    if (path === '') throw new Error('Store URL "sqlite:" names no file: use sqlite:PATH or sqlite::memory:');
    return openSqlite<DB>(path, options);
  }
  if (kind === 'postgres') return openPostgres<DB>({ ...options, connectionString: url });
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  throw new Error(`Unsupported database URL ${scheme ? `scheme "${scheme}:"` : `"${url}"`}: use sqlite:PATH, sqlite::memory: or postgres://…`);
}

/** SQLite's "someone else holds the lock" errors, which an asynchronous retry can wait out. */
export const isLockError = (err: unknown): boolean => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
};

const SYNC_BUSY_TIMEOUT_MS = 10;

/**
 * A SQLite file (or `:memory:`, private to this connection): directory created on
 * first use, WAL, short synchronous busy wait.
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
      // for that loop (the result and API key stores share results.db). So SQLite
      // itself waits only briefly; longer waits are asynchronous retries of the
      // whole operation (OpenDatabase.lockRetry, which every user must apply).
      db.pragma(`busy_timeout = ${SYNC_BUSY_TIMEOUT_MS}`);
      db.pragma('foreign_keys = ON');
      return withStatementCache(db);
    },
  });
}

/** Distinct statements kept prepared per connection; past it the cache starts again (multi-row inserts vary their SQL). */
const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely's SQLite driver prepares every query afresh; better-sqlite3 statements can
 * be reused, which takes about a tenth off a result insert's event-loop time (0.28
 * against 0.31 ms per save, bench/results/2026-12-03-inference-speed.md). Only
 * statements that return no rows are reused: they run to completion synchronously,
 * whereas a reader may still be iterating (a streamed query) when the same SQL comes
 * again.
 */
function withStatementCache(db: Database.Database): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    close: () => db.close(),
    prepare: (sql) => {
      const cached = cache.get(sql);
      if (cached) return cached;
      const statement = db.prepare(sql);
      if (!statement.reader) {
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.clear();
        cache.set(sql, statement);
      }
      return statement;
    },
  };
}

/** A SQLite file opened the way every Sightline database is; the file and its directory appear on first use. */
export function openSqlite<DB>(path: string, options: Pick<OpenDatabaseOptions, 'lockTimeoutMs'> = {}): OpenDatabase<DB> {
  return {
    kind: 'sqlite',
    db: new Kysely<DB>({ dialect: sqliteDialect(path) }),
    lockRetry: { isLockError, budgetMs: options.lockTimeoutMs ?? 5000 },
  };
}

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** A PostgreSQL database through a pool of its own (ended by destroy()) or the caller's (left alone). */
export function openPostgres<DB>(options: OpenDatabaseOptions & { connectionString?: string }): OpenDatabase<DB> {
  // Interpolated into DDL (CREATE SCHEMA) by the stores: a plain identifier only.
  if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) {
    throw new Error(`Postgres schema ${JSON.stringify(options.schema)} is not a plain identifier`);
  }
  const borrowed = options.pool;
  if (!borrowed && !options.connectionString) throw new Error('A PostgreSQL database needs a connection string or a pool');
  const owned = borrowed
    ? undefined
    : new pg.Pool({ connectionString: options.connectionString, max: options.poolSize ?? 10, connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000 });
  // An idle client that loses its connection makes pg.Pool emit 'error', which
  // would crash the process if nobody listened; the pool drops that client itself.
  const onPoolError = options.onPoolError;
  owned?.on('error', (err) => onPoolError?.(err));
  // A client checked out of the pool (a transaction between two statements, a
  // migration holding its lock) that loses its connection emits 'error' on itself,
  // where the pool does not listen: unheard, it would end the process. The failed
  // operation still fails, and the pool discards the client when it comes back.
  owned?.on('connect', (client) => client.on('error', (err) => onPoolError?.(err)));
  // Kysely ends the pool it was given on destroy; a borrowed pool gets a
  // stand-in whose end() leaves the caller's pool alone.
  const pool: PostgresPool = borrowed ? { connect: () => borrowed.connect(), end: async () => {} } : owned!;
  return {
    kind: 'postgres',
    db: new Kysely<DB>({ dialect: new PostgresDialect({ pool }) }),
    ...(options.schema ? { schema: options.schema } : {}),
  };
}
