import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { ALL_LINES, type EventBus, type JobStatusEvent, type ResultEvent, type SightlineEvent } from '../../src/events/index.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { waitFor } from '../queue/helpers.js';

export interface BusFixture {
  bus: EventBus;
  /** Closes the bus (if the test did not) and removes what the back end created. */
  cleanup(): Promise<void>;
}

export interface BusHarness {
  name: string;
  /** What must be running for these tests, for the skip message. */
  requirement: string;
  available(): Promise<boolean>;
  create(options: { onHandlerError: (err: unknown) => void }): Promise<BusFixture>;
}

export function resultFor(line: string, requestId: string = randomUUID()): ResultEvent {
  return {
    type: 'result',
    line,
    source: 'sync',
    at: new Date().toISOString(),
    result: {
      request_id: requestId,
      line,
      model: { name: 'defects', version: '1' },
      image: { width: 64, height: 48 },
      detections: [],
      verdict: 'ok',
      timings_ms: { queue: 0, decode: 0, preprocess: 0, infer: 0, postprocess: 0, total: 0 },
    } as unknown as ResultEvent['result'],
  };
}

export function jobEventFor(line: string, jobId: string = randomUUID()): JobStatusEvent {
  return { type: 'job', line, at: new Date().toISOString(), job_id: jobId, state: 'retrying', error: 'boom' };
}

/** An id that tells events apart whatever their type. */
export function idOf(event: SightlineEvent): string {
  if (event.type === 'result') return event.result.request_id;
  if (event.type === 'job') return event.job_id;
  return `${event.line}/${event.camera}/${event.state}/${event.at}`;
}

/** Collects the ids of the events a handler receives. */
export function recorder(): { ids: string[]; lines: string[]; handler: (e: SightlineEvent) => void } {
  const ids: string[] = [];
  const lines: string[] = [];
  const handler = (e: SightlineEvent) => {
    ids.push(idOf(e));
    lines.push(e.line);
  };
  return { ids, lines, handler };
}

/**
 * Every bus delivers in publish order per subscriber (in-process: synchronously;
 * RabbitMQ: one channel into one queue), so once a marker published last has
 * arrived, everything published before it that was going to arrive has: absence
 * is asserted without sleeping.
 */
export async function published(bus: EventBus, seen: { ids: string[] }, line: string): Promise<void> {
  const marker = resultFor(line, `marker-${randomUUID()}`);
  bus.publish(marker);
  await waitFor(() => seen.ids.includes(marker.result.request_id), `marker on ${line}`);
}

/** The suite every EventBus back end must pass. */
export function eventBusContract(h: BusHarness): void {
  async function setup(t: TestContext): Promise<{ bus: EventBus; errors: unknown[] } | undefined> {
    if (!requireOrSkip(t, await h.available(), h.requirement)) return undefined;
    const errors: unknown[] = [];
    const fx = await h.create({ onHandlerError: (err) => errors.push(err) });
    t.after(() => fx.cleanup());
    return { bus: fx.bus, errors };
  }

  describe(`EventBus contract: ${h.name}`, () => {
    test('a subscriber of a line gets that line only, not a line it is a prefix of (a vs a.b)', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const a = recorder();
      const ab = recorder();
      const unsubA = await s.bus.subscribe('a', a.handler);
      await s.bus.subscribe('a.b', ab.handler);
      assert.equal(s.bus.connected, true);
      const forA = [resultFor('a'), jobEventFor('a')];
      const forAB = [resultFor('a.b'), jobEventFor('a.b')];
      s.bus.publish(forAB[0]!);
      s.bus.publish(forA[0]!);
      s.bus.publish(resultFor('b'));
      s.bus.publish(resultFor('ab'));
      s.bus.publish(resultFor('x.a'));
      s.bus.publish(forA[1]!);
      s.bus.publish(forAB[1]!);
      await published(s.bus, a, 'a');
      await published(s.bus, ab, 'a.b');
      assert.deepEqual(a.ids.slice(0, 2), forA.map(idOf), 'line a: its own events, in order');
      assert.ok(
        a.lines.every((l) => l === 'a'),
        `line a got ${a.lines.join(', ')}`,
      );
      assert.deepEqual(ab.ids.slice(0, 2), forAB.map(idOf), 'line a.b: its own events, in order');
      assert.ok(
        ab.lines.every((l) => l === 'a.b'),
        `line a.b got ${ab.lines.join(', ')}`,
      );
      await unsubA();
    });

    test('an ALL_LINES subscriber gets every line, events intact', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const all: SightlineEvent[] = [];
      await s.bus.subscribe(ALL_LINES, (e) => void all.push(e));
      const sent = [resultFor('line-1'), jobEventFor('line-2'), resultFor('a.b.c'), resultFor('line-1')];
      for (const e of sent) s.bus.publish(e);
      await waitFor(() => all.length >= sent.length, 'all events');
      assert.deepEqual(all, sent);
    });

    test('unsubscribe stops delivery; of two subscriptions of one line, the other keeps receiving', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const first = recorder();
      const second = recorder();
      const unsubFirst = await s.bus.subscribe('line-1', first.handler);
      const unsubSecond = await s.bus.subscribe('line-1', second.handler);
      const both = resultFor('line-1');
      s.bus.publish(both);
      await waitFor(() => first.ids.includes(idOf(both)) && second.ids.includes(idOf(both)), 'both subscriptions');

      await unsubFirst();
      await unsubFirst(); // idempotent: must not remove the other subscription
      const onlySecond = resultFor('line-1');
      s.bus.publish(onlySecond);
      await published(s.bus, second, 'line-1');
      assert.ok(second.ids.includes(idOf(onlySecond)), 'the remaining subscription still receives');
      assert.ok(!first.ids.includes(idOf(onlySecond)), 'the unsubscribed handler does not');

      // The same handler subscribed twice is two subscriptions.
      const twice = recorder();
      const u1 = await s.bus.subscribe('line-2', twice.handler);
      const u2 = await s.bus.subscribe('line-2', twice.handler);
      const e1 = resultFor('line-2');
      s.bus.publish(e1);
      await waitFor(() => twice.ids.filter((id) => id === idOf(e1)).length === 2, 'the handler twice');
      await u1();
      await published(s.bus, twice, 'line-2');
      await u2();
      const watcher = recorder();
      await s.bus.subscribe(ALL_LINES, watcher.handler);
      const after = resultFor('line-2');
      s.bus.publish(after);
      await published(s.bus, watcher, 'line-2');
      assert.ok(!twice.ids.includes(idOf(after)), 'no delivery after both are unsubscribed');
      await unsubSecond();
    });

    test('a throwing handler does not stop the others and is reported', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const before = recorder();
      const after = recorder();
      const all = recorder();
      await s.bus.subscribe('line-1', before.handler);
      await s.bus.subscribe('line-1', () => {
        throw new Error('subscriber bug');
      });
      await s.bus.subscribe('line-1', after.handler);
      await s.bus.subscribe(ALL_LINES, all.handler);
      const events = [resultFor('line-1'), resultFor('line-1')];
      for (const e of events) s.bus.publish(e);
      await waitFor(() => all.ids.length >= 2 && after.ids.length >= 2, 'deliveries');
      assert.deepEqual(before.ids, events.map(idOf));
      assert.deepEqual(after.ids, events.map(idOf));
      assert.deepEqual(all.ids, events.map(idOf));
      assert.equal(s.errors.length, 2);
      assert.match((s.errors[0] as Error).message, /subscriber bug/);
    });

    test('close() stops delivery; publish and unsubscribe after close do not throw', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const got = recorder();
      const unsub = await s.bus.subscribe('line-1', got.handler);
      await published(s.bus, got, 'line-1');
      const count = got.ids.length;
      await s.bus.close();
      s.bus.publish(resultFor('line-1'));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(got.ids.length, count);
      await unsub();
      await s.bus.close(); // twice is fine
    });
  });
}
