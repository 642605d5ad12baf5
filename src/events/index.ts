import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { queueUrl } from '../jobs/queue-from-config.js';
import type { ResultSource } from '../store/index.js';
import type { DetectionResult, EventBus, ResultEvent } from './event-bus.js';
import { AmqpEventBus } from './amqp-bus.js';
import { InProcessEventBus } from './in-process-bus.js';

export * from './event-bus.js';
export { InProcessEventBus } from './in-process-bus.js';
export { AmqpEventBus, bindingPattern, eventRoutingKey, type AmqpEventBusOptions } from './amqp-bus.js';

/** The bus events_url names; empty follows the queue: its broker when queue_url is amqp, else this process. */
export function eventsUrl(config: Config): string {
  if (config.events_url !== '') return config.events_url;
  const queue = queueUrl(config);
  return /^amqps?:\/\//.test(queue) ? queue : 'memory:';
}

export async function eventBusFromConfig(config: Config, logger: Logger): Promise<EventBus> {
  const url = eventsUrl(config);
  const onHandlerError = (err: unknown) => logger.error({ event: 'event_handler_failed', err }, 'an event subscriber threw');
  if (url === 'memory:') return new InProcessEventBus(onHandlerError);
  const bus = new AmqpEventBus({ url, prefix: config.queue_prefix, onHandlerError });
  // A broker outage is logged once per outage, never fatal: the bus reconnects and re-binds by itself.
  let warned = false;
  let droppedAtLoss = 0;
  bus.on('error', (err) => {
    if (warned) return logger.debug({ event: 'event_bus_error', err }, `event bus: ${err.message}`);
    warned = true;
    logger.warn({ event: 'event_bus_error', err }, `event bus: ${err.message} (live events are dropped until it reconnects)`);
  });
  bus.on('lost', () => {
    warned = true;
    droppedAtLoss = bus.dropped;
    logger.warn({ event: 'event_bus_disconnected', exchange: bus.exchange }, 'event bus: lost the broker, reconnecting');
  });
  bus.on('open', () => {
    if (warned) logger.info({ event: 'event_bus_connected', exchange: bus.exchange, dropped: bus.dropped - droppedAtLoss }, 'event bus: connected');
    warned = false;
  });
  // The first try only: a broker that is down delays nothing, events flow once it is reachable.
  await bus.start();
  return bus;
}

export function resultEvent(source: ResultSource, result: DetectionResult): ResultEvent {
  return { type: 'result', line: result.line, source, at: new Date().toISOString(), result };
}
