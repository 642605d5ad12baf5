import { mkdir, statfs } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import type { EventBus } from '../events/index.js';
import type { JobQueue } from '../queue/index.js';
import type { ResultStore } from '../store/index.js';
import { eventsUrl, queueUrl, storeUrl, uploadsDir } from '../config/locations.js';
import type { Dependency } from './dependency-monitor.js';

const MiB = 1024 * 1024;

/** Free bytes for an unprivileged writer on the file system that holds `path`. */
export async function freeBytes(path: string): Promise<number> {
  const stats = await statfs(path);
  return stats.bavail * stats.bsize;
}

/**
 * What /readyz watches besides the models: the result store, the job queue (its
 * broker), the event bus when it is a broker, and free disk where SQLite files
 * or unfinished uploads live.
 */
export function dependenciesOf(parts: { config: Config; store: ResultStore; queue: JobQueue; events: EventBus }): Dependency[] {
  const { config, store, queue, events } = parts;
  const deps: Dependency[] = [
    { name: `store:${store.kind}`, critical: true, probe: () => store.ping() },
    {
      name: `queue:${queue.kind}`,
      critical: true,
      // depth() goes to the broker (amqp) or the queue's table (sqlite): a real round trip.
      probe: async () => `${await queue.depth()} jobs waiting`,
    },
  ];
  if (eventsUrl(config) !== 'memory:') {
    // Live events are best-effort (results are stored either way): reported, not a reason to refuse traffic.
    deps.push({
      name: 'events:amqp',
      critical: false,
      probe: async () => {
        if (!events.connected) throw new Error('not connected to the broker (live events are dropped meanwhile)');
      },
    });
  }
  if (config.min_free_disk_bytes > 0) {
    const dirs = new Set<string>([resolve(uploadsDir(config))]);
    const local = [storeUrl(config), queueUrl(config)].some((url) => url.startsWith('sqlite:') && url !== 'sqlite::memory:');
    if (local) dirs.add(resolve(config.data_dir));
    for (const dir of dirs) {
      deps.push({
        name: `disk:${dir}`,
        critical: true,
        probe: async () => {
          await mkdir(dir, { recursive: true });
          const free = await freeBytes(dir);
          const detail = `${Math.floor(free / MiB)} MiB free`;
          if (free < config.min_free_disk_bytes) throw new Error(`${detail}, below min_free_disk_bytes (${Math.floor(config.min_free_disk_bytes / MiB)} MiB)`);
          return detail;
        },
      });
    }
  }
  return deps;
}
