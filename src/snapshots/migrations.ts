import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

/**
 * The snapshot index's history, kept apart from the result store's migrations
 * (own bookkeeping tables, see FileSnapshotStore). A released migration is
 * never edited: changes come as a new one.
 */
function migrations(kind: 'sqlite' | 'postgres', schema: string | undefined): Record<string, Migration> {
  // biome-ignore lint/suspicious/noExplicitAny: a migration sees the tables as they were then, not as today's schema type says.
  const builder = (db: Kysely<any>) => (schema ? db.schema.withSchema(schema) : db.schema);
  const epochMs = kind === 'postgres' ? 'bigint' : 'integer';
  return {
    '0001_snapshots': {
      async up(db) {
        const s = builder(db);
        await s
          .createTable('snapshots')
          // The result's request_id; no foreign key: results and snapshots are written apart and either may be missing.
          .addColumn('request_id', 'text', (c) => c.primaryKey())
          .addColumn('line', 'text', (c) => c.notNull())
          .addColumn('camera', 'text', (c) => c.notNull())
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('content_type', 'text', (c) => c.notNull())
          // Relative to the snapshot directory, so that every process may mount it where it likes.
          .addColumn('path', 'text', (c) => c.notNull())
          .addColumn('bytes', epochMs, (c) => c.notNull())
          // The DetectionResult as JSON text.
          .addColumn('result', 'text', (c) => c.notNull())
          .addColumn('created_at', epochMs, (c) => c.notNull())
          .addColumn('pruned_at', epochMs)
          .addColumn('prune_reason', 'text')
          .execute();
        // Pruning walks the kept snapshots oldest first.
        await s
          .createIndex('snapshots_kept_created_idx')
          .on('snapshots')
          .columns(['created_at', 'request_id'])
          .where(sql.ref('pruned_at'), 'is', null)
          .execute();
      },
      async down(db) {
        await builder(db).dropTable('snapshots').execute();
      },
    },
  };
}

export function snapshotMigrations(kind: 'sqlite' | 'postgres', schema?: string): MigrationProvider {
  return { getMigrations: async () => migrations(kind, schema) };
}
