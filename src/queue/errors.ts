import { Errors } from '../errors.js';

// The queue throws the registry's errors (src/errors.ts): one code, one status, one
// message format wherever they are raised. Callers test `err.code`.

/** QUEUE_FULL (503 + Retry-After): the queue holds its maximum number of waiting jobs; try again later. */
export function queueFull(max?: number) {
  // The registry's message has no placeholder: util.format appends the extra argument after a space.
  return max === undefined ? new Errors.QUEUE_FULL() : new Errors.QUEUE_FULL(`(${max} jobs waiting)`);
}

/** QUEUE_UNAVAILABLE (503 + Retry-After): the broker or the job-state store cannot be reached right now. */
export function queueUnavailable(reason: string, cause?: unknown) {
  return cause === undefined ? new Errors.QUEUE_UNAVAILABLE(reason) : new Errors.QUEUE_UNAVAILABLE(reason, { cause });
}

/** QUEUE_CLOSED (503): the queue was closed (server shutting down). */
export function queueClosed() {
  return new Errors.QUEUE_CLOSED();
}

/** INVALID_JOB (400). */
export function invalidJob(reason: string) {
  return new Errors.INVALID_JOB(reason);
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
