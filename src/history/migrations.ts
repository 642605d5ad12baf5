import type { Kysely, Migration, MigrationProvider } from 'kysely';

/**
 * The history tables' migrations, kept apart from the result store's and the API
 * keys' in the same database (own bookkeeping tables, see KyselyHistoryStore).
 * A released migration is never edited: changes come as a new one.
 */
function migrations(kind: 'sqlite' | 'postgres', schema: string | undefined): Record<string, Migration> {
  // biome-ignore lint/suspicious/noExplicitAny: a migration sees the tables as they were then, not as today's schema type says.
  const builder = (db: Kysely<any>) => (schema ? db.schema.withSchema(schema) : db.schema);
  const epochMs = kind === 'postgres' ? 'bigint' : 'integer';
  return {
    '0001_history': {
      async up(db) {
        const s = builder(db);
        // One row per process, resolution and bucket: errors and the sampled gauges.
        await s
          .createTable('history_processes')
          .addColumn('resolution_ms', 'integer', (c) => c.notNull())
          .addColumn('bucket_ms', epochMs, (c) => c.notNull())
          .addColumn('process_id', 'text', (c) => c.notNull())
          .addColumn('errors', 'integer', (c) => c.notNull())
          .addColumn('client_errors', 'integer', (c) => c.notNull())
          .addColumn('rejected', 'integer', (c) => c.notNull())
          // {"cpu": [sum, count, max], …}: only the gauges sampled in the bucket.
          .addColumn('gauges', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('history_processes_pk', ['resolution_ms', 'bucket_ms', 'process_id'])
          .execute();
        // One row per process, resolution, bucket and line that had results in it.
        await s
          .createTable('history_lines')
          .addColumn('resolution_ms', 'integer', (c) => c.notNull())
          .addColumn('bucket_ms', epochMs, (c) => c.notNull())
          .addColumn('process_id', 'text', (c) => c.notNull())
          .addColumn('line', 'text', (c) => c.notNull())
          .addColumn('ok', 'integer', (c) => c.notNull())
          .addColumn('ng', 'integer', (c) => c.notNull())
          .addColumn('latency_sum', 'double precision', (c) => c.notNull())
          .addColumn('latency_max', 'double precision', (c) => c.notNull())
          // [[bucket index, count], …] over the fixed bounds of src/history/histogram.ts.
          .addColumn('latency_hist', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('history_lines_pk', ['resolution_ms', 'bucket_ms', 'process_id', 'line'])
          .execute();
      },
      async down(db) {
        await builder(db).dropTable('history_lines').execute();
        await builder(db).dropTable('history_processes').execute();
      },
    },
    '0002_check_verdict': {
      // `check` results (the image-quality gate, docs/models.md#image-quality-gate) counted apart from `ok`;
      // rows written before this migration counted them as ok and keep 0 here. Not named `check`
      // like `ok` and `ng`: CHECK is an SQL keyword.
      async up(db) {
        await builder(db)
          .alterTable('history_lines')
          .addColumn('check_count', 'integer', (c) => c.notNull().defaultTo(0))
          .execute();
      },
      async down(db) {
        await builder(db).alterTable('history_lines').dropColumn('check_count').execute();
      },
    },
  };
}

export function historyMigrations(kind: 'sqlite' | 'postgres', schema?: string): MigrationProvider {
  return { getMigrations: async () => migrations(kind, schema) };
}
