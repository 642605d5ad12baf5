import type { Kysely } from 'kysely';
import { retryOnLock } from '../store/lock-retry.js';
import { openDatabase } from '../store/open-database.js';
import { OwnTables } from '../store/own-tables.js';
import { historyMigrations } from './migrations.js';

/** A process's errors and gauges in one bucket of one resolution. */
export interface ProcessRow {
  resolution_ms: number;
  bucket_ms: number;
  process_id: string;
  errors: number;
  client_errors: number;
  rejected: number;
  /** JSON {"cpu": [sum, count, max], …} (see GAUGES in recorder.ts). */
  gauges: string;
}

/** A process's results of one line in one bucket of one resolution. */
export interface LineRow {
  resolution_ms: number;
  bucket_ms: number;
  process_id: string;
  line: string;
  ok: number;
  ng: number;
  /**
   * `check` results (the image-quality gate). Left out when written: 0. Always
   * there when read; 0 in rows written before it was counted (those counted check as ok).
   */
  check_count?: number;
  latency_sum: number;
  latency_max: number;
  /** JSON [[bucket index, count], …] (src/history/histogram.ts). */
  latency_hist: string;
}

/** Every result a line row counts: ok, ng and check. */
export function lineResults(row: Pick<LineRow, 'ok' | 'ng' | 'check_count'>): number {
  return row.ok + row.ng + (row.check_count ?? 0);
}

/** Everything one process writes for one bucket: replaces what it wrote there before. */
export interface BucketRows {
  process: ProcessRow;
  lines: LineRow[];
}

/** pg returns BIGINT as a string. */
type Stored<T> = { [K in keyof T]: K extends 'bucket_ms' ? number | string : T[K] };

export interface HistoryTables {
  history_processes: Stored<ProcessRow>;
  history_lines: Stored<LineRow>;
}

export interface HistoryStoreOptions {
  /** PostgreSQL schema (config.store_schema); created with the tables when missing. */
  schema?: string;
  /** PostgreSQL: size of the history's own pool (default 2: one flush and one read at a time is plenty). */
  poolSize?: number;
}

/** Rows per INSERT: well under SQLite's and PostgreSQL's parameter limits (10 columns each). */
const CHUNK = 200;

/**
 * The history tables in the result store's database (SQLite file or PostgreSQL),
 * shared by every process: each writes its own rows, keyed by its process id, so
 * writes never conflict across processes, and a write replaces the row (a retry
 * or a growing coarse bucket is just the newest content).
 */
export class HistoryStore {
  readonly kind: 'sqlite' | 'postgres';
  readonly #tables: OwnTables<HistoryTables>;
  readonly #db: Kysely<HistoryTables>;

  constructor(url: string, options: HistoryStoreOptions = {}) {
    const open = openDatabase<HistoryTables>(url, {
      ...(options.schema ? { schema: options.schema } : {}),
      poolSize: options.poolSize ?? 2,
    });
    this.#tables = new OwnTables(open, { name: 'sightline_history', what: 'history store', migrations: historyMigrations });
    this.kind = this.#tables.kind;
    this.#db = this.#tables.db;
  }

  waitUntilReady(): Promise<void> {
    return this.#tables.waitUntilReady();
  }

  /** Writes (replaces) the rows of the given buckets; a failed write may be repeated as it is. */
  async write(buckets: readonly BucketRows[]): Promise<void> {
    const processes = buckets.map((b) => b.process);
    const lines = buckets.flatMap((b) => b.lines.map((l) => ({ ...l, check_count: l.check_count ?? 0 })));
    await this.#run(async () => {
      for (let i = 0; i < processes.length; i += CHUNK) {
        const chunk = processes.slice(i, i + CHUNK);
        await this.#retry(() =>
          this.#db
            .insertInto('history_processes')
            .values(chunk)
            .onConflict((oc) =>
              oc.columns(['resolution_ms', 'bucket_ms', 'process_id']).doUpdateSet((eb) => ({
                errors: eb.ref('excluded.errors'),
                client_errors: eb.ref('excluded.client_errors'),
                rejected: eb.ref('excluded.rejected'),
                gauges: eb.ref('excluded.gauges'),
              })),
            )
            .execute(),
        );
      }
      for (let i = 0; i < lines.length; i += CHUNK) {
        const chunk = lines.slice(i, i + CHUNK);
        await this.#retry(() =>
          this.#db
            .insertInto('history_lines')
            .values(chunk)
            .onConflict((oc) =>
              oc.columns(['resolution_ms', 'bucket_ms', 'process_id', 'line']).doUpdateSet((eb) => ({
                ok: eb.ref('excluded.ok'),
                ng: eb.ref('excluded.ng'),
                check_count: eb.ref('excluded.check_count'),
                latency_sum: eb.ref('excluded.latency_sum'),
                latency_max: eb.ref('excluded.latency_max'),
                latency_hist: eb.ref('excluded.latency_hist'),
              })),
            )
            .execute(),
        );
      }
    });
  }

  /** Deletes the rows of one resolution whose bucket starts before `beforeMs`; the number deleted. */
  async prune(resolutionMs: number, beforeMs: number): Promise<number> {
    return this.#run(async () => {
      let deleted = 0;
      for (const table of ['history_processes', 'history_lines'] as const) {
        const result = await this.#retry(() =>
          this.#db.deleteFrom(table).where('resolution_ms', '=', resolutionMs).where('bucket_ms', '<', beforeMs).executeTakeFirst(),
        );
        deleted += Number(result.numDeletedRows);
      }
      return deleted;
    });
  }

  /** The rows of one resolution with from ≤ bucket_ms < to, of every process; lines only `line` when given. */
  async read(resolutionMs: number, fromMs: number, toMs: number, line?: string): Promise<{ processes: ProcessRow[]; lines: LineRow[] }> {
    return this.#run(async () => {
      const processes = await this.#db
        .selectFrom('history_processes')
        .selectAll()
        .where('resolution_ms', '=', resolutionMs)
        .where('bucket_ms', '>=', fromMs)
        .where('bucket_ms', '<', toMs)
        .execute();
      let lineQuery = this.#db
        .selectFrom('history_lines')
        .selectAll()
        .where('resolution_ms', '=', resolutionMs)
        .where('bucket_ms', '>=', fromMs)
        .where('bucket_ms', '<', toMs);
      if (line !== undefined) lineQuery = lineQuery.where('line', '=', line);
      const lines = await lineQuery.execute();
      return {
        processes: processes.map((r) => ({ ...r, bucket_ms: Number(r.bucket_ms) })),
        lines: lines.map((r) => ({
          ...r,
          bucket_ms: Number(r.bucket_ms),
          check_count: Number(r.check_count ?? 0),
          latency_sum: Number(r.latency_sum),
          latency_max: Number(r.latency_max),
        })),
      };
    });
  }

  /** Rows per resolution and table (for the storage bound and its tests). */
  async rowCounts(): Promise<Map<number, { processes: number; lines: number }>> {
    return this.#run(async () => {
      const counts = new Map<number, { processes: number; lines: number }>();
      const entry = (res: number) => {
        let e = counts.get(res);
        if (!e) counts.set(res, (e = { processes: 0, lines: 0 }));
        return e;
      };
      for (const [table, key] of [
        ['history_processes', 'processes'],
        ['history_lines', 'lines'],
      ] as const) {
        const rows = await this.#db
          .selectFrom(table)
          .select((eb) => ['resolution_ms', eb.fn.countAll().as('n')])
          .groupBy('resolution_ms')
          .execute();
        for (const row of rows) entry(Number(row.resolution_ms))[key] = Number(row.n);
      }
      return counts;
    });
  }

  close(): Promise<void> {
    return this.#tables.close();
  }

  #run<T>(fn: () => Promise<T>): Promise<T> {
    return this.#tables.read(fn);
  }

  /** One statement of a write, again when it lost a SQLite lock race. */
  #retry<T>(fn: () => Promise<T>): Promise<T> {
    return retryOnLock(fn, this.#tables.lockRetry);
  }
}
