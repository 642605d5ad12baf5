import type { DetectionResult, ResultSource } from '../protocol/results.js';

/** A finished inspection as observers see it: the result, the image it came from and when. */
export interface InspectedFrame {
  source: ResultSource;
  result: DetectionResult;
  /** The encoded image as received (JPEG, PNG, …). Observers must not keep it longer than they need. */
  image: Buffer;
  /** Epoch milliseconds when the result was produced. */
  at: number;
}

/**
 * Something that follows every inspection of this process (snapshots, the line
 * registry, history). Called synchronously on the request path after the result
 * exists: an observer must return at once and do its work in the background,
 * and must never throw (a failure is its own to log and count).
 */
export interface InspectionObserver {
  onInspected(frame: InspectedFrame): void;
}
