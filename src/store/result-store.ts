import type { DetectionResult, Review, ReviewInput, ReviewStatus, ResultSource, Verdict } from '../protocol/results.js';

// The result's wire types (src/protocol/results.ts); a job's result carries `request_id` equal to its job id.
export { REVIEW_STATUSES, RESULT_SOURCES, VERDICTS, type ResultSource, type ReviewStatus } from '../protocol/results.js';

/** A result's review as stored (the wire's `Review` with a Date). */
export interface StoredReview extends Omit<Review, 'reviewed_at'> {
  reviewed_at: Date;
}

/** What `review` takes: the request's body plus who reviewed, and when (default: the moment of the call). */
export interface NewReview extends ReviewInput {
  reviewer: string;
  reviewed_at?: Date;
}

/** One detection result as stored: the result as answered plus where it came from, when, and its review. */
export interface StoredResult extends DetectionResult {
  source: ResultSource;
  created_at: Date;
  /** The latest review; null while nobody has reviewed the result. */
  review: StoredReview | null;
}

/** What `save` takes: `created_at` defaults to the moment of the call; a new result has no review. */
export type NewResult = Omit<StoredResult, 'created_at' | 'review'> & { created_at?: Date };

/** The review filter of `list`: a status, `none` (not reviewed) or `any` (reviewed). */
export type ReviewFilter = ReviewStatus | 'none' | 'any';
export const REVIEW_FILTERS: readonly ReviewFilter[] = ['confirmed', 'false_call', 'missed', 'none', 'any'];

/** Reviews of one line's results in a window, by status; `unreviewed` counts the results without one. */
export type ReviewCounts = Record<ReviewStatus | 'unreviewed', number>;

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 500;

/**
 * Filters of `list`. Time ranges are half-open, `from` ≤ created_at < `to`, so that
 * consecutive windows never count a result twice.
 */
export interface ResultQuery {
  line?: string;
  camera?: string;
  from?: Date;
  to?: Date;
  verdict?: Verdict;
  /** Matches a result when any of its detections has this label. */
  label?: string;
  review?: ReviewFilter;
  /** Page size, 1 to MAX_LIST_LIMIT (larger values are clamped); DEFAULT_LIST_LIMIT when left out. */
  limit?: number;
  /** `next_cursor` of the previous page, with the same filters. */
  cursor?: string;
}

/** A page of results, newest first; `next_cursor` is null on the last page. */
export interface ResultPage {
  results: StoredResult[];
  next_cursor: string | null;
}

export interface StatsWindow {
  from?: Date;
  to?: Date;
}

export interface LabelCounts {
  /** Detections with this label. */
  detections: number;
  /** Results with at least one detection with this label. */
  results: number;
}

export interface LineStats {
  line: string;
  from: Date | null;
  to: Date | null;
  total: number;
  verdicts: Record<Verdict, number>;
  labels: Record<string, LabelCounts>;
}

export type StoreKind = 'sqlite' | 'postgres';

/**
 * Where detection results are kept and read back. The back end owns its
 * connections (but never closes a pool that the caller passed in); every method
 * waits until the store is ready, so calling `waitUntilReady` first only moves
 * the wait (and any STORE_UNAVAILABLE error) to start-up.
 *
 * Events: `error` (a background connection failed; emitted only while someone
 * listens, so an idle pool's hiccup never crashes the process) and `close`.
 */
export interface ResultStore {
  readonly kind: StoreKind;
  /** Connects and runs pending migrations; after a failure the next call tries again. */
  waitUntilReady(): Promise<void>;
  /** Stores a result once: true when stored, false when `request_id` was already there (the first is kept). */
  save(result: NewResult): Promise<boolean>;
  get(requestId: string): Promise<StoredResult | undefined>;
  list(query?: ResultQuery): Promise<ResultPage>;
  /** Counts by verdict and by label of one line's results in a window. */
  lineStats(line: string, window?: StatsWindow): Promise<LineStats>;
  /**
   * Sets a result's review (a later review replaces it); the stored review, or
   * undefined when no result has that id. Boxes must lie inside the result's image:
   * INVALID_REVIEW otherwise.
   */
  review(requestId: string, review: NewReview): Promise<StoredReview | undefined>;
  /** Reviews of one line's results whose created_at lies in the window, by status, and the results not reviewed. */
  reviewCounts(line: string, window?: StatsWindow): Promise<ReviewCounts>;
  /** A cheap round trip, for readiness checks. */
  ping(): Promise<void>;
  /** Waits for operations under way, then releases what the store owns. Idempotent. */
  close(): Promise<void>;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'close', listener: () => void): this;
  off(event: 'error', listener: (err: Error) => void): this;
  off(event: 'close', listener: () => void): this;
}
