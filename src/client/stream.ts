import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import {
  CLOSE_CODES,
  encodeFrame,
  type ClientMessage,
  type FrameHeader,
  type ServerMessage,
  type StreamLimits,
  type StreamStatus,
} from '../protocol/stream.js';
import type { SightlineEvent } from '../protocol/events.js';
import type { DetectionResult } from '../protocol/results.js';
import { SightlineError } from './errors.js';
import { backoffDelay, reconnectOptions, type ReconnectOptions } from './backoff.js';

export type HelloMessage = Extract<ServerMessage, { type: 'hello' }>;
export type ResultMessage = Extract<ServerMessage, { type: 'result' }>;
export type DroppedMessage = Extract<ServerMessage, { type: 'dropped' }>;
export type ServerErrorMessage = Extract<ServerMessage, { type: 'error' }>;
export type PongMessage = Extract<ServerMessage, { type: 'pong' }>;

/** A frame's header as `send()` takes it: `id` may be left out (the SDK generates one). */
export type FrameOptions = Omit<FrameHeader, 'id'> & { id?: string };

export interface StreamOptions {
  /** Lines to subscribe to (result and job events of these lines arrive as `event`). Default none. */
  lines?: string[];
  /** Default line of the frames this connection sends (the connection's `line` query parameter). */
  line?: string;
  /** Default camera of the frames this connection sends (the connection's `camera` query parameter). */
  camera?: string;
  /** What kind of client this is, for the server's connection metrics (`client_kind`), e.g. `camera`. */
  clientKind?: string;
  /**
   * Reconnecting after an unexpected close or a failed connect: exponential backoff with
   * jitter ({@link ReconnectOptions}); `false` disables it (a lost connection stays closed).
   */
  reconnect?: Partial<ReconnectOptions> | false;
  /**
   * If nothing (no message, no ping) arrives from the server for this long, the socket
   * is considered dead, terminated and reconnected. Default: twice the server's
   * `ping_interval_ms` from `hello`, at least that plus 5 s (30 s until the hello).
   */
  heartbeatTimeoutMs?: number;
  /** Time allowed for the WebSocket handshake. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /**
   * `send()` refuses a frame (`CLIENT_BACKPRESSURE`) while the socket already holds this
   * many bytes it could not write yet. Default 8 MiB.
   */
  maxBufferedBytes?: number;
}

/** Passed with each `result`, `dropped` and frame `error`: when the frame was sent. */
export interface FrameInfo {
  /** Milliseconds from `send()` to this answer; null when the frame is unknown to this connection. */
  latencyMs: number | null;
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** True when the connection will try again by itself. */
  reconnecting: boolean;
}

export interface ReconnectInfo {
  /** 1 for the first attempt after a loss. */
  attempt: number;
  /** How long it waits before that attempt. */
  delayMs: number;
  /** Why the previous connection ended or the previous attempt failed. */
  error: Error | null;
}

/** The events of a {@link StreamConnection}, with their arguments. */
export interface StreamConnectionEvents {
  /** The WebSocket is open (again); `hello` follows, and then the connection is {@link StreamConnection.ready}. */
  open: [info: { reconnected: boolean }];
  /** The server greeted the connection with its limits; frames may be sent now and subscriptions are (re)sent. */
  hello: [hello: HelloMessage];
  /** A frame's detection result. */
  result: [message: ResultMessage, info: FrameInfo];
  /**
   * A frame failed (`frameId` set; server codes as for POST /v1/detect, or `CONNECTION_LOST`
   * / `CLOSED` when the connection ended before its answer), or the server refused a
   * message (`frameId` null). Emitted only while someone listens to `error`, so that a
   * refused frame never crashes a process that did not ask.
   */
  error: [error: SightlineError, info: FrameInfo];
  /** The server dropped a frame under backpressure (`stream_drop_policy`). */
  dropped: [message: DroppedMessage, info: FrameInfo];
  /** A live event of a subscribed line (a result from any source, a job going retrying or dead). */
  event: [event: SightlineEvent];
  /** The server's periodic status (throughput, latency, queue depth, this connection's counters). */
  status: [status: StreamStatus];
  /** The server's view of this connection's subscriptions after a subscribe/unsubscribe. */
  subscriptions: [lines: string[]];
  pong: [message: PongMessage];
  /** The socket closed; `reconnecting` says whether it will come back by itself. */
  close: [info: CloseInfo];
  /** A reconnect attempt is scheduled. */
  reconnecting: [info: ReconnectInfo];
}

type State = 'connecting' | 'open' | 'ready' | 'waiting' | 'closed';

const DEFAULT_HEARTBEAT_BEFORE_HELLO_MS = 30_000;
const DEFAULT_MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/** ws:// or wss:// URL of /v1/stream for an http(s) base URL. */
export function streamUrl(baseUrl: string, query: Record<string, string | undefined>): string {
  const url = new URL(baseUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : url.protocol === 'http:' ? 'ws:' : url.protocol;
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/stream`;
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
  return url.href;
}

/**
 * One logical /v1/stream connection that survives server restarts and network cuts:
 * binary image frames in, results, drops, errors, live line events and status out.
 *
 * - **Reconnect.** After any unexpected close or failed connect it waits (exponential
 *   backoff with full jitter, {@link ReconnectOptions}) and connects again, for ever
 *   unless `reconnect.maxAttempts` is set. `reconnecting` announces each attempt.
 * - **Resubscribe.** The server forgets subscriptions with the connection; this class
 *   keeps the wanted set (`subscribe`/`unsubscribe` change it) and sends it again after
 *   every `hello`.
 * - **Heartbeat.** The server pings every `stream_ping_interval_ms` (the `ws` package
 *   answers the pings); if nothing arrives for `heartbeatTimeoutMs`, the socket is
 *   terminated and reconnected: a half-open TCP connection is noticed.
 * - **No buffering.** `send()` throws `NOT_CONNECTED` while the connection is not
 *   ready (between a loss and the next `hello`): camera frames are worth little once
 *   late, so the caller decides whether to skip or keep them. Frames sent on a
 *   connection that then breaks get an `error` event with code `CONNECTION_LOST`:
 *   every sent frame gets exactly one `result`, `dropped` or `error`.
 *
 * @example
 * ```ts
 * const conn = client.stream({ line: 'line-3', lines: ['line-3'], clientKind: 'camera' });
 * conn.on('result', (m, { latencyMs }) => console.log(m.id, m.result.verdict, latencyMs));
 * conn.on('error', (err) => console.warn(err.code, err.frameId, err.message));
 * conn.on('event', (e) => e.type === 'result' && console.log('line event', e.line, e.result.verdict));
 * await conn.ready();
 * const id = conn.send(jpegBytes, { conf: 0.4 }); // id generated, echoed in the result
 * // …
 * await conn.close();
 * ```
 */
export class StreamConnection extends EventEmitter<StreamConnectionEvents> {
  private readonly url: string;
  private readonly headers: Record<string, string>;
  private readonly reconnect: ReconnectOptions | null;
  private readonly connectTimeoutMs: number;
  private readonly maxBufferedBytes: number;
  private readonly heartbeatOption: number | undefined;
  private readonly wanted = new Set<string>();
  private readonly idPrefix = randomBytes(4).toString('hex');
  private seq = 0;
  private ws: WebSocket | null = null;
  private state: State = 'connecting';
  private attempt = 0;
  private everReady = false;
  private lastError: Error | null = null;
  private heartbeatMs = DEFAULT_HEARTBEAT_BEFORE_HELLO_MS;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** Frames sent on the current socket and not yet answered: id → send time. */
  private pending = new Map<string, number>();
  private readyWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  private closedPromise: Promise<void> | null = null;
  private helloMessage: HelloMessage | null = null;

  /** @internal Created by {@link SightlineClient.stream}. */
  constructor(baseUrl: string, headers: Record<string, string>, options: StreamOptions = {}) {
    super();
    this.url = streamUrl(baseUrl, { line: options.line, camera: options.camera, client_kind: options.clientKind });
    this.headers = headers;
    this.reconnect = options.reconnect === false ? null : reconnectOptions(options.reconnect);
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.heartbeatOption = options.heartbeatTimeoutMs;
    if (this.heartbeatOption !== undefined) this.heartbeatMs = this.heartbeatOption;
    for (const line of options.lines ?? []) this.wanted.add(line);
    this.connect();
  }

  /** True between `hello` and the next loss: `send()` works. */
  get isReady(): boolean {
    return this.state === 'ready';
  }

  /** True once `close()` was called or reconnecting gave up. */
  get closed(): boolean {
    return this.state === 'closed';
  }

  /** The lines this connection subscribes to (again after every reconnect). */
  get subscriptions(): string[] {
    return [...this.wanted];
  }

  /** Frames sent on the current socket that have no answer yet. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** The last `hello` (connection id, limits); null before the first. */
  get hello(): HelloMessage | null {
    return this.helloMessage;
  }

  /** The server's limits from the last `hello`. */
  get limits(): StreamLimits | null {
    return this.helloMessage?.limits ?? null;
  }

  /**
   * Resolves when the connection is ready (now, or at the next `hello`); rejects when it
   * is closed for good first, or after `timeoutMs`.
   */
  ready(timeoutMs?: number): Promise<void> {
    if (this.state === 'ready') return Promise.resolve();
    if (this.state === 'closed') return Promise.reject(new SightlineError({ code: 'CLOSED', message: 'the stream connection is closed' }));
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter = {
        resolve: () => {
          if (timer) clearTimeout(timer);
          resolve();
        },
        reject: (err: Error) => {
          if (timer) clearTimeout(timer);
          reject(err);
        },
      };
      this.readyWaiters.push(waiter);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.readyWaiters = this.readyWaiters.filter((w) => w !== waiter);
          reject(
            new SightlineError({ code: 'TIMEOUT', message: `the stream connection was not ready within ${timeoutMs} ms`, cause: this.lastError ?? undefined }),
          );
        }, timeoutMs);
      }
    });
  }

  /**
   * Sends one image frame; returns its id (`header.id`, or a generated one), which the
   * frame's `result`, `dropped` or `error` carries.
   *
   * @throws SightlineError `NOT_CONNECTED` while the connection is not ready (the frame is
   *   not buffered), `CLIENT_BACKPRESSURE` while the socket holds `maxBufferedBytes` of
   *   unsent data, `CLOSED` after `close()`.
   * @throws RangeError when the JSON header exceeds the protocol's 4096 bytes.
   */
  send(image: Uint8Array, header: FrameOptions = {}): string {
    if (this.state === 'closed') throw new SightlineError({ code: 'CLOSED', message: 'the stream connection is closed' });
    const ws = this.ws;
    if (this.state !== 'ready' || !ws || ws.readyState !== WebSocket.OPEN) {
      throw new SightlineError({
        code: 'NOT_CONNECTED',
        message: 'the stream connection is not ready (reconnecting); the frame was not sent',
        cause: this.lastError ?? undefined,
      });
    }
    if (ws.bufferedAmount > this.maxBufferedBytes) {
      throw new SightlineError({
        code: 'CLIENT_BACKPRESSURE',
        message: `the socket holds ${ws.bufferedAmount} unsent bytes (limit ${this.maxBufferedBytes}); the frame was not sent`,
      });
    }
    const id = header.id ?? `${this.idPrefix}-${++this.seq}`;
    const data = encodeFrame({ ...header, id }, image);
    this.pending.set(id, performance.now());
    ws.send(data, { binary: true });
    return id;
  }

  /**
   * Sends a frame and resolves with its result; rejects with a SightlineError when it
   * fails, is dropped (`FRAME_DROPPED`), or has no answer within `timeoutMs`.
   */
  detect(image: Uint8Array, header: FrameOptions = {}, options: { timeoutMs?: number } = {}): Promise<DetectionResult> {
    const id = this.send(image, header);
    return new Promise<DetectionResult>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        this.off('result', onResult);
        this.off('error', onError);
        this.off('dropped', onDropped);
        if (timer) clearTimeout(timer);
      };
      const onResult = (m: ResultMessage) => {
        if (m.id !== id) return;
        done();
        resolve(m.result);
      };
      const onError = (err: SightlineError) => {
        if (err.frameId !== id) return;
        done();
        reject(err);
      };
      const onDropped = (m: DroppedMessage) => {
        if (m.id !== id) return;
        done();
        reject(new SightlineError({ code: 'FRAME_DROPPED', message: `frame ${id} was dropped by the server (${m.reason}, policy ${m.policy})`, frameId: id }));
      };
      this.on('result', onResult);
      this.on('error', onError);
      this.on('dropped', onDropped);
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          done();
          reject(new SightlineError({ code: 'TIMEOUT', message: `no answer to frame ${id} within ${options.timeoutMs} ms`, frameId: id }));
        }, options.timeoutMs);
      }
    });
  }

  /** Adds lines to the subscriptions (kept across reconnects); sent now when ready. */
  subscribe(lines: string[]): void {
    const added = lines.filter((l) => !this.wanted.has(l));
    for (const l of added) this.wanted.add(l);
    if (added.length > 0 && this.state === 'ready') this.message({ type: 'subscribe', lines: added });
  }

  /** Removes lines from the subscriptions; sent now when ready. */
  unsubscribe(lines: string[]): void {
    const removed = lines.filter((l) => this.wanted.has(l));
    for (const l of removed) this.wanted.delete(l);
    if (removed.length > 0 && this.state === 'ready') this.message({ type: 'unsubscribe', lines: removed });
  }

  /** Sends an application-level ping; the server answers with a `pong` event. */
  ping(id?: string): void {
    if (this.state === 'ready') this.message(id === undefined ? { type: 'ping' } : { type: 'ping', id });
  }

  /**
   * Closes the connection for good (no reconnect). Frames without an answer get an
   * `error` event with code `CLOSED`. Resolves once the socket is closed.
   */
  close(code = 1000, reason = 'client closing'): Promise<void> {
    if (this.closedPromise) return this.closedPromise;
    const ws = this.ws;
    this.state = 'closed';
    this.clearTimers();
    this.rejectReadyWaiters(new SightlineError({ code: 'CLOSED', message: 'the stream connection was closed' }));
    this.closedPromise = new Promise<void>((resolve) => {
      if (!ws || ws.readyState === WebSocket.CLOSED) {
        this.failPending('CLOSED', 'the stream connection was closed before the frame was answered');
        this.emit('close', { code, reason, reconnecting: false });
        resolve();
        return;
      }
      ws.once('close', () => resolve());
      // A peer that never answers the close handshake must not hold close() up.
      const kill = setTimeout(() => ws.terminate(), 2000);
      kill.unref();
      ws.once('close', () => clearTimeout(kill));
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(code, reason);
    });
    return this.closedPromise;
  }

  // --- internals -------------------------------------------------------------

  private connect(): void {
    if (this.state === 'closed') return;
    this.state = 'connecting';
    const ws = new WebSocket(this.url, {
      headers: this.headers,
      handshakeTimeout: this.connectTimeoutMs,
      perMessageDeflate: false,
    });
    this.ws = ws;
    this.armHeartbeat(this.heartbeatOption ?? Math.max(DEFAULT_HEARTBEAT_BEFORE_HELLO_MS, this.connectTimeoutMs + 1000));
    ws.on('open', () => {
      if (this.ws !== ws) return;
      this.state = 'open';
      this.armHeartbeat();
      this.emit('open', { reconnected: this.everReady });
    });
    ws.on('ping', () => this.ws === ws && this.armHeartbeat());
    ws.on('pong', () => this.ws === ws && this.armHeartbeat());
    ws.on('message', (data, isBinary) => {
      if (this.ws !== ws) return;
      this.armHeartbeat();
      if (isBinary) return; // the protocol has no binary server messages
      let message: ServerMessage;
      try {
        message = JSON.parse(data.toString()) as ServerMessage;
      } catch {
        return;
      }
      this.dispatch(message);
    });
    ws.on('error', (err) => {
      if (this.ws === ws) this.lastError = err;
    });
    ws.on('close', (code, reasonBuffer) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearHeartbeat();
      const reason = reasonBuffer.toString();
      if (this.state === 'closed') {
        this.failPending('CLOSED', 'the stream connection was closed before the frame was answered');
        this.emit('close', { code, reason, reconnecting: false });
        return;
      }
      const wasReady = this.state === 'ready';
      if (!this.lastError || wasReady) this.lastError = new Error(`connection closed (code ${code}${reason ? `, ${reason}` : ''})`);
      this.failPending('CONNECTION_LOST', `the stream connection was lost (code ${code}) before the frame was answered`);
      if (wasReady) this.attempt = 0;
      // Revoked or expired credentials would only be refused again (401) on every attempt.
      const credentialsGone = code === CLOSE_CODES.CREDENTIALS_INVALID;
      const reconnecting = !credentialsGone && this.reconnect !== null && this.attempt < this.reconnect.maxAttempts;
      this.emit('close', { code, reason, reconnecting });
      if (!reconnecting) {
        this.state = 'closed';
        this.rejectReadyWaiters(
          credentialsGone
            ? new SightlineError({
                code: 'UNAUTHORIZED',
                status: 401,
                message: `the stream was closed: ${reason || 'credentials no longer valid'}`,
                cause: this.lastError,
              })
            : new SightlineError({ code: 'NETWORK_ERROR', message: `the stream connection ended: ${this.lastError.message}`, cause: this.lastError }),
        );
        return;
      }
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    const options = this.reconnect!;
    const delayMs = backoffDelay(this.attempt, options);
    this.attempt += 1;
    this.state = 'waiting';
    this.emit('reconnecting', { attempt: this.attempt, delayMs, error: this.lastError });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.lastError = null;
      this.connect();
    }, delayMs);
  }

  private dispatch(message: ServerMessage): void {
    switch (message.type) {
      case 'hello': {
        this.helloMessage = message;
        this.state = 'ready';
        this.everReady = true;
        this.attempt = 0;
        if (this.heartbeatOption === undefined) {
          const ping = message.limits?.ping_interval_ms;
          if (typeof ping === 'number' && ping > 0) this.heartbeatMs = Math.max(2 * ping, ping + 5000);
        }
        this.armHeartbeat();
        // The server forgets subscriptions with the socket: send the wanted set again.
        const missing = [...this.wanted].filter((l) => !(message.subscriptions ?? []).includes(l));
        if (missing.length > 0) this.message({ type: 'subscribe', lines: missing });
        this.emit('hello', message);
        const waiters = this.readyWaiters;
        this.readyWaiters = [];
        for (const w of waiters) w.resolve();
        break;
      }
      case 'result':
        this.emit('result', message, { latencyMs: this.settle(message.id) });
        break;
      case 'dropped':
        this.emit('dropped', message, { latencyMs: this.settle(message.id) });
        break;
      case 'error': {
        const latencyMs = message.id === undefined ? null : this.settle(message.id);
        const err = new SightlineError({
          code: message.error?.code ?? 'BAD_RESPONSE',
          message: message.error?.message ?? 'stream error',
          frameId: message.id ?? null,
        });
        if (this.listenerCount('error') > 0) this.emit('error', err, { latencyMs });
        break;
      }
      case 'event':
        this.emit('event', message.event);
        break;
      case 'status':
        this.emit('status', message);
        break;
      case 'subscriptions':
        this.emit('subscriptions', message.lines);
        break;
      case 'pong':
        this.emit('pong', message);
        break;
      default:
        break; // newer server, unknown message: ignored
    }
  }

  /** Forgets a pending frame; returns its latency, null when unknown. */
  private settle(id: string): number | null {
    const sentAt = this.pending.get(id);
    if (sentAt === undefined) return null;
    this.pending.delete(id);
    return performance.now() - sentAt;
  }

  private failPending(code: 'CONNECTION_LOST' | 'CLOSED', message: string): void {
    const pending = this.pending;
    this.pending = new Map();
    const now = performance.now();
    for (const [id, sentAt] of pending) {
      const err = new SightlineError({ code, message: `${message} (frame ${id})`, frameId: id, cause: this.lastError ?? undefined });
      if (this.listenerCount('error') > 0) this.emit('error', err, { latencyMs: now - sentAt });
    }
  }

  private message(message: ClientMessage): void {
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  private armHeartbeat(ms = this.heartbeatMs): void {
    this.clearHeartbeat();
    const ws = this.ws;
    if (!ws) return;
    this.heartbeatTimer = setTimeout(() => {
      if (this.ws !== ws) return;
      this.lastError = new Error(`no message or ping from the server for ${ms} ms`);
      ws.terminate();
    }, ms);
  }

  private clearHeartbeat(): void {
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  private clearTimers(): void {
    this.clearHeartbeat();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  private rejectReadyWaiters(err: Error): void {
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const w of waiters) w.reject(err);
  }
}
