import type { Database } from 'better-sqlite3';
import type { Priority } from '../../protocol/options.js';
import type { DeadJob, DeadReason, JobInfo, JobState } from '../job-queue.js';

/**
 * One table holds every job from enqueue to its end. `seq` (the rowid) keeps
 * FIFO order within a priority; `payload` is dropped once a job is done, so that
 * finished jobs cost a row of metadata until they are pruned.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,
  id              TEXT NOT NULL UNIQUE,
  line            TEXT NOT NULL,
  priority        INTEGER NOT NULL,
  content_type    TEXT NOT NULL,
  payload         BLOB,
  options         TEXT NOT NULL,
  idempotency_key TEXT UNIQUE,
  state           TEXT NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  available_at    INTEGER NOT NULL,
  deadline        INTEGER,
  lease_until     INTEGER,
  lease_token     TEXT,
  worker_id       TEXT,
  last_error      TEXT,
  dead_reason     TEXT,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (priority, seq) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS jobs_deadline ON jobs (deadline) WHERE state = 'queued' AND deadline IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (state, updated_at) WHERE state IN ('done', 'dead');
`;

export function migrate(db: Database): void {
  db.pragma('journal_mode = WAL');
  // Several processes may share the file (server + `sightline worker`): wait for the write lock rather than fail.
  db.pragma('busy_timeout = 5000');
  db.pragma('synchronous = NORMAL'); // WAL + NORMAL is durable across process crashes; FULL also survives power loss
  db.exec(SCHEMA);
}

/** sqlite orders ascending, so high = 0. */
export const PRIORITY_RANK: Record<Priority, number> = { high: 0, normal: 1, low: 2 };
const RANK_PRIORITY: Priority[] = ['high', 'normal', 'low'];

export interface JobRow {
  seq: number;
  id: string;
  line: string;
  priority: number;
  content_type: string;
  payload: Buffer | null;
  options: string;
  idempotency_key: string | null;
  state: JobState;
  attempts: number;
  available_at: number;
  deadline: number | null;
  lease_until: number | null;
  lease_token: string | null;
  worker_id: string | null;
  last_error: string | null;
  dead_reason: DeadReason | null;
  created_at: number;
  updated_at: number;
}

export function rankToPriority(rank: number): Priority {
  return RANK_PRIORITY[rank] ?? 'normal';
}

export function rowToInfo(row: JobRow): JobInfo {
  return {
    id: row.id,
    line: row.line,
    priority: rankToPriority(row.priority),
    state: row.state,
    attempts: row.attempts,
    idempotencyKey: row.idempotency_key,
    deadline: row.deadline,
    lastError: row.last_error,
    deadReason: row.dead_reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function rowToDead(row: JobRow): DeadJob {
  return {
    id: row.id,
    line: row.line,
    priority: rankToPriority(row.priority),
    attempts: row.attempts,
    reason: row.dead_reason ?? 'failed',
    lastError: row.last_error,
    createdAt: row.created_at,
    diedAt: row.updated_at,
  };
}
