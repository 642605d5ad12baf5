import { sql, type Kysely, type Selectable } from 'kysely';
import type { Detection, StageTimings, Verdict } from '../protocol/results.js';
import { encodeCursor } from './cursor.js';
import type { LabelCounts, LineStats, NewResult, ResultPage, StoredResult } from './result-store.js';
import type { ResultsTable, StoreSchema } from './schema.js';
import type { ListFilter } from './validate.js';

// The one query layer of every back end: nothing here may depend on the dialect
// beyond what schema.ts already evens out (int8 as string, jsonb parsed).

type Db = Kysely<StoreSchema>;

const json = (v: unknown): unknown => (typeof v === 'string' ? JSON.parse(v) : v);

function toResult(row: Selectable<ResultsTable>): StoredResult {
  return {
    request_id: row.request_id,
    line: row.line,
    camera: row.camera,
    model: { name: row.model_name, version: row.model_version },
    verdict: row.verdict,
    detections: json(row.detections) as Detection[],
    image: { width: row.image_width, height: row.image_height },
    timings_ms: json(row.timings) as StageTimings,
    source: row.source,
    created_at: new Date(Number(row.created_at)),
  };
}

function labelCounts(detections: readonly Detection[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const d of detections) counts.set(d.label, (counts.get(d.label) ?? 0) + 1);
  return counts;
}

/** Inserts a result and its label rows in one transaction; false when the id was already stored. */
export async function insertResult(db: Db, r: NewResult, createdAt: number): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const inserted = await trx
      .insertInto('results')
      .values({
        request_id: r.request_id,
        line: r.line,
        camera: r.camera,
        model_name: r.model.name,
        model_version: r.model.version,
        verdict: r.verdict,
        detections: JSON.stringify(r.detections),
        image_width: r.image.width,
        image_height: r.image.height,
        timings: JSON.stringify(r.timings_ms),
        source: r.source,
        created_at: createdAt,
      })
      // A conflicting insert waits for the first one's commit, then does nothing:
      // racing saves of one id leave exactly one row and one set of label rows.
      .onConflict((oc) => oc.column('request_id').doNothing())
      .executeTakeFirst();
    if (!inserted.numInsertedOrUpdatedRows) return false;
    const labels = [...labelCounts(r.detections)].map(([label, count]) => ({
      request_id: r.request_id,
      label,
      count,
      line: r.line,
      created_at: createdAt,
    }));
    if (labels.length > 0) await trx.insertInto('result_labels').values(labels).execute();
    return true;
  });
}

export async function selectResult(db: Db, requestId: string): Promise<StoredResult | undefined> {
  const row = await db.selectFrom('results').selectAll().where('request_id', '=', requestId).executeTakeFirst();
  return row && toResult(row);
}

/** The SQL of one page; exported so that tests can check its query plan. */
export function pageQuery(db: Db, f: ListFilter) {
  // With a label filter the page is walked along result_labels' (label,
  // created_at, request_id) index, which yields rows in page order; otherwise
  // along the results indexes. `k` is the table whose keys drive the walk.
  const k = f.label === undefined ? 'r' : 'l';
  const col = (name: 'line' | 'created_at' | 'request_id') => sql.ref(`${k}.${name}`);
  return (
    db
      .selectFrom('results as r')
      .selectAll('r')
      .$if(f.label !== undefined, (q) => q.innerJoin('result_labels as l', (j) => j.onRef('l.request_id', '=', 'r.request_id').on('l.label', '=', f.label!)))
      .$if(f.line !== undefined, (q) => q.where(col('line'), '=', f.line!))
      .$if(f.camera !== undefined, (q) => q.where('r.camera', '=', f.camera!))
      .$if(f.verdict !== undefined, (q) => q.where('r.verdict', '=', f.verdict as Verdict))
      .$if(f.fromMs !== undefined, (q) => q.where(col('created_at'), '>=', f.fromMs!))
      .$if(f.toMs !== undefined, (q) => q.where(col('created_at'), '<', f.toMs!))
      .$if(f.after !== undefined, (q) => q.where(sql<boolean>`(${col('created_at')}, ${col('request_id')}) < (${f.after!.createdAt}, ${f.after!.requestId})`))
      .orderBy(col('created_at'), 'desc')
      .orderBy(col('request_id'), 'desc')
      // One row more than asked says whether another page exists.
      .limit(f.limit + 1)
  );
}

export async function selectPage(db: Db, f: ListFilter): Promise<ResultPage> {
  const rows = await pageQuery(db, f).execute();
  const results = rows.slice(0, f.limit).map(toResult);
  const last = results.at(-1);
  const next_cursor = rows.length > f.limit && last ? encodeCursor({ createdAt: last.created_at.getTime(), requestId: last.request_id }) : null;
  return { results, next_cursor };
}

export async function selectLineStats(db: Db, line: string, fromMs?: number, toMs?: number): Promise<Omit<LineStats, 'from' | 'to'>> {
  const verdictRows = await db
    .selectFrom('results')
    .select(['verdict', (eb) => eb.fn.countAll<number | string>().as('n')])
    .where('line', '=', line)
    .$if(fromMs !== undefined, (q) => q.where('created_at', '>=', fromMs!))
    .$if(toMs !== undefined, (q) => q.where('created_at', '<', toMs!))
    .groupBy('verdict')
    .execute();
  const labelRows = await db
    .selectFrom('result_labels')
    .select(['label', (eb) => eb.fn.sum<number | string>('count').as('detections'), (eb) => eb.fn.countAll<number | string>().as('results')])
    .where('line', '=', line)
    .$if(fromMs !== undefined, (q) => q.where('created_at', '>=', fromMs!))
    .$if(toMs !== undefined, (q) => q.where('created_at', '<', toMs!))
    .groupBy('label')
    .orderBy('label')
    .execute();
  const verdicts: Record<Verdict, number> = { ok: 0, ng: 0 };
  for (const row of verdictRows) verdicts[row.verdict] = Number(row.n);
  const labels: Record<string, LabelCounts> = {};
  for (const row of labelRows) labels[row.label] = { detections: Number(row.detections), results: Number(row.results) };
  return { line, total: verdicts.ok + verdicts.ng, verdicts, labels };
}

export async function ping(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}
