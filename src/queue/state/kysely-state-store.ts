import type { Kysely } from 'kysely';
import type { Priority } from '../../protocol/options.js';
import type { DeadReason, JobInfo, JobState } from '../job-queue.js';
import type { JobStatePatch, JobStateStore } from './job-state-store.js';

export interface KyselyJobStateStoreOptions {
  /** Borrowed (e.g. the result store's): used, never destroyed. */
  // biome-ignore lint/suspicious/noExplicitAny: the table's name is chosen at run time, so no schema type describes it.
  db: Kysely<any>;
  kind: 'sqlite' | 'postgres';
  /** Default `job_states`. */
  table?: string;
  /** Postgres schema holding the table (created when missing); the search_path when left out. */
  schema?: string;
}

interface Row {
  id: string;
  line: string;
  priority: string;
  state: string;
  attempts: number;
  idempotency_key: string | null;
  deadline: number | string | null;
  last_error: string | null;
  dead_reason: string | null;
  created_at: number | string;
  updated_at: number | string;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * A JobStateStore in a SQL table, through Kysely, on SQLite or PostgreSQL: the
 * shared store the amqp back end needs when API replicas and workers run apart
 * (give it the result store's database). The idempotency key's unique index
 * makes insert atomic across replicas: `INSERT … ON CONFLICT DO NOTHING`, then
 * read the holder.
 */
export class KyselyJobStateStore implements JobStateStore {
  // biome-ignore lint/suspicious/noExplicitAny: the table's name is chosen at run time, so no schema type describes it.
  private readonly db: Kysely<any>;
  private readonly table: string;

  constructor(private readonly o: KyselyJobStateStoreOptions) {
    this.table = o.table ?? 'job_states';
    for (const name of [this.table, o.schema ?? 'x']) if (!IDENT.test(name)) throw new Error(`${JSON.stringify(name)} is not a plain identifier`);
    this.db = o.schema ? o.db.withSchema(o.schema) : o.db;
  }

  /** Creates the table and its indexes when missing (idempotent). */
  async migrate(): Promise<void> {
    if (this.o.schema) await this.o.db.schema.createSchema(this.o.schema).ifNotExists().execute();
    const s = this.o.schema ? this.o.db.schema.withSchema(this.o.schema) : this.o.db.schema;
    const epochMs = this.o.kind === 'postgres' ? 'bigint' : 'integer';
    await s
      .createTable(this.table)
      .ifNotExists()
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('line', 'text', (c) => c.notNull())
      .addColumn('priority', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('idempotency_key', 'text', (c) => c.unique())
      .addColumn('deadline', epochMs)
      .addColumn('last_error', 'text')
      .addColumn('dead_reason', 'text')
      .addColumn('created_at', epochMs, (c) => c.notNull())
      .addColumn('updated_at', epochMs, (c) => c.notNull())
      .execute();
    // For pruning finished jobs.
    await s.createIndex(`${this.table}_state_updated_idx`).ifNotExists().on(this.table).columns(['state', 'updated_at']).execute();
  }

  async insert(record: JobInfo): Promise<{ inserted: boolean; record: JobInfo }> {
    const result = await this.db
      .insertInto(this.table)
      .values(toRow(record))
      .onConflict((oc) => oc.doNothing())
      .executeTakeFirst();
    if (Number(result.numInsertedOrUpdatedRows ?? 0n) > 0) return { inserted: true, record };
    const holder =
      record.idempotencyKey !== null
        ? ((await this.db.selectFrom(this.table).selectAll().where('idempotency_key', '=', record.idempotencyKey).executeTakeFirst()) as Row | undefined)
        : undefined;
    if (!holder) throw new Error(`job ${record.id} was not recorded: its id is already taken`);
    return { inserted: false, record: fromRow(holder) };
  }

  async update(id: string, patch: JobStatePatch, onlyIfState?: JobState): Promise<void> {
    const set: Record<string, unknown> = { updated_at: patch.updatedAt };
    if (patch.state !== undefined) set.state = patch.state;
    if (patch.attempts !== undefined) set.attempts = patch.attempts;
    if (patch.lastError !== undefined) set.last_error = patch.lastError;
    if (patch.deadReason !== undefined) set.dead_reason = patch.deadReason;
    if (patch.deadline !== undefined) set.deadline = patch.deadline;
    let query = this.db.updateTable(this.table).set(set).where('id', '=', id);
    if (onlyIfState !== undefined) query = query.where('state', '=', onlyIfState);
    await query.execute();
  }

  async get(id: string): Promise<JobInfo | undefined> {
    const row = (await this.db.selectFrom(this.table).selectAll().where('id', '=', id).executeTakeFirst()) as Row | undefined;
    return row && fromRow(row);
  }

  async delete(id: string): Promise<void> {
    await this.db.deleteFrom(this.table).where('id', '=', id).execute();
  }

  /** Deletes done and dead records last changed before `before` (epoch ms); returns how many. */
  async prune(before: number): Promise<number> {
    const result = await this.db.deleteFrom(this.table).where('state', 'in', ['done', 'dead']).where('updated_at', '<', before).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}

function toRow(r: JobInfo): Row {
  return {
    id: r.id,
    line: r.line,
    priority: r.priority,
    state: r.state,
    attempts: r.attempts,
    idempotency_key: r.idempotencyKey,
    deadline: r.deadline,
    last_error: r.lastError,
    dead_reason: r.deadReason,
    created_at: r.createdAt,
    updated_at: r.updatedAt,
  };
}

/** pg returns BIGINT as a string: epoch-ms columns go through Number(). */
function fromRow(r: Row): JobInfo {
  return {
    id: r.id,
    line: r.line,
    priority: r.priority as Priority,
    state: r.state as JobState,
    attempts: Number(r.attempts),
    idempotencyKey: r.idempotency_key,
    deadline: r.deadline === null ? null : Number(r.deadline),
    lastError: r.last_error,
    deadReason: r.dead_reason as DeadReason | null,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}
