import { createPostgresStore, type PostgresStoreOptions } from './postgres.js';
import type { ResultStore } from './result-store.js';
import { createSqliteStore, type SqliteStoreOptions } from './sqlite.js';

export type CreateStoreOptions = SqliteStoreOptions & Omit<PostgresStoreOptions, 'connectionString'>;

/**
 * The store that a URL names: `sqlite:PATH` (relative to the working directory),
 * `sqlite::memory:`, or `postgres://…` / `postgresql://…`. Options that do not
 * apply to the chosen back end are ignored.
 * @example createResultStore('sqlite:./data/results.db')
 * @example createResultStore('postgres://sightline@db:5432/sightline', { schema: 'sightline' })
 */
export function createResultStore(url: string, options: CreateStoreOptions = {}): ResultStore {
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length);
    if (path === '') throw new Error('Store URL "sqlite:" names no file: use sqlite:PATH or sqlite::memory:');
    return createSqliteStore(path, options);
  }
  if (/^postgres(ql)?:\/\//.test(url)) return createPostgresStore({ ...options, connectionString: url });
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
  throw new Error(`Unsupported result store URL ${scheme ? `scheme "${scheme}:"` : `"${url}"`}: use sqlite:PATH, sqlite::memory: or postgres://…`);
}
