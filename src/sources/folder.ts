import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { apiErrorOf } from '../errors.js';
import { isTransient, PulledSource, stableRequestId, type SourceContext } from './source.js';
import type { SourceSpec } from './spec.js';

/** Subfolders of a hot folder: claimed files, finished ones, refused ones. */
export const PROCESSING_DIR = '.processing';
export const DONE_DIR = 'done';
export const FAILED_DIR = 'failed';
/** Frames of one folder inspected at once: enough to keep a model instance busy, few enough to leave room for others. */
const CONCURRENCY = 2;
/** A file whose inspection failed for a reason that is neither "not now" nor the image itself goes to failed/ after this many tries. */
const MAX_ATTEMPTS = 3;

interface Seen {
  size: number;
  mtimeMs: number;
}

/**
 * A hot folder: every complete new file dropped into `target` is inspected once
 * and then moved, to `done/` or to `failed/` (with `<name>.error.txt`). The move
 * is the durable record of what was processed, so a restart picks up exactly
 * the files still waiting. A file is complete when its size and mtime held still
 * from one poll to the next: one being written is never read.
 *
 * A file is claimed by renaming it into `.processing/` (atomic within one file
 * system) before it is read; files found there at start were claimed by a
 * process that stopped before moving them and are inspected again, with the same
 * request id (from name, size and mtime), so their result is stored once.
 */
export class FolderSource extends PulledSource {
  readonly #seen = new Map<string, Seen>();
  readonly #attempts = new Map<string, number>();
  readonly #inFlight = new Set<Promise<void>>();
  #recovered = false;
  /** A "not now" answer (queue full, model loading, store away) in this scan: claim nothing more until the next one. */
  #notNow = false;

  constructor(spec: SourceSpec, ctx: SourceContext) {
    super(spec, ctx);
  }

  protected get intervalMs(): number {
    return this.spec.interval_ms || this.ctx.settings.pollIntervalMs;
  }

  #path(...parts: string[]): string {
    return join(this.spec.target, ...parts);
  }

  protected async step(signal: AbortSignal): Promise<void> {
    const dir = this.spec.target;
    // The folder must exist (a missing mount is an outage); its subfolders are ours to make.
    const info = await stat(dir);
    if (!info.isDirectory()) throw new Error(`${dir} is not a directory`);
    for (const sub of [PROCESSING_DIR, DONE_DIR, FAILED_DIR]) await mkdir(this.#path(sub), { recursive: true });
    if (!this.#recovered) {
      const left = (await readdir(this.#path(PROCESSING_DIR), { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
      for (const name of left) {
        if (signal.aborted) return;
        await this.#schedule(name);
      }
      this.#recovered = true;
    }
    const entries = await readdir(dir, { withFileTypes: true });
    const present = new Set<string>();
    const ready: string[] = [];
    for (const entry of entries) {
      // Dot files are hidden on purpose (an uploader's temporary name, our own .processing).
      if (!entry.isFile() || entry.name.startsWith('.')) continue;
      present.add(entry.name);
      let now: Seen;
      try {
        const s = await stat(this.#path(entry.name));
        now = { size: s.size, mtimeMs: s.mtimeMs };
      } catch {
        continue; // gone between readdir and stat
      }
      const before = this.#seen.get(entry.name);
      this.#seen.set(entry.name, now);
      if (before && before.size === now.size && before.mtimeMs === now.mtimeMs && now.size > 0) ready.push(entry.name);
    }
    for (const name of this.#seen.keys()) if (!present.has(name)) this.#seen.delete(name);
    // Oldest names first is the order a camera wrote them in, for names with a counter or a time.
    ready.sort();
    this.#notNow = false;
    for (const name of ready) {
      // Not a retry storm: after a "not now", the rest wait in the folder for the next scan.
      if (signal.aborted || this.#notNow) break;
      const claimed = await rename(this.#path(name), this.#path(PROCESSING_DIR, name)).then(
        () => true,
        () => false, // taken by someone else, or removed
      );
      this.#seen.delete(name);
      if (claimed) await this.#schedule(name);
    }
    // The step ends when its files are done: the next scan sees the folder as they left it.
    await Promise.all(this.#inFlight);
  }

  /** Starts one claimed file once fewer than CONCURRENCY are in hand. */
  async #schedule(name: string): Promise<void> {
    while (this.#inFlight.size >= CONCURRENCY) await Promise.race(this.#inFlight);
    const task = this.#process(name).finally(() => this.#inFlight.delete(task));
    this.#inFlight.add(task);
  }

  async #process(name: string): Promise<void> {
    const claimed = this.#path(PROCESSING_DIR, name);
    let image: Buffer;
    let requestId: string;
    try {
      const s = await stat(claimed);
      if (s.size > this.ctx.settings.maxBytes) {
        await this.#fail(name, `the file has ${s.size} bytes, more than body_limit_bytes (${this.ctx.settings.maxBytes})`);
        this.count('failed');
        return;
      }
      image = await readFile(claimed);
      requestId = stableRequestId(this.spec.name, [name, s.size, s.mtimeMs]);
    } catch (err) {
      this.ctx.logger.warn({ event: 'source_file_unreadable', source: this.spec.name, file: name, err }, `source ${this.spec.name}: cannot read ${name}`);
      await rename(claimed, this.#path(name)).catch(() => undefined);
      return;
    }
    try {
      await this.inspectFrame(image, requestId, { file: name });
      this.#attempts.delete(name);
      await this.#move(name, DONE_DIR);
    } catch (err) {
      const attempts = (this.#attempts.get(name) ?? 0) + 1;
      const status = apiErrorOf(err)?.statusCode ?? 500;
      // "Not now" (queue full, model loading, store away): back in the folder for the next scan, not a failure.
      if (isTransient(err) || (status >= 500 && attempts < MAX_ATTEMPTS)) {
        if (isTransient(err)) this.#notNow = true;
        else this.#attempts.set(name, attempts);
        await rename(claimed, this.#path(name)).catch(() => undefined);
        return;
      }
      this.#attempts.delete(name);
      const code = apiErrorOf(err)?.code ?? 'INTERNAL_ERROR';
      await this.#fail(name, `${code}: ${(err as Error).message}`);
    }
  }

  /** The error text first, then the file: a crash between the two leaves the file to be tried again, never a failure without its reason. */
  async #fail(name: string, reason: string): Promise<void> {
    const target = await this.#freeName(FAILED_DIR, name);
    await writeFile(this.#path(FAILED_DIR, `${target}.error.txt`), `${new Date().toISOString()} ${reason}\n`);
    await rename(this.#path(PROCESSING_DIR, name), this.#path(FAILED_DIR, target));
    this.ctx.logger.warn({ event: 'source_file_failed', source: this.spec.name, file: name, reason }, `source ${this.spec.name}: ${name} failed: ${reason}`);
  }

  async #move(name: string, sub: string): Promise<void> {
    await rename(this.#path(PROCESSING_DIR, name), this.#path(sub, await this.#freeName(sub, name)));
  }

  /** `name`, or `name-<n>` before its extension when a file of that name is already there (a camera that reuses names). */
  async #freeName(sub: string, name: string): Promise<string> {
    const ext = extname(name);
    const stem = name.slice(0, name.length - ext.length);
    for (let n = 0; ; n++) {
      const candidate = n === 0 ? name : `${stem}-${n}${ext}`;
      const taken = await stat(this.#path(sub, candidate)).then(
        () => true,
        () => false,
      );
      if (!taken) return candidate;
    }
  }

  protected override async settle(): Promise<void> {
    await Promise.all(this.#inFlight);
  }
}
