import type { ResultEvent, SightlineEvent } from '../protocol/events.js';
import type { DetectionResult, ResultSource } from '../protocol/results.js';

// The event types are the wire contract (src/protocol/events.ts); the bus re-exports them for its users.
export { ALL_LINES, type JobStatusEvent, type ResultEvent, type SightlineEvent } from '../protocol/events.js';

export function resultEvent(source: ResultSource, result: DetectionResult): ResultEvent {
  return { type: 'result', line: result.line, source, at: new Date().toISOString(), result };
}

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
