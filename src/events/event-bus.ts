import type { ResultSource, StoredResult } from '../store/index.js';

/** A detection result as /v1/detect returns it. */
export type DetectionResult = Omit<StoredResult, 'created_at' | 'source'>;

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

export type EventHandler = (event: SightlineEvent) => void;

/**
 * Fan-out of result and status events by production line. Back ends: in-process
 * (one process, the embedded default) and a RabbitMQ topic exchange (replicas see
 * each other's events). Delivery is at most once and live only: a subscriber gets
 * what is published while it is subscribed; history lives in the result store.
 */
export interface EventBus {
  /** Publishes an event; never throws (a lost broker drops live events, counted by the back end). */
  publish(event: SightlineEvent): void;
  /**
   * Calls handler for every event of `line` (or of every line with ALL_LINES) from
   * now on, in this process and, with a shared back end, in every other. Resolves once
   * the subscription is in place (for a broker: bound), returns the unsubscribe function.
   */
  subscribe(line: string, handler: EventHandler): Promise<() => Promise<void>>;
  /** True while publishing reaches other subscribers (always true in-process). */
  readonly connected: boolean;
  close(): Promise<void>;
}
