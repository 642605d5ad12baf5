import { lineResults, type HistoryStore } from '../history/history-store.js';
import type { Role } from './calculator.js';
import { type ProfileBucket, WeeklyProfile } from './forecast.js';
import { processRoles } from './signals.js';

const DAY_MS = 86_400_000;

export interface ProfileSourceOptions {
  store: Pick<HistoryStore, 'read'>;
  /** The coarse history series: its bucket width and how long it is kept. */
  resolutionMs: number;
  retentionMs: number;
}

/**
 * The weekly profile from the coarse history rows of every process. The first
 * call reads the whole retention (a day per query); later calls read only the
 * buckets since the last read (the newest one again, as it grows until it
 * ends), so a refresh costs a few rows however long the history is.
 */
export class ProfileSource {
  readonly #o: ProfileSourceOptions;
  /** Results by role per coarse bucket start (only buckets some process recorded). */
  readonly #buckets = new Map<number, Record<Role, number>>();
  /** Buckets from here on are read again at the next refresh. */
  #readFrom: number | undefined;
  #refreshing: Promise<WeeklyProfile> | undefined;
  /** Roles learned so far, by process id: a process keeps its role across the reads. */
  readonly #roles = new Map<string, Role>();

  constructor(options: ProfileSourceOptions) {
    this.#o = options;
  }

  /** The profile of what is stored up to now; one refresh at a time, concurrent callers share it. */
  profile(now: number): Promise<WeeklyProfile> {
    this.#refreshing ??= this.#refresh(now).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #refresh(now: number): Promise<WeeklyProfile> {
    const { resolutionMs, retentionMs } = this.#o;
    const oldest = now - retentionMs;
    for (const bucket of this.#buckets.keys()) if (bucket < oldest) this.#buckets.delete(bucket);
    const from = Math.max(oldest, this.#readFrom ?? oldest);
    // The current bucket is still growing; it is left out of the profile (and read again next time).
    const end = Math.floor(now / resolutionMs) * resolutionMs;
    for (let start = from; start < end; start += DAY_MS) {
      const stop = Math.min(end, start + DAY_MS);
      const rows = await this.#o.store.read(resolutionMs, start, stop);
      const roles = processRoles(rows.processes, this.#roles);
      const fresh = new Map<number, Record<Role, number>>();
      for (const p of rows.processes) if (!fresh.has(p.bucket_ms)) fresh.set(p.bucket_ms, { api: 0, worker: 0 });
      for (const l of rows.lines) {
        const role = roles.get(l.process_id) ?? 'worker';
        let b = fresh.get(l.bucket_ms);
        if (!b) fresh.set(l.bucket_ms, (b = { api: 0, worker: 0 }));
        b[role] += lineResults(l);
      }
      for (const [bucket, results] of fresh) this.#buckets.set(bucket, results);
    }
    // A process writes a coarse bucket again until it ends: the last one read is read again.
    this.#readFrom = Math.max(from, end - resolutionMs);
    return new WeeklyProfile(this.#entries(), resolutionMs);
  }

  *#entries(): Iterable<ProfileBucket> {
    for (const [bucketMs, results] of this.#buckets) yield { bucketMs, results };
  }
}
