import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import protobuf from 'protobufjs';
import { SightlineProcess, cleanups, waitFor } from '../helpers/cli-process.js';
import { tempDir } from '../helpers/fixtures.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { PROTO, PahoSubscriber, SHARED, clearRetained, hasPaho, retained, sharedBrokerUp } from './fixtures/mqtt-peers.js';

const Payload = protobuf.loadSync(PROTO).lookupType('org.eclipse.tahu.protobuf.Payload');
const bdSeqOf = (payload: Buffer) =>
  (Payload.toObject(Payload.decode(payload), { longs: Number }) as { metrics: { name: string; longValue?: number }[] }).metrics.find((m) => m.name === 'bdSeq')
    ?.longValue;

test('the last wills fire when `sightline serve` is SIGKILLed: retained `offline` on <prefix>/available, NDEATH with the bdSeq of the NBIRTH', {
  timeout: 90_000,
}, async (t) => {
  if (!requireOrSkip(t, await hasPaho(), "Debian's python3-paho-mqtt (/usr/bin/python3)")) return;
  if (!requireOrSkip(t, await sharedBrokerUp(), `the MQTT broker on ${SHARED.host}:${SHARED.port}`)) return;
  const defer = cleanups(t);
  const tmp = tempDir('sightline-mqtt-will-');
  defer(tmp.cleanup);
  const id = randomUUID().slice(0, 8);
  const prefix = `slwill-${id}`;
  const group = `SlWill-${id}`;
  defer(() => clearRetained(SHARED.port, `${prefix}/#`));
  const json = new PahoSubscriber(SHARED.port, `${prefix}/available`);
  const spb = new PahoSubscriber(SHARED.port, `spBv1.0/${group}/#`);
  defer(() => json.kill());
  defer(() => spb.kill());
  await Promise.all([json.ready(), spb.ready()]);

  const base = ['serve', '--host', '127.0.0.1', '--port', '0', '--intra-op-threads', '1', '--mqtt-url', `mqtt://${SHARED.host}:${SHARED.port}`];
  const plain = new SightlineProcess('json', [...base, '--data-dir', join(tmp.dir, 'a'), '--mqtt-topic-prefix', prefix]);
  const sparkplug = new SightlineProcess('sparkplug', [
    ...base,
    '--data-dir',
    join(tmp.dir, 'b'),
    '--mqtt-sparkplug',
    '--sparkplug-group-id',
    group,
    '--sparkplug-node-id',
    'edge-kill',
  ]);
  defer(() => plain.kill());
  defer(() => sparkplug.kill());
  await waitFor(
    () => json.messages.some((m) => m.payload.toString() === 'online'),
    () => `online\n${plain.tail()}`,
    60_000,
  );
  await waitFor(
    () => spb.messages.some((m) => m.topic.endsWith('/NBIRTH/edge-kill')),
    () => `NBIRTH\n${sparkplug.tail()}`,
    60_000,
  );
  const birth = spb.messages.find((m) => m.topic.endsWith('/NBIRTH/edge-kill'))!;

  await Promise.all([plain.kill(), sparkplug.kill()]);
  assert.equal(plain.exitStatus, 'SIGKILL');
  await waitFor(() => json.messages.at(-1)?.payload.toString() === 'offline', 'the will: offline', 10_000);
  await waitFor(() => spb.messages.some((m) => m.topic === `spBv1.0/${group}/NDEATH/edge-kill`), 'the will: NDEATH', 10_000);
  const death = spb.messages.find((m) => m.topic === `spBv1.0/${group}/NDEATH/edge-kill`)!;
  assert.equal(bdSeqOf(death.payload), bdSeqOf(birth.payload), 'NDEATH and NBIRTH carry the same bdSeq');
  assert.equal(typeof bdSeqOf(death.payload), 'number');
  assert.equal((await retained(SHARED.port, `${prefix}/available`)).get(`${prefix}/available`), 'offline', 'the will is retained');
});
