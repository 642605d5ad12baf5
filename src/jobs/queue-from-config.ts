import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import type { Config } from '../config/schema.js';
import { createJobQueue, KyselyJobStateStore, MemoryJobStateStore, type JobQueue, type JobStateStore } from '../queue/index.js';
import { storeUrl } from '../server/store-url.js';
import { MigrateOnFirstUse } from '../queue/state/migrate-on-first-use.js';

export function queueUrl(config: Config): string {
  return config.queue_url || `sqlite:${join(config.data_dir, 'queue.db')}`;
}

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
  let db: Kysely<unknown>;
  if (url.startsWith('sqlite:')) {
    const path = join(dirname(resolve(url.slice('sqlite:'.length))), 'job-states.db');
    mkdirSync(dirname(path), { recursive: true });
    const sqlite = new Database(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('busy_timeout = 1000');
    db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: sqlite }) });
  } else {
    const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 10_000 });
    // An idle connection that the server ends must not crash the process; the pool replaces it.
    pool.on('error', () => undefined);
    db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  }
  const postgres = !url.startsWith('sqlite:');
  // The table is created on first use: a database that is down at start-up must not stop the process.
  const store = new MigrateOnFirstUse(
    new KyselyJobStateStore({ db, kind: postgres ? 'postgres' : 'sqlite', ...(postgres && config.store_schema ? { schema: config.store_schema } : {}) }),
  );
  return { store, close: () => db.destroy() };
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
