import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tempDir } from './helpers/fixtures.js';
import { TestClock, historyConfig, testProcess } from './history-helpers.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2025, 0, 1);

test('storage stays within its bound over a simulated 31 days with every bucket written, and pruning keeps the whole retention', async (t) => {
  const tmp = tempDir('sightline-history-');
  t.after(() => tmp.cleanup());
  // The default shape scaled so that 31 days take seconds: fine 10 min kept 24 h, coarse 1 h kept 30 days.
  const config = historyConfig({
    store_url: `sqlite:${join(tmp.dir, 'results.db')}`,
    history_resolution_ms: 10 * 60_000,
    history_retention_ms: DAY,
    history_rollup_resolution_ms: HOUR,
    history_rollup_retention_ms: 30 * DAY,
    history_max_lines: 3,
  });
  const clock = new TestClock(T0);
  const processes = [testProcess(t, config, clock, 'api-1'), testProcess(t, config, clock, 'worker-1')];
  const res = config.history_resolution_ms;
  const rollup = config.history_rollup_resolution_ms;
  // Pruning runs once per coarse resolution, so a resolution's rows reach back at most retention + one prune interval.
  const fineBuckets = Math.ceil((config.history_retention_ms + rollup) / res) + 1;
  const coarseBuckets = Math.ceil((config.history_rollup_retention_ms + rollup) / rollup) + 1;
  // Five lines are sent, three are kept apart and the rest counted under _other.
  const linesPerBucket = config.history_max_lines + 1;
  const bound = {
    fine: { processes: processes.length * fineBuckets, lines: processes.length * fineBuckets * linesPerBucket },
    coarse: { processes: processes.length * coarseBuckets, lines: processes.length * coarseBuckets * linesPerBucket },
  };

  const store = processes[0]!.history.store;
  const counts = async () => {
    const c = await store.rowCounts();
    return { fine: c.get(res) ?? { processes: 0, lines: 0 }, coarse: c.get(rollup) ?? { processes: 0, lines: 0 } };
  };
  let maxSeen = { fine: 0, coarse: 0 };
  for (let at = T0; at <= T0 + 31 * DAY; at += res) {
    clock.t = at;
    for (const p of processes) for (const line of ['a', 'b', 'c', 'd', 'e']) p.result(line, 'ok', 12);
    await Promise.all(processes.map((p) => p.history.recorder.tick()));
    if ((at - T0) % DAY === 0) {
      const c = await counts();
      for (const kind of ['fine', 'coarse'] as const) {
        assert.ok(c[kind].processes <= bound[kind].processes, `day ${(at - T0) / DAY}: ${kind} process rows ${c[kind].processes} > ${bound[kind].processes}`);
        assert.ok(c[kind].lines <= bound[kind].lines, `day ${(at - T0) / DAY}: ${kind} line rows ${c[kind].lines} > ${bound[kind].lines}`);
      }
      maxSeen = { fine: Math.max(maxSeen.fine, c.fine.processes), coarse: Math.max(maxSeen.coarse, c.coarse.processes) };
    }
  }
  const end = await counts();
  for (const kind of ['fine', 'coarse'] as const) {
    assert.ok(end[kind].processes <= bound[kind].processes && end[kind].lines <= bound[kind].lines, `${kind}: ${JSON.stringify(end[kind])}`);
  }
  // Not pruned too early: every bucket of the retention is still there (per process: 24 h / 10 min = 144, 30 d / 1 h = 720).
  assert.ok(end.fine.processes >= processes.length * (DAY / res), `fine rows ${end.fine.processes}`);
  assert.ok(end.coarse.processes >= processes.length * ((30 * DAY) / rollup), `coarse rows ${end.coarse.processes}`);
  assert.equal(end.fine.lines, end.fine.processes * linesPerBucket);

  // The oldest coarse data still answers, the older is gone; lines past the cap are under _other.
  const month = await processes[1]!.history.query({ from: T0 + 31 * DAY - 30 * DAY, to: T0 + 31 * DAY, stepMs: DAY });
  assert.equal(month.resolution, 'coarse');
  assert.deepEqual(Object.keys(month.series.verdicts).sort(), ['_other', 'a', 'b', 'c']);
  // Each full day: 144 buckets × 2 processes × 5 results.
  assert.equal(month.series.results[1], 144 * 2 * 5);
  assert.equal(month.series.verdicts._other?.ok[1], 144 * 2 * 2);
  const gone = await processes[1]!.history.query({ from: T0, to: T0 + DAY - HOUR, stepMs: HOUR });
  assert.ok(
    gone.series.results.every((v) => v === null),
    'the first day is past the coarse retention',
  );
});
