import type { ColumnType } from 'kysely';
import type { ResultSource, ReviewStatus, Verdict } from '../protocol/results.js';

// Timestamps are epoch milliseconds in an integer column on both back ends, so
// ordering, ranges and the paging cursor are the same plain number comparisons
// everywhere. pg hands int8 back as a string (it may exceed 2^53), hence the
// wider select type; the query layer turns it into a number.
type EpochMs = ColumnType<number | string, number, never>;
// JSON is written as a string; sqlite returns that string, pg a parsed jsonb value.
type Json = ColumnType<unknown, string, never>;

export interface ResultsTable {
  request_id: string;
  line: string;
  /** Added by 0002_camera; rows from before hold `default`. */
  camera: string;
  model_name: string;
  model_version: string;
  verdict: Verdict;
  detections: Json;
  image_width: number;
  image_height: number;
  timings: Json;
  source: ResultSource;
  created_at: EpochMs;
  /** Added by 0004_classes: a classification model's top classes; null otherwise. */
  classes: ColumnType<unknown, string | null | undefined, never>;
}

/**
 * One row per (result, label): the label filter and label statistics read this
 * through its indexes instead of scanning detections JSON. `line` and
 * `created_at` are copied from the (never updated) result so that both can be
 * answered from this table's indexes alone.
 */
export interface ResultLabelsTable {
  request_id: string;
  label: string;
  count: number;
  line: string;
  created_at: EpochMs;
}

/**
 * A result's review (0003_reviews): one row per result, replaced by a later
 * review. `line` and `created_at` are the result's, copied (results are never
 * updated) so that the review filter walks this table's indexes in page order.
 */
export interface ResultReviewsTable {
  request_id: string;
  line: string;
  created_at: EpochMs;
  status: ReviewStatus;
  note: string | null;
  /** ReviewBox[] as JSON, or null when the review gave none. */
  boxes: ColumnType<unknown, string | null, string | null>;
  reviewer: string;
  reviewed_at: ColumnType<number | string, number, number>;
}

export interface StoreSchema {
  results: ResultsTable;
  result_labels: ResultLabelsTable;
  result_reviews: ResultReviewsTable;
}
