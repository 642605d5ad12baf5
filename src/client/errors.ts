import { RETRYABLE_CODES } from '../protocol/errors.js';

/**
 * Codes the SDK itself raises, next to the server's own codes (docs/errors.md:
 * `INVALID_IMAGE`, `MODEL_NOT_FOUND`, `OVERLOADED`, …, passed through unchanged).
 */
export const CLIENT_ERROR_CODES = {
  /** The server could not be reached, or the connection broke before an answer. */
  NETWORK_ERROR: 'NETWORK_ERROR',
  /** The client-side timeout (`timeoutMs`) ran out before an answer. */
  TIMEOUT: 'TIMEOUT',
  /** The caller's AbortSignal fired. */
  ABORTED: 'ABORTED',
  /** The answer was not the JSON the API documents. */
  BAD_RESPONSE: 'BAD_RESPONSE',
  /** `waitForJob`: the job ended in the dead letters (see `deadReason`, `lastError`). */
  JOB_DEAD: 'JOB_DEAD',
  /** `upload`: the tus upload failed (see `cause`). */
  UPLOAD_FAILED: 'UPLOAD_FAILED',
  /** Stream: `send()` while the connection is not open (frames are never buffered). */
  NOT_CONNECTED: 'NOT_CONNECTED',
  /** Stream: the socket already holds `maxBufferedBytes` of unsent data. */
  CLIENT_BACKPRESSURE: 'CLIENT_BACKPRESSURE',
  /** Stream: the connection closed while this frame had no answer yet; it never will. */
  CONNECTION_LOST: 'CONNECTION_LOST',
  /** Stream: `close()` was called. */
  CLOSED: 'CLOSED',
  /** Stream `detect()`: the server dropped the frame (backpressure, per the connection's drop policy). */
  FRAME_DROPPED: 'FRAME_DROPPED',
} as const;

export type ClientErrorCode = keyof typeof CLIENT_ERROR_CODES;

/**
 * The SDK's own codes after which trying again may succeed: the connection failed,
 * not the request. Server codes are retryable when the server says so
 * ({@link RETRYABLE_CODES}, answered with `Retry-After`).
 */
export const CLIENT_RETRYABLE_CODES: ReadonlySet<ClientErrorCode> = new Set<ClientErrorCode>([
  'NETWORK_ERROR',
  'TIMEOUT',
  'NOT_CONNECTED',
  'CLIENT_BACKPRESSURE',
  'CONNECTION_LOST',
]);

export interface SightlineErrorInit {
  code: string;
  message: string;
  /** HTTP status; 0 when no HTTP answer was involved (network, timeout, stream). */
  status?: number;
  retryAfterMs?: number | null;
  requestId?: string | null;
  frameId?: string | null;
  jobId?: string | null;
  deadReason?: string | null;
  lastError?: string | null;
  cause?: unknown;
}

/**
 * Every failure the SDK reports: an error answer of the server (its stable `code`,
 * the HTTP `status`, `Retry-After` in ms, the `X-Request-Id`) or one of the SDK's
 * own {@link CLIENT_ERROR_CODES}.
 *
 * @example
 * ```ts
 * try {
 *   await client.detect(image, { line: 'line-3' });
 * } catch (err) {
 *   if (err instanceof SightlineError && err.retryable) await sleep(err.retryAfterMs ?? 1000);
 *   else throw err;
 * }
 * ```
 */
export class SightlineError extends Error {
  override readonly name = 'SightlineError';
  /** The server's error code (e.g. `INVALID_IMAGE`) or a client code (e.g. `NETWORK_ERROR`). */
  readonly code: string;
  /** HTTP status of the answer; 0 when there was none. */
  readonly status: number;
  /** The server's `Retry-After`, in milliseconds; null when it sent none. */
  readonly retryAfterMs: number | null;
  /** The answer's `X-Request-Id` (also in the server's logs); null when unknown. */
  readonly requestId: string | null;
  /** Stream errors: the frame the error is about; null for connection-level errors. */
  readonly frameId: string | null;
  /** Job errors: the job concerned. */
  readonly jobId: string | null;
  /** `JOB_DEAD`: why the job was dead-lettered (`failed`, `expired`). */
  readonly deadReason: string | null;
  /** `JOB_DEAD`: the job's last handler error. */
  readonly lastError: string | null;

  constructor(init: SightlineErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.status = init.status ?? 0;
    this.retryAfterMs = init.retryAfterMs ?? null;
    this.requestId = init.requestId ?? null;
    this.frameId = init.frameId ?? null;
    this.jobId = init.jobId ?? null;
    this.deadReason = init.deadReason ?? null;
    this.lastError = init.lastError ?? null;
  }

  /**
   * True when trying the same thing again later may succeed: the server's retryable codes
   * (overload, not ready, queue full, rate limited, …; the ones it answers with `Retry-After`)
   * and the SDK's connection-level codes (network, timeout, …).
   */
  get retryable(): boolean {
    return RETRYABLE_CODES.has(this.code) || (CLIENT_RETRYABLE_CODES as ReadonlySet<string>).has(this.code);
  }
}

/** Parses `Retry-After` (delay-seconds or an HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
