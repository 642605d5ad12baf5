// A raw HTTP/1.1 client over node:net for the connection tests: one socket per
// client, keep-alive by default, so that tests control exactly how many
// connections are open (fetch pools and reuses sockets behind the test's back).
import { connect, type Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { ConnectionCounts, ConnectionInfo } from '../src/connections/types.js';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  json<T = Record<string, unknown>>(): T;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

export function portOf(app: FastifyInstance): number {
  return (app.server.address() as { port: number }).port;
}

/** One TCP connection speaking HTTP/1.1; responses are parsed as they arrive (Content-Length bodies). */
export class RawConn {
  readonly responses: RawResponse[] = [];
  closed = false;
  /** Set when the socket failed (ECONNRESET …). */
  error: Error | undefined;
  private buffer = Buffer.alloc(0);
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    socket.on('error', (err) => {
      this.error = err;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static open(port: number, host = '127.0.0.1'): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host });
      socket.setNoDelay(true);
      const conn = new RawConn(socket);
      socket.once('connect', () => resolve(conn));
      socket.once('error', reject);
    });
  }

  /** Writes raw bytes (slowloris tests). */
  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends a request and waits for its response. */
  async request(path: string, options: RequestOptions = {}, timeoutMs = 15_000): Promise<RawResponse> {
    const have = this.responses.length;
    this.write(requestText(path, options));
    return this.until(() => this.responses[have], timeoutMs, `response to ${options.method ?? 'GET'} ${path}`);
  }

  /** The next response after `have` responses. */
  nextResponse(have: number, timeoutMs = 15_000): Promise<RawResponse> {
    return this.until(() => this.responses[have], timeoutMs, 'a response');
  }

  waitClosed(timeoutMs = 15_000): Promise<true> {
    return this.until(() => this.closed || undefined, timeoutMs, 'the socket to close');
  }

  close(): void {
    this.socket.destroy();
  }

  until<T>(cond: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const value = cond();
        if (value !== undefined) {
          done();
          resolve(value);
        } else if (this.closed && !this.buffer.length) {
          done();
          reject(new Error(`socket closed while waiting for ${what}${this.error ? ` (${this.error.message})` : ''}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private parse(): void {
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) break;
      const head = this.buffer.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1]);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const length = Number(headers['content-length'] ?? 0);
      if (this.buffer.length < end + 4 + length) break;
      const body = this.buffer.subarray(end + 4, end + 4 + length).toString('utf8');
      this.buffer = this.buffer.subarray(end + 4 + length);
      this.responses.push({ status, headers, body, json: <T>() => JSON.parse(body) as T });
    }
    this.wake();
  }
}

export function requestText(path: string, options: RequestOptions = {}): Buffer {
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  const headers: Record<string, string> = { host: '127.0.0.1', ...options.headers };
  if (body) headers['content-length'] = String(body.length);
  const head = `${options.method ?? 'GET'} ${path} HTTP/1.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n')}\r\n\r\n`;
  return body ? Buffer.concat([Buffer.from(head, 'latin1'), body]) : Buffer.from(head, 'latin1');
}

/** GET /v1/admin/connections on its own socket (closed afterwards), so that it does not linger in the counts. */
export async function listConnections<T = AdminList>(port: number, query = '', headers: Record<string, string> = {}): Promise<T> {
  const conn = await RawConn.open(port);
  try {
    const res = await conn.request(`/v1/admin/connections${query}`, { headers: { connection: 'close', ...headers } });
    if (res.status !== 200) throw new Error(`GET /v1/admin/connections: ${res.status} ${res.body}`);
    return res.json<T>();
  } finally {
    conn.close();
  }
}

/** A connection as GET /v1/admin/connections lists it: the server's own type. */
export type AdminConnection = ConnectionInfo;

export interface AdminList {
  connections: AdminConnection[];
  matched: number;
  counts: ConnectionCounts;
  limits: Record<string, number>;
}

/** Polls until `check` returns a value other than undefined/false. */
export async function eventually<T>(check: () => Promise<T> | T, what: string, timeoutMs = 10_000): Promise<Exclude<T, undefined | false>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as Exclude<T, undefined | false>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
