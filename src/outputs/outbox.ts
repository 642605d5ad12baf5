import { sql, type ColumnType, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { openDatabase } from '../store/open-database.js';
import { OwnTables } from '../store/own-tables.js';

// Epoch milliseconds; pg hands int8 back as a string.
type EpochMs = ColumnType<number | string, number, number>;

interface OutboxTable {
  seq: ColumnType<number | string, never, never>;
  output: string;
  /** The idempotency key (a result's request_id, a message's topic…), what a receiver dedupes on. */
  key: string;
  /** The message as the output will send it (JSON text). */
  payload: string;
  attempts: number;
  /** Not sent before this time (a retry's backoff). */
  due_at: EpochMs;
  /** A process holds the message until this time (0: nobody). */
  claimed_until: EpochMs;
  created_at: EpochMs;
  last_error: string | null;
  /** Set when the message used up its attempts: a dead letter, kept for replay. */
  dead_at: EpochMs | null;
}

interface OutboxSchema {
  output_outbox: OutboxTable;
}

/** A message waiting in (or dead in) an output's outbox. */
export interface OutboxEntry {
  seq: number;
  key: string;
  payload: string;
  /** Attempts made so far. */
  attempts: number;
  createdAt: number;
  lastError: string | null;
  deadAt: number | null;
}

function migrations(kind: 'sqlite' | 'postgres', schema: string | undefined): Record<string, Migration> {
  // biome-ignore lint/suspicious/noExplicitAny: a migration sees the tables as they were then.
  const builder = (db: Kysely<any>) => (schema ? db.schema.withSchema(schema) : db.schema);
  const epochMs = kind === 'postgres' ? 'bigint' : 'integer';
  return {
    '0001_outbox': {
      async up(db) {
        const s = builder(db);
        await s
          .createTable('output_outbox')
          .addColumn('seq', kind === 'postgres' ? 'bigserial' : 'integer', (c) => (kind === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('output', 'text', (c) => c.notNull())
          .addColumn('key', 'text', (c) => c.notNull())
          .addColumn('payload', 'text', (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('due_at', epochMs, (c) => c.notNull())
          .addColumn('claimed_until', epochMs, (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', epochMs, (c) => c.notNull())
          .addColumn('last_error', 'text')
          .addColumn('dead_at', epochMs)
          .execute();
        // Waiting messages oldest first per output (claims, bounds, depth); dead letters apart.
        await s.createIndex('output_outbox_waiting_idx').on('output_outbox').columns(['output', 'seq']).where(sql.ref('dead_at'), 'is', null).execute();
        await s.createIndex('output_outbox_dead_idx').on('output_outbox').columns(['output', 'dead_at']).where(sql.ref('dead_at'), 'is not', null).execute();
      },
      async down(db) {
        await builder(db).dropTable('output_outbox').execute();
      },
    },
  };
}

const provider = (kind: 'sqlite' | 'postgres', schema?: string): MigrationProvider => ({ getMigrations: async () => migrations(kind, schema) });

function entryOf(row: {
  seq: number | string;
  key: string;
  payload: string;
  attempts: number;
  created_at: number | string;
  last_error: string | null;
  dead_at: number | string | null;
}): OutboxEntry {
  return {
    seq: Number(row.seq),
    key: row.key,
    payload: row.payload,
    attempts: row.attempts,
    createdAt: Number(row.created_at),
    lastError: row.last_error,
    deadAt: row.dead_at === null ? null : Number(row.dead_at),
  };
}

/**
 * The outbox tables of every output, in the result store's database: on disk in
 * the embedded shape (SQLite), shared by replicas in the distributed one
 * (PostgreSQL). Outputs get their own view with `outbox(name, bounds)`.
 */
export class OutboxTables {
  readonly tables: OwnTables<OutboxSchema>;

  constructor(url: string, options: { schema?: string } = {}) {
    this.tables = new OwnTables(openDatabase<OutboxSchema>(url, { ...options, poolSize: 2 }), {
      name: 'sightline_outbox',
      what: 'output outbox',
      migrations: provider,
    });
  }

  outbox(output: string, bounds: { max: number; deadMax: number }): Outbox {
    return new Outbox(this.tables, output, bounds);
  }

  close(): Promise<void> {
    return this.tables.close();
  }
}

/**
 * One output's durable, bounded queue of messages. Written to before a message
 * is sent and deleted from once the peer has it, so a message survives a broker
 * outage and a restart; beyond `max` waiting messages the oldest are deleted
 * (the caller counts them). Messages are claimed for a lease, so that replicas
 * sharing the table never send one twice at once and a crashed holder's claims
 * come back.
 */
export class Outbox {
  /** Pushes since the bound was last checked. */
  #unchecked = 0;
  /**
   * The bound is checked every this many pushes (1 % of max): counting the
   * waiting rows on every push costs the request path a scan of up to `max`
   * index entries, and an outbox may briefly hold 1 % more than `max`.
   */
  readonly #checkEvery: number;

  constructor(
    private readonly tables: OwnTables<OutboxSchema>,
    readonly output: string,
    private readonly bounds: { max: number; deadMax: number },
  ) {
    this.#checkEvery = Math.max(1, Math.floor(bounds.max / 100));
  }

  /** Appends a message; resolves with how many of the oldest waiting ones were dropped to stay within `max`. */
  async push(key: string, payload: string, now = Date.now()): Promise<number> {
    return this.tables.write(async (db) => {
      await db
        .insertInto('output_outbox')
        .values({ output: this.output, key, payload, attempts: 0, due_at: now, claimed_until: 0, created_at: now, last_error: null, dead_at: null })
        .execute();
      if (++this.#unchecked < this.#checkEvery) return 0;
      this.#unchecked = 0;
      const waiting = await this.#waiting(db);
      const excess = waiting - this.bounds.max;
      if (excess <= 0) return 0;
      const oldest = db.selectFrom('output_outbox').select('seq').where('output', '=', this.output).where('dead_at', 'is', null).orderBy('seq').limit(excess);
      const deleted = await db.deleteFrom('output_outbox').where('seq', 'in', oldest).executeTakeFirst();
      return Number(deleted.numDeletedRows);
    });
  }

  async #waiting(db: Kysely<OutboxSchema>): Promise<number> {
    const row = await db
      .selectFrom('output_outbox')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('output', '=', this.output)
      .where('dead_at', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Messages waiting to be sent (claimed or not). */
  depth(): Promise<number> {
    return this.tables.read((db) => this.#waiting(db));
  }

  /**
   * Claims up to `limit` of the oldest messages that are due and unclaimed, for
   * `leaseMs`; they come back in `seq` order. Each must then be `done`, `retry`'d
   * or `kill`ed; a holder that dies lets them come back when the lease ends.
   */
  async claim(limit: number, leaseMs: number, now = Date.now()): Promise<OutboxEntry[]> {
    const rows = await this.tables.write(async (db) => {
      let due = db
        .selectFrom('output_outbox')
        .select('seq')
        .where('output', '=', this.output)
        .where('dead_at', 'is', null)
        .where('due_at', '<=', now)
        .where('claimed_until', '<=', now)
        .orderBy('seq')
        .limit(limit);
      if (this.tables.kind === 'postgres') due = due.forUpdate().skipLocked();
      return db
        .updateTable('output_outbox')
        .set({ claimed_until: now + leaseMs })
        .where('seq', 'in', due)
        .returningAll()
        .execute();
    });
    return rows.map(entryOf).sort((a, b) => a.seq - b.seq);
  }

  /** The peer has it: gone from the outbox. */
  async done(seq: number): Promise<void> {
    await this.tables.write((db) => db.deleteFrom('output_outbox').where('seq', '=', seq).execute());
  }

  /** A failed attempt: counted, released, tried again from `dueAt`. */
  async retry(seq: number, dueAt: number, error: string): Promise<void> {
    await this.tables.write((db) =>
      db
        .updateTable('output_outbox')
        .set((eb) => ({ attempts: eb('attempts', '+', 1), due_at: dueAt, claimed_until: 0, last_error: error.slice(0, 1000) }))
        .where('seq', '=', seq)
        .execute(),
    );
  }

  /** Releases a claim without counting an attempt (the output is closing, or lost its peer before sending). */
  async release(seq: number): Promise<void> {
    await this.tables.write((db) => db.updateTable('output_outbox').set({ claimed_until: 0 }).where('seq', '=', seq).execute());
  }

  /** The last attempt failed: the message becomes a dead letter (the oldest beyond deadMax are deleted). */
  async kill(seq: number, error: string, now = Date.now()): Promise<void> {
    await this.tables.write(async (db) => {
      await db
        .updateTable('output_outbox')
        .set((eb) => ({ attempts: eb('attempts', '+', 1), dead_at: now, claimed_until: 0, last_error: error.slice(0, 1000) }))
        .where('seq', '=', seq)
        .execute();
      const keep = db
        .selectFrom('output_outbox')
        .select('seq')
        .where('output', '=', this.output)
        .where('dead_at', 'is not', null)
        .orderBy('dead_at', 'desc')
        .orderBy('seq', 'desc')
        .limit(this.bounds.deadMax);
      await db.deleteFrom('output_outbox').where('output', '=', this.output).where('dead_at', 'is not', null).where('seq', 'not in', keep).execute();
    });
  }

  /** Dead letters kept. */
  async deadLetterCount(): Promise<number> {
    const row = await this.tables.read((db) =>
      db
        .selectFrom('output_outbox')
        .select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where('output', '=', this.output)
        .where('dead_at', 'is not', null)
        .executeTakeFirstOrThrow(),
    );
    return Number(row.n);
  }

  /** Dead letters, newest first. */
  async deadLetters(limit: number): Promise<OutboxEntry[]> {
    const rows = await this.tables.read((db) =>
      db
        .selectFrom('output_outbox')
        .selectAll()
        .where('output', '=', this.output)
        .where('dead_at', 'is not', null)
        .orderBy('dead_at', 'desc')
        .orderBy('seq', 'desc')
        .limit(limit)
        .execute(),
    );
    return rows.map(entryOf);
  }

  /**
   * Puts dead letters back in the outbox with fresh attempts (one by `seq`, or
   * all); resolves with how many. They keep their place in `seq` order.
   */
  async replay(seq?: number, now = Date.now()): Promise<number> {
    const result = await this.tables.write((db) => {
      let query = db
        .updateTable('output_outbox')
        .set({ dead_at: null, attempts: 0, due_at: now, claimed_until: 0 })
        .where('output', '=', this.output)
        .where('dead_at', 'is not', null);
      if (seq !== undefined) query = query.where('seq', '=', seq);
      return query.executeTakeFirst();
    });
    return Number(result.numUpdatedRows);
  }
}
