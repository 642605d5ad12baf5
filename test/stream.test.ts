import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LogCapture, solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { StreamClient, baseUrl, type Of } from './helpers/stream-client.js';
import { FRAME_PREFIX_BYTES, encodeFrame } from '../src/protocol/stream.js';

interface SampleLabel {
  verdict: 'ok' | 'ng';
}

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

test('frames on one connection come back as results under their ids, with the same detections as POST /v1/detect', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', stream_max_pending: 16 });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const image = await solidImage(640, 480, 'jpeg');
    const client = await StreamClient.open(app, '?line=cell-7');
    const hello = client.of('hello')[0]!;
    assert.equal(hello.protocol, 1);
    assert.equal(hello.limits.max_pending, 16);
    assert.equal(hello.limits.drop_policy, 'oldest');
    assert.deepEqual(hello.subscriptions, []);

    const frames = [
      { id: 'f-1', model: 'v8' },
      { id: 'f-2', model: 'v5', line: 'cell-9' },
      { id: 'f-3', model: 'e2e', conf: 0.65 },
      { id: 'f-4' },
      { id: 'f-5', model: 'v8', max_det: 1, priority: 'high' as const, timeout_ms: 60_000 },
    ];
    for (const f of frames) client.sendFrame(f, image);
    await client.until(() => frames.every((f) => client.answerFor(f.id)), 15_000, 'every answer');

    for (const f of frames) {
      const answer = client.answerFor(f.id) as Of<'result'>;
      assert.equal(answer.type, 'result', JSON.stringify(answer));
      const query = new URLSearchParams();
      for (const key of ['model', 'conf', 'max_det', 'priority'] as const) if (key in f) query.set(key, String((f as Record<string, unknown>)[key]));
      const sync = await app.inject({ method: 'POST', url: `/v1/detect?${query}`, headers: { 'content-type': 'image/jpeg' }, payload: image });
      assert.equal(sync.statusCode, 200, sync.body);
      const expected = sync.json() as { detections: unknown[]; verdict: string; model: unknown; image: unknown };
      assert.deepEqual(answer.result.detections, expected.detections, f.id);
      assert.equal(answer.result.verdict, expected.verdict, f.id);
      assert.deepEqual(answer.result.model, expected.model);
      assert.deepEqual(answer.result.image, { width: 640, height: 480 });
      assert.equal(answer.result.line, f.line ?? 'cell-7');
      assert.ok(answer.result.detections.length > 0, `${f.id} has detections`);
      assert.ok(answer.result.timings_ms.total > 0);
    }
    // max_det 1 and conf 0.65 were applied.
    assert.equal((client.answerFor('f-5') as Of<'result'>).result.detections.length, 1);
    assert.ok((client.answerFor('f-3') as Of<'result'>).result.detections.every((d) => d.score >= 0.65));
    const requestIds = frames.map((f) => (client.answerFor(f.id) as Of<'result'>).result.request_id);
    assert.equal(new Set(requestIds).size, frames.length, 'distinct request ids');

    // Stored (store_sync_results defaults on) with source "stream".
    const stored = await app.sightline.store.get(requestIds[0]!);
    assert.equal(stored?.source, 'stream');
    await client.close();
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('the built-in model over the stream: NG samples are "ng", OK samples "ok", each under its frame id', async () => {
  const samples = JSON.parse(readFileSync('samples/labels.json', 'utf8')) as Record<string, SampleLabel>;
  const files = Object.keys(samples);
  const app = await startApp({ models_dir: './models', stream_max_pending: files.length });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const client = await StreamClient.open(app, '?line=samples');
    for (const [i, file] of files.entries()) client.sendFrame({ id: `s${i}` }, readFileSync(join('samples', file)));
    await client.until(() => files.every((_, i) => client.answerFor(`s${i}`)), 60_000, 'every sample');
    for (const [i, file] of files.entries()) {
      const answer = client.answerFor(`s${i}`);
      assert.equal(answer?.type, 'result', `${file}: ${JSON.stringify(answer)}`);
      assert.equal((answer as Of<'result'>).result.verdict, samples[file]!.verdict, file);
    }
    assert.ok(files.some((f) => samples[f]!.verdict === 'ng') && files.some((f) => samples[f]!.verdict === 'ok'));
    assert.equal(client.of('dropped').length, 0);
    await client.close();
  } finally {
    await app.close();
  }
});

test("subscribers get only their lines' events, from stream frames of another connection and from POST /v1/detect", async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', stream_max_subscriptions: 3 });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const image = await solidImage(320, 240, 'png');
    const a = await StreamClient.open(app, '?lines=line-a');
    assert.deepEqual(a.of('hello')[0]!.subscriptions, ['line-a']);
    const b = await StreamClient.open(app);
    b.sendJson({ type: 'subscribe', lines: ['line-b'] });
    assert.deepEqual((await b.waitFor<Of<'subscriptions'>>((m) => m.type === 'subscriptions')).lines, ['line-b']);
    const all = await StreamClient.open(app, '?lines=*,line-a');

    const sender = await StreamClient.open(app, '?line=line-a');
    sender.sendFrame({ id: 'x1' }, image); // line-a from the query
    sender.sendFrame({ id: 'x2', line: 'line-b' }, image);
    sender.sendFrame({ id: 'x3', line: 'line-c' }, image);
    const post = async (line: string) => {
      const res = await fetch(`${baseUrl(app)}/v1/detect?line=${line}`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: new Uint8Array(image),
      });
      assert.equal(res.status, 200);
      return ((await res.json()) as { request_id: string }).request_id;
    };
    const syncB = await post('line-b');
    const syncA = await post('line-a');
    await sender.until(() => ['x1', 'x2', 'x3'].every((id) => sender.answerFor(id)?.type === 'result'), 10_000, 'sender results');
    // Result events only: camera state events depend on the line registry's timing.
    const events = (c: StreamClient) => c.of('event').flatMap((m) => (m.event.type === 'camera' ? [] : [m.event]));
    await a.until(() => events(a).length >= 2, 10_000, 'line-a events');
    await b.until(() => events(b).length >= 2, 10_000, 'line-b events');
    await all.until(() => events(all).length >= 5, 10_000, 'all events');
    await new Promise((r) => setTimeout(r, 200)); // nothing else is on its way

    const idOf = (c: StreamClient, id: string) => (c === sender ? undefined : (sender.answerFor(id) as Of<'result'>).result.request_id);
    const summary = (c: StreamClient) =>
      events(c)
        .map((e) => (e.type === 'result' ? `${e.line}/${e.source}/${e.result.request_id}` : 'other'))
        .sort();
    assert.deepEqual(summary(a), [`line-a/stream/${idOf(a, 'x1')}`, `line-a/sync/${syncA}`].sort());
    assert.deepEqual(summary(b), [`line-b/stream/${idOf(b, 'x2')}`, `line-b/sync/${syncB}`].sort());
    // "*" with line-a as well: every line, and line-a's events once only.
    assert.equal(events(all).length, 5, JSON.stringify(summary(all)));
    assert.deepEqual(new Set(events(all).map((e) => e.line)), new Set(['line-a', 'line-b', 'line-c']));
    assert.equal(sender.of('event').length, 0, 'the sender subscribed to nothing');

    // Unsubscribing stops the events.
    b.sendJson({ type: 'unsubscribe', lines: ['line-b', 'never-subscribed'] });
    await b.until(() => b.of('subscriptions').length === 2);
    assert.deepEqual(b.of('subscriptions')[1]!.lines, []);
    await post('line-b');
    await all.until(() => events(all).length >= 6, 10_000, 'the last event');
    assert.equal(events(b).length, 2);

    // The limit: 3 lines per connection, all or nothing.
    b.sendJson({ type: 'subscribe', lines: ['l1', 'l2'] });
    await b.until(() => b.of('subscriptions').length === 3);
    b.sendJson({ type: 'subscribe', lines: ['l3', 'l4'] });
    const refused = await b.waitFor<Of<'error'>>((m) => m.type === 'error');
    assert.equal(refused.error.code, 'INVALID_MESSAGE');
    assert.match(refused.error.message, /limit of 3/);
    b.sendJson({ type: 'subscribe', lines: ['l3'] });
    await b.until(() => b.of('subscriptions').length === 4);
    assert.deepEqual(b.of('subscriptions')[3]!.lines, ['l1', 'l2', 'l3']);

    // A query naming more lines than the limit is refused before the upgrade.
    await assert.rejects(StreamClient.open(app, '?lines=a,b,c,d'), /unexpected response 400/);
    await assert.rejects(StreamClient.open(app, '?lines=a,,b'), /unexpected response 400/);
    await assert.rejects(StreamClient.open(app, '?line=bad%20line'), /unexpected response 400/);
    for (const c of [a, b, all, sender]) await c.close();
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('heartbeat: a client that stops answering pings is closed with 1001 after the idle timeout; one that answers stays', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({
    models_dir: tmp.dir,
    default_model: 'v8',
    stream_ping_interval_ms: 100,
    stream_idle_timeout_ms: 500,
    stream_status_interval_ms: 100,
  });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const answering = await StreamClient.open(app);
    let pings = 0;
    answering.ws.on('ping', () => pings++);
    const silent = await StreamClient.open(app, '', { autoPong: false });
    const started = performance.now();
    const closed = await silent.waitClosed(10_000);
    const after = performance.now() - started;
    assert.equal(closed.code, 1001);
    assert.equal(closed.reason, 'idle timeout');
    assert.ok(after >= 400, `closed after ${after} ms, before the idle timeout`);
    // The answering client outlives several idle timeouts.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(answering.closed, undefined);
    assert.ok(pings >= 5, `${pings} pings`);
    // Application-level ping for browsers.
    answering.sendJson({ type: 'ping', id: 'p1' });
    assert.deepEqual(await answering.waitFor((m) => m.type === 'pong'), { type: 'pong', id: 'p1' });
    assert.ok(answering.of('status').length >= 5, 'status messages every 100 ms');
    await answering.close();
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('bad frames and messages get error messages with codes; the connection and the server keep working', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const body_limit_bytes = 256 * 1024;
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', body_limit_bytes, stream_max_pending: 32 });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const image = await solidImage(320, 240, 'jpeg');
    const client = await StreamClient.open(app);
    const prefix = (length: number, version = 1, magic = 0x534c) => {
      const p = Buffer.alloc(FRAME_PREFIX_BYTES);
      p.writeUInt16BE(magic, 0);
      p.writeUInt8(version, 2);
      p.writeUInt16BE(length, 4);
      return p;
    };
    const raw = (header: string, bytes: Uint8Array = image) => Buffer.concat([prefix(Buffer.byteLength(header)), Buffer.from(header), bytes]);
    const bad: { data: Buffer; code: string; id?: string; match?: RegExp }[] = [
      { data: Buffer.from('SL'), code: 'INVALID_FRAME', match: /shorter/ },
      { data: Buffer.concat([Buffer.from('GIF89a'), image]), code: 'INVALID_FRAME', match: /magic/ },
      { data: Buffer.concat([prefix(2, 9), Buffer.from('{}')]), code: 'INVALID_FRAME', match: /version 9/ },
      { data: Buffer.concat([prefix(5000), Buffer.alloc(5000)]), code: 'INVALID_FRAME', match: /header length/ },
      { data: Buffer.concat([prefix(100), Buffer.from('{"id":"x"}')]), code: 'INVALID_FRAME', match: /ends inside/ },
      { data: raw('{"id":"x",'), code: 'INVALID_FRAME', match: /JSON/ },
      { data: raw('[1,2]'), code: 'INVALID_FRAME', match: /not a JSON object/ },
      { data: raw('{"line":"a"}'), code: 'INVALID_FRAME', match: /id/ },
      { data: raw('{"id":"has space"}'), code: 'INVALID_FRAME' },
      { data: raw('{"id":"b1","conf":2}'), code: 'INVALID_FRAME', id: 'b1', match: /conf/ },
      { data: raw('{"id":"b2","priority":"urgent"}'), code: 'INVALID_FRAME', id: 'b2' },
      { data: raw('{"id":"b3","colour":"red"}'), code: 'INVALID_FRAME', id: 'b3' },
      { data: raw('{"id":"b4","timeout_ms":0}'), code: 'INVALID_FRAME', id: 'b4', match: /timeout_ms/ },
      { data: raw('{"id":"b5","line":"bad line"}'), code: 'INVALID_FRAME', id: 'b5' },
      { data: raw('{"id":"b6"}', Buffer.from('this is not an image at all')), code: 'INVALID_IMAGE', id: 'b6' },
      { data: raw('{"id":"b7"}', Buffer.alloc(0)), code: 'EMPTY_BODY', id: 'b7' },
      { data: raw('{"id":"b8","model":"nope"}'), code: 'MODEL_NOT_FOUND', id: 'b8' },
      { data: raw('{"id":"b9","model":"v8:7"}'), code: 'MODEL_NOT_FOUND', id: 'b9' },
    ];
    for (const b of bad) client.ws.send(b.data);
    await client.until(() => client.of('error').length >= bad.length, 10_000, 'every error');
    const errors = client.of('error');
    assert.equal(errors.length, bad.length);
    // Frames without a usable id are answered in order; match each error to its frame.
    for (const [i, b] of bad.entries()) {
      const err = b.id ? errors.find((e) => e.id === b.id) : errors[i];
      assert.ok(err, `an error for frame ${i}`);
      assert.equal(err.error.code, b.code, `frame ${i}: ${JSON.stringify(err)}`);
      if (b.match) assert.match(err.error.message, b.match, `frame ${i}`);
      if (!b.id) assert.equal(err.id, undefined, `frame ${i} has no usable id`);
    }

    const texts: [string, RegExp][] = [
      ['not json', /not JSON/],
      ['[]', /JSON object/],
      ['{"type":"dance"}', /unknown message type/],
      ['{"type":"subscribe"}', /lines/],
      ['{"type":"subscribe","lines":"a"}', /lines/],
      ['{"type":"subscribe","lines":["bad line"]}', /lines/],
      ['{"type":"subscribe","lines":[]}', /lines/],
      ['{"type":"ping","id":7}', /id/],
      ['{"type":"ping","extra":true}', /extra|additional|property/i],
    ];
    const before = client.of('error').length;
    for (const [text] of texts) client.ws.send(text);
    await client.until(() => client.of('error').length >= before + texts.length, 10_000, 'text errors');
    for (const [i, [text, match]] of texts.entries()) {
      const err = client.of('error')[before + i]!;
      assert.equal(err.error.code, 'INVALID_MESSAGE', text);
      assert.match(err.error.message, match, `${text}: ${err.error.message}`);
    }

    // Still working: a good frame, a ping.
    client.sendFrame({ id: 'good' }, image);
    assert.equal((await client.waitFor((m) => m.type !== 'error' && 'id' in m && m.id === 'good')).type, 'result');
    client.sendJson({ type: 'ping' });
    await client.waitFor((m) => m.type === 'pong');
    assert.equal(client.closed, undefined);

    // A frame over the size limit: ws closes that connection with 1009; the server goes on.
    const big = await StreamClient.open(app);
    big.ws.send(encodeFrame({ id: 'huge' }, Buffer.alloc(body_limit_bytes + 1)));
    assert.equal((await big.waitClosed()).code, 1009);
    client.sendFrame({ id: 'after-big' }, image);
    assert.equal((await client.waitFor((m) => 'id' in m && m.id === 'after-big')).type, 'result');

    // Not a WebSocket upgrade: 426 with an error body.
    const plain = await fetch(`${baseUrl(app)}/v1/stream`);
    assert.equal(plain.status, 426);
    assert.equal(((await plain.json()) as { error: { code: string } }).error.code, 'INVALID_REQUEST');
    assert.equal((await fetch(`${baseUrl(app)}/livez`)).status, 200);

    const metrics = await (await fetch(`${baseUrl(app)}/metrics`)).text();
    assert.equal(metricValue(metrics, 'sightline_stream_frames_total{outcome="failed"}'), bad.length);
    assert.equal(metricValue(metrics, 'sightline_stream_frames_total{outcome="processed"}'), 2);
    await client.close();
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test("status messages carry server-wide figures and this connection's counters; the connection gauge and logs follow connections", async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const logs = new LogCapture();
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8', stream_status_interval_ms: 300 }, { logs });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const image = await solidImage(320, 240, 'jpeg');
    const client = await StreamClient.open(app, '?client_kind=camera');
    const other = await StreamClient.open(app, '', { headers: { 'x-client-kind': 'dashboard' } });
    let metrics = await (await fetch(`${baseUrl(app)}/metrics`)).text();
    assert.equal(metricValue(metrics, 'sightline_connections{transport="websocket",client_kind="camera"}'), 1);
    assert.equal(metricValue(metrics, 'sightline_connections{transport="websocket",client_kind="dashboard"}'), 1);

    for (let i = 0; i < 3; i++) client.sendFrame({ id: `f${i}` }, image);
    client.ws.send(Buffer.from('junk'));
    await client.until(() => client.of('result').length === 3 && client.of('error').length === 1);
    const res = await fetch(`${baseUrl(app)}/v1/detect`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(image) });
    assert.equal(res.status, 200);
    const status = await client.waitFor<Of<'status'>>((m) => m.type === 'status' && m.connection.processed === 3 && m.throughput_fps > 0);
    assert.equal(status.connections, 2);
    assert.deepEqual(
      { ...status.connection, events_skipped: undefined },
      { received: 4, processed: 3, failed: 1, dropped: 0, in_flight: 0, pending: 0, events_skipped: undefined },
    );
    assert.equal(typeof status.latency_ms.p50, 'number');
    assert.equal(typeof status.latency_ms.p99, 'number');
    assert.ok(status.latency_ms.p99! >= status.latency_ms.p50!);
    assert.equal(status.queue_depth, 0);
    assert.ok(!Number.isNaN(Date.parse(status.at)));
    // The live window counts every source of this process: 3 stream results and the sync one.
    const snapshot = app.sightline.live.snapshot(60_000);
    assert.deepEqual(snapshot.by_source, { sync: 1, job: 0, stream: 3 });

    await other.close();
    await client.close();
    await new Promise((r) => setTimeout(r, 100));
    metrics = await (await fetch(`${baseUrl(app)}/metrics`)).text();
    assert.equal(metricValue(metrics, 'sightline_connections{transport="websocket",client_kind="camera"}'), 0);
    assert.equal(metricValue(metrics, 'sightline_connections{transport="websocket",client_kind="dashboard"}'), 0);
    const opened = logs.lines.filter((l) => l.event === 'connection_open');
    const closed = logs.lines.filter((l) => l.event === 'connection_close');
    assert.equal(opened.length, 2);
    assert.equal(closed.length, 2);
    const camera = closed.find((l) => l.client_kind === 'camera')!;
    assert.equal(camera.reason, 'client_closed');
    assert.equal(camera.remote_address, '127.0.0.1');
    assert.equal(camera.processed, 3);
    assert.equal(typeof camera.connection_id, 'string');
    assert.equal(camera.connection_id, client.of('hello')[0]!.connection_id);
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('app.close() closes stream connections with 1001 and is not held up by them', async () => {
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const app = await startApp({ models_dir: tmp.dir, default_model: 'v8' });
  let closedApp = false;
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const clients = await Promise.all([StreamClient.open(app), StreamClient.open(app, '?lines=x')]);
    // A client that never completes the close handshake either.
    const stubborn = await StreamClient.open(app, '', { autoPong: false });
    stubborn.ws.pause();
    const started = performance.now();
    await app.close();
    closedApp = true;
    const took = performance.now() - started;
    for (const c of clients) assert.equal((await c.waitClosed(5000)).code, 1001);
    assert.ok(took < 10_000, `app.close() took ${took} ms`);
    stubborn.ws.terminate();
  } finally {
    if (!closedApp) await app.close();
    tmp.cleanup();
  }
});
