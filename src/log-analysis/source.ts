import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';

/** Where lines come from: a file path, or "-" for standard input. */
export interface LogSource {
  /** As given on the command line ("-" is shown as "stdin"). */
  name: string;
  open(): Promise<Readable>;
}

export class LogSourceError extends Error {
  constructor(
    readonly source: string,
    message: string,
  ) {
    super(`${source}: ${message}`);
    this.name = 'LogSourceError';
  }
}

const GZIP_MAGIC = [0x1f, 0x8b];

function describe(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return err.message;
  }
}

/** Fails with a LogSourceError unless `path` is a readable regular file (or a FIFO). */
export async function checkReadable(path: string): Promise<void> {
  try {
    const info = await stat(path);
    if (info.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    const handle = await open(path, 'r');
    await handle.close();
  } catch (err) {
    throw new LogSourceError(path, describe(err as NodeJS.ErrnoException));
  }
}

export function fileSource(path: string): LogSource {
  return {
    name: path,
    open: async () => {
      await checkReadable(path);
      return createReadStream(path);
    },
  };
}

export function streamSource(name: string, stream: Readable): LogSource {
  return { name, open: async () => stream };
}

/**
 * The stream's bytes, decompressed when they start with the gzip magic bytes
 * (1f 8b) whatever the name says. Only the first chunk is looked at; nothing
 * is buffered beyond it.
 */
export async function decompressIfGzip(input: Readable): Promise<{ stream: Readable; gzip: boolean }> {
  const chunks = input[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const head: Buffer[] = [];
  let size = 0;
  let ended = false;
  while (size < GZIP_MAGIC.length) {
    const next = await chunks.next();
    if (next.done) {
      ended = true;
      break;
    }
    const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
    head.push(chunk);
    size += chunk.length;
  }
  const first = Buffer.concat(head);
  const gzip = first.length >= 2 && first[0] === GZIP_MAGIC[0] && first[1] === GZIP_MAGIC[1];
  const replay = Readable.from(
    (async function* () {
      if (first.length > 0) yield first;
      if (ended) return;
      for (;;) {
        const next = await chunks.next();
        if (next.done) return;
        yield next.value;
      }
    })(),
    { objectMode: false },
  );
  if (!gzip) return { stream: replay, gzip };
  const gunzip = createGunzip();
  // pipeline destroys both with the first error, so a read error surfaces on gunzip too.
  pipeline(replay, gunzip, () => undefined);
  return { stream: gunzip, gzip };
}

/** One text line of a source, numbered from 1. */
export interface SourceLine {
  number: number;
  text: string;
}

/**
 * Streams the lines of a source through readline (gzip detected by content),
 * never holding more than readline's buffer. Read and decompression errors
 * reject with a LogSourceError naming the source and the last line read.
 */
export async function* readLines(source: LogSource, onOpen?: (info: { gzip: boolean }) => void): AsyncGenerator<SourceLine> {
  let raw: Readable;
  try {
    raw = await source.open();
  } catch (err) {
    if (err instanceof LogSourceError) throw err;
    throw new LogSourceError(source.name, describe(err as NodeJS.ErrnoException));
  }
  let failure: Error | undefined;
  let opened: { stream: Readable; gzip: boolean };
  try {
    opened = await decompressIfGzip(raw);
  } catch (err) {
    throw new LogSourceError(source.name, describe(err as NodeJS.ErrnoException));
  }
  onOpen?.({ gzip: opened.gzip });
  const { stream } = opened;
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  // Not every Node version passes input errors to readline's iterator: end it and rethrow after.
  stream.on('error', (err) => {
    failure = err;
    lines.close();
  });
  let number = 0;
  try {
    for await (const text of lines) {
      number += 1;
      yield { number, text };
    }
  } catch (err) {
    // Node 20's readline iterator may also reject with the input's error.
    failure ??= err as Error;
  } finally {
    lines.close();
    if (!failure) stream.destroy();
  }
  if (failure) {
    const what = opened.gzip ? 'corrupt or truncated gzip data' : 'read error';
    throw new LogSourceError(source.name, `${what} after line ${number}: ${failure.message}`);
  }
}
