import type { JobInfo, JobState } from '../job-queue.js';
import { queueUnavailable } from '../errors.js';
import { isUnavailable } from '../../store/errors.js';
import type { JobStatePatch, JobStateStore } from './job-state-store.js';

interface Migratable extends JobStateStore {
  migrate(): Promise<void>;
}

/**
 * A job state store that creates its table on first use instead of at start-up,
 * so a database that is down when the process starts delays jobs (503
 * QUEUE_UNAVAILABLE meanwhile) instead of stopping the process. A failed
 * migration is tried again by the next operation.
 */
export class MigrateOnFirstUse implements JobStateStore {
  #migrated: Promise<void> | undefined;

  constructor(private readonly inner: Migratable) {}

  /** Resolves once the table exists; rejects (and lets the next call try again) when the database is out of reach. */
  ready(): Promise<void> {
    this.#migrated ??= this.#migrate().catch((err: unknown) => {
      this.#migrated = undefined;
      throw err;
    });
    return this.#migrated;
  }

  // Replicas starting together on a new database race to create the table: the loser tries again.
  async #migrate(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.inner.migrate();
      } catch (err) {
        if (attempt >= 5 || isUnavailable(err)) throw err;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }

  async #use<T>(operation: () => Promise<T>): Promise<T> {
    try {
      await this.ready();
      return await operation();
    } catch (err) {
      // The queue's callers map QUEUE_UNAVAILABLE to 503; a database outage is that, not a bug.
      if (isUnavailable(err)) throw queueUnavailable(`job state store: ${(err as Error).message}`, err as Error);
      throw err;
    }
  }

  insert(record: JobInfo): Promise<{ inserted: boolean; record: JobInfo }> {
    return this.#use(() => this.inner.insert(record));
  }

  update(id: string, patch: JobStatePatch, onlyIfState?: JobState): Promise<void> {
    return this.#use(() => this.inner.update(id, patch, onlyIfState));
  }

  get(id: string): Promise<JobInfo | undefined> {
    return this.#use(() => this.inner.get(id));
  }

  delete(id: string): Promise<void> {
    return this.#use(() => this.inner.delete(id));
  }
}
