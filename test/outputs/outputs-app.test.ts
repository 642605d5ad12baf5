import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../bench/server.js';
import { startApp } from '../helpers/fixtures.js';

const OK = readFileSync(new URL('../../samples/ok-01.jpg', import.meta.url));
const NG = readFileSync(new URL('../../samples/ng-01.jpg', import.meta.url));

interface ReadyCheck {
  name: string;
  status: string;
  critical: boolean;
  reason?: string;
}

test('with every output configured and every peer away, detection answers, /readyz stays ready and GET /v1/outputs shows each output and its outbox', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-outputs-app-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const closed = await freePort(); // nothing listens: the broker and the receiver are away
  const app = await startApp({
    data_dir: dir,
    store_url: `sqlite:${join(dir, 'results.db')}`,
    mqtt_url: `mqtt://127.0.0.1:${closed}`,
    webhook_urls: `http://127.0.0.1:${closed}/hook`,
    webhook_verdicts: 'ng',
    opcua: true,
    opcua_port: 0,
    modbus: true,
    modbus_port: 0,
    modbus_lines: 'line-1',
  });
  t.after(() => app.close());

  for (const [i, image] of [OK, NG, NG].entries()) {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/detect?line=line-1',
      headers: { 'content-type': 'image/jpeg', 'x-request-id': `out-${i}` },
      payload: image,
    });
    assert.equal(res.statusCode, 200, res.body);
  }

  // The outboxes fill in the background: MQTT takes every result, the webhook NG only.
  const deadline = Date.now() + 10_000;
  let outputs: { name: string; scope: string; connected: boolean; detail: string; outbox_depth: number | null; dead_letters: number | null }[] = [];
  for (;;) {
    const res = await app.inject({ method: 'GET', url: '/v1/outputs' });
    assert.equal(res.statusCode, 200, res.body);
    outputs = res.json().outputs;
    const depth = (name: string) => outputs.find((o) => o.name === name)?.outbox_depth;
    if (depth('mqtt') === 3 && depth('webhook') === 2) break;
    if (Date.now() > deadline) assert.fail(`outboxes did not fill: ${JSON.stringify(outputs)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const byName = new Map(outputs.map((o) => [o.name, o]));
  assert.deepEqual([...byName.keys()].sort(), ['modbus', 'mqtt', 'opcua', 'webhook']);
  assert.equal(byName.get('mqtt')?.connected, false);
  assert.equal(byName.get('mqtt')?.scope, 'local');
  assert.equal(byName.get('opcua')?.connected, true, 'a server output is up while it listens');
  assert.equal(byName.get('opcua')?.scope, 'bus');
  assert.equal(byName.get('modbus')?.outbox_depth, null);

  // /readyz: the outputs are there, not critical, and the server stays ready.
  let checks: ReadyCheck[] = [];
  for (;;) {
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    checks = ready.json().checks;
    const mqtt = checks.find((c) => c.name === 'output:mqtt');
    if (mqtt && mqtt.status === 'fail') {
      assert.equal(ready.statusCode, 200, ready.body);
      break;
    }
    if (Date.now() > deadline + 10_000) assert.fail(`output:mqtt never reported down: ${ready.body}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const name of ['output:mqtt', 'output:webhook', 'output:opcua', 'output:modbus']) {
    const check = checks.find((c) => c.name === name);
    assert.ok(check, `${name} in /readyz`);
    assert.equal(check.critical, false);
  }

  // Metrics: the series of every configured output.
  // The hub reads outbox depths every second.
  let metrics = '';
  for (const until = Date.now() + 5000; Date.now() < until; await new Promise((r) => setTimeout(r, 200))) {
    metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    if (/sightline_output_outbox_depth\{output="mqtt"\} 3/.test(metrics) && /sightline_output_outbox_depth\{output="webhook"\} 2/.test(metrics)) break;
  }
  assert.match(metrics, /sightline_output_outbox_depth\{output="mqtt"\} 3/);
  assert.match(metrics, /sightline_output_outbox_depth\{output="webhook"\} 2/);
  assert.match(metrics, /sightline_output_connected\{output="opcua"\} 1/);
  assert.match(metrics, /sightline_output_dropped_total\{output="webhook",reason="outbox_full"\} 0/);

  // The API's errors: a server output keeps no outbox, an unknown output is 404, an unknown dead letter too.
  const opcua = await app.inject({ method: 'GET', url: '/v1/outputs/opcua/dead-letters' });
  assert.equal(opcua.statusCode, 404);
  assert.equal(opcua.json().error.code, 'OUTPUT_HAS_NO_OUTBOX');
  const unknown = await app.inject({ method: 'GET', url: '/v1/outputs/kafka/dead-letters' });
  assert.equal(unknown.statusCode, 404);
  assert.equal(unknown.json().error.code, 'OUTPUT_NOT_FOUND');
  const replay = await app.inject({ method: 'POST', url: '/v1/outputs/webhook/dead-letters/replay', payload: { seq: 999_999 } });
  assert.equal(replay.statusCode, 404);
  assert.equal(replay.json().error.code, 'DEAD_LETTER_NOT_FOUND');
  const bad = await app.inject({ method: 'POST', url: '/v1/outputs/webhook/dead-letters/replay', payload: { seq: 'x' } });
  assert.equal(bad.statusCode, 400);
  const none = await app.inject({ method: 'GET', url: '/v1/outputs/webhook/dead-letters' });
  assert.equal(none.statusCode, 200);
  assert.deepEqual(none.json().dead_letters, []);
});

test('without outputs configured nothing listens and GET /v1/outputs is empty', async (t) => {
  const app = await startApp({});
  t.after(() => app.close());
  const res = await app.inject({ method: 'GET', url: '/v1/outputs' });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), { outputs: [] });
  const ready = (await app.inject({ method: 'GET', url: '/readyz' })).json() as { checks: ReadyCheck[] };
  assert.equal(ready.checks.filter((c) => c.name.startsWith('output:')).length, 0);
});

test('webhook dead letters over the API: listed without the URL secret, replayed with one call, then delivered', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-outputs-dl-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let healthy = false;
  const received: string[] = [];
  const receiver = createServer((req, res) => {
    req.resume(); // the body is the webhook's own test's business; here only the key matters
    req.on('end', () => {
      if (!healthy) {
        res.writeHead(500).end();
        return;
      }
      received.push(String(req.headers['idempotency-key']));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => receiver.close(resolve)));
  const port = (receiver.address() as { port: number }).port;
  const app = await startApp({
    data_dir: dir,
    store_url: `sqlite:${join(dir, 'results.db')}`,
    webhook_urls: `http://127.0.0.1:${port}/hook?token=s3cret`,
    webhook_max_attempts: 2,
    webhook_backoff_ms: 10,
    webhook_backoff_max_ms: 20,
  });
  t.after(() => app.close());
  for (const id of ['dl-1', 'dl-2']) {
    const res = await app.inject({ method: 'POST', url: '/v1/detect?line=line-9', headers: { 'content-type': 'image/jpeg', 'x-request-id': id }, payload: NG });
    assert.equal(res.statusCode, 200, res.body);
  }
  let letters: { seq: number; key: string; attempts: number; last_error: string | null; payload: { url: string; body: { id: string } } }[] = [];
  for (const until = Date.now() + 20_000; letters.length < 2; await new Promise((r) => setTimeout(r, 100))) {
    if (Date.now() > until) assert.fail(`no dead letters: ${JSON.stringify(letters)}`);
    letters = (await app.inject({ method: 'GET', url: '/v1/outputs/webhook/dead-letters' })).json().dead_letters;
  }
  assert.deepEqual(letters.map((l) => l.key).sort(), ['dl-1', 'dl-2']);
  for (const letter of letters) {
    assert.equal(letter.attempts, 2);
    assert.match(letter.last_error ?? '', /500/);
    assert.equal(letter.payload.url, `http://127.0.0.1:${port}/hook`, 'the query (a token) is not shown');
    assert.equal(letter.payload.body.id, letter.key);
  }
  assert.ok(!JSON.stringify(letters).includes('s3cret'));
  const listed = (await app.inject({ method: 'GET', url: '/v1/outputs' })).json().outputs[0];
  assert.equal(listed.dead_letters, 2);

  healthy = true;
  const one = await app.inject({ method: 'POST', url: '/v1/outputs/webhook/dead-letters/replay', payload: { seq: letters[0]!.seq } });
  assert.deepEqual(one.json(), { replayed: 1 });
  const rest = await app.inject({ method: 'POST', url: '/v1/outputs/webhook/dead-letters/replay', payload: {} });
  assert.deepEqual(rest.json(), { replayed: 1 });
  for (const until = Date.now() + 20_000; received.length < 2; await new Promise((r) => setTimeout(r, 100))) {
    if (Date.now() > until) assert.fail(`replayed letters not delivered: ${JSON.stringify(received)}`);
  }
  assert.deepEqual(received.sort(), ['dl-1', 'dl-2']);
  assert.deepEqual((await app.inject({ method: 'GET', url: '/v1/outputs/webhook/dead-letters' })).json().dead_letters, []);
});
