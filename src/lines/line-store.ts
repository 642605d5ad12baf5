import { sql, type ColumnType, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import type { CameraState } from '../protocol/lines.js';
import { openDatabase } from '../store/open-database.js';
import { OwnTables } from '../store/own-tables.js';

// Epoch milliseconds; pg hands int8 back as a string.
type EpochMs = ColumnType<number | string, number, number>;

/** One row per line/camera pair ever seen: what survives a restart and what every replica reads. */
interface CamerasTable {
  line: string;
  camera: string;
  first_seen_at: EpochMs;
  last_frame_at: EpochMs;
  state: CameraState | typeof NEW_CAMERA;
  state_changed_at: EpochMs;
}

/** The state of a camera row inserted by its first frame and not yet announced. */
export const NEW_CAMERA = 'new' as const;

/**
 * Each process's counts per camera and 10 s bucket. A process writes only its own
 * rows (absolute values, so a repeated flush is harmless); readers add the rows of
 * every process, which is how replicas agree without talking to each other.
 */
interface ActivityTable {
  bucket_start: EpochMs;
  process_id: string;
  line: string;
  camera: string;
  received: number;
  processed: number;
  dropped: number;
  ok: number;
  ng: number;
  /** JSON array of latency counts over LATENCY_BOUNDS_MS. */
  latency: string;
}

interface LinesSchema {
  line_cameras: CamerasTable;
  line_camera_activity: ActivityTable;
}

export interface CameraRow {
  line: string;
  camera: string;
  firstSeenAt: number;
  lastFrameAt: number;
  state: CameraState | typeof NEW_CAMERA;
  stateChangedAt: number;
}

export interface ActivityRow {
  bucketStart: number;
  processId: string;
  line: string;
  camera: string;
  received: number;
  processed: number;
  dropped: number;
  ok: number;
  ng: number;
  latency: number[];
}

function migrations(kind: 'sqlite' | 'postgres', schema: string | undefined): Record<string, Migration> {
  // biome-ignore lint/suspicious/noExplicitAny: a migration sees the tables as they were then.
  const builder = (db: Kysely<any>) => (schema ? db.schema.withSchema(schema) : db.schema);
  const epochMs = kind === 'postgres' ? 'bigint' : 'integer';
  return {
    '0001_lines': {
      async up(db) {
        const s = builder(db);
        await s
          .createTable('line_cameras')
          .addColumn('line', 'text', (c) => c.notNull())
          .addColumn('camera', 'text', (c) => c.notNull())
          .addColumn('first_seen_at', epochMs, (c) => c.notNull())
          .addColumn('last_frame_at', epochMs, (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('state_changed_at', epochMs, (c) => c.notNull())
          .addPrimaryKeyConstraint('line_cameras_pk', ['line', 'camera'])
          .execute();
        await s
          .createTable('line_camera_activity')
          .addColumn('bucket_start', epochMs, (c) => c.notNull())
          .addColumn('process_id', 'text', (c) => c.notNull())
          .addColumn('line', 'text', (c) => c.notNull())
          .addColumn('camera', 'text', (c) => c.notNull())
          .addColumn('received', 'integer', (c) => c.notNull())
          .addColumn('processed', 'integer', (c) => c.notNull())
          .addColumn('dropped', 'integer', (c) => c.notNull())
          .addColumn('ok', 'integer', (c) => c.notNull())
          .addColumn('ng', 'integer', (c) => c.notNull())
          .addColumn('latency', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('line_camera_activity_pk', ['bucket_start', 'process_id', 'line', 'camera'])
          .execute();
      },
      async down(db) {
        const s = builder(db);
        await s.dropTable('line_camera_activity').execute();
        await s.dropTable('line_cameras').execute();
      },
    },
  };
}

const provider = (kind: 'sqlite' | 'postgres', schema?: string): MigrationProvider => ({ getMigrations: async () => migrations(kind, schema) });

/**
 * The line registry's tables, in the result store's database (every replica and
 * worker shares it). Kept apart from the result store's own migrations.
 */
export class LineStore {
  readonly #tables: OwnTables<LinesSchema>;

  constructor(url: string, options: { schema?: string } = {}) {
    this.#tables = new OwnTables(openDatabase<LinesSchema>(url, { ...options, poolSize: 2 }), {
      name: 'sightline_lines',
      what: 'line registry',
      migrations: provider,
    });
  }

  waitUntilReady(): Promise<void> {
    return this.#tables.waitUntilReady();
  }

  #run<T>(fn: (db: Kysely<LinesSchema>) => Promise<T>): Promise<T> {
    return this.#tables.write(fn);
  }

  /**
   * Notes the newest frame of each camera. A camera seen for the first time is
   * inserted as NEW_CAMERA, which the next state check turns into its state and
   * announces (once, by compare-and-set, like every change).
   *
   * One statement per call, not a transaction: on SQLite a transaction spanning
   * several awaited statements holds the write lock across event-loop turns, and
   * the result store's writes on other connections would wait for it.
   */
  async recordFrames(frames: readonly { line: string; camera: string; lastFrameAt: number }[]): Promise<void> {
    if (frames.length === 0) return;
    const rows = frames.map((f) => ({
      line: f.line,
      camera: f.camera,
      first_seen_at: f.lastFrameAt,
      last_frame_at: f.lastFrameAt,
      state: NEW_CAMERA,
      state_changed_at: f.lastFrameAt,
    }));
    await this.#run((db) =>
      db
        .insertInto('line_cameras')
        .values(rows)
        // Frames of one camera may reach several processes: the newest wins.
        .onConflict((oc) =>
          oc.columns(['line', 'camera']).doUpdateSet({
            last_frame_at: sql`case when excluded.last_frame_at > line_cameras.last_frame_at then excluded.last_frame_at else line_cameras.last_frame_at end`,
          }),
        )
        .execute(),
    );
  }

  /** Writes this process's rows (absolute values: the same bucket written again replaces them), in one statement. */
  async writeActivity(rows: readonly ActivityRow[]): Promise<void> {
    if (rows.length === 0) return;
    const values = rows.map((r) => ({
      bucket_start: r.bucketStart,
      process_id: r.processId,
      line: r.line,
      camera: r.camera,
      received: r.received,
      processed: r.processed,
      dropped: r.dropped,
      ok: r.ok,
      ng: r.ng,
      latency: JSON.stringify(r.latency),
    }));
    await this.#run((db) =>
      db
        .insertInto('line_camera_activity')
        .values(values)
        .onConflict((oc) =>
          oc.columns(['bucket_start', 'process_id', 'line', 'camera']).doUpdateSet((eb) => ({
            received: eb.ref('excluded.received'),
            processed: eb.ref('excluded.processed'),
            dropped: eb.ref('excluded.dropped'),
            ok: eb.ref('excluded.ok'),
            ng: eb.ref('excluded.ng'),
            latency: eb.ref('excluded.latency'),
          })),
        )
        .execute(),
    );
  }

  async cameras(line?: string): Promise<CameraRow[]> {
    const rows = await this.#run((db) =>
      db
        .selectFrom('line_cameras')
        .selectAll()
        .$if(line !== undefined, (q) => q.where('line', '=', line!))
        .orderBy('line')
        .orderBy('camera')
        .execute(),
    );
    return rows.map(toCamera);
  }

  /**
   * Moves a camera from `from` to `to` unless someone did already: true for the one
   * process whose update took, so that a change is announced once across replicas.
   */
  async transition(line: string, camera: string, from: CameraState | typeof NEW_CAMERA, to: CameraState, at: number): Promise<boolean> {
    const result = await this.#run((db) =>
      db
        .updateTable('line_cameras')
        .set({ state: to, state_changed_at: at })
        .where('line', '=', line)
        .where('camera', '=', camera)
        .where('state', '=', from)
        .executeTakeFirst(),
    );
    return Number(result.numUpdatedRows) === 1;
  }

  async activitySince(fromMs: number, line?: string): Promise<ActivityRow[]> {
    const rows = await this.#run((db) =>
      db
        .selectFrom('line_camera_activity')
        .selectAll()
        .where('bucket_start', '>=', fromMs)
        .$if(line !== undefined, (q) => q.where('line', '=', line!))
        .execute(),
    );
    return rows.map((r) => ({
      bucketStart: Number(r.bucket_start),
      processId: r.process_id,
      line: r.line,
      camera: r.camera,
      received: Number(r.received),
      processed: Number(r.processed),
      dropped: Number(r.dropped),
      ok: Number(r.ok),
      ng: Number(r.ng),
      latency: parseCounts(r.latency),
    }));
  }

  /** Deletes activity older than `beforeMs`; the cameras themselves are kept. */
  async prune(beforeMs: number): Promise<number> {
    const result = await this.#run((db) => db.deleteFrom('line_camera_activity').where('bucket_start', '<', beforeMs).executeTakeFirst());
    return Number(result.numDeletedRows);
  }

  async ping(): Promise<void> {
    await this.#run((db) => sql`select 1`.execute(db));
  }

  close(): Promise<void> {
    return this.#tables.close();
  }
}

function toCamera(row: {
  line: string;
  camera: string;
  first_seen_at: number | string;
  last_frame_at: number | string;
  state: string;
  state_changed_at: number | string;
}): CameraRow {
  return {
    line: row.line,
    camera: row.camera,
    firstSeenAt: Number(row.first_seen_at),
    lastFrameAt: Number(row.last_frame_at),
    state: row.state as CameraRow['state'],
    stateChangedAt: Number(row.state_changed_at),
  };
}

function parseCounts(text: string): number[] {
  try {
    const parsed: unknown = JSON.parse(text);
    return Array.isArray(parsed) ? parsed.map((n) => Number(n) || 0) : [];
  } catch {
    return [];
  }
}
