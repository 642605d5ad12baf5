/** Retry timing of failed deliveries. */
export interface Backoff {
  baseMs: number;
  maxMs: number;
}

/**
 * Delay before the next attempt after `failures` failed ones (1 = the first
 * failed): "full jitter", uniform in [0, min(max, base·2^(failures-1))], so
 * that receivers coming back from an outage are not hit by every sender at once.
 */
export function retryDelay(failures: number, backoff: Backoff, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 52);
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** exponent);
  return Math.floor(random() * ceiling);
}

/** A Retry-After header (seconds, or an HTTP date) in milliseconds from `now`; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null) return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * When a failed delivery is tried again: the jittered backoff, or later if the
 * receiver asked for it with Retry-After, never later than `maxMs` (the
 * operator's bound wins over a receiver asking for hours).
 */
export function nextAttemptDelay(failures: number, backoff: Backoff, retryAfter: number | undefined, random: () => number = Math.random): number {
  const jittered = retryDelay(failures, backoff, random);
  if (retryAfter === undefined) return jittered;
  return Math.min(backoff.maxMs, Math.max(jittered, retryAfter));
}
