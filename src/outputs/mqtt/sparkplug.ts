import type { Logger } from 'pino';
import sparkplugPayload from 'sparkplug-payload';
import type { UMetric, UPayload } from 'sparkplug-payload/lib/sparkplugbpayload.js';
import type { CameraStateEvent, ResultEvent } from '../../protocol/events.js';
import { LineStates, type LineState } from '../line-state.js';
import type { MqttConnection, Will } from './connection.js';
import type { ModeDeps, MqttMode } from './mode.js';

const codec = sparkplugPayload.get('spBv1.0');
if (!codec) throw new Error('sparkplug-payload has no spBv1.0 codec');
const { encodePayload, decodePayload } = codec;

export const NAMESPACE = 'spBv1.0';
export const REBIRTH = 'Node Control/Rebirth';

type MessageType = 'NBIRTH' | 'NDATA' | 'NDEATH' | 'DBIRTH' | 'DDATA' | 'DDEATH' | 'NCMD';

export function sparkplugTopic(group: string, type: MessageType, node: string, device?: string): string {
  return `${NAMESPACE}/${group}/${type}/${node}${device === undefined ? '' : `/${device}`}`;
}

const CAMERA_STATES = ['unknown', 'online', 'stale', 'offline'] as const;

/** A line's metrics (DBIRTH has them all, DDATA those that changed). */
function resultMetrics(state: LineState, at: number): UMetric[] {
  const last = state.last;
  return [
    { name: 'LastVerdict', type: 'String', value: last?.verdict ?? null, timestamp: at },
    { name: 'LastDefectCount', type: 'Int32', value: last?.defectCount ?? null, timestamp: at },
    { name: 'LastLabels', type: 'String', value: last ? last.labels.join(',') : null, timestamp: at },
    { name: 'LastResultTime', type: 'DateTime', value: last ? Date.parse(last.at) : null, timestamp: at },
    { name: 'LastRequestId', type: 'String', value: last?.requestId ?? null, timestamp: at },
    { name: 'LastCamera', type: 'String', value: last?.camera ?? null, timestamp: at },
    { name: 'InspectionId', type: 'UInt32', value: last?.inspectionId ?? 0, timestamp: at },
    { name: 'OkCount', type: 'UInt64', value: state.okCount, timestamp: at },
    { name: 'NgCount', type: 'UInt64', value: state.ngCount, timestamp: at },
    { name: 'CheckCount', type: 'UInt64', value: state.checkCount, timestamp: at },
  ];
}

function cameraMetric(state: LineState, at: number): UMetric {
  return { name: 'CameraState', type: 'String', value: CAMERA_STATES[state.cameraStateCode] ?? 'unknown', timestamp: at };
}

/**
 * Sparkplug B (spBv1.0) for Ignition-style SCADA: this process is the edge node
 * `<node>` of group `<group>`, each line a device.
 *
 * - Every CONNECT carries an NDEATH will with a new `bdSeq` (0–255, wrapping);
 *   the NBIRTH that follows carries the same `bdSeq`.
 * - `seq` is 0 on NBIRTH and grows by one (mod 256) with every later message of
 *   the node (DBIRTH, DDATA, NDATA, DDEATH), in the order they are written.
 * - A line's DBIRTH (every metric) goes out before its first DDATA of the
 *   session; results are DDATA of their line, camera changes too.
 * - NCMD `Node Control/Rebirth` = true: NBIRTH and every DBIRTH again.
 */
export class SparkplugMode implements MqttMode {
  readonly #conn: MqttConnection;
  readonly #deps: ModeDeps;
  readonly #logger: Logger;
  readonly #group: string;
  readonly #node: string;
  readonly #qos: 0 | 1 | 2;
  readonly #states = new LineStates(1);
  /** Lines whose DBIRTH went out in this session (since the last NBIRTH). */
  readonly #born = new Set<string>();
  #bdSeq = -1;
  #seq = 0;
  #birthing: Promise<void> = Promise.resolve();

  constructor(conn: MqttConnection, deps: ModeDeps & { group: string; node: string; qos: 0 | 1 | 2; logger: Logger }) {
    this.#conn = conn;
    this.#deps = deps;
    this.#logger = deps.logger;
    this.#group = deps.group;
    this.#node = deps.node;
    this.#qos = deps.qos;
  }

  get bdSeq(): number {
    return this.#bdSeq;
  }

  #topic(type: MessageType, device?: string): string {
    return sparkplugTopic(this.#group, type, this.#node, device);
  }

  #nextSeq(): number {
    const seq = this.#seq;
    this.#seq = (this.#seq + 1) % 256;
    return seq;
  }

  #encode(metrics: UMetric[], withSeq = true): Buffer {
    const payload: UPayload = { timestamp: Date.now(), metrics };
    if (withSeq) payload.seq = this.#nextSeq();
    return Buffer.from(encodePayload(payload));
  }

  /** A new bdSeq per connection attempt: the NDEATH the broker would publish for this connection. */
  will(): Will {
    this.#bdSeq = (this.#bdSeq + 1) % 256;
    return { topic: this.#topic('NDEATH'), payload: this.#ndeath(), qos: 1, retain: false };
  }

  #ndeath(): Buffer {
    return this.#encode([{ name: 'bdSeq', type: 'UInt64', value: this.#bdSeq }], false);
  }

  async connected(): Promise<void> {
    // NCMD first, so that a host's rebirth request right after NBIRTH is not missed.
    await this.#conn.subscribe(this.#topic('NCMD'));
    await this.#birth();
  }

  /** NBIRTH (seq 0) then a DBIRTH per known line, all written in one go so nothing of the node comes between. */
  #birth(): Promise<void> {
    this.#birthing = this.#birthing.then(async () => {
      const lines = await this.#deps.lines().catch(() => []);
      const figures = await this.#deps.figures();
      for (const line of lines) {
        const state = this.#states.get(line.line);
        for (const camera of line.cameras) {
          if (!state.cameras.has(camera.camera)) {
            state.apply({
              type: 'camera',
              line: line.line,
              camera: camera.camera,
              state: camera.state,
              previous: null,
              at: camera.since,
              last_frame_at: camera.last_frame_at,
            });
          }
        }
      }
      if (!this.#conn.connected) return;
      this.#seq = 0;
      this.#born.clear();
      const now = Date.now();
      const nbirth: UMetric[] = [
        { name: 'bdSeq', type: 'UInt64', value: this.#bdSeq, timestamp: now },
        { name: REBIRTH, type: 'Boolean', value: false, timestamp: now },
        { name: 'Node Info/Instance', type: 'String', value: this.#deps.instance, timestamp: now },
        { name: 'Node Info/Version', type: 'String', value: this.#deps.version, timestamp: now },
        ...this.#statusMetrics(figures, now),
      ];
      this.#conn.publishQuietly(this.#topic('NBIRTH'), this.#encode(nbirth), { qos: 0, retain: false });
      for (const state of this.#states.all()) this.#dbirth(state);
    });
    return this.#birthing;
  }

  #dbirth(state: LineState): void {
    const now = Date.now();
    this.#born.add(state.line);
    this.#conn.publishQuietly(this.#topic('DBIRTH', state.line), this.#encode([...resultMetrics(state, now), cameraMetric(state, now)]), {
      qos: 0,
      retain: false,
    });
  }

  #statusMetrics(figures: Awaited<ReturnType<ModeDeps['figures']>>, now: number): UMetric[] {
    return [
      { name: 'Status/OutboxDepth', type: 'UInt64', value: figures.outboxDepth, timestamp: now },
      { name: 'Status/Sent', type: 'UInt64', value: figures.sent, timestamp: now },
      { name: 'Status/Failed', type: 'UInt64', value: figures.failed, timestamp: now },
      { name: 'Status/Dropped', type: 'UInt64', value: figures.dropped, timestamp: now },
      { name: 'Status/UptimeSeconds', type: 'UInt64', value: Math.round((now - this.#deps.startedAt.getTime()) / 1000), timestamp: now },
    ];
  }

  async result(payload: string): Promise<void> {
    const event = JSON.parse(payload) as ResultEvent;
    await this.#birthing;
    const state = this.#states.get(event.line);
    // A result sent again after a lost connection was counted the first time.
    if (state.last?.requestId !== event.result.request_id) state.apply(event);
    if (!this.#born.has(event.line)) this.#dbirth(state);
    const at = Date.parse(event.at) || Date.now();
    await this.#conn.publish(this.#topic('DDATA', event.line), this.#encode(resultMetrics(state, at)), { qos: this.#qos, retain: false });
  }

  camera(event: CameraStateEvent): void {
    const state = this.#states.get(event.line);
    state.apply(event);
    if (!this.#conn.connected) return; // the next NBIRTH/DBIRTH carries it
    if (!this.#born.has(event.line)) {
      this.#dbirth(state);
      return;
    }
    this.#conn.publishQuietly(this.#topic('DDATA', event.line), this.#encode([cameraMetric(state, Date.parse(event.at) || Date.now())]), {
      qos: 0,
      retain: false,
    });
  }

  message(topic: string, payload: Buffer): void {
    if (topic !== this.#topic('NCMD')) return;
    try {
      const decoded = decodePayload(payload);
      if (decoded.metrics?.some((m) => m.name === REBIRTH && m.value === true)) {
        this.#logger.info({ event: 'sparkplug_rebirth' }, 'Sparkplug: rebirth requested (NCMD), publishing NBIRTH and DBIRTHs');
        void this.#birth().catch(() => undefined);
      }
    } catch (err) {
      this.#logger.warn({ event: 'sparkplug_ncmd_invalid', err }, 'Sparkplug: an NCMD payload does not decode');
    }
  }

  status(): void {
    void this.#deps
      .figures()
      .then((figures) => {
        if (!this.#conn.connected) return;
        this.#conn.publishQuietly(this.#topic('NDATA'), this.#encode(this.#statusMetrics(figures, Date.now())), { qos: 0, retain: false });
      })
      .catch(() => undefined);
  }

  /** A clean disconnect discards the will: DDEATH per line and the NDEATH go out by hand. */
  async closing(): Promise<void> {
    await this.#birthing.catch(() => undefined);
    for (const line of this.#born) this.#conn.publishQuietly(this.#topic('DDEATH', line), this.#encode([]), { qos: 0, retain: false });
    await this.#conn.publish(this.#topic('NDEATH'), this.#ndeath(), { qos: 1, retain: false }).catch(() => undefined);
  }
}
