import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { FastifyBaseLogger } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import type { TypeCheck } from '@sinclair/typebox/compiler';
import type { TSchema } from '@sinclair/typebox';
import type { Config } from '../config/schema.js';
import { Errors, toApiError } from '../errors.js';
import type { ErrorBody } from '../protocol/errors.js';
import { ALL_LINES, type EventBus, type SightlineEvent } from '../events/index.js';
import { inspect } from '../inspection/inspect.js';
import type { InspectionObserver } from '../inspection/observers.js';
import type { LineRegistry } from '../lines/registry.js';
import type { ModelRepository } from '../inference/repository.js';
import type { Metrics } from '../metrics/metrics.js';
import type { ResultStore } from '../store/index.js';
import {
  decodeFrame,
  FrameFormatError,
  PROTOCOL_VERSION,
  CLOSE_CODES,
  type ClientMessage,
  type FrameHeader,
  type ServerMessage,
  type StreamLimits,
  type StreamStatus,
} from '../protocol/stream.js';

/** Text messages larger than this are refused unread (they are a few hundred bytes at most). */
export const MAX_TEXT_MESSAGE_BYTES = 64 * 1024;
/** Over this many unsent bytes, optional messages (events, status) are skipped for the connection. */
export const SOFT_BUFFERED_BYTES = 1024 * 1024;
/** Over this many unsent bytes the client is not reading at all: the connection is closed (1008). */
export const HARD_BUFFERED_BYTES = 16 * 1024 * 1024;
/** How long a close handshake may take before the socket is destroyed. */
export const CLOSE_GRACE_MS = 2000;

/** WebSocket close codes the server uses (the wire contract: src/protocol/stream.ts). */
export { CLOSE_CODES };

/** Server-wide figures of a status message, computed once for every connection. */
export type ServerFigures = Pick<StreamStatus, 'connections' | 'throughput_fps' | 'latency_ms' | 'queue_depth'>;

export interface SessionDeps {
  config: Config;
  models: ModelRepository;
  metrics: Metrics;
  store: ResultStore;
  events: EventBus;
  observers?: readonly InspectionObserver[];
  /** Counts frames by line and camera (arrived, dropped, failed). */
  lines?: Pick<LineRegistry, 'received' | 'dropped'>;
  logger: FastifyBaseLogger;
  limits: StreamLimits;
  headerCheck: TypeCheck<TSchema>;
  messageChecks: Record<ClientMessage['type'], TypeCheck<TSchema>>;
  figures: () => ServerFigures;
  onClosed: (session: StreamSession) => void;
  /** Something arrived (a message when `message`, else a ping or pong): for the connection registry. */
  onActivity?: (message: boolean) => void;
  /** The line a frame was processed for: for the connection registry. */
  onLine?: (line: string) => void;
}

export interface SessionInit {
  id: string;
  remoteAddress: string;
  clientKind: string;
  /** The connection's `line` query parameter, else "default". */
  defaultLine: string;
  /** The connection's `camera` query parameter, else "default". */
  defaultCamera: string;
  /** Lines of the `lines` query parameter. */
  lines: string[];
}

interface Frame {
  id: string;
  header: FrameHeader;
  line: string;
  camera: string;
  image: Buffer;
  /** performance.now() ms */
  deadline: number;
}

type Unsubscribe = () => Promise<void>;

const FRAME_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The error body a client gets for a failure: Sightline's own code, else INTERNAL_ERROR. */
export function errorBody(err: unknown): ErrorBody {
  const { code, message } = toApiError(err);
  return { code, message };
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function firstError(check: TypeCheck<TSchema>, value: unknown): string {
  const error = check.Errors(value).First();
  if (!error) return 'invalid';
  return `${error.path || '(root)'} ${error.message}`;
}

/**
 * One /v1/stream connection: frames through the detection pipeline with bounded
 * concurrency (max_in_flight running, max_pending waiting, the rest dropped by
 * policy), line subscriptions on the event bus, heartbeat and idle timeout,
 * periodic status. Every frame that passes the framing check gets exactly one
 * answer: result, error or dropped (unless the connection closes first).
 */
export class StreamSession {
  readonly id: string;
  readonly clientKind: string;
  readonly openedAt = Date.now();
  private readonly counters = { received: 0, processed: 0, failed: 0, dropped: 0, events_skipped: 0 };
  private inFlight = 0;
  private readonly pending: Frame[] = [];
  private readonly subscriptions = new Map<string, Promise<Unsubscribe | undefined>>();
  /** Messages produced before the hello went out. */
  private outbox: string[] | undefined = [];
  private lastSeen = performance.now();
  private closing = false;
  private closed = false;
  private closeReason: string | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private idleTimer: NodeJS.Timeout | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private readonly log: FastifyBaseLogger;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    private readonly ws: WebSocket,
    private readonly init: SessionInit,
    private readonly deps: SessionDeps,
  ) {
    this.id = init.id;
    this.clientKind = init.clientKind;
    this.log = deps.logger.child({ connection_id: init.id });
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Resolves once the socket is closed (or destroyed). */
  get done(): Promise<void> {
    return this.closedPromise;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Wires the socket up; the hello goes out once the initial subscriptions are in place. */
  start(): void {
    const { ws, deps } = this;
    const { limits } = deps;
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('pong', () => this.touch());
    ws.on('ping', () => this.touch());
    ws.on('close', (code, reason) => this.onClose(code, reason.toString('utf8')));
    this.log.info(
      {
        event: 'connection_open',
        transport: 'websocket',
        remote_address: this.init.remoteAddress,
        client_kind: this.clientKind,
        line: this.init.defaultLine,
        lines: this.init.lines,
      },
      'stream connection open',
    );

    this.timers.push(
      setInterval(() => {
        if (this.closing) return;
        try {
          ws.ping();
        } catch {
          // the socket is going away; close will follow
        }
      }, limits.ping_interval_ms),
      setInterval(() => this.sendStatus(), limits.status_interval_ms),
    );
    this.armIdleTimer(limits.idle_timeout_ms);

    void this.subscribe(this.init.lines)
      .catch((err: unknown) => this.enqueueError(undefined, errorBody(err)))
      .finally(() => {
        if (this.closed) return;
        const hello: ServerMessage = { type: 'hello', connection_id: this.id, protocol: PROTOCOL_VERSION, limits, subscriptions: this.lines() };
        const queued = this.outbox ?? [];
        this.outbox = undefined;
        this.sendRaw(JSON.stringify(hello));
        for (const text of queued) this.sendRaw(text);
      });
  }

  /** Closes the connection (close handshake, then destroyed after CLOSE_GRACE_MS). */
  close(code: number, reason: string, why: string): void {
    if (this.closing || this.closed) return;
    this.closing = true;
    this.closeReason = why;
    try {
      this.ws.close(code, reason);
    } catch {
      this.ws.terminate();
    }
    this.killTimer = setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS);
  }

  // ---------------------------------------------------------------- input

  private touch(message = false): void {
    this.lastSeen = performance.now();
    this.deps.onActivity?.(message);
  }

  private armIdleTimer(delay: number): void {
    this.idleTimer = setTimeout(
      () => {
        const idle = performance.now() - this.lastSeen;
        const limit = this.deps.limits.idle_timeout_ms;
        if (idle >= limit) {
          this.log.info({ event: 'connection_idle', idle_ms: Math.round(idle) }, 'stream connection idle: closing');
          this.close(CLOSE_CODES.GOING_AWAY, 'idle timeout', 'idle_timeout');
        } else {
          this.armIdleTimer(limit - idle);
        }
      },
      Math.max(1, delay),
    );
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.touch(true);
    if (this.closing || this.closed) return;
    const bytes = toBuffer(data);
    if (isBinary) this.onFrame(bytes);
    else this.onText(bytes);
  }

  private onFrame(bytes: Buffer): void {
    const { metrics, limits, config } = this.deps;
    this.counters.received++;
    metrics.streamFrames.inc({ outcome: 'received' });
    let header: unknown;
    let image: Buffer;
    try {
      ({ header, image } = decodeFrame(bytes));
    } catch (err) {
      const message = err instanceof FrameFormatError ? err.message : String(err);
      this.frameFailed(undefined, errorBody(new Errors.INVALID_FRAME(message)));
      return;
    }
    const maybeId = (header as { id?: unknown } | null)?.id;
    const id = typeof maybeId === 'string' && FRAME_ID.test(maybeId) ? maybeId : undefined;
    if (!this.deps.headerCheck.Check(header)) {
      const message =
        typeof header !== 'object' || header === null || Array.isArray(header)
          ? 'the header is not a JSON object'
          : `header ${firstError(this.deps.headerCheck, header)}`;
      this.frameFailed(id, errorBody(new Errors.INVALID_FRAME(message)));
      return;
    }
    const frameHeader = header as FrameHeader;
    if (image.length === 0) {
      this.frameFailed(frameHeader.id, errorBody(new Errors.EMPTY_BODY()));
      return;
    }
    const frame: Frame = {
      id: frameHeader.id,
      header: frameHeader,
      line: frameHeader.line ?? this.init.defaultLine,
      camera: frameHeader.camera ?? this.init.defaultCamera,
      image,
      deadline: performance.now() + (frameHeader.timeout_ms ?? config.request_timeout_ms),
    };
    this.deps.lines?.received(frame.line, frame.camera);
    if (this.inFlight < limits.max_in_flight) {
      this.run(frame);
    } else if (this.pending.length < limits.max_pending) {
      this.pending.push(frame);
    } else if (limits.drop_policy === 'oldest' && this.pending.length > 0) {
      this.drop(this.pending.shift()!);
      this.pending.push(frame);
    } else {
      this.drop(frame);
    }
  }

  private onText(bytes: Buffer): void {
    if (bytes.length > MAX_TEXT_MESSAGE_BYTES) {
      this.messageFailed(`text message of ${bytes.length} bytes, more than ${MAX_TEXT_MESSAGE_BYTES}`);
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      this.messageFailed(`not JSON: ${(err as Error).message}`);
      return;
    }
    const type = (message as { type?: unknown } | null)?.type;
    if (typeof message !== 'object' || message === null || Array.isArray(message) || typeof type !== 'string') {
      this.messageFailed('a message is a JSON object with a string "type"');
      return;
    }
    const check = Object.hasOwn(this.deps.messageChecks, type) ? this.deps.messageChecks[type as ClientMessage['type']] : undefined;
    if (!check) {
      this.messageFailed(`unknown message type ${JSON.stringify(type.slice(0, 64))} (subscribe, unsubscribe, ping)`);
      return;
    }
    if (!check.Check(message)) {
      this.messageFailed(`${type}: ${firstError(check, message)}`);
      return;
    }
    const msg = message as ClientMessage;
    switch (msg.type) {
      case 'ping':
        this.send(msg.id === undefined ? { type: 'pong' } : { type: 'pong', id: msg.id });
        return;
      case 'subscribe':
        this.subscribe(msg.lines).then(
          () => this.send({ type: 'subscriptions', lines: this.lines() }),
          (err: unknown) => this.enqueueError(undefined, errorBody(err)),
        );
        return;
      case 'unsubscribe':
        for (const line of msg.lines) this.unsubscribe(line);
        this.send({ type: 'subscriptions', lines: this.lines() });
        return;
    }
  }

  // ---------------------------------------------------------------- frames

  private run(frame: Frame): void {
    this.inFlight++;
    void this.process(frame).finally(() => {
      this.inFlight--;
      this.pump();
    });
  }

  private pump(): void {
    while (!this.closed && this.inFlight < this.deps.limits.max_in_flight && this.pending.length > 0) {
      this.run(this.pending.shift()!);
    }
  }

  private drop(frame: Frame): void {
    const { metrics, limits } = this.deps;
    this.counters.dropped++;
    metrics.streamFrames.inc({ outcome: 'dropped' });
    metrics.rejected.inc({ reason: 'stream_dropped' });
    this.deps.lines?.dropped(frame.line, frame.camera, 'stream_dropped');
    this.send({ type: 'dropped', id: frame.id, reason: 'backpressure', policy: limits.drop_policy, dropped_total: this.counters.dropped });
  }

  private async process(frame: Frame): Promise<void> {
    const { metrics } = this.deps;
    const { header } = frame;
    const { line, camera } = frame;
    this.deps.onLine?.(line);
    try {
      if (performance.now() >= frame.deadline) {
        metrics.rejected.inc({ reason: 'deadline_exceeded' });
        throw new Errors.DEADLINE_EXCEEDED('while the frame waited for a pipeline slot');
      }
      const requestId = randomUUID();
      // Logged like /v1/detect's results so that `logs analyze` counts stream verdicts and labels too.
      const { result } = await inspect(this.deps, {
        source: 'stream',
        requestId,
        line,
        camera,
        image: frame.image,
        options: {
          model: header.model,
          conf: header.conf,
          iou: header.iou,
          max_det: header.max_det,
          agnostic: header.agnostic,
          priority: header.priority,
          tiling: header.tiling,
          top_k: header.top_k,
          masks: header.masks,
          source_width: header.source_width,
          source_height: header.source_height,
        },
        deadline: frame.deadline,
        logger: this.log.child({ request_id: requestId }),
        logFields: { frame_id: frame.id },
      });
      this.counters.processed++;
      metrics.streamFrames.inc({ outcome: 'processed' });
      this.send({ type: 'result', id: frame.id, result });
    } catch (err) {
      const body = errorBody(err);
      this.deps.lines?.dropped(line, camera, body.code.toLowerCase());
      if (body.code === 'INTERNAL_ERROR') this.log.error({ event: 'frame_failure', frame_id: frame.id, line, err }, 'stream frame failed');
      else this.log.info({ event: 'frame_failure', frame_id: frame.id, line, error_code: body.code, error_message: body.message }, 'stream frame failed');
      this.frameFailed(frame.id, body);
    }
  }

  private frameFailed(id: string | undefined, error: ErrorBody): void {
    this.counters.failed++;
    this.deps.metrics.streamFrames.inc({ outcome: 'failed' });
    this.send(id === undefined ? { type: 'error', error } : { type: 'error', id, error });
  }

  private messageFailed(message: string): void {
    this.send({ type: 'error', error: errorBody(new Errors.INVALID_MESSAGE(message)) });
  }

  private enqueueError(id: string | undefined, error: ErrorBody): void {
    this.send(id === undefined ? { type: 'error', error } : { type: 'error', id, error });
  }

  // ---------------------------------------------------------------- subscriptions

  private lines(): string[] {
    return [...this.subscriptions.keys()].sort();
  }

  /** Subscribes to every line not yet subscribed; all or nothing against the limit. */
  private async subscribe(lines: readonly string[]): Promise<void> {
    const fresh = [...new Set(lines)].filter((l) => !this.subscriptions.has(l));
    const max = this.deps.limits.max_subscriptions;
    if (this.subscriptions.size + fresh.length > max) {
      throw new Errors.INVALID_MESSAGE(
        `subscribing to ${fresh.length} more line(s) would make ${this.subscriptions.size + fresh.length}, more than the limit of ${max}`,
      );
    }
    const failures: string[] = [];
    await Promise.all(
      fresh.map((line) => {
        const subscribed = this.deps.events
          .subscribe(line, (event) => this.onEvent(line, event))
          .then(
            (unsubscribe) => {
              // Closed or unsubscribed while the subscription was being set up.
              if (this.closed || this.subscriptions.get(line) !== subscribed) {
                void unsubscribe().catch(() => undefined);
                return undefined;
              }
              return unsubscribe;
            },
            (err: Error) => {
              if (this.subscriptions.get(line) === subscribed) this.subscriptions.delete(line);
              failures.push(`${line}: ${err.message}`);
              return undefined;
            },
          );
        this.subscriptions.set(line, subscribed);
        return subscribed;
      }),
    );
    if (failures.length > 0) {
      this.log.warn({ event: 'stream_subscribe_failed', failures }, 'could not subscribe');
      throw Object.assign(new Error(`could not subscribe: ${failures.join('; ')}`), { code: 'INTERNAL_ERROR' });
    }
  }

  private unsubscribe(line: string): void {
    const subscribed = this.subscriptions.get(line);
    if (!subscribed) return;
    this.subscriptions.delete(line);
    void subscribed.then((unsubscribe) => unsubscribe?.()).catch(() => undefined);
  }

  private onEvent(line: string, event: SightlineEvent): void {
    if (this.closing || this.closed) return;
    // A connection on "*" and on the event's line would otherwise get it twice.
    if (line !== ALL_LINES && this.subscriptions.has(ALL_LINES)) return;
    const { metrics } = this.deps;
    if (this.ws.bufferedAmount > SOFT_BUFFERED_BYTES) {
      this.counters.events_skipped++;
      metrics.streamEvents.inc({ outcome: 'skipped' });
      return;
    }
    metrics.streamEvents.inc({ outcome: 'sent' });
    this.send({ type: 'event', event });
  }

  // ---------------------------------------------------------------- output

  private sendStatus(): void {
    if (this.closing || this.closed || this.outbox) return;
    // Status is optional: a client that does not read gets none rather than a growing buffer.
    if (this.ws.bufferedAmount > SOFT_BUFFERED_BYTES) return;
    const status: StreamStatus = {
      type: 'status',
      at: new Date().toISOString(),
      ...this.deps.figures(),
      connection: { ...this.counters, in_flight: this.inFlight, pending: this.pending.length },
    };
    this.send(status);
  }

  /** Current counters of this connection (tests, admin). */
  stats(): StreamStatus['connection'] {
    return { ...this.counters, in_flight: this.inFlight, pending: this.pending.length };
  }

  private send(message: ServerMessage): void {
    if (this.closing || this.closed) return;
    const text = JSON.stringify(message);
    if (this.outbox) this.outbox.push(text);
    else this.sendRaw(text);
  }

  private sendRaw(text: string): void {
    if (this.closing || this.closed || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(text);
    if (this.ws.bufferedAmount > HARD_BUFFERED_BYTES) {
      this.log.warn({ event: 'connection_slow_reader', buffered_bytes: this.ws.bufferedAmount }, 'stream client is not reading: closing');
      this.close(CLOSE_CODES.POLICY_VIOLATION, 'client is not reading its messages', 'slow_reader');
    }
  }

  // ---------------------------------------------------------------- close

  private onClose(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.killTimer);
    const abandoned = this.pending.length;
    for (const frame of this.pending) this.deps.lines?.dropped(frame.line, frame.camera, 'abandoned');
    this.pending.length = 0;
    if (abandoned > 0) this.deps.metrics.streamFrames.inc({ outcome: 'abandoned' }, abandoned);
    for (const line of [...this.subscriptions.keys()]) this.unsubscribe(line);
    const why = this.closeReason ?? (code === 1006 ? 'connection_lost' : 'client_closed');
    this.log.info(
      {
        event: 'connection_close',
        transport: 'websocket',
        remote_address: this.init.remoteAddress,
        client_kind: this.clientKind,
        reason: why,
        code,
        close_reason: reason || undefined,
        duration_ms: Date.now() - this.openedAt,
        ...this.counters,
        in_flight: this.inFlight,
        abandoned,
      },
      `stream connection closed (${why})`,
    );
    this.deps.onClosed(this);
    this.resolveClosed();
  }
}
