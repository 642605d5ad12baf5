import type { ResultEvent } from '../../protocol/events.js';

/** One delivery as it waits in the outbox: where it goes and the exact bytes it sends. */
export interface WebhookMessage {
  url: string;
  /**
   * The JSON body as text, kept as sent: every attempt signs and posts the same
   * bytes, so a receiver's dedupe and signature check see one message.
   */
  body: string;
}

/** What a receiver gets for a result (docs/outputs/webhooks.md). */
export interface WebhookResultBody {
  /** The result's request_id, also the Idempotency-Key header. */
  id: string;
  type: 'result';
  line: string;
  camera: string;
  verdict: ResultEvent['result']['verdict'];
  at: string;
  source: ResultEvent['source'];
  result: ResultEvent['result'];
}

export function resultBody(event: ResultEvent): string {
  const body: WebhookResultBody = {
    id: event.result.request_id,
    type: 'result',
    line: event.line,
    camera: event.result.camera,
    verdict: event.result.verdict,
    at: event.at,
    source: event.source,
    result: event.result,
  };
  return JSON.stringify(body);
}

export function encodeMessage(message: WebhookMessage): string {
  return JSON.stringify(message);
}

/** The message of an outbox entry; throws on a payload that is not one (written by something else). */
export function decodeMessage(payload: string): WebhookMessage {
  const value = JSON.parse(payload) as Partial<WebhookMessage>;
  if (typeof value.url !== 'string' || typeof value.body !== 'string') throw new Error('not a webhook message (url and body expected)');
  return { url: value.url, body: value.body };
}

/**
 * A URL as logs and /readyz show it: user info and query left out, since a
 * receiver's token often rides in one of them.
 */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
