import { setTimeout as delay } from 'node:timers/promises';
import { Migrator, type Kysely, type MigrationProvider } from 'kysely';
import { isUnavailable, storeError, StoreUnavailable } from './errors.js';
import { retryOnLock, type LockRetry } from './lock-retry.js';
import type { OpenDatabase } from './open-database.js';

const MIGRATION_ATTEMPTS = 5;

export interface OwnTablesOptions {
  /** Names the bookkeeping tables (`<name>_migration`, `<name>_migration_lock`), apart from every other part's. */
  name: string;
  /** How errors name the part: "the <what> is closed". */
  what: string;
  migrations: (kind: 'sqlite' | 'postgres', schema: string | undefined) => MigrationProvider;
}

/**
 * Tables that one part (API keys, the line registry, snapshots, history) keeps in
 * the result store's database, with migrations of its own: migrating once on
 * first use (again after a failure), STORE_UNAVAILABLE when the database is out
 * of reach or the part is closed, SQLite lock races retried on writes. Every
 * such part uses this, so they cannot drift apart in how they fail.
 */
export class OwnTables<DB> {
  readonly kind: 'sqlite' | 'postgres';
  /** Queries go through this (qualified with the PostgreSQL schema, if any). */
  readonly db: Kysely<DB>;
  readonly #open: OpenDatabase<DB>;
  readonly #options: OwnTablesOptions;
  #ready: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(open: OpenDatabase<DB>, options: OwnTablesOptions) {
    this.#open = open;
    this.#options = options;
    this.kind = open.kind;
    this.db = open.schema ? open.db.withSchema(open.schema) : open.db;
  }

  get lockRetry(): LockRetry | undefined {
    return this.#open.lockRetry;
  }

  /** Runs pending migrations once; after a failure the next call tries again. */
  waitUntilReady(): Promise<void> {
    if (this.#closing) return Promise.reject(this.#closed());
    this.#ready ??= this.#migrate().catch((err: unknown) => {
      this.#ready = undefined; // a later call (the database is back) tries again
      throw isUnavailable(err) ? storeError(err) : err;
    });
    return this.#ready;
  }

  async #migrate(): Promise<void> {
    const { kind, schema, db } = this.#open;
    const migrator = new Migrator({
      db,
      provider: this.#options.migrations(kind, schema),
      ...(schema ? { migrationTableSchema: schema } : {}),
      migrationTableName: `${this.#options.name}_migration`,
      migrationLockTableName: `${this.#options.name}_migration_lock`,
    });
    // Processes that start together on new data race to migrate (SQLite has no
    // lock the migrator could hold): the loser runs again and finds nothing to do.
    for (let attempt = 1; ; attempt++) {
      try {
        return await retryOnLock(async () => {
          const { error } = await migrator.migrateToLatest();
          if (error) throw error;
        }, this.#open.lockRetry);
      } catch (err) {
        if (attempt >= MIGRATION_ATTEMPTS || isUnavailable(err)) throw err;
        await delay(25 * attempt);
      }
    }
  }

  /** Runs `fn` once the tables are there; a database out of reach is STORE_UNAVAILABLE. */
  async read<T>(fn: (db: Kysely<DB>) => Promise<T>): Promise<T> {
    if (this.#closing) throw this.#closed();
    await this.waitUntilReady();
    try {
      return await fn(this.db);
    } catch (err) {
      throw storeError(err);
    }
  }

  /** Like read, and runs `fn` again when it lost a SQLite lock race: it must be safe to repeat. */
  write<T>(fn: (db: Kysely<DB>) => Promise<T>): Promise<T> {
    return this.read((db) => retryOnLock(() => fn(db), this.#open.lockRetry));
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Releases what was opened for these tables. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#open.db.destroy();
    return this.#closing;
  }

  #closed(): Error {
    return new StoreUnavailable(`the ${this.#options.what} is closed`);
  }
}
