import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { connect } from 'amqplib';
import { ALL_LINES, AmqpEventBus, bindingPattern, eventBusFromConfig, eventRoutingKey, type AmqpEventBusOptions } from '../../src/events/index.js';
import { defaultConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { deferred, probeTcp, TcpProxy, waitFor } from '../queue/helpers.js';
import { eventBusContract, idOf, published, recorder, resultFor } from './event-bus.contract.js';

const HOST = '127.0.0.1';
const PORT = 5672;
const URL = process.env.SIGHTLINE_TEST_AMQP_URL ?? `amqp://guest:guest@${HOST}:${PORT}`;
const REQUIREMENT = `RabbitMQ on ${HOST}:${PORT}`;
let probed: Promise<boolean> | undefined;
const available = () => (probed ??= probeTcp(HOST, PORT));

/** Unique names per test, so runs and parallel helpers never share an exchange. */
function uniquePrefix(): string {
  return `sightline-test-${randomUUID().slice(0, 8)}`;
}

async function deleteExchange(prefix: string): Promise<void> {
  const model = await connect(URL);
  try {
    const ch = await model.createChannel();
    await ch.deleteExchange(`${prefix}.events`);
  } finally {
    await model.close().catch(() => {});
  }
}

/** Buses of one deployment (one prefix), closed and their exchange deleted after the test. */
function deployment(t: TestContext): { prefix: string; open(extra?: Partial<AmqpEventBusOptions>): Promise<AmqpEventBus> } {
  const prefix = uniquePrefix();
  const buses: AmqpEventBus[] = [];
  t.after(async () => {
    await Promise.all(buses.map((b) => b.close()));
    await deleteExchange(prefix);
  });
  return {
    prefix,
    async open(extra = {}) {
      const bus = new AmqpEventBus({ url: URL, prefix, reconnectBaseMs: 30, reconnectMaxMs: 200, ...extra });
      bus.on('error', () => {});
      buses.push(bus);
      await bus.start();
      return bus;
    },
  };
}

eventBusContract({
  name: 'amqp',
  requirement: REQUIREMENT,
  available,
  async create({ onHandlerError }) {
    const prefix = uniquePrefix();
    const bus = new AmqpEventBus({ url: URL, prefix, onHandlerError });
    await bus.start();
    return {
      bus,
      async cleanup() {
        await bus.close();
        await deleteExchange(prefix);
      },
    };
  },
});

test('amqp: two replicas: a subscriber on one receives what the other publishes, per line', async (t) => {
  if (!requireOrSkip(t, await available(), REQUIREMENT)) return;
  const d = deployment(t);
  const api1 = await d.open();
  const api2 = await d.open();
  const onApi1 = recorder();
  const allOnApi2 = recorder();
  await api1.subscribe('line-a', onApi1.handler);
  await api2.subscribe(ALL_LINES, allOnApi2.handler);
  const fromApi2 = resultFor('line-a');
  const otherLine = resultFor('line-b');
  api2.publish(otherLine);
  api2.publish(fromApi2);
  api1.publish(resultFor('line-a'));
  await waitFor(() => onApi1.ids.includes(idOf(fromApi2)), 'api2 → api1');
  await published(api2, onApi1, 'line-a');
  assert.ok(onApi1.lines.every((l) => l === 'line-a'));
  assert.ok(!onApi1.ids.includes(idOf(otherLine)));
  // api2's own subscriber gets its own events and api1's, through the broker.
  await waitFor(() => allOnApi2.ids.length >= 4, 'every event on api2');
  assert.deepEqual(new Set(allOnApi2.lines), new Set(['line-a', 'line-b']));
  assert.equal(api1.dropped + api2.dropped, 0);
});

test('amqp: a cut broker connection: publish drops without throwing, then subscriptions come back by themselves', async (t) => {
  if (!requireOrSkip(t, await available(), REQUIREMENT)) return;
  const d = deployment(t);
  const proxy = await TcpProxy.start(HOST, PORT);
  t.after(() => proxy.close());
  const cut = await d.open({ url: URL.replace(`${HOST}:${PORT}`, `${HOST}:${proxy.port}`) });
  const peer = await d.open();
  const onCut = recorder();
  const allOnCut = recorder();
  const onPeer = recorder();
  await cut.subscribe('line-1', onCut.handler);
  await cut.subscribe('a.b', onCut.handler);
  await cut.subscribe(ALL_LINES, allOnCut.handler);
  await peer.subscribe('line-1', onPeer.handler);
  await published(peer, onCut, 'line-1');
  assert.equal(cut.connected, true);

  const lost = deferred();
  cut.once('lost', () => lost.resolve());
  proxy.refuse = true;
  proxy.drop();
  await lost.promise;
  assert.equal(cut.connected, false);
  const dropped = cut.dropped;
  assert.doesNotThrow(() => cut.publish(resultFor('line-1')));
  assert.doesNotThrow(() => cut.publish(resultFor('line-1')));
  assert.equal(cut.dropped, dropped + 2, 'events published while down are dropped and counted');
  // A subscription made while down registers locally and is bound on reconnect.
  const lateSub = recorder();
  await cut.subscribe('line-late', lateSub.handler);
  await new Promise((r) => setTimeout(r, 100)); // a few failed reconnect tries

  const back = deferred();
  cut.once('open', () => back.resolve());
  proxy.refuse = false;
  await back.promise;
  assert.equal(cut.connected, true, 'connected only once re-bound');
  const countBefore = onCut.ids.length;
  // No re-subscribing: the peer's events reach the cut bus again, and its own come back to it.
  const afterPeer = resultFor('line-1');
  peer.publish(afterPeer);
  peer.publish(resultFor('a.b'));
  peer.publish(resultFor('line-late'));
  await waitFor(() => onCut.ids.includes(idOf(afterPeer)), 'peer → cut bus after the reconnect');
  await published(peer, lateSub, 'line-late');
  await waitFor(() => onCut.lines.slice(countBefore).includes('a.b'), 'the dotted line re-bound');
  await published(cut, onPeer, 'line-1');
  await published(cut, allOnCut, 'elsewhere');
  assert.ok(onCut.lines.every((l) => l === 'line-1' || l === 'a.b'));
});

test('amqp: a line binding matches exactly its line on the broker, dots included', async (t) => {
  if (!requireOrSkip(t, await available(), REQUIREMENT)) return;
  const d = deployment(t);
  await d.open(); // declares the exchange
  const lines = ['a', 'a.b', 'a.', 'a..b', 'b.a', 'a-b', 'A'];
  const model = await connect(URL);
  t.after(() => model.close().catch(() => {}));
  const ch = await model.createChannel();
  const exchange = `${d.prefix}.events`;
  const queues = new Map<string, string>();
  for (const line of lines) {
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, exchange, bindingPattern(line));
    queues.set(line, queue);
  }
  for (const line of lines) for (const type of ['result', 'job'] as const) ch.publish(exchange, eventRoutingKey({ type, line }), Buffer.from(line));
  for (const line of lines) {
    const got: string[] = [];
    await waitFor(async () => {
      const msg = await ch.get(queues.get(line)!, { noAck: true });
      if (msg) got.push(msg.content.toString());
      return got.length >= 2 && !msg;
    }, `messages for ${line}`);
    assert.deepEqual(got, [line, line], `binding of ${line}`);
  }
});

test('amqp: unsubscribing the last handler of a line unbinds it on the broker', async (t) => {
  if (!requireOrSkip(t, await available(), REQUIREMENT)) return;
  const d = deployment(t);
  const bus = await d.open();
  const got = recorder();
  const u1 = await bus.subscribe('line-1', got.handler);
  const u2 = await bus.subscribe('line-1', got.handler);
  const bindings = () => (bus as unknown as { bound: Set<string> }).bound;
  assert.deepEqual([...bindings()], ['*.line-1'], 'one binding for two subscriptions');
  await u1();
  assert.deepEqual([...bindings()], ['*.line-1'], 'still bound for the other');
  await u2();
  assert.deepEqual([...bindings()], [], 'unbound with the last');
  await bus.subscribe(ALL_LINES, got.handler);
  assert.deepEqual([...bindings()], ['#']);
});

test('amqp: with no broker, start() resolves, publish drops and subscribe resolves', async () => {
  const bus = new AmqpEventBus({ url: 'amqp://guest:guest@127.0.0.1:1', prefix: uniquePrefix(), reconnectBaseMs: 20 });
  bus.on('error', () => {});
  try {
    await bus.start();
    assert.equal(bus.connected, false);
    bus.publish(resultFor('line-1'));
    assert.equal(bus.dropped, 1);
    const unsub = await bus.subscribe('line-1', () => {});
    await unsub();
  } finally {
    await bus.close();
  }
});

test('amqp: eventBusFromConfig follows an amqp queue_url to its broker under queue_prefix; events_url overrides', async (t) => {
  if (!requireOrSkip(t, await available(), REQUIREMENT)) return;
  const prefix = uniquePrefix();
  t.after(() => deleteExchange(prefix));
  const logger = createLogger('silent');
  const followed = await eventBusFromConfig(defaultConfig({ queue_url: URL, queue_prefix: prefix }), logger);
  const memory = await eventBusFromConfig(defaultConfig({ queue_url: URL, queue_prefix: prefix, events_url: 'memory:' }), logger);
  try {
    assert.ok(followed instanceof AmqpEventBus);
    assert.equal(followed.exchange, `${prefix}.events`);
    assert.equal(followed.connected, true, 'connected once the first try succeeded');
    assert.ok(!(memory instanceof AmqpEventBus));
  } finally {
    await followed.close();
    await memory.close();
  }
});
