import { Errors } from '../errors.js';
import { decodeCursor, type Keyset } from './cursor.js';
import { REVIEW_MAX_BOXES, REVIEW_MAX_LABEL, REVIEW_MAX_NOTE, type ReviewBox } from '../protocol/results.js';
import {
  DEFAULT_LIST_LIMIT,
  MAX_LIST_LIMIT,
  RESULT_SOURCES,
  REVIEW_FILTERS,
  REVIEW_STATUSES,
  VERDICTS,
  type NewResult,
  type NewReview,
  type ResultQuery,
  type ReviewFilter,
  type StatsWindow,
} from './result-store.js';

/** A `ResultQuery` checked and reduced to what the SQL needs. */
export interface ListFilter {
  line?: string;
  camera?: string;
  fromMs?: number;
  toMs?: number;
  verdict?: string;
  label?: string;
  review?: ReviewFilter;
  limit: number;
  after?: Keyset;
}

const invalid = (why: string) => new Errors.INVALID_REQUEST(why);

function epochMs(name: string, value: Date | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw invalid(`${name} is not a valid time`);
  return value.getTime();
}

export function windowMs(window: StatsWindow): { fromMs?: number; toMs?: number } {
  return { fromMs: epochMs('from', window.from), toMs: epochMs('to', window.to) };
}

export function listFilter(query: ResultQuery): ListFilter {
  const { limit = DEFAULT_LIST_LIMIT } = query;
  if (!Number.isInteger(limit) || limit < 1) throw invalid(`limit must be a whole number from 1 to ${MAX_LIST_LIMIT}`);
  if (query.verdict !== undefined && !VERDICTS.includes(query.verdict)) throw invalid(`verdict must be one of ${VERDICTS.join(', ')}`);
  if (query.review !== undefined && !REVIEW_FILTERS.includes(query.review)) throw invalid(`review must be one of ${REVIEW_FILTERS.join(', ')}`);
  const filter: ListFilter = { ...windowMs(query), limit: Math.min(limit, MAX_LIST_LIMIT) };
  if (query.line !== undefined) filter.line = query.line;
  if (query.camera !== undefined) filter.camera = query.camera;
  if (query.verdict !== undefined) filter.verdict = query.verdict;
  if (query.label !== undefined) filter.label = query.label;
  if (query.review !== undefined) filter.review = query.review;
  if (query.cursor !== undefined) filter.after = decodeCursor(query.cursor);
  return filter;
}

/** Rejects what would store a row that the filters and statistics could not read back correctly. */
export function checkResult(result: NewResult): void {
  if (typeof result.request_id !== 'string' || result.request_id === '') throw invalid('request_id must be a non-empty string');
  if (typeof result.line !== 'string') throw invalid('line must be a string');
  if (typeof result.camera !== 'string' || result.camera === '') throw invalid('camera must be a non-empty string');
  if (!VERDICTS.includes(result.verdict)) throw invalid(`verdict must be one of ${VERDICTS.join(', ')}`);
  if (!RESULT_SOURCES.includes(result.source)) throw invalid(`source must be one of ${RESULT_SOURCES.join(', ')}`);
  if (!Array.isArray(result.detections)) throw invalid('detections must be an array');
  epochMs('created_at', result.created_at);
}

const invalidReview = (why: string) => new Errors.INVALID_REVIEW(why);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A review checked for what needs no stored result: status, note, reviewer and each box's own shape. */
export function checkReview(review: NewReview): void {
  if (!isObject(review)) throw invalidReview('a review is an object');
  if (!REVIEW_STATUSES.includes(review.status)) throw invalidReview(`status must be one of ${REVIEW_STATUSES.join(', ')}`);
  if (review.note !== undefined && (typeof review.note !== 'string' || review.note.length > REVIEW_MAX_NOTE)) {
    throw invalidReview(`note must be text of at most ${REVIEW_MAX_NOTE} characters`);
  }
  if (typeof review.reviewer !== 'string' || review.reviewer === '') throw invalidReview('reviewer must be a non-empty string');
  if (review.reviewed_at !== undefined && (!(review.reviewed_at instanceof Date) || Number.isNaN(review.reviewed_at.getTime()))) {
    throw invalidReview('reviewed_at is not a valid time');
  }
  if (review.boxes === undefined) return;
  if (!Array.isArray(review.boxes) || review.boxes.length > REVIEW_MAX_BOXES) throw invalidReview(`boxes must be a list of at most ${REVIEW_MAX_BOXES} boxes`);
  for (const [i, b] of review.boxes.entries()) checkBoxShape(b, `boxes[${i}]`);
}

function checkBoxShape(b: ReviewBox, where: string): void {
  if (!isObject(b) || !isObject(b.box)) throw invalidReview(`${where} must be {label, box: {x1, y1, x2, y2}}`);
  if (typeof b.label !== 'string' || b.label.trim() === '' || b.label.length > REVIEW_MAX_LABEL) {
    throw invalidReview(`${where}.label must be 1 to ${REVIEW_MAX_LABEL} characters, not only spaces`);
  }
  // A label becomes a line of the exported data.yaml: no line breaks or other control characters.
  if (/\p{Cc}/u.test(b.label)) throw invalidReview(`${where}.label must not contain control characters`);
  if (b.class_id !== undefined && !(Number.isInteger(b.class_id) && b.class_id >= 0)) throw invalidReview(`${where}.class_id must be a whole number ≥ 0`);
  const { x1, y1, x2, y2 } = b.box;
  for (const [name, v] of Object.entries({ x1, y1, x2, y2 })) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidReview(`${where}.box.${name} must be a finite number`);
  }
  if (!(x1 < x2 && y1 < y2)) throw invalidReview(`${where}.box must have x1 < x2 and y1 < y2 (got ${x1}, ${y1}, ${x2}, ${y2})`);
}

/** Boxes must lie inside the result's image (original pixels, as its detections). */
export function checkBoxesInImage(boxes: readonly ReviewBox[], image: { width: number; height: number }): void {
  boxes.forEach(({ box }, i) => {
    if (box.x1 < 0 || box.y1 < 0 || box.x2 > image.width || box.y2 > image.height) {
      throw invalidReview(
        `boxes[${i}].box (${box.x1}, ${box.y1}, ${box.x2}, ${box.y2}) reaches outside the ${image.width}×${image.height} image: 0 ≤ x1 < x2 ≤ width, 0 ≤ y1 < y2 ≤ height`,
      );
    }
  });
}
