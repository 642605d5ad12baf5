import { EventEmitter } from 'node:events';
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';

/** Reconnect delays: doubling from the first to the last, with jitter so that a fleet does not reconnect in step. */
export const RECONNECT_MIN_MS = 500;
export const RECONNECT_MAX_MS = 5000;
const CLOSE_TIMEOUT_MS = 2000;

/** A publish that could not complete because the connection went away: the message is sent again, no attempt counted. */
export class ConnectionLost extends Error {
  constructor(message = 'the connection to the broker was lost') {
    super(message);
    this.name = 'ConnectionLost';
  }
}

export type Will = NonNullable<IClientOptions['will']>;

interface ConnectionEvents {
  /** Connected (CONNACK received); what is sent now goes out after the will was set. */
  up: [];
  down: [];
  message: [topic: string, payload: Buffer];
}

/** The broker URL without its credentials, for logs and /readyz. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.href;
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//');
  }
}

/**
 * One mqtt.js client kept connected: reconnects with a growing delay, takes a
 * fresh will before every CONNECT (Sparkplug's bdSeq changes per connection)
 * and fails the publishes in flight when the connection drops, so that the
 * caller (the outbox drain) sends them again itself, in order, rather than
 * mqtt.js replaying them behind its back after the births of the new session.
 */
export class MqttConnection extends EventEmitter<ConnectionEvents> {
  readonly #url: string;
  readonly #options: IClientOptions;
  readonly #will: () => Will | undefined;
  readonly #logger: Logger;
  #client: MqttClient | undefined;
  #timer: NodeJS.Timeout | undefined;
  #delay = RECONNECT_MIN_MS;
  #closing = false;
  #up = false;
  #lastError: string | undefined;
  #everConnected = false;
  #downLogged = false;

  constructor(url: string, options: IClientOptions, deps: { will: () => Will | undefined; logger: Logger }) {
    super();
    this.#url = url;
    this.#options = options;
    this.#will = deps.will;
    this.#logger = deps.logger;
  }

  get connected(): boolean {
    return this.#up;
  }

  get clientId(): string {
    return String(this.#options.clientId);
  }

  /** Connected to what, or why not, in one line. */
  detail(): string {
    const where = redactUrl(this.#url);
    if (this.#up) return `connected to ${where} as ${this.clientId}`;
    if (this.#closing) return `closed (${where})`;
    return `not connected to ${where}${this.#lastError ? `: ${this.#lastError}` : this.#everConnected ? '' : ' yet'}`;
  }

  /** Starts connecting; never throws for a broker that is away (it keeps trying). */
  open(): void {
    const will = this.#will();
    // No reconnectPeriod: mqtt.js retries at a fixed period; the delay here grows instead.
    const client = mqtt.connect(this.#url, { ...this.#options, ...(will ? { will } : {}), reconnectPeriod: 0, resubscribe: false, clean: true });
    this.#client = client;
    client.on('connect', () => {
      this.#up = true;
      this.#everConnected = true;
      this.#delay = RECONNECT_MIN_MS;
      this.#lastError = undefined;
      this.#downLogged = false;
      this.#logger.info(
        { event: 'mqtt_connected', broker: redactUrl(this.#url), client_id: this.clientId },
        `MQTT output connected to ${redactUrl(this.#url)}`,
      );
      this.emit('up');
    });
    client.on('error', (err) => {
      this.#lastError = err.message;
    });
    client.on('message', (topic, payload) => this.emit('message', topic, payload));
    client.on('close', () => this.#onClose(client));
  }

  #onClose(client: MqttClient): void {
    const wasUp = this.#up;
    this.#up = false;
    // Publishes in flight fail now (mqtt.js would otherwise keep them and replay them after the reconnect).
    for (const id of Object.keys(client.outgoing)) client.removeOutgoingMessage(Number(id));
    if (wasUp) this.emit('down');
    if (this.#closing) return;
    if (!this.#downLogged) {
      this.#downLogged = true;
      this.#logger.warn(
        { event: 'mqtt_disconnected', broker: redactUrl(this.#url), reason: this.#lastError },
        `MQTT output: ${this.detail()}; retrying (messages wait in the outbox)`,
      );
    }
    const jittered = this.#delay * (0.8 + Math.random() * 0.4);
    this.#delay = Math.min(RECONNECT_MAX_MS, this.#delay * 2);
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (this.#closing) return;
      const will = this.#will();
      if (will) client.options.will = will;
      client.reconnect();
    }, jittered);
    this.#timer.unref();
  }

  /** Publishes and resolves when the broker has it (QoS 1/2: its acknowledgement; QoS 0: written). Rejects with ConnectionLost when not connected or cut off. */
  publish(topic: string, payload: string | Buffer, options: IClientPublishOptions): Promise<void> {
    const client = this.#client;
    if (!client || !this.#up) return Promise.reject(new ConnectionLost('not connected to the broker'));
    return new Promise((resolve, reject) => {
      client.publish(topic, payload, options, (err) => {
        if (!err) resolve();
        else if (!this.#up || err.message === 'Message removed' || err.message === 'Connection closed') reject(new ConnectionLost());
        else reject(err);
      });
    });
  }

  /** Publishes what need not be confirmed (states, births); a failure is only logged at debug level (it is sent again on the next connect). */
  publishQuietly(topic: string, payload: string | Buffer, options: IClientPublishOptions): void {
    this.publish(topic, payload, options).catch((err: unknown) => this.#logger.debug({ event: 'mqtt_publish_failed', topic, err }, 'MQTT publish failed'));
  }

  subscribe(topic: string): Promise<void> {
    const client = this.#client;
    if (!client || !this.#up) return Promise.reject(new ConnectionLost('not connected to the broker'));
    return client.subscribeAsync(topic, { qos: 0 }).then(() => undefined);
  }

  /** Disconnects cleanly (no will) when connected, at once otherwise; idempotent. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    if (!client) return;
    // A broker that stops answering must not hold the shutdown: a clean DISCONNECT gets a moment, then the socket goes.
    const clean = this.#up ? client.endAsync(false).catch(() => undefined) : Promise.resolve();
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), CLOSE_TIMEOUT_MS).unref());
    if ((await Promise.race([clean, timeout])) === 'timeout' || !this.#up) await client.endAsync(true).catch(() => undefined);
  }
}
