import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { AmqpJobQueue, type AmqpQueueOptions } from './amqp/amqp-queue.js';
import type { JobQueue } from './job-queue.js';
import { SqliteJobQueue, type SqliteQueueOptions } from './sqlite/sqlite-queue.js';

/** Options for createJobQueue: those of both back ends; each uses its own and ignores the rest. */
export type CreateJobQueueOptions = Omit<SqliteQueueOptions, 'path'> & Omit<AmqpQueueOptions, 'url'>;

/**
 * Opens the queue a SIGHTLINE_QUEUE_URL names. Nothing async happens here:
 * call `waitUntilReady()` before relying on it (amqp connects then).
 *
 * @example createJobQueue('sqlite:./data/queue.sqlite')   // relative to cwd; the directory is created
 * @example createJobQueue('sqlite::memory:')             // one process, gone at exit (tests)
 * @example createJobQueue('amqp://guest:guest@rabbitmq:5672', { prefix: 'sightline', stateStore })
 */
export function createJobQueue(url: string, options: CreateJobQueueOptions = {}): JobQueue {
  if (url.startsWith('sqlite:')) {
    const rest = url.slice('sqlite:'.length);
    if (rest === ':memory:') return new SqliteJobQueue({ ...options, path: ':memory:' });
    if (rest.length === 0) throw new Error(`Queue URL ${url} names no file: use sqlite:PATH or sqlite::memory:`);
    const path = resolve(rest);
    mkdirSync(dirname(path), { recursive: true });
    return new SqliteJobQueue({ ...options, path });
  }
  if (url.startsWith('amqp://') || url.startsWith('amqps://')) return new AmqpJobQueue({ ...options, url });
  throw new Error(`Unsupported queue URL ${redact(url)}: use sqlite:PATH, sqlite::memory: or amqp(s)://…`);
}

/** Keeps passwords out of error messages and logs. */
function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
