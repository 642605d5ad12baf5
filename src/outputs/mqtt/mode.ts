import type { CameraStateEvent } from '../../protocol/events.js';
import type { LineList } from '../../protocol/lines.js';
import type { Will } from './connection.js';

/** What the status summary (JSON `<prefix>/status`, Sparkplug NBIRTH/NDATA) reports about the output. */
export interface OutputFigures {
  outboxDepth: number;
  outboxMax: number;
  sent: number;
  failed: number;
  dropped: number;
}

/** What a mode is given besides its connection. */
export interface ModeDeps {
  /** The lines this output publishes (mqtt_lines), with their cameras. */
  lines(): Promise<LineList['lines']>;
  figures(): Promise<OutputFigures>;
  instance: string;
  version: string;
  startedAt: Date;
}

/**
 * How messages look on the broker: plain JSON topics or Sparkplug B. The output
 * owns the connection, the outbox and its drain; a mode turns events into
 * messages and says what goes out on (re)connect and on a clean close.
 */
export interface MqttMode {
  /** The will of the next CONNECT (asked before every connection attempt). */
  will(): Will;
  /** After each CONNECT, before any result: subscriptions, births, availability, states; resolves once they are on their way. */
  connected(): Promise<void>;
  /** Publishes a result event (the outbox payload, JSON text); resolves once the broker acknowledged it. */
  result(payload: string): Promise<void>;
  camera(event: CameraStateEvent): void;
  message(topic: string, payload: Buffer): void;
  /** The periodic summary, while connected. */
  status(): void;
  /** Just before a clean disconnect: what the will would have said, since a clean disconnect discards it. */
  closing(): Promise<void>;
}
