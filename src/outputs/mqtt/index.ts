import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { SightlineEvent } from '../../protocol/events.js';
import type { OutputContext } from '../context.js';
import { splitList } from '../filter.js';
import type { Outbox } from '../outbox.js';
import { OutboxWriter } from '../outbox-writer.js';
import type { Output, OutputHealth } from '../output.js';
import { MqttConnection } from './connection.js';
import { OutboxDrain } from './drain.js';
import type { ModeDeps, MqttMode, OutputFigures } from './mode.js';
import { clientOptions } from './options.js';
import { PlainMode } from './plain.js';
import { SparkplugMode } from './sparkplug.js';
import { packageVersion } from './status.js';

export { topics } from './plain.js';
export { sparkplugTopic, REBIRTH } from './sparkplug.js';

const NAME = 'mqtt';
/** The depth gauge is refreshed at most this often (a count over the outbox table). */
const DEPTH_REFRESH_MS = 200;
/** On close, the outbox gets this long (within shutdown_timeout_ms) to empty while the broker is there. */
const CLOSE_DRAIN_MS = 3000;

/**
 * The MQTT output: results through a durable outbox, published in order and
 * acknowledged one by one; camera states, status and availability retained
 * (or Sparkplug B births and data). A broker that is away never reaches a
 * detection: `handle` only queues a write to the outbox.
 */
export class MqttOutput implements Output {
  readonly name = NAME;
  readonly scope = 'local' as const;
  readonly outbox: Outbox;
  readonly #ctx: OutputContext;
  readonly #logger: Logger;
  readonly #writer: OutboxWriter;
  readonly #lineFilter: ReadonlySet<string>;
  readonly #startedAt = new Date();
  #conn: MqttConnection | undefined;
  #mode: MqttMode | undefined;
  #drain: OutboxDrain | undefined;
  #ready = false;
  #readyWaiters: (() => void)[] = [];
  #statusTimer: NodeJS.Timeout | undefined;
  #depth = 0;
  #depthTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;

  constructor(ctx: OutputContext) {
    this.#ctx = ctx;
    this.#logger = ctx.logger.child({ output: NAME });
    this.outbox = ctx.outbox(NAME, ctx.config.mqtt_outbox_max);
    // In memory while the database is slow, as many as the outbox holds.
    this.#writer = new OutboxWriter(this.outbox, {
      metrics: ctx.metrics,
      logger: this.#logger,
      max: ctx.config.mqtt_outbox_max,
      onWritten: () => {
        this.#drain?.poke();
        this.#refreshDepth();
      },
    });
    this.#lineFilter = new Set(splitList(ctx.config.mqtt_lines));
  }

  /** The connection's Sparkplug bdSeq (-1 in JSON mode), for tests. */
  get bdSeq(): number {
    return this.#mode instanceof SparkplugMode ? this.#mode.bdSeq : -1;
  }

  async start(): Promise<void> {
    const { config } = this.#ctx;
    const options = clientOptions(config, this.#ctx.instance);
    const mode = (): MqttMode => this.#mode as MqttMode;
    const conn = new MqttConnection(config.mqtt_url, options, { will: () => mode().will(), logger: this.#logger });
    const deps: ModeDeps = {
      lines: () => this.#lines(),
      figures: () => this.#figures(),
      instance: this.#ctx.instance,
      version: packageVersion(),
      startedAt: this.#startedAt,
    };
    const qos = config.mqtt_qos as 0 | 1 | 2;
    this.#mode = config.mqtt_sparkplug
      ? new SparkplugMode(conn, { ...deps, group: config.sparkplug_group_id, node: config.sparkplug_node_id || hostname(), qos, logger: this.#logger })
      : new PlainMode(conn, { ...deps, prefix: config.mqtt_topic_prefix, qos, retain: config.mqtt_retain, logger: this.#logger });
    conn.on('up', () => this.#onUp());
    conn.on('down', () => {
      this.#ready = false;
    });
    conn.on('message', (topic, payload) => this.#mode?.message(topic, payload));
    this.#conn = conn;
    this.#drain = new OutboxDrain({
      outbox: this.outbox,
      metrics: this.#ctx.metrics,
      logger: this.#logger,
      send: (payload) => mode().result(payload),
      ready: () => this.#whenReady(),
      isReady: () => this.#ready,
      onChange: () => this.#refreshDepth(),
    });
    // Connecting goes on in the background: start() does not wait for a broker.
    conn.open();
    this.#drain.start();
    this.#statusTimer = setInterval(() => {
      if (this.#ready) this.#mode?.status();
    }, config.mqtt_status_interval_ms);
    this.#statusTimer.unref();
    this.#refreshDepth();
  }

  async #onUp(): Promise<void> {
    try {
      await this.#mode?.connected();
    } catch (err) {
      // Cut off again while announcing itself: the next connection does it all again.
      this.#logger.debug({ event: 'mqtt_connect_setup_failed', err }, 'MQTT output: connection lost while announcing');
      return;
    }
    if (!this.#conn?.connected) return;
    this.#ready = true;
    for (const wake of this.#readyWaiters.splice(0)) wake();
  }

  #whenReady(): Promise<void> {
    if (this.#ready || this.#closing) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  handle(event: SightlineEvent): void {
    if (this.#closing) return;
    try {
      if (event.type === 'result') this.#writer.push(event.result.request_id, JSON.stringify(event));
      else if (event.type === 'camera') this.#mode?.camera(event);
    } catch (err) {
      this.#logger.error({ event: 'output_handler_failed', err }, 'MQTT output could not take an event');
    }
  }

  health(): OutputHealth {
    if (!this.#conn) return { connected: false, detail: 'not started' };
    return { connected: this.#conn.connected, detail: this.#conn.detail() };
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    clearInterval(this.#statusTimer);
    await this.#writer.close();
    // What the broker can take now goes; the rest waits in the outbox for the next start.
    if (this.#ready && this.#drain) await this.#drain.idle(Math.min(CLOSE_DRAIN_MS, this.#ctx.config.shutdown_timeout_ms));
    for (const wake of this.#readyWaiters.splice(0)) wake();
    await this.#drain?.stop();
    if (this.#conn?.connected) await this.#mode?.closing().catch(() => undefined);
    await this.#conn?.close();
    clearTimeout(this.#depthTimer);
  }

  /** Lines this output publishes (mqtt_lines), from GET /v1/lines. */
  async #lines() {
    const { lines } = await this.#ctx.lines();
    return this.#lineFilter.size === 0 ? lines : lines.filter((l) => this.#lineFilter.has(l.line));
  }

  async #figures(): Promise<OutputFigures> {
    const dropped = await this.#ctx.metrics.dropped.get().then(
      (m) => m.values.filter((v) => v.labels.output === NAME).reduce((sum, v) => sum + v.value, 0),
      () => 0,
    );
    return {
      outboxDepth: this.#depth,
      outboxMax: this.#ctx.config.mqtt_outbox_max,
      sent: this.#drain?.sent ?? 0,
      failed: this.#drain?.failed ?? 0,
      dropped,
    };
  }

  /** Refreshes sightline_output_outbox_depth soon (coalesced: one count per DEPTH_REFRESH_MS at most). */
  #refreshDepth(): void {
    if (this.#depthTimer) return;
    this.#depthTimer = setTimeout(() => {
      this.outbox
        .depth()
        .then((depth) => {
          this.#depth = depth;
          this.#ctx.metrics.outboxDepth.set({ output: NAME }, depth);
        })
        .catch(() => undefined)
        .finally(() => {
          this.#depthTimer = undefined;
        });
    }, DEPTH_REFRESH_MS);
    this.#depthTimer.unref();
  }
}

export function createMqttOutput(ctx: OutputContext): Output {
  return new MqttOutput(ctx);
}
