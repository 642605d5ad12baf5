import type { Logger } from 'pino';
import type { OutputMetrics } from './metrics.js';
import type { Outbox } from './outbox.js';

/**
 * Writes an output's messages to its outbox one after another, off the caller's
 * path: `push` returns at once and the writes keep publish order (a pool of
 * PostgreSQL connections would otherwise commit two of them out of order).
 * While the database is away writes wait in memory, at most `max` of them;
 * beyond that, and for a write that fails, the message is dropped and counted.
 */
export class OutboxWriter {
  #tail: Promise<void> = Promise.resolve();
  #pending = 0;
  #closed = false;

  constructor(
    private readonly outbox: Outbox,
    private readonly deps: { metrics: OutputMetrics; logger: Logger; max: number; onWritten?: () => void },
  ) {}

  /** Queues a message for the outbox; never throws. */
  push(key: string, payload: string): void {
    const output = this.outbox.output;
    if (this.#closed) return;
    if (this.#pending >= this.deps.max) {
      this.deps.metrics.dropped.inc({ output, reason: 'outbox_full' });
      return;
    }
    this.#pending++;
    this.#tail = this.#tail.then(async () => {
      try {
        const dropped = await this.outbox.push(key, payload);
        if (dropped > 0) {
          this.deps.metrics.dropped.inc({ output, reason: 'outbox_full' }, dropped);
          this.deps.logger.warn({ event: 'output_outbox_full', output, dropped }, `${output} output: outbox full, dropped the ${dropped} oldest message(s)`);
        }
        this.deps.onWritten?.();
      } catch (err) {
        this.deps.metrics.dropped.inc({ output, reason: 'outbox_unavailable' });
        this.deps.logger.error({ event: 'output_outbox_failed', output, err }, `${output} output: could not write to the outbox, message dropped`);
      } finally {
        this.#pending--;
      }
    });
  }

  /** Resolves once every message pushed so far is written (or dropped). */
  flushed(): Promise<void> {
    return this.#tail;
  }

  /** Takes no more messages; resolves once those queued are written. */
  close(): Promise<void> {
    this.#closed = true;
    return this.#tail;
  }
}
