/**
 * A `sightline serve` killed (SIGKILL) while webhook attempts are in flight:
 * its claims on the outbox end with their lease, and the next process on the
 * same data directory delivers them (at least once: the receiver may see an
 * attempt twice, and dedupes on Idempotency-Key).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { tempDir } from '../helpers/fixtures.js';
import { ROOT, SightlineProcess, cleanups, waitFor } from '../helpers/cli-process.js';

const IMAGE = readFileSync(join(ROOT, 'samples', 'ng-01.jpg'));
/** webhook_timeout_ms of the processes: a claim's lease is this + 5 s. */
const TIMEOUT_MS = 10_000;

test('a process killed with attempts in flight: its claims come back after their lease and the next process delivers them', { timeout: 90_000 }, async (t) => {
  const defer = cleanups(t);
  const tmp = tempDir('sightline-webhook-crash-');
  defer(tmp.cleanup);
  const received: { headers: IncomingHttpHeaders; answered: boolean }[] = [];
  let hang = true;
  const held = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received.push({ headers: req.headers, answered: !hang });
      if (hang) held.add(res);
      else res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const dataDir = join(tmp.dir, 'data');
  const args = [
    'serve',
    ...['--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir, '--no-snapshots'],
    ...['--instances', '1', '--intra-op-threads', '1', '--log-level', 'info'],
    ...['--webhook-urls', `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, '--webhook-timeout-ms', String(TIMEOUT_MS)],
  ];
  const start = (name: string) => {
    const p = new SightlineProcess(name, args);
    defer(() => p.kill());
    return p;
  };

  const first = start('first');
  const base = await first.baseUrl();
  await waitFor(
    async () =>
      (await fetch(`${base}/readyz`).then(
        (r) => r.status,
        () => 0,
      )) === 200,
    'the model loaded',
    60_000,
  );
  const ids = Array.from({ length: 3 }, (_, i) => `crash-${i}-${randomUUID()}`);
  for (const id of ids) {
    const res = await fetch(`${base}/v1/detect?line=crash&camera=c`, {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg', 'x-request-id': id },
      body: new Uint8Array(IMAGE),
    });
    assert.equal(res.status, 200, await res.text());
  }
  await waitFor(() => ids.every((id) => received.some((r) => r.headers['idempotency-key'] === id)), 'three attempts held by the receiver', 15_000);
  await first.kill();
  const killedAt = Date.now();
  for (const res of held) res.destroy();

  // The killed process's claims are still in the store, each for the lease.
  const db = new Database(join(dataDir, 'results.db'), { readonly: true });
  const rows = db.prepare("select key, claimed_until from output_outbox where output = 'webhook' and dead_at is null").all() as {
    key: string;
    claimed_until: number;
  }[];
  db.close();
  assert.deepEqual(new Set(rows.map((r) => r.key)), new Set(ids), 'all three still in the outbox');
  for (const row of rows) assert.ok(row.claimed_until > killedAt, 'and claimed by the dead process');
  const leaseEnds = Math.max(...rows.map((r) => r.claimed_until));

  hang = false;
  const second = start('second');
  await second.baseUrl();
  await waitFor(
    () => ids.every((id) => received.some((r) => r.answered && r.headers['idempotency-key'] === id)),
    () => `delivered by the next process\n${second.tail()}`,
    45_000,
  );
  const deliveredAt = Date.now();
  assert.ok(deliveredAt >= leaseEnds, 'not before the lease ended: a live holder is never raced');
  process.stderr.write(`killed-process claims delivered ${deliveredAt - killedAt} ms after the kill (lease ended ${leaseEnds - killedAt} ms after it)\n`);
  second.child.kill('SIGTERM');
  await second.exited;
});
