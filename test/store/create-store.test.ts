import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createResultStore } from '../../src/store/index.js';

test('createResultStore picks the back end from the URL scheme', async () => {
  const sqlite = createResultStore('sqlite::memory:');
  assert.equal(sqlite.kind, 'sqlite');
  await sqlite.close();
  // Nothing connects before first use, so no server is needed here.
  for (const url of ['postgres://u@127.0.0.1:1/db', 'postgresql://u@127.0.0.1:1/db']) {
    const pg = createResultStore(url, { schema: 'sightline' });
    assert.equal(pg.kind, 'postgres');
    await pg.close();
  }
});

test('unknown or empty store URLs fail with a message that names the accepted forms', () => {
  assert.throws(() => createResultStore('mysql://u@h/db'), /scheme "mysql:".*sqlite:PATH.*postgres:\/\//);
  assert.throws(() => createResultStore('results.db'), /sqlite:PATH/);
  assert.throws(() => createResultStore('sqlite:'), /names no file/);
});

test('a postgres schema that is not a plain identifier is refused', () => {
  assert.throws(() => createResultStore('postgres://u@h/db', { schema: 'x; drop table results' }), /not a plain identifier/);
});

test('an unreachable postgres makes operations fail with STORE_UNAVAILABLE, not a crash', async () => {
  // Port 1 on loopback refuses at once.
  const store = createResultStore('postgres://u@127.0.0.1:1/db', { connectTimeoutMs: 2000 });
  await assert.rejects(store.waitUntilReady(), { code: 'STORE_UNAVAILABLE' });
  await assert.rejects(store.get('x'), { code: 'STORE_UNAVAILABLE' });
  await store.close();
});
