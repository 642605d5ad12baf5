import { WebSocket, type ClientOptions } from 'ws';
import type { FastifyInstance } from 'fastify';
import { encodeFrame, type FrameHeader, type ServerMessage } from '../../src/protocol/stream.js';

export type Message = ServerMessage;
export type Of<T extends Message['type']> = Extract<Message, { type: T }>;

export function baseUrl(app: FastifyInstance, scheme: 'http' | 'ws' = 'http'): string {
  return `${scheme}://127.0.0.1:${(app.server.address() as { port: number }).port}`;
}

/** A raw `ws` client of /v1/stream that records every server message. */
export class StreamClient {
  readonly messages: Message[] = [];
  closed: { code: number; reason: string } | undefined;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (isBinary) throw new Error('the server sent a binary message');
      this.messages.push(JSON.parse(data.toString()) as Message);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', () => undefined);
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Connects and waits for the hello. */
  static async open(app: FastifyInstance, query = '', options: ClientOptions = {}): Promise<StreamClient> {
    const ws = new WebSocket(`${baseUrl(app, 'ws')}/v1/stream${query}`, options);
    const client = new StreamClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    });
    await client.waitFor((m) => m.type === 'hello');
    return client;
  }

  of<T extends Message['type']>(type: T): Of<T>[] {
    return this.messages.filter((m): m is Of<T> => m.type === type);
  }

  /** Resolves with the first recorded message matching, waiting up to timeoutMs. */
  waitFor<T extends Message = Message>(pred: (m: Message) => boolean, timeoutMs = 15_000, what = 'message'): Promise<T> {
    return this.until(() => this.messages.find(pred) as T | undefined, timeoutMs, what);
  }

  /** Resolves once cond() returns a value other than undefined/false. */
  until<T>(cond: () => T | undefined | false, timeoutMs = 15_000, what = 'condition'): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const value = cond();
        if (value !== undefined && value !== false) {
          cleanup();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${JSON.stringify(this.messages.slice(-5)).slice(0, 2000)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  waitClosed(timeoutMs = 15_000): Promise<{ code: number; reason: string }> {
    return this.until(() => this.closed, timeoutMs, 'close');
  }

  sendFrame(header: FrameHeader, image: Uint8Array): void {
    this.ws.send(encodeFrame(header, image));
  }

  sendJson(message: unknown): void {
    this.ws.send(JSON.stringify(message));
  }

  /** The one answer (result, error or dropped) for frame `id`. */
  answerFor(id: string): Message | undefined {
    return this.messages.find((m) => (m.type === 'result' || m.type === 'dropped' || m.type === 'error') && m.id === id);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.ws.close();
    await this.waitClosed(5000).catch(() => this.ws.terminate());
  }
}
