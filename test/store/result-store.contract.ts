import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Detection } from '../../src/protocol/results.js';
import type { NewResult, ResultQuery, ResultStore, StoredResult } from '../../src/store/index.js';

/** Where one test's data lives: every `open()` reaches the same data, so reopening can be tested. */
export interface StoreHarness {
  open(): ResultStore;
  /** Removes the data; runs after every store the test opened is closed. */
  cleanup(): Promise<void>;
}

/** Returns a fresh harness for one test, or undefined when the test was skipped (requireOrSkip). */
export type MakeHarness = (t: TestContext) => Promise<StoreHarness | undefined>;

const T0 = Date.UTC(2026, 0, 1, 8, 0, 0);
const at = (minutes: number) => new Date(T0 + minutes * 60_000);

const det = (label: string, score = 0.9, classId = 0): Detection => ({
  label,
  class_id: classId,
  score,
  box: { x1: 10.5, y1: 20, x2: 110.25, y2: 64 },
});

export function result(id: string, extra: Partial<NewResult> = {}): NewResult & { created_at: Date } {
  return {
    request_id: id,
    line: 'line-1',
    camera: 'default',
    model: { name: 'defects', version: '1' },
    verdict: 'ok',
    detections: [],
    image: { width: 1280, height: 720 },
    timings_ms: { queue: 0.4, decode: 2.1, preprocess: 1, infer: 18.2, postprocess: 0.3, total: 22.5 },
    source: 'sync',
    created_at: at(0),
    ...extra,
  };
}

const ids = (results: StoredResult[]) => results.map((r) => r.request_id);

async function saveAll(store: ResultStore, results: NewResult[]): Promise<void> {
  for (const r of results) assert.equal(await store.save(r), true, `save ${r.request_id}`);
}

/** Every result of a query, page after page, with the pages' sizes. */
async function drain(store: ResultStore, query: ResultQuery): Promise<{ all: StoredResult[]; pages: number[] }> {
  const all: StoredResult[] = [];
  const pages: number[] = [];
  let cursor: string | undefined;
  for (let guard = 0; guard < 1000; guard++) {
    const page = await store.list({ ...query, ...(cursor ? { cursor } : {}) });
    all.push(...page.results);
    pages.push(page.results.length);
    if (page.next_cursor === null) return { all, pages };
    cursor = page.next_cursor;
  }
  throw new Error('paging never ended');
}

/**
 * The behaviour every ResultStore back end must have (as tus-node-server's
 * stores contract). Each test gets data of its own from `makeHarness`.
 */
export function resultStoreContract(name: string, makeHarness: MakeHarness): void {
  /** Runs `body` with the harness's `open`; closes every store and cleans up afterwards. */
  async function withHarness(t: TestContext, body: (open: () => ResultStore) => Promise<void>): Promise<void> {
    const harness = await makeHarness(t);
    if (!harness) return;
    const opened: ResultStore[] = [];
    try {
      await body(() => {
        const store = harness.open();
        opened.push(store);
        return store;
      });
    } finally {
      await Promise.allSettled(opened.map((s) => s.close()));
      await harness.cleanup();
    }
  }

  /** Runs `body` with a store that is ready. */
  async function withStore(t: TestContext, body: (store: ResultStore, open: () => ResultStore) => Promise<void>): Promise<void> {
    await withHarness(t, async (open) => {
      const store = open();
      await store.waitUntilReady();
      await body(store, open);
    });
  }

  describe(`ResultStore contract: ${name}`, () => {
    test('a saved result reads back field for field', async (t) => {
      await withStore(t, async (store) => {
        const saved = result('req-1', {
          line: 'line-3',
          model: { name: 'defects', version: '7' },
          verdict: 'ng',
          detections: [det('scratch', 0.91), det('dent', 0.42, 1), det('scratch', 0.5)],
          image: { width: 640, height: 480 },
          source: 'job',
          created_at: new Date(T0 + 123),
        });
        assert.equal(await store.save(saved), true);
        assert.deepEqual(await store.get('req-1'), { ...saved, review: null });
        assert.equal(await store.get('no-such-id'), undefined);
      });
    });

    test('created_at defaults to the time of saving', async (t) => {
      await withStore(t, async (store) => {
        const { created_at: _, ...rest } = result('req-now');
        const before = Date.now();
        await store.save(rest);
        const got = await store.get('req-now');
        assert.ok(got && got.created_at.getTime() >= before && got.created_at.getTime() <= Date.now());
      });
    });

    test('a second save of the same request_id is a no-op that returns false', async (t) => {
      await withStore(t, async (store) => {
        const first = result('dup', { verdict: 'ng', detections: [det('scratch')] });
        assert.equal(await store.save(first), true);
        assert.equal(await store.save(result('dup', { line: 'line-2', detections: [det('crack'), det('crack')] })), false);
        assert.deepEqual(await store.get('dup'), { ...first, review: null });
        assert.deepEqual(ids((await store.list()).results), ['dup']);
        const stats = await store.lineStats('line-1');
        assert.deepEqual(stats.verdicts, { ok: 0, ng: 1, check: 0 });
        assert.deepEqual(stats.labels, { scratch: { detections: 1, results: 1 } });
        assert.equal((await store.lineStats('line-2')).total, 0);
      });
    });

    test('10 parallel saves of one request_id leave exactly one row', async (t) => {
      await withStore(t, async (store) => {
        const outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) => store.save(result('race', { detections: [det('dent')], created_at: at(i) }))));
        assert.equal(outcomes.filter(Boolean).length, 1);
        const page = await store.list({ limit: 500 });
        assert.deepEqual(ids(page.results), ['race']);
        assert.deepEqual((await store.lineStats('line-1')).labels, { dent: { detections: 1, results: 1 } });
      });
    });

    test('list returns newest first, ties in created_at by request_id descending', async (t) => {
      await withStore(t, async (store) => {
        await saveAll(store, [
          result('b', { created_at: at(1) }),
          result('a', { created_at: at(2) }),
          result('c', { created_at: at(1) }),
          result('d', { created_at: at(0) }),
        ]);
        const page = await store.list();
        assert.deepEqual(ids(page.results), ['a', 'c', 'b', 'd']);
        assert.equal(page.next_cursor, null);
      });
    });

    test('every filter alone and combined', async (t) => {
      await withStore(t, async (store) => {
        await saveAll(store, [
          result('l1-ok-0', { created_at: at(0) }),
          result('l1-ng-scratch-1', { verdict: 'ng', detections: [det('scratch')], created_at: at(1) }),
          result('l1-ok-dent-2', { detections: [det('dent')], created_at: at(2) }),
          result('l2-ng-scratch-3', { line: 'line-2', verdict: 'ng', detections: [det('scratch'), det('dent')], created_at: at(3) }),
          result('l1-ng-crack-4', { verdict: 'ng', detections: [det('crack'), det('crack')], created_at: at(4) }),
          result('l2-ok-5', { line: 'line-2', created_at: at(5) }),
        ]);
        const q = async (query: ResultQuery) => ids((await store.list(query)).results);
        assert.deepEqual(await q({ line: 'line-2' }), ['l2-ok-5', 'l2-ng-scratch-3']);
        assert.deepEqual(await q({ verdict: 'ng' }), ['l1-ng-crack-4', 'l2-ng-scratch-3', 'l1-ng-scratch-1']);
        assert.deepEqual(await q({ verdict: 'ok' }), ['l2-ok-5', 'l1-ok-dent-2', 'l1-ok-0']);
        assert.deepEqual(await q({ label: 'scratch' }), ['l2-ng-scratch-3', 'l1-ng-scratch-1']);
        assert.deepEqual(await q({ label: 'crack' }), ['l1-ng-crack-4'], 'a result with a label twice is listed once');
        assert.deepEqual(await q({ label: 'nothing' }), []);
        // from is inclusive, to exclusive.
        assert.deepEqual(await q({ from: at(2) }), ['l2-ok-5', 'l1-ng-crack-4', 'l2-ng-scratch-3', 'l1-ok-dent-2']);
        assert.deepEqual(await q({ to: at(2) }), ['l1-ng-scratch-1', 'l1-ok-0']);
        assert.deepEqual(await q({ from: at(1), to: at(4) }), ['l2-ng-scratch-3', 'l1-ok-dent-2', 'l1-ng-scratch-1']);
        assert.deepEqual(await q({ line: 'line-1', verdict: 'ng' }), ['l1-ng-crack-4', 'l1-ng-scratch-1']);
        assert.deepEqual(await q({ line: 'line-1', label: 'scratch' }), ['l1-ng-scratch-1']);
        assert.deepEqual(await q({ verdict: 'ok', label: 'dent' }), ['l1-ok-dent-2']);
        assert.deepEqual(await q({ label: 'scratch', from: at(2), to: at(10) }), ['l2-ng-scratch-3']);
        assert.deepEqual(await q({ line: 'line-1', verdict: 'ng', label: 'crack', from: at(4), to: at(5) }), ['l1-ng-crack-4']);
        assert.deepEqual(await q({ line: 'line-1', verdict: 'ng', label: 'crack', from: at(0), to: at(4) }), []);
      });
    });

    test('cursor paging returns every row exactly once, in order', async (t) => {
      await withStore(t, async (store) => {
        // 23 rows on 8 distinct timestamps, so pages also split runs of equal created_at.
        const rows = Array.from({ length: 23 }, (_, i) =>
          result(`p-${String(i).padStart(2, '0')}`, {
            created_at: at(i % 8),
            verdict: i % 3 === 0 ? 'ng' : 'ok',
            detections: i % 2 === 0 ? [det('scratch')] : [],
          }),
        );
        await saveAll(store, rows);
        const expected = [...rows]
          .sort((a, b) => b.created_at.getTime() - a.created_at.getTime() || (a.request_id < b.request_id ? 1 : -1))
          .map((r) => r.request_id);

        const everything = await drain(store, { limit: 5 });
        assert.deepEqual(ids(everything.all), expected);
        assert.deepEqual(everything.pages, [5, 5, 5, 5, 3]);

        const exact = await drain(store, { limit: 23 });
        assert.deepEqual(exact.pages, [23], 'no empty trailing page when the rows fill the page exactly');

        const byLabel = await drain(store, { label: 'scratch', limit: 4 });
        assert.deepEqual(
          ids(byLabel.all),
          expected.filter((id) => Number(id.slice(2)) % 2 === 0),
        );
        const byVerdict = await drain(store, { verdict: 'ng', limit: 2, from: at(1) });
        const ngSince1 = new Set(rows.filter((r) => r.verdict === 'ng' && r.created_at >= at(1)).map((r) => r.request_id));
        assert.deepEqual(
          ids(byVerdict.all),
          expected.filter((id) => ngSince1.has(id)),
        );
      });
    });

    test('limit: 50 by default, at most 500, a bad limit or cursor is INVALID_REQUEST', async (t) => {
      await withStore(t, async (store) => {
        const rows = Array.from({ length: 501 }, (_, i) => result(`n-${String(i).padStart(3, '0')}`, { created_at: at(i) }));
        for (let i = 0; i < rows.length; i += 50) await Promise.all(rows.slice(i, i + 50).map((r) => store.save(r)));
        const first = await store.list();
        assert.equal(first.results.length, 50);
        assert.equal(first.results[0]?.request_id, 'n-500');
        assert.notEqual(first.next_cursor, null);
        const clamped = await store.list({ limit: 10_000 });
        assert.equal(clamped.results.length, 500);
        assert.notEqual(clamped.next_cursor, null);
        const rest = await store.list({ limit: 500, cursor: clamped.next_cursor! });
        assert.deepEqual(ids(rest.results), ['n-000']);
        assert.equal(rest.next_cursor, null);
        assert.equal((await store.list({ limit: 1 })).results.length, 1);
        for (const limit of [0, -1, 1.5, Number.NaN]) {
          await assert.rejects(store.list({ limit }), { code: 'INVALID_REQUEST' }, `limit ${limit}`);
        }
        for (const cursor of ['garbage', Buffer.from('[1,2]').toString('base64url'), '']) {
          await assert.rejects(store.list({ cursor }), { code: 'INVALID_REQUEST' }, `cursor ${cursor}`);
        }
      });
    });

    test('lineStats counts verdicts and labels of one line in a window', async (t) => {
      await withStore(t, async (store) => {
        await saveAll(store, [
          result('s0', { verdict: 'ng', detections: [det('scratch'), det('scratch'), det('dent')], created_at: at(0) }),
          result('s1', { detections: [det('dent')], created_at: at(1) }),
          result('s2', { created_at: at(2) }),
          result('s3', { verdict: 'ng', detections: [det('crack')], created_at: at(3) }),
          result('s4', { verdict: 'ng', detections: [det('scratch')], created_at: at(4) }),
          result('other-line', { line: 'line-2', verdict: 'ng', detections: [det('scratch')], created_at: at(1) }),
        ]);
        const all = await store.lineStats('line-1');
        assert.deepEqual(all, {
          line: 'line-1',
          from: null,
          to: null,
          total: 5,
          verdicts: { ok: 2, ng: 3, check: 0 },
          labels: { crack: { detections: 1, results: 1 }, dent: { detections: 2, results: 2 }, scratch: { detections: 3, results: 2 } },
        });
        const window = await store.lineStats('line-1', { from: at(1), to: at(4) });
        assert.deepEqual(window, {
          line: 'line-1',
          from: at(1),
          to: at(4),
          total: 3,
          verdicts: { ok: 2, ng: 1, check: 0 },
          labels: { crack: { detections: 1, results: 1 }, dent: { detections: 1, results: 1 } },
        });
        assert.deepEqual(await store.lineStats('idle-line', { from: at(0) }), {
          line: 'idle-line',
          from: at(0),
          to: null,
          total: 0,
          verdicts: { ok: 0, ng: 0, check: 0 },
          labels: {},
        });
      });
    });

    test('invalid results are refused with INVALID_REQUEST', async (t) => {
      await withStore(t, async (store) => {
        await assert.rejects(async () => store.save(result('')), { code: 'INVALID_REQUEST' });
        await assert.rejects(async () => store.save(result('x', { verdict: 'maybe' as 'ok' })), { code: 'INVALID_REQUEST' });
        await assert.rejects(async () => store.save(result('x', { source: 'fax' as 'job' })), { code: 'INVALID_REQUEST' });
        await assert.rejects(async () => store.save(result('x', { created_at: new Date(Number.NaN) })), { code: 'INVALID_REQUEST' });
        assert.equal(await store.get('x'), undefined);
      });
    });

    test('a review reads back with its result in get and list; a later review replaces it; an unknown id is undefined', async (t) => {
      await withStore(t, async (store) => {
        await saveAll(store, [result('rv-1', { verdict: 'ng', detections: [det('scratch')] }), result('rv-2', { created_at: at(1) })]);
        assert.equal((await store.get('rv-1'))?.review, null);
        const boxes = [
          { label: 'scratch', class_id: 0, box: { x1: 0, y1: 0, x2: 1280, y2: 720 } },
          { label: 'burr', box: { x1: 10.5, y1: 20.25, x2: 30, y2: 40 } },
        ];
        const first = await store.review('rv-1', { status: 'missed', note: 'two more', boxes, reviewer: 'alice', reviewed_at: at(5) });
        const expected = { status: 'missed', note: 'two more', boxes, reviewer: 'alice', reviewed_at: at(5) };
        assert.deepEqual(first, expected);
        assert.deepEqual(await store.get('rv-1'), { ...result('rv-1', { verdict: 'ng', detections: [det('scratch')] }), review: expected });
        const listed = (await store.list()).results;
        assert.deepEqual(
          listed.map((r) => [r.request_id, r.review?.status ?? null]),
          [
            ['rv-2', null],
            ['rv-1', 'missed'],
          ],
        );
        assert.deepEqual(listed[1]!.review, expected);
        // A second review replaces the first, field for field: no note and no boxes left over.
        const second = await store.review('rv-1', { status: 'confirmed', reviewer: 'bob', reviewed_at: at(6) });
        assert.deepEqual(second, { status: 'confirmed', note: null, boxes: null, reviewer: 'bob', reviewed_at: at(6) });
        assert.deepEqual((await store.get('rv-1'))?.review, second);
        assert.deepEqual(await store.reviewCounts('line-1'), { confirmed: 1, false_call: 0, missed: 0, unreviewed: 1 });
        // Fields beyond a box's own are not kept.
        const extra = { label: 'dent', box: { x1: 1, y1: 1, x2: 2, y2: 2, z: 9 }, score: 0.5 } as unknown as (typeof boxes)[number];
        await store.review('rv-2', { status: 'false_call', boxes: [extra], reviewer: 'carol' });
        assert.deepEqual((await store.get('rv-2'))?.review?.boxes, [{ label: 'dent', box: { x1: 1, y1: 1, x2: 2, y2: 2 } }]);
        const before = Date.now();
        assert.ok((await store.get('rv-2'))!.review!.reviewed_at.getTime() >= before - 60_000, 'reviewed_at defaults to now');
        assert.equal(await store.review('no-such-id', { status: 'confirmed', reviewer: 'alice' }), undefined);
        assert.equal((await store.list()).results.length, 2);
      });
    });

    test('the review filter: a status, none, any; combined with the other filters and paging', async (t) => {
      await withStore(t, async (store) => {
        // 12 results on 4 timestamps; reviews: i % 4 = 0 confirmed, 1 false_call, 2 missed, 3 none.
        const statuses = ['confirmed', 'false_call', 'missed'] as const;
        const rows = Array.from({ length: 12 }, (_, i) =>
          result(`f-${String(i).padStart(2, '0')}`, {
            line: i % 2 === 0 ? 'line-1' : 'line-2',
            verdict: i % 3 === 0 ? 'ng' : 'ok',
            detections: i % 3 === 0 ? [det('scratch')] : [],
            created_at: at(i % 4),
          }),
        );
        await saveAll(store, rows);
        for (const [i, r] of rows.entries()) {
          const status = statuses[i % 4];
          if (status) await store.review(r.request_id, { status, reviewer: 'rev', reviewed_at: at(100 - i) });
        }
        const expected = [...rows].sort((a, b) => b.created_at.getTime() - a.created_at.getTime() || (a.request_id < b.request_id ? 1 : -1));
        const want = (keep: (i: number, r: (typeof rows)[number]) => boolean) =>
          expected.filter((r) => keep(Number(r.request_id.slice(2)), r)).map((r) => r.request_id);
        const q = async (query: ResultQuery) => ids((await drain(store, { ...query, limit: 2 })).all);
        assert.deepEqual(
          await q({ review: 'confirmed' }),
          want((i) => i % 4 === 0),
        );
        assert.deepEqual(
          await q({ review: 'false_call' }),
          want((i) => i % 4 === 1),
        );
        assert.deepEqual(
          await q({ review: 'missed' }),
          want((i) => i % 4 === 2),
        );
        assert.deepEqual(
          await q({ review: 'none' }),
          want((i) => i % 4 === 3),
        );
        assert.deepEqual(
          await q({ review: 'any' }),
          want((i) => i % 4 !== 3),
        );
        assert.deepEqual(
          await q({ review: 'missed', line: 'line-1' }),
          want((i) => i % 4 === 2 && i % 2 === 0),
        );
        assert.deepEqual(
          await q({ review: 'none', verdict: 'ng' }),
          want((i) => i % 4 === 3 && i % 3 === 0),
        );
        assert.deepEqual(
          await q({ review: 'any', label: 'scratch' }),
          want((i) => i % 4 !== 3 && i % 3 === 0),
        );
        assert.deepEqual(
          await q({ review: 'confirmed', label: 'scratch', line: 'line-1' }),
          want((i) => i % 4 === 0 && i % 3 === 0),
        );
        assert.deepEqual(
          await q({ review: 'false_call', from: at(1), to: at(2) }),
          want((i, r) => i % 4 === 1 && r.created_at.getTime() === at(1).getTime()),
        );
        // Filtering is by the current review: re-reviewing moves a result between filters.
        await store.review('f-03', { status: 'confirmed', reviewer: 'rev' });
        assert.ok((await q({ review: 'confirmed' })).includes('f-03'));
        assert.ok(!(await q({ review: 'none' })).includes('f-03'));
        await assert.rejects(store.list({ review: 'maybe' as 'any' }), { code: 'INVALID_REQUEST' });
      });
    });

    test('reviewCounts: reviews by status and the unreviewed results of one line in a window of result times', async (t) => {
      await withStore(t, async (store) => {
        await saveAll(store, [
          result('c0', { created_at: at(0) }),
          result('c1', { created_at: at(1) }),
          result('c2', { created_at: at(2) }),
          result('c3', { created_at: at(3) }),
          result('c4', { created_at: at(4) }),
          result('other', { line: 'line-2', created_at: at(1) }),
        ]);
        await store.review('c0', { status: 'confirmed', reviewer: 'r' });
        await store.review('c1', { status: 'false_call', reviewer: 'r' });
        await store.review('c2', { status: 'false_call', reviewer: 'r' });
        await store.review('c3', { status: 'missed', boxes: [{ label: 'dent', box: { x1: 1, y1: 1, x2: 5, y2: 5 } }], reviewer: 'r' });
        await store.review('other', { status: 'missed', reviewer: 'r' });
        assert.deepEqual(await store.reviewCounts('line-1'), { confirmed: 1, false_call: 2, missed: 1, unreviewed: 1 });
        assert.deepEqual(await store.reviewCounts('line-1', { from: at(1), to: at(4) }), { confirmed: 0, false_call: 2, missed: 1, unreviewed: 0 });
        assert.deepEqual(await store.reviewCounts('line-1', { from: at(4) }), { confirmed: 0, false_call: 0, missed: 0, unreviewed: 1 });
        assert.deepEqual(await store.reviewCounts('line-2'), { confirmed: 0, false_call: 0, missed: 1, unreviewed: 0 });
        assert.deepEqual(await store.reviewCounts('idle'), { confirmed: 0, false_call: 0, missed: 0, unreviewed: 0 });
        // A re-review moves the count; it does not add one.
        await store.review('c1', { status: 'confirmed', reviewer: 'r' });
        assert.deepEqual(await store.reviewCounts('line-1'), { confirmed: 2, false_call: 1, missed: 1, unreviewed: 1 });
        await assert.rejects(store.reviewCounts('line-1', { from: new Date(Number.NaN) }), { code: 'INVALID_REQUEST' });
      });
    });

    test('invalid reviews are refused with INVALID_REVIEW and change nothing', async (t) => {
      await withStore(t, async (store) => {
        await store.save(result('bad', { image: { width: 640, height: 480 } }));
        const box = (x1: number, y1: number, x2: number, y2: number, label = 'dent') => ({ label, box: { x1, y1, x2, y2 } });
        const cases: [string, Parameters<ResultStore['review']>[1]][] = [
          ['status', { status: 'maybe' as 'missed', reviewer: 'r' }],
          ['note', { status: 'confirmed', note: 'x'.repeat(2001), reviewer: 'r' }],
          ['reviewer', { status: 'confirmed', reviewer: '' }],
          ['boxes not a list', { status: 'missed', boxes: 'here' as unknown as [], reviewer: 'r' }],
          ['too many boxes', { status: 'missed', boxes: Array.from({ length: 1001 }, () => box(1, 1, 2, 2)), reviewer: 'r' }],
          ['empty label', { status: 'missed', boxes: [box(1, 1, 2, 2, '  ')], reviewer: 'r' }],
          ['long label', { status: 'missed', boxes: [box(1, 1, 2, 2, 'x'.repeat(129))], reviewer: 'r' }],
          ['label with a line break', { status: 'missed', boxes: [box(1, 1, 2, 2, 'a\nb')], reviewer: 'r' }],
          ['class_id', { status: 'missed', boxes: [{ ...box(1, 1, 2, 2), class_id: -1 }], reviewer: 'r' }],
          ['NaN', { status: 'missed', boxes: [box(Number.NaN, 1, 2, 2)], reviewer: 'r' }],
          ['Infinity', { status: 'missed', boxes: [box(1, 1, Number.POSITIVE_INFINITY, 2)], reviewer: 'r' }],
          ['x1 = x2', { status: 'missed', boxes: [box(5, 1, 5, 2)], reviewer: 'r' }],
          ['y1 > y2', { status: 'missed', boxes: [box(1, 9, 5, 2)], reviewer: 'r' }],
          ['negative', { status: 'missed', boxes: [box(-1, 1, 5, 2)], reviewer: 'r' }],
          ['past the width', { status: 'missed', boxes: [box(1, 1, 5, 2), box(600, 1, 641, 2)], reviewer: 'r' }],
          ['past the height', { status: 'missed', boxes: [box(1, 1, 5, 481)], reviewer: 'r' }],
        ];
        for (const [why, review] of cases) {
          await assert.rejects(async () => store.review('bad', review), { code: 'INVALID_REVIEW' }, why);
        }
        const edge = await store.review('bad', { status: 'missed', boxes: [box(0, 0, 640, 480)], reviewer: 'r' });
        assert.deepEqual(edge?.boxes, [box(0, 0, 640, 480)], 'a box may reach the image edges');
        await assert.rejects(async () => store.review('bad', { status: 'missed', boxes: [box(1, 1, 5, 481)], reviewer: 'r' }), { code: 'INVALID_REVIEW' });
        assert.deepEqual((await store.get('bad'))?.review?.boxes, [box(0, 0, 640, 480)], 'a refused review leaves the one before');
      });
    });

    test('close is idempotent and later calls fail with STORE_UNAVAILABLE', async (t) => {
      await withStore(t, async (store) => {
        let closes = 0;
        store.on('close', () => closes++);
        const saving = store.save(result('before-close'));
        await Promise.all([store.close(), store.close()]);
        await store.close();
        assert.equal(await saving, true, 'an operation under way when close was called completes');
        assert.equal(closes, 1);
        await assert.rejects(store.get('before-close'), { code: 'STORE_UNAVAILABLE' });
        await assert.rejects(store.waitUntilReady(), { code: 'STORE_UNAVAILABLE' });
      });
    });

    test('data survives closing and reopening', async (t) => {
      await withStore(t, async (store, open) => {
        await saveAll(store, [result('keep-1', { detections: [det('dent')] }), result('keep-2', { created_at: at(1) })]);
        await store.close();
        const reopened = open();
        await reopened.waitUntilReady();
        assert.deepEqual(ids((await reopened.list()).results), ['keep-2', 'keep-1']);
        assert.deepEqual(await reopened.get('keep-1'), { ...result('keep-1', { detections: [det('dent')] }), review: null });
        assert.equal(await reopened.save(result('keep-1')), false);
      });
    });

    test('stores opened at once on new data all become ready (migrations race)', async (t) => {
      await withHarness(t, async (open) => {
        const stores = [open(), open(), open()];
        await Promise.all(stores.map((s) => s.waitUntilReady()));
        await Promise.all(stores.map((s, i) => s.save(result(`replica-${i}`))));
        assert.equal((await stores[0]!.list()).results.length, 3);
        assert.equal(await stores[2]!.ping(), undefined);
      });
    });
  });
}
