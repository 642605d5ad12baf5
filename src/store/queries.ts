import { sql, type Kysely, type Selectable } from 'kysely';
import type { ClassScore, Detection, ReviewBox, ReviewStatus, StageTimings, Verdict } from '../protocol/results.js';
import { encodeCursor } from './cursor.js';
import {
  REVIEW_STATUSES,
  type LabelCounts,
  type LineStats,
  type NewResult,
  type NewReview,
  type ResultPage,
  type ReviewCounts,
  type StoredResult,
  type StoredReview,
} from './result-store.js';
import type { ResultsTable, StoreSchema } from './schema.js';
import { checkBoxesInImage, type ListFilter } from './validate.js';

// The one query layer of every back end: nothing here may depend on the dialect
// beyond what schema.ts already evens out (int8 as string, jsonb parsed).

type Db = Kysely<StoreSchema>;

const json = (v: unknown): unknown => (typeof v === 'string' ? JSON.parse(v) : v);

/** A results row with its review's columns (all null without one), as the left join reads it. */
type ResultRow = Selectable<ResultsTable> & {
  review_status: ReviewStatus | null;
  review_note: string | null;
  review_boxes: unknown;
  review_reviewer: string | null;
  review_reviewed_at: number | string | null;
};

const REVIEW_COLUMNS = [
  'rv.status as review_status',
  'rv.note as review_note',
  'rv.boxes as review_boxes',
  'rv.reviewer as review_reviewer',
  'rv.reviewed_at as review_reviewed_at',
] as const;

function toReview(row: ResultRow): StoredReview | null {
  if (row.review_status === null || row.review_reviewer === null || row.review_reviewed_at === null) return null;
  const boxes = row.review_boxes === null ? null : (json(row.review_boxes) as ReviewBox[]);
  return { status: row.review_status, note: row.review_note, boxes, reviewer: row.review_reviewer, reviewed_at: new Date(Number(row.review_reviewed_at)) };
}

function toResult(row: ResultRow): StoredResult {
  return {
    request_id: row.request_id,
    line: row.line,
    camera: row.camera,
    model: { name: row.model_name, version: row.model_version },
    verdict: row.verdict,
    detections: json(row.detections) as Detection[],
    image: { width: row.image_width, height: row.image_height },
    timings_ms: json(row.timings) as StageTimings,
    ...(row.classes !== null && row.classes !== undefined ? { classes: json(row.classes) as ClassScore[] } : {}),
    source: row.source,
    created_at: new Date(Number(row.created_at)),
    review: toReview(row),
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
        ...(r.classes ? { classes: JSON.stringify(r.classes) } : {}),
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
  const row = await db
    .selectFrom('results as r')
    .leftJoin('result_reviews as rv', 'rv.request_id', 'r.request_id')
    .selectAll('r')
    .select(REVIEW_COLUMNS)
    .where('r.request_id', '=', requestId)
    .executeTakeFirst();
  return row && toResult(row as ResultRow);
}

/** The SQL of one page; exported so that tests can check its query plan. */
export function pageQuery(db: Db, f: ListFilter) {
  // With a label filter the page is walked along result_labels' (label,
  // created_at, request_id) index, which yields rows in page order; with a
  // review filter that needs a review, along result_reviews' (status | -,
  // created_at, request_id) indexes; otherwise along the results indexes. `k`
  // is the table whose keys drive the walk. The review is always left-joined
  // (by its primary key) to be answered; a condition on it that needs a row
  // makes the join an inner one for the planner.
  const reviewed = f.review !== undefined && f.review !== 'none';
  const k = f.label !== undefined ? 'l' : reviewed ? 'rv' : 'r';
  const col = (name: 'line' | 'created_at' | 'request_id') => sql.ref(`${k}.${name}`);
  return (
    db
      .selectFrom('results as r')
      .leftJoin('result_reviews as rv', 'rv.request_id', 'r.request_id')
      .selectAll('r')
      .select(REVIEW_COLUMNS)
      .$if(f.label !== undefined, (q) => q.innerJoin('result_labels as l', (j) => j.onRef('l.request_id', '=', 'r.request_id').on('l.label', '=', f.label!)))
      .$if(f.review === 'none', (q) => q.where('rv.request_id', 'is', null))
      .$if(f.review === 'any', (q) => q.where('rv.request_id', 'is not', null))
      .$if(reviewed && f.review !== 'any', (q) => q.where('rv.status', '=', f.review as ReviewStatus))
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
  const results = rows.slice(0, f.limit).map((row) => toResult(row as ResultRow));
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
  const verdicts: Record<Verdict, number> = { ok: 0, ng: 0, check: 0 };
  for (const row of verdictRows) verdicts[row.verdict] = Number(row.n);
  const labels: Record<string, LabelCounts> = {};
  for (const row of labelRows) labels[row.label] = { detections: Number(row.detections), results: Number(row.results) };
  return { line, total: verdicts.ok + verdicts.ng + verdicts.check, verdicts, labels };
}

/**
 * Sets a result's review, replacing any before it; undefined when no result has
 * that id. The boxes are checked against the result's image in the same
 * transaction that writes them.
 */
export async function upsertReview(db: Db, requestId: string, review: NewReview, reviewedAt: number): Promise<StoredReview | undefined> {
  return db.transaction().execute(async (trx) => {
    const result = await trx
      .selectFrom('results')
      .select(['line', 'created_at', 'image_width', 'image_height'])
      .where('request_id', '=', requestId)
      .executeTakeFirst();
    if (!result) return undefined;
    if (review.boxes) checkBoxesInImage(review.boxes, { width: result.image_width, height: result.image_height });
    // Only the fields a box has: what a client sent beyond them is not kept.
    const boxes =
      review.boxes?.map(({ label, class_id, box }) => ({
        label,
        ...(class_id !== undefined ? { class_id } : {}),
        box: { x1: box.x1, y1: box.y1, x2: box.x2, y2: box.y2 },
      })) ?? null;
    const row = {
      status: review.status,
      note: review.note ?? null,
      boxes: boxes === null ? null : JSON.stringify(boxes),
      reviewer: review.reviewer,
      reviewed_at: reviewedAt,
    };
    await trx
      .insertInto('result_reviews')
      .values({ request_id: requestId, line: result.line, created_at: Number(result.created_at), ...row })
      .onConflict((oc) => oc.column('request_id').doUpdateSet(row))
      .execute();
    return { status: row.status, note: row.note, boxes, reviewer: row.reviewer, reviewed_at: new Date(reviewedAt) };
  });
}

export async function selectReviewCounts(db: Db, line: string, fromMs?: number, toMs?: number): Promise<ReviewCounts> {
  const total = await db
    .selectFrom('results')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('line', '=', line)
    .$if(fromMs !== undefined, (q) => q.where('created_at', '>=', fromMs!))
    .$if(toMs !== undefined, (q) => q.where('created_at', '<', toMs!))
    .executeTakeFirstOrThrow();
  const rows = await db
    .selectFrom('result_reviews')
    .select(['status', (eb) => eb.fn.countAll<number | string>().as('n')])
    .where('line', '=', line)
    .$if(fromMs !== undefined, (q) => q.where('created_at', '>=', fromMs!))
    .$if(toMs !== undefined, (q) => q.where('created_at', '<', toMs!))
    .groupBy('status')
    .execute();
  const counts: ReviewCounts = { confirmed: 0, false_call: 0, missed: 0, unreviewed: 0 };
  let reviewed = 0;
  for (const row of rows) {
    if (!REVIEW_STATUSES.includes(row.status)) continue;
    counts[row.status] = Number(row.n);
    reviewed += Number(row.n);
  }
  // Two reads, not one snapshot: a result saved and reviewed between them must not make this negative.
  counts.unreviewed = Math.max(0, Number(total.n) - reviewed);
  return counts;
}

export async function ping(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}
