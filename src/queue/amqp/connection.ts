import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type ChannelModel, type ConfirmChannel, type Options } from 'amqplib';
import { asError, queueClosed, queueFull, queueUnavailable } from '../errors.js';

export interface ConnectionOptions {
  url: string;
  /** Shown by `rabbitmqctl list_connections client_properties` and the management UI. */
  connectionName: string;
  /** First reconnect delay; doubles per failed try up to reconnectMaxMs (with ±20 % jitter). */
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  /** TCP connect timeout per try. */
  connectTimeoutMs: number;
  /** How long a publish may wait for its confirm before it counts as failed. */
  publishTimeoutMs: number;
  /** Declares the topology on every (re)connect, before the connection counts as open. */
  setup: (ch: ConfirmChannel) => Promise<void>;
}

interface ConnectionEvents {
  /** Connected (again); consumers subscribe on this model. */
  open: [model: ChannelModel];
  lost: [err: Error | undefined];
  error: [err: Error];
}

/**
 * One broker connection that comes back by itself. While it is down, publish()
 * fails at once with QUEUE_UNAVAILABLE (callers answer 503 rather than hang);
 * a loop reconnects with exponential backoff and emits `open` each time, so
 * consumers can subscribe again.
 */
export class AmqpConnection extends EventEmitter<ConnectionEvents> {
  private model: ChannelModel | undefined;
  private publisher: ConfirmChannel | undefined;
  private loop: Promise<void> | undefined;
  private firstTry: Promise<void> | undefined;
  private blocked = false;
  private closed = false;
  private lastError: Error | undefined;
  private readonly closeSignal = new AbortController();
  /** Message ids the broker returned as unroutable (basic.return arrives before the confirm). */
  private readonly returned = new Set<string>();

  constructor(private readonly o: ConnectionOptions) {
    super();
  }

  get isOpen(): boolean {
    return this.model !== undefined && !this.closed;
  }

  get isBlocked(): boolean {
    return this.blocked;
  }

  /** The open connection, for consumers' channels. */
  get current(): ChannelModel | undefined {
    return this.model;
  }

  /** Starts connecting if not yet started; resolves after the first try, whether it succeeded or not. */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(queueClosed());
    if (!this.firstTry) {
      let settle!: () => void;
      this.firstTry = new Promise((resolve) => (settle = resolve));
      this.loop = this.run(false, settle);
    }
    return this.firstTry;
  }

  /** Resolves once open; rejects with QUEUE_UNAVAILABLE after timeoutMs (the loop goes on trying). */
  async ready(timeoutMs: number): Promise<void> {
    await this.start();
    if (this.isOpen) return;
    if (this.closed) throw queueClosed();
    await new Promise<void>((resolve, reject) => {
      const onOpen = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.off('open', onOpen);
        reject(queueUnavailable(`cannot reach the broker (${this.lastError?.message ?? 'no answer'})`, this.lastError));
      }, timeoutMs);
      this.once('open', onOpen);
    });
  }

  /**
   * Publishes on the confirm channel and resolves when the broker confirms it.
   * A NACK means the target queue is full (our queues' only reject-publish cause).
   */
  async publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void> {
    if (this.closed) throw queueClosed();
    const ch = this.publisher;
    if (!ch) throw queueUnavailable(`not connected to the broker (${this.lastError?.message ?? 'connecting'})`, this.lastError);
    if (this.blocked) throw queueUnavailable('the broker is blocking publishers (resource alarm)');
    const id = options.messageId ?? '';
    await new Promise<void>((resolve, reject) => {
      // Sent but never confirmed: the broker may hold the message or not.
      const unknown = (err: Error) => Object.assign(err, { outcomeUnknown: true });
      const timer = setTimeout(() => reject(unknown(queueUnavailable(`no publisher confirm within ${this.o.publishTimeoutMs} ms`))), this.o.publishTimeoutMs);
      const done = (err: unknown) => {
        clearTimeout(timer);
        const unroutable = this.returned.delete(id);
        if (err) {
          const message = asError(err).message;
          reject(message === 'message nacked' ? queueFull() : unknown(queueUnavailable(`publish failed: ${message}`, err)));
        } else if (unroutable) reject(queueUnavailable(`no queue is bound for ${exchange}/${routingKey}`));
        else resolve();
      };
      try {
        ch.publish(exchange, routingKey, content, options, done);
      } catch (err) {
        clearTimeout(timer);
        this.returned.delete(id);
        reject(queueUnavailable(`publish failed: ${asError(err).message}`, err)); // the channel closed under us: nothing sent
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closeSignal.abort();
    const model = this.model;
    this.model = undefined;
    this.publisher = undefined;
    await model?.close().catch(() => {});
    await this.loop?.catch(() => {});
  }

  /** Tries until connected (or closed). `delayFirst`: after a loss, wait before the first try. */
  private async run(delayFirst: boolean, afterFirstTry?: () => void): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      if (attempt > 0 || delayFirst) {
        const base = Math.min(this.o.reconnectMaxMs, this.o.reconnectBaseMs * 2 ** Math.max(0, attempt - (delayFirst ? 0 : 1)));
        try {
          // Referenced: a worker waiting for its broker must stay alive. close() aborts it.
          await sleep(base * (0.8 + Math.random() * 0.4), undefined, { signal: this.closeSignal.signal });
        } catch {
          return;
        }
      }
      try {
        await this.connectOnce();
        afterFirstTry?.();
        return;
      } catch (err) {
        this.lastError = asError(err);
        this.report(this.lastError);
        afterFirstTry?.();
        afterFirstTry = undefined;
      }
    }
    afterFirstTry?.();
  }

  private async connectOnce(): Promise<void> {
    const model = await connect(this.o.url, { clientProperties: { connection_name: this.o.connectionName }, timeout: this.o.connectTimeoutMs });
    try {
      model.on('error', (err: Error) => this.report(err)); // 'close' follows
      model.on('close', (err?: Error) => this.onLost(model, err));
      model.on('blocked', () => (this.blocked = true));
      model.on('unblocked', () => (this.blocked = false));
      const ch = await model.createConfirmChannel();
      ch.on('error', (err: Error) => this.report(err));
      // A channel error (e.g. a queue deleted under us) closes only the channel: start over on a fresh connection.
      ch.on('close', () => {
        if (this.publisher === ch) void model.close().catch(() => {});
      });
      ch.on('return', (msg: { properties: { messageId?: string } }) => {
        if (msg.properties.messageId) this.returned.add(msg.properties.messageId);
      });
      await this.o.setup(ch);
      if (this.closed) throw queueClosed();
      this.model = model;
      this.publisher = ch;
      this.blocked = false;
      this.lastError = undefined;
      this.emit('open', model);
    } catch (err) {
      await model.close().catch(() => {});
      throw err;
    }
  }

  private onLost(model: ChannelModel, err: Error | undefined): void {
    if (this.model !== model || this.closed) return;
    this.model = undefined;
    this.publisher = undefined;
    this.returned.clear();
    this.lastError = err ?? new Error('connection closed');
    this.emit('lost', err);
    this.loop = this.run(true);
  }

  private report(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
