import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultConfig } from '../../src/config/load.js';
import { eventBusFromConfig, InProcessEventBus } from '../../src/events/index.js';
import { eventsUrl } from '../../src/config/locations.js';
import { createLogger } from '../../src/logger.js';
import { eventBusContract, recorder, resultFor } from './event-bus.contract.js';

eventBusContract({
  name: 'in-process',
  requirement: 'nothing',
  available: async () => true,
  async create({ onHandlerError }) {
    const bus = new InProcessEventBus(onHandlerError);
    return { bus, cleanup: () => bus.close() };
  },
});

test('in-process: delivery is synchronous, within publish()', async () => {
  const bus = new InProcessEventBus();
  const got = recorder();
  await bus.subscribe('line-1', got.handler);
  const event = resultFor('line-1');
  bus.publish(event);
  assert.deepEqual(got.ids, [event.result.request_id]);
  await bus.close();
});

test('eventsUrl: memory: unless the queue is on RabbitMQ; events_url wins', async () => {
  assert.equal(eventsUrl(defaultConfig()), 'memory:');
  assert.equal(eventsUrl(defaultConfig({ queue_url: 'amqp://mq:5672' })), 'amqp://mq:5672');
  assert.equal(eventsUrl(defaultConfig({ queue_url: 'amqp://mq:5672', events_url: 'memory:' })), 'memory:');
  assert.equal(eventsUrl(defaultConfig({ events_url: 'amqp://other:5672' })), 'amqp://other:5672');
  const bus = await eventBusFromConfig(defaultConfig(), createLogger('silent'));
  assert.ok(bus instanceof InProcessEventBus);
  await bus.close();
});
