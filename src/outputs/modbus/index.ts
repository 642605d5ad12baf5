import type { Logger } from 'pino';
import type { SightlineEvent } from '../../protocol/events.js';
import type { OutputContext } from '../context.js';
import { splitList } from '../filter.js';
import { applyCameraList, type LineState, LineStates } from '../line-state.js';
import type { Output, OutputHealth } from '../output.js';
import { BLOCK_SIZE, MAX_LINES, ModbusMap } from './register-map.js';
import { ModbusTcpServer } from './server.js';
import { serviceVector } from './vector.js';

export { BLOCK_SIZE, COIL, DISCRETE, REGISTER } from './register-map.js';

const NAME = 'modbus';

/**
 * The Modbus TCP server output: each line of `modbus_lines` as a block of coils,
 * discrete inputs and registers (docs/outputs/modbus.md) that a PLC polls, with
 * the trigger/acknowledge handshake of LineState. A server, so nothing is pushed
 * and no peer can be down: a PLC that stops polling only lets the line's result
 * buffer overflow (counted as dropped, reason buffer_full).
 */
export class ModbusOutput implements Output {
  readonly name = NAME;
  readonly scope = 'bus' as const;
  readonly #ctx: OutputContext;
  readonly #logger: Logger;
  readonly #lineNames: string[];
  readonly #states: LineStates;
  #server: ModbusTcpServer | undefined;
  #closed = false;

  constructor(ctx: OutputContext) {
    this.#ctx = ctx;
    this.#logger = ctx.logger.child({ output: NAME });
    this.#lineNames = splitList(ctx.config.modbus_lines);
    this.#states = new LineStates(ctx.config.output_result_buffer, (state) => this.#watch(state));
    for (const line of new Set(this.#lineNames)) this.#states.get(line);
  }

  /** The bound port (the chosen one when modbus_port is 0); undefined until started. */
  get port(): number | undefined {
    return this.#server?.port;
  }

  /** A mapped line's state; for tests and diagnostics. */
  line(name: string): LineState | undefined {
    return this.#states.has(name) ? this.#states.get(name) : undefined;
  }

  async start(): Promise<void> {
    const { modbus_host: host, modbus_port: port } = this.#ctx.config;
    this.#checkLines();
    const map = new ModbusMap(this.#lineNames.map((line) => this.#states.get(line)));
    try {
      this.#server = await ModbusTcpServer.listen(serviceVector(map), host, port, (err) =>
        this.#logger.warn({ event: 'modbus_server_error', err }, 'Modbus server error'),
      );
    } catch (err) {
      throw new Error(`modbus: cannot listen on ${host}:${port} (modbus_host, modbus_port): ${(err as Error).message}`, { cause: err });
    }
    await this.#seedCameras();
    this.#logger.info(
      { event: 'modbus_listening', host, port: this.#server.port, lines: this.#lineNames },
      `Modbus TCP server listening on ${host}:${this.#server.port} for ${this.#lineNames.length} line(s)`,
    );
  }

  handle(event: SightlineEvent): void {
    if (this.#closed || !this.#states.has(event.line)) return;
    try {
      this.#states.get(event.line).apply(event);
    } catch (err) {
      this.#ctx.metrics.failed.inc({ output: NAME });
      this.#logger.error({ event: 'modbus_event_failed', err, line: event.line }, 'Modbus output could not take an event');
    }
  }

  health(): OutputHealth {
    if (!this.#server?.listening) return { connected: false, detail: this.#closed ? 'closed' : 'not listening' };
    const { host, port, clients } = this.#server;
    return { connected: true, detail: `listening on ${host}:${port}, ${clients} client${clients === 1 ? '' : 's'}` };
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#server?.close();
  }

  /** What a retry cannot fix: stops `sightline serve` with the reason. */
  #checkLines(): void {
    const names = this.#lineNames;
    if (names.length === 0) {
      throw new Error('modbus: modbus_lines is empty; name the lines in register-map order, e.g. SIGHTLINE_MODBUS_LINES=line-1,line-2');
    }
    const repeated = names.filter((line, i) => names.indexOf(line) !== i);
    if (repeated.length > 0) throw new Error(`modbus: modbus_lines names ${repeated.join(', ')} more than once; each line has one block`);
    if (names.length > MAX_LINES) {
      throw new Error(`modbus: modbus_lines has ${names.length} lines; ${MAX_LINES} blocks of ${BLOCK_SIZE} fit in the 16-bit address space`);
    }
  }

  /** The error bit from the first poll: camera events only say what changes after the start. */
  async #seedCameras(): Promise<void> {
    try {
      applyCameraList(await this.#ctx.lines(), (line) => (this.#states.has(line) ? this.#states.get(line) : undefined));
    } catch (err) {
      this.#logger.warn(
        { event: 'modbus_camera_seed_failed', err },
        'Modbus output could not read the camera states; the error bits follow camera events from now on',
      );
    }
  }

  #watch(state: LineState): void {
    const { metrics } = this.#ctx;
    state.on('dropped', (lost) => {
      metrics.dropped.inc({ output: NAME, reason: 'buffer_full' });
      this.#logger.warn(
        { event: 'modbus_result_dropped', line: state.line, inspection_id: lost.inspectionId, request_id: lost.requestId },
        `Modbus line ${state.line}: result buffer full, oldest result dropped (the PLC is not acknowledging)`,
      );
    });
    // A result the PLC acknowledged is delivered: that is what `sent` counts here.
    state.on('acknowledged', () => metrics.sent.inc({ output: NAME }));
    state.on('change', () => metrics.outboxDepth.set({ output: NAME }, this.#buffered()));
    state.on('trigger', (count) => this.#logger.debug({ event: 'modbus_trigger', line: state.line, count }, `Modbus line ${state.line}: trigger ${count}`));
  }

  #buffered(): number {
    let n = 0;
    for (const state of this.#states.all()) n += state.buffered;
    return n;
  }
}

export function createModbusOutput(ctx: OutputContext): Output {
  return new ModbusOutput(ctx);
}
