import { EventEmitter } from 'node:events';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { AmqpConnection } from '../queue/amqp/connection.js';
import { ALL_LINES, type EventBus, type EventHandler, type SightlineEvent } from './event-bus.js';
import { dispatchEvent } from './dispatch.js';

export interface AmqpEventBusOptions {
  url: string;
  /** Names the exchange `<prefix>.events`; every replica of one deployment uses the same prefix. */
  prefix: string;
  connectionName?: string;
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  connectTimeoutMs?: number;
  /** Events waiting in this bus's broker queue before the oldest are dropped (a subscriber that cannot keep up). */
  maxQueued?: number;
  /** Age after which an undelivered event is dropped by the broker: events are live, a stale one is noise. */
  eventTtlMs?: number;
  onHandlerError?: (err: unknown) => void;
}

interface AmqpEventBusEvents {
  /** Connected (again), with the queue declared and every subscription bound. */
  open: [];
  lost: [err: Error | undefined];
  error: [err: Error];
}

/** Routing key of an event; the type has no dots, so a binding `*.<line>` matches exactly that line. */
export function eventRoutingKey(event: Pick<SightlineEvent, 'type' | 'line'>): string {
  return `${event.type}.${event.line}`;
}

/**
 * Binding pattern for a subscription. `*` is exactly one word (the type) and the
 * rest of the pattern must equal the whole remaining key, so line `a` (`*.a`)
 * does not match `result.a.b`. Deliveries are still dispatched by the event's own
 * `line` field, so even a line holding `*` or `#` can only over-fetch, never
 * misdeliver.
 */
export function bindingPattern(line: string): string {
  return line === ALL_LINES ? '#' : `*.${line}`;
}

/**
 * The event bus over a RabbitMQ topic exchange `<prefix>.events`, so API replicas
 * and workers see each other's events. Each bus has one exclusive, auto-delete,
 * server-named queue; subscriptions bind and unbind their line's pattern on it,
 * reference-counted by local handlers. Everything this process publishes comes
 * back through the broker too, so behaviour is the same in every process.
 *
 * Live only and at most once: messages are transient, consumed without acks, and
 * dropped (counted in `dropped`) while the broker is unreachable or the channel's
 * write buffer is full, rather than buffered without bound. On reconnect the
 * queue is declared anew and every active subscription is bound again before
 * `connected` turns true; subscribers keep their handlers and need do nothing.
 */
export class AmqpEventBus extends EventEmitter<AmqpEventBusEvents> implements EventBus {
  readonly exchange: string;
  /** Events publish() could not hand to the broker. */
  dropped = 0;
  /** Deliveries that were not a valid event (another producer on the exchange). */
  malformed = 0;

  private readonly conn: AmqpConnection;
  private readonly handlers = new Map<string, Set<EventHandler>>();
  /** The channel of the current connection, set once its queue exists (during setup, before `open`). */
  private channel: ConfirmChannel | undefined;
  private queue: string | undefined;
  /** Patterns bound on `channel`'s queue. */
  private bound = new Set<string>();
  /** Bind/unbind operations run one at a time, so concurrent subscribes and unsubscribes cannot interleave. */
  private syncing: Promise<void> = Promise.resolve();
  /** The channel's write buffer is full: drop until it drains rather than queue in memory. */
  private saturated = false;
  private closed = false;
  private readonly onHandlerError: (err: unknown) => void;

  constructor(private readonly o: AmqpEventBusOptions) {
    super();
    this.exchange = `${o.prefix}.events`;
    this.onHandlerError = o.onHandlerError ?? (() => undefined);
    this.conn = new AmqpConnection({
      url: o.url,
      connectionName: o.connectionName ?? `sightline-events-${process.pid}`,
      reconnectBaseMs: o.reconnectBaseMs ?? 500,
      reconnectMaxMs: o.reconnectMaxMs ?? 30_000,
      connectTimeoutMs: o.connectTimeoutMs ?? 5000,
      publishTimeoutMs: 5000, // unused: events are published without waiting for confirms
      setup: (ch) => this.setup(ch),
    });
    this.conn.on('open', () => this.emit('open'));
    this.conn.on('lost', (err) => {
      this.detach();
      this.emit('lost', err);
    });
    this.conn.on('error', (err) => {
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
  }

  get connected(): boolean {
    return this.conn.isOpen && this.channel !== undefined;
  }

  /** Starts connecting; resolves after the first try, connected or not (the bus keeps trying in the background). */
  start(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.conn.start().catch(() => undefined);
  }

  publish(event: SightlineEvent): void {
    if (this.closed) return;
    const ch = this.channel;
    if (!ch || this.saturated) {
      this.dropped++;
      return;
    }
    try {
      const body = Buffer.from(JSON.stringify(event));
      // No confirm callback: nobody waits for live events; transient, so the broker never writes them to disk.
      const ok = ch.publish(this.exchange, eventRoutingKey(event), body, { contentType: 'application/json', persistent: false });
      if (!ok) {
        this.saturated = true;
        ch.once('drain', () => {
          if (this.channel === ch) this.saturated = false;
        });
      }
    } catch {
      // The channel closed under us (or the key was too long): the loss handler reconnects.
      this.dropped++;
    }
  }

  /**
   * Registers `handler` and resolves once the line's pattern is bound. With the
   * broker unreachable it resolves at once, registered locally only: the pattern
   * is bound as part of the next reconnect, and events published meanwhile are lost.
   */
  async subscribe(line: string, handler: EventHandler): Promise<() => Promise<void>> {
    if (this.closed) return async () => undefined;
    // A distinct wrapper per call, so the same handler subscribed twice unsubscribes once per call.
    const entry: EventHandler = (event) => handler(event);
    let set = this.handlers.get(line);
    if (!set) this.handlers.set(line, (set = new Set()));
    set.add(entry);
    await this.sync();
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      const current = this.handlers.get(line);
      current?.delete(entry);
      if (current?.size === 0) this.handlers.delete(line);
      if (!this.closed) await this.sync();
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handlers.clear();
    this.detach();
    // The exclusive queue and its bindings go with the connection.
    await this.conn.close();
  }

  /** Runs on every (re)connect before the connection counts as open. */
  private async setup(ch: ConfirmChannel): Promise<void> {
    try {
      await ch.assertExchange(this.exchange, 'topic', { durable: true });
      const { queue } = await ch.assertQueue('', {
        exclusive: true,
        autoDelete: true,
        durable: false,
        arguments: { 'x-max-length': this.o.maxQueued ?? 10_000, 'x-message-ttl': this.o.eventTtlMs ?? 60_000 },
      });
      await ch.consume(queue, (msg) => this.deliver(msg), { noAck: true });
      ch.on('close', () => {
        if (this.channel === ch) this.detach();
      });
      this.channel = ch;
      this.queue = queue;
      this.bound = new Set();
      this.saturated = false;
      await this.sync();
    } catch (err) {
      if (this.channel === ch) this.detach();
      throw err;
    }
  }

  private detach(): void {
    this.channel = undefined;
    this.queue = undefined;
    this.bound = new Set();
    this.saturated = false;
  }

  /** Brings the bindings of the current queue in line with the lines that have handlers. */
  private sync(): Promise<void> {
    const run = this.syncing.then(() => this.reconcile());
    this.syncing = run.catch(() => undefined);
    return this.syncing;
  }

  private async reconcile(): Promise<void> {
    const wanted = new Set([...this.handlers.keys()].map(bindingPattern));
    for (;;) {
      const ch = this.channel;
      const queue = this.queue;
      if (!ch || !queue || this.closed) return;
      const bound = this.bound;
      const add = [...wanted].find((p) => !bound.has(p));
      const remove = add === undefined ? [...bound].find((p) => !wanted.has(p)) : undefined;
      if (add === undefined && remove === undefined) return;
      try {
        if (add !== undefined) {
          await ch.bindQueue(queue, this.exchange, add);
          bound.add(add);
        } else if (remove !== undefined) {
          await ch.unbindQueue(queue, this.exchange, remove);
          bound.delete(remove);
        }
      } catch (err) {
        // A failed (un)bind closes the channel; the connection restarts and setup binds everything afresh.
        if (this.listenerCount('error') > 0) this.emit('error', err instanceof Error ? err : new Error(String(err)));
        return;
      }
    }
  }

  private deliver(msg: ConsumeMessage | null): void {
    if (!msg) return; // consumer cancelled by the broker: the channel is going, setup runs again on reconnect
    let event: SightlineEvent;
    try {
      event = JSON.parse(msg.content.toString('utf8')) as SightlineEvent;
    } catch {
      this.malformed++;
      return;
    }
    if (typeof event !== 'object' || event === null || typeof event.line !== 'string' || typeof event.type !== 'string') {
      this.malformed++;
      return;
    }
    // Dispatch by the event's own line, never by the binding that let it in.
    dispatchEvent(this.handlers, event, this.onHandlerError);
  }
}
