/**
 * cgroup limits from v1 and v2 file trees written to a temp dir with known
 * values, and what the thread layout, the memory limit and the system gauges
 * make of them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { defaultMaxRssBytes, effectiveLimits, readCgroupLimits, readCgroupUsage } from '../src/metrics/cgroup.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { startSystemSampler } from '../src/metrics/system-sampler.js';
import { layoutCores, threadLayout } from '../src/inference/thread-layout.js';
import { repositoryOptions } from '../src/inference/from-config.js';
import { defaultConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { tempDir } from './helpers/fixtures.js';

const GiB = 1024 ** 3;
const HOST = { cpus: 16, memoryBytes: 64 * GiB };

/** A cgroup tree under a temp dir: path → content. */
function tree(t: { after: (fn: () => void) => void }, files: Record<string, string>): string {
  const tmp = tempDir('sightline-cgroup-');
  t.after(tmp.cleanup);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(tmp.dir, path)), { recursive: true });
    writeFileSync(join(tmp.dir, path), `${content}\n`);
  }
  return tmp.dir;
}

// ---------------------------------------------------------------- v2

test('v2: cpu.max "150000 100000" is 1.5 CPUs, memory.max in bytes; usage from cpu.stat, memory.current − inactive_file', (t) => {
  const root = tree(t, {
    'cgroup.controllers': 'cpuset cpu io memory pids',
    'cpu.max': '150000 100000',
    'memory.max': String(2 * GiB),
    'cpu.stat': 'usage_usec 123456789\nuser_usec 100000000\nsystem_usec 23456789',
    'memory.current': String(GiB),
    'memory.stat': `anon 536870912\nfile 536870912\ninactive_file ${256 * 1024 ** 2}\nactive_file 268435456`,
  });
  assert.deepEqual(readCgroupLimits(root), { cpus: 1.5, memoryBytes: 2 * GiB });
  assert.deepEqual(readCgroupUsage(root), { cpuUsageUs: 123456789, memoryWorkingSetBytes: GiB - 256 * 1024 ** 2 });
  const limits = effectiveLimits(readCgroupLimits(root), HOST);
  assert.deepEqual(limits, { cpus: 1.5, memoryBytes: 2 * GiB, cpuFromCgroup: true, memoryFromCgroup: true });
  // 1.5 CPUs: one single-threaded instance (rounded down, see thread-layout.ts).
  assert.equal(layoutCores(limits.cpus), 1);
  assert.deepEqual(threadLayout(0, 0, layoutCores(limits.cpus)), { instances: 1, intraOpThreads: 1 });
  // max_rss_bytes 0: 75 % of the container's 2 GiB, not of the machine's 64.
  assert.equal(defaultMaxRssBytes(limits), 1.5 * GiB);
});

test('v2: "max" means no limit (the host counts); a quota with the default period; a quota above the host is capped', (t) => {
  const unlimited = tree(t, { 'cpu.max': 'max 100000', 'memory.max': 'max' });
  assert.deepEqual(readCgroupLimits(unlimited), { cpus: undefined, memoryBytes: undefined });
  assert.deepEqual(effectiveLimits(readCgroupLimits(unlimited), HOST), { cpus: 16, memoryBytes: 64 * GiB, cpuFromCgroup: false, memoryFromCgroup: false });
  assert.equal(defaultMaxRssBytes(effectiveLimits(readCgroupLimits(unlimited), HOST)), 48 * GiB);

  const four = tree(t, { 'cpu.max': '400000 100000', 'memory.max': String(128 * GiB) });
  const limits = effectiveLimits(readCgroupLimits(four), HOST);
  assert.equal(limits.cpus, 4);
  assert.deepEqual(threadLayout(0, 0, layoutCores(limits.cpus)), { instances: 4, intraOpThreads: 1 });
  assert.deepEqual(threadLayout(2, 0, layoutCores(limits.cpus)), { instances: 2, intraOpThreads: 2 });
  // A limit above what the machine has is no limit.
  assert.equal(limits.memoryBytes, 64 * GiB);
  assert.equal(limits.memoryFromCgroup, false);
  assert.equal(readCgroupLimits(tree(t, { 'cpu.max': '200000' })).cpus, 2);
  const big = effectiveLimits(readCgroupLimits(tree(t, { 'cpu.max': '3200000 100000' })), HOST);
  assert.equal(big.cpus, 16);
  assert.equal(big.cpuFromCgroup, false);
});

test('a quota under one CPU still gets one instance; 2.9 CPUs get two', (t) => {
  const small = effectiveLimits(readCgroupLimits(tree(t, { 'cpu.max': '50000 100000' })), HOST);
  assert.equal(small.cpus, 0.5);
  assert.equal(layoutCores(small.cpus), 1);
  assert.equal(layoutCores(2.9), 2);
});

// ---------------------------------------------------------------- v1

test('v1: cpu.cfs_quota_us ÷ cpu.cfs_period_us, memory.limit_in_bytes; usage from cpuacct.usage (ns) and memory.usage_in_bytes − total_inactive_file', (t) => {
  const root = tree(t, {
    'cpu,cpuacct/cpu.cfs_quota_us': '250000',
    'cpu,cpuacct/cpu.cfs_period_us': '100000',
    'cpu,cpuacct/cpuacct.usage': '5000000000',
    'memory/memory.limit_in_bytes': String(512 * 1024 ** 2),
    'memory/memory.usage_in_bytes': String(300 * 1024 ** 2),
    'memory/memory.stat': `cache 104857600\nrss 209715200\ntotal_inactive_file ${100 * 1024 ** 2}`,
  });
  assert.deepEqual(readCgroupLimits(root), { cpus: 2.5, memoryBytes: 512 * 1024 ** 2 });
  assert.deepEqual(readCgroupUsage(root), { cpuUsageUs: 5_000_000, memoryWorkingSetBytes: 200 * 1024 ** 2 });
  const limits = effectiveLimits(readCgroupLimits(root), HOST);
  assert.equal(layoutCores(limits.cpus), 2);
  assert.equal(defaultMaxRssBytes(limits), 384 * 1024 ** 2);
  // The layout the model repository gets from the config with these limits.
  const options = repositoryOptions(defaultConfig({ instances: 0, intra_op_threads: 0 }), createLogger('silent'), {}, limits.cpus);
  assert.equal(options.instances, 2);
  assert.equal(options.runner.intraOpThreads, 1);
});

test('v1: quota -1 and the page-aligned 2^63 memory limit mean no limit; separate cpu/ and cpuacct/ mounts are read too', (t) => {
  const root = tree(t, {
    'cpu/cpu.cfs_quota_us': '-1',
    'cpu/cpu.cfs_period_us': '100000',
    'cpuacct/cpuacct.usage': '1000',
    'memory/memory.limit_in_bytes': '9223372036854771712',
  });
  assert.deepEqual(readCgroupLimits(root), { cpus: undefined, memoryBytes: undefined });
  assert.equal(readCgroupUsage(root).cpuUsageUs, 1);
  const quota = tree(t, { 'cpu/cpu.cfs_quota_us': '100000', 'cpu/cpu.cfs_period_us': '50000' });
  assert.equal(readCgroupLimits(quota).cpus, 2);
});

// ---------------------------------------------------------------- nothing there

test('no cgroup files (or garbage in them): no limits, the host counts', (t) => {
  const empty = tree(t, {});
  assert.deepEqual(readCgroupLimits(empty), { cpus: undefined, memoryBytes: undefined });
  assert.deepEqual(readCgroupUsage(empty), { cpuUsageUs: undefined, memoryWorkingSetBytes: undefined });
  assert.deepEqual(readCgroupLimits(join(empty, 'does-not-exist')), { cpus: undefined, memoryBytes: undefined });
  const garbage = tree(t, { 'cpu.max': 'lots', 'memory.max': '-5' });
  assert.deepEqual(readCgroupLimits(garbage), { cpus: undefined, memoryBytes: undefined });
  // Defaults: this machine's figures.
  const host = effectiveLimits({ cpus: undefined, memoryBytes: undefined });
  assert.equal(host.cpus, availableParallelism());
  assert.equal(host.memoryBytes, totalmem());
  assert.equal(layoutCores(), Math.max(1, availableParallelism()));
});

// ---------------------------------------------------------------- the gauges

test('the system sampler measures a limited container against its limits and its own usage', async (t) => {
  const root = tree(t, {
    'cpu.max': '200000 100000',
    'memory.max': String(GiB),
    'cpu.stat': 'usage_usec 1000000',
    'memory.current': String(600 * 1024 ** 2),
    'memory.stat': `inactive_file ${100 * 1024 ** 2}`,
  });
  const metrics = createMetrics();
  // Against a 16-CPU, 64 GiB host, whatever this machine has, so the cgroup's figures are the ones that count.
  const limits = effectiveLimits(readCgroupLimits(root), HOST);
  const sampler = startSystemSampler({ metrics, logger: createLogger('silent'), intervalMs: 60_000, nvidiaSmiPath: '', cgroupRoot: root, limits });
  t.after(() => sampler.stop());
  const read = async (name: string) => (await metrics.registry.getSingleMetric(name)?.get())?.values[0]?.value;
  await sampler.sample();
  assert.equal(await read('sightline_cpu_limit_cores'), 2);
  assert.equal(await read('sightline_memory_limit_bytes'), GiB);
  assert.equal(await read('sightline_system_memory_total_bytes'), GiB);
  // The working set (current − inactive file cache), not the machine's used memory.
  assert.equal(await read('sightline_system_memory_used_bytes'), 500 * 1024 ** 2);
  // The first reading of the cgroup's CPU time is the baseline; 0.2 s of CPU later, over ≥ 0.2 s of wall time on 2 CPUs: at most 0.5.
  const before = Date.now();
  await new Promise((r) => setTimeout(r, 200));
  writeFileSync(join(root, 'cpu.stat'), 'usage_usec 1200000\n');
  await sampler.sample();
  const wall = (Date.now() - before) / 1000;
  const ratio = (await read('sightline_system_cpu_utilization_ratio')) ?? -1;
  assert.ok(ratio > 0 && ratio <= 0.5 && Math.abs(ratio - 0.2 / wall / 2) < 0.05, `container CPU ${ratio} (0.2 s over ${wall} s on 2 CPUs)`);
});
