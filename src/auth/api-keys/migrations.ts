import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

/**
 * The api_keys table's history, kept apart from the result store's migrations
 * (own bookkeeping tables, see KyselyApiKeyStore). A released migration is
 * never edited: changes come as a new one.
 */
function migrations(kind: 'sqlite' | 'postgres', schema: string | undefined): Record<string, Migration> {
  // biome-ignore lint/suspicious/noExplicitAny: a migration sees the tables as they were then, not as today's schema type says.
  const builder = (db: Kysely<any>) => (schema ? db.schema.withSchema(schema) : db.schema);
  const epochMs = kind === 'postgres' ? 'bigint' : 'integer';
  return {
    '0001_api_keys': {
      async up(db) {
        const s = builder(db);
        await s
          .createTable('api_keys')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull())
          // Comma-separated roles, in ROLES order.
          .addColumn('roles', 'text', (c) => c.notNull())
          // SHA-256 of the key's secret, hex: the key itself is never stored.
          .addColumn('secret_hash', 'text', (c) => c.notNull())
          .addColumn('created_at', epochMs, (c) => c.notNull())
          .addColumn('revoked_at', epochMs)
          .execute();
        // A name is unique among active keys; revoked keys keep theirs for the record.
        await s.createIndex('api_keys_active_name_idx').on('api_keys').column('name').unique().where(sql.ref('revoked_at'), 'is', null).execute();
      },
      async down(db) {
        await builder(db).dropTable('api_keys').execute();
      },
    },
  };
}

export function apiKeyMigrations(kind: 'sqlite' | 'postgres', schema?: string): MigrationProvider {
  return { getMigrations: async () => migrations(kind, schema) };
}
