/**
 * Live results across replicas: two API-only `sightline serve --no-worker`
 * processes and one `sightline worker` on RabbitMQ + PostgreSQL. A WebSocket
 * subscriber on the first API receives the results of work submitted to the
 * second (jobs, run by the worker; stream frames, run by the second API itself),
 * through the RabbitMQ event bus, and nothing of other lines.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect } from 'amqplib';
import WebSocket from 'ws';
import type { ResultEvent, SightlineEvent } from '../src/events/index.js';
import { encodeFrame, type ServerMessage } from '../src/protocol/stream.js';
import { deleteAmqpTopology } from '../src/queue/index.js';
import { tempDir } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { AMQP_URL, PG_URL, ROOT, SightlineProcess, cleanups, freshDatabase, waitFor } from './helpers/cli-process.js';
import { probeTcp } from './queue/helpers.js';

const RUNTIME_ARGS = ['--intra-op-threads', '1', '--instances', '1', '--log-level', 'info'];

/** A WebSocket client that keeps every server message. */
class StreamClient {
  readonly messages: ServerMessage[] = [];

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data, isBinary) => {
      if (!isBinary) this.messages.push(JSON.parse(data.toString()) as ServerMessage);
    });
  }

  static async open(url: string): Promise<StreamClient> {
    const socket = new WebSocket(url);
    const client = new StreamClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    socket.on('error', () => {});
    return client;
  }

  /** Result and job events (camera state events come and go with the timing of the line registry). */
  events(): SightlineEvent[] {
    return this.messages.flatMap((m) => (m.type === 'event' && m.event.type !== 'camera' ? [m.event] : []));
  }

  resultsOf(line: string): ResultEvent[] {
    return this.events().filter((e): e is ResultEvent => e.type === 'result' && e.line === line);
  }

  /** Subscribes and waits for the server's confirmation (sent once the subscription is bound on the broker). */
  async subscribe(lines: string[]): Promise<void> {
    const from = this.messages.length;
    this.socket.send(JSON.stringify({ type: 'subscribe', lines }));
    await waitFor(
      () => {
        const later = this.messages.slice(from);
        const error = later.find((m) => m.type === 'error');
        if (error) throw new Error(`subscribe failed: ${JSON.stringify(error)}`);
        return later.some((m) => m.type === 'subscriptions' && lines.every((l) => m.lines.includes(l)));
      },
      `subscriptions ${lines.join(',')}`,
      15_000,
    );
  }

  close(): void {
    this.socket.terminate();
  }
}

async function waitReady(base: string, proc: SightlineProcess, timeoutMs = 120_000): Promise<void> {
  await waitFor(
    async () => {
      if (!proc.alive) throw new Error(`${proc.name} exited (${proc.exitStatus})\n${proc.tail()}`);
      const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
      await res?.arrayBuffer();
      return res?.status === 200;
    },
    () => `${proc.name} /readyz\n${proc.tail()}`,
    timeoutMs,
  );
}

async function postJob(base: string, line: string, image: Buffer): Promise<string> {
  const res = await fetch(`${base}/v1/jobs?line=${line}`, {
    method: 'POST',
    headers: { 'content-type': 'image/jpeg' },
    body: new Uint8Array(image),
    signal: AbortSignal.timeout(30_000),
  });
  const body = (await res.json()) as { job_id?: string };
  assert.equal(res.status, 202, JSON.stringify(body));
  return body.job_id!;
}

test('distributed: a subscriber on one API receives the results of jobs and stream frames submitted to another', { timeout: 300_000 }, async (t) => {
  const amqp = new URL(AMQP_URL);
  const pgUrl = new URL(PG_URL);
  if (!requireOrSkip(t, await probeTcp(amqp.hostname, Number(amqp.port || 5672)), `RabbitMQ at ${amqp.host}`)) return;
  if (!requireOrSkip(t, await probeTcp(pgUrl.hostname, Number(pgUrl.port || 5432)), `PostgreSQL at ${pgUrl.host}`)) return;
  const defer = cleanups(t);

  // A prefix of its own: no broker lock needed, nothing shared with other runs.
  const prefix = `sightline-test-${randomUUID().slice(0, 8)}`;
  defer(async () => {
    await deleteAmqpTopology(AMQP_URL, prefix);
    const model = await connect(AMQP_URL);
    try {
      await (await model.createChannel()).deleteExchange(`${prefix}.events`);
    } finally {
      await model.close().catch(() => {});
    }
  });
  const { url: dbHref } = await freshDatabase(defer, 'sightline_stream');
  const tmp = tempDir('sightline-dstream-');
  defer(tmp.cleanup);

  const all: SightlineProcess[] = [];
  const start = (name: string, args: string[]) => {
    const p = new SightlineProcess(name, args);
    all.push(p);
    defer(() => p.kill());
    return p;
  };
  const sockets: StreamClient[] = [];
  defer(() => {
    for (const s of sockets) s.close();
  });
  const open = async (url: string) => {
    const s = await StreamClient.open(url);
    sockets.push(s);
    return s;
  };

  try {
    // Events follow the queue's broker (events_url empty); the built-in model from ./models.
    const shared = ['--queue-url', AMQP_URL, '--queue-prefix', prefix, '--store-url', dbHref, ...RUNTIME_ARGS];
    const serve = (name: string) => ['serve', '--no-worker', '--host', '127.0.0.1', '--port', '0', '--data-dir', join(tmp.dir, name), ...shared];
    // API 1 first: it creates job_states before the others start (processes that create it together race).
    const api1 = start('api-1', serve('api-1'));
    const base1 = await api1.baseUrl(120_000);
    await waitReady(base1, api1);
    const api2 = start('api-2', serve('api-2'));
    const worker = start('worker', ['worker', '--data-dir', join(tmp.dir, 'worker'), ...shared]);
    const base2 = await api2.baseUrl(120_000);
    await waitReady(base2, api2);
    await worker.waitEvent('worker_started', (e) => e.event === 'worker_started', 120_000);

    // On API 1: one subscriber of line-a and one of every line (the latter tells when line-b's results have gone by).
    const ws1 = base1.replace('http', 'ws');
    const lineA = await open(`${ws1}/v1/stream`);
    await lineA.subscribe(['line-a']);
    const everything = await open(`${ws1}/v1/stream`);
    await everything.subscribe(['*']);

    const image = readFileSync(join(ROOT, 'samples', 'ng-01.jpg'));
    // (a) Jobs on API 2, run by the worker.
    const jobA = await postJob(base2, 'line-a', image);
    const jobB = await postJob(base2, 'line-b', image);
    // (b) Stream frames on API 2, run by API 2 itself.
    const sender = await open(`${base2.replace('http', 'ws')}/v1/stream?line=line-a`);
    const frameIds = ['frame-1', 'frame-2', 'frame-b'];
    sender.socket.send(encodeFrame({ id: 'frame-1' }, image));
    sender.socket.send(encodeFrame({ id: 'frame-2', line: 'line-a' }, image));
    sender.socket.send(encodeFrame({ id: 'frame-b', line: 'line-b' }, image));
    const frameResults = await waitFor(
      () => {
        const failed = sender.messages.find((m) => m.type === 'error');
        if (failed) throw new Error(`frame failed on API 2: ${JSON.stringify(failed)}`);
        const results = sender.messages.flatMap((m) => (m.type === 'result' ? [m] : []));
        return results.length === frameIds.length && new Map(results.map((m) => [m.id, m.result.request_id]));
      },
      'the frame results on API 2',
      60_000,
    );
    const streamA = [frameResults.get('frame-1')!, frameResults.get('frame-2')!];
    const streamB = frameResults.get('frame-b')!;

    const ids = (events: ResultEvent[]) => new Set(events.map((e) => e.result.request_id));
    await waitFor(
      () => [jobA, ...streamA].every((id) => ids(lineA.resultsOf('line-a')).has(id)),
      () => `line-a results on API 1: want job ${jobA} and frames ${streamA.join(', ')}, have ${[...ids(lineA.resultsOf('line-a'))].join(', ')}`,
      120_000,
    );
    await waitFor(() => [jobB, streamB].every((id) => ids(everything.resultsOf('line-b')).has(id)), 'line-b results on the every-line subscriber', 120_000);
    await new Promise((r) => setTimeout(r, 300)); // both sockets are fed from one queue; let the last writes land

    const got = lineA.resultsOf('line-a');
    assert.equal(got.find((e) => e.result.request_id === jobA)?.source, 'job');
    assert.equal(got.find((e) => e.result.request_id === jobA)?.result.line, 'line-a');
    for (const id of streamA) assert.equal(got.find((e) => e.result.request_id === id)?.source, 'stream');
    assert.deepEqual(
      lineA.events().filter((e) => e.line !== 'line-a'),
      [],
      'the line-a subscriber got nothing of another line',
    );
    // Exactly once each: one bus queue per process, whatever the number of subscribers.
    assert.equal(
      lineA.events().length,
      3,
      `line-a events: ${lineA
        .events()
        .map((e) => e.line)
        .join(', ')}`,
    );
    t.diagnostic(`API 1 received job ${jobA} (run by the worker) and frames ${streamA.join(', ')} (run by API 2)`);
  } catch (err) {
    for (const p of all) process.stderr.write(`${p.tail()}\n`);
    throw err;
  }
});
