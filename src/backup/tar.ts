/**
 * A minimal POSIX tar (ustar, with pax headers for long names and large
 * sizes): regular files only, written and read as a stream. The `tar` package
 * is not a dependency; this is enough for Sightline's archives, which any
 * `tar -tf` / `tar -xf` can also list and unpack.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

const BLOCK = 512;
const CHUNK = 1024 * 1024;
/** The largest size a ustar header holds in 11 octal digits. */
const MAX_OCTAL_SIZE = 8 ** 11 - 1;

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(name: string, size: number, mtime: Date, type: '0' | 'x'): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(name.slice(0, 100), 0, 100, 'utf8');
  block.write(octal(0o644, 8), 100, 'ascii');
  block.write(octal(0, 8), 108, 'ascii');
  block.write(octal(0, 8), 116, 'ascii');
  block.write(octal(Math.min(size, MAX_OCTAL_SIZE), 12), 124, 'ascii');
  block.write(octal(Math.floor(mtime.getTime() / 1000), 12), 136, 'ascii');
  block.write(' '.repeat(8), 148, 'ascii');
  block.write(type, 156, 'ascii');
  block.write('ustar\u000000', 257, 'ascii');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return block;
}

/** One pax record: "<length> <key>=<value>\n", the length counting itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

/** Appends entries to an open file; end() writes the two zero blocks that close a tar. */
export class TarWriter {
  #position = 0;

  constructor(private readonly file: FileHandle) {}

  async #write(data: Buffer): Promise<void> {
    await this.file.write(data, 0, data.length, this.#position);
    this.#position += data.length;
  }

  async #header(name: string, size: number, mtime: Date): Promise<void> {
    const records = (Buffer.byteLength(name) > 100 ? paxRecord('path', name) : '') + (size > MAX_OCTAL_SIZE ? paxRecord('size', String(size)) : '');
    if (records) {
      const pax = Buffer.from(records, 'utf8');
      await this.#write(header('PaxHeader', pax.length, mtime, 'x'));
      await this.#write(Buffer.concat([pax, Buffer.alloc(padding(pax.length))]));
    }
    await this.#write(header(name, size, mtime, '0'));
  }

  /** An entry from bytes in memory; returns their sha256 (hex). */
  async addBuffer(name: string, data: Buffer, mtime = new Date()): Promise<string> {
    await this.#header(name, data.length, mtime);
    await this.#write(Buffer.concat([data, Buffer.alloc(padding(data.length))]));
    return createHash('sha256').update(data).digest('hex');
  }

  /**
   * An entry copied from `source` (`size` bytes, read in chunks: weights or
   * snapshots are never held whole); returns their sha256. A file that shrinks
   * while it is read fails the entry rather than writing a torn one.
   */
  async addFile(name: string, source: FileHandle, size: number, mtime: Date): Promise<string> {
    await this.#header(name, size, mtime);
    const hash = createHash('sha256');
    const buffer = Buffer.alloc(Math.min(CHUNK, Math.max(size, 1)));
    let done = 0;
    while (done < size) {
      const { bytesRead } = await source.read(buffer, 0, Math.min(buffer.length, size - done), done);
      if (bytesRead === 0) throw new Error(`${name} shrank while it was archived (${done} of ${size} bytes)`);
      const chunk = buffer.subarray(0, bytesRead);
      hash.update(chunk);
      await this.#write(chunk);
      done += bytesRead;
    }
    await this.#write(Buffer.alloc(padding(size)));
    return hash.digest('hex');
  }

  async end(): Promise<void> {
    await this.#write(Buffer.alloc(2 * BLOCK));
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

function parseOctal(field: Buffer): number {
  const text = field.toString('ascii').replace(/\0.*$/s, '').trim();
  return text === '' ? 0 : Number.parseInt(text, 8);
}

function parsePax(data: Buffer): Record<string, string> {
  const records: Record<string, string> = {};
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space < 0) break;
    const length = Number(data.subarray(at, space).toString('ascii'));
    if (!(length > 0)) break;
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) records[record.slice(0, eq)] = record.slice(eq + 1);
    at += length;
  }
  return records;
}

/** Thrown for a file that is not a tar this reader understands. */
export class TarFormatError extends Error {}

/** The regular-file entries of a tar, in order; directories and other types are skipped. */
export async function* readTar(file: FileHandle): AsyncGenerator<TarEntry> {
  let position = 0;
  let pax: Record<string, string> = {};
  const block = Buffer.alloc(BLOCK);
  const readAt = async (buffer: Buffer, length: number, at: number) => {
    const { bytesRead } = await file.read(buffer, 0, length, at);
    if (bytesRead !== length) throw new TarFormatError('the archive ends in the middle of an entry (truncated?)');
  };
  for (;;) {
    await readAt(block, BLOCK, position);
    if (block.every((b) => b === 0)) return;
    if (block.toString('ascii', 257, 262) !== 'ustar') throw new TarFormatError('not a tar archive (no ustar header)');
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
    if (sum !== parseOctal(block.subarray(148, 156))) throw new TarFormatError(`bad header checksum at byte ${position}`);
    const type = block.toString('ascii', 156, 157);
    const prefix = block.toString('utf8', 345, 500).replace(/\0.*$/s, '');
    const shortName = block.toString('utf8', 0, 100).replace(/\0.*$/s, '');
    const name = pax.path ?? (prefix ? `${prefix}/${shortName}` : shortName);
    const size = pax.size !== undefined ? Number(pax.size) : parseOctal(block.subarray(124, 136));
    const start = position + BLOCK;
    position = start + size + padding(size);
    if (type === 'x' || type === 'g') {
      const data = Buffer.alloc(size);
      await readAt(data, size, start);
      if (type === 'x') pax = parsePax(data);
      continue;
    }
    pax = {};
    if (type !== '0' && type !== '\0') continue;
    let used = false;
    const copyTo = async (sink: (chunk: Buffer) => Promise<void>) => {
      if (used) throw new Error(`${name} was already read`);
      used = true;
      const hash = createHash('sha256');
      const buffer = Buffer.alloc(Math.min(CHUNK, Math.max(size, 1)));
      for (let done = 0; done < size; ) {
        const length = Math.min(buffer.length, size - done);
        await readAt(buffer, length, start + done);
        const chunk = buffer.subarray(0, length);
        hash.update(chunk);
        await sink(chunk);
        done += length;
      }
      return hash.digest('hex');
    };
    const read = async () => {
      const parts: Buffer[] = [];
      await copyTo(async (chunk) => {
        parts.push(Buffer.from(chunk));
      });
      return Buffer.concat(parts);
    };
    yield { name, size, copyTo, read };
  }
}
