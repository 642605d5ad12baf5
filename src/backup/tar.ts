/**
 * Sightline's archives are ordinary tar files (ustar, with pax headers where a
 * name needs one), written and read as streams with tar-stream: regular files
 * only, each one's sha256 taken while it passes. Any `tar -tf` / `tar -xf` lists
 * and unpacks them.
 */
import { createHash } from 'node:crypto';
import { type EventEmitter, once } from 'node:events';
import type { FileHandle } from 'node:fs/promises';
import tar from 'tar-stream';

const CHUNK = 1024 * 1024;

/** Resolves when `stream` takes writes again, or is gone; its listeners go with it. */
async function drainedOrClosed(stream: EventEmitter): Promise<void> {
  const stop = new AbortController();
  try {
    await Promise.race([once(stream, 'drain', { signal: stop.signal }), once(stream, 'close', { signal: stop.signal })]);
  } finally {
    stop.abort();
  }
}

/** Appends entries to an open file (from its start); end() closes the tar and waits until all of it is written. */
export class TarWriter {
  readonly #pack = tar.pack();
  /** Copies what the pack emits into the file; a failed write destroys the pack, which fails the entry in progress. */
  readonly #written: Promise<void>;

  constructor(file: FileHandle) {
    this.#written = (async () => {
      // Not `for await`: leaving it would destroy the pack without the error.
      const chunks = (this.#pack as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      let position = 0;
      try {
        for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
          await file.write(next.value, 0, next.value.length, position);
          position += next.value.length;
        }
      } catch (err) {
        // The entry in progress fails with this error.
        this.#pack.destroy(err as Error);
        throw err;
      }
    })();
    // Reported by the entry in progress or by end().
    this.#written.catch(() => undefined);
  }

  /** One entry of `size` bytes from `chunks`; returns their sha256 (hex). */
  async #entry(name: string, size: number, mtime: Date, chunks: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<string> {
    let finished!: () => void;
    let failed!: (err: Error) => void;
    const done = new Promise<void>((resolve, reject) => {
      finished = resolve;
      failed = reject;
    });
    done.catch(() => undefined);
    const sink = this.#pack.entry({ name, size, mtime, type: 'file' }, (err) => (err ? failed(err) : finished()));
    // Its errors come back through `done`.
    sink.on('error', () => undefined);
    const hash = createHash('sha256');
    try {
      for await (const chunk of chunks) {
        hash.update(chunk);
        if (!sink.write(chunk)) await Promise.race([once(sink, 'drain'), done]);
      }
      sink.end(null);
      await done;
    } catch (err) {
      // A torn entry would corrupt the archive: the pack goes with it.
      sink.destroy(err as Error);
      throw err;
    }
    return hash.digest('hex');
  }

  /** An entry from bytes in memory; returns their sha256 (hex). */
  addBuffer(name: string, data: Buffer, mtime = new Date()): Promise<string> {
    return this.#entry(name, data.length, mtime, [data]);
  }

  /**
   * An entry copied from `source` (`size` bytes, read in chunks: weights or
   * snapshots are never held whole); returns their sha256. A file that shrinks
   * while it is read fails the entry rather than writing a torn one.
   */
  addFile(name: string, source: FileHandle, size: number, mtime: Date): Promise<string> {
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let done = 0; done < size; ) {
        const buffer = Buffer.allocUnsafe(Math.min(CHUNK, size - done));
        const { bytesRead } = await source.read(buffer, 0, buffer.length, done);
        if (bytesRead === 0) throw new Error(`${name} shrank while it was archived (${done} of ${size} bytes)`);
        yield buffer.subarray(0, bytesRead);
        done += bytesRead;
      }
    }
    return this.#entry(name, size, mtime, chunks());
  }

  async end(): Promise<void> {
    this.#pack.finalize();
    await this.#written;
  }
}

export interface TarEntry {
  name: string;
  size: number;
  /** Copies the entry's bytes to `sink` in chunks; returns their sha256. Call at most once, before the next entry. */
  copyTo(sink: (chunk: Buffer) => Promise<void>): Promise<string>;
  /** The whole entry in memory (for small ones: the manifest). */
  read(): Promise<Buffer>;
}

/** Thrown for a file that is not a tar this reader understands. */
export class TarFormatError extends Error {}

/** The regular-file entries of a tar, in order, read in one pass; directories and other types are skipped. */
export async function* readTar(file: FileHandle): AsyncGenerator<TarEntry> {
  const extract = tar.extract();
  let stopped = false;
  let readError: Error | undefined;
  // Fed from the handle by position, so that the handle stays the caller's to close.
  const feed = async () => {
    for (let position = 0; !stopped && !extract.destroying; ) {
      const buffer = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await file.read(buffer, 0, CHUNK, position);
      if (bytesRead === 0) {
        extract.end(null);
        return;
      }
      position += bytesRead;
      if (!extract.write(buffer.subarray(0, bytesRead)) && !extract.destroying) await drainedOrClosed(extract);
    }
  };
  feed().catch((err: Error) => {
    // A refused archive closes the extractor (its error is the iterator's); a read error is reported as it is.
    if (extract.destroying) return;
    readError = err;
    extract.destroy(err);
  });
  /** A read error as it is; anything tar-stream refuses as a TarFormatError. */
  const failure = (err: unknown): Error => {
    if (readError) return readError;
    const message = (err as Error).message;
    return new TarFormatError(
      message === 'Unexpected end of data' ? 'the archive ends in the middle of an entry (truncated?)' : `not a tar archive (${message})`,
    );
  };
  const entries = extract[Symbol.asyncIterator]();
  try {
    for (;;) {
      let next: Awaited<ReturnType<typeof entries.next>>;
      try {
        next = await entries.next();
      } catch (err) {
        throw failure(err);
      }
      if (next.done) return;
      const entry = next.value;
      const { name, size = 0, type } = entry.header;
      if (type !== 'file' && type !== 'contiguous-file') {
        entry.resume();
        continue;
      }
      let used = false;
      const copyTo = async (sink: (chunk: Buffer) => Promise<void>) => {
        if (used) throw new Error(`${name} was already read`);
        used = true;
        const hash = createHash('sha256');
        const chunks = (entry as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
        for (;;) {
          let chunk: IteratorResult<Buffer>;
          try {
            chunk = await chunks.next();
          } catch (err) {
            throw failure(err);
          }
          if (chunk.done) return hash.digest('hex');
          hash.update(chunk.value);
          await sink(chunk.value);
        }
      };
      const read = async () => {
        const parts: Buffer[] = [];
        await copyTo(async (chunk) => {
          parts.push(chunk);
        });
        return Buffer.concat(parts);
      };
      yield { name, size, copyTo, read };
      if (!used) entry.resume();
    }
  } finally {
    stopped = true;
    extract.destroy();
  }
}
