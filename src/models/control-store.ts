import type { ColumnType, Kysely, Migration, MigrationProvider } from 'kysely';
import { openDatabase } from '../store/open-database.js';
import { OwnTables } from '../store/own-tables.js';
import type { VersionOverrides } from '../inference/repository.js';
import type { TrafficSplit } from '../inference/traffic.js';

type EpochMs = ColumnType<number | string, number, number>;

/** What model control asks of one model: versions beyond the policy and the traffic split. */
export interface ModelControlState {
  versions: VersionOverrides;
  traffic?: TrafficSplit;
  /** The split before the last change, for rollback of a canary. */
  previous?: TrafficSplit;
}

interface ControlTable {
  model: string;
  /** JSON of ModelControlState. */
  state: string;
  /** Grows by one per change: readers apply only what changed. */
  revision: number;
  updated_at: EpochMs;
}

interface ControlSchema {
  model_control: ControlTable;
}

function migrations(kind: 'sqlite' | 'postgres', schema: string | undefined): Record<string, Migration> {
  // biome-ignore lint/suspicious/noExplicitAny: a migration sees the tables as they were then.
  const builder = (db: Kysely<any>) => (schema ? db.schema.withSchema(schema) : db.schema);
  return {
    '0001_model_control': {
      async up(db) {
        await builder(db)
          .createTable('model_control')
          .addColumn('model', 'text', (c) => c.primaryKey())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('revision', 'integer', (c) => c.notNull())
          .addColumn('updated_at', kind === 'postgres' ? 'bigint' : 'integer', (c) => c.notNull())
          .execute();
      },
      async down(db) {
        await builder(db).dropTable('model_control').execute();
      },
    },
  };
}

const provider = (kind: 'sqlite' | 'postgres', schema?: string): MigrationProvider => ({ getMigrations: async () => migrations(kind, schema) });

export interface ControlRow {
  model: string;
  state: ModelControlState;
  revision: number;
}

/**
 * The model control table, in the result store's database: the one place every
 * API process and worker reads loads, unloads and traffic splits from (each polls
 * it every model_sync_interval_ms), so that a change made through any replica
 * reaches all of them, and survives restarts.
 */
export class ModelControlStore {
  readonly #tables: OwnTables<ControlSchema>;

  constructor(url: string, options: { schema?: string } = {}) {
    this.#tables = new OwnTables(openDatabase<ControlSchema>(url, { ...options, poolSize: 1 }), {
      name: 'sightline_model_control',
      what: 'model control table',
      migrations: provider,
    });
  }

  async all(): Promise<ControlRow[]> {
    const rows = await this.#tables.read((db) => db.selectFrom('model_control').selectAll().execute());
    return rows.map((r) => ({ model: r.model, state: JSON.parse(r.state) as ModelControlState, revision: Number(r.revision) }));
  }

  /**
   * Changes one model's state with `change` and stores it as the next revision,
   * retrying when another process changed it in between (compare-and-set on the
   * revision).
   */
  async update(model: string, change: (state: ModelControlState) => ModelControlState): Promise<ControlRow> {
    for (let attempt = 0; ; attempt++) {
      const current = (await this.all()).find((r) => r.model === model);
      const state = change(current?.state ?? { versions: {} });
      const revision = (current?.revision ?? 0) + 1;
      const row = { model, state: JSON.stringify(state), revision, updated_at: Date.now() };
      const written = await this.#tables.write(async (db) => {
        if (!current) {
          const r = await db
            .insertInto('model_control')
            .values(row)
            .onConflict((oc) => oc.column('model').doNothing())
            .executeTakeFirst();
          return Number(r.numInsertedOrUpdatedRows ?? 0n) === 1;
        }
        const r = await db
          .updateTable('model_control')
          .set({ state: row.state, revision, updated_at: row.updated_at })
          .where('model', '=', model)
          .where('revision', '=', current.revision)
          .executeTakeFirst();
        return Number(r.numUpdatedRows) === 1;
      });
      if (written) return { model, state, revision };
      if (attempt >= 10) throw new Error(`model control: could not update ${model} (changed concurrently ${attempt + 1} times)`);
    }
  }

  close(): Promise<void> {
    return this.#tables.close();
  }
}
