import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { INPUT, LABELS, LogCapture, manifest, RAW_BOXES, solidImage, startApp, tempDir, yolov8Output } from './helpers/fixtures.js';
import { waitFor } from './helpers/cli-process.js';

const until = <T>(check: () => T | Promise<T>, ms: number, what: string) => waitFor(check, what, ms);

// Version "ng" finds the fixture's boxes (a scratch at 0.9: NG); version "ok" finds nothing (OK).
const ngModel = () =>
  buildConstantModel({ output: yolov8Output(), outputShape: [4 + LABELS.length, RAW_BOXES.length + 1], inputWidth: INPUT, inputHeight: INPUT });
const okModel = () =>
  buildConstantModel({
    output: new Float32Array((4 + LABELS.length) * (RAW_BOXES.length + 1)),
    outputShape: [4 + LABELS.length, RAW_BOXES.length + 1],
    inputWidth: INPUT,
    inputHeight: INPUT,
  });
const MANIFEST = manifest({ format: 'yolov8' });

interface ModelRow {
  name: string;
  version: string;
  state: string;
  reason?: string;
  serving: boolean;
  in_flight: number;
}

const image = await solidImage(48, 32, 'jpeg');

async function detect(app: FastifyInstance, query = 'model=m', headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url: `/v1/detect?${query}`, headers: { 'content-type': 'image/jpeg', ...headers }, payload: image });
}

async function modelRows(app: FastifyInstance): Promise<ModelRow[]> {
  return (await app.inject('/v1/models')).json().models as ModelRow[];
}

async function row(app: FastifyInstance, version: string): Promise<ModelRow | undefined> {
  return (await modelRows(app)).find((m) => m.name === 'm' && m.version === version);
}

const post = (app: FastifyInstance, url: string, body?: object) =>
  app.inject({ method: 'POST', url, ...(body ? { headers: { 'content-type': 'application/json' }, payload: JSON.stringify(body) } : {}) });

test('poll: a version dropped in under load takes over with no failed request; the old one drains and is released', async () => {
  const tmp = tempDir();
  writeModel(tmp.dir, 'm', '1', ngModel(), MANIFEST);
  const logs = new LogCapture();
  const app = await startApp({ models_dir: tmp.dir, model_poll_interval_ms: 150 }, { logs });
  try {
    const seen: { status: number; version: string }[] = [];
    let running = true;
    const client = async () => {
      while (running) {
        const res = await detect(app);
        seen.push({ status: res.statusCode, version: res.statusCode === 200 ? res.json().model.version : res.body });
      }
    };
    const clients = Array.from({ length: 4 }, client);
    await until(() => seen.length > 20, 10_000, 'requests under way');
    // Written in two steps, as a copy would: the version waits for model.json and for its files to hold still.
    mkdirSync(join(tmp.dir, 'm', '2'));
    writeFileSync(join(tmp.dir, 'm', '2', 'model.onnx'), okModel());
    await new Promise((r) => setTimeout(r, 400));
    assert.match((await row(app, '2'))!.reason!, /waiting for model\.json/);
    writeFileSync(join(tmp.dir, 'm', '2', 'model.json'), JSON.stringify(MANIFEST));
    await until(async () => (await row(app, '1'))?.state === 'UNAVAILABLE', 20_000, 'version 1 released');
    const afterSwap = seen.length;
    await until(() => seen.length > afterSwap + 20, 10_000, 'more requests');
    running = false;
    await Promise.all(clients);

    const failed = seen.filter((s) => s.status !== 200);
    assert.deepEqual(failed, [], 'no request failed during the swap');
    const firstNew = seen.findIndex((s) => s.version === '2');
    assert.ok(firstNew > 0, 'version 1 answered first, then version 2');
    assert.ok(
      seen.slice(afterSwap).every((s) => s.version === '2'),
      'after the release only version 2 answers',
    );
    const v1 = (await row(app, '1'))!;
    assert.match(v1.reason!, /not selected by the version policy latest:1/);
    assert.equal(v1.in_flight, 0);
    assert.equal((await row(app, '2'))!.serving, true);
    // Warmed up before it took traffic, and the old one was drained before it was closed.
    const events = logs.lines.map((l) => l.event);
    assert.ok(events.indexOf('model_ready') < events.lastIndexOf('model_unloaded'));
    const unloaded = logs.lines.find((l) => l.event === 'model_unloaded' && l.version === '1')!;
    assert.equal(unloaded.abandoned, 0);
    const ready = logs.lines.filter((l) => l.event === 'model_ready').map((l) => l.version);
    assert.deepEqual(ready, ['1', '2']);
    // The answering version is in the log line of every result.
    assert.ok(logs.lines.filter((l) => l.event === 'detection_result').every((l) => l.version === '1' || l.version === '2'));
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('a corrupt new version leaves the serving one in place with the reason; fixed files are tried again', async () => {
  const tmp = tempDir();
  writeModel(tmp.dir, 'm', '1', ngModel(), MANIFEST);
  const app = await startApp({ models_dir: tmp.dir, model_poll_interval_ms: 100 });
  try {
    mkdirSync(join(tmp.dir, 'm', '2'));
    writeFileSync(join(tmp.dir, 'm', '2', 'model.onnx'), Buffer.from('not a protobuf, a truncated copy'));
    writeFileSync(join(tmp.dir, 'm', '2', 'model.json'), JSON.stringify(MANIFEST));
    await until(async () => (await row(app, '2'))?.state === 'FAILED', 10_000, 'version 2 FAILED');
    const v2 = (await row(app, '2'))!;
    assert.match(v2.reason!, /protobuf|parse|load/i);
    const v1 = (await row(app, '1'))!;
    assert.equal(v1.state, 'READY');
    assert.equal(v1.serving, true);
    const res = await detect(app);
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().model.version, '1');
    // Not retried on every scan while its files stay the same...
    await new Promise((r) => setTimeout(r, 400));
    assert.equal((await row(app, '2'))!.state, 'FAILED');
    // ...but once they change (the copy is redone), it loads and takes over.
    writeFileSync(join(tmp.dir, 'm', '2', 'model.onnx'), okModel());
    await until(async () => (await row(app, '2'))?.state === 'READY' && (await row(app, '1'))?.state === 'UNAVAILABLE', 10_000, 'version 2 serves');
    assert.equal((await detect(app)).json().model.version, '2');
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('canary 10 %: 10 ± 2 % of 2,000 requests, the same request id always to the same version; pinned lines; rollback in one call', async () => {
  const tmp = tempDir();
  writeModel(tmp.dir, 'm', '1', ngModel(), MANIFEST);
  writeModel(tmp.dir, 'm', '2', okModel(), MANIFEST);
  // explicit: nothing is rescanned, only the API changes what runs; specific:1 keeps version 2 out until the split names it.
  const app = await startApp({ models_dir: tmp.dir, model_control: 'explicit', model_version_policy: 'specific:1', max_queue: 1000 });
  try {
    assert.equal((await row(app, '2'))!.state, 'UNAVAILABLE');
    const set = await post(app, '/v1/models/m/traffic', { primary: '1', canary: { version: '2', percent: 10 } });
    assert.equal(set.statusCode, 200, set.body);
    assert.deepEqual(set.json(), { model: 'm', serving: '1', traffic: { primary: '1', canary: { version: '2', percent: 10, by: 'request' } } });
    // The canary's version was loaded and warmed up before the answer.
    assert.equal((await row(app, '2'))!.state, 'READY');

    const byId = new Map<string, string>();
    let canary = 0;
    for (let batch = 0; batch < 2000; batch += 50) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => detect(app, 'model=m', { 'x-request-id': `part-${batch + i}` })));
      for (const [i, res] of answers.entries()) {
        assert.equal(res.statusCode, 200, res.body);
        const version = res.json().model.version as string;
        byId.set(`part-${batch + i}`, version);
        if (version === '2') canary++;
      }
    }
    const share = canary / 2000;
    assert.ok(share >= 0.08 && share <= 0.12, `canary share ${share}`);
    for (const id of [
      'part-0',
      'part-1',
      'part-2',
      ...[...byId]
        .filter(([, v]) => v === '2')
        .map(([k]) => k)
        .slice(0, 5),
    ]) {
      for (let i = 0; i < 3; i++) assert.equal((await detect(app, 'model=m', { 'x-request-id': id })).json().model.version, byId.get(id), id);
    }
    // A request naming the version is not split.
    assert.equal((await detect(app, 'model=m:1', { 'x-request-id': [...byId].find(([, v]) => v === '2')![0] })).json().model.version, '1');

    // A pinned line always gets its version; other lines keep the split.
    await post(app, '/v1/models/m/traffic', { pins: { 'line-7': '2' } });
    for (let i = 0; i < 20; i++) assert.equal((await detect(app, 'model=m&line=line-7', { 'x-request-id': `pin-${i}` })).json().model.version, '2');
    // By line: every request of one line meets one version.
    await post(app, '/v1/models/m/traffic', { canary: { version: '2', percent: 50, by: 'line' } });
    for (const line of ['a', 'b', 'c', 'd']) {
      const versions = new Set<string>();
      for (let i = 0; i < 8; i++) versions.add((await detect(app, `model=m&line=${line}`, { 'x-request-id': `${line}-${i}` })).json().model.version);
      assert.equal(versions.size, 1, `line ${line}`);
    }

    const metrics = (await app.inject('/metrics')).body;
    assert.match(metrics, /sightline_model_version_requests_total\{model="m",version="2",route="canary"\} \d+/);
    assert.match(metrics, /sightline_model_version_requests_total\{model="m",version="2",route="pinned"\} 20/);

    // Rollback: one call, 100 % to the primary.
    const back = await post(app, '/v1/models/m/rollback');
    assert.equal(back.statusCode, 200, back.body);
    assert.deepEqual(back.json(), { model: 'm', serving: '1', traffic: { primary: '1' } });
    for (let i = 0; i < 100; i++) {
      const res = await detect(app, 'model=m&line=line-7', { 'x-request-id': [...byId].find(([, v]) => v === '2')![0] });
      assert.equal(res.json().model.version, '1');
    }
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('shadow: computed, never returned, and its agreement measured on a version that disagrees on purpose', async () => {
  const tmp = tempDir();
  writeModel(tmp.dir, 'm', '1', ngModel(), MANIFEST);
  writeModel(tmp.dir, 'm', '2', okModel(), MANIFEST);
  writeModel(tmp.dir, 'm', '3', ngModel(), MANIFEST);
  const app = await startApp({ models_dir: tmp.dir, model_version_policy: 'specific:1', model_poll_interval_ms: 60_000, store_sync_results: true });
  try {
    assert.equal((await post(app, '/v1/models/m/traffic', { shadow: { version: '2', percent: 100 } })).statusCode, 200);
    for (let i = 0; i < 20; i++) {
      const res = await detect(app);
      assert.equal(res.json().model.version, '1', 'the shadow never answers');
      assert.equal(res.json().verdict, 'ng');
    }
    const gauge = (version: string, name = 'sightline_shadow_agreement_ratio') =>
      app.inject('/metrics').then((r) => {
        const m = new RegExp(`${name}\\{model="m",version="${version}"\\} ([\\d.e-]+)`).exec(r.body);
        return m ? Number(m[1]) : undefined;
      });
    await until(async () => (await gauge('2')) !== undefined, 5000, 'shadow compared');
    const body = (await app.inject('/metrics')).body;
    assert.match(body, /sightline_shadow_comparisons_total\{model="m",version="2",outcome="disagree"\} (1\d|20)/);
    assert.equal(await gauge('2'), 0, 'every verdict differs');
    assert.equal(await gauge('2', 'sightline_shadow_box_agreement_ratio'), 0, 'no box in common');
    // The same model as a shadow agrees fully.
    assert.equal((await post(app, '/v1/models/m/traffic', { shadow: { version: '3', percent: 100 } })).statusCode, 200);
    for (let i = 0; i < 10; i++) await detect(app);
    await until(async () => (await gauge('3')) === 1, 5000, 'version 3 agrees');
    assert.equal(await gauge('3', 'sightline_shadow_box_agreement_ratio'), 1);
    // Shadow results are not stored as results.
    const results = (await app.inject('/v1/results?limit=100')).json();
    assert.ok(results.results.length >= 30, 'the answers are stored');
    assert.ok(results.results.every((r: { model: { version: string } }) => r.model.version === '1'));
  } finally {
    await app.close();
    tmp.cleanup();
  }
});

test('load and unload through the API; bad calls get their codes; model_control none refuses', async () => {
  const tmp = tempDir();
  writeModel(tmp.dir, 'm', '1', ngModel(), MANIFEST);
  writeModel(tmp.dir, 'm', '2', okModel(), MANIFEST);
  const app = await startApp({ models_dir: tmp.dir, model_control: 'explicit' });
  try {
    assert.equal((await row(app, '2'))!.serving, true);
    assert.equal((await row(app, '1'))!.state, 'UNAVAILABLE');
    const loaded = await post(app, '/v1/models/m/load', { version: '1' });
    assert.equal(loaded.statusCode, 200, loaded.body);
    assert.deepEqual(
      loaded.json().models.map((m: ModelRow) => [m.version, m.state]),
      [
        ['1', 'READY'],
        ['2', 'READY'],
      ],
    );
    // Unloading the serving version hands traffic to what is left.
    const unloaded = await post(app, '/v1/models/m/unload', { version: '2' });
    assert.equal(unloaded.statusCode, 200, unloaded.body);
    assert.equal((await row(app, '2'))!.state, 'UNAVAILABLE');
    assert.equal((await detect(app)).json().model.version, '1');
    // Unload the model: every version goes; requests get MODEL_NOT_READY.
    assert.equal((await post(app, '/v1/models/m/unload')).statusCode, 200);
    const gone = await detect(app);
    assert.equal(gone.statusCode, 503);
    assert.equal(gone.json().error.code, 'MODEL_NOT_READY');
    // Load the model again: as its policy says (latest:1), so version 2.
    assert.equal((await post(app, '/v1/models/m/load')).statusCode, 200);
    assert.equal((await detect(app)).json().model.version, '2');
    assert.equal((await row(app, '1'))!.state, 'UNAVAILABLE');

    const cases: [string, object | undefined, number, string][] = [
      ['/v1/models/nope/load', undefined, 404, 'MODEL_NOT_FOUND'],
      ['/v1/models/m/load', { version: '9' }, 404, 'MODEL_NOT_FOUND'],
      ['/v1/models/m/traffic', { canary: { version: '9', percent: 10 } }, 400, 'INVALID_TRAFFIC_SPLIT'],
      ['/v1/models/m/traffic', { canary: { version: '2', percent: 150 } }, 400, 'INVALID_REQUEST'],
      ['/v1/models/m/traffic', { nonsense: true }, 400, 'INVALID_REQUEST'],
    ];
    for (const [url, body, status, code] of cases) {
      const res = await post(app, url, body);
      assert.equal(res.statusCode, status, `${url} ${res.body}`);
      assert.equal(res.json().error.code, code, url);
    }
    // Rollback without a canary: the version before the serving one becomes the primary (loaded again first)...
    const back = await post(app, '/v1/models/m/rollback');
    assert.equal(back.statusCode, 200, back.body);
    assert.deepEqual(back.json(), { model: 'm', serving: '1', traffic: { primary: '1' } });
    assert.equal((await detect(app)).json().model.version, '1');
    // ...and from the oldest there is nowhere to go.
    const none = await post(app, '/v1/models/m/rollback');
    assert.equal(none.statusCode, 400);
    assert.equal(none.json().error.code, 'INVALID_TRAFFIC_SPLIT');
  } finally {
    await app.close();
    tmp.cleanup();
  }
  const fixed = await startApp({ models_dir: tmp.dir, model_control: 'none' });
  try {
    const res = await post(fixed, '/v1/models/m/unload');
    assert.equal(res.statusCode, 409);
    assert.equal(res.json().error.code, 'MODEL_CONTROL_DISABLED');
    assert.equal((await fixed.inject('/v1/models')).json().control.mode, 'none');
  } finally {
    await fixed.close();
  }
});

test('two processes on one database converge: a split set through one applies in the other within 2 s, and survives a restart', async () => {
  const tmp = tempDir();
  writeModel(tmp.dir, 'm', '1', ngModel(), MANIFEST);
  writeModel(tmp.dir, 'm', '2', okModel(), MANIFEST);
  const shared = { models_dir: tmp.dir, store_url: `sqlite:${join(tmp.dir, 'results.db')}`, model_version_policy: 'all', model_sync_interval_ms: 250 };
  const a = await startApp(shared);
  const b = await startApp(shared);
  try {
    assert.equal((await detect(b)).json().model.version, '2');
    const set = await post(a, '/v1/models/m/traffic', { primary: '1' });
    assert.equal(set.statusCode, 200, set.body);
    const t0 = Date.now();
    await until(async () => (await detect(b)).json().model.version === '1', 2000, 'b follows a');
    assert.ok(Date.now() - t0 < 2000);
    assert.deepEqual((await b.inject('/v1/models')).json().control.models.m.traffic, { primary: '1' });
  } finally {
    await a.close();
    await b.close();
  }
  const c = await startApp(shared);
  try {
    assert.equal((await detect(c)).json().model.version, '1', 'the split is in the control table, not in memory');
  } finally {
    await c.close();
    tmp.cleanup();
  }
});
