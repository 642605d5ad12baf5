import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Registry } from 'prom-client';
import { InProcessEventBus, type SightlineEvent } from '../../src/events/index.js';
import { OutputHub } from '../../src/outputs/hub.js';
import { eventFilter } from '../../src/outputs/filter.js';
import { outputMetrics } from '../../src/outputs/metrics.js';
import type { Output, OutputHealth, OutputScope } from '../../src/outputs/output.js';
import type { DetectionResult, Verdict } from '../../src/protocol/results.js';

/** An output that keeps what it is handed: the hub, not an output, is under test here. */
class RecordingOutput implements Output {
  readonly seen: SightlineEvent[] = [];
  healthNow: OutputHealth = { connected: true, detail: 'up' };
  closed = false;
  constructor(
    readonly name: string,
    readonly scope: OutputScope,
    private readonly throws = false,
  ) {}
  async start(): Promise<void> {}
  handle(event: SightlineEvent): void {
    if (this.throws) throw new Error('boom');
    this.seen.push(event);
  }
  health(): OutputHealth {
    return this.healthNow;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

function result(line: string, verdict: Verdict, id: string): SightlineEvent {
  const r: DetectionResult = {
    request_id: id,
    line,
    camera: 'cam-1',
    model: { name: 'defects', version: '1' },
    image: { width: 10, height: 10 },
    detections: [],
    verdict,
    timings_ms: { queue: 0, decode: 0, preprocess: 0, infer: 0, postprocess: 0, total: 0 },
  };
  return { type: 'result', line, source: 'sync', at: new Date().toISOString(), result: r };
}

const camera = (line: string): SightlineEvent => ({
  type: 'camera',
  line,
  camera: 'cam-1',
  state: 'offline',
  previous: 'online',
  at: new Date().toISOString(),
  last_frame_at: null,
});

test('the hub gives local outputs what this process publishes and bus outputs everything on the bus, each through its filter', async (t) => {
  const bus = new InProcessEventBus(() => undefined);
  const local = new RecordingOutput('mqtt', 'local');
  const ngOnly = new RecordingOutput('webhook', 'local');
  const plc = new RecordingOutput('modbus', 'bus');
  const broken = new RecordingOutput('opcua', 'local', true);
  const metrics = outputMetrics(new Registry());
  const hub = new OutputHub(
    [
      { output: local, filter: eventFilter('line-1, line-2', 'ok,ng') },
      { output: ngOnly, filter: eventFilter('', 'ng') },
      { output: plc, filter: eventFilter('line-1', 'ok,ng') },
      { output: broken, filter: eventFilter('', 'ok,ng') },
    ],
    { logger: pino({ level: 'silent' }), metrics },
  );
  const mine = hub.wrap(bus);
  await hub.start(mine);
  t.after(() => hub.close());

  mine.publish(result('line-1', 'ok', 'a'));
  mine.publish(result('line-2', 'ng', 'b'));
  mine.publish(result('line-3', 'ng', 'c'));
  mine.publish(camera('line-1'));
  // Another replica's event arrives on the bus only: local outputs must not send it (its own process does).
  bus.publish(result('line-1', 'ng', 'elsewhere'));
  await new Promise((r) => setImmediate(r));

  const ids = (o: RecordingOutput) => o.seen.map((e) => (e.type === 'result' ? e.result.request_id : `${e.type}:${e.line}`));
  assert.deepEqual(ids(local), ['a', 'b', 'camera:line-1'], 'lines filter every event, in publish order');
  assert.deepEqual(ids(ngOnly), ['b', 'c', 'camera:line-1'], 'verdicts filter results only');
  assert.deepEqual(ids(plc), ['a', 'camera:line-1', 'elsewhere'], 'a bus output sees every process');
  assert.equal(broken.seen.length, 0);

  // /readyz: non-critical, failing while the peer is away, with the reason.
  const [mqttDep] = hub.dependencies();
  assert.equal(mqttDep?.name, 'output:mqtt');
  assert.equal(mqttDep?.critical, false);
  assert.equal(await mqttDep?.probe(), 'up');
  local.healthNow = { connected: false, detail: 'broker 127.0.0.1:1 refused the connection' };
  await assert.rejects(mqttDep!.probe(), /refused/);

  await hub.close();
  assert.ok(local.closed && ngOnly.closed && plc.closed && broken.closed, 'every output closed');
});

test('with no output configured the bus is not wrapped', () => {
  const bus = new InProcessEventBus(() => undefined);
  const hub = new OutputHub([], { logger: pino({ level: 'silent' }), metrics: outputMetrics(new Registry()) });
  assert.equal(hub.wrap(bus), bus);
  assert.deepEqual(hub.dependencies(), []);
});
