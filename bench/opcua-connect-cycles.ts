/**
 * Heap of the OPC UA server output under client churn (node-opcua #446: servers
 * that ran out of heap after ~2,000 connect/close cycles). The server runs in a
 * child process started with --expose-gc; this process runs N cycles of
 * connect / createSession / read / closeSession / disconnect, each with a new
 * OPCUAClient, and asks the child for its heapUsed after a full GC at every
 * checkpoint.
 *
 *   node --import tsx bench/opcua-connect-cycles.ts [--cycles 1000] [--every 250] [--out bench/results/opcua-connect-cycles.md]
 *
 * Numbers are reported; the verdict line says whether the heap stayed flat
 * (growth from the first checkpoint after warm-up to the last under 1 KiB per cycle).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { AttributeIds, OPCUACertificateManager, OPCUAClient } from 'node-opcua';
import pino from 'pino';
import { Registry } from 'prom-client';
import { defaultConfig } from '../src/config/load.js';
import { outputMetrics } from '../src/outputs/metrics.js';
import { createOpcuaOutput } from '../src/outputs/opcua/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FLAT_BYTES_PER_CYCLE = 1024;

export type ToChild = { type: 'heap' } | { type: 'stop' };
export type FromChild = { type: 'ready'; endpoint: string; ns: number } | { type: 'heap'; heapUsed: number; sessions: number };

/** The child: an OpcuaOutput with one line that has seen results, answering heap requests. */
async function serve(dataDir: string): Promise<void> {
  const gc = globalThis.gc;
  if (!gc) throw new Error('run the server child with --expose-gc');
  const config = defaultConfig({ opcua: true, opcua_port: 0, data_dir: dataDir, opcua_lines: 'line-1', opcua_max_sessions: 100 });
  const output = createOpcuaOutput({
    config,
    logger: pino({ level: 'warn' }),
    metrics: outputMetrics(new Registry()),
    instance: 'bench',
    lines: async () => ({ at: new Date().toISOString(), window_s: 60, lines: [] }),
    outbox: () => {
      throw new Error('no outbox');
    },
  });
  await output.start();
  for (let i = 0; i < 20; i++) {
    output.handle({
      type: 'result',
      line: 'line-1',
      source: 'sync',
      at: new Date().toISOString(),
      result: { request_id: `r${i}`, camera: 'cam-1', verdict: i % 2 ? 'ng' : 'ok', detections: [] } as never,
    });
  }
  const send = (m: FromChild) => process.send?.(m);
  process.on('message', async (m: ToChild) => {
    if (m.type === 'stop') {
      await output.close();
      process.exit(0);
    }
    // Twice, with a turn of the event loop between: sockets closed in the last cycle release their buffers on the next tick.
    gc();
    await new Promise((r) => setTimeout(r, 200));
    gc();
    send({ type: 'heap', heapUsed: process.memoryUsage().heapUsed, sessions: output.sessions });
  });
  send({ type: 'ready', endpoint: output.endpointUrl, ns: output.namespaceIndex });
}

export function request(child: ChildProcess, m: ToChild): Promise<FromChild> {
  return new Promise((resolve) => {
    child.once('message', (r: FromChild) => resolve(r));
    child.send(m);
  });
}

export async function cycle(endpoint: string, nodeId: string, certificates: OPCUACertificateManager): Promise<void> {
  const client = OPCUAClient.create({ endpointMustExist: false, connectionStrategy: { maxRetry: 0 }, clientCertificateManager: certificates });
  await client.connect(endpoint);
  try {
    const session = await client.createSession();
    const dv = await session.read({ nodeId, attributeId: AttributeIds.Value });
    if (dv.statusCode.name !== 'Good') throw new Error(`read ${nodeId}: ${dv.statusCode.name}`);
    await session.close();
  } finally {
    await client.disconnect();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cycles: { type: 'string', default: '1000' },
      every: { type: 'string', default: '250' },
      out: { type: 'string', default: join(ROOT, 'bench/results/opcua-connect-cycles.md') },
    },
  });
  const cycles = Number(values.cycles);
  const every = Number(values.every);
  const dir = mkdtempSync(join(tmpdir(), 'sightline-opcua-bench-'));
  const { child, ready } = await serverChild(join(dir, 'data'));
  try {
    const nodeId = `ns=${ready.ns};s=line-1.LastVerdict`;
    const certificates = new OPCUACertificateManager({ rootFolder: join(dir, 'client-pki'), automaticallyAcceptUnknownCertificate: true });
    const rows: { cycles: number; heapUsed: number; sessions: number; seconds: number }[] = [];
    const started = Date.now();
    for (let done = 0; ; done++) {
      if (done % every === 0) {
        const heap = await request(child, { type: 'heap' });
        if (heap.type !== 'heap') throw new Error('unexpected answer');
        rows.push({ cycles: done, heapUsed: heap.heapUsed, sessions: heap.sessions, seconds: (Date.now() - started) / 1000 });
        console.log(`${done} cycles: heapUsed ${(heap.heapUsed / 2 ** 20).toFixed(2)} MiB, ${heap.sessions} sessions open`);
      }
      if (done === cycles) break;
      await cycle(ready.endpoint, nodeId, certificates);
    }
    await certificates.dispose();
    writeFileSync(values.out, report(rows, every));
    console.log(`written ${values.out}`);
  } finally {
    child.send({ type: 'stop' } satisfies ToChild);
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Starts the server child (the test of the output runs a short version of this bench on it). */
export async function serverChild(dataDir: string): Promise<{ child: ChildProcess; ready: { endpoint: string; ns: number } }> {
  const child = fork(fileURLToPath(import.meta.url), ['--server', dataDir], { execArgv: ['--expose-gc', '--import', 'tsx'], stdio: 'inherit' });
  const ready = await new Promise<FromChild>((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`the server child exited with ${code}`)));
  });
  if (ready.type !== 'ready') throw new Error('unexpected first message from the server child');
  return { child, ready };
}

function report(rows: { cycles: number; heapUsed: number; sessions: number; seconds: number }[], every: number): string {
  const mib = (b: number) => (b / 2 ** 20).toFixed(2);
  const base = rows[0]!.heapUsed;
  // The first checkpoint after 0 is the baseline: the first cycles fill caches once (secure channel, certificate, encoders).
  const warm = rows[1] ?? rows[0]!;
  const last = rows.at(-1)!;
  const perCycle = last.cycles > warm.cycles ? (last.heapUsed - warm.heapUsed) / (last.cycles - warm.cycles) : 0;
  const flat = perCycle < FLAT_BYTES_PER_CYCLE;
  const lines = [
    '# OPC UA server heap under client connect/disconnect cycles',
    '',
    `Run ${new Date().toISOString().slice(0, 10)}: \`node --import tsx bench/opcua-connect-cycles.ts --cycles ${last.cycles} --every ${every}\``,
    `(node ${process.version}, node-opcua server in a child process with --expose-gc, ${cpus().length} CPUs).`,
    'Each cycle: new OPCUAClient, connect (security None), createSession (anonymous), read line-1.LastVerdict, closeSession, disconnect.',
    "heapUsed is the server child's, after two full GCs 200 ms apart.",
    '',
    '| cycles | heapUsed (MiB) | vs 0 cycles (MiB) | sessions open | elapsed (s) |',
    '|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) => `| ${r.cycles} | ${mib(r.heapUsed)} | ${r.heapUsed >= base ? '+' : ''}${mib(r.heapUsed - base)} | ${r.sessions} | ${r.seconds.toFixed(1)} |`,
    ),
    '',
    `Growth from ${warm.cycles} to ${last.cycles} cycles: ${(perCycle / 1024).toFixed(3)} KiB per cycle ` +
      `(${mib(last.heapUsed - warm.heapUsed)} MiB in all).`,
    '',
    `**Verdict: ${flat ? 'flat' : 'GROWING'}** (flat means under ${FLAT_BYTES_PER_CYCLE / 1024} KiB per cycle after warm-up; ` +
      `at that rate 1,000,000 cycles would add under 1 GiB${flat ? '' : '; this run is above it'}).`,
    '',
  ];
  return lines.join('\n');
}

if (process.argv[2] === '--server') {
  void serve(process.argv[3]!);
} else if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
