import { dirname, join, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import { createJobQueue, KyselyJobStateStore, MemoryJobStateStore, type JobQueue, type JobStateStore } from '../queue/index.js';
import { queueUrl, storeUrl } from '../config/locations.js';
import { MigrateOnFirstUse } from '../queue/state/migrate-on-first-use.js';
import { openPostgres, openSqlite, type OpenDatabase } from '../store/open-database.js';
import { retryOnLock, type LockRetry } from '../store/lock-retry.js';

/**
 * RabbitMQ cannot look a message up by id, so the amqp queue keeps job states in
 * a table where every API replica and worker sees them: the result store's
 * PostgreSQL database, or with a SQLite store a SQLite file of their own beside
 * it (sharing results.db would make two connections of one process wait on each
 * other's locks).
 */
async function jobStateStore(config: Config): Promise<{ store: JobStateStore; close: () => Promise<void> }> {
  const url = storeUrl(config);
  if (url === 'sqlite::memory:') return { store: new MemoryJobStateStore(), close: async () => {} };
  const database: OpenDatabase<unknown> = url.startsWith('sqlite:')
    ? openSqlite(join(dirname(resolve(url.slice('sqlite:'.length))), 'job-states.db'))
    : openPostgres({ connectionString: url, poolSize: 4, ...(config.store_schema ? { schema: config.store_schema } : {}) });
  const { db, kind, schema, lockRetry } = database;
  const table = new KyselyJobStateStore({ db, kind, ...(schema ? { schema } : {}) });
  // The table is created on first use: a database that is down at start-up must not stop the process.
  const store = new MigrateOnFirstUse(lockRetry ? retryingLocks(table, lockRetry) : table);
  return { store, close: () => db.destroy() };
}

/**
 * job-states.db is shared by the processes of one host (serve and workers on one
 * data directory). It used to wait for their locks inside SQLite (busy_timeout
 * 1000), which blocks the event loop for up to a second; with the common
 * pragmas SQLite waits 10 ms and the wait goes on here, asynchronously, as for
 * results. Every operation is a single statement (insert: a write, then a read
 * only when nothing was written), so one that lost the race is safe to repeat.
 */
function retryingLocks(table: KyselyJobStateStore, policy: LockRetry): JobStateStore & { migrate(): Promise<void> } {
  return {
    migrate: () => retryOnLock(() => table.migrate(), policy),
    insert: (record) => retryOnLock(() => table.insert(record), policy),
    update: (id, patch, onlyIfState) => retryOnLock(() => table.update(id, patch, onlyIfState), policy),
    get: (id) => retryOnLock(() => table.get(id), policy),
    delete: (id) => retryOnLock(() => table.delete(id), policy),
  };
}

/** The job queue the config names, with its settings; `close()` also releases what it opened. */
export async function queueFromConfig(config: Config): Promise<{ queue: JobQueue; close: () => Promise<void> }> {
  const url = queueUrl(config);
  const settings = {
    maxAttempts: config.job_max_attempts,
    backoffBaseMs: config.job_backoff_ms,
    maxLength: config.queue_max_length,
    prefix: config.queue_prefix,
    visibilityTimeoutMs: config.queue_lease_ms,
  };
  if (!url.startsWith('amqp')) {
    const queue = createJobQueue(url, settings);
    return { queue, close: () => queue.close() };
  }
  const state = await jobStateStore(config);
  const queue = createJobQueue(url, { ...settings, stateStore: state.store });
  return {
    queue,
    close: async () => {
      await queue.close();
      await state.close();
    },
  };
}
