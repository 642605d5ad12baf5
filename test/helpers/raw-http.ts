/**
 * Raw HTTP and WebSocket clients written by hand (so that they can break the
 * protocols on purpose) and hand-made files for the malformed-input suites.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';
// ------------------------------------------------------------------ raw HTTP over a socket

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface RawRequest {
  method?: string;
  path: string;
  /** Values are written as given: a Buffer goes on the wire byte for byte. */
  headers?: Record<string, string | Buffer>;
  body?: Buffer | string;
}

/** Where the raw clients connect: set `rawTarget.port` once the app listens. */
export const rawTarget = { port: 0 };

export function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < body.length) {
    const eol = body.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(body.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    parts.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

export function parseResponse(data: Buffer): RawResponse {
  const end = data.indexOf('\r\n\r\n');
  assert.ok(end > 0, `no HTTP response: ${JSON.stringify(data.subarray(0, 200).toString('latin1'))}`);
  const [statusLine, ...lines] = data.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine!)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = data.subarray(end + 4);
  if (headers['transfer-encoding'] === 'chunked') body = dechunk(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status, headers, body };
}

/** Sends raw bytes on a fresh connection and reads until the server closes it. */
export function rawExchange(bytes: Buffer, timeoutMs = 15_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: rawTarget.port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms; got ${JSON.stringify(Buffer.concat(chunks).subarray(0, 300).toString('latin1'))}`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    // The server may answer and close before it read everything we sent (431, 413): EPIPE/ECONNRESET then.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (err) {
        reject(err as Error);
      }
    });
    socket.write(bytes);
  });
}

export function requestBytes(req: RawRequest): Buffer {
  const headers: Record<string, string | Buffer> = { host: `127.0.0.1:${rawTarget.port}`, connection: 'close', ...req.headers };
  const body = typeof req.body === 'string' ? Buffer.from(req.body) : req.body;
  if (body !== undefined && !('transfer-encoding' in headers) && !('content-length' in headers)) headers['content-length'] = String(body.length);
  const head: Buffer[] = [Buffer.from(`${req.method ?? 'GET'} ${req.path} HTTP/1.1\r\n`, 'latin1')];
  for (const [name, value] of Object.entries(headers)) {
    head.push(Buffer.from(`${name}: `, 'latin1'), typeof value === 'string' ? Buffer.from(value, 'latin1') : value, Buffer.from('\r\n'));
  }
  head.push(Buffer.from('\r\n'));
  return Buffer.concat(body ? [...head, body] : head);
}

export const send = (req: RawRequest, timeoutMs?: number) => rawExchange(requestBytes(req), timeoutMs);

export function errorOf(res: RawResponse): { code: string; message: string } {
  let parsed: { error?: { code?: unknown; message?: unknown } };
  try {
    parsed = JSON.parse(res.body.toString('utf8'));
  } catch {
    assert.fail(`HTTP ${res.status} without a JSON body: ${JSON.stringify(res.body.subarray(0, 300).toString('latin1'))}`);
  }
  assert.equal(typeof parsed.error?.code, 'string', `no error code in ${res.body.toString('utf8').slice(0, 300)}`);
  assert.equal(typeof parsed.error?.message, 'string');
  return parsed.error as { code: string; message: string };
}

// ------------------------------------------------------------------ hand-made files

export const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
export function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
export function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}
export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** A 1-bit greyscale PNG of zeros: `width × height` pixels in a few kilobytes (a decompression bomb). */
export function zeroPng(width: number, height: number, extra: Buffer[] = []): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([1, 0, 0, 0, 0], 8); // bit depth 1, greyscale, deflate, adaptive filtering, no interlace
  const raw = Buffer.alloc((1 + Math.ceil(width / 8)) * height); // filter byte 0 + packed row, all zero
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), ...extra, pngChunk('IDAT', deflateSync(raw, { level: 9 })), pngChunk('IEND', Buffer.alloc(0))]);
}
/** A PNG whose IHDR declares `width × height` but whose data is a token IDAT: only the header is plausible. */
export function headerOnlyPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), pngChunk('IDAT', deflateSync(Buffer.alloc(64))), pngChunk('IEND', Buffer.alloc(0))]);
}
/** `png` with one more chunk right after its IHDR. */
export function withChunk(png: Buffer, type: string, data: Buffer): Buffer {
  return Buffer.concat([png.subarray(0, 33), pngChunk(type, data), png.subarray(33)]);
}
/** A JPEG whose SOF0 is patched to claim 65500 × 65500 pixels. */
export function hugeJpeg(jpeg: Buffer): Buffer {
  const out = Buffer.from(jpeg);
  for (let i = 2; i < out.length - 9; i++) {
    if (out[i] === 0xff && out[i + 1] === 0xc0) {
      out.writeUInt16BE(65500, i + 5);
      out.writeUInt16BE(65500, i + 7);
      return out;
    }
  }
  throw new Error('no SOF0 in the JPEG');
}
/** The smallest valid ZIP: an empty archive (its end-of-central-directory record). */
export const EMPTY_ZIP = Buffer.concat([Buffer.from('PK\x05\x06', 'latin1'), Buffer.alloc(18)]);
/** A ZIP with one stored file. */
export function storedZip(name: string, content: Buffer): Buffer {
  const nameBytes = Buffer.from(name);
  const local = Buffer.alloc(30);
  local.write('PK\x03\x04', 0, 'latin1');
  local.writeUInt16LE(10, 4);
  local.writeUInt32LE(crc32(content), 14);
  local.writeUInt32LE(content.length, 18);
  local.writeUInt32LE(content.length, 22);
  local.writeUInt16LE(nameBytes.length, 26);
  const central = Buffer.alloc(46);
  central.write('PK\x01\x02', 0, 'latin1');
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(10, 6);
  central.writeUInt32LE(crc32(content), 16);
  central.writeUInt32LE(content.length, 20);
  central.writeUInt32LE(content.length, 24);
  central.writeUInt16LE(nameBytes.length, 28);
  const localPart = Buffer.concat([local, nameBytes, content]);
  const centralPart = Buffer.concat([central, nameBytes]);
  const eocd = Buffer.alloc(22);
  eocd.write('PK\x05\x06', 0, 'latin1');
  eocd.writeUInt16LE(1, 8);
  eocd.writeUInt16LE(1, 10);
  eocd.writeUInt32LE(centralPart.length, 12);
  eocd.writeUInt32LE(localPart.length, 16);
  return Buffer.concat([localPart, centralPart, eocd]);
}
export function bmp(): Buffer {
  const b = Buffer.alloc(58);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(58, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(1, 18);
  b.writeInt32LE(1, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  return b;
}
export const deepArray = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
export const deepObject = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

export function multipart(
  parts: { name: string; filename?: string; type?: string; data: Buffer | string }[],
  boundary = 'sightline-corpus-boundary',
  close = true,
): { body: Buffer; type: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ''}\r\n`));
    chunks.push(typeof p.data === 'string' ? Buffer.from(p.data) : p.data, Buffer.from('\r\n'));
  }
  if (close) chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), type: `multipart/form-data; boundary=${boundary}` };
}

// ------------------------------------------------------------------ raw WebSocket over a socket

export interface WsFrame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

export function clientFrame(opts: { opcode: number; payload?: Buffer; fin?: boolean; rsv?: number; mask?: boolean; declaredLength?: bigint }): Buffer {
  const payload = opts.payload ?? Buffer.alloc(0);
  const mask = opts.mask ?? true;
  const first = ((opts.fin ?? true) ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | opts.opcode;
  const length = opts.declaredLength ?? BigInt(payload.length);
  let head: Buffer;
  if (length < 126n) head = Buffer.from([first, (mask ? 0x80 : 0) | Number(length)]);
  else if (length < 65536n) {
    head = Buffer.from([first, (mask ? 0x80 : 0) | 126, 0, 0]);
    head.writeUInt16BE(Number(length), 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = first;
    head[1] = (mask ? 0x80 : 0) | 127;
    head.writeBigUInt64BE(length, 2);
  }
  if (!mask) return Buffer.concat([head, payload]);
  const key = randomBytes(4);
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i]! ^= key[i % 4]!;
  return Buffer.concat([head, key, masked]);
}

/** A WebSocket client written by hand, so that it can break the protocol on purpose. */
export class RawWs {
  readonly frames: WsFrame[] = [];
  ended = false;
  private buffer = Buffer.alloc(0);
  private upgraded = false;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.parse();
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  static async open(path = '/v1/stream'): Promise<RawWs> {
    const socket = connect({ host: '127.0.0.1', port: rawTarget.port });
    const ws = new RawWs(socket);
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${rawTarget.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    await ws.until(() => ws.upgraded || ws.ended, 'the upgrade');
    assert.ok(ws.upgraded, 'the server did not upgrade the connection');
    // The hello comes first.
    await ws.until(() => ws.frames.some((f) => f.opcode === 1 && JSON.parse(f.payload.toString()).type === 'hello'), 'the hello');
    return ws;
  }

  private parse(): void {
    if (!this.upgraded) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buffer.subarray(0, end).toString('latin1');
      if (!/^HTTP\/1\.1 101 /.test(head)) {
        this.socket.destroy();
        return;
      }
      this.upgraded = true;
      this.buffer = this.buffer.subarray(end + 4);
    }
    for (;;) {
      if (this.buffer.length < 2) return;
      const b0 = this.buffer[0]!;
      const b1 = this.buffer[1]!;
      let length = b1 & 0x7f;
      let at = 2;
      if (length === 126) {
        if (this.buffer.length < 4) return;
        length = this.buffer.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (this.buffer.length < 10) return;
        length = Number(this.buffer.readBigUInt64BE(2));
        at = 10;
      }
      if (this.buffer.length < at + length) return;
      this.frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload: this.buffer.subarray(at, at + length) });
      this.buffer = this.buffer.subarray(at + length);
    }
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  until<T>(cond: () => T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = cond();
        if (v !== undefined && v !== false) {
          done();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The code of the close frame the server sends (undefined: it dropped the socket without one). */
  async closeCode(): Promise<number | undefined> {
    const close = await this.until(() => this.frames.find((f) => f.opcode === 8) ?? (this.ended ? ('ended' as const) : undefined), 'a close frame');
    this.socket.destroy();
    return close === 'ended' || close.payload.length < 2 ? undefined : close.payload.readUInt16BE(0);
  }

  /** JSON text messages from the server. */
  messages(): { type: string; [k: string]: unknown }[] {
    return this.frames.filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString()));
  }
}

// ------------------------------------------------------------------ the corpus
