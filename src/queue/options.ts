import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { PRIORITIES, type Priority } from '../protocol/options.js';
import { invalidJob } from './errors.js';
import type { EnqueueInput, JobOptions } from './job-queue.js';

/** Options every back end takes. */
export interface QueueOptions {
  /** Runs of a job before it is dead-lettered (the first run counts). Default 3. */
  maxAttempts?: number;
  /**
   * Retry backoff: the n-th retry waits `min(backoffMaxMs, backoffBaseMs × 2^(n-1))`.
   * Default 1000 ms base, capped at 60 000 ms. No jitter: the amqp back end keeps
   * one delay queue per distinct delay, so delays must come from a small fixed set.
   */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Jobs waiting (ready + retrying) before enqueue throws QUEUE_FULL. Default 10 000. */
  maxLength?: number;
  /** How long close() waits for jobs in hand before giving them back. Default 10 000 ms. */
  closeGraceMs?: number;
}

export interface ResolvedQueueOptions {
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  maxLength: number;
  closeGraceMs: number;
}

export function resolveQueueOptions(o: QueueOptions): ResolvedQueueOptions {
  const r = {
    maxAttempts: o.maxAttempts ?? 3,
    backoffBaseMs: o.backoffBaseMs ?? 1000,
    backoffMaxMs: o.backoffMaxMs ?? 60_000,
    maxLength: o.maxLength ?? 10_000,
    closeGraceMs: o.closeGraceMs ?? 10_000,
  };
  if (!Number.isInteger(r.maxAttempts) || r.maxAttempts < 1) throw new RangeError('maxAttempts must be an integer ≥ 1');
  if (!(r.backoffBaseMs >= 0) || !(r.backoffMaxMs >= 0)) throw new RangeError('backoff delays must be ≥ 0');
  if (!Number.isInteger(r.maxLength) || r.maxLength < 1) throw new RangeError('maxLength must be an integer ≥ 1');
  return r;
}

/**
 * The page size of listDead(). Checked here for every back end: a non-finite or
 * fractional limit made SQLite fail the query and an AMQP browse never stop.
 */
export function deadListLimit(options: { limit?: number }): number {
  const limit = options.limit ?? 100;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`listDead limit must be a whole number ≥ 1, not ${limit}`);
  return limit;
}

/** Delay before the retry that follows failed run number `attempt` (1-based). */
export function retryDelayMs(o: ResolvedQueueOptions, attempt: number): number {
  return Math.round(Math.min(o.backoffMaxMs, o.backoffBaseMs * 2 ** (attempt - 1)));
}

/** Every delay retryDelayMs can produce, for back ends that declare one place per delay. */
export function allRetryDelays(o: ResolvedQueueOptions): number[] {
  const delays = new Set<number>();
  for (let attempt = 1; attempt < o.maxAttempts; attempt++) delays.add(retryDelayMs(o, attempt));
  return [...delays];
}

/** Same rule as the HTTP API's `line` parameter; it also keeps AMQP routing keys free of `*` and `#`. */
const LINE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface ValidJob {
  line: string;
  priority: Priority;
  image: Buffer;
  contentType: string;
  options: JobOptions;
  optionsJson: string;
  idempotencyKey: string | null;
  deadline: number | null;
}

/** Checks an enqueue input once, the same way for every back end. */
export function validateEnqueue(input: EnqueueInput, now: number): ValidJob {
  if (typeof input.line !== 'string' || !LINE.test(input.line)) throw invalidJob(`line must match ${LINE.source}`);
  const priority = input.priority ?? 'normal';
  if (!PRIORITIES.includes(priority)) throw invalidJob(`priority must be one of ${PRIORITIES.join(', ')}`);
  if (!Buffer.isBuffer(input.image) || input.image.length === 0) throw invalidJob('image must be a non-empty Buffer');
  if (typeof input.contentType !== 'string' || input.contentType.length === 0) throw invalidJob('contentType is required');
  const options = input.options ?? {};
  let optionsJson: string;
  try {
    optionsJson = JSON.stringify(options);
  } catch (err) {
    throw invalidJob(`options are not JSON: ${(err as Error).message}`);
  }
  if (typeof options !== 'object' || Array.isArray(options) || optionsJson === undefined) throw invalidJob('options must be an object');
  const key = input.idempotencyKey;
  if (key !== undefined && (typeof key !== 'string' || key.length === 0 || key.length > 255)) {
    throw invalidJob('idempotencyKey must be 1–255 characters');
  }
  let deadline: number | null = null;
  if (input.ttlMs !== undefined) {
    // Finite too: an infinite deadline is not a number PostgreSQL's BIGINT or the broker's TTL can hold.
    if (!(input.ttlMs > 0) || !Number.isFinite(input.ttlMs)) throw invalidJob('ttlMs must be a finite number > 0');
    deadline = now + input.ttlMs;
  }
  if (input.deadline !== undefined) {
    if (!Number.isFinite(input.deadline)) throw invalidJob('deadline must be epoch milliseconds');
    deadline = deadline === null ? input.deadline : Math.min(deadline, input.deadline);
  }
  return {
    line: input.line,
    priority,
    image: input.image,
    contentType: input.contentType,
    options,
    optionsJson,
    idempotencyKey: key ?? null,
    deadline: deadline === null ? null : Math.floor(deadline),
  };
}

export function defaultWorkerId(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

export function newJobId(): string {
  return randomUUID();
}
