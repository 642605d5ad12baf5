import type { Logger } from 'pino';
import type { OutputMetrics } from '../metrics.js';
import type { Outbox, OutboxEntry } from '../outbox.js';
import { nextAttemptDelay, type Backoff } from './backoff.js';
import { ReceiverGate, receiverAway } from './gate.js';
import { decodeMessage, displayUrl } from './message.js';
import { postAttempt } from './post.js';
import type { UrlHealth } from './url-health.js';

export interface DelivererOptions {
  outbox: Outbox;
  metrics: OutputMetrics;
  logger: Logger;
  health: UrlHealth;
  /** The configured receivers (deliveries written under another config may name others). */
  urls: readonly string[];
  /** Attempts in flight at once, all receivers together. */
  concurrency: number;
  timeoutMs: number;
  maxAttempts: number;
  backoff: Backoff;
  /** Empty: requests are not signed. */
  secret: string;
  /** After each delivery's outcome is written (the outbox depth may have changed). */
  onSettled?: () => void;
}

/**
 * Deliveries that are due are looked for this often even when nothing woke the
 * loop: those another process wrote, released or left behind (a crashed
 * holder's claims come back when their lease ends), and retries scheduled
 * before a restart.
 */
const POLL_MS = 1000;
/** A claim outlives the attempt's timeout by this much, for the outbox writes around it. */
const LEASE_MARGIN_MS = 5000;
/** What close() gives attempts in flight before it cuts them short (their deliveries are released, not failed). */
const CLOSE_GRACE_MS = 3000;

/**
 * Drains the webhook outbox: claims due deliveries, keeps up to `concurrency`
 * attempts in flight, and settles each in the outbox (done, retried later with
 * backoff, or dead). Delivery is at least once: a receiver dedupes on the
 * Idempotency-Key, since a crash between a 2xx and `done` sends it again.
 */
export class Deliverer {
  readonly #o: DelivererOptions;
  readonly #lease: number;
  readonly #gate: ReceiverGate;
  readonly #inFlight = new Set<Promise<void>>();
  /** Aborted by close() when the grace time is over. */
  readonly #shutdown = new AbortController();
  #running = false;
  #pumping: Promise<void> | undefined;
  #again = false;
  #poll: NodeJS.Timeout | undefined;
  #wake: { at: number; timer: NodeJS.Timeout } | undefined;
  #outboxDown = false;
  #closed: Promise<void> | undefined;

  constructor(options: DelivererOptions) {
    this.#o = options;
    this.#lease = options.timeoutMs + LEASE_MARGIN_MS;
    this.#gate = new ReceiverGate(options.urls, options.backoff);
  }

  start(): void {
    if (this.#running || this.#closed) return;
    this.#running = true;
    this.#poll = setInterval(this.kick, POLL_MS);
    this.#poll.unref();
    this.kick();
  }

  /** Looks for due deliveries now (a push was written, an attempt ended, a retry fell due). */
  readonly kick = (): void => {
    if (!this.#running) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = this.#pump()
      .catch((err: unknown) => this.#o.logger.error({ event: 'webhook_loop_failed', err }, 'webhook delivery loop failed; the next poll tries again'))
      .finally(() => {
        this.#pumping = undefined;
      });
  };

  async #pump(): Promise<void> {
    const { outbox, concurrency } = this.#o;
    do {
      this.#again = false;
      while (this.#running && this.#inFlight.size < concurrency) {
        // Every receiver away: no claim (not even a query) until a probe is due.
        const allowed = this.#gate.allowance(concurrency - this.#inFlight.size, this.#inFlight.size);
        if (allowed.claim === 0) {
          if (allowed.retryAt !== undefined) this.#wakeAt(allowed.retryAt);
          break;
        }
        const wanted = allowed.claim;
        let entries: OutboxEntry[];
        try {
          entries = await outbox.claim(wanted, this.#lease);
          this.#outboxUp();
        } catch (err) {
          this.#outboxFailed(err);
          return; // the next poll tries again
        }
        if (!this.#running) {
          await Promise.all(entries.map((e) => this.#release(e.seq)));
          return;
        }
        for (const entry of entries) this.#track(this.#deliver(entry));
        if (entries.length < wanted) break;
      }
    } while (this.#again && this.#running);
  }

  #track(delivery: Promise<void>): void {
    this.#inFlight.add(delivery);
    const ended = () => {
      this.#inFlight.delete(delivery);
      this.kick();
    };
    // #deliver settles every outcome itself; the rejection handler only keeps a bug from becoming an unhandled rejection.
    delivery.then(ended, (err: unknown) => {
      this.#o.logger.error({ event: 'webhook_delivery_failed', err }, 'webhook delivery failed unexpectedly; it comes back when its claim ends');
      ended();
    });
  }

  async #deliver(entry: OutboxEntry): Promise<void> {
    const { outbox, metrics, logger, health } = this.#o;
    const output = outbox.output;
    let message: ReturnType<typeof decodeMessage>;
    try {
      message = decodeMessage(entry.payload);
    } catch (err) {
      // Nothing can send it: straight to the dead letters, where a person can see it.
      await this.#settle(entry, () => outbox.kill(entry.seq, `unreadable message: ${(err as Error).message}`));
      metrics.dropped.inc({ output, reason: 'dead_letter' });
      return;
    }
    const attempt = entry.attempts + 1;
    const signal = AbortSignal.any([this.#shutdown.signal, AbortSignal.timeout(this.#o.timeoutMs)]);
    const outcome = await postAttempt(message, { delivery: entry.seq, attempt, key: entry.key, secret: this.#o.secret }, signal);
    const url = displayUrl(message.url);
    if (outcome.ok) {
      this.#gate.record(message.url, false);
      metrics.sent.inc({ output });
      if (health.succeeded(message.url)) logger.info({ event: 'webhook_recovered', url }, `webhook receiver ${url} answers again`);
      await this.#settle(entry, () => outbox.done(entry.seq));
      return;
    }
    if (this.#shutdown.signal.aborted) {
      // Cut short by shutdown, not refused: the next process sends it without counting this attempt.
      await this.#release(entry.seq);
      return;
    }
    metrics.failed.inc({ output });
    this.#gate.record(message.url, receiverAway(outcome.status), outcome.retryAfterMs);
    if (health.failed(message.url, outcome.error)) {
      logger.warn(
        { event: 'webhook_failing', url, error: outcome.error, status: outcome.status },
        `webhook receiver ${url} failed: ${outcome.error} (retrying with backoff)`,
      );
    }
    if (attempt >= this.#o.maxAttempts) {
      await this.#settle(entry, () => outbox.kill(entry.seq, outcome.error));
      metrics.dropped.inc({ output, reason: 'dead_letter' });
      logger.warn(
        { event: 'webhook_dead_letter', url, key: entry.key, delivery: entry.seq, attempts: attempt, error: outcome.error },
        `webhook delivery ${entry.seq} (${entry.key}) to ${url} gave up after ${attempt} attempts: ${outcome.error}; kept as a dead letter`,
      );
      return;
    }
    const dueAt = Date.now() + nextAttemptDelay(attempt, this.#o.backoff, outcome.retryAfterMs);
    await this.#settle(entry, () => outbox.retry(entry.seq, dueAt, outcome.error));
    this.#wakeAt(dueAt);
  }

  /** Writes an attempt's outcome; if the outbox is away the claim runs out and the delivery comes back (at least once). */
  async #settle(entry: OutboxEntry, write: () => Promise<void>): Promise<void> {
    try {
      await write();
      this.#outboxUp();
      this.#o.onSettled?.();
    } catch (err) {
      this.#outboxFailed(err, entry.seq);
    }
  }

  async #release(seq: number): Promise<void> {
    await this.#o.outbox.release(seq).catch((err: unknown) => this.#outboxFailed(err, seq));
  }

  /** One timer, for the earliest retry this process scheduled; later ones are found by the poll or the next wake. */
  #wakeAt(at: number): void {
    if (!this.#running || (this.#wake && this.#wake.at <= at)) return;
    if (this.#wake) clearTimeout(this.#wake.timer);
    const timer = setTimeout(
      () => {
        this.#wake = undefined;
        this.kick();
      },
      Math.max(0, at - Date.now()),
    );
    timer.unref();
    this.#wake = { at, timer };
  }

  #outboxFailed(err: unknown, seq?: number): void {
    if (this.#outboxDown) return;
    this.#outboxDown = true;
    this.#o.logger.warn(
      { event: 'webhook_outbox_unavailable', err, delivery: seq },
      'webhook output: the outbox (result store) is out of reach; deliveries wait in it and resume when it is back',
    );
  }

  #outboxUp(): void {
    if (!this.#outboxDown) return;
    this.#outboxDown = false;
    this.#o.logger.info({ event: 'webhook_outbox_available' }, 'webhook output: the outbox is reachable again');
  }

  /**
   * Claims no more; gives attempts in flight a few seconds, then cuts them
   * short and releases their deliveries for the next process. Idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#running = false;
    if (this.#poll) clearInterval(this.#poll);
    if (this.#wake) clearTimeout(this.#wake.timer);
    this.#wake = undefined;
    await this.#pumping;
    const all = Promise.allSettled(this.#inFlight);
    const grace = Math.min(this.#o.timeoutMs, CLOSE_GRACE_MS);
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([all.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), grace)))]);
    clearTimeout(timer);
    if (!finished) {
      this.#shutdown.abort();
      await all;
    }
  }
}
