/**
 * Where things live, derived from the config in this one place: the result
 * store, the job queue, the event bus, the upload and snapshot directories. Empty settings
 * take the embedded defaults under data_dir.
 */
import { join, resolve } from 'node:path';
import type { Config } from './schema.js';

/** The configured result store URL; the embedded default is a SQLite file in the data dir. */
export function storeUrl(config: Config): string {
  return config.store_url || `sqlite:${join(config.data_dir, 'results.db')}`;
}

/** The configured job queue URL; the embedded default is a SQLite file in the data dir. */
export function queueUrl(config: Config): string {
  return config.queue_url || `sqlite:${join(config.data_dir, 'queue.db')}`;
}

/** The bus events_url names; empty follows the queue: its broker when queue_url is amqp, else this process. */
export function eventsUrl(config: Config): string {
  if (config.events_url !== '') return config.events_url;
  const queue = queueUrl(config);
  return /^amqps?:\/\//.test(queue) ? queue : 'memory:';
}

/** Where unfinished tus uploads are kept (absolute). */
export function uploadsDir(config: Config): string {
  return resolve(config.uploads_dir || join(config.data_dir, 'uploads'));
}

/** Where result images are kept (absolute); shared by every replica and worker that writes or serves them. */
export function snapshotsDir(config: Config): string {
  return resolve(config.snapshots_dir || join(config.data_dir, 'snapshots'));
}
