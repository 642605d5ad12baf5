import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { eventsUrl } from '../config/locations.js';
import type { EventBus } from './event-bus.js';
import { AmqpEventBus } from './amqp-bus.js';
import { InProcessEventBus } from './in-process-bus.js';

/** The event bus events_url names (see eventsUrl), with its outages logged. */
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
