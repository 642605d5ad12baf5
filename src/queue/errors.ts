/**
 * Queue errors with stable codes and the HTTP status the API should answer.
 * They live here until the lead moves them into src/errors.ts (same codes, same
 * statuses); callers should test `err.code`, never the class.
 */
export type QueueErrorCode = 'QUEUE_FULL' | 'QUEUE_UNAVAILABLE' | 'QUEUE_CLOSED' | 'INVALID_JOB';

export class QueueError extends Error {
  override name = 'QueueError';
  constructor(
    readonly code: QueueErrorCode,
    message: string,
    readonly statusCode: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The queue holds its maximum number of waiting jobs: try again later (503 + Retry-After). */
export function queueFull(max?: number): QueueError {
  return new QueueError('QUEUE_FULL', max === undefined ? 'The job queue is full' : `The job queue is full (${max} jobs waiting)`, 503);
}

/** The broker cannot be reached right now; the queue is reconnecting (503 + Retry-After). */
export function queueUnavailable(reason: string, cause?: unknown): QueueError {
  return new QueueError('QUEUE_UNAVAILABLE', `The job queue is unavailable: ${reason}`, 503, { cause });
}

/** The queue was closed (server shutting down). */
export function queueClosed(): QueueError {
  return new QueueError('QUEUE_CLOSED', 'The job queue is closed', 503);
}

export function invalidJob(reason: string): QueueError {
  return new QueueError('INVALID_JOB', `Invalid job: ${reason}`, 400);
}

/**
 * Throw this (or any error with `unrecoverable: true`) from a handler to
 * dead-letter the job at once: retrying a corrupt image cannot help.
 */
export class UnrecoverableJobError extends Error {
  override name = 'UnrecoverableJobError';
  readonly unrecoverable = true;
}

export function isUnrecoverable(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { unrecoverable?: unknown }).unrecoverable === true;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
