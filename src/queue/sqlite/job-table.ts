import type { Database, Statement } from 'better-sqlite3';
import { queueFull } from '../errors.js';
import type { QueueStats } from '../job-queue.js';
import type { ValidJob } from '../options.js';
import { PRIORITY_RANK, type JobRow } from './schema.js';

export const EXPIRED_MESSAGE = 'the deadline passed before the job ran';
export const LEASE_LOST_MESSAGE = 'the worker stopped renewing its lease (crashed or hung)';

/**
 * Every SQL statement of the sqlite queue, each state change a single guarded
 * UPDATE. Changes to a running job are guarded by its lease token, so a worker
 * whose lease expired (and whose job went to someone else) cannot settle it.
 */
export class JobTable {
  private readonly s: ReturnType<typeof prepare>;

  constructor(private readonly db: Database) {
    this.s = prepare(db);
  }

  /** Inserts a job, or returns the id holding its idempotency key. One write transaction, so two racing enqueues cannot both insert. */
  insert(id: string, job: ValidJob, now: number, maxLength: number): { id: string; duplicate: boolean } {
    return this.db
      .transaction(() => {
        if (job.idempotencyKey !== null) {
          const existing = this.s.byKey.get(job.idempotencyKey) as { id: string } | undefined;
          // Checked before the length: a client retrying its POST gets its job even when the queue is full.
          if (existing) return { id: existing.id, duplicate: true };
        }
        const { n } = this.s.waiting.get() as { n: number };
        if (n >= maxLength) throw queueFull(maxLength);
        this.s.insert.run({
          id,
          line: job.line,
          priority: PRIORITY_RANK[job.priority],
          contentType: job.contentType,
          payload: job.image,
          options: job.optionsJson,
          key: job.idempotencyKey,
          now,
          deadline: job.deadline,
        });
        return { id, duplicate: false };
      })
      .immediate();
  }

  get(id: string): JobRow | undefined {
    return this.s.get.get(id) as JobRow | undefined;
  }

  /** Expires jobs past their deadline and recovers expired leases. Returns what moved, for events. */
  sweep(now: number, maxAttempts: number): { expired: string[]; lost: string[]; requeued: string[] } {
    return this.db
      .transaction(() => {
        const ids = (rows: unknown[]) => (rows as { id: string }[]).map((r) => r.id);
        return {
          expired: ids(this.s.expire.all({ now })),
          lost: ids(this.s.leaseDead.all({ now, max: maxAttempts })),
          requeued: ids(this.s.leaseBack.all({ now })),
        };
      })
      .immediate();
  }

  /** Takes the first ready job (high priority first, then FIFO) under a fresh lease. */
  claim(now: number, leaseMs: number, token: string, worker: string): JobRow | undefined {
    return this.s.claim.get({ now, until: now + leaseMs, token, worker }) as JobRow | undefined;
  }

  renew(id: string, token: string, until: number): boolean {
    return this.s.renew.run({ id, token, until }).changes > 0;
  }

  complete(id: string, token: string, now: number): boolean {
    return this.s.complete.run({ id, token, now }).changes > 0;
  }

  retry(id: string, token: string, now: number, at: number, error: string): boolean {
    return this.s.retry.run({ id, token, now, at, error }).changes > 0;
  }

  bury(id: string, token: string, now: number, error: string): boolean {
    return this.s.bury.run({ id, token, now, error }).changes > 0;
  }

  release(id: string, token: string, now: number): boolean {
    return this.s.release.run({ id, token, now }).changes > 0;
  }

  nextDue(): number | null {
    return (this.s.nextDue.get() as { at: number | null }).at;
  }

  stats(now: number): QueueStats {
    const n = (st: Statement, ...args: unknown[]) => (st.get(...args) as { n: number }).n;
    return { ready: n(this.s.ready, now), delayed: n(this.s.delayed, now), inFlight: n(this.s.running), dead: n(this.s.dead) };
  }

  listDead(limit: number): JobRow[] {
    return this.s.listDead.all(limit) as JobRow[];
  }

  retryDead(id: string, now: number): boolean {
    return this.s.retryDead.run({ id, now }).changes > 0;
  }

  purgeDead(): number {
    return this.s.purgeDead.run().changes;
  }

  prune(before: number): number {
    return this.s.prune.run(before).changes;
  }
}

function prepare(db: Database) {
  const p = (sql: string) => db.prepare(sql);
  return {
    byKey: p('SELECT id FROM jobs WHERE idempotency_key = ?'),
    waiting: p(`SELECT COUNT(*) AS n FROM jobs WHERE state = 'queued'`),
    insert:
      p(`INSERT INTO jobs (id, line, priority, content_type, payload, options, idempotency_key, state, attempts, available_at, deadline, created_at, updated_at)
               VALUES (@id, @line, @priority, @contentType, @payload, @options, @key, 'queued', 0, @now, @deadline, @now, @now)`),
    get: p('SELECT * FROM jobs WHERE id = ?'),
    expire: p(`UPDATE jobs SET state = 'dead', dead_reason = 'expired', last_error = '${EXPIRED_MESSAGE}', updated_at = @now
               WHERE state = 'queued' AND deadline IS NOT NULL AND deadline <= @now RETURNING id`),
    leaseDead: p(`UPDATE jobs SET state = 'dead', dead_reason = 'failed', last_error = '${LEASE_LOST_MESSAGE}',
                    lease_until = NULL, lease_token = NULL, worker_id = NULL, updated_at = @now
                  WHERE state = 'running' AND lease_until <= @now AND attempts >= @max RETURNING id`),
    leaseBack: p(`UPDATE jobs SET state = 'queued', available_at = @now, lease_until = NULL, lease_token = NULL, worker_id = NULL, updated_at = @now
                  WHERE state = 'running' AND lease_until <= @now RETURNING id`),
    claim: p(`UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = @until, lease_token = @token, worker_id = @worker, updated_at = @now
              WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued' AND available_at <= @now AND (deadline IS NULL OR deadline > @now)
                           ORDER BY priority, seq LIMIT 1)
              RETURNING *`),
    renew: p(`UPDATE jobs SET lease_until = @until WHERE id = @id AND lease_token = @token AND state = 'running'`),
    complete: p(`UPDATE jobs SET state = 'done', payload = NULL, lease_until = NULL, lease_token = NULL, updated_at = @now
                 WHERE id = @id AND lease_token = @token AND state = 'running'`),
    retry:
      p(`UPDATE jobs SET state = 'queued', available_at = @at, last_error = @error, lease_until = NULL, lease_token = NULL, worker_id = NULL, updated_at = @now
              WHERE id = @id AND lease_token = @token AND state = 'running'`),
    bury: p(`UPDATE jobs SET state = 'dead', dead_reason = 'failed', last_error = @error, lease_until = NULL, lease_token = NULL, worker_id = NULL, updated_at = @now
             WHERE id = @id AND lease_token = @token AND state = 'running'`),
    // A job given back unfinished did not really get its attempt: undo the claim's count.
    release:
      p(`UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), available_at = @now, lease_until = NULL, lease_token = NULL, worker_id = NULL, updated_at = @now
                WHERE id = @id AND lease_token = @token AND state = 'running'`),
    nextDue: p(`SELECT MIN(available_at) AS at FROM jobs WHERE state = 'queued'`),
    ready: p(`SELECT COUNT(*) AS n FROM jobs WHERE state = 'queued' AND available_at <= ?`),
    delayed: p(`SELECT COUNT(*) AS n FROM jobs WHERE state = 'queued' AND available_at > ?`),
    running: p(`SELECT COUNT(*) AS n FROM jobs WHERE state = 'running'`),
    dead: p(`SELECT COUNT(*) AS n FROM jobs WHERE state = 'dead'`),
    listDead: p(`SELECT * FROM jobs WHERE state = 'dead' ORDER BY updated_at, seq LIMIT ?`),
    retryDead: p(`UPDATE jobs SET state = 'queued', attempts = 0, available_at = @now, deadline = NULL, dead_reason = NULL, updated_at = @now
                  WHERE id = @id AND state = 'dead' AND payload IS NOT NULL`),
    purgeDead: p(`DELETE FROM jobs WHERE state = 'dead'`),
    prune: p(`DELETE FROM jobs WHERE state = 'done' AND updated_at < ?`),
  };
}
