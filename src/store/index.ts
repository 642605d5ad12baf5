export * from './result-store.js';
export { StoreUnavailable } from './errors.js';
export { createSqliteStore, type SqliteStoreOptions } from './sqlite.js';
export { createPostgresStore, type PostgresStoreOptions } from './postgres.js';
export { createResultStore, type CreateStoreOptions } from './create-store.js';
export { databaseKind, openDatabase, openPostgres, openSqlite, type DatabaseKind, type OpenDatabase, type OpenDatabaseOptions } from './open-database.js';
