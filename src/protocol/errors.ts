/**
 * How errors travel: every error answer (HTTP, a tus upload, a stream message)
 * is `{error: {code, message}}` with a stable code; the codes and their HTTP
 * statuses are listed in src/errors.ts (the registry) and docs/errors.md.
 */

export interface ErrorBody {
  code: string;
  message: string;
}

/** The body of every HTTP error answer. */
export interface ErrorResponse {
  error: ErrorBody;
}

/**
 * Server codes after which the same request may simply be tried again later.
 * The server sends `Retry-After` with these (and with every 503); the SDK's
 * `SightlineError.retryable` is true for exactly these, plus its own
 * connection-level codes.
 */
export const RETRYABLE_CODES: ReadonlySet<string> = new Set([
  'MODEL_NOT_READY',
  'INFERENCE_STALLED',
  'SHUTTING_DOWN',
  'OVERLOADED',
  'STORE_UNAVAILABLE',
  'QUEUE_FULL',
  'QUEUE_UNAVAILABLE',
  'QUEUE_CLOSED',
  'TOO_MANY_CONNECTIONS',
  'RATE_LIMITED',
]);

/** Whether an error answer carries `Retry-After`: every retryable code, and any 503. */
export function carriesRetryAfter(statusCode: number, code: string): boolean {
  return statusCode === 503 || RETRYABLE_CODES.has(code);
}
