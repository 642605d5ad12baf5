/** bench/report.ts: a second run of a model on the same day is written beside the first, never over it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeReport, type BenchResult } from '../bench/report.js';
import { tempDir } from './helpers/fixtures.js';

const RESULT = new URL('../bench/results/2026-12-04-yolov8n_shape_320-sixth-run.json', import.meta.url);

test('a report never replaces one already written for the same model and day', async (t) => {
  const tmp = tempDir('sightline-bench-report-');
  t.after(tmp.cleanup);
  const first: BenchResult = JSON.parse(readFileSync(RESULT, 'utf8'));
  const second: BenchResult = { ...first, notes: [...first.notes, 'the second run'] };
  const a = await writeReport(first, tmp.dir);
  const b = await writeReport(second, tmp.dir);
  const day = first.startedAt.slice(0, 10);
  assert.deepEqual(
    a.map((p) => p.slice(tmp.dir.length + 1)),
    [`${day}-${first.model.name}.md`, `${day}-${first.model.name}.json`],
  );
  assert.deepEqual(
    b.map((p) => p.slice(tmp.dir.length + 1)),
    [`${day}-${first.model.name}-2.md`, `${day}-${first.model.name}-2.json`],
  );
  assert.equal(readdirSync(tmp.dir).length, 4);
  assert.ok(!readFileSync(a[0]!, 'utf8').includes('the second run'), 'the first report is as it was written');
  assert.ok(readFileSync(join(b[0]!), 'utf8').includes('the second run'));
  assert.deepEqual(JSON.parse(readFileSync(a[1]!, 'utf8')).notes, first.notes);
});
