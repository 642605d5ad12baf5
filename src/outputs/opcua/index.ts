import type { Logger } from 'pino';
import type { Namespace, OPCUAServer, UAObject } from 'node-opcua';
import type { SightlineEvent } from '../../protocol/events.js';
import type { OutputContext } from '../context.js';
import { applyCameraList, LineStates, type LineState } from '../line-state.js';
import type { Output, OutputHealth } from '../output.js';
import type { LineNode, Writable } from './nodes.js';

/** node-opcua takes seconds to load: it is loaded when the output starts, not by every process that imports the outputs. */
const loadServer = () => Promise.all([import('./server.js'), import('./nodes.js')]);

const NAME = 'opcua';

interface AddressSpaceRoots {
  namespace: Namespace;
  lines: UAObject;
  LineNode: typeof LineNode;
}

/**
 * The OPC UA server output: an object per line under Objects/Sightline/Lines
 * with the newest result, counts, camera state and the trigger/results
 * handshake of its LineState (docs/outputs/opcua.md). A `bus` output: it shows
 * every line, whichever replica inspected it.
 *
 * `sent` counts results the PLC acknowledged (ResultsAck while ResultsValid),
 * `dropped{reason=buffer_full}` results pushed out of a full handshake buffer
 * unacknowledged, and the outbox depth is the results waiting in the buffers.
 */
export class OpcuaOutput implements Output {
  readonly name = NAME;
  readonly scope = 'bus' as const;
  readonly #ctx: OutputContext;
  readonly #logger: Logger;
  readonly #states: LineStates;
  readonly #nodes = new Map<string, LineNode>();
  #server: OPCUAServer | undefined;
  #roots: AddressSpaceRoots | undefined;
  #listening = false;
  #closed = false;
  #whyNot = 'not started';

  constructor(ctx: OutputContext) {
    this.#ctx = ctx;
    this.#logger = ctx.logger.child({ output: NAME });
    this.#states = new LineStates(ctx.config.output_result_buffer, (state) => this.#watch(state));
  }

  /** The URL clients connect to (`opc.tcp://<host>:<port>`, the bound port when opcua_port is 0); empty until started. */
  get endpointUrl(): string {
    return this.#listening && this.#server ? this.#server.getEndpointUrl() : '';
  }

  /** The index of urn:sightline:outputs in the server's namespace array (the `ns` of every node id). */
  get namespaceIndex(): number {
    return this.#roots?.namespace.index ?? -1;
  }

  get sessions(): number {
    return this.#server?.currentSessionCount ?? 0;
  }

  async start(): Promise<void> {
    if (this.#closed) throw new Error('the opcua output is closed');
    const config = this.#ctx.config;
    const [{ createServer, listenError, NAMESPACE_URI }, { LineNode }] = await loadServer();
    const server = createServer(config);
    this.#server = server;
    try {
      await server.initialize();
      this.#roots = this.#buildRoots(server, NAMESPACE_URI, LineNode);
      for (const line of config.opcua_lines.split(',').map((l) => l.trim())) if (line) this.#states.get(line);
      for (const state of this.#states.all()) this.#attach(state);
      await server.start();
    } catch (err) {
      this.#server = undefined;
      this.#roots = undefined;
      this.#nodes.clear();
      await server.shutdown(0).catch(() => undefined);
      const error = listenError(err, config);
      this.#whyNot = error.message;
      throw error;
    }
    this.#listening = true;
    this.#logger.info({ event: 'opcua_listening', endpoint: this.endpointUrl, namespace: NAMESPACE_URI }, `OPC UA server listening on ${this.endpointUrl}`);
    // Known lines get their object and camera states now, not at their next event; the start does not wait for the store.
    void this.#seedFromLines();
  }

  handle(event: SightlineEvent): void {
    if (this.#closed || event.type === 'job') return;
    try {
      this.#states.get(event.line).apply(event);
    } catch (err) {
      this.#ctx.metrics.failed.inc({ output: NAME });
      this.#logger.warn({ event: 'opcua_update_failed', line: event.line, err }, 'OPC UA address space update failed');
    }
  }

  health(): OutputHealth {
    if (!this.#listening) return { connected: false, detail: this.#whyNot };
    return { connected: true, detail: `listening on ${this.endpointUrl}, ${this.sessions} session(s)` };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listening = false;
    this.#whyNot = 'closed';
    const server = this.#server;
    this.#server = undefined;
    this.#roots = undefined;
    this.#nodes.clear();
    for (const state of this.#states.all()) state.removeAllListeners();
    // 0: sessions are closed now; a PLC reconnects to the next process by itself.
    await server?.shutdown(0);
  }

  #buildRoots(server: OPCUAServer, uri: string, lineNode: typeof LineNode): AddressSpaceRoots {
    const addressSpace = server.engine.addressSpace;
    if (!addressSpace) throw new Error('the OPC UA address space is missing after initialize');
    const namespace = addressSpace.registerNamespace(uri);
    const sightline = namespace.addFolder(addressSpace.rootFolder.objects, { browseName: 'Sightline', nodeId: 's=/Sightline' });
    const lines = namespace.addFolder(sightline, { browseName: 'Lines', nodeId: 's=/Sightline/Lines' });
    return { namespace, lines, LineNode: lineNode };
  }

  /** A new line state: metrics now, its object once the address space exists. */
  #watch(state: LineState): void {
    state.on('dropped', () => this.#ctx.metrics.dropped.inc({ output: NAME, reason: 'buffer_full' }));
    state.on('trigger', (count) => this.#logger.debug({ event: 'opcua_trigger', line: state.line, count }, 'PLC trigger'));
    state.on('change', () => {
      this.#nodes.get(state.line)?.sync();
      this.#updateDepth();
    });
    this.#attach(state);
  }

  #attach(state: LineState): void {
    if (!this.#roots || this.#nodes.has(state.line)) return;
    const node = new this.#roots.LineNode(this.#roots.namespace, this.#roots.lines, state, (s, what, value) => this.#write(s, what, value));
    this.#nodes.set(state.line, node);
    node.sync();
  }

  /** A PLC wrote Trigger or ResultsAck. */
  #write(state: LineState, what: Writable, value: boolean): void {
    if (what === 'trigger') {
      state.setTrigger(value);
      return;
    }
    const delivered = value && !state.resultsAck && state.resultsValid;
    state.setResultsAck(value);
    if (delivered) this.#ctx.metrics.sent.inc({ output: NAME });
  }

  #updateDepth(): void {
    let depth = 0;
    for (const state of this.#states.all()) depth += state.buffered;
    this.#ctx.metrics.outboxDepth.set({ output: NAME }, depth);
  }

  async #seedFromLines(): Promise<void> {
    try {
      const list = await this.#ctx.lines();
      if (this.#closed) return;
      applyCameraList(list, (line) => this.#states.get(line));
    } catch (err) {
      this.#logger.warn({ event: 'opcua_lines_unavailable', err }, 'OPC UA output could not list the lines at start; they appear with their next event');
    }
  }
}

export function createOpcuaOutput(ctx: OutputContext): OpcuaOutput {
  return new OpcuaOutput(ctx);
}
