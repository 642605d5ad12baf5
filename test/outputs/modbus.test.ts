import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { Registry } from 'prom-client';
import { defaultConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { outputMetrics } from '../../src/outputs/metrics.js';
import { COIL, DISCRETE, REGISTER, createModbusOutput, type ModbusOutput } from '../../src/outputs/modbus/index.js';
import type { OutputContext } from '../../src/outputs/context.js';
import type { LineList } from '../../src/protocol/lines.js';
import { ROOT } from '../helpers/cli-process.js';
import { startApp } from '../helpers/fixtures.js';
import { requireOrSkip } from '../helpers/requirements.js';

const PYTHON = '/usr/bin/python3';
const CLIENT = join(ROOT, 'test/outputs/fixtures/modbus_client.py');
const PYMODBUS = "Debian's python3-pymodbus (/usr/bin/python3 -c 'import pymodbus.client')";
const pymodbusAvailable = spawnSync(PYTHON, ['-c', 'import pymodbus.client'], { stdio: 'ignore' }).status === 0;

type Table = 'coils' | 'discrete' | 'holding' | 'input';
type Answer = { ok: true; values?: (number | boolean)[]; polls?: number } | { ok: false; exception?: number; error?: string; last?: unknown };

/** The pymodbus client (test/outputs/fixtures/modbus_client.py) as a PLC the test drives one request at a time. */
class Plc {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #pending: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  #stderr = '';

  constructor(port: number) {
    this.#child = spawn(PYTHON, [CLIENT, '127.0.0.1', String(port)]);
    this.#child.stderr.on('data', (d: Buffer) => {
      this.#stderr += d.toString();
    });
    createInterface({ input: this.#child.stdout }).on('line', (line) => this.#pending.shift()?.resolve(line));
    this.#child.on('exit', (code) => {
      for (const p of this.#pending.splice(0)) p.reject(new Error(`the pymodbus client exited (${code}): ${this.#stderr}`));
    });
  }

  async send(cmd: Record<string, unknown>): Promise<Answer> {
    const line = new Promise<string>((resolve, reject) => this.#pending.push({ resolve, reject }));
    this.#child.stdin.write(`${JSON.stringify(cmd)}\n`);
    return JSON.parse(await line) as Answer;
  }

  async read(table: Table, address: number, count = 1): Promise<(number | boolean)[]> {
    const answer = await this.send({ op: 'read', table, address, count });
    assert.ok(answer.ok, `read ${table} ${address}+${count}: ${JSON.stringify(answer)}`);
    return answer.values ?? [];
  }

  async bits(table: 'coils' | 'discrete', address: number, count: number): Promise<boolean[]> {
    return (await this.read(table, address, count)) as boolean[];
  }

  async registers(table: 'holding' | 'input', address: number, count: number): Promise<number[]> {
    return (await this.read(table, address, count)) as number[];
  }

  async writeCoil(address: number, value: boolean): Promise<void> {
    const answer = await this.send({ op: 'write_coil', address, value });
    assert.ok(answer.ok, `write coil ${address}: ${JSON.stringify(answer)}`);
  }

  /** Polls (like a PLC scan) until the bit or register has the value. */
  async wait(table: Table, address: number, value: boolean | number, what: string): Promise<void> {
    const answer = await this.send({ op: 'wait', table, address, value, timeout: 5 });
    assert.ok(answer.ok, `waiting for ${what} = ${value} (${table} ${address}): ${JSON.stringify(answer)}`);
  }

  /** The Modbus exception code a request is answered with. */
  async exception(cmd: Record<string, unknown>): Promise<number | undefined> {
    const answer = await this.send(cmd);
    return answer.ok ? undefined : answer.exception;
  }

  close(): void {
    this.#child.stdin.end();
  }
}

const u32 = (regs: number[], at: number) => (regs[at] as number) * 0x1_0000 + (regs[at + 1] as number);

async function metric(app: FastifyInstance, series: string): Promise<number | undefined> {
  const text = (await app.inject({ url: '/metrics' })).body;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function detect(app: FastifyInstance, line: string, image: string) {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/detect?line=${line}&camera=cam-1`,
    headers: { 'content-type': 'image/jpeg' },
    payload: readFileSync(join(ROOT, 'samples', image)),
  });
  assert.equal(res.statusCode, 200, res.body);
  return res.json() as { verdict: 'ok' | 'ng'; detections: unknown[]; request_id: string };
}

async function startWithModbus(t: TestContext, overrides: Partial<Config> = {}) {
  const app = await startApp({
    modbus: true,
    modbus_host: '127.0.0.1',
    modbus_port: 0,
    modbus_lines: 'line-a,line-b',
    // Camera events come from the line registry's flush: soon, and never stale on a slow machine.
    line_registry_flush_ms: 100,
    camera_stale_after_ms: 60_000,
    ...overrides,
  });
  t.after(() => app.close());
  const output = app.sightline.outputs.get('modbus') as ModbusOutput | undefined;
  assert.ok(output, 'the hub has the modbus output');
  assert.ok(output.port, 'the output exposes its bound port');
  const plc = new Plc(output.port);
  t.after(() => plc.close());
  return { app, output, plc };
}

const IMAGES = ['ok-01.jpg', 'ng-01.jpg', 'ng-02.jpg', 'ok-02.jpg', 'ok-03.jpg', 'ng-03.jpg'];

test('modbus: a pymodbus client drives the trigger/results handshake on line-a through ok and ng images and reads every bit and register', {
  timeout: 60_000,
}, async (t) => {
  if (!requireOrSkip(t, pymodbusAvailable, PYMODBUS)) return;
  const { app, output, plc } = await startWithModbus(t);
  const A = 0;
  let ok = 0;
  let ng = 0;
  for (const [i, image] of IMAGES.entries()) {
    await plc.wait('discrete', A + DISCRETE.triggerReady, true, 'TriggerReady');
    await plc.writeCoil(A + COIL.trigger, true);
    await plc.wait('discrete', A + DISCRETE.triggerAck, true, 'TriggerAck');
    assert.deepEqual(await plc.bits('discrete', A + DISCRETE.triggerReady, 2), [false, true], 'TriggerReady falls while the trigger is acknowledged');
    assert.deepEqual(await plc.bits('coils', A, 2), [true, false], 'the coils read back what the PLC wrote');
    await plc.writeCoil(A + COIL.trigger, false);
    await plc.wait('discrete', A + DISCRETE.triggerAck, false, 'TriggerAck');

    const result = await detect(app, 'line-a', image);
    assert.equal(result.verdict, image.slice(0, 2), `${image} is ${image.slice(0, 2)} with the built-in model`);
    if (result.verdict === 'ok') ok++;
    else ng++;
    const isOk = result.verdict === 'ok';
    const code = isOk ? 1 : 2;
    const defects = result.detections.length;

    await plc.wait('discrete', A + DISCRETE.resultsValid, true, 'ResultsValid');
    // The camera's first state arrives with the line registry's next flush, not with the result.
    await plc.wait('holding', A + REGISTER.cameraState, 1, 'camera state online');
    const bits = await plc.bits('discrete', A, 8);
    assert.deepEqual(
      bits,
      [
        true, // TriggerReady: the buffer has room again and no trigger is held
        false, // TriggerAck
        true, // ResultsValid
        isOk, // presented OK
        !isOk, // presented NG
        false, // error: cam-1 is online
        isOk, // last OK
        !isOk, // last NG
      ],
      `discrete inputs after ${image}`,
    );
    const regs = await plc.registers('holding', A, 18);
    assert.equal(regs[REGISTER.presentedVerdict], code, `${image}: presented verdict code`);
    assert.equal(regs[REGISTER.presentedDefects], defects, `${image}: presented defect count`);
    assert.equal(u32(regs, REGISTER.presentedId), i + 1, `${image}: inspection id (high word first)`);
    assert.equal(regs[REGISTER.lastVerdict], code);
    assert.equal(regs[REGISTER.lastDefects], defects);
    assert.equal(u32(regs, REGISTER.lastId), i + 1);
    assert.equal(u32(regs, REGISTER.okCount), ok, 'OK count');
    assert.equal(u32(regs, REGISTER.ngCount), ng, 'NG count');
    assert.equal(regs[REGISTER.cameraState], 1, 'camera state online');
    assert.equal(regs[REGISTER.buffered], 1, 'one buffered result');
    assert.equal(u32(regs, REGISTER.dropped), 0);
    assert.equal(u32(regs, REGISTER.triggerCount), i + 1, 'triggers counted');
    assert.deepEqual(await plc.registers('input', A, 18), regs, 'input registers mirror the holding registers');
    if (!isOk) assert.ok(defects > 0, `${image}: an NG result has defects`);

    await plc.writeCoil(A + COIL.resultsAck, true);
    await plc.wait('discrete', A + DISCRETE.resultsValid, false, 'ResultsValid');
    const acked = await plc.registers('holding', A, 6);
    assert.deepEqual(acked.slice(0, 4), [0, 0, 0, 0], 'nothing is presented once acknowledged');
    assert.deepEqual(acked.slice(4, 6), [code, defects], 'the last result stays');
    assert.deepEqual(await plc.bits('discrete', A + DISCRETE.presentedOk, 2), [false, false]);
    await plc.writeCoil(A + COIL.resultsAck, false);
    assert.deepEqual(await plc.bits('coils', A, 2), [false, false]);
  }
  assert.deepEqual(await plc.registers('holding', 100, 18), new Array(18).fill(0), "line-b's block is untouched");
  assert.equal(await metric(app, 'sightline_output_sent_total{output="modbus"}'), IMAGES.length, 'each acknowledged result counts as sent');
  assert.equal(await metric(app, 'sightline_output_outbox_depth{output="modbus"}'), 0);
  assert.equal(await metric(app, 'sightline_output_connected{output="modbus"}'), 1);
  assert.match(output.health().detail, /^listening on 127\.0\.0\.1:\d+, 1 client$/);
});

test('modbus: two lines have separate blocks; a PLC that does not acknowledge gets the buffered results in order, then the oldest are dropped and counted', {
  timeout: 60_000,
}, async (t) => {
  if (!requireOrSkip(t, pymodbusAvailable, PYMODBUS)) return;
  const { app, plc } = await startWithModbus(t, { output_result_buffer: 2 });
  const B = 100;
  const sent = ['ng-04.jpg', 'ok-04.jpg', 'ng-05.jpg'];
  const results = [];
  for (const image of sent) results.push(await detect(app, 'line-b', image));
  await detect(app, 'line-a', 'ok-05.jpg');

  // Three results into a buffer of two: the first (ng-04, inspection 1) was dropped.
  await plc.wait('discrete', B + DISCRETE.resultsValid, true, 'line-b ResultsValid');
  await plc.wait('discrete', DISCRETE.resultsValid, true, 'line-a ResultsValid');
  let regs = await plc.registers('holding', B, 18);
  assert.equal(u32(regs, REGISTER.presentedId), 2, 'the oldest kept result is presented');
  assert.equal(regs[REGISTER.presentedVerdict], 1, 'ok-04 is presented');
  assert.equal(regs[REGISTER.presentedDefects], results[1]?.detections.length);
  assert.equal(u32(regs, REGISTER.lastId), 3);
  assert.equal(regs[REGISTER.lastVerdict], 2, 'ng-05 is the last result');
  assert.equal(regs[REGISTER.buffered], 2);
  assert.equal(u32(regs, REGISTER.dropped), 1, 'one result dropped');
  assert.equal(u32(regs, REGISTER.okCount), 1);
  assert.equal(u32(regs, REGISTER.ngCount), 2);
  assert.equal(await metric(app, 'sightline_output_dropped_total{output="modbus",reason="buffer_full"}'), 1);
  assert.equal(await metric(app, 'sightline_output_outbox_depth{output="modbus"}'), 3, 'two results wait on line-b, one on line-a');
  assert.deepEqual(await plc.bits('discrete', B, 8), [false, false, true, true, false, false, false, true], 'full buffer: TriggerReady is down');
  assert.equal(await plc.exception({ op: 'write_coil', address: B + COIL.trigger, value: true }), undefined);
  assert.deepEqual(await plc.bits('discrete', B, 2), [false, false], 'a trigger into a full buffer is not acknowledged');
  await plc.writeCoil(B + COIL.trigger, false);

  // Line-a's block shows its own result only.
  const a = await plc.registers('holding', 0, 18);
  assert.equal(u32(a, REGISTER.presentedId), 1);
  assert.equal(a[REGISTER.presentedVerdict], 1);
  assert.equal(u32(a, REGISTER.okCount), 1);
  assert.equal(u32(a, REGISTER.ngCount), 0);

  // Acknowledge on line-b: the next result is presented after ResultsAck falls.
  await plc.writeCoil(B + COIL.resultsAck, true);
  await plc.wait('discrete', B + DISCRETE.resultsValid, false, 'line-b ResultsValid');
  await plc.writeCoil(B + COIL.resultsAck, false);
  await plc.wait('discrete', B + DISCRETE.resultsValid, true, 'line-b ResultsValid for the next result');
  regs = await plc.registers('holding', B, 18);
  assert.equal(u32(regs, REGISTER.presentedId), 3);
  assert.equal(regs[REGISTER.presentedVerdict], 2, 'ng-05 is presented');
  assert.equal(regs[REGISTER.presentedDefects], results[2]?.detections.length);
  assert.equal(regs[REGISTER.buffered], 1);
  assert.deepEqual(await plc.bits('discrete', B, 1), [true], 'TriggerReady is back once the buffer has room');
  assert.equal(u32(await plc.registers('holding', 0, 4), REGISTER.presentedId), 1, "line-a's presented result is untouched by line-b's acknowledge");
});

test('modbus: addresses outside the map and writes to read-only registers answer exception 2; a multi-coil write that reaches past the map changes nothing', {
  timeout: 30_000,
}, async (t) => {
  if (!requireOrSkip(t, pymodbusAvailable, PYMODBUS)) return;
  const { plc } = await startWithModbus(t);
  const cases: [string, Record<string, unknown>][] = [
    ['coil past the two of a block', { op: 'read', table: 'coils', address: 2, count: 1 }],
    ['coil of a third line that is not mapped', { op: 'read', table: 'coils', address: 200, count: 1 }],
    ['discrete input past the block', { op: 'read', table: 'discrete', address: 110, count: 1 }],
    ['holding register past the block', { op: 'read', table: 'holding', address: 20, count: 1 }],
    ['input register past the block', { op: 'read', table: 'input', address: 120, count: 1 }],
    ['holding registers reaching past the block', { op: 'read', table: 'holding', address: 12, count: 10 }],
    ['a read at the top of the address space', { op: 'read', table: 'holding', address: 65_535, count: 1 }],
    ['write to a read-only holding register', { op: 'write_register', address: 0, value: 7 }],
    ['write to an unmapped coil', { op: 'write_coil', address: 5, value: true }],
    ['multi-coil write past the block', { op: 'write_coils', address: 1, values: [true, true] }],
  ];
  for (const [what, cmd] of cases) assert.equal(await plc.exception(cmd), 2, `${what}: exception 2 (illegal data address)`);
  assert.deepEqual(await plc.bits('coils', 0, 2), [false, false], 'the refused multi-coil write left ResultsAck alone');
  assert.deepEqual(await plc.registers('holding', 0, 1), [0], 'the refused register write changed nothing');
  // The mapped edges still answer.
  assert.equal((await plc.registers('holding', 119, 1)).length, 1);
  assert.equal((await plc.bits('discrete', 109, 1)).length, 1);
  // A multi-coil write inside the map works (Trigger and ResultsAck at once).
  assert.equal(await plc.exception({ op: 'write_coils', address: 100, values: [true, true] }), undefined);
  assert.deepEqual(await plc.bits('coils', 100, 2), [true, true]);
});

/** An output outside an app, over a context whose camera states the test sets. */
function standalone(config: Partial<Config>, lines: LineList['lines'] = []) {
  const registry = new Registry();
  const ctx: OutputContext = {
    config: defaultConfig({ modbus: true, modbus_host: '127.0.0.1', modbus_port: 0, modbus_lines: 'line-a', ...config }),
    logger: pino({ level: 'silent' }),
    metrics: outputMetrics(registry),
    outbox: () => {
      throw new Error('the modbus output has no outbox');
    },
    lines: async () => ({ at: new Date().toISOString(), window_s: 60, lines }),
    instance: 'test',
  };
  return { output: createModbusOutput(ctx) as ModbusOutput, registry };
}

test('modbus: the error bit and camera state follow the worst camera of the line, from the start and from camera events', {
  timeout: 30_000,
}, async (t) => {
  if (!requireOrSkip(t, pymodbusAvailable, PYMODBUS)) return;
  const at = new Date().toISOString();
  const camera = (name: string, state: 'online' | 'stale' | 'offline') => ({ line: 'line-a', camera: name, state, since: at, last_frame_at: at }) as never;
  const { output } = standalone({}, [{ line: 'line-a', cameras: [camera('cam-1', 'online'), camera('cam-2', 'stale')] } as never]);
  await output.start();
  t.after(() => output.close());
  const plc = new Plc(output.port as number);
  t.after(() => plc.close());
  assert.deepEqual(await plc.bits('discrete', DISCRETE.error, 1), [true], 'a stale camera at start sets the error bit');
  assert.deepEqual(await plc.registers('holding', REGISTER.cameraState, 1), [2], 'camera state code 2 (stale)');
  const event = (name: string, state: 'online' | 'stale' | 'offline') =>
    ({ type: 'camera', line: 'line-a', camera: name, state, previous: null, at, last_frame_at: at }) as const;
  output.handle(event('cam-2', 'online'));
  assert.deepEqual(await plc.bits('discrete', DISCRETE.error, 1), [false], 'both cameras online: no error');
  assert.deepEqual(await plc.registers('input', REGISTER.cameraState, 1), [1]);
  output.handle(event('cam-1', 'offline'));
  assert.deepEqual(await plc.bits('discrete', DISCRETE.error, 1), [true]);
  assert.deepEqual(await plc.registers('holding', REGISTER.cameraState, 1), [3], 'offline is the worst state');
  output.handle({ ...event('cam-1', 'online'), line: 'line-z' });
  assert.deepEqual(await plc.registers('holding', REGISTER.cameraState, 1), [3], 'an unmapped line changes nothing');
});

test('modbus: start refuses an empty or repeated modbus_lines and a port in use; health follows listening and clients; close drops the clients', {
  timeout: 30_000,
}, async (t) => {
  await assert.rejects(standalone({ modbus_lines: ' , ' }).output.start(), /modbus_lines is empty/);
  await assert.rejects(standalone({ modbus_lines: 'a,b,a' }).output.start(), /names a more than once/);

  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.after(() => busy.close());
  const port = (busy.address() as AddressInfo).port;
  await assert.rejects(standalone({ modbus_port: port }).output.start(), new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}.*EADDRINUSE`));

  const { output } = standalone({});
  assert.deepEqual(output.health(), { connected: false, detail: 'not listening' });
  await output.start();
  t.after(() => output.close());
  assert.ok(output.port && output.port > 0, 'port 0 binds a free port');
  assert.equal(output.health().detail, `listening on 127.0.0.1:${output.port}, 0 clients`);

  if (!requireOrSkip(t, pymodbusAvailable, PYMODBUS)) return;
  const plc = new Plc(output.port);
  t.after(() => plc.close());
  assert.deepEqual(await plc.bits('discrete', 0, 1), [true], 'TriggerReady before any result');
  assert.equal(output.health().detail, `listening on 127.0.0.1:${output.port}, 1 client`);
  await output.close();
  assert.deepEqual(output.health(), { connected: false, detail: 'closed' });
  const after = await plc.send({ op: 'read', table: 'discrete', address: 0, count: 1 });
  assert.equal(after.ok, false, 'the client is disconnected by close');
  await output.close(); // idempotent
});
