import { EventEmitter } from 'node:events';
import { Migrator, type Kysely } from 'kysely';
import { setTimeout as delay } from 'node:timers/promises';
import { retryOnLock, type LockRetry } from './lock-retry.js';
import { StoreUnavailable, isUnavailable, storeError } from './errors.js';
import { migrationProvider } from './migrations.js';
import { insertResult, ping as pingQuery, selectLineStats, selectPage, selectResult, selectReviewCounts, upsertReview } from './queries.js';
import type {
  LineStats,
  NewResult,
  NewReview,
  ResultPage,
  ResultQuery,
  ResultStore,
  ReviewCounts,
  StatsWindow,
  StoreKind,
  StoredResult,
  StoredReview,
} from './result-store.js';
import type { StoreSchema } from './schema.js';
import { checkResult, checkReview, listFilter, windowMs } from './validate.js';

const MIGRATION_ATTEMPTS = 5;

export interface KyselyStoreOptions {
  kind: StoreKind;
  /** Queries go through this; destroying it must release only what the store owns. */
  db: Kysely<StoreSchema>;
  /** Postgres schema that holds the tables (and the migration bookkeeping). */
  schema?: string;
  /** Retry of operations that lost a lock race (SQLite's single writer). */
  lockRetry?: LockRetry;
}

/** The ResultStore of every back end; a back end only builds the Kysely instance. */
export class KyselyResultStore extends EventEmitter implements ResultStore {
  readonly kind: StoreKind;
  readonly #base: Kysely<StoreSchema>;
  readonly #db: Kysely<StoreSchema>;
  readonly #schema: string | undefined;
  readonly #lockRetry: LockRetry | undefined;
  #ready: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<unknown>>();

  constructor(options: KyselyStoreOptions) {
    super();
    this.kind = options.kind;
    this.#base = options.db;
    this.#db = options.schema ? options.db.withSchema(options.schema) : options.db;
    this.#schema = options.schema;
    this.#lockRetry = options.lockRetry;
  }

  /** For back ends to report a background failure without crashing an app that does not listen. */
  reportError(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  waitUntilReady(): Promise<void> {
    if (this.#closing) return Promise.reject(new StoreUnavailable('the store is closed'));
    this.#ready ??= this.#migrate().catch((err: unknown) => {
      // Forget the failure so that a later call (the database is back) tries again.
      this.#ready = undefined;
      throw err instanceof StoreUnavailable ? err : new StoreUnavailable(err instanceof Error ? err.message : String(err), { cause: err });
    });
    return this.#ready;
  }

  async #migrate(): Promise<void> {
    const migrator = new Migrator({
      // The migrator qualifies its own tables; the migrations qualify theirs.
      db: this.#base,
      provider: migrationProvider(this.kind, this.#schema),
      ...(this.#schema ? { migrationTableSchema: this.#schema } : {}),
      // Own names, so that another module's Kysely migrations in the same
      // database or file never read these as theirs (and call them "missing").
      migrationTableName: 'sightline_results_migration',
      migrationLockTableName: 'sightline_results_migration_lock',
    });
    // Stores that start together on new data race to migrate it: SQLite has no
    // lock that the migrator could hold across its read and its writes, so the
    // loser sees "table results already exists". Running again reads the
    // winner's bookkeeping and finds nothing left to do. An unreachable database
    // is not retried here: the caller decides when to try again.
    const migrate = async () => {
      const { error } = await migrator.migrateToLatest();
      if (error) throw error;
    };
    for (let attempt = 1; ; attempt++) {
      try {
        return await retryOnLock(migrate, this.#lockRetry);
      } catch (err) {
        if (attempt >= MIGRATION_ATTEMPTS || isUnavailable(err)) throw err;
        await delay(25 * attempt);
      }
    }
  }

  // Input is checked inside async methods so that bad input rejects like every other failure.
  async save(result: NewResult): Promise<boolean> {
    checkResult(result);
    const createdAt = result.created_at?.getTime() ?? Date.now();
    return this.#run(() => insertResult(this.#db, result, createdAt));
  }

  get(requestId: string): Promise<StoredResult | undefined> {
    return this.#run(() => selectResult(this.#db, requestId));
  }

  async list(query: ResultQuery = {}): Promise<ResultPage> {
    const filter = listFilter(query);
    return this.#run(() => selectPage(this.#db, filter));
  }

  async lineStats(line: string, window: StatsWindow = {}): Promise<LineStats> {
    const { fromMs, toMs } = windowMs(window);
    return this.#run(async () => ({
      ...(await selectLineStats(this.#db, line, fromMs, toMs)),
      from: window.from ?? null,
      to: window.to ?? null,
    }));
  }

  async review(requestId: string, review: NewReview): Promise<StoredReview | undefined> {
    checkReview(review);
    const reviewedAt = review.reviewed_at?.getTime() ?? Date.now();
    return this.#run(() => upsertReview(this.#db, requestId, review, reviewedAt));
  }

  async reviewCounts(line: string, window: StatsWindow = {}): Promise<ReviewCounts> {
    const { fromMs, toMs } = windowMs(window);
    return this.#run(() => selectReviewCounts(this.#db, line, fromMs, toMs));
  }

  ping(): Promise<void> {
    return this.#run(() => pingQuery(this.#db));
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Let operations under way finish rather than fail them half-way.
      await Promise.allSettled([this.#ready, ...this.#inFlight]);
      await this.#base.destroy();
      this.emit('close');
    })();
    return this.#closing;
  }

  #run<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(new StoreUnavailable('the store is closed'));
    const done = (async () => {
      await this.waitUntilReady();
      try {
        return await retryOnLock(operation, this.#lockRetry);
      } catch (err) {
        throw storeError(err);
      }
    })();
    this.#inFlight.add(done);
    const forget = () => this.#inFlight.delete(done);
    done.then(forget, forget);
    return done;
  }
}
