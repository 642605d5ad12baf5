import { retryAfterMs } from './backoff.js';
import type { WebhookMessage } from './message.js';
import { signature } from './signature.js';

export interface Attempt {
  /** The outbox sequence number: the same for every attempt of a delivery. */
  delivery: number;
  /** From 1. */
  attempt: number;
  /** The idempotency key (the result's request_id). */
  key: string;
  secret: string;
}

export type AttemptOutcome = { ok: true; status: number } | { ok: false; status?: number; error: string; retryAfterMs?: number };

/** How much of a refusing receiver's answer goes into the error (the outbox keeps 1000 characters). */
const ERROR_BODY_CHARS = 200;

/** The headers of one attempt (docs/outputs/webhooks.md). */
export function attemptHeaders(message: WebhookMessage, attempt: Attempt, now = Date.now()): Record<string, string> {
  const timestamp = Math.floor(now / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'Sightline-Webhook/1',
    'idempotency-key': attempt.key,
    'x-sightline-delivery': String(attempt.delivery),
    'x-sightline-attempt': String(attempt.attempt),
    'x-sightline-timestamp': String(timestamp),
  };
  if (attempt.secret) headers['x-sightline-signature'] = signature(attempt.secret, timestamp, message.body);
  return headers;
}

/**
 * Posts one attempt. Never throws: a 2xx is delivered; any other status, a
 * redirect (a POST must not turn into a GET somewhere else), a network error or
 * the signal firing (timeout, shutdown) is a failure with its reason.
 */
export async function postAttempt(message: WebhookMessage, attempt: Attempt, signal: AbortSignal): Promise<AttemptOutcome> {
  try {
    const res = await fetch(message.url, { method: 'POST', headers: attemptHeaders(message, attempt), body: message.body, redirect: 'manual', signal });
    if (res.status >= 200 && res.status < 300) {
      // Drained, not read: the connection goes back to the pool for the next delivery.
      await res.body?.cancel().catch(() => undefined);
      return { ok: true, status: res.status };
    }
    const text = await res.text().catch(() => '');
    const snippet = text.replace(/\s+/g, ' ').trim().slice(0, ERROR_BODY_CHARS);
    const outcome: AttemptOutcome = { ok: false, status: res.status, error: `HTTP ${res.status}${snippet ? `: ${snippet}` : ''}` };
    if (res.status === 429 || res.status === 503) {
      const after = retryAfterMs(res.headers.get('retry-after'));
      if (after !== undefined) outcome.retryAfterMs = after;
    }
    return outcome;
  } catch (err) {
    return { ok: false, error: describe(err) };
  }
}

/** fetch's errors say "fetch failed"; the reason is in `cause` (ECONNREFUSED, a TLS error, …). */
function describe(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError') return 'timed out';
    if (err.name === 'AbortError') return 'aborted';
    const cause = (err as Error & { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as Error & { code?: string }).code;
      return code ? `${code}: ${cause.message}` : cause.message;
    }
    return err.message;
  }
  return String(err);
}
