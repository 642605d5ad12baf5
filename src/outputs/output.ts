import type { SightlineEvent } from '../protocol/events.js';
import type { Outbox } from './outbox.js';

/** How an output stands with its peer, for /readyz and `sightline_output_connected`. */
export interface OutputHealth {
  /** True while the peer is reachable (a broker connected, a server listening, a receiver answering). */
  connected: boolean;
  /** One line for people: what it is connected to, or why not. */
  detail: string;
}

/**
 * Where an output takes its events from:
 * - `local`: the events this process publishes (its own results and camera
 *   changes). Each result leaves once however many replicas run: the process
 *   that produced it sends it. MQTT and webhooks, which push every result.
 * - `bus`: every event on the event bus, whichever process published it. The
 *   OPC UA and Modbus servers, which show the state of every line to a PLC.
 */
export type OutputScope = 'local' | 'bus';

/**
 * A factory output: a sink of events (results, camera states, job states) that
 * passes them to a PLC, MES or SCADA system. An output can never slow or fail a
 * detection: `handle` returns at once (work goes to a bounded outbox, drained in
 * the background), and a peer that is away is retried by the output itself.
 */
export interface Output {
  /** Stable name in metrics, logs, /readyz and the API: `mqtt`, `webhook`, `opcua`, `modbus`. */
  readonly name: string;
  readonly scope: OutputScope;
  /** The durable outbox of an output that pushes messages (MQTT, webhooks): its dead letters are listed and replayed over the API. */
  readonly outbox?: Outbox;
  /** An outbox message as the API shows it (dead letters), with secrets such as URL credentials left out; default: the payload as JSON. */
  describe?(payload: string): unknown;
  /**
   * Starts the output. Resolves even when the peer is out of reach (it connects
   * later by itself); rejects only for what a retry cannot fix (a port in use, a
   * bad certificate), which stops `sightline serve` with the reason.
   */
  start(): Promise<void>;
  /** Called for each event that passed the output's filter, in publish order. Returns at once, never throws. */
  handle(event: SightlineEvent): void;
  health(): OutputHealth;
  /** Stops taking events, sends what it can within the shutdown time, releases its peer. Idempotent. */
  close(): Promise<void>;
}
