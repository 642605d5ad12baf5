export * from './event-bus.js';
export { InProcessEventBus } from './in-process-bus.js';
export { AmqpEventBus, bindingPattern, eventRoutingKey, type AmqpEventBusOptions } from './amqp-bus.js';
export { eventBusFromConfig } from './from-config.js';
