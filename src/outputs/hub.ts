import type { Logger } from 'pino';
import { ALL_LINES, type EventBus, type EventHandler, type SightlineEvent } from '../events/index.js';
import type { Dependency } from '../health/dependency-monitor.js';
import { passes, type EventFilter } from './filter.js';
import type { OutputMetrics } from './metrics.js';
import type { Output } from './output.js';

export interface ConfiguredOutput {
  output: Output;
  filter: EventFilter;
}

/**
 * The factory outputs of a process: hands each the events it takes (its scope,
 * then its filter), keeps `sightline_output_connected` and
 * `sightline_output_outbox_depth` current (every second), and reports
 * each as a non-critical dependency in /readyz (results are stored whatever an
 * output's peer does, so an output never makes the server unready).
 */
export class OutputHub {
  readonly #outputs: ConfiguredOutput[];
  readonly #logger: Logger;
  readonly #metrics: OutputMetrics;
  #unsubscribe: (() => Promise<void>) | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Events waiting for the next turn of the event loop, in publish order. */
  readonly #pending: { scope: Output['scope']; event: SightlineEvent }[] = [];
  #flushScheduled = false;

  constructor(outputs: ConfiguredOutput[], deps: { logger: Logger; metrics: OutputMetrics }) {
    this.#outputs = outputs;
    this.#logger = deps.logger;
    this.#metrics = deps.metrics;
  }

  get outputs(): readonly Output[] {
    return this.#outputs.map((o) => o.output);
  }

  get(name: string): Output | undefined {
    return this.#outputs.find((o) => o.output.name === name)?.output;
  }

  /**
   * Queues `event` for the outputs of `scope`. They get it on the next turn of the
   * event loop (setImmediate), in order: publish is called on the request path,
   * and an output's own work (an OPC UA address space updating two dozen nodes, an
   * outbox write) must come after the answer is sent, not before.
   */
  #enqueue(scope: Output['scope'], event: SightlineEvent): void {
    this.#pending.push({ scope, event });
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      for (const { scope: s, event: e } of this.#pending.splice(0)) this.#dispatch(s, e);
    });
  }

  /** Hands `event` to the outputs of `scope` whose filter it passes; an output that throws is logged, never the publisher's problem. */
  #dispatch(scope: Output['scope'], event: SightlineEvent): void {
    for (const { output, filter } of this.#outputs) {
      if (output.scope !== scope || !passes(filter, event)) continue;
      try {
        output.handle(event);
      } catch (err) {
        this.#logger.error({ event: 'output_handler_failed', output: output.name, err }, `${output.name} output threw on an event`);
      }
    }
  }

  /** The bus this process publishes on, with its own events also going to the `local` outputs. */
  wrap(bus: EventBus): EventBus {
    if (!this.#outputs.some((o) => o.output.scope === 'local')) return bus;
    const dispatch = (event: SightlineEvent) => this.#enqueue('local', event);
    return {
      publish(event: SightlineEvent): void {
        bus.publish(event);
        dispatch(event);
      },
      subscribe: (line: string, handler: EventHandler) => bus.subscribe(line, handler),
      get connected() {
        return bus.connected;
      },
      close: () => bus.close(),
    };
  }

  /** Starts every output (a failure to start is thrown: a port in use must stop the process) and subscribes the `bus` ones. */
  async start(bus: EventBus): Promise<void> {
    for (const { output } of this.#outputs) {
      await output.start();
      this.#logger.info({ event: 'output_started', output: output.name, scope: output.scope }, `${output.name} output started`);
    }
    if (this.#outputs.some((o) => o.output.scope === 'bus')) {
      this.#unsubscribe = await bus.subscribe(ALL_LINES, (event) => this.#enqueue('bus', event));
    }
    let reading = false;
    const sample = () => {
      for (const { output } of this.#outputs) this.#metrics.connected.set({ output: output.name }, output.health().connected ? 1 : 0);
      // Outbox depths are read from the database, one reading at a time: they include other replicas' messages.
      if (reading) return;
      reading = true;
      void Promise.all(
        this.#outputs.map(async ({ output }) => {
          if (output.outbox) this.#metrics.outboxDepth.set({ output: output.name }, await output.outbox.depth());
        }),
      )
        .catch(() => undefined) // the store is away: the gauge keeps its last value, /readyz says why
        .finally(() => {
          reading = false;
        });
    };
    sample();
    this.#timer = setInterval(sample, 1000);
    this.#timer.unref();
  }

  /** One non-critical /readyz check per output: `output:<name>`. */
  dependencies(): Dependency[] {
    return this.#outputs.map(({ output }) => ({
      name: `output:${output.name}`,
      critical: false,
      probe: async () => {
        const health = output.health();
        if (!health.connected) throw new Error(health.detail);
        return health.detail;
      },
    }));
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    // Events published just before the close still reach their outputs (and so their outboxes).
    for (const { scope, event } of this.#pending.splice(0)) this.#dispatch(scope, event);
    await this.#unsubscribe?.().catch(() => undefined);
    await Promise.all(
      this.#outputs.map(({ output }) =>
        output
          .close()
          .catch((err: unknown) =>
            this.#logger.warn({ event: 'output_close_failed', output: output.name, err }, `${output.name} output did not close cleanly`),
          ),
      ),
    );
  }
}
