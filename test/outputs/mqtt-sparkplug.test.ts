import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import protobuf from 'protobufjs';
import type { FastifyInstance } from 'fastify';
import type { MqttOutput } from '../../src/outputs/mqtt/index.js';
import { ROOT, cleanups, waitFor } from '../helpers/cli-process.js';
import { startApp, tempDir } from '../helpers/fixtures.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { Mosquitto, PROTO, PahoSubscriber, type Received, hasMosquitto, hasPaho } from './fixtures/mqtt-peers.js';

const OK = readFileSync(join(ROOT, 'samples', 'ok-01.jpg'));
const NG = readFileSync(join(ROOT, 'samples', 'ng-01.jpg'));
const Payload = protobuf.loadSync(PROTO).lookupType('org.eclipse.tahu.protobuf.Payload');
/** Sparkplug datatypes by number (the comment block of sparkplug_b.proto). */
const TYPES: Record<number, string> = { 3: 'Int32', 7: 'UInt32', 8: 'UInt64', 11: 'Boolean', 12: 'String', 13: 'DateTime' };

interface Metric {
  name: string;
  type: string;
  value: unknown;
  isNull: boolean;
}
interface Message {
  type: string;
  device: string | undefined;
  seq: number | undefined;
  metrics: Metric[];
}

/** Decodes with the Sparkplug schema (protobufjs on the .proto text), not with the encoder's own package. */
function decode(m: Received): Message {
  const [, , type, , device] = m.topic.split('/');
  const p = Payload.toObject(Payload.decode(m.payload), { longs: Number, defaults: false }) as {
    seq?: number;
    metrics?: { name: string; datatype: number; isNull?: boolean; [k: string]: unknown }[];
  };
  const metrics = (p.metrics ?? []).map((x) => {
    const value = x.stringValue ?? x.longValue ?? x.intValue ?? x.booleanValue ?? x.doubleValue ?? null;
    return { name: x.name, type: TYPES[x.datatype] ?? String(x.datatype), value, isNull: x.isNull === true };
  });
  return { type: type!, device, seq: p.seq, metrics };
}

const value = (m: Message, name: string) => m.metrics.find((x) => x.name === name)?.value;

async function detect(app: FastifyInstance, line: string, image: Buffer, id: string): Promise<void> {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/detect?line=${line}&camera=cam-1`,
    headers: { 'content-type': 'image/jpeg', 'x-request-id': id },
    payload: image,
  });
  assert.equal(res.statusCode, 200, res.body);
}

/** seq is 0 on every NBIRTH and one more (mod 256) on every later message of the node; NDEATH has none. */
function checkSeq(messages: Message[]): { wrapped: boolean } {
  let previous: number | undefined;
  let wrapped = false;
  for (const [i, m] of messages.entries()) {
    if (m.type === 'NDEATH' || m.type === 'NCMD') continue;
    assert.equal(typeof m.seq, 'number', `${m.type} #${i} has a seq`);
    if (m.type === 'NBIRTH') assert.equal(m.seq, 0, `NBIRTH #${i} has seq 0`);
    else {
      assert.equal(m.seq, ((previous ?? -1) + 1) % 256, `${m.type} #${i} follows seq ${previous}`);
      if (m.seq === 0) wrapped = true;
    }
    previous = m.seq;
  }
  return { wrapped };
}

/** Every DDATA of a device comes after a DBIRTH of that device since the last NBIRTH. */
function checkBirths(messages: Message[]): void {
  let born = new Set<string>();
  let nodeBorn = false;
  for (const [i, m] of messages.entries()) {
    if (m.type === 'NBIRTH') {
      nodeBorn = true;
      born = new Set();
    } else if (m.type === 'DBIRTH') {
      assert.ok(nodeBorn, `DBIRTH #${i} after an NBIRTH`);
      born.add(m.device!);
    } else if (m.type === 'DDATA') assert.ok(born.has(m.device!), `DDATA #${i} of ${m.device} after its DBIRTH`);
  }
}

test('Sparkplug B: NBIRTH seq 0 with bdSeq, DBIRTH before DDATA, seq mod 256, rebirth on NCMD, a new bdSeq per connection, DDEATH/NDEATH on close', {
  timeout: 90_000,
}, async (t) => {
  if (!requireOrSkip(t, hasMosquitto(), 'mosquitto (/usr/sbin/mosquitto)')) return;
  if (!requireOrSkip(t, await hasPaho(), "Debian's python3-paho-mqtt (/usr/bin/python3)")) return;
  const defer = cleanups(t);
  const tmp = tempDir('sightline-sparkplug-');
  defer(tmp.cleanup);
  const broker = await Mosquitto.create(tmp.dir);
  await broker.start();
  defer(() => broker.stop());
  const group = 'Plant1';
  const sub = new PahoSubscriber(broker.port, `spBv1.0/${group}/#`, `scada-${process.pid}`);
  defer(() => sub.kill());
  await sub.ready();
  const msgs = () => sub.messages.map(decode);

  // NDATA every 100 ms: enough messages for seq to wrap within the test.
  const app = await startApp({
    mqtt_url: broker.url,
    mqtt_sparkplug: true,
    sparkplug_group_id: group,
    sparkplug_node_id: 'edge-1',
    mqtt_status_interval_ms: 100,
  });
  let open = true;
  defer(() => open && app.close());
  const output = app.sightline.outputs.get('mqtt') as MqttOutput;

  await waitFor(() => msgs().some((m) => m.type === 'NBIRTH'), 'NBIRTH', 10_000);
  const nbirth = msgs().find((m) => m.type === 'NBIRTH')!;
  assert.equal(nbirth.seq, 0);
  assert.equal(value(nbirth, 'bdSeq'), 0, 'the first connection has bdSeq 0');
  assert.equal(nbirth.metrics.find((m) => m.name === 'bdSeq')!.type, 'UInt64');
  assert.equal(value(nbirth, 'Node Control/Rebirth'), false);
  assert.equal(sub.messages[0]!.topic, `spBv1.0/${group}/NBIRTH/edge-1`);

  await detect(app, 'line-1', OK, 'sp-1');
  await detect(app, 'line-1', NG, 'sp-2');
  await detect(app, 'line-2', NG, 'sp-3');
  await waitFor(() => msgs().filter((m) => m.type === 'DDATA' && value(m, 'LastRequestId') !== undefined).length >= 3, 'three result DDATA', 10_000);
  const data = msgs().filter((m) => m.type === 'DDATA' && value(m, 'LastRequestId') !== undefined);
  assert.deepEqual(
    data.map((m) => [m.device, value(m, 'LastRequestId'), value(m, 'LastVerdict'), value(m, 'OkCount'), value(m, 'NgCount'), value(m, 'InspectionId')]),
    [
      ['line-1', 'sp-1', 'ok', 1, 0, 1],
      ['line-1', 'sp-2', 'ng', 1, 1, 2],
      ['line-2', 'sp-3', 'ng', 0, 1, 1],
    ],
  );
  assert.ok((value(data[1]!, 'LastDefectCount') as number) > 0, 'an NG result has defects');
  assert.equal(sub.messages.find((m) => m.topic.includes('/DDATA/'))!.topic, `spBv1.0/${group}/DDATA/edge-1/line-1`);
  const dbirth = msgs().find((m) => m.type === 'DBIRTH' && m.device === 'line-1')!;
  assert.deepEqual(
    dbirth.metrics.map((m) => [m.name, m.type]),
    [
      ['LastVerdict', 'String'],
      ['LastDefectCount', 'Int32'],
      ['LastLabels', 'String'],
      ['LastResultTime', 'DateTime'],
      ['LastRequestId', 'String'],
      ['LastCamera', 'String'],
      ['InspectionId', 'UInt32'],
      ['OkCount', 'UInt64'],
      ['NgCount', 'UInt64'],
      ['CheckCount', 'UInt64'],
      ['CameraState', 'String'],
    ],
    'a DBIRTH declares every metric of the line',
  );

  // Rebirth: a host application asks with NCMD Node Control/Rebirth = true (encoded here from the .proto).
  const ncmd = Payload.encode(
    Payload.fromObject({ timestamp: Date.now(), metrics: [{ name: 'Node Control/Rebirth', datatype: 11, booleanValue: true }] }),
  ).finish();
  const ncmdFile = join(tmp.dir, 'ncmd.bin');
  writeFileSync(ncmdFile, ncmd);
  const birthsBefore = msgs().filter((m) => m.type === 'NBIRTH').length;
  execFileSync('/usr/bin/mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '-t', `spBv1.0/${group}/NCMD/edge-1`, '-f', ncmdFile]);
  await waitFor(() => msgs().filter((m) => m.type === 'NBIRTH').length > birthsBefore, 'the rebirth NBIRTH', 10_000);
  const rebirthAt = msgs().findIndex((m, i) => m.type === 'NBIRTH' && i > 0);
  await waitFor(
    () =>
      msgs()
        .slice(rebirthAt)
        .filter((m) => m.type === 'DBIRTH').length >= 2,
    'DBIRTHs after the rebirth',
    5000,
  );
  assert.equal(value(msgs()[rebirthAt]!, 'bdSeq'), 0, 'a rebirth keeps the bdSeq of the connection');
  assert.deepEqual(
    msgs()
      .slice(rebirthAt + 1)
      .filter((m) => m.type === 'DBIRTH')
      .map((m) => m.device)
      .sort(),
    ['line-1', 'line-2'],
  );

  // Enough NDATA for seq to pass 255.
  await waitFor(() => checkSeq(msgs()).wrapped, 'seq to wrap past 255', 40_000);

  // A new connection (the broker restarted) gets a new bdSeq, NBIRTH again, DBIRTH again before DDATA.
  await broker.stop();
  await waitFor(() => !output.health().connected, 'the output to notice', 10_000);
  await detect(app, 'line-2', OK, 'sp-4'); // waits in the outbox
  await broker.start();
  await waitFor(() => msgs().some((m) => m.type === 'DDATA' && value(m, 'LastRequestId') === 'sp-4'), 'the result sent after the restart', 20_000);
  const births = msgs().filter((m) => m.type === 'NBIRTH');
  assert.equal(value(births.at(-1)!, 'bdSeq'), 1, 'bdSeq grows per connection');
  assert.equal(output.bdSeq, 1);

  const lastBirth = msgs().length;
  open = false;
  await app.close();
  await waitFor(
    () =>
      msgs()
        .slice(lastBirth)
        .some((m) => m.type === 'NDEATH'),
    'NDEATH on a clean close',
    5000,
  );
  const all = msgs();
  const ndeath = all.slice(lastBirth).find((m) => m.type === 'NDEATH')!;
  assert.equal(value(ndeath, 'bdSeq'), 1, 'the NDEATH names the bdSeq of its NBIRTH');
  // Mosquitto also sends the will of each connection it drops on its shutdown: every NDEATH names the bdSeq of the NBIRTH before it.
  let born: unknown;
  for (const m of all) {
    if (m.type === 'NBIRTH') born = value(m, 'bdSeq');
    if (m.type === 'NDEATH') assert.equal(value(m, 'bdSeq'), born);
  }
  assert.deepEqual(
    all
      .filter((m) => m.type === 'DDEATH')
      .map((m) => m.device)
      .sort(),
    ['line-1', 'line-2'],
  );
  checkSeq(all);
  checkBirths(all);
  t.diagnostic(`${all.length} Sparkplug messages checked (${births.length} NBIRTH)`);
});
