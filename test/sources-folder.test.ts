import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { DONE_DIR, FAILED_DIR, PROCESSING_DIR } from '../src/sources/index.js';
import { stableRequestId } from '../src/sources/source.js';
import { startApp, tempDir } from './helpers/fixtures.js';

const LINE = 'line-h';
const POLL_MS = 150;
/** Well under POLL_MS: a file written in chunks this far apart changes size between two scans. */
const CHUNK_GAP_MS = 40;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A small JPEG, different for every n (so no two files are the same bytes). */
function jpeg(n: number): Promise<Buffer> {
  return sharp({ create: { width: 96, height: 64, channels: 3, background: { r: (n * 37) % 256, g: (n * 91) % 256, b: (n * 13) % 256 } } })
    .jpeg({ quality: 80 })
    .toBuffer();
}

const name = (n: number) => `img-${String(n).padStart(4, '0')}.jpg`;

/** Dropped the way a camera or a copy tool does: written under a dot name, renamed when complete. */
async function dropAtomic(folder: string, n: number): Promise<void> {
  const tmp = join(folder, `.${name(n)}.part`);
  writeFileSync(tmp, await jpeg(n));
  renameSync(tmp, join(folder, name(n)));
}

/** Written in place, slowly, in four chunks: the worst case, a file visible while half-written. */
async function dropSlowly(folder: string, n: number): Promise<void> {
  const bytes = await jpeg(n);
  const file = await open(join(folder, name(n)), 'w');
  try {
    const chunk = Math.ceil(bytes.length / 4);
    for (let at = 0; at < bytes.length; at += chunk) {
      await file.write(bytes.subarray(at, at + chunk));
      await file.sync();
      await sleep(CHUNK_GAP_MS);
    }
  } finally {
    await file.close();
  }
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 120_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const files = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => !f.startsWith('.')) : []);

test('a hot folder: 500 images across a restart, each inspected exactly once, none half-written, corrupt files in failed/', async (t) => {
  const { dir, cleanup } = tempDir('sightline-hot-');
  t.after(cleanup);
  const folder = join(dir, 'in');
  mkdirSync(folder);
  const storeFile = join(dir, 'results.db');
  const config = {
    data_dir: dir,
    store_url: `sqlite:${storeFile}`,
    sources: `hot=folder:${folder},line=${LINE},camera=cam-h`,
    source_poll_interval_ms: POLL_MS,
    instances: 1,
  };
  const done = join(folder, DONE_DIR);
  const failed = join(folder, FAILED_DIR);
  const corrupt = ['bad-1.jpg', 'bad-2.jpg', 'bad-3.png', 'notes.txt', 'bad-4.jpg'];
  let n = 0;

  // 200 while the server is stopped, with three corrupt files among them.
  for (; n < 200; n++) await dropAtomic(folder, n);
  writeFileSync(join(folder, corrupt[0]!), 'not a jpeg at all');
  writeFileSync(join(folder, corrupt[1]!), (await jpeg(9999)).subarray(0, 300)); // a truncated JPEG
  writeFileSync(join(folder, corrupt[2]!), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0]));

  let app: FastifyInstance | undefined = await startApp(config);
  t.after(() => app?.close());
  // 150 while it runs, 10 of them written slowly in place.
  for (; n < 350; n++) {
    if (n % 15 === 0) await dropSlowly(folder, n);
    else await dropAtomic(folder, n);
  }
  await waitFor('a first part processed', () => files(done).length >= 250);
  // A graceful stop midway: frames in hand finish and are moved, nothing is left claimed.
  await app.close();
  app = undefined;
  assert.deepEqual(files(join(folder, PROCESSING_DIR)), [], 'nothing left in .processing after a stop');
  const doneAtStop = files(done).length;
  assert.ok(doneAtStop < 350, `stopped midway (${doneAtStop} done)`);

  // 100 more while it is stopped, then a second server on the same folder and data.
  for (; n < 450; n++) await dropAtomic(folder, n);
  writeFileSync(join(folder, corrupt[3]!), 'operator notes, not an image\n');
  app = await startApp(config);
  for (; n < 500; n++) {
    if (n % 5 === 0) await dropSlowly(folder, n);
    else await dropAtomic(folder, n);
  }
  writeFileSync(join(folder, corrupt[4]!), Buffer.alloc(2048, 7));
  await waitFor('every file moved', () => files(folder).filter((f) => f !== DONE_DIR && f !== FAILED_DIR).length === 0 && files(done).length >= 500);
  await waitFor('failed files moved', () => files(failed).length === corrupt.length * 2);

  // done/: every image, once; failed/: exactly the corrupt files, each with its reason.
  assert.deepEqual(files(done).sort(), Array.from({ length: 500 }, (_, i) => name(i)).sort());
  assert.deepEqual(files(failed).sort(), [...corrupt, ...corrupt.map((c) => `${c}.error.txt`)].sort());
  for (const c of corrupt) assert.match(readFileSync(join(failed, `${c}.error.txt`), 'utf8'), /INVALID_IMAGE|UNSUPPORTED|IMAGE/, c);

  const sources = (await app.inject({ method: 'GET', url: '/v1/sources' })).json().sources;
  assert.equal(sources[0].state, 'up');
  await app.close();
  app = undefined;

  // Exactly once: one stored result per image, under the id its name, size and time give, and nothing else.
  const db = new Database(storeFile, { readonly: true });
  try {
    const rows = db.prepare('SELECT request_id, verdict FROM results WHERE line = ?').all(LINE) as { request_id: string; verdict: string }[];
    assert.equal(rows.length, 500, 'one result per image');
    const ids = new Set(rows.map((r) => r.request_id));
    for (const f of files(done)) {
      const s = statSync(join(done, f));
      assert.ok(ids.has(stableRequestId('hot', [f, s.size, s.mtimeMs])), `${f} has its result`);
    }
  } finally {
    db.close();
  }
});
