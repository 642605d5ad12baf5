import type { Kysely, Migration, MigrationProvider } from 'kysely';
import type { StoreKind } from './result-store.js';

/**
 * The schema's history. Names sort in the order they run; a migration, once
 * released, is never edited: changes come as a new one.
 */
function migrations(kind: StoreKind, schema: string | undefined): Record<string, Migration> {
  // biome-ignore lint/suspicious/noExplicitAny: a migration sees the tables as they were then, not as StoreSchema says now.
  const builder = (db: Kysely<any>) => (schema ? db.schema.withSchema(schema) : db.schema);
  const epochMs = kind === 'postgres' ? 'bigint' : 'integer';
  const json = kind === 'postgres' ? 'jsonb' : 'text';
  return {
    '0001_results': {
      async up(db) {
        const s = builder(db);
        await s
          .createTable('results')
          .addColumn('request_id', 'text', (c) => c.primaryKey())
          .addColumn('line', 'text', (c) => c.notNull())
          .addColumn('model_name', 'text', (c) => c.notNull())
          .addColumn('model_version', 'text', (c) => c.notNull())
          .addColumn('verdict', 'text', (c) => c.notNull())
          .addColumn('detections', json, (c) => c.notNull())
          .addColumn('image_width', 'integer', (c) => c.notNull())
          .addColumn('image_height', 'integer', (c) => c.notNull())
          .addColumn('timings', json, (c) => c.notNull())
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('created_at', epochMs, (c) => c.notNull())
          .execute();
        // request_id closes every index: pages are keyset on (created_at, request_id).
        await s.createIndex('results_created_idx').on('results').columns(['created_at', 'request_id']).execute();
        await s.createIndex('results_line_created_idx').on('results').columns(['line', 'created_at', 'request_id']).execute();
        await s.createIndex('results_verdict_created_idx').on('results').columns(['verdict', 'created_at', 'request_id']).execute();

        await s
          .createTable('result_labels')
          .addColumn('request_id', 'text', (c) => c.notNull().references('results.request_id').onDelete('cascade'))
          .addColumn('label', 'text', (c) => c.notNull())
          .addColumn('count', 'integer', (c) => c.notNull())
          .addColumn('line', 'text', (c) => c.notNull())
          .addColumn('created_at', epochMs, (c) => c.notNull())
          .addPrimaryKeyConstraint('result_labels_pk', ['request_id', 'label'])
          .execute();
        await s.createIndex('result_labels_label_created_idx').on('result_labels').columns(['label', 'created_at', 'request_id']).execute();
        await s.createIndex('result_labels_line_created_idx').on('result_labels').columns(['line', 'created_at']).execute();
      },
      async down(db) {
        const s = builder(db);
        await s.dropTable('result_labels').execute();
        await s.dropTable('results').execute();
      },
    },
    '0002_camera': {
      async up(db) {
        const s = builder(db);
        // A constant default fills the rows stored before cameras existed without rewriting them.
        await s
          .alterTable('results')
          .addColumn('camera', 'text', (c) => c.notNull().defaultTo('default'))
          .execute();
        await s.createIndex('results_line_camera_created_idx').on('results').columns(['line', 'camera', 'created_at', 'request_id']).execute();
      },
      async down(db) {
        const s = builder(db);
        await s.dropIndex('results_line_camera_created_idx').execute();
        await s.alterTable('results').dropColumn('camera').execute();
      },
    },
    '0003_reviews': {
      async up(db) {
        const s = builder(db);
        await s
          .createTable('result_reviews')
          .addColumn('request_id', 'text', (c) => c.primaryKey().references('results.request_id').onDelete('cascade'))
          .addColumn('line', 'text', (c) => c.notNull())
          .addColumn('created_at', epochMs, (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('note', 'text')
          .addColumn('boxes', json)
          .addColumn('reviewer', 'text', (c) => c.notNull())
          .addColumn('reviewed_at', epochMs, (c) => c.notNull())
          .execute();
        // Page order of the review filter (a status, or any review) and per-line counts.
        await s.createIndex('result_reviews_status_created_idx').on('result_reviews').columns(['status', 'created_at', 'request_id']).execute();
        await s.createIndex('result_reviews_created_idx').on('result_reviews').columns(['created_at', 'request_id']).execute();
        await s.createIndex('result_reviews_line_created_idx').on('result_reviews').columns(['line', 'created_at']).execute();
      },
      async down(db) {
        await builder(db).dropTable('result_reviews').execute();
      },
    },
    '0004_classes': {
      // A classification model's top classes (docs/models.md#task-types); null for box models and older rows.
      async up(db) {
        await builder(db).alterTable('results').addColumn('classes', json).execute();
      },
      async down(db) {
        await builder(db).alterTable('results').dropColumn('classes').execute();
      },
    },
  };
}

export function migrationProvider(kind: StoreKind, schema?: string): MigrationProvider {
  return { getMigrations: async () => migrations(kind, schema) };
}
