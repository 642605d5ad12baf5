import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JOB_STATE_CHANGES, REJECTED_REASONS, STREAM_EVENT_OUTCOMES, STREAM_FRAME_OUTCOMES } from '../src/metrics/metrics.js';
import { startApp } from './helpers/fixtures.js';

test('counter series known in advance are exported as 0 before anything happens, so rate() and alerts work from the first event', {
  timeout: 30_000,
}, async (t) => {
  const app = await startApp({});
  t.after(() => app.close());
  const text = (await app.inject({ url: '/metrics' })).body;
  const expected = [
    ...REJECTED_REASONS.map((reason) => `sightline_rejected_total{reason="${reason}"} 0`),
    ...JOB_STATE_CHANGES.map((state) => `sightline_jobs_total{state="${state}"} 0`),
    ...STREAM_FRAME_OUTCOMES.map((outcome) => `sightline_stream_frames_total{outcome="${outcome}"} 0`),
    ...STREAM_EVENT_OUTCOMES.map((outcome) => `sightline_stream_events_total{outcome="${outcome}"} 0`),
  ];
  for (const line of expected) assert.ok(text.split('\n').includes(line), `/metrics has ${line}`);
});
