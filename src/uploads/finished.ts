import { mkdirSync } from 'node:fs';
import { readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** What is left of an upload once it became a job: enough to answer HEAD, GET and a retried last PATCH. */
export interface FinishedUpload {
  upload_id: string;
  job_id: string;
  size: number;
  metadata: Record<string, string | null>;
  /** ISO 8601. */
  finished_at: string;
}

/**
 * One small JSON file per finished upload, in a `.finished` folder inside the
 * uploads directory (shared by every replica that shares the directory). The
 * uploaded bytes are deleted once the job holds them; this record stays until
 * it is as old as the upload expiry, so a client that lost the answer to its
 * last PATCH still finds its job.
 */
export class FinishedUploads {
  readonly dir: string;

  constructor(uploadsDir: string) {
    this.dir = join(uploadsDir, '.finished');
    mkdirSync(this.dir, { recursive: true });
  }

  /** Ids are checked by the caller (32 hex digits): they never hold a path separator. */
  private file(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  async get(id: string): Promise<FinishedUpload | undefined> {
    try {
      return JSON.parse(await readFile(this.file(id), 'utf8')) as FinishedUpload;
    } catch {
      return undefined;
    }
  }

  /** Written to a temporary name and renamed: a reader never sees half a record. */
  async put(record: FinishedUpload): Promise<void> {
    const tmp = `${this.file(record.upload_id)}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(record));
    await rename(tmp, this.file(record.upload_id));
  }

  async remove(id: string): Promise<boolean> {
    try {
      await rm(this.file(id));
      return true;
    } catch {
      return false;
    }
  }

  /** Deletes records (and stray temporary files) older than maxAgeMs; returns how many. */
  async prune(maxAgeMs: number, now = Date.now()): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const path = join(this.dir, name);
      try {
        if (now - (await stat(path)).mtimeMs > maxAgeMs) {
          await rm(path, { force: true });
          removed++;
        }
      } catch {
        // gone meanwhile
      }
    }
    return removed;
  }
}
