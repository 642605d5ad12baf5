/**
 * The sessions' settings the model repository gets from the config (src/inference/from-config.ts,
 * docs/batching.md#thread-layout): single-threaded instances that do not spin, and a lone-request
 * session over every core that does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { repositoryOptions } from '../src/inference/from-config.js';
import { defaultConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';

const silent = createLogger('silent');

test('by default the instances are single-threaded and still, the lone-request session uses every core and spins', () => {
  const { instances, runner } = repositoryOptions(defaultConfig({}), silent, {}, 4);
  assert.equal(instances, 4);
  assert.equal(runner.intraOpThreads, 1);
  assert.equal(runner.intraOpSpinning, false);
  assert.equal(runner.loneRequestThreads, 4);
  assert.equal(runner.loneRequestSpinning, true);
});

test('each session kind takes its own spinning setting', () => {
  const quiet = repositoryOptions(defaultConfig({ lone_request_spinning: false }), silent, {}, 2).runner;
  assert.equal(quiet.loneRequestSpinning, false);
  assert.equal(quiet.intraOpSpinning, false);
  const busy = repositoryOptions(defaultConfig({ intra_op_spinning: true, lone_request_spinning: false }), silent, {}, 2).runner;
  assert.equal(busy.intraOpSpinning, true);
  assert.equal(busy.loneRequestSpinning, false);
});
