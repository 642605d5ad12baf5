/** Events of /v1/stream subscriptions (and of the event bus between replicas). */
import type { DetectionResult, ResultSource } from './results.js';

/** A detection result, as /v1/detect returns it, published for subscribers of its line. */
export interface ResultEvent {
  type: 'result';
  line: string;
  source: ResultSource;
  /** ISO time the result was produced. */
  at: string;
  result: DetectionResult;
}

/** A job changed state (done results also arrive as ResultEvents with source "job"). */
export interface JobStatusEvent {
  type: 'job';
  line: string;
  at: string;
  job_id: string;
  state: 'retrying' | 'dead';
  error?: string;
}

export type SightlineEvent = ResultEvent | JobStatusEvent;

/** Subscribe to one line, or to every line with ALL_LINES. */
export const ALL_LINES = '*';
