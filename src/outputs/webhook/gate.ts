import { nextAttemptDelay, type Backoff } from './backoff.js';

/** A failed attempt that says the receiver is away rather than that it refused this message. */
export function receiverAway(status: number | undefined): boolean {
  return status === undefined || status === 429 || status === 503;
}

/**
 * Holds deliveries back while every receiver is away (connection refused, timed
 * out, 429 or 503): one probe at a time then goes out, paced by the receivers'
 * own backoff, instead of every waiting delivery trying (and using up its
 * attempts) on its own. A receiver down for an hour then costs a few probes, not
 * a dead letter per result; the first success lets the rest flow.
 *
 * Only when all are away: the outbox claims deliveries in order whatever their
 * URL, so holding back one receiver's would also hold back the others'. A single
 * receiver away among answering ones is left to each delivery's backoff.
 */
export class ReceiverGate {
  readonly #away = new Map<string, { failures: number; probeAt: number }>();

  constructor(
    private readonly urls: readonly string[],
    private readonly backoff: Backoff,
  ) {}

  /** Records an attempt's outcome for `url`; `away` per receiverAway. */
  record(url: string, away: boolean, retryAfterMs?: number, now = Date.now()): void {
    if (!away) {
      this.#away.delete(url);
      return;
    }
    const failures = (this.#away.get(url)?.failures ?? 0) + 1;
    this.#away.set(url, { failures, probeAt: now + nextAttemptDelay(failures, this.backoff, retryAfterMs) });
  }

  /**
   * How many deliveries may be claimed now, at most `free`, with `busy` attempts
   * in flight: all of them while a receiver answers; while all are away, one (a
   * probe) when it is due and nothing is in flight, else none (`retryAt` says
   * when to look again).
   */
  allowance(free: number, busy: number, now = Date.now()): { claim: number; retryAt?: number } {
    if (!this.closed) return { claim: free };
    if (busy > 0) return { claim: 0 };
    const due = Math.min(...this.urls.map((url) => this.#away.get(url)!.probeAt));
    if (due > now) return { claim: 0, retryAt: due };
    return { claim: Math.min(1, free) };
  }

  /** True while every receiver is away (deliveries wait behind probes). */
  get closed(): boolean {
    return this.urls.every((url) => this.#away.has(url));
  }
}
