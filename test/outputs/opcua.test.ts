import assert from 'node:assert/strict';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import {
  AttributeIds,
  ClientSubscription,
  DataType,
  NodeClass,
  OPCUACertificateManager,
  OPCUAClient,
  TimestampsToReturn,
  type ClientSession,
  type DataValue,
} from 'node-opcua';
import pino from 'pino';
import { Registry } from 'prom-client';
import { outputMetrics } from '../../src/outputs/metrics.js';
import type { OpcuaOutput } from '../../src/outputs/opcua/index.js';
import { createOpcuaOutput } from '../../src/outputs/opcua/index.js';
import { defaultConfig } from '../../src/config/load.js';
import { startApp, tempDir } from '../helpers/fixtures.js';
import { ROOT, waitFor } from '../helpers/cli-process.js';

const SAMPLES = join(ROOT, 'samples');
const OK_IMAGES = readdirSync(SAMPLES)
  .filter((f) => f.startsWith('ok-'))
  .map((f) => readFileSync(join(SAMPLES, f)));
const NG_IMAGES = readdirSync(SAMPLES)
  .filter((f) => f.startsWith('ng-'))
  .map((f) => readFileSync(join(SAMPLES, f)));

/** Every variable of a line object as docs/outputs/opcua.md lists it: name, data type, writable by the client. */
const DOCUMENTED: [string, DataType, boolean][] = [
  ['LastVerdict', DataType.String, false],
  ['LastVerdictCode', DataType.Int32, false],
  ['LastDefectCount', DataType.UInt32, false],
  ['LastLabels', DataType.String, false],
  ['LastResultTime', DataType.DateTime, false],
  ['LastInspectionId', DataType.UInt32, false],
  ['LastRequestId', DataType.String, false],
  ['LastCamera', DataType.String, false],
  ['OkCount', DataType.UInt32, false],
  ['NgCount', DataType.UInt32, false],
  ['CheckCount', DataType.UInt32, false],
  ['CameraState', DataType.String, false],
  ['CameraStateCode', DataType.Int32, false],
  ['TriggerReady', DataType.Boolean, false],
  ['Trigger', DataType.Boolean, true],
  ['TriggerAck', DataType.Boolean, false],
  ['TriggerCount', DataType.UInt32, false],
  ['ResultsValid', DataType.Boolean, false],
  ['ResultsAck', DataType.Boolean, true],
  ['InspectionId', DataType.UInt32, false],
  ['ResultVerdict', DataType.String, false],
  ['ResultVerdictCode', DataType.Int32, false],
  ['ResultDefectCount', DataType.UInt32, false],
  ['ResultLabels', DataType.String, false],
  ['ResultRequestId', DataType.String, false],
  ['BufferedResults', DataType.UInt32, false],
  ['DroppedResults', DataType.UInt32, false],
];

async function detect(app: FastifyInstance, line: string, image: Buffer): Promise<{ request_id: string; verdict: string; detections: unknown[] }> {
  const res = await app.inject({ method: 'POST', url: `/v1/detect?line=${line}&camera=cam-1`, headers: { 'content-type': 'image/jpeg' }, payload: image });
  assert.equal(res.statusCode, 200, res.body);
  return res.json();
}

function outputOf(app: FastifyInstance): OpcuaOutput {
  const output = app.sightline.outputs.get('opcua');
  assert.ok(output, 'the app runs the opcua output');
  return output as OpcuaOutput;
}

/** A node-opcua client session on the app's server (anonymous, security None), closed after the test. */
async function connect(t: TestContext, endpointUrl: string, pki: string): Promise<ClientSession> {
  const client = OPCUAClient.create({
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0 },
    clientCertificateManager: new OPCUACertificateManager({ rootFolder: pki, automaticallyAcceptUnknownCertificate: true }),
  });
  await client.connect(endpointUrl);
  const session = await client.createSession();
  t.after(async () => {
    await session.close().catch(() => undefined);
    await client.disconnect();
  });
  return session;
}

class Plc {
  constructor(
    readonly session: ClientSession,
    readonly ns: number,
    readonly line: string,
  ) {}

  id(name: string): string {
    return `ns=${this.ns};s=${this.line}.${name}`;
  }

  async read(name: string): Promise<unknown> {
    const dv = await this.session.read({ nodeId: this.id(name), attributeId: AttributeIds.Value });
    assert.equal(dv.statusCode.name, 'Good', `read ${name}`);
    return dv.value.value;
  }

  async write(name: string, value: boolean): Promise<void> {
    const status = await this.session.write({
      nodeId: this.id(name),
      attributeId: AttributeIds.Value,
      value: { value: { dataType: DataType.Boolean, value } },
    });
    assert.equal(status.name, 'Good', `write ${name}=${value}`);
  }

  /** Polls like a PLC scan (a few ms), not with waitFor's 100 ms: 100 handshakes must fit the test's time. */
  async until(name: string, value: unknown, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const now = await this.read(name);
      if (now === value) return;
      if (Date.now() > end) throw new Error(`${this.line}.${name} stayed ${String(now)}, expected ${String(value)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

async function namespaceIndex(session: ClientSession): Promise<number> {
  const dv = await session.read({ nodeId: 'ns=0;i=2255', attributeId: AttributeIds.Value });
  const index = (dv.value.value as string[]).indexOf('urn:sightline:outputs');
  assert.ok(index > 0, 'the namespace urn:sightline:outputs is registered');
  return index;
}

async function childrenOf(session: ClientSession, nodeId: string): Promise<Map<string, string>> {
  const result = await session.browse({ nodeId, browseDirection: 0, resultMask: 63, includeSubtypes: true, referenceTypeId: 'HierarchicalReferences' });
  return new Map((result.references ?? []).map((r) => [r.browseName.name ?? '', r.nodeId.toString()]));
}

async function metric(app: FastifyInstance, series: string): Promise<number | undefined> {
  const text = (await app.inject({ url: '/metrics' })).body;
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('OPC UA: a client browses Objects/Sightline/Lines, reads every documented node of a line, and a LastVerdict subscription sees each result', {
  timeout: 80_000,
}, async (t) => {
  const { dir, cleanup } = tempDir('sightline-opcua-');
  t.after(cleanup);
  const app = await startApp({ opcua: true, opcua_port: 0, data_dir: join(dir, 'data'), opcua_lines: 'line-a' });
  t.after(() => app.close());
  const output = outputOf(app);
  assert.match(output.endpointUrl, /^opc\.tcp:\/\/[^:]+:\d+$/);
  assert.equal(output.health().connected, true);
  assert.equal(await metric(app, 'sightline_output_connected{output="opcua"}'), 1);
  const ready = (await app.inject({ url: '/readyz' })).json() as { checks?: Record<string, unknown> };
  assert.match(JSON.stringify(ready), /output:opcua/, '/readyz lists the output');

  const session = await connect(t, output.endpointUrl, join(dir, 'client-pki'));
  const ns = await namespaceIndex(session);
  assert.equal(output.namespaceIndex, ns);

  // The documented path, browsed from the Objects folder: line-a exists before any event (opcua_lines).
  const sightline = (await childrenOf(session, 'ns=0;i=85')).get('Sightline');
  assert.equal(sightline, `ns=${ns};s=/Sightline`);
  const lines = (await childrenOf(session, sightline)).get('Lines');
  assert.equal(lines, `ns=${ns};s=/Sightline/Lines`);
  assert.deepEqual([...(await childrenOf(session, lines)).keys()], ['line-a']);

  const children = await childrenOf(session, `ns=${ns};s=line-a`);
  assert.deepEqual([...children.keys()].sort(), DOCUMENTED.map(([name]) => name).sort(), 'the line object has exactly the documented variables');
  for (const [name, dataType, writable] of DOCUMENTED) {
    const nodeId = `ns=${ns};s=line-a.${name}`;
    assert.equal(children.get(name), nodeId, `${name} has its documented node id`);
    const [value, cls, access] = await session.read([
      { nodeId, attributeId: AttributeIds.Value },
      { nodeId, attributeId: AttributeIds.NodeClass },
      { nodeId, attributeId: AttributeIds.UserAccessLevel },
    ]);
    assert.equal(value!.statusCode.name, 'Good', `${name} reads`);
    assert.equal(value!.value.dataType, dataType, `${name} is a ${DataType[dataType]}`);
    assert.equal(cls!.value.value, NodeClass.Variable);
    assert.equal(((access!.value.value as number) & 2) !== 0, writable, `${name} ${writable ? 'is' : 'is not'} writable`);
  }
  const plc = new Plc(session, ns, 'line-a');
  assert.equal(await plc.read('LastVerdict'), '');
  assert.equal(await plc.read('TriggerReady'), true);
  const refused = await session.write({
    nodeId: plc.id('ResultsValid'),
    attributeId: AttributeIds.Value,
    value: { value: { dataType: DataType.Boolean, value: true } },
  });
  assert.equal(refused.name, 'BadNotWritable', 'a handshake output of the line is read-only');

  // A subscription on LastVerdict (sampling 0: every change, not a sample).
  const subscription = ClientSubscription.create(session, {
    requestedPublishingInterval: 50,
    publishingEnabled: true,
    requestedMaxKeepAliveCount: 20,
    requestedLifetimeCount: 100,
  });
  t.after(() => subscription.terminate().catch(() => undefined));
  const seen: string[] = [];
  const item = await subscription.monitor(
    { nodeId: plc.id('LastVerdict'), attributeId: AttributeIds.Value },
    { samplingInterval: 0, queueSize: 10, discardOldest: true },
    TimestampsToReturn.Both,
  );
  item.on('changed', (dv: DataValue) => seen.push(dv.value.value as string));
  await waitFor(() => seen.length === 1, 'the initial value', 5000);
  const expected: string[] = [];
  for (const image of [OK_IMAGES[0]!, NG_IMAGES[0]!, OK_IMAGES[1]!]) {
    const result = await detect(app, 'line-a', image);
    expected.push(result.verdict);
    await waitFor(
      () => seen.length === expected.length + 1,
      () => `notification ${expected.length}, seen ${JSON.stringify(seen)}`,
      5000,
    );
  }
  assert.deepEqual(expected, ['ok', 'ng', 'ok'], 'the samples give their verdicts');
  assert.deepEqual(seen, ['', ...expected], 'one notification per result, in order');
  assert.equal(await plc.read('OkCount'), 2);
  assert.equal(await plc.read('NgCount'), 1);
  assert.equal(await plc.read('LastVerdictCode'), 1);
  assert.equal(await plc.read('LastCamera'), 'cam-1');
  // The line registry announces a new camera on its next state check, not with the result.
  await waitFor(async () => (await plc.read('CameraState')) === 'online', 'CameraState online', 10_000);
  assert.equal(await plc.read('CameraStateCode'), 1);
  assert.ok((await plc.read('LastResultTime')) instanceof Date);

  // A line seen for the first time gets its object with its first event.
  await detect(app, 'line-new', NG_IMAGES[1]!);
  await waitFor(async () => (await childrenOf(session, lines)).has('line-new'), 'the line-new object', 5000);
  const fresh = new Plc(session, ns, 'line-new');
  assert.equal(await fresh.read('LastVerdict'), 'ng');
  assert.ok(((await fresh.read('LastDefectCount')) as number) > 0);
  assert.ok(((await fresh.read('LastLabels')) as string[]).length > 0);
});

test('OPC UA: a PLC drives Trigger/TriggerAck/ResultsValid/ResultsAck through 100 inspections posted to /v1/detect, each presented with its verdict', {
  timeout: 85_000,
}, async (t) => {
  const { dir, cleanup } = tempDir('sightline-opcua-');
  t.after(cleanup);
  const app = await startApp({ opcua: true, opcua_port: 0, data_dir: join(dir, 'data'), opcua_lines: 'line-h' });
  t.after(() => app.close());
  const output = outputOf(app);
  const session = await connect(t, output.endpointUrl, join(dir, 'client-pki'));
  const plc = new Plc(session, await namespaceIndex(session), 'line-h');
  const verdicts = new Set<string>();
  for (let i = 1; i <= 100; i++) {
    await plc.until('TriggerReady', true);
    await plc.write('Trigger', true);
    await plc.until('TriggerAck', true);
    assert.equal(await plc.read('TriggerReady'), false, 'not ready while the trigger is acknowledged');
    await plc.write('Trigger', false);
    await plc.until('TriggerAck', false);
    // The camera takes its frame on the trigger: here, the image is posted.
    const image = i % 2 ? OK_IMAGES[i % OK_IMAGES.length]! : NG_IMAGES[i % NG_IMAGES.length]!;
    const result = await detect(app, 'line-h', image);
    verdicts.add(result.verdict);
    await plc.until('ResultsValid', true);
    assert.equal(await plc.read('InspectionId'), i, 'inspection ids count up from 1');
    assert.equal(await plc.read('ResultVerdict'), result.verdict, `inspection ${i}: the presented verdict`);
    assert.equal(await plc.read('ResultRequestId'), result.request_id);
    assert.equal(await plc.read('ResultDefectCount'), result.detections.length);
    await plc.write('ResultsAck', true);
    await plc.until('ResultsValid', false);
    await plc.write('ResultsAck', false);
  }
  assert.deepEqual([...verdicts].sort(), ['ng', 'ok'], 'both verdicts went through the handshake');
  assert.equal(await plc.read('TriggerCount'), 100);
  assert.equal(await plc.read('BufferedResults'), 0);
  assert.equal(await metric(app, 'sightline_output_sent_total{output="opcua"}'), 100, 'sent counts acknowledged results');

  // No PLC acknowledging: the buffer (8) fills, TriggerReady falls, the oldest are dropped and counted.
  const ids: number[] = [];
  for (let i = 0; i < 10; i++) await detect(app, 'line-h', OK_IMAGES[0]!);
  await plc.until('BufferedResults', 8);
  assert.equal(await plc.read('DroppedResults'), 2);
  assert.equal(await plc.read('TriggerReady'), false, 'a full buffer takes no trigger');
  assert.equal(await metric(app, 'sightline_output_dropped_total{output="opcua",reason="buffer_full"}'), 2);
  assert.equal(await metric(app, 'sightline_output_outbox_depth{output="opcua"}'), 8);
  for (let i = 0; i < 8; i++) {
    await plc.until('ResultsValid', true);
    ids.push((await plc.read('InspectionId')) as number);
    await plc.write('ResultsAck', true);
    await plc.until('ResultsValid', false);
    await plc.write('ResultsAck', false);
  }
  assert.deepEqual(ids, [103, 104, 105, 106, 107, 108, 109, 110], 'the newest 8 are presented oldest first (101 and 102 dropped)');
  await plc.until('TriggerReady', true);
});

test('OPC UA: a port in use rejects start with the port named; handle never throws, before start or after close', { timeout: 60_000 }, async (t) => {
  const { dir, cleanup } = tempDir('sightline-opcua-');
  t.after(cleanup);
  const blocker = createNetServer().listen(0, '0.0.0.0');
  await new Promise((r) => blocker.once('listening', r));
  t.after(() => blocker.close());
  const port = (blocker.address() as AddressInfo).port;
  const config = defaultConfig({ opcua: true, opcua_port: port, data_dir: dir });
  const metrics = outputMetrics(new Registry());
  const output = createOpcuaOutput({
    config,
    logger: pino({ level: 'silent' }),
    metrics,
    instance: 'test',
    lines: async () => ({ at: new Date().toISOString(), window_s: 60, lines: [] }),
    outbox: () => assert.fail('the opcua output keeps no outbox'),
  });
  const event = {
    type: 'result' as const,
    line: 'l',
    source: 'sync' as const,
    at: new Date().toISOString(),
    result: { request_id: 'r', camera: 'c', verdict: 'ok' as const, detections: [] } as never,
  };
  output.handle(event);
  await assert.rejects(output.start(), new RegExp(`port ${port}: it is in use \\(opcua_port\\)`));
  assert.deepEqual(output.health(), { connected: false, detail: `the OPC UA server cannot listen on port ${port}: it is in use (opcua_port)` });
  await output.close();
  output.handle(event);
  assert.equal(output.endpointUrl, '');
});
