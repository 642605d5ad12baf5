import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import type { Config } from '../config/schema.js';
import { createJobQueue, KyselyJobStateStore, MemoryJobStateStore, type JobQueue, type JobStateStore } from '../queue/index.js';
import { storeUrl } from '../server/store-url.js';

export function queueUrl(config: Config): string {
  return config.queue_url || `sqlite:${join(config.data_dir, 'queue.db')}`;
}

/**
 * RabbitMQ cannot look a message up by id, so the amqp queue keeps job states in
 * a table beside the results (same database as the result store), where every
 * API replica and worker sees them.
 */
async function jobStateStore(config: Config): Promise<{ store: JobStateStore; close: () => Promise<void> }> {
  const url = storeUrl(config);
  if (url === 'sqlite::memory:') return { store: new MemoryJobStateStore(), close: async () => {} };
  const db = url.startsWith('sqlite:')
    ? new Kysely<unknown>({ dialect: new SqliteDialect({ database: new Database(url.slice('sqlite:'.length)) }) })
    : new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 4 }) }) });
  const store = new KyselyJobStateStore({ db, kind: url.startsWith('sqlite:') ? 'sqlite' : 'postgres' });
  await store.migrate();
  return { store, close: () => db.destroy() };
}

/** The job queue the config names, with its settings; `close()` also releases what it opened. */
export async function queueFromConfig(config: Config): Promise<{ queue: JobQueue; close: () => Promise<void> }> {
  const url = queueUrl(config);
  const settings = { maxAttempts: config.job_max_attempts, backoffBaseMs: config.job_backoff_ms, maxLength: config.queue_max_length };
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
