import type { Message, Options } from 'amqplib';
import { PRIORITIES, type Priority } from '../../protocol/options.js';
import type { DeadJob, DeadReason, Job, JobOptions } from '../job-queue.js';
import type { ValidJob } from '../options.js';
import { AMQP_PRIORITY } from './topology.js';

/**
 * A job travels as one AMQP message: the body is the image bytes, everything
 * else rides in properties and `sightline-*` headers, so that any worker can
 * run it with nothing but the message.
 */
const H = {
  line: 'sightline-line',
  priority: 'sightline-priority',
  options: 'sightline-options',
  attempts: 'sightline-attempts',
  createdAt: 'sightline-created-at',
  deadline: 'sightline-deadline',
  idempotencyKey: 'sightline-idempotency-key',
  lastError: 'sightline-last-error',
  deadReason: 'sightline-dead-reason',
  diedAt: 'sightline-died-at',
} as const;

export const EXPIRED_MESSAGE = 'the deadline passed before the job ran';

/** Publish options of a new job. */
export function jobPublishOptions(id: string, job: ValidJob, now: number): Options.Publish {
  const options: Options.Publish = {
    persistent: true,
    mandatory: true, // an unroutable job comes back (basic.return) instead of vanishing
    messageId: id,
    contentType: job.contentType,
    timestamp: Math.floor(now / 1000),
    priority: AMQP_PRIORITY[job.priority],
    headers: {
      [H.line]: job.line,
      [H.priority]: job.priority,
      [H.options]: job.optionsJson,
      [H.attempts]: 0,
      [H.createdAt]: now,
      ...(job.deadline !== null && { [H.deadline]: job.deadline }),
      ...(job.idempotencyKey !== null && { [H.idempotencyKey]: job.idempotencyKey }),
    },
  };
  // Lets the broker drop (dead-letter) a job nobody took in time; consumers check the deadline too.
  if (job.deadline !== null) options.expiration = String(Math.max(0, job.deadline - now));
  return options;
}

/** Reads a delivered job; throws on a message that is not one (a foreign publisher). */
export function decodeJob(msg: Message): Job {
  const p = msg.properties;
  const h = (p.headers ?? {}) as Record<string, unknown>;
  const id = p.messageId as unknown;
  const line = h[H.line];
  if (typeof id !== 'string' || id.length === 0) throw new Error('malformed job message: no message id');
  if (typeof line !== 'string') throw new Error(`malformed job message ${id}: no ${H.line} header`);
  let options: JobOptions;
  try {
    options = JSON.parse(String(h[H.options] ?? '{}')) as JobOptions;
  } catch {
    throw new Error(`malformed job message ${id}: ${H.options} is not JSON`);
  }
  return {
    id,
    line,
    priority: priorityOf(msg),
    image: msg.content,
    contentType: typeof p.contentType === 'string' ? p.contentType : 'application/octet-stream',
    options,
    attempt: (num(h[H.attempts]) ?? 0) + 1,
    createdAt: num(h[H.createdAt]) ?? (typeof p.timestamp === 'number' ? p.timestamp * 1000 : Date.now()),
    deadline: num(h[H.deadline]) ?? null,
  };
}

/**
 * Options for republishing a delivered message (retry or dead letter): same
 * body and properties, updated headers, no expiration (the deadline header
 * still holds), and none of the broker's x-death bookkeeping.
 */
export function republishOptions(msg: Message, headers: Record<string, unknown>, drop: readonly string[] = []): Options.Publish {
  const p = msg.properties;
  const kept: Record<string, unknown> = {};
  for (const [k, v] of Object.entries((p.headers ?? {}) as Record<string, unknown>)) {
    if (!k.startsWith('x-') && !drop.includes(k)) kept[k] = v;
  }
  return {
    persistent: true,
    mandatory: true,
    messageId: p.messageId as string | undefined,
    contentType: p.contentType as string | undefined,
    timestamp: p.timestamp as number | undefined,
    priority: p.priority as number | undefined,
    headers: { ...kept, ...headers },
  };
}

export function retryHeaders(attemptsDone: number, lastError: string): Record<string, unknown> {
  return { [H.attempts]: attemptsDone, [H.lastError]: lastError };
}

export function deadHeaders(attemptsDone: number, reason: DeadReason, lastError: string, now: number): Record<string, unknown> {
  return { [H.attempts]: attemptsDone, [H.deadReason]: reason, [H.lastError]: lastError, [H.diedAt]: now };
}

/** Republish options that make a dead job new again (retryDead): attempts reset, no deadline, no death. */
export function reviveOptions(msg: Message): Options.Publish {
  return republishOptions(msg, { [H.attempts]: 0 }, [H.deadline, H.deadReason, H.diedAt]);
}

/**
 * Reads a message in the dead-letter queue: ours carry the reason and error in
 * headers; the broker's own (a TTL that ran out in the jobs queue) only x-death.
 */
export function decodeDead(msg: Message): DeadJob {
  const h = (msg.properties.headers ?? {}) as Record<string, unknown>;
  const death = firstDeath(h);
  const reason: DeadReason =
    h[H.deadReason] === 'failed' || h[H.deadReason] === 'expired' ? (h[H.deadReason] as DeadReason) : death?.reason === 'expired' ? 'expired' : 'failed';
  const lastError = typeof h[H.lastError] === 'string' ? (h[H.lastError] as string) : null;
  const createdAt = num(h[H.createdAt]) ?? 0;
  return {
    id: String(msg.properties.messageId ?? ''),
    line: typeof h[H.line] === 'string' ? (h[H.line] as string) : '',
    priority: priorityOf(msg),
    attempts: num(h[H.attempts]) ?? 0,
    reason,
    lastError: h[H.deadReason] === undefined && reason === 'expired' ? EXPIRED_MESSAGE : lastError,
    createdAt,
    diedAt: num(h[H.diedAt]) ?? (death?.time !== undefined ? death.time * 1000 : createdAt),
  };
}

export function messageId(msg: Message): string {
  return String(msg.properties.messageId ?? '');
}

function priorityOf(msg: Message): Priority {
  const named = (msg.properties.headers as Record<string, unknown> | undefined)?.[H.priority];
  if (typeof named === 'string' && (PRIORITIES as readonly string[]).includes(named)) return named as Priority;
  const p = msg.properties.priority as number | undefined;
  return p === undefined ? 'normal' : p >= AMQP_PRIORITY.high ? 'high' : p <= AMQP_PRIORITY.low ? 'low' : 'normal';
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

/** x-death is a list of tables; amqplib may give its timestamps as numbers (seconds) or {'!': 'timestamp', value}. */
function firstDeath(h: Record<string, unknown>): { reason?: string; time?: number } | undefined {
  const deaths = h['x-death'];
  if (!Array.isArray(deaths) || deaths.length === 0) return undefined;
  const d = deaths[0] as Record<string, unknown>;
  const t = d.time as unknown;
  const time = num(t) ?? (typeof t === 'object' && t !== null ? num((t as { value?: unknown }).value) : undefined);
  return { reason: typeof d.reason === 'string' ? d.reason : undefined, time };
}
