import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ApiKeyNameTaken, type ApiKeyStore } from '../src/auth/index.js';

/** Where one test's keys live: every open() reaches the same data (another process, in effect). */
export interface ApiKeyHarness {
  open(): ApiKeyStore;
  /** Everything the database holds for the keys, as text: rows, or the file's bytes. */
  raw(): Promise<string>;
  cleanup(): Promise<void>;
}

export type MakeApiKeyHarness = (t: TestContext) => Promise<ApiKeyHarness | undefined>;

/** The contract every ApiKeyStore back end meets. */
export function apiKeyStoreContract(name: string, make: MakeApiKeyHarness): void {
  describe(`ApiKeyStore contract: ${name}`, () => {
    const withStore = (title: string, fn: (h: ApiKeyHarness, store: ApiKeyStore, t: TestContext) => Promise<void>) =>
      test(title, async (t) => {
        const harness = await make(t);
        if (!harness) return;
        const store = harness.open();
        try {
          await fn(harness, store, t);
        } finally {
          await store.close();
          await harness.cleanup();
        }
      });

    withStore('create returns a recognisable random key once; verify gives its identity', async (_h, store) => {
      const created = await store.create('line-3-camera', ['ingest']);
      assert.match(created.key, /^sl_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
      assert.equal(created.key.slice(3, 19), created.id);
      assert.deepEqual(created.roles, ['ingest']);
      assert.equal(created.revoked_at, null);
      const other = await store.create('line-4-camera', ['viewer', 'ingest']);
      assert.notEqual(other.key, created.key);
      assert.deepEqual(other.roles, ['ingest', 'viewer'], 'roles come back in ROLES order');
      assert.deepEqual(await store.verify(created.key), { name: 'line-3-camera', via: 'api_key', roles: ['ingest'], keyId: created.id });
      assert.equal((await store.verify(other.key))?.name, 'line-4-camera');
    });

    withStore('verify refuses malformed, unknown and tampered keys', async (_h, store) => {
      const { key, id } = await store.create('k', ['viewer']);
      const flipped = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
      for (const bad of [
        '',
        'sl_',
        key + 'x',
        key.slice(0, -1),
        flipped,
        `sl_${'0'.repeat(16)}_${key.slice(20)}`,
        key.replace('sl_', 'SL_'),
        `Bearer ${key}`,
      ]) {
        assert.equal(await store.verify(bad), undefined, JSON.stringify(bad));
      }
      assert.equal((await store.verify(key))?.keyId, id);
    });

    withStore('the key is stored hashed: its secret appears nowhere in the database', async (h, store) => {
      const { key } = await store.create('secretive', ['admin']);
      const secret = key.slice(20);
      const raw = await h.raw();
      assert.ok(raw.includes('secretive'), 'the raw dump sees the table');
      assert.ok(!raw.includes(secret), 'the secret is not stored');
      assert.ok(!raw.includes(key), 'the key is not stored');
      assert.ok(!raw.includes(Buffer.from(secret, 'base64url').toString('hex')), 'nor its bytes in hex');
    });

    withStore('revoke by name or id takes effect at once, also for another process', async (h, store) => {
      const a = await store.create('a', ['ingest']);
      const b = await store.create('b', ['viewer']);
      const other = h.open();
      try {
        assert.equal((await other.verify(a.key))?.name, 'a');
        const revoked = await other.revoke('a');
        assert.equal(revoked?.id, a.id);
        assert.ok(revoked?.revoked_at instanceof Date);
        assert.equal(await store.verify(a.key), undefined, 'the very next verify refuses it');
        assert.equal((await store.revoke(b.id))?.name, 'b');
        assert.equal(await other.verify(b.key), undefined);
        assert.equal(await store.revoke('a'), undefined, 'nothing left to revoke');
        assert.equal(await store.revoke('nope'), undefined);
      } finally {
        await other.close();
      }
    });

    withStore(
      'activeIds: which of the given key ids are still active, revocations by another process included (open streams are re-checked with it)',
      async (h, store) => {
        const a = await store.create('a', ['ingest']);
        const b = await store.create('b', ['viewer']);
        assert.deepEqual(await store.activeIds([]), new Set());
        assert.deepEqual(await store.activeIds([a.id, b.id, a.id, '0123456789abcdef']), new Set([a.id, b.id]));
        const other = h.open();
        try {
          await other.revoke('a');
        } finally {
          await other.close();
        }
        assert.deepEqual(await store.activeIds([a.id, b.id]), new Set([b.id]));
      },
    );

    withStore('names are unique among active keys; a revoked name can be reused', async (_h, store) => {
      const first = await store.create('dup', ['ingest']);
      await assert.rejects(store.create('dup', ['viewer']), (err: unknown) => err instanceof ApiKeyNameTaken && err.code === 'API_KEY_NAME_TAKEN');
      await store.revoke('dup');
      const second = await store.create('dup', ['viewer']);
      assert.notEqual(second.id, first.id);
      assert.equal(await store.verify(first.key), undefined);
      assert.deepEqual((await store.verify(second.key))?.roles, ['viewer']);
    });

    withStore('list shows active keys without secrets; includeRevoked shows all', async (_h, store) => {
      const a = await store.create('one', ['ingest']);
      await store.create('two', ['admin']);
      await store.revoke(a.id);
      const active = await store.list();
      assert.deepEqual(
        active.map((k) => k.name),
        ['two'],
      );
      assert.deepEqual(Object.keys(active[0]!).sort(), ['created_at', 'id', 'name', 'revoked_at', 'roles']);
      const all = await store.list({ includeRevoked: true });
      assert.deepEqual(
        all.map((k) => [k.name, k.revoked_at !== null]),
        [
          ['one', true],
          ['two', false],
        ],
      );
    });

    withStore('create refuses bad names and roles', async (_h, store) => {
      await assert.rejects(store.create('', ['ingest']), RangeError);
      await assert.rejects(store.create('has space', ['ingest']), RangeError);
      await assert.rejects(store.create('x'.repeat(65), ['ingest']), RangeError);
      await assert.rejects(store.create('ok', []), RangeError);
      await assert.rejects(store.create('ok', ['root' as never]), RangeError);
      assert.deepEqual(await store.list(), []);
    });
  });
}
